//! Parses the input up to the first NUL byte as a message template (both syntaxes) and renders
//! it over the rest as a msgpack record, then cuts the lines into messages. Nothing may panic,
//! and no message may exceed its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_format::{TimeFormatter, TimeType, TimeZoneSpec};
use weir_out_webhook::template::{Context, Template};
use weir_out_webhook::payload::Batcher;
use weir_proto::EventTime;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let text = String::from_utf8_lossy(&data[..split]);
    let record = data.get(split + 1..).unwrap_or(&[]);
    let tf = TimeFormatter::new(TimeType::String, Some("%H:%M:%S".into()), TimeZoneSpec::Utc);
    let keys: Vec<String> = text.split(',').map(str::to_string).collect();
    let parsed = [Template::parse(&text), Template::from_printf(&text, &keys)];
    let mut batcher = Batcher::new(64, 3);
    for t in parsed.into_iter().flatten() {
        let ctx = Context { tag: "a.<b>.c", time_format: &tf, hostname: "h", escape: true };
        let mut out = String::new();
        t.render(&ctx, EventTime::new(1, 0), record, &mut out);
        let _ = batcher.push(&out);
    }
    if let Some(m) = batcher.finish() {
        assert!(m.chars().count() <= 64);
    }
});
