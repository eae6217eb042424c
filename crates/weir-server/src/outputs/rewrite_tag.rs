//! `@type rewrite_tag_filter`: gives each record a new tag by its `<rule>`s and re-emits it,
//! into the output's own label or the one its `@label` names.

use weir_filter::RewriteRules;
use weir_proto::EventBatch;

use crate::pipeline::{Accepted, LabelId, Output, Refused, Router};

/// Re-tags and re-emits records.
pub struct RewriteTagOutput {
    id: String,
    rules: RewriteRules,
    label: LabelId,
}

impl RewriteTagOutput {
    /// An output applying `rules` and re-emitting into `label`.
    pub fn new(id: impl Into<String>, rules: RewriteRules, label: LabelId) -> Self {
        RewriteTagOutput {
            id: id.into(),
            rules,
            label,
        }
    }
}

impl Output for RewriteTagOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn emit(&self, _tag: &str, _events: &EventBatch) -> Accepted {
        Accepted::Now(Err(Refused::Output(
            "rewrite_tag_filter needs the pipeline's router".into(),
        )))
    }

    fn emit_routed(&self, tag: &str, events: &EventBatch, router: &Router<'_>) -> Accepted {
        // Group records by their new tag, keeping their order within each tag. Most batches
        // go to one or a few tags, so a small list beats a map.
        let mut groups: Vec<(String, Vec<weir_proto::EntryRef>)> = Vec::new();
        let buf = events.buffer();
        for e in events.entries() {
            let record = buf.get(e.start as usize..e.end as usize).unwrap_or(&[]);
            let Some(new_tag) = self.rules.rewrite(tag, record) else {
                continue;
            };
            match groups.iter_mut().find(|(t, _)| *t == new_tag) {
                Some((_, v)) => v.push(*e),
                None => groups.push((new_tag, vec![*e])),
            }
        }
        Accepted::all(
            groups
                .into_iter()
                .map(|(t, entries)| {
                    // Same buffer, a subset of entries: no record is copied.
                    let batch = EventBatch::new(buf.clone(), entries);
                    router.emit(self.label, &t, &batch)
                })
                .collect(),
        )
    }
}
