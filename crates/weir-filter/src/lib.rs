//! Fluentd's filters as weir runs them: `grep`, `record_transformer` and `parser`, plus the
//! rules of the `rewrite_tag_filter` output (which only decides a new tag per record; the
//! server re-emits the records). Each is built from its config section with Fluentd's parameter
//! names, defaults and error messages, and runs over an [`EventBatch`] of msgpack records.
//!
//! Records stay msgpack bytes on the fast path: `grep` and `rewrite_tag_filter` look up only
//! the keys they test, without decoding the rest of the record, and keep the original bytes;
//! `record_transformer` and `parser` decode a record, change it and re-encode only the records
//! they change.
//!
//! This crate owns no I/O and no routing: the server's pipeline calls [`Filter::filter`] and
//! sends the [`ErrorEvent`]s it returns to the `@ERROR` label.

mod accessor;
mod grep;
mod parse;
mod parser_filter;
mod rewrite;
mod transformer;
mod value;

use std::sync::Arc;

use bytes::Bytes;
use weir_config::{ConfigError, Section};
use weir_proto::{EntryRef, EventBatch, EventTime};

pub use accessor::RecordPath;
pub use grep::GrepFilter;
pub use parse::{Parser, ParserConfig};
pub use parser_filter::ParserFilter;
pub use rewrite::{RewriteRules, RewriteTagConfig};
pub use transformer::RecordTransformer;
pub use value::{ruby_regex, ruby_to_s};

/// A filter: takes a tag's events, returns those that go on (possibly changed) and the ones
/// that failed (for the `@ERROR` label). Filters never block and never fail as a whole.
pub trait Filter: Send + Sync + 'static {
    /// The plugin's id (`@id`) or a generated one, for logs.
    fn id(&self) -> &str;

    /// The plugin's type, for the routing plan.
    fn type_name(&self) -> &str;

    /// Filters one batch of events that all carry `tag`.
    fn filter(&self, tag: &str, events: EventBatch) -> Filtered;
}

/// What a filter returns.
#[derive(Debug, Default)]
pub struct Filtered {
    /// The events that go on, in order.
    pub events: EventBatch,
    /// Events the filter could not process, with the reason (Fluentd's `emit_error_event`).
    pub errors: Vec<ErrorEvent>,
}

impl Filtered {
    /// Only passing events, no errors.
    pub fn pass(events: EventBatch) -> Self {
        Filtered {
            events,
            errors: Vec::new(),
        }
    }
}

/// An event a filter could not process.
#[derive(Debug, Clone)]
pub struct ErrorEvent {
    /// The event's time.
    pub time: EventTime,
    /// The record as it reached the filter (one msgpack map).
    pub record: Bytes,
    /// Why it failed, for the log.
    pub error: String,
}

/// Builds a new batch from records that may come from the old buffer or be new bytes.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    entries: Vec<EntryRef>,
}

impl BatchBuilder {
    /// A builder with room for `events` events of about `bytes` bytes in total.
    pub fn with_capacity(events: usize, bytes: usize) -> Self {
        BatchBuilder {
            buf: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(events),
        }
    }

    /// Appends one event by copying its record bytes.
    pub fn push(&mut self, time: EventTime, record: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(record);
        self.push_end(time, start);
    }

    /// Appends one event whose record is written by `write` straight into the buffer.
    pub fn push_with(&mut self, time: EventTime, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        write(&mut self.buf);
        self.push_end(time, start);
    }

    fn push_end(&mut self, time: EventTime, start: usize) {
        // Batches are bounded by the request size limit, far below 4 GiB; a record past that is
        // dropped rather than given a wrong range.
        if let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(self.buf.len())) {
            self.entries.push(EntryRef { time, start, end });
        }
    }

    /// The finished batch.
    pub fn finish(self) -> EventBatch {
        EventBatch::new(Bytes::from(self.buf), self.entries)
    }
}

/// A built filter and its type name.
pub type BuiltFilter = Arc<dyn Filter>;

/// The filter types weir supports, for error messages.
pub const FILTER_TYPES: &[&str] = &["grep", "record_transformer", "parser"];

/// Builds the filter `@type type_name` from its `<filter>` section. `None` when weir has no such
/// filter. Things Fluentd would only warn about are added to `warnings`.
pub fn build_filter(
    type_name: &str,
    s: &mut Section<'_>,
    id: String,
    warnings: &mut Vec<ConfigError>,
) -> Option<Result<BuiltFilter, Vec<ConfigError>>> {
    let built: Result<BuiltFilter, Vec<ConfigError>> = match type_name {
        "grep" => GrepFilter::from_section(s, id, warnings).map(|f| Arc::new(f) as BuiltFilter),
        "record_transformer" => {
            RecordTransformer::from_section(s, id, warnings).map(|f| Arc::new(f) as BuiltFilter)
        }
        "parser" => ParserFilter::from_section(s, id, warnings).map(|f| Arc::new(f) as BuiltFilter),
        _ => return None,
    };
    Some(built)
}

/// Adds Fluentd's "not used" warnings for a section's parameters and child sections that were
/// never read.
pub fn warn_unused(s: &Section<'_>, warnings: &mut Vec<ConfigError>) {
    // Worded as Fluentd words it; the context is in the message, not repeated before it.
    for p in s.unused() {
        warnings.push(ConfigError::at(
            p.location.clone(),
            format!("parameter '{}' in {} is not used.", p.key, s.context()),
        ));
    }
    for e in s.unused_sections() {
        warnings.push(ConfigError::at(
            e.location.clone(),
            format!("section <{}> in {} is not used.", e.name, s.context()),
        ));
    }
}

/// Reads a required string parameter, pushing the error.
pub(crate) fn required(s: &mut Section<'_>, key: &str, errors: &mut Vec<ConfigError>) -> String {
    match s.required_string(key) {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            String::new()
        }
    }
}

/// Reads an optional typed parameter, pushing the error.
pub(crate) fn opt<T>(
    r: Result<Option<T>, ConfigError>,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match r {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// Fails with `errors` when there are any.
pub(crate) fn done<T>(value: T, errors: Vec<ConfigError>) -> Result<T, Vec<ConfigError>> {
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use weir_config::Element;
    use weir_proto::{json_to_msgpack, EventBatch, EventTime};

    /// Parses a config snippet and returns its first element.
    pub fn element(text: &str) -> Element {
        let root = weir_config::parse_str(text, "test.conf", std::path::Path::new("."))
            .expect("test config parses");
        root.elements.into_iter().next().expect("one element")
    }

    /// A batch of JSON records at time 1000.
    pub fn batch(records: &[&str]) -> EventBatch {
        let mut b = crate::BatchBuilder::default();
        for r in records {
            let v: serde_json::Value = serde_json::from_str(r).expect("json");
            b.push_with(EventTime::new(1000, 0), |out| json_to_msgpack(&v, out));
        }
        b.finish()
    }

    /// The records of a batch as JSON text.
    pub fn json(batch: &EventBatch) -> Vec<String> {
        batch
            .iter()
            .map(|(_, r)| {
                let mut out = Vec::new();
                weir_proto::record_to_json(r, &mut out).expect("record");
                String::from_utf8(out).expect("utf8")
            })
            .collect()
    }
}
