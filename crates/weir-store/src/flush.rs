//! Delivering queued chunks: the [`ChunkSink`] outputs implement and the flusher loop.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::error::{StoreError, WriteError};
use crate::retry::RetryState;
use crate::store::{lock, Buffer, ChunkRef, Inner, DRAIN, RUNNING, STOP};

/// How much the nice value of delivery work is raised above the rest of weir's: under CPU
/// contention the threads that read, parse, commit and ack requests run first, and delivery
/// (formatting, compressing, writing out chunks) takes what is left, about a quarter of a busy
/// core at 5. Delivery never stops: a backlog waits in the buffer, whose limits then slow the
/// senders down. Like a database's compaction threads, it is the work that can wait.
pub const DELIVERY_NICE: i32 = 5;

/// Runs blocking work of a [`ChunkSink::write`] (reading a chunk file, an fsync, formatting,
/// compressing) without stalling the runtime's other tasks, on a thread of its own whose CPU
/// priority is lowered by [`DELIVERY_NICE`] (a thread may always lower its own priority; it
/// could not raise it back, so the work does not run on a runtime thread). The calling thread
/// waits in `block_in_place` on a multi-thread runtime, plainly otherwise. If no thread can be
/// started, `f` runs on the calling thread. A panic in `f` is resumed on the calling thread.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| at_delivery_priority(f))
        }
        _ => at_delivery_priority(f),
    }
}

fn at_delivery_priority<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let slot = Mutex::new(Some(f));
    let ran = std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("weir-delivery".into())
            .spawn_scoped(s, || {
                // SAFETY: nice(2) only changes the calling thread's nice value on Linux.
                // Failing (it cannot, when raising it) leaves the priority as it was.
                unsafe { libc::nice(DELIVERY_NICE) };
                lock(&slot).take().map(|f| f())
            });
        match spawned {
            Ok(h) => match h.join() {
                Ok(out) => out,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => {
                tracing::debug!("cannot start a delivery thread ({e}); delivering on this one");
                None
            }
        }
    });
    match ran {
        Some(out) => out,
        None => match lock(&slot).take() {
            Some(f) => f(),
            None => unreachable!("the delivery thread took the work but returned nothing"),
        },
    }
}

/// Where chunks go: an output (file, S3, forward) implements this.
pub trait ChunkSink: Send + Sync + 'static {
    /// Writes one chunk. `Ok` means the chunk may be deleted from the buffer. The future is
    /// given `delayed_commit_timeout` to finish; past that it counts as a retryable failure.
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>>;

    /// True (the default) when the sink reads the chunk with [`ChunkRef::blob`],
    /// [`ChunkRef::stored`] or [`ChunkRef::events`], which hold the whole chunk in memory: the
    /// flusher then loads it off the async threads before calling [`ChunkSink::write`] (and a
    /// chunk that cannot be read goes to `failed/` without being written). A sink that reads
    /// with [`ChunkRef::reader`] or [`ChunkRef::event_reader`] returns false, and the chunk is
    /// not loaded.
    fn reads_whole_chunk(&self) -> bool {
        true
    }
}

fn rand01() -> f64 {
    rand::random::<f64>()
}

struct Flusher {
    buffer: Buffer,
    sink: Arc<dyn ChunkSink>,
    secondary: Option<Arc<dyn ChunkSink>>,
    retry: Mutex<Option<RetryState>>,
}

