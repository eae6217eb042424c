//! `@type null`: accepts events and throws them away, like Fluentd's out_null. Without a
//! `<buffer>` section it drops events as they come ([`NullOutput`]); with one, events go
//! through the buffer like any buffered output's and the chunks are thrown away when they are
//! delivered ([`NullSink`]), which is how Fluentd's out_null tests buffering. `never_flush`
//! makes every delivery fail, as in Fluentd.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use weir_proto::EventBatch;
use weir_store::{ChunkRef, ChunkSink, WriteError};

use crate::pipeline::{Accepted, Output};

/// Discards every event it is given, counting them.
pub struct NullOutput {
    id: String,
    events: AtomicU64,
}

impl NullOutput {
    /// A null output with the given plugin id.
    pub fn new(id: impl Into<String>) -> Self {
        NullOutput {
            id: id.into(),
            events: AtomicU64::new(0),
        }
    }

    /// How many events were discarded.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

impl Output for NullOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn emit(&self, _tag: &str, events: &EventBatch) -> Accepted {
        self.events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Accepted::ok()
    }
}

/// The chunk writer of a buffered `null` output: delivering a chunk discards it, without
/// reading it; with `never_flush`, delivering fails (retryably), as Fluentd's does.
pub struct NullSink {
    never_flush: bool,
}

impl NullSink {
    /// A sink that discards chunks, or with `never_flush` refuses them.
    pub fn new(never_flush: bool) -> Self {
        NullSink { never_flush }
    }
}

impl ChunkSink for NullSink {
    fn write<'a>(&'a self, _chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        let never_flush = self.never_flush;
        Box::pin(async move {
            if never_flush {
                return Err(WriteError::Retryable(
                    "failed to flush (never_flush is set)".into(),
                ));
            }
            Ok(())
        })
    }

    fn reads_whole_chunk(&self) -> bool {
        false
    }
}
