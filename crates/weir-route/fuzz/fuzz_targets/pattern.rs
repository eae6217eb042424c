//! Parses the input up to the first NUL byte as a pattern set and matches the rest as a tag.
//! Nothing may panic, and the single-pattern and set views must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_route::{Pattern, PatternSet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, tag) = text.split_once('\0').unwrap_or((&text, ""));
    let single = Pattern::parse(pattern);
    if let Ok(p) = &single {
        let _ = p.matches(tag);
    }
    if let Ok(set) = PatternSet::parse(pattern) {
        let any = set.patterns().iter().any(|p| p.matches(tag));
        assert_eq!(set.matches(tag), any);
    }
});
