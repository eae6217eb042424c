//! `@type relabel`: sends events, tag unchanged, to the label its `@label` names, like Fluentd's
//! out_relabel.

use weir_proto::EventBatch;

use crate::pipeline::{Accepted, LabelId, Output, Refused, Router};

/// Re-emits events into another label.
pub struct RelabelOutput {
    id: String,
    label: LabelId,
}

impl RelabelOutput {
    /// A relabel output sending to `label`.
    pub fn new(id: impl Into<String>, label: LabelId) -> Self {
        RelabelOutput {
            id: id.into(),
            label,
        }
    }
}

impl Output for RelabelOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn emit(&self, _tag: &str, _events: &EventBatch) -> Accepted {
        Accepted::Now(Err(Refused::Output(
            "relabel needs the pipeline's router".into(),
        )))
    }

    fn emit_routed(&self, tag: &str, events: &EventBatch, router: &Router<'_>) -> Accepted {
        router.emit(self.label, tag, events)
    }
}