/// Starts the flusher of a buffer: one task that enqueues staged chunks when they are due
/// (`flush_mode`, checked every `flush_thread_interval`) and `flush_thread_count` tasks that
/// deliver queued chunks to `sink`, retrying on the schedule of the `<buffer>` retry
/// parameters and switching to `secondary` at `retry_secondary_threshold`. A chunk whose
/// retries (and secondary) are exhausted, or that fails with [`WriteError::Unrecoverable`]
/// everywhere, is moved to `failed/` with an error line. The returned handle finishes after
/// [`Buffer::shutdown`]. Must be called inside a tokio runtime.
pub fn spawn_flusher(
    buffer: Buffer,
    sink: Arc<dyn ChunkSink>,
    secondary: Option<Arc<dyn ChunkSink>>,
) -> JoinHandle<()> {
    let inner = Arc::clone(&buffer.inner);
    let threads = inner.cfg.flush_thread_count.max(1);
    inner.workers.fetch_add(threads, Ordering::SeqCst);
    let f = Arc::new(Flusher {
        buffer,
        sink,
        secondary,
        retry: Mutex::new(None),
    });
    let mut handles = Vec::new();
    {
        let inner = Arc::clone(&inner);
        handles.push(tokio::spawn(async move {
            let every = inner.cfg.flush_thread_interval;
            while inner.mode.load(Ordering::SeqCst) == RUNNING {
                let woken = inner.work.notified();
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = woken => {}
                }
                if inner.mode.load(Ordering::SeqCst) == RUNNING {
                    inner.enqueue_due(inner.clock.now());
                }
            }
        }));
    }
    for _ in 0..threads {
        let f = Arc::clone(&f);
        handles.push(tokio::spawn(async move {
            f.worker().await;
            let inner = &f.buffer.inner;
            inner.workers.fetch_sub(1, Ordering::SeqCst);
            inner.workers_done.notify_waiters();
        }));
    }
    tokio::spawn(async move {
        for h in handles {
            let _ = h.await;
        }
    })
}

impl Flusher {
    fn inner(&self) -> &Arc<Inner> {
        &self.buffer.inner
    }

