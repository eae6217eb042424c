//! Buffer policy: configuration, chunk keys, limits, overflow actions, flush modes and
//! retries through the flusher (flush timing under tokio's paused clock).

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use weir_config::Section;
use weir_store::{
    spawn_flusher, Buffer, BufferConfig, BufferDefaults, BufferType, CommitPriority, FlushMode,
    OverflowAction, StoreError,
};

fn parse(text: &str) -> Result<BufferConfig, Vec<weir_config::ConfigError>> {
    let root =
        weir_config::parse_str(text, "test.conf", std::path::Path::new("/")).expect("syntax");
    let e = root
        .elements
        .iter()
        .find(|e| e.name == "buffer")
        .expect("<buffer>");
    let mut s = Section::new(e, "<buffer>");
    BufferConfig::from_section(&mut s, BufferDefaults::default())
}

fn now_sec() -> u32 {
    weir_proto::EventTime::now().sec
}

#[test]
fn config_defaults_and_fluentd_rules() {
    let c = parse("<buffer>\n</buffer>\n").expect("ok");
    assert_eq!(c.buffer_type, BufferType::Memory);
    assert_eq!(c.chunk_limit_size, 8 * 1024 * 1024);
    assert_eq!(c.total_limit_size, 512 * 1024 * 1024);
    assert_eq!(c.flush_mode, FlushMode::Interval);
    assert!(c.flush_at_shutdown);

    let c = parse("<buffer tag, time, $.k8s.ns, host>\n@type file\npath /var/log/blog/buf/var-log.buf\ntimekey 1h\ntimekey_use_utc true\n</buffer>\n").expect("ok");
    let BufferType::File(l) = &c.buffer_type else {
        panic!("file")
    };
    assert_eq!(
        l.dir,
        std::path::PathBuf::from("/var/log/blog/buf/var-log.buf")
    );
    assert_eq!((l.prefix.as_str(), l.suffix.as_str()), ("buffer.", ".log"));
    assert_eq!(c.chunk_limit_size, 256 * 1024 * 1024);
    assert_eq!(c.total_limit_size, 64 * 1024 * 1024 * 1024);
    assert_eq!(
        c.flush_mode,
        FlushMode::Lazy,
        "default means lazy with time"
    );
    assert!(
        c.flush_at_shutdown,
        "weir flushes file buffers at shutdown too (Fluentd does not)"
    );
    assert!(c.keys.tag);
    assert_eq!(c.keys.timekey, Some(3600));
    assert_eq!(c.keys.zone, weir_store::TimekeyZone::Fixed(0));
    assert_eq!(c.keys.record_keys.len(), 2);

    let c = parse("<buffer>\n@type file\npath /var/log/fluent/myapp.*.buffer\nqueue_limit_length 4\nchunk_limit_size 1m\noverflow_action block\ntimekey_zone +0900\n</buffer>\n").expect("ok");
    let BufferType::File(l) = &c.buffer_type else {
        panic!("file")
    };
    assert_eq!(
        (l.prefix.as_str(), l.suffix.as_str()),
        ("myapp.", ".buffer")
    );
    assert_eq!(c.total_limit_size, 4 * 1024 * 1024);
    assert_eq!(c.overflow_action, OverflowAction::Block);

    for (bad, word) in [
        ("<buffer time>\n</buffer>\n", "timekey is not configured"),
        (
            "<buffer>\nflush_mode lazy\nflush_interval 5s\n</buffer>\n",
            "flush_interval",
        ),
        (
            "<buffer>\nqueued_chunks_limit_size 3\n</buffer>\n",
            "queued_chunks_limit_size",
        ),
        ("<buffer>\n@type redis\n</buffer>\n", "unknown buffer type"),
        ("<buffer>\n@type file\n</buffer>\n", "needs 'path'"),
        (
            "<buffer time>\ntimekey 60\ntimekey_zone Asia/Nowhere\n</buffer>\n",
            "unknown time zone",
        ),
        (
            "<buffer time>\ntimekey 60\ntimekey_zone JST\n</buffer>\n",
            "IANA zone name",
        ),
        ("<buffer $['a']>\n</buffer>\n", "bracket"),
        (
            "<buffer>\nretry_secondary_threshold 1.5\n</buffer>\n",
            "(0, 1)",
        ),
    ] {
        let errs = parse(bad).expect_err(bad);
        let text: String = errs.iter().map(|e| e.to_string()).collect();
        assert!(text.contains(word), "{bad}: {text}");
        assert!(text.contains("test.conf:"), "errors name the file: {text}");
    }
}

