//! Buffered outputs: a `<buffer>` (weir-store's chunk store and flush policy) in front of a
//! chunk writer (the file output, the S3 output).
//!
//! `emit` appends the events to the buffer and answers with the buffer's group commit, so the
//! forwarder's ack leaves only once the events are on disk (file buffer) or in the queue
//! (memory buffer). The buffer's flusher hands chunks to the writer when they are due and
//! retries failures on the `<buffer>` schedule.
//!
//! Nothing touches the disk or the network until [`Output::start`]: `weir check` builds the same
//! outputs and must not open buffers or call remote services.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_metrics::{Counter, Histogram};
use weir_proto::EventBatch;
use weir_store::{
    spawn_flusher, Buffer, BufferConfig, BufferType, ChunkRef, ChunkSink, OverflowAction,
    RetryState, StoreError, WriteError,
};

use crate::pipeline::{Accepted, Output, Refused};

/// The writers a buffered output delivers to: its sink and an optional `<secondary>`.
pub struct Sinks {
    /// Where chunks go.
    pub primary: Arc<dyn ChunkSink>,
    /// Where chunks go once `retry_secondary_threshold` is reached.
    pub secondary: Option<Arc<dyn ChunkSink>>,
}

/// Builds the sinks when the output starts (it may check a bucket or create directories).
pub type SinkStarter = Box<dyn FnOnce() -> BoxFuture<'static, Result<Sinks, String>> + Send>;

struct Started {
    buffer: Buffer,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// How long a commit may still take once shutdown has begun. A commit waiting for its fsync
/// finishes well within this; one blocked for room (`overflow_action block`) is refused after
/// it, so shutdown does not wait for a buffer that cannot drain.
const SHUTDOWN_COMMIT_GRACE: Duration = Duration::from_secs(2);

/// Fluentd's `slow_flush_log_threshold` default: a chunk write slower than this is logged and
/// counted in `slow_flush_count`.
const SLOW_FLUSH: Duration = Duration::from_secs(20);

/// Counters of the chunk writes of a buffered output (Fluentd's `write_count`, `num_errors`,
/// `rollback_count`, `slow_flush_count`, `flush_time_count`), their latency, and a copy of the
/// retry state for monitor_agent's `retry` field.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Chunk writes tried (primary and secondary).
    pub write_count: Counter,
    /// Chunk writes that failed (Fluentd's `num_errors`, shown as `retry_count`).
    pub num_errors: Counter,
    /// Chunks put back in the queue after a failed write.
    pub rollback_count: Counter,
    /// Writes slower than 20 s.
    pub slow_flush_count: Counter,
    /// Milliseconds spent writing, in total.
    pub flush_time_count: Counter,
    /// Chunk writes to the `<secondary>`.
    pub write_secondary_count: Counter,
    /// How long each chunk write (file written and fsync'd, object uploaded) took.
    pub latency: Histogram,
    /// The retry state while writes fail: the schedule of the `<buffer>` retry parameters,
    /// stepped on each failure, without the random jitter.
    retry: Mutex<Option<RetryState>>,
}

/// A retry in progress, as monitor_agent shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryView {
    /// When the first failure of this run happened (Unix seconds).
    pub start: f64,
    /// How many retries have been scheduled.
    pub steps: u64,
    /// When the next try is due (Unix seconds).
    pub next_time: f64,
}

