//! Delivering a large chunk takes memory in proportion to its largest block, not to the chunk.
//! The test binary re-runs itself in a child process (an ignored test selected by name, steered
//! by environment variables), which fills a real file buffer with one large chunk of many
//! blocks, delivers it through the real file output, and prints its peak RSS (VmHWM) before
//! and after the delivery.

mod common;

use std::io::Read;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use weir_out_file::FileOutput;
use weir_store::{spawn_flusher, Buffer};

/// Allowed growth of the child's peak RSS while it delivers the chunk.
const LIMIT_KIB: u64 = 48 * 1024;

/// VmHWM of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One batch of `n` records of about 200 bytes each, numbered from `first`.
fn batch(first: u64, n: u64) -> weir_proto::EventBatch {
    let mut raw = Vec::new();
    let mut entries = Vec::new();
    let pad = "x".repeat(150);
    for seq in first..first + n {
        let start = raw.len() as u32;
        raw.extend_from_slice(&rec(serde_json::json!({
            "seq": seq,
            "host": "web-01",
            "msg": pad,
        })));
        entries.push(weir_proto::EntryRef {
            time: weir_proto::EventTime::new(T_2011, 0),
            start,
            end: raw.len() as u32,
        });
    }
    weir_proto::EventBatch::new(bytes::Bytes::from(raw), entries)
}

/// Child: fills a file buffer with one chunk of `WEIR_MEM_BLOCKS` blocks of 1,000 records,
/// delivers it, and prints `HWM_BEFORE`, `HWM_AFTER` (KiB) and `LINES`.
#[test]
#[ignore = "child process of large_chunk_is_delivered_in_bounded_memory"]
fn memory_child() {
    let Ok(dir) = std::env::var("WEIR_MEM_DIR") else {
        return;
    };
    let blocks: u64 = std::env::var("WEIR_MEM_BLOCKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let gzip = std::env::var("WEIR_MEM_GZIP").is_ok_and(|v| v == "1");
    let compress = if gzip { "gzip" } else { "text" };
    let body = format!(
        "path {dir}/out\nappend true\ncompress {compress}\n<format>\n@type ltsv\n</format>\n\
         <buffer>\n@type file\npath {dir}/buf\ncompress {compress}\ntimekey_use_utc true\n\
         chunk_limit_size 256m\n</buffer>"
    );
    let (cfg, buf) = configure(&body).expect("configures");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (buffer, _) = Buffer::open(buf, "out_file").expect("buffer");
        for b in 0..blocks {
            buffer
                .append("t", &batch(b * 1000, 1000))
                .await
                .expect("commit");
        }
        let stats = buffer.stats();
        assert_eq!(stats.staged_chunks, 1, "one chunk: {stats:?}");
        let before = vm_hwm_kib();
        let flusher = spawn_flusher(buffer.clone(), Arc::new(FileOutput::new(cfg)), None);
        buffer.flush_all();
        for _ in 0..6000 {
            let s = buffer.stats();
            if s.total_bytes == 0 && s.staged_chunks + s.queued_chunks + s.in_flight_chunks == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = vm_hwm_kib();
        buffer.shutdown(false).await;
        let _ = flusher.await;
        let name = if gzip {
            "out.20110102.log.gz"
        } else {
            "out.20110102.log"
        };
        let f = std::fs::File::open(std::path::Path::new(&dir).join(name)).expect("output");
        let mut r: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                f,
            )))
        } else {
            Box::new(std::io::BufReader::new(f))
        };
        let mut lines = 0u64;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut chunk).expect("read output");
            if n == 0 {
                break;
            }
            lines += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        println!("HWM_BEFORE {before}");
        println!("HWM_AFTER {after}");
        println!("LINES {lines}");
    });
}

/// Runs the child and returns (peak RSS before delivery, after, lines written).
fn run_child(blocks: u64, gzip: bool) -> (u64, u64, u64) {
    let dir = temp_dir("memory");
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args([
            "--exact",
            "memory_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_MEM_DIR", dir.display().to_string())
        .env("WEIR_MEM_BLOCKS", blocks.to_string())
        .env("WEIR_MEM_GZIP", if gzip { "1" } else { "0" })
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |key: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.find(key).map(|i| &l[i + key.len()..]))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("child printed no {key}: {stdout}"))
    };
    let r = (value("HWM_BEFORE "), value("HWM_AFTER "), value("LINES "));
    let _ = std::fs::remove_dir_all(&dir);
    r
}

#[test]
fn large_chunk_is_delivered_in_bounded_memory() {
    // 750 blocks of 1,000 records of ~200 bytes: a ~150 MB chunk (text), then a ~60 MB one
    // with gzip in the buffer and in the output.
    for (blocks, gzip) in [(750u64, false), (300, true)] {
        let (before, after, lines) = run_child(blocks, gzip);
        let grew = after.saturating_sub(before);
        println!(
            "gzip {gzip}: {blocks} blocks, peak RSS {before} KiB before delivery, {after} KiB \
             after (+{grew} KiB)"
        );
        assert_eq!(lines, blocks * 1000, "every event written once");
        assert!(
            grew < LIMIT_KIB,
            "delivering the chunk grew peak RSS by {grew} KiB (limit {LIMIT_KIB} KiB)"
        );
    }
}
