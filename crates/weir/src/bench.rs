//! `weir bench`: forward-protocol load from N connections for a fixed time, reporting events/s,
//! MB/s and ack latency. Each connection keeps up to `--inflight` requests outstanding, as a
//! forwarder with several flush threads does; ack latency is measured from the end of a
//! request's write to the arrival of its ack.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use tokio::io::AsyncWriteExt;
use weir_proto::{EncodeOptions, EventTime, TimeFormat};

use crate::client::{encode_requests, new_chunk_id, ConnectArgs, Connection, SendMode};

/// Arguments of `weir bench`.
#[derive(Args, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Parallel connections.
    #[arg(short = 'n', long, default_value_t = 4)]
    connections: usize,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Approximate size of each record in bytes (msgpack).
    #[arg(long, default_value_t = 200)]
    record_size: usize,
    /// The forward mode to send in.
    #[arg(long, value_enum, default_value_t = SendMode::Packed)]
    mode: SendMode,
    /// Ask for acks.
    #[arg(long)]
    ack: bool,
    /// Requests each connection keeps outstanding while waiting for acks.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The tag of every event.
    #[arg(long, default_value = "bench.weir.111111111111.vpc-bench")]
    tag: String,
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Default)]
struct Totals {
    events: AtomicU64,
    bytes: AtomicU64,
    requests: AtomicU64,
}

/// Runs `weir bench`.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench_async(args))
}

/// One record of roughly `size` bytes, different per index so compression is realistic.
fn make_record(i: usize, size: usize) -> Vec<u8> {
    let host = format!("ip-10-0-{}-{}", i % 7, i % 251);
    let pad = size.saturating_sub(60 + host.len()).max(1);
    let message: String = (0..pad)
        .map(|j| char::from(b"abcdefghijklmnopqrstuvwxyz  "[(i * 31 + j * 7) % 28]))
        .collect();
    let value = serde_json::json!({
        "host": host,
        "level": if i.is_multiple_of(10) { "error" } else { "info" },
        "seq": i,
        "message": message,
    });
    let mut out = Vec::with_capacity(size + 16);
    weir_proto::json_to_msgpack(&value, &mut out);
    out
}

async fn bench_async(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let records: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.batch.max(1))
            .map(|i| make_record(i, args.record_size))
            .collect(),
    );
    let record_bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let args = args.clone();
        let records = Arc::clone(&records);
        let totals = Arc::clone(&totals);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            one_connection(args, records, record_bytes, totals, stop).await
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.1))).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            Ok(Err(e)) => bail!("a connection failed: {e:#}"),
            Err(e) => bail!("a connection task failed: {e}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    let events = totals.events.load(Ordering::Relaxed) as f64;
    let bytes = totals.bytes.load(Ordering::Relaxed) as f64;
    let eps = events / elapsed;
    let mbps = bytes / elapsed / 1_000_000.0;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": events as u64,
                "seconds": elapsed,
                "events_per_sec": eps,
                "mb_per_sec": mbps,
                "requests": totals.requests.load(Ordering::Relaxed),
                "ack_p50_ms": pct(0.50),
                "ack_p99_ms": pct(0.99),
                "acks": latencies.len(),
            })
        );
    } else {
        println!(
            "{:.0} events/s, {:.1} MB/s over {:.1} s ({} events, {} requests)",
            eps,
            mbps,
            elapsed,
            events as u64,
            totals.requests.load(Ordering::Relaxed)
        );
        if args.ack {
            println!(
                "ack latency: p50 {:.2} ms, p99 {:.2} ms ({} acks)",
                pct(0.50),
                pct(0.99),
                latencies.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn one_connection(
    args: BenchArgs,
    records: Arc<Vec<Vec<u8>>>,
    record_bytes: u64,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Duration>> {
    let conn = Connection::open(&args.connect).await?;
    let (mut writer, mut reader) = conn.split();
    // Exactly `inflight` requests may wait for their acks at once: a permit is taken before a
    // request is written and given back when its ack arrives.
    let inflight = args.inflight.max(1);
    let permits = Arc::new(tokio::sync::Semaphore::new(inflight));
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<(bytes::Bytes, Instant)>(inflight);
    let ack = args.ack;
    let ack_permits = Arc::clone(&permits);
    let acks = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let result = async {
            while let Some((chunk, at)) = sent_rx.recv().await {
                let got = reader.next_ack().await?;
                if got != chunk {
                    bail!("acks arrived out of order");
                }
                latencies.push(at.elapsed());
                ack_permits.add_permits(1);
            }
            anyhow::Ok(())
        }
        .await;
        // However the acks end (the server closed the connection, say), the sender must not
        // wait for a permit that will never come.
        ack_permits.close();
        result.map(|()| latencies)
    });
    let count = records.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        let now = EventTime::now();
        let entries: Vec<(EventTime, &[u8])> =
            records.iter().map(|r| (now, r.as_slice())).collect();
        let chunk = ack.then(new_chunk_id);
        let opts = EncodeOptions {
            chunk: chunk.clone(),
            time_format: TimeFormat::EventTime,
            ..EncodeOptions::default()
        };
        let request = encode_requests(args.mode, &args.tag, &entries, &opts);
        if ack {
            // Waits here while `inflight` requests are outstanding.
            match permits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => break,
            }
        }
        writer.write_all(&request).await?;
        if let Some(chunk) = chunk {
            if sent_tx.send((chunk, Instant::now())).await.is_err() {
                break;
            }
        }
        totals.events.fetch_add(count, Ordering::Relaxed);
        totals.bytes.fetch_add(record_bytes, Ordering::Relaxed);
        totals.requests.fetch_add(1, Ordering::Relaxed);
    }
    drop(sent_tx);
    let latencies = acks.await??;
    writer.shutdown().await?;
    Ok(latencies)
}