impl WriteStats {
    /// The retry in progress, if writes are failing.
    pub fn retry(&self) -> Option<RetryView> {
        self.retry.lock().ok().and_then(|r| {
            r.as_ref().map(|r| RetryView {
                start: r.start(),
                steps: r.steps(),
                next_time: r.next_time(),
            })
        })
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A chunk writer that records each write in [`WriteStats`].
struct TimedSink {
    inner: Arc<dyn ChunkSink>,
    stats: Arc<WriteStats>,
    retry: weir_store::RetryParams,
    secondary: bool,
    output: String,
}

impl ChunkSink for TimedSink {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let started = Instant::now();
            let r = self.inner.write(chunk).await;
            let took = started.elapsed();
            let s = &self.stats;
            s.write_count.inc();
            if self.secondary {
                s.write_secondary_count.inc();
            }
            s.latency.observe(took);
            s.flush_time_count
                .add(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
            if took > SLOW_FLUSH {
                s.slow_flush_count.inc();
                tracing::warn!(output = %self.output, chunk_id = %chunk.id(), elapsed = took.as_secs_f64(), slow_flush_log_threshold = SLOW_FLUSH.as_secs_f64(), "buffer flush took longer than slow_flush_log_threshold");
            }
            let now = unix_now();
            match &r {
                Ok(()) => {
                    tracing::debug!(output = %self.output, chunk_id = %chunk.id(), secondary = self.secondary, elapsed = took.as_secs_f64(), "chunk written out");
                    if let Ok(mut retry) = s.retry.lock() {
                        *retry = None;
                    }
                }
                Err(e) => {
                    s.num_errors.inc();
                    if matches!(e, WriteError::Retryable(_)) {
                        s.rollback_count.inc();
                    }
                    if !self.secondary {
                        if let Ok(mut retry) = s.retry.lock() {
                            match retry.as_mut() {
                                None => *retry = Some(RetryState::new(self.retry.clone(), now)),
                                Some(r) if now >= r.next_time() => r.step(now, 0.5),
                                Some(r) => r.recalc(now, 0.5),
                            }
                            if retry.as_ref().is_some_and(RetryState::limit) {
                                *retry = None;
                            }
                        }
                    }
                }
            }
            r
        })
    }

    fn reads_whole_chunk(&self) -> bool {
        self.inner.reads_whole_chunk()
    }
}

/// Whether appends are being refused for lack of room, and why (for `/healthz`).
#[derive(Debug, Default)]
struct Refusing {
    now: AtomicBool,
    why: Mutex<String>,
    /// For a refusal at `total_limit_size`: the bytes the buffer held then. It has room again
    /// once delivery has taken it below that.
    full_at: Mutex<Option<u64>>,
}

impl Refusing {
    fn set(&self, why: String, full_at: Option<u64>) {
        if let Ok(mut w) = self.why.lock() {
            *w = why;
        }
        if let Ok(mut f) = self.full_at.lock() {
            *f = full_at;
        }
        self.now.store(true, Ordering::Release);
    }

    fn clear(&self) {
        self.now.store(false, Ordering::Release);
    }
}

/// How much free space a file buffer's file system needs before a buffer that refused appends
/// for lack of space counts as healthy again.
const HEALTHY_FREE_BYTES: u64 = 256 * 1024;

/// An output plugin with a `<buffer>`.
pub struct BufferedOutput {
    id: String,
    config: BufferConfig,
    starter: Mutex<Option<SinkStarter>>,
    started: OnceLock<Started>,
    stopping: CancellationToken,
    stats: Arc<WriteStats>,
    refusing: Arc<Refusing>,
}

impl BufferedOutput {
    /// A buffered output that opens `config`'s buffer and builds its sinks with `starter` when
    /// it starts.
    pub fn new(id: impl Into<String>, config: BufferConfig, starter: SinkStarter) -> Self {
        BufferedOutput {
            id: id.into(),
            config,
            starter: Mutex::new(Some(starter)),
            started: OnceLock::new(),
            stopping: CancellationToken::new(),
            stats: Arc::new(WriteStats::default()),
            refusing: Arc::new(Refusing::default()),
        }
    }

    /// The buffer, once started (for counters and tests).
    pub fn buffer(&self) -> Option<&Buffer> {
        self.started.get().map(|s| &s.buffer)
    }

    /// The buffer's configuration.
    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// The counters of the chunk writes.
    pub fn write_stats(&self) -> &WriteStats {
        &self.stats
    }

