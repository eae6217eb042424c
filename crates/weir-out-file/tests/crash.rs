//! A write interrupted half-way (the test hook stops as a killed process would, with no
//! clean-up) and then retried, by a fresh output as after a restart, leaves every line in the
//! file exactly once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use weir_out_file::{FileOutput, FileOutputError};
use weir_store::{spawn_flusher, Buffer, BufferConfig};

fn events(from: u32, n: u32) -> Vec<(u32, Vec<u8>)> {
    (from..from + n)
        .map(|i| {
            (
                T_2011,
                rec(json!({"seq": i, "msg": "a fairly long log line to cut"})),
            )
        })
        .collect()
}

fn lines(from: u32, n: u32) -> String {
    (from..from + n)
        .map(|i| format!("seq:{i}\tmsg:a fairly long log line to cut\n"))
        .collect()
}

fn body(d: &std::path::Path, append: bool, gzip: bool) -> String {
    format!(
        "path {}/out\nappend {append}\ncompress {}\n<format>\n@type ltsv\n</format>\n<buffer>\ntimekey_use_utc true\n</buffer>",
        d.display(),
        if gzip { "gzip" } else { "text" }
    )
}

fn setup(d: &std::path::Path, append: bool, gzip: bool) -> (FileOutput, BufferConfig) {
    let (cfg, buf) = configure(&body(d, append, gzip)).expect("configures");
    (FileOutput::new(cfg), buf)
}

#[test]
fn append_cut_half_way_then_retried_after_restart() {
    for gzip in [false, true] {
        let d = temp_dir("crash-append");
        let name = if gzip {
            "out.20110102.log.gz"
        } else {
            "out.20110102.log"
        };
        let (out, buf) = setup(&d, true, gzip);
        let a = chunks(&buf, "t", &events(0, 5)).remove(0);
        let b = chunks(&buf, "t", &events(5, 5)).remove(0);
        out.write_chunk(&a).expect("a");
        out.crash_after_bytes(17);
        assert!(matches!(
            out.write_chunk(&b),
            Err(FileOutputError::SimulatedCrash)
        ));
        drop(out);
        // Restart: a new output; b is retried from the buffer with its metadata.
        let (out, _) = setup(&d, true, gzip);
        out.write_chunk(&b).expect("b retried");
        assert_eq!(read(&d.join(name)), lines(0, 10));
        assert_eq!(files(&d), vec![name.to_string()], "no marker left");
    }
}

#[test]
fn another_chunk_written_before_the_interrupted_one_is_retried() {
    let d = temp_dir("crash-other");
    let (out, buf) = setup(&d, true, false);
    let a = chunks(&buf, "t", &events(0, 3)).remove(0);
    let b = chunks(&buf, "t", &events(3, 3)).remove(0);
    let c = chunks(&buf, "t", &events(6, 3)).remove(0);
    out.write_chunk(&a).expect("a");
    out.crash_after_bytes(40);
    assert!(out.write_chunk(&b).is_err());
    drop(out);
    let (out, _) = setup(&d, true, false);
    out.write_chunk(&c).expect("c cuts b's partial bytes first");
    out.write_chunk(&b).expect("b");
    assert_eq!(
        read(&d.join("out.20110102.log")),
        lines(0, 3) + &lines(6, 3) + &lines(3, 3)
    );
}

#[test]
fn all_bytes_written_but_not_committed() {
    let d = temp_dir("crash-uncommitted");
    let (out, buf) = setup(&d, true, false);
    let a = chunks(&buf, "t", &events(0, 4)).remove(0);
    let size = lines(0, 4).len() as u64;
    out.crash_after_bytes(size);
    assert!(out.write_chunk(&a).is_err());
    assert_eq!(
        read(&d.join("out.20110102.log")),
        lines(0, 4),
        "all bytes are there"
    );
    let (out, _) = setup(&d, true, false);
    out.write_chunk(&a).expect("retried");
    assert_eq!(read(&d.join("out.20110102.log")), lines(0, 4));
}

