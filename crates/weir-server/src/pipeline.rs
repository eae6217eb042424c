//! The pipeline between the listeners and the outputs.
//!
//! A listener hands each decoded request to [`Pipeline::emit`]. The pipeline finds the first
//! `<match>` whose patterns fit the tag and gives the events to that output. The output answers
//! with an [`Accepted`]: either at once, or later, when the events are where it promised to keep
//! them (for a buffered output: on disk, after the group commit). The listener sends the ack
//! only when that answer is `Ok`, so an ack never runs ahead of the output's promise.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use weir_proto::EventBatch;
use weir_route::RouteTable;

/// Why an output did not accept events. The forwarder gets no ack for them and sends them again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The output's buffer has no room (its overflow action is to refuse).
    #[error("buffer full: {0}")]
    BufferFull(String),
    /// Storing the events failed (a full disk, an I/O error).
    #[error("could not store events: {0}")]
    Storage(String),
    /// The output could not write the events.
    #[error("output failed: {0}")]
    Output(String),
    /// weir is shutting down and takes no new events.
    #[error("shutting down")]
    ShuttingDown,
}

/// An output's answer to an emit: now, or once the events are safe.
#[must_use = "the ack must wait for this answer"]
pub enum Accepted {
    /// The answer is known already.
    Now(Result<(), Refused>),
    /// The answer comes when the output has committed the events.
    Later(oneshot::Receiver<Result<(), Refused>>),
    /// Every one of several outputs (a `copy`) must accept.
    All(Vec<Accepted>),
}

impl Accepted {
    /// Accepted at once.
    pub fn ok() -> Self {
        Accepted::Now(Ok(()))
    }

    /// Waits for the answer. An output that went away without answering counts as a refusal.
    pub async fn wait(self) -> Result<(), Refused> {
        match self {
            Accepted::Now(result) => result,
            Accepted::Later(rx) => rx.await.unwrap_or_else(|_| {
                Err(Refused::Output(
                    "the output stopped before committing".into(),
                ))
            }),
            Accepted::All(parts) => {
                // Every part must finish anyway, so waiting in order costs nothing extra.
                for part in parts {
                    Box::pin(part.wait()).await?;
                }
                Ok(())
            }
        }
    }
}

/// Something events can be given to: an output plugin, or a chain of filters in front of one.
pub trait Output: Send + Sync + 'static {
    /// The plugin's id (`@id`) or a generated one, for logs and metrics.
    fn id(&self) -> &str;

    /// Takes the events of one request. Must not block: a slow output answers `Later`.
    fn emit(&self, tag: &str, events: &EventBatch) -> Accepted;

    /// Writes out whatever the output holds back (SIGUSR1, shutdown). Outputs that hold nothing
    /// back do nothing.
    fn flush(&self) {}
}

/// How many distinct unmatched tags are remembered for the once-per-tag warning.
const UNMATCHED_TAGS_REMEMBERED: usize = 4096;

/// Routes requests to outputs by tag, first match wins, as Fluentd's `<match>` does.
pub struct Pipeline {
    table: RouteTable<Arc<dyn Output>>,
    outputs: Vec<Arc<dyn Output>>,
    unmatched_tags: Mutex<HashSet<String>>,
    unmatched_events: AtomicU64,
}

impl Pipeline {
    /// Builds a pipeline from `<match>` entries in file order.
    pub fn new(entries: Vec<(weir_route::PatternSet, Arc<dyn Output>)>) -> Self {
        let outputs = entries.iter().map(|(_, o)| Arc::clone(o)).collect();
        Pipeline {
            table: RouteTable::new(entries),
            outputs,
            unmatched_tags: Mutex::new(HashSet::new()),
            unmatched_events: AtomicU64::new(0),
        }
    }

    /// Routes one request's events. Events whose tag matches no `<match>` are dropped and
    /// counted, with one warning per tag, as Fluentd does; they still count as accepted, because
    /// sending them again would not change where they go.
    pub fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
        if events.is_empty() {
            return Accepted::ok();
        }
        match self.table.lookup(tag) {
            Some(output) => output.emit(tag, events),
            None => {
                self.unmatched_events
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                let first_time = match self.unmatched_tags.lock() {
                    Ok(mut seen) if seen.len() < UNMATCHED_TAGS_REMEMBERED => {
                        seen.insert(tag.to_string())
                    }
                    // Past the bound, stay quiet rather than warn on every request.
                    Ok(_) | Err(_) => false,
                };
                if first_time {
                    tracing::warn!(tag, "no patterns matched");
                }
                Accepted::ok()
            }
        }
    }

    /// Events dropped because no `<match>` fitted their tag.
    pub fn unmatched_events(&self) -> u64 {
        self.unmatched_events.load(Ordering::Relaxed)
    }

    /// Asks every output to write out what it holds back.
    pub fn flush(&self) {
        for output in &self.outputs {
            output.flush();
        }
    }

    /// The outputs, in `<match>` order.
    pub fn outputs(&self) -> &[Arc<dyn Output>] {
        &self.outputs
    }
}