    /// `Ok` while the buffer takes events. After appends were refused for lack of room, it
    /// checks whether there is room again: for a full or unwritable disk, free space and a test
    /// write in the buffer directory; for `total_limit_size`, fewer bytes held than when the
    /// append was refused. A full buffer whose overflow action is not `drop_oldest_chunk` is
    /// not healthy either.
    pub fn health(&self) -> Result<(), String> {
        let Some(s) = self.started.get() else {
            return Ok(());
        };
        let stats = s.buffer.stats();
        let full = stats.total_bytes >= self.config.total_limit_size;
        if full && self.config.overflow_action != OverflowAction::DropOldestChunk {
            return Err(format!(
                "output {}: buffer full ({} bytes, total_limit_size {})",
                self.id, stats.total_bytes, self.config.total_limit_size
            ));
        }
        if !self.refusing.now.load(Ordering::Acquire) {
            return Ok(());
        }
        let why = self
            .refusing
            .why
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        let full_at = self.refusing.full_at.lock().ok().and_then(|f| *f);
        match (full_at, &self.config.buffer_type) {
            (Some(at), _) if stats.total_bytes >= at => {
                return Err(format!(
                    "output {}: {why} (holding {} bytes)",
                    self.id, stats.total_bytes
                ));
            }
            (Some(_), _) => {}
            (None, BufferType::File(layout)) => {
                if let Err(e) = probe_dir(&layout.dir) {
                    return Err(format!("output {}: {why} ({e})", self.id));
                }
            }
            (None, BufferType::Memory) => {}
        }
        self.refusing.clear();
        Ok(())
    }
}

/// Checks that a directory's file system has room and takes a write: statvfs, then a small
/// file written, fsync'd and removed.
// statvfs's field types differ between platforms.
#[allow(clippy::useless_conversion)]
fn probe_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::ffi::CString;
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;

    let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statvfs writes into the zeroed struct we pass and reads the NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs: {}", std::io::Error::last_os_error()));
    }
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    if free < HEALTHY_FREE_BYTES {
        return Err(format!("{free} bytes free in {}", dir.display()));
    }
    let probe = dir.join(".weir-health-probe");
    let r = std::fs::File::create(&probe)
        .and_then(|mut f| f.write_all(&[0u8; 4096]).and_then(|()| f.sync_data()));
    let _ = std::fs::remove_file(&probe);
    r.map_err(|e| format!("test write in {}: {e}", dir.display()))
}

/// Remembers, for the health check, whether the last append was refused for lack of room.
fn note_refusal(
    refusing: &Refusing,
    buffer: &Buffer,
    r: Result<(), Refused>,
) -> Result<(), Refused> {
    match &r {
        Ok(()) => {
            if refusing.now.load(Ordering::Relaxed) {
                refusing.clear();
            }
        }
        Err(e @ Refused::BufferFull(_)) => {
            refusing.set(e.to_string(), Some(buffer.stats().total_bytes));
        }
        Err(e @ Refused::Storage(_)) => refusing.set(e.to_string(), None),
        Err(_) => {}
    }
    r
}

/// What a forwarder is told, in the log, when its events are not acknowledged.
fn refused(e: StoreError) -> Refused {
    match e {
        StoreError::BufferFull(b) => {
            Refused::BufferFull(format!("buffer '{b}' reached total_limit_size"))
        }
        StoreError::ShuttingDown(_) => Refused::ShuttingDown,
        other if other.is_no_space() => Refused::Storage(format!("disk full: {other}")),
        other => Refused::Storage(other.to_string()),
    }
}