#[tokio::test]
async fn chunk_keys_split_events() {
    let mut cfg =
        parse("<buffer tag, time, $.k.shard>\ntimekey 60\ntimekey_use_utc true\n</buffer>\n")
            .expect("ok");
    cfg.flush_mode = FlushMode::Lazy;
    let (buf, _) = Buffer::open(cfg, "keys").expect("open");
    // Times in two one-minute ranges; shard = seq % 4 gives four record-key values.
    let t0 = 1_700_000_040u32; // 1_700_000_040 is a multiple of 60
    let events: Vec<(u64, u32)> = (0..16)
        .map(|s| (s, t0 + ((s as u32 / 4) % 2) * 60))
        .collect();
    buf.append("a.b", &batch_at(events)).await.expect("commit");
    buf.append("c.d", &batch([100], t0)).await.expect("commit");
    assert_eq!(buf.stats().staged_chunks, 2 * 4 + 1);
    let sink = drain(&buf).await;
    let chunks = sink.chunks.lock().expect("lock").clone();
    assert_eq!(chunks.len(), 9);
    for (key, seqs, times) in &chunks {
        let tk = key.timekey.expect("timekey");
        assert!(times
            .iter()
            .all(|t| i64::from(*t) - tk < 60 && i64::from(*t) >= tk));
        let shard = &key.variables[0];
        assert_eq!(shard.0, "$.k.shard");
        assert!(seqs.iter().all(|s| (s % 4).to_string() == shard.1));
    }
    assert_eq!(sink.seqs().len(), 17);
}

#[tokio::test]
async fn chunk_limits_split_and_enqueue_full_chunks() {
    let mut cfg = BufferConfig::memory();
    cfg.chunk_limit_records = Some(10);
    let (buf, _) = Buffer::open(cfg, "limits").expect("open");
    buf.append("t", &batch(0..25, now_sec()))
        .await
        .expect("commit");
    // 10 + 10 full (queued), 5 staged.
    let s = buf.stats();
    assert_eq!((s.queued_chunks, s.staged_chunks), (2, 1));
    let sink = drain(&buf).await;
    let sizes: Vec<usize> = sink
        .chunks
        .lock()
        .expect("lock")
        .iter()
        .map(|c| c.1.len())
        .collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(sink.seqs(), (0..25).collect::<Vec<_>>());
}

fn small_memory(action: OverflowAction) -> BufferConfig {
    let mut cfg = BufferConfig::memory();
    cfg.chunk_limit_size = 1000;
    cfg.total_limit_size = 3000;
    cfg.overflow_action = action;
    cfg
}

#[tokio::test]
async fn overflow_throw_exception_refuses() {
    let (buf, _) = Buffer::open(small_memory(OverflowAction::ThrowException), "o").expect("open");
    let mut accepted = 0;
    let err = loop {
        match buf
            .append("t", &batch(accepted..accepted + 5, now_sec()))
            .await
        {
            Ok(()) => accepted += 5,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, StoreError::BufferFull(_)), "{err}");
    assert!(buf.stats().total_bytes >= 3000);
    assert_eq!(drain(&buf).await.seqs(), (0..accepted).collect::<Vec<_>>());
}

