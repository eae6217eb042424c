//! Unit tests for typed, tracked parameter access.

use std::path::Path;
use std::time::Duration;

use crate::parser::parse_text;
use crate::ruby::tests::fake;
use crate::{Element, Section};

fn tree(text: &str) -> Element {
    match parse_text(text, "s.conf", Path::new("/nonexistent-dir"), &fake(), None) {
        Ok(p) => p.root,
        Err(e) => panic!("{e}"),
    }
}

/// A `<match blog.**>` holding one line per parameter, starting on line 2.
fn matcher(params: &str) -> Element {
    let mut r = tree(&format!("<match blog.**>\n{params}\n</match>\n"));
    r.elements.remove(0)
}

fn err_of<T: std::fmt::Debug>(r: Result<T, crate::ConfigError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn strings_and_usage() {
    let e = matcher("@type file\npath /x\nunread 1\n<buffer tag>\n</buffer>\n<format>\n</format>");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(
        (s.name(), s.arg(), s.location().to_string()),
        ("match", "blog.**", "s.conf:1".to_string())
    );
    assert_eq!(s.type_name(), Some("file"));
    assert_eq!(s.string("path").as_deref(), Some("/x"));
    assert_eq!(s.string_or("missing", "dflt"), "dflt");
    assert_eq!(
        err_of(s.required_string("bucket")),
        "s.conf:1: <match blog.**>: parameter 'bucket': is required"
    );
    let buffers = s.sections("buffer");
    assert_eq!(buffers.len(), 1);
    assert_eq!(buffers[0].context(), "<match blog.**> <buffer tag>");
    let unused: Vec<_> = s.unused().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(unused, vec!["unread"]);
    let unused_sections: Vec<_> = s
        .unused_sections()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(unused_sections, vec!["format"]);
}

#[test]
fn legacy_type_key() {
    let e = matcher("type file");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.type_name(), Some("file"));
    assert!(s.unused().is_empty());
}

#[test]
fn section_at_most_one() {
    let e = matcher("<server>\n</server>\n<server>\n</server>");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(
        err_of(s.section("server").map(|o| o.is_some())),
        "s.conf:4: <match blog.**>: only one <server> section is allowed here, found 2"
    );
    let mut s = Section::new(&e, "<match blog.**>");
    assert!(s.section("security").map(|o| o.is_none()).unwrap_or(false));
}

#[test]
fn integers() {
    let e = matcher("a 42\nb -7\nc +1_000\nd 12abc\ne 0x10\nf\ng 99999999999999999999\nh  010 ");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.integer("a"), Ok(Some(42)));
    assert_eq!(s.integer("b"), Ok(Some(-7)));
    assert_eq!(s.integer("c"), Ok(Some(1000)));
    assert_eq!(s.integer("h"), Ok(Some(10)));
    assert_eq!(s.integer("none"), Ok(None));
    assert_eq!(
        err_of(s.integer("d")),
        "s.conf:5: <match blog.**>: parameter 'd': invalid integer '12abc'"
    );
    assert_eq!(
        err_of(s.integer("e")),
        "s.conf:6: <match blog.**>: parameter 'e': invalid integer '0x10'"
    );
    assert_eq!(
        err_of(s.integer("f")),
        "s.conf:7: <match blog.**>: parameter 'f': invalid integer ''"
    );
    assert_eq!(
        err_of(s.integer("g")),
        "s.conf:8: <match blog.**>: parameter 'g': integer '99999999999999999999' is out of range"
    );
}

#[test]
fn floats() {
    let e = matcher("a 0.5\nb -2\nc 1e3\nd abc\ne inf\nf .5");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.float("a"), Ok(Some(0.5)));
    assert_eq!(s.float("b"), Ok(Some(-2.0)));
    assert_eq!(s.float("c"), Ok(Some(1000.0)));
    assert_eq!(s.float("f"), Ok(Some(0.5)));
    assert_eq!(
        err_of(s.float("d")),
        "s.conf:5: <match blog.**>: parameter 'd': invalid float 'abc'"
    );
    assert_eq!(
        err_of(s.float("e")),
        "s.conf:6: <match blog.**>: parameter 'e': invalid float 'inf'"
    );
}

#[test]
fn sizes() {
    let e = matcher("a 8m\nb 1K\nc 2g\nd 3T\ne 100\nf 256MB\ng 1.5m\nh 10x\ni 20000000t\nj kb");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.size("a"), Ok(Some(8 << 20)));
    assert_eq!(s.size("b"), Ok(Some(1024)));
    assert_eq!(s.size("c"), Ok(Some(2 << 30)));
    assert_eq!(s.size("d"), Ok(Some(3 << 40)));
    assert_eq!(s.size("e"), Ok(Some(100)));
    assert_eq!(s.size("f"), Ok(Some(256 << 20)));
    assert_eq!(
        err_of(s.size("g")),
        "s.conf:8: <match blog.**>: parameter 'g': invalid size '1.5m'"
    );
    assert_eq!(
        err_of(s.size("h")),
        "s.conf:9: <match blog.**>: parameter 'h': invalid size '10x'"
    );
    assert_eq!(
        err_of(s.size("i")),
        "s.conf:10: <match blog.**>: parameter 'i': size '20000000t' is out of range"
    );
    assert_eq!(
        err_of(s.size("j")),
        "s.conf:11: <match blog.**>: parameter 'j': invalid size 'kb'"
    );
}