impl Output for BufferedOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
        match self.started.get() {
            Some(s) => {
                let mut commit = s.buffer.append(tag, events);
                let stopping = self.stopping.clone();
                let refusing = Arc::clone(&self.refusing);
                let buffer = s.buffer.clone();
                Accepted::Pending(Box::pin(async move {
                    tokio::select! {
                        biased;
                        r = &mut commit => return note_refusal(&refusing, &buffer, r.map_err(refused)),
                        _ = stopping.cancelled() => {}
                    }
                    // Shutting down: an fsync in progress still completes; an append blocked
                    // for room is refused (no ack: the forwarder sends it again, here after a
                    // restart or to its standby).
                    match tokio::time::timeout(SHUTDOWN_COMMIT_GRACE, commit).await {
                        Ok(r) => r.map_err(refused),
                        Err(_) => Err(Refused::ShuttingDown),
                    }
                }))
            }
            None => Accepted::Now(Err(Refused::Output(format!(
                "output {} is not started",
                self.id
            )))),
        }
    }

    fn flush(&self) {
        if let Some(s) = self.started.get() {
            s.buffer.flush_all();
        }
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let starter = self
                .starter
                .lock()
                .ok()
                .and_then(|mut s| s.take())
                .ok_or_else(|| format!("output {} was started twice", self.id))?;
            let sinks = starter().await?;
            let config = self.config.clone();
            let name = self.id.clone();
            // Opening recovers what an earlier run left: file reads and renames, off the
            // async threads.
            let (buffer, report) = tokio::task::spawn_blocking(move || Buffer::open(config, &name))
                .await
                .map_err(|e| format!("opening the buffer of {}: {e}", self.id))?
                .map_err(|e| format!("opening the buffer of {}: {e}", self.id))?;
            if report.staged + report.queued > 0 {
                tracing::info!(
                    output = %self.id,
                    staged = report.staged,
                    queued = report.queued,
                    events = report.records,
                    "recovered buffered chunks; delivering them"
                );
            }
            for (path, cut) in &report.truncated {
                tracing::warn!(output = %self.id, file = %path.display(), bytes = cut, "cut a torn write off a chunk (those bytes were never acknowledged); kept a copy in corrupt/");
            }
            for (path, why) in &report.corrupt {
                tracing::error!(output = %self.id, file = %path.display(), "moved an unreadable chunk to corrupt/: {why}");
            }
            if report.failed_present > 0 {
                tracing::warn!(output = %self.id, chunks = report.failed_present, "chunks wait in failed/ for an operator");
            }
            let timed = |inner: Arc<dyn ChunkSink>, secondary: bool| -> Arc<dyn ChunkSink> {
                Arc::new(TimedSink {
                    inner,
                    stats: Arc::clone(&self.stats),
                    retry: self.config.retry.clone(),
                    secondary,
                    output: self.id.clone(),
                })
            };
            let primary = timed(sinks.primary, false);
            let secondary = sinks.secondary.map(|s| timed(s, true));
            let flusher = spawn_flusher(buffer.clone(), primary, secondary);
            self.started
                .set(Started {
                    buffer,
                    flusher: Mutex::new(Some(flusher)),
                })
                .map_err(|_| format!("output {} was started twice", self.id))
        })
    }

    fn begin_shutdown(&self) {
        self.stopping.cancel();
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.stop(self.config.flush_at_shutdown)
    }

    fn shutdown_for_reload(&self) -> BoxFuture<'_, ()> {
        // A file buffer's chunks stay on disk for the new config's output to recover; a
        // memory buffer has nowhere to keep them, so it flushes as it would at shutdown.
        let flush = !self.config.persistent() && self.config.flush_at_shutdown;
        self.stop(flush)
    }

    fn buffered(&self) -> Option<&BufferedOutput> {
        Some(self)
    }
}

impl BufferedOutput {
    fn stop(&self, flush: bool) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stopping.cancel();
            let Some(s) = self.started.get() else { return };
            s.buffer.shutdown(flush).await;
            let flusher = s.flusher.lock().ok().and_then(|mut f| f.take());
            if let Some(handle) = flusher {
                let _ = handle.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use weir_proto::{EntryRef, EventTime};
    use weir_store::{ChunkRef, WriteError};

    /// Collects every delivered event as (chunk tag, record bytes).
    #[derive(Default)]
    struct Collect(Mutex<Vec<(String, Vec<u8>)>>);

    impl ChunkSink for Collect {
        fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
            Box::pin(async move {
                let tag = chunk.key().tag.clone().unwrap_or_default();
                let mut got = self.0.lock().unwrap();
                for (_, record) in chunk.events() {
                    got.push((tag.clone(), record.to_vec()));
                }
                Ok(())
            })
        }
    }

