//! `weir cat TAG`: reads one JSON object per line on standard input and sends each as an event,
//! like Fluentd's `fluent-cat`. Lines that arrive together are batched into one request (in
//! Forward and PackedForward modes); with `--ack`, each request waits for its ack. With
//! `--standby HOST:PORT`, a request that fails (no connection, a write error, no ack in time) is
//! sent again to the standby server, as Fluentd's `out_forward` does with `<server> standby`.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use weir_proto::{json_to_msgpack, EncodeOptions, EventTime, TimeFormat};

use crate::client::{
    encode_requests, new_chunk_id, ConnectArgs, FailoverClient, SendMode, ServerAddr,
};

/// Arguments of `weir cat`.
#[derive(Args)]
pub struct CatArgs {
    /// The tag of every event sent.
    tag: String,
    #[command(flatten)]
    connect: ConnectArgs,
    /// The forward mode to send in.
    #[arg(long, value_enum, default_value_t = SendMode::Forward)]
    mode: SendMode,
    /// Ask for an ack for every request and wait for it.
    #[arg(long)]
    ack: bool,
    /// Most events in one request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Send times as whole seconds instead of EventTime with nanoseconds.
    #[arg(long)]
    time_as_integer: bool,
    /// A standby server, used when the primary (--host, --port) fails: it refuses the
    /// connection, a write fails, or (with --ack) no ack comes within --ack-timeout. The request
    /// that failed is sent again to the standby. Give it more than once for several standby
    /// servers, tried in order. TLS and shared-key settings apply to every server.
    #[arg(long, value_name = "HOST:PORT")]
    standby: Vec<ServerAddr>,
    /// With --standby: while a standby is in use, try the primary again before a request once
    /// this many seconds have passed since it failed (Fluentd's `recover_wait`), and go back
    /// to it when it accepts a connection.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    recover_wait: Duration,
    /// With --ack: how long to wait for an ack before treating the server as failed
    /// (Fluentd's `ack_response_timeout`).
    #[arg(long, value_name = "SECONDS", default_value = "190", value_parser = parse_positive_seconds)]
    ack_timeout: Duration,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("'{s}' is not a number of seconds from 0 to 86400")),
    }
}

fn parse_positive_seconds(s: &str) -> Result<Duration, String> {
    match parse_seconds(s)? {
        d if d.is_zero() => Err("must be more than 0 seconds".into()),
        d => Ok(d),
    }
}

/// Runs `weir cat`.
pub fn cat(args: CatArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cat_async(args))
}

async fn cat_async(args: CatArgs) -> anyhow::Result<ExitCode> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<u8>>>(4096);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for (n, line) in stdin.lock().lines().enumerate() {
            let item = line
                .context("reading standard input")
                .and_then(|l| to_record(&l).with_context(|| format!("line {}", n + 1)));
            match item {
                Ok(None) => continue,
                Ok(Some(record)) => {
                    if tx.blocking_send(Ok(record)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });

    let mut client = FailoverClient::new(
        args.connect.clone(),
        args.standby.clone(),
        args.recover_wait,
        args.ack_timeout,
    );
    client.connect().await?;
    let time_format = if args.time_as_integer {
        TimeFormat::Integer
    } else {
        TimeFormat::EventTime
    };
    let batch_size = args.batch.max(1);
    let mut sent = 0usize;
    while let Some(first) = rx.recv().await {
        let mut records = vec![first?];
        while records.len() < batch_size {
            match rx.try_recv() {
                Ok(r) => records.push(r?),
                Err(_) => break,
            }
        }
        let now = EventTime::now();
        let entries: Vec<(EventTime, &[u8])> =
            records.iter().map(|r| (now, r.as_slice())).collect();
        let chunk = args.ack.then(new_chunk_id);
        let opts = EncodeOptions {
            chunk: chunk.clone(),
            time_format,
            ..EncodeOptions::default()
        };
        let request = encode_requests(args.mode, &args.tag, &entries, &opts);
        client
            .send(&request, chunk.as_ref())
            .await
            .with_context(|| format!("{sent} event(s) were sent before this failure"))?;
        sent += records.len();
    }
    client.close().await?;
    tracing::debug!(events = sent, "sent");
    Ok(ExitCode::SUCCESS)
}

fn to_record(line: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| anyhow!("not JSON: {e}"))?;
    if !value.is_object() {
        bail!("a record must be a JSON object, got: {line}");
    }
    let mut out = Vec::with_capacity(line.len());
    json_to_msgpack(&value, &mut out);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_with_fractions_and_limits() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("190"), Ok(Duration::from_secs(190)));
        for bad in ["-1", "NaN", "inf", "86401", "ten", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        assert!(parse_positive_seconds("0").is_err());
        assert_eq!(parse_positive_seconds("1"), Ok(Duration::from_secs(1)));
    }
}
