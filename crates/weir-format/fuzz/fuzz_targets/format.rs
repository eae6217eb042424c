//! Feeds arbitrary msgpack records to every formatter and `<inject>`, and arbitrary format
//! strings to strftime. The first input byte splits the rest into a format string and a record.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_format::{formatter_from_section, strftime, Formatter, Inject, TimeZoneSpec};
use weir_proto::EventTime;

const CONFIGS: &[&str] = &[
    "format ltsv",
    "format json",
    "format msgpack",
    "format single_value",
    "format hash",
    "format csv\nfields a,b,$.c[0].d\nforce_quotes false",
    "format csv\nfields a,b",
    "format out_file\ntime_as_epoch true",
    "<format>\n@type tsv\nkeys a,b\n</format>",
    "<format>\n@type ltsv\ndelimiter \"\"\n</format>",
];

struct Setup {
    formatters: Vec<Box<dyn Formatter>>,
    inject: Option<Inject>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let mut formatters = Vec::new();
        for c in CONFIGS {
            let text = format!("<match x>\n{c}\n</match>\n");
            let Ok(root) = weir_config::parse_str(&text, "fuzz.conf", std::path::Path::new("."))
            else {
                continue;
            };
            let Some(e) = root.children("match").next() else {
                continue;
            };
            let mut s = weir_config::Section::new(e, "fuzz");
            if let Ok(f) = formatter_from_section(&mut s, "json") {
                formatters.push(f);
            }
        }
        let text =
            "<match x>\n<inject>\ntag_key a\ntime_key b\ntime_type string\n</inject>\n</match>\n";
        let inject = weir_config::parse_str(text, "fuzz.conf", std::path::Path::new("."))
            .ok()
            .and_then(|root| {
                let e = root.children("match").next()?.clone();
                let mut s = weir_config::Section::new(&e, "fuzz");
                Inject::from_section(&mut s).ok().flatten()
            });
        Setup { formatters, inject }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (fmt, record) = rest.split_at(at);
    let time = EventTime::new(
        u32::from_le_bytes([split, split, 7, 101]),
        u32::from(split) * 3_900_000,
    );
    let fmt = String::from_utf8_lossy(fmt);
    for tz in [
        TimeZoneSpec::Utc,
        TimeZoneSpec::Local,
        TimeZoneSpec::Fixed(i32::from(split) * 331 - 40_000),
    ] {
        let _ = strftime(&fmt, time, &tz);
    }
    let s = setup();
    let mut out = Vec::new();
    for f in &s.formatters {
        out.clear();
        let _ = f.format("fuzz.tag", time, record, &mut out);
    }
    if let Some(i) = &s.inject {
        out.clear();
        let _ = i.apply("fuzz.tag", time, record, &mut out);
    }
});
