//! How a tailed event is written: one line, made by the same `weir-format` formatter a file
//! output uses, so a line reads exactly as the file would hold it.
//!
//! * `out_file`: `TIME<TAB>TAG<TAB>JSON`, the default of Fluentd's `out_file` (time in ISO 8601
//!   in the aggregator's local time zone).
//! * `ltsv` and `json`: the record with `tag` and `time` added as a file output with
//!   `<inject> tag_key tag; time_key time; time_type string </inject>` adds them (the tag and
//!   ISO 8601 local time; a record's own `tag` or `time` key shows the injected value instead,
//!   in its own place).

use weir_format::formatters::{Json, Ltsv, OutFile};
use weir_format::{FormatError, Formatter, Inject, TimeFormatter, TimeType, TimeZoneSpec};
use weir_proto::EventTime;

/// The line formats a subscriber may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// Labeled tab-separated values, with `tag` and `time` labels.
    Ltsv,
    /// One JSON object per line, with `tag` and `time` keys.
    Json,
    /// `time<TAB>tag<TAB>json`.
    OutFile,
}

impl LineFormat {
    /// Reads `ltsv`, `json` or `out_file`.
    pub fn parse(s: &str) -> Option<LineFormat> {
        match s {
            "ltsv" => Some(LineFormat::Ltsv),
            "json" => Some(LineFormat::Json),
            "out_file" => Some(LineFormat::OutFile),
            _ => None,
        }
    }

    /// The name [`LineFormat::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            LineFormat::Ltsv => "ltsv",
            LineFormat::Json => "json",
            LineFormat::OutFile => "out_file",
        }
    }

    /// The HTTP content type of a stream of these lines.
    pub fn content_type(self) -> &'static str {
        match self {
            LineFormat::Json => "application/x-ndjson",
            LineFormat::Ltsv | LineFormat::OutFile => "text/plain; charset=utf-8",
        }
    }
}

/// Writes events as lines in one [`LineFormat`].
pub struct LineWriter {
    formatter: Box<dyn Formatter>,
    inject: Option<Inject>,
    scratch: Vec<u8>,
}

impl LineWriter {
    /// A writer for `format`.
    pub fn new(format: LineFormat) -> LineWriter {
        let injected = || {
            Some(Inject::new(
                Some("tag".into()),
                Some(("time".into(), TimeType::String, None, TimeZoneSpec::Local)),
            ))
        };
        let (formatter, inject): (Box<dyn Formatter>, _) = match format {
            LineFormat::Ltsv => (Box::new(Ltsv::default()), injected()),
            LineFormat::Json => (
                Box::new(Json {
                    add_newline: true,
                    newline: b"\n",
                }),
                injected(),
            ),
            LineFormat::OutFile => (
                Box::new(OutFile {
                    output_time: true,
                    output_tag: true,
                    delimiter: b'\t',
                    time: TimeFormatter::new(TimeType::String, None, TimeZoneSpec::Local),
                    newline: b"\n",
                }),
                None,
            ),
        };
        LineWriter {
            formatter,
            inject,
            scratch: Vec::new(),
        }
    }

    /// Appends one event's line to `out`. On error `out` is unchanged.
    pub fn write(
        &mut self,
        tag: &str,
        time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        match &self.inject {
            Some(inject) => {
                self.scratch.clear();
                inject.apply(tag, time, record, &mut self.scratch)?;
                self.formatter.format(tag, time, &self.scratch, out)
            }
            None => self.formatter.format(tag, time, record, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::record;

    fn line(format: LineFormat, json: &str) -> String {
        let mut out = Vec::new();
        LineWriter::new(format)
            .write("app.web", EventTime::new(0, 0), &record(json), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_format_is_one_line_with_tag_and_time() {
        let ltsv = line(LineFormat::Ltsv, r#"{"level":"error","msg":"a\tb"}"#);
        assert!(
            ltsv.starts_with("level:error\tmsg:a b\ttag:app.web\ttime:19"),
            "{ltsv}"
        );
        assert!(ltsv.ends_with('\n') && ltsv.matches('\n').count() == 1);
        let json = line(LineFormat::Json, r#"{"level":"error"}"#);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["tag"], "app.web");
        assert!(v["time"].as_str().unwrap().starts_with("19"));
        let out_file = line(LineFormat::OutFile, r#"{"level":"error"}"#);
        let parts: Vec<_> = out_file.trim_end().split('\t').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0].starts_with("19"));
        assert_eq!(parts[1], "app.web");
        assert_eq!(parts[2], r#"{"level":"error"}"#);
    }

    #[test]
    fn names_round_trip() {
        for f in [LineFormat::Ltsv, LineFormat::Json, LineFormat::OutFile] {
            assert_eq!(LineFormat::parse(f.name()), Some(f));
        }
        assert_eq!(LineFormat::parse("csv"), None);
    }

    #[test]
    fn a_record_that_is_not_a_map_is_an_error() {
        let mut out = b"kept".to_vec();
        let mut w = LineWriter::new(LineFormat::OutFile);
        assert!(w
            .write("t", EventTime::new(0, 0), &[0x01], &mut out)
            .is_err());
        assert_eq!(out, b"kept");
    }
}