    async fn worker(&self) {
        let inner = Arc::clone(self.inner());
        loop {
            let mode = inner.mode.load(Ordering::SeqCst);
            if mode == STOP {
                return;
            }
            let woken = inner.work.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if mode == RUNNING {
                let next = lock(&self.retry).as_ref().map(|r| r.next_time());
                if let Some(next) = next {
                    if inner.clock.now() < next {
                        tokio::select! {
                            _ = tokio::time::sleep_until(inner.clock.instant_of(next)) => {}
                            _ = &mut woken => {}
                        }
                        continue;
                    }
                }
            }
            let Some(chunk) = inner.take_next() else {
                if mode == DRAIN {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(inner.cfg.flush_thread_interval) => {}
                    _ = woken => {}
                }
                continue;
            };
            let cref = ChunkRef::new(Arc::clone(&inner), Arc::clone(&chunk));
            if cref.records() == 0 {
                inner.purge(&chunk);
                continue;
            }
            let now = inner.clock.now();
            let to_secondary = self.secondary.is_some()
                && lock(&self.retry).as_ref().is_some_and(|r| r.secondary(now));
            let dest = match (&self.secondary, to_secondary) {
                (Some(s), true) => Arc::clone(s),
                _ => Arc::clone(&self.sink),
            };
            let cref = if dest.reads_whole_chunk() {
                match Self::load(cref).await {
                    Ok(c) => c,
                    Err(None) => {
                        inner.takeback(chunk);
                        continue;
                    }
                    Err(Some(e)) => {
                        inner.fail(&chunk, true, &format!("cannot read it back: {e}"));
                        continue;
                    }
                }
            } else {
                cref
            };
            let result = self.write_to(&dest, &cref).await;
            // A chunk that could not be read back is never counted as delivered, whatever the
            // output made of it; it is kept in failed/ as before.
            if let Some(e) = cref.read_error() {
                inner.fail(&chunk, true, &format!("cannot read it back: {e}"));
                continue;
            }
            match result {
                Ok(()) => {
                    inner.purge(&chunk);
                    *lock(&self.retry) = None;
                }
                Err(WriteError::Unrecoverable(m)) => {
                    tracing::warn!(buffer = %inner.name, chunk_id = %cref.id(), "unrecoverable error: {m}");
                    let rescued = match (&self.secondary, to_secondary) {
                        (Some(s), false) => match self.write_secondary(s, &cref).await {
                            Ok(()) if cref.read_error().is_none() => true,
                            Ok(()) => false,
                            Err(e) => {
                                tracing::warn!(buffer = %inner.name, chunk_id = %cref.id(), "secondary failed too: {e}");
                                false
                            }
                        },
                        _ => false,
                    };
                    if rescued {
                        inner.purge(&chunk);
                    } else {
                        inner.fail(&chunk, true, &format!("unrecoverable error: {m}"));
                    }
                }
                Err(WriteError::Retryable(m)) => {
                    let now = inner.clock.now();
                    let limit = {
                        let mut r = lock(&self.retry);
                        match r.as_mut() {
                            None => {
                                let mut params = inner.cfg.retry.clone();
                                params.secondary = self.secondary.is_some();
                                *r = Some(RetryState::new(params, now));
                            }
                            Some(s) if now >= s.next_time() => s.step(now, rand01()),
                            Some(s) => s.recalc(now, rand01()),
                        }
                        let limit = r.as_ref().is_some_and(RetryState::limit);
                        if let Some(s) = r.as_ref() {
                            tracing::warn!(
                                buffer = %inner.name,
                                chunk_id = %cref.id(),
                                retry_times = s.steps(),
                                next_retry_in = s.next_time() - now,
                                "failed to flush the buffer: {m}"
                            );
                        }
                        if limit {
                            *r = None;
                        }
                        limit
                    };
                    if limit {
                        inner.fail(&chunk, true, "hit the retry limit");
                        let n = inner
                            .fail_queue("hit the retry limit (queue cleared, as Fluentd does)");
                        tracing::error!(
                            buffer = %inner.name,
                            "failed to flush the buffer and hit the limit for retries; {} chunk(s) moved to failed/",
                            n + 1
                        );
                    } else {
                        inner.takeback(chunk);
                        if mode == DRAIN {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Loads a whole chunk for a sink that reads it whole, off the async threads for a file
    /// buffer. `Err(None)` when the loading task itself failed (the chunk is put back).
    async fn load(cref: ChunkRef) -> Result<ChunkRef, Option<StoreError>> {
        if ChunkRef::in_memory(&cref.chunk) {
            return match cref.load() {
                Ok(()) => Ok(cref),
                Err(e) => Err(Some(e)),
            };
        }
        match tokio::task::spawn_blocking(move || {
            let r = cref.load();
            (cref, r)
        })
        .await
        {
            Ok((cref, Ok(()))) => Ok(cref),
            Ok((_, Err(e))) => Err(Some(e)),
            Err(e) => {
                tracing::error!("chunk reader task failed: {e}");
                Err(None)
            }
        }
    }

    /// Writes to the secondary after the primary rejected the chunk, loading it first if the
    /// secondary reads chunks whole.
    async fn write_secondary(
        &self,
        sink: &Arc<dyn ChunkSink>,
        c: &ChunkRef,
    ) -> Result<(), WriteError> {
        if sink.reads_whole_chunk() {
            let load = || c.load();
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let r = if multi && !ChunkRef::in_memory(&c.chunk) {
                tokio::task::block_in_place(load)
            } else {
                load()
            };
            if let Err(e) = r {
                return Err(WriteError::Retryable(format!("cannot read it back: {e}")));
            }
        }
        self.write_to(sink, c).await
    }

    async fn write_to(&self, sink: &Arc<dyn ChunkSink>, c: &ChunkRef) -> Result<(), WriteError> {
        let timeout = self.inner().cfg.delayed_commit_timeout;
        match tokio::time::timeout(timeout, sink.write(c)).await {
            Ok(r) => r,
            Err(_) => Err(WriteError::Retryable(format!(
                "the write did not finish within delayed_commit_timeout ({}s)",
                timeout.as_secs_f64()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_and_tid() -> (i32, libc::pid_t) {
        // SAFETY: plain queries about the calling thread.
        unsafe { (libc::getpriority(libc::PRIO_PROCESS, 0), libc::gettid()) }
    }

    fn check_lowered() {
        let (mine, my_tid) = nice_and_tid();
        let borrowed = [1u64, 2, 3];
        let (theirs, their_tid, sum) = blocking(|| {
            let (n, t) = nice_and_tid();
            (n, t, borrowed.iter().sum::<u64>())
        });
        assert_eq!(sum, 6, "the work ran and borrowed the caller's data");
        assert_ne!(their_tid, my_tid, "the work ran on a thread of its own");
        assert_eq!(theirs, (mine + DELIVERY_NICE).min(19));
        assert_eq!(nice_and_tid().0, mine, "the caller's priority is unchanged");
    }

    #[test]
    fn delivery_work_runs_on_its_own_thread_at_a_lower_priority() {
        check_lowered();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivery_work_on_a_runtime_thread_leaves_that_thread_as_it_was() {
        check_lowered();
    }

    #[test]
    fn a_panic_in_delivery_work_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| blocking(|| -> u32 { panic!("boom") }));
        let panic = r.expect_err("the panic is resumed");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
    }
}
