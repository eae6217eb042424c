//! `@type copy`: gives every event to each `<store>`, like Fluentd's out_copy. Records are
//! immutable bytes in weir, so every `copy_mode` gives each store an independent copy; the mode
//! is accepted and changes nothing.

use std::sync::Arc;

use weir_proto::EventBatch;

use crate::pipeline::{Accepted, Output, Router};

/// One `<store>`.
pub struct CopyStore {
    /// The store's output.
    pub output: Arc<dyn Output>,
    /// `<store ignore_error>`: a refusal from this store is logged and does not hold back the
    /// ack.
    pub ignore_error: bool,
}

/// Sends each event to every store; the events are accepted when every store (other than those
/// with `ignore_error`) accepts them.
pub struct CopyOutput {
    id: String,
    stores: Vec<CopyStore>,
}

impl CopyOutput {
    /// A copy output over `stores`.
    pub fn new(id: impl Into<String>, stores: Vec<CopyStore>) -> Self {
        CopyOutput {
            id: id.into(),
            stores,
        }
    }

    fn each(&self, mut emit: impl FnMut(&dyn Output) -> Accepted) -> Accepted {
        Accepted::all(
            self.stores
                .iter()
                .map(|s| {
                    let a = emit(s.output.as_ref());
                    if s.ignore_error {
                        Accepted::IgnoreError(Box::new(a), s.output.id().to_string())
                    } else {
                        a
                    }
                })
                .collect(),
        )
    }
}

impl Output for CopyOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
        self.each(|o| o.emit(tag, events))
    }

    fn emit_routed(&self, tag: &str, events: &EventBatch, router: &Router<'_>) -> Accepted {
        self.each(|o| o.emit_routed(tag, events, router))
    }

    fn flush(&self) {
        for s in &self.stores {
            s.output.flush();
        }
    }
}