#[test]
fn durations() {
    let e = matcher("a 10s\nb 5m\nc 1h\nd 1d\ne 30\nf 0.5\ng abc\nh 1.5h\ni 500ms\nj -1\nk 10S");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.duration("a"), Ok(Some(Duration::from_secs(10))));
    assert_eq!(s.duration("b"), Ok(Some(Duration::from_secs(300))));
    assert_eq!(s.duration("c"), Ok(Some(Duration::from_secs(3600))));
    assert_eq!(s.duration("d"), Ok(Some(Duration::from_secs(86400))));
    assert_eq!(s.duration("e"), Ok(Some(Duration::from_secs(30))));
    assert_eq!(s.duration("f"), Ok(Some(Duration::from_millis(500))));
    assert_eq!(
        err_of(s.duration("g")),
        "s.conf:8: <match blog.**>: parameter 'g': invalid duration 'abc'"
    );
    for (k, line) in [("h", 9), ("i", 10), ("j", 11), ("k", 12)] {
        assert!(
            err_of(s.duration(k)).starts_with(&format!("s.conf:{line}: ")),
            "{k}"
        );
    }
}

#[test]
fn booleans() {
    let e = matcher("a true\nb yes\nc false\nd no\ne\nf # comment\ng True\nh 1");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.boolean("a"), Ok(Some(true)));
    assert_eq!(s.boolean("b"), Ok(Some(true)));
    assert_eq!(s.boolean("c"), Ok(Some(false)));
    assert_eq!(s.boolean("d"), Ok(Some(false)));
    assert_eq!(s.boolean("e"), Ok(Some(true)));
    assert_eq!(s.boolean("f"), Ok(Some(true)));
    assert_eq!(s.boolean("none"), Ok(None));
    assert_eq!(
        err_of(s.boolean("g")),
        "s.conf:8: <match blog.**>: parameter 'g': invalid boolean 'True' (expected true, false, yes, no, or nothing)"
    );
    assert!(s.boolean("h").is_err());
}

#[test]
fn enumerations() {
    let e = matcher("a gzip\nb zip");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(
        s.enumeration("a", &["gzip", "text"]),
        Ok(Some("gzip".to_string()))
    );
    assert_eq!(
        err_of(s.enumeration("b", &["gzip", "text"])),
        "s.conf:3: <match blog.**>: parameter 'b': valid options are gzip,text but got 'zip'"
    );
}

#[test]
fn arrays() {
    let e = matcher("a [\"x\", 1, true, null]\nb  x , y,z,\nc\nd \"[1\"\ne {\"a\":1}\nf ,a");
    let mut s = Section::new(&e, "<match blog.**>");
    let v = |v: &[&str]| Ok(Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
    assert_eq!(s.array("a"), v(&["x", "1", "true", ""]));
    assert_eq!(s.array("b"), v(&["x", "y", "z"]));
    assert_eq!(s.array("c"), v(&[]));
    assert_eq!(s.array("f"), v(&["", "a"]));
    assert_eq!(
        err_of(s.array("d")),
        "s.conf:5: <match blog.**>: parameter 'd': array required but got '[1'"
    );
    // Not starting with '[': comma-separated text, as Fluentd does.
    assert_eq!(s.array("e"), v(&["{\"a\":1}"]));
}

#[test]
fn hashes() {
    let e = matcher("a {\"k\": \"v\", \"n\": 2, \"o\": {\"x\": [1]}}\nb k1:v1, k2: v2 ,k1:v3\nc nocolon\nd \"{1\"");
    let mut s = Section::new(&e, "<match blog.**>");
    let v = |v: &[(&str, &str)]| {
        Ok(Some(
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
        ))
    };
    assert_eq!(
        s.hash("a"),
        v(&[("k", "v"), ("n", "2"), ("o", "{\"x\":[1]}")])
    );
    assert_eq!(s.hash("b"), v(&[("k1", "v3"), ("k2", " v2")]));
    assert_eq!(
        err_of(s.hash("c")),
        "s.conf:4: <match blog.**>: parameter 'c': hash required but got 'nocolon': 'nocolon' has no ':' (write key:value)"
    );
    assert_eq!(
        err_of(s.hash("d")),
        "s.conf:5: <match blog.**>: parameter 'd': hash required but got '{1'"
    );
}

#[test]
fn unsupported_and_error() {
    let e = matcher("s3_region x");
    let mut s = Section::new(&e, "<match blog.**>");
    assert_eq!(s.unsupported("absent", "why"), Ok(()));
    assert_eq!(
        err_of(s.unsupported("s3_region", "use aws_region")),
        "s.conf:2: <match blog.**>: parameter 's3_region': not supported by weir: use aws_region"
    );
    assert!(s.unused().is_empty());
    assert_eq!(
        s.error(None, "no outputs").to_string(),
        "s.conf:1: <match blog.**>: no outputs"
    );
    assert_eq!(
        s.error(Some("s3_region"), "bad").to_string(),
        "s.conf:2: <match blog.**>: parameter 's3_region': bad"
    );
}
