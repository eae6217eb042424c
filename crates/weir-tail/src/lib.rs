//! weir's live tail: `tail -f | grep` over the events entering an aggregator.
//!
//! This crate owns the server side and the wire format of `weir tail`:
//!
//! * [`Hub`]: the pipeline calls [`Hub::publish`] for every request that enters it; a filter
//!   thread at idle CPU priority (and, on a machine with no CPU to spare, within a small share
//!   of one core) hands each subscriber the lines of the events its
//!   [`TailFilter`] keeps, through a bounded queue of its own; a slow subscriber, or a server
//!   too busy to examine everything, loses events (and the subscriber is told how many)
//!   without ever slowing ingest;
//! * the filters ([`TailFilter`], [`FieldMatch`]): a tag pattern, `key=regex` conditions that
//!   must all match, `key=regex` conditions that exclude, a source id;
//! * the line formats ([`LineFormat`]): `ltsv`, `json` and `out_file`, written by the same
//!   `weir-format` formatters as the file output;
//! * the request as it travels in a URL query ([`TailRequest`]) and the streaming HTTP
//!   endpoint ([`routes`]), which the admin endpoint mounts behind its access token.
//!
//! The stream is lines: event lines, control lines starting with [`CONTROL_PREFIX`]
//! (`# weir: 12 events dropped (slow reader)`, `# weir: 500 events skipped unexamined (server
//! busy)`, `# weir: end (...)`), and empty lines as a heartbeat. It does not own the admin endpoint, its token, or the `weir tail` client.

mod filter;
mod format;
mod http;
mod hub;
mod request;
mod throttle;

pub use filter::{FieldMatch, FilterError, TailFilter};
pub use format::{LineFormat, LineWriter};
pub use http::{routes, TAIL_PATH};
pub use hub::{Hub, HubClosed, HubConfig, Subscription, CONTROL_PREFIX};
pub use request::{RequestError, TailRequest};

#[cfg(test)]
mod testutil {
    //! Records and batches from JSON, for the tests.

    use weir_proto::{EventBatch, EventTime};

    /// One record as msgpack.
    pub fn record(json: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        weir_proto::json_to_msgpack(&v, &mut out);
        out
    }

    /// A batch of these records, all at `sec`.
    pub fn batch_at(sec: u32, records: &[&str]) -> EventBatch {
        let mut b = weir_filter::BatchBuilder::default();
        for r in records {
            b.push(EventTime::new(sec, 0), &record(r));
        }
        b.finish()
    }
}
