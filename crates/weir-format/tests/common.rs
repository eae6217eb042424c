//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rmpv::Value as V;
use weir_config::{parse_str, Element};
use weir_format::{formatter_from_section, Formatter, Inject};
use weir_proto::EventTime;

pub fn pack(v: &V) -> Vec<u8> {
    let mut b = Vec::new();
    rmpv::encode::write_value(&mut b, v).unwrap();
    b
}

pub fn map(pairs: &[(&str, V)]) -> Vec<u8> {
    pack(&V::Map(
        pairs
            .iter()
            .map(|(k, v)| (V::from(*k), v.clone()))
            .collect(),
    ))
}

/// The `<match>` element of a config snippet.
pub fn element(conf: &str) -> Element {
    let root = parse_str(
        &format!("<match test>\n{conf}\n</match>\n"),
        "test.conf",
        std::path::Path::new("."),
    )
    .unwrap();
    let e = root.children("match").next().unwrap().clone();
    e
}

pub fn formatter(conf: &str, default_type: &str) -> Box<dyn Formatter> {
    let e = element(conf);
    let mut s = weir_config::Section::new(&e, "<match test>");
    match formatter_from_section(&mut s, default_type) {
        Ok(f) => f,
        Err(errs) => panic!("config errors: {errs:?}"),
    }
}

pub fn formatter_err(conf: &str, default_type: &str) -> String {
    let e = element(conf);
    let mut s = weir_config::Section::new(&e, "<match test>");
    match formatter_from_section(&mut s, default_type) {
        Ok(_) => panic!("expected a config error"),
        Err(errs) => errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

pub fn inject(conf: &str) -> Option<Inject> {
    let e = element(conf);
    let mut s = weir_config::Section::new(&e, "<match test>");
    Inject::from_section(&mut s).unwrap()
}

pub fn fmt(f: &dyn Formatter, tag: &str, time: EventTime, record: &[u8]) -> String {
    let mut out = Vec::new();
    f.format(tag, time, record, &mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

pub fn fmt_bytes(f: &dyn Formatter, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    f.format("tag", EventTime::new(0, 0), record, &mut out)
        .unwrap();
    out
}

/// 2024-02-29 13:05:09.123456789 UTC, a Thursday.
pub const T: EventTime = EventTime {
    sec: 1_709_211_909,
    nsec: 123_456_789,
};
