//! `@type stdout`: prints each event as Fluentd's out_stdout does:
//! `2026-11-21 16:10:00.123456789 +0000 app.access: {"msg":"hi"}`, one line per event, the event
//! time in the local time zone. Each request's lines go out in one write followed by a flush, so
//! they appear promptly when stdout is a file or a pipe, and lines of concurrent requests never
//! interleave.

use std::io::Write;

use chrono::{Local, TimeZone};
use weir_proto::{record_to_json, EventBatch, EventTime};

use crate::pipeline::{Accepted, Output, Refused};

/// Prints events to the process's standard output.
pub struct StdoutOutput {
    id: String,
}

impl StdoutOutput {
    /// A stdout output with the given plugin id.
    pub fn new(id: impl Into<String>) -> Self {
        StdoutOutput { id: id.into() }
    }
}

/// Formats one event as out_stdout's line, newline included.
pub fn format_line(out: &mut Vec<u8>, tag: &str, time: EventTime, record: &[u8]) {
    match Local.timestamp_opt(i64::from(time.sec), time.nsec).single() {
        Some(t) => {
            // `write!` into a Vec cannot fail.
            let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S.%9f %z"));
        }
        None => {
            let _ = write!(out, "{}.{:09}", time.sec, time.nsec);
        }
    }
    out.push(b' ');
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b": ");
    let mark = out.len();
    if record_to_json(record, out).is_err() {
        // The codec validated the record as one msgpack map, so this is not expected; keep the
        // line well-formed anyway.
        out.truncate(mark);
        out.extend_from_slice(b"{}");
    }
    out.push(b'\n');
}

impl Output for StdoutOutput {
    fn id(&self) -> &str {
        &self.id
    }

    fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
        let mut buf = Vec::with_capacity(events.byte_len() + events.len() * (tag.len() + 48));
        for (time, record) in events.iter() {
            format_line(&mut buf, tag, time, record);
        }
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let result = lock.write_all(&buf).and_then(|()| lock.flush());
        Accepted::Now(result.map_err(|e| Refused::Output(format!("writing to stdout: {e}"))))
    }
}