#[tokio::test]
async fn overflow_drop_oldest_chunk_drops_the_oldest() {
    let (buf, _) = Buffer::open(small_memory(OverflowAction::DropOldestChunk), "o").expect("open");
    for i in 0..40u64 {
        buf.append("t", &batch(i * 5..i * 5 + 5, now_sec()))
            .await
            .expect("always accepted");
        assert!(buf.stats().total_bytes < 3000 + 1000);
    }
    let got = drain(&buf).await.seqs();
    assert!(
        got.contains(&199) && !got.contains(&0),
        "newest kept, oldest dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn overflow_block_waits_for_room() {
    let mut cfg = small_memory(OverflowAction::Block);
    cfg.flush_mode = FlushMode::Interval;
    cfg.flush_interval = Duration::from_secs(5);
    let (buf, _) = Buffer::open(cfg, "o").expect("open");
    let mut seq = 0;
    while buf.stats().total_bytes < 3000 {
        buf.append("t", &batch(seq..seq + 5, now_sec()))
            .await
            .expect("commit");
        seq += 5;
    }
    let blocked = buf.append("t", &batch([seq], now_sec()));
    tokio::pin!(blocked);
    assert!(
        tokio::time::timeout(Duration::from_secs(30), &mut blocked)
            .await
            .is_err(),
        "the commit waits while the buffer is full"
    );
    let sink = Arc::new(Collect::default());
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    tokio::time::timeout(Duration::from_secs(30), &mut blocked)
        .await
        .expect("room was made")
        .expect("committed");
    buf.shutdown(true).await;
    let _ = h.await;
    assert!(sink.seqs().contains(&seq));
}

#[tokio::test(start_paused = true)]
async fn interval_mode_flushes_after_flush_interval() {
    let mut cfg = BufferConfig::memory();
    cfg.flush_interval = Duration::from_secs(60);
    let (buf, _) = Buffer::open(cfg, "i").expect("open");
    let sink = Arc::new(Collect::default());
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    buf.append("t", &batch([1], now_sec()))
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_secs(58)).await;
    assert_eq!(sink.chunk_count(), 0, "not before flush_interval");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        sink.chunk_count(),
        1,
        "within flush_thread_interval after it"
    );
    buf.shutdown(true).await;
    let _ = h.await;
}

#[tokio::test(start_paused = true)]
async fn lazy_mode_waits_for_timekey_and_timekey_wait() {
    let mut cfg =
        parse("<buffer time>\ntimekey 60\ntimekey_wait 10\ntimekey_use_utc true\n</buffer>\n")
            .expect("ok");
    cfg.flush_thread_interval = Duration::from_secs(1);
    let (buf, _) = Buffer::open(cfg, "l").expect("open");
    let sink = Arc::new(Collect::default());
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    let now = weir_proto::EventTime::now().sec;
    let range_end = now - now % 60 + 60;
    buf.append("t", &batch([1], now)).await.expect("commit");
    // Sleep until 2 s before range end + timekey_wait.
    let until_due = f64::from(range_end + 10) - weir_proto::EventTime::now().as_f64();
    tokio::time::sleep(Duration::from_secs_f64((until_due - 2.0).max(0.0))).await;
    assert_eq!(sink.chunk_count(), 0, "not before timekey + timekey_wait");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sink.chunk_count(), 1);
    buf.shutdown(true).await;
    let _ = h.await;
}

#[tokio::test(start_paused = true)]
async fn immediate_mode_flushes_each_append() {
    let mut cfg = BufferConfig::memory();
    cfg.flush_mode = FlushMode::Immediate;
    let (buf, _) = Buffer::open(cfg, "im").expect("open");
    let sink = Arc::new(Collect::default());
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    buf.append("t", &batch([1, 2], now_sec()))
        .await
        .expect("commit");
    buf.append("t", &batch([3], now_sec()))
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(sink.chunk_count(), 2);
    buf.shutdown(true).await;
    let _ = h.await;
}

#[tokio::test(start_paused = true)]
async fn flusher_retries_on_the_backoff_schedule() {
    let mut cfg = BufferConfig::memory();
    cfg.flush_mode = FlushMode::Immediate;
    cfg.retry.randomize = false;
    let (buf, _) = Buffer::open(cfg, "r").expect("open");
    let sink = Arc::new(Collect::default());
    sink.fail_next.store(4, Ordering::SeqCst);
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    buf.append("t", &batch([1], now_sec()))
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(sink.seqs(), vec![1]);
    let at = sink.attempts.lock().expect("lock").clone();
    let gaps: Vec<f64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    // First retry after retry_wait, then 1, 2, 4 (Fluentd's sequence).
    let want = [1.0, 1.0, 2.0, 4.0];
    assert_eq!(gaps.len(), want.len(), "{gaps:?}");
    for (g, w) in gaps.iter().zip(want) {
        assert!((g - w).abs() < 0.01, "{gaps:?}");
    }
    buf.shutdown(true).await;
    let _ = h.await;
}

