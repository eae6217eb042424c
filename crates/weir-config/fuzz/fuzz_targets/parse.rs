//! Feeds arbitrary text to the config parser: it must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = weir_config::parse_str(
            text,
            "fuzz.conf",
            std::path::Path::new("/nonexistent-weir-fuzz"),
        );
    }
});