#[test]
fn retried_after_success_writes_nothing_twice() {
    for append in [true, false] {
        let d = temp_dir("crash-after-success");
        let (out, buf) = setup(&d, append, false);
        let a = chunks(&buf, "t", &events(0, 4)).remove(0);
        let first = out.write_chunk(&a).expect("a");
        // The process died before the buffer deleted the chunk: it is delivered again.
        let (out, _) = setup(&d, append, false);
        let second = out.write_chunk(&a).expect("a again");
        assert_eq!(first, second);
        assert_eq!(read(&first), lines(0, 4));
        assert_eq!(files(&d).len(), 1, "{:?}", files(&d));
    }
}

#[test]
fn indexed_file_interrupted_half_way() {
    for gzip in [false, true] {
        let d = temp_dir("crash-indexed");
        let (out, buf) = setup(&d, false, gzip);
        let a = chunks(&buf, "t", &events(0, 6)).remove(0);
        out.crash_after_bytes(25);
        assert!(out.write_chunk(&a).is_err());
        // Nothing under a final name: readers never see half a file.
        assert!(
            files(&d).iter().all(|f| f.starts_with('.')),
            "{:?}",
            files(&d)
        );
        let (out, _) = setup(&d, false, gzip);
        let p = out.write_chunk(&a).expect("retried");
        let name = if gzip {
            "out.20110102_0.log.gz"
        } else {
            "out.20110102_0.log"
        };
        assert_eq!(p, d.join(name));
        assert_eq!(read(&p), lines(0, 6));
        assert_eq!(files(&d), vec![name.to_string()]);
    }
}

/// Through the real store: the first delivery crashes half-way, weir "restarts" (the buffer
/// is shut down without flushing and opened again from disk), and the recovered chunk is
/// delivered whole, once. The progress lives in the chunk's sidecar metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_buffer_crash_and_restart() {
    let d = temp_dir("crash-store");
    let body = format!(
        "path {}/out\nappend true\n<format>\n@type ltsv\n</format>\n<buffer>\n@type file\npath {}/buf\ntimekey_use_utc true\nretry_wait 100s\n</buffer>",
        d.display(),
        d.display()
    );
    let open = || {
        let (cfg, buf) = configure(&body).expect("configures");
        let (buffer, _) = Buffer::open(buf, "out_file").expect("buffer");
        (Arc::new(FileOutput::new(cfg)), buffer)
    };
    let batch = |from: u32| {
        let evs = events(from, 5);
        let mut raw = Vec::new();
        let mut entries = Vec::new();
        for (t, r) in &evs {
            let start = raw.len() as u32;
            raw.extend_from_slice(r);
            entries.push(weir_proto::EntryRef {
                time: weir_proto::EventTime::new(*t, 0),
                start,
                end: raw.len() as u32,
            });
        }
        weir_proto::EventBatch::new(bytes::Bytes::from(raw), entries)
    };
    let target = d.join("out.20110102.log");
    {
        let (out, buffer) = open();
        buffer.append("t", &batch(0)).await.expect("commit");
        out.crash_after_bytes(30);
        let flusher = spawn_flusher(buffer.clone(), out, None);
        buffer.flush_all();
        for _ in 0..100 {
            if target.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(std::fs::read(&target).expect("partial").len(), 30);
        buffer.shutdown(false).await;
        let _ = flusher.await;
    }
    let (out, buffer) = open();
    buffer.append("t", &batch(5)).await.expect("commit");
    let flusher = spawn_flusher(buffer.clone(), out, None);
    buffer.flush_all();
    let want = lines(0, 10);
    for _ in 0..200 {
        if read(&target).len() >= want.len() && buffer.stats().queued_chunks == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    buffer.shutdown(true).await;
    let _ = flusher.await;
    let got = read(&target);
    let mut got_lines: Vec<&str> = got.lines().collect();
    got_lines.sort();
    let mut want_lines: Vec<&str> = want.lines().collect();
    want_lines.sort();
    assert_eq!(got_lines, want_lines, "each line exactly once:\n{got}");
}