#[tokio::test(start_paused = true)]
async fn secondary_takes_over_at_the_threshold() {
    let mut cfg = BufferConfig::memory();
    cfg.flush_mode = FlushMode::Immediate;
    cfg.retry.randomize = false;
    cfg.retry.exponential = false;
    cfg.retry.wait = 1.0;
    cfg.retry.timeout = 10.0;
    let (buf, _) = Buffer::open(cfg, "s").expect("open");
    let primary = Arc::new(Collect::default());
    primary.fail_next.store(usize::MAX, Ordering::SeqCst);
    let secondary = Arc::new(Collect::default());
    let h = spawn_flusher(buf.clone(), primary.clone(), Some(secondary.clone()));
    buf.append("t", &batch([7], now_sec()))
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(secondary.chunk_count(), 0, "not before 0.8 × retry_timeout");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(secondary.seqs(), vec![7]);
    buf.shutdown(true).await;
    let _ = h.await;
}

#[tokio::test]
async fn exhausted_retries_move_chunks_to_failed() {
    let dir = temp_dir("failed");
    let mut cfg = BufferConfig::file(&dir);
    cfg.flush_mode = FlushMode::Immediate;
    cfg.retry.wait = 0.01;
    cfg.retry.max_steps = Some(2);
    let (buf, _) = Buffer::open(cfg, "f").expect("open");
    let sink = Arc::new(Collect::default());
    sink.fail_next.store(usize::MAX, Ordering::SeqCst);
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    buf.append("t", &batch([1, 2], now_sec()))
        .await
        .expect("commit");
    let failed = dir.join("failed");
    for _ in 0..200 {
        if std::fs::read_dir(&failed).map(|d| d.count()).unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let names: Vec<String> = std::fs::read_dir(&failed)
        .expect("failed/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "data and sidecar kept: {names:?}");
    assert_eq!(
        sink.attempts.lock().expect("lock").len(),
        3,
        "first try + 2 retries"
    );
    buf.shutdown(false).await;
    let _ = h.await;
    let (_, report) = Buffer::open(BufferConfig::file(&dir), "f").expect("reopen");
    assert_eq!((report.failed_present, report.queued), (1, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unrecoverable_errors_go_to_failed_without_retrying() {
    let dir = temp_dir("unrec");
    let mut cfg = BufferConfig::file(&dir);
    cfg.flush_mode = FlushMode::Immediate;
    let (buf, _) = Buffer::open(cfg, "u").expect("open");
    let sink = Arc::new(Collect::default());
    sink.unrecoverable.store(true, Ordering::SeqCst);
    let h = spawn_flusher(buf.clone(), sink.clone(), None);
    buf.append("t", &batch([1], now_sec()))
        .await
        .expect("commit");
    for _ in 0..200 {
        if std::fs::read_dir(dir.join("failed"))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.attempts.lock().expect("lock").len(), 1);
    buf.shutdown(false).await;
    let _ = h.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn s3_key_metadata_survives_a_restart() {
    let dir = temp_dir("meta");
    let (buf, _) = Buffer::open(BufferConfig::file(&dir), "m").expect("open");
    buf.append("t", &batch([1], now_sec()))
        .await
        .expect("commit");
    buf.flush_all();
    buf.sync().await;
    struct SetKey;
    impl weir_store::ChunkSink for SetKey {
        fn write<'a>(
            &'a self,
            c: &'a weir_store::ChunkRef,
        ) -> futures::future::BoxFuture<'a, Result<(), weir_store::WriteError>> {
            Box::pin(async move {
                if c.metadata("s3_key").is_none() {
                    c.set_metadata("s3_key", "logs/2024/abc.gz")
                        .map_err(|e| weir_store::WriteError::Retryable(e.to_string()))?;
                }
                Err(weir_store::WriteError::Retryable(
                    "crash before upload".into(),
                ))
            })
        }
    }
    let h = spawn_flusher(buf.clone(), Arc::new(SetKey), None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    buf.shutdown(false).await;
    let _ = h.await;
    drop(buf);
    let (buf, report) = Buffer::open(BufferConfig::file(&dir), "m").expect("reopen");
    assert_eq!(report.queued, 1);
    struct Check(std::sync::Mutex<Option<String>>);
    impl weir_store::ChunkSink for Check {
        fn write<'a>(
            &'a self,
            c: &'a weir_store::ChunkRef,
        ) -> futures::future::BoxFuture<'a, Result<(), weir_store::WriteError>> {
            if let Ok(mut m) = self.0.lock() {
                *m = c.metadata("s3_key");
            }
            Box::pin(async { Ok(()) })
        }
    }
    let check = Arc::new(Check(std::sync::Mutex::new(None)));
    let h = spawn_flusher(buf.clone(), check.clone(), None);
    buf.shutdown(true).await;
    let _ = h.await;
    assert_eq!(
        check.0.lock().expect("lock").as_deref(),
        Some("logs/2024/abc.gz")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn gzip_chunks_round_trip_and_are_multi_member_gzip() {
    let dir = temp_dir("gzip");
    let mut cfg = BufferConfig::file(&dir);
    cfg.compress = weir_store::Compress::Gzip;
    let (buf, _) = Buffer::open(cfg.clone(), "g").expect("open");
    buf.append("t", &batch(0..10, now_sec()))
        .await
        .expect("commit");
    buf.append("t", &batch(10..20, now_sec()))
        .await
        .expect("commit");
    drop(buf);
    let (buf, report) = Buffer::open(cfg, "g").expect("reopen");
    assert_eq!(report.records, 20);
    struct Gz(std::sync::Mutex<Vec<u8>>);
    impl weir_store::ChunkSink for Gz {
        fn write<'a>(
            &'a self,
            c: &'a weir_store::ChunkRef,
        ) -> futures::future::BoxFuture<'a, Result<(), weir_store::WriteError>> {
            assert!(c.is_gzip());
            if let Ok(mut m) = self.0.lock() {
                *m = weir_proto::gunzip(c.stored(), 1 << 20).unwrap_or_default();
                assert_eq!(&m[..], &c.blob()[..]);
            }
            Box::pin(async { Ok(()) })
        }
    }
    let gz = Arc::new(Gz(std::sync::Mutex::new(Vec::new())));
    let h = spawn_flusher(buf.clone(), gz.clone(), None);
    buf.shutdown(true).await;
    let _ = h.await;
    assert!(!gz.0.lock().expect("lock").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn commit_priority_is_checked() {
    let file = |extra: &str| format!("<buffer>\n@type file\npath /tmp/x\n{extra}</buffer>\n");
    assert_eq!(
        parse(&file("")).expect("ok").commit_priority,
        CommitPriority::Realtime
    );
    assert_eq!(
        parse(&file("commit_priority normal\n"))
            .expect("ok")
            .commit_priority,
        CommitPriority::Normal
    );
    assert_eq!(
        parse(&file("commit_priority realtime\n"))
            .expect("ok")
            .commit_priority,
        CommitPriority::Realtime
    );
    for bad in [
        file("commit_priority high\n"),
        "<buffer>\n@type memory\ncommit_priority normal\n</buffer>\n".to_string(),
    ] {
        let errs = parse(&bad).expect_err(&bad);
        assert!(
            errs.iter()
                .any(|e| e.to_string().contains("commit_priority")),
            "{errs:?}"
        );
    }
}

#[test]
fn commit_shards_is_checked() {
    let c = parse("<buffer>\n@type file\npath /tmp/x\ncommit_shards 4\n</buffer>\n").expect("ok");
    assert_eq!(c.commit_shards, 4);
    assert_eq!(
        parse("<buffer>\n@type file\npath /tmp/x\n</buffer>\n")
            .expect("ok")
            .commit_shards,
        1
    );
    for bad in [
        "<buffer>\n@type file\npath /tmp/x\ncommit_shards 0\n</buffer>\n",
        "<buffer>\n@type file\npath /tmp/x\ncommit_shards 65\n</buffer>\n",
        "<buffer>\n@type memory\ncommit_shards 2\n</buffer>\n",
    ] {
        let errs = parse(bad).expect_err(bad);
        assert!(
            errs.iter().any(|e| e.to_string().contains("commit_shards")),
            "{errs:?}"
        );
    }
}