    fn batch(n: usize) -> EventBatch {
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        for i in 0..n {
            let start = buf.len() as u32;
            buf.extend_from_slice(&[0x81, 0xa1, b'i', i as u8]);
            entries.push(EntryRef {
                time: EventTime::new(1_700_000_000, 0),
                start,
                end: buf.len() as u32,
            });
        }
        EventBatch::new(buf.into(), entries)
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-buffered-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_then_delivers_on_flush_and_at_shutdown() {
        let dir = scratch("deliver");
        let sink = Arc::new(Collect::default());
        let for_start = Arc::clone(&sink);
        let mut cfg = BufferConfig::file(dir.join("buf"));
        cfg.flush_interval = Duration::from_secs(3600);
        let out = BufferedOutput::new(
            "test",
            cfg,
            Box::new(move || {
                Box::pin(async move {
                    Ok(Sinks {
                        primary: for_start as Arc<dyn ChunkSink>,
                        secondary: None,
                    })
                })
            }),
        );
        // Before start, events are refused rather than lost.
        assert!(out.emit("t", &batch(1)).wait().await.is_err());
        out.start().await.unwrap();
        out.emit("t", &batch(3)).wait().await.unwrap();
        assert!(sink.0.lock().unwrap().is_empty(), "nothing is due yet");
        out.flush();
        for _ in 0..200 {
            if sink.0.lock().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.0.lock().unwrap().len(), 3);
        out.emit("u", &batch(2)).wait().await.unwrap();
        out.shutdown().await;
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(got.len(), 5, "flush_at_shutdown delivers the rest");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Fails every write while `fail` is set.
    struct Flaky {
        fail: std::sync::atomic::AtomicBool,
        inner: Collect,
    }

    impl ChunkSink for Flaky {
        fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
            if self.fail.load(Ordering::SeqCst) {
                return Box::pin(async { Err(WriteError::Retryable("down".into())) });
            }
            self.inner.write(chunk)
        }
    }

    fn output_with(sink: Arc<dyn ChunkSink>, cfg: BufferConfig) -> BufferedOutput {
        BufferedOutput::new(
            "t",
            cfg,
            Box::new(move || {
                Box::pin(async move {
                    Ok(Sinks {
                        primary: sink,
                        secondary: None,
                    })
                })
            }),
        )
    }

    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_stats_count_failures_and_the_retry_clears_on_success() {
        let sink = Arc::new(Flaky {
            fail: std::sync::atomic::AtomicBool::new(true),
            inner: Collect::default(),
        });
        let mut cfg = BufferConfig::memory();
        cfg.flush_interval = Duration::from_secs(3600);
        cfg.retry.wait = 0.05;
        cfg.retry.randomize = false;
        let out = output_with(Arc::clone(&sink) as Arc<dyn ChunkSink>, cfg);
        out.start().await.unwrap();
        out.emit("t", &batch(2)).wait().await.unwrap();
        out.flush();
        let stats = out.write_stats();
        until(|| stats.num_errors.get() >= 2).await;
        assert!(stats.num_errors.get() >= 2);
        assert_eq!(stats.rollback_count.get(), stats.num_errors.get());
        let retry = stats.retry().expect("a retry is in progress");
        assert!(retry.next_time > retry.start, "{retry:?}");
        sink.fail.store(false, Ordering::SeqCst);
        until(|| sink.inner.0.lock().unwrap().len() == 2).await;
        until(|| stats.retry().is_none()).await;
        assert_eq!(stats.retry(), None, "success clears the retry");
        assert_eq!(
            stats.write_count.get(),
            stats.num_errors.get() + 1,
            "every try is counted"
        );
        assert_eq!(stats.latency.snapshot().count, stats.write_count.get());
        out.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_buffer_is_unhealthy_until_it_drains() {
        let sink = Arc::new(Collect::default());
        let mut cfg = BufferConfig::memory();
        cfg.flush_interval = Duration::from_secs(3600);
        cfg.chunk_limit_size = 64;
        cfg.total_limit_size = 64;
        let out = output_with(sink, cfg);
        out.start().await.unwrap();
        assert_eq!(out.health(), Ok(()));
        let mut refused = false;
        for _ in 0..20 {
            if out.emit("t", &batch(2)).wait().await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a 64-byte buffer fills");
        let why = out.health().expect_err("a full buffer is not healthy");
        assert!(why.contains("buffer full"), "{why}");
        out.flush();
        let mut healthy = false;
        for _ in 0..500 {
            if out.health().is_ok() {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(healthy, "healthy again once delivery frees room");
        out.shutdown().await;
    }
}
