//! weir's formatters: the text (or msgpack) each output writes for an event, byte for byte
//! what Fluentd writes for the same record and configuration.
//!
//! This crate owns:
//!
//! * the [`Formatter`] trait and Fluentd's formatters `ltsv`, `json`, `msgpack`,
//!   `single_value`, `csv`, `tsv`, `out_file` and `hash` ([`formatters`]), built from a
//!   `<format>` section or the v0.12 flat parameters by [`formatter_from_section`];
//! * `<inject>` ([`Inject`]): adding hostname, worker id, tag and time keys to a record,
//!   msgpack in and msgpack out, including the v0.12 `include_time_key` style;
//! * Ruby-compatible time formatting ([`strftime`], [`TimeZoneSpec`], [`TimeFormatter`]),
//!   also meant for time-sliced file names and object keys;
//! * Ruby's `to_s`/`inspect` of record values ([`ruby`]), which the text formatters share.
//!
//! Records are msgpack map bytes as `weir_proto` delivers them; formatters read them in place
//! and never build a tree. JSON is `weir_proto::record_to_json`. It does not own where the
//! bytes go (files, S3, the terminal): that is the outputs' business.

mod config;
mod error;
pub mod formatters;
mod inject;
pub mod ruby;
mod time;

pub use config::formatter_from_section;
pub use error::FormatError;
pub use inject::Inject;
pub use time::{iso8601_into, strftime, strftime_into, TimeFormatter, TimeType, TimeZoneSpec};

use weir_proto::EventTime;

/// Turns one event into the bytes an output writes for it.
///
/// Implementors write [`Formatter::write`]; callers use [`Formatter::format`], which adds the
/// promise that `out` is untouched on failure.
pub trait Formatter: Send + Sync {
    /// Appends the formatted event to `out`. `record` is one msgpack map. On error this may
    /// leave partial output in `out`; [`Formatter::format`] removes it.
    fn write(
        &self,
        tag: &str,
        time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError>;

    /// Appends the formatted event to `out`. `record` is one msgpack map. On error `out` is
    /// left as it was and the caller should drop the event or report it.
    fn format(
        &self,
        tag: &str,
        time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let start = out.len();
        let r = self.write(tag, time, record, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }
}

/// True when what `formatter` (after `inject`) writes for an event depends on its tag: one
/// record formatted under two tags differs. Outputs use it to know whether their buffer must
/// keep each event's tag.
pub fn writes_tag(formatter: &dyn Formatter, inject: Option<&Inject>) -> bool {
    let record: &[u8] = &[0x81, 0xa1, b'a', 0x01]; // {"a": 1}
    let time = EventTime::new(1_293_974_055, 0);
    let line = |tag: &str| {
        let mut rec = Vec::new();
        let r: &[u8] = match inject {
            Some(i) => {
                if i.apply(tag, time, record, &mut rec).is_err() {
                    return Vec::new();
                }
                &rec
            }
            None => record,
        };
        let mut out = Vec::new();
        let _ = formatter.format(tag, time, r, &mut out);
        out
    };
    line("weir.probe.a") != line("weir.probe.b")
}
