//! `@type null`: accepts events and throws them away, like Fluentd's out_null.

use std::sync::atomic::{AtomicU64, Ordering};

use weir_proto::EventBatch;

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
