//! The input up to the first NUL byte is read as a `key=regex` condition and as a tail
//! request's URL query; the rest is a record (msgpack bytes) to test them on. Nothing may
//! panic, and a query a request writes must read back as the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_tail::{FieldMatch, TailRequest};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (head, record) = data.split_at(split);
    let text = String::from_utf8_lossy(head);
    if let Ok(m) = FieldMatch::parse(&text) {
        let _ = m.matches(record);
        assert!(text.starts_with(m.key()));
        assert_eq!(format!("{}={}", m.key(), m.pattern()), text);
    }
    if let Ok(req) = TailRequest::from_query(&text) {
        let _ = req.filter.keeps(record);
        let again = TailRequest::from_query(&req.to_query()).expect("a written query reads back");
        assert_eq!(again.to_query(), req.to_query());
    }
});
