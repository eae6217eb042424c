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

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_proto::EventBatch;
use weir_store::{spawn_flusher, Buffer, BufferConfig, ChunkSink, StoreError};

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

/// An output plugin with a `<buffer>`.
pub struct BufferedOutput {
    id: String,
    config: BufferConfig,
    starter: Mutex<Option<SinkStarter>>,
    started: OnceLock<Started>,
    stopping: CancellationToken,
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
        }
    }

    /// The buffer, once started (for counters and tests).
    pub fn buffer(&self) -> Option<&Buffer> {
        self.started.get().map(|s| &s.buffer)
    }
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
                Accepted::Pending(Box::pin(async move {
                    tokio::select! {
                        biased;
                        r = &mut commit => return r.map_err(refused),
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
            let flusher = spawn_flusher(buffer.clone(), sinks.primary, sinks.secondary);
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
        Box::pin(async move {
            self.stopping.cancel();
            let Some(s) = self.started.get() else { return };
            s.buffer.shutdown(self.config.flush_at_shutdown).await;
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
}
