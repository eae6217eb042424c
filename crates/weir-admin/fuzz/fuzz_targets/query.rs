//! Feeds arbitrary bytes to monitor_agent's query-string parser and writes the LTSV row of a
//! plugin built from what it parsed: both must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(q) = weir_admin::PluginQuery::parse(&raw) {
        let mut p = Map::new();
        p.insert("plugin_id".into(), json!(q.id));
        p.insert("type".into(), json!(q.type_name));
        p.insert("tag".into(), q.tag.map_or(Value::Null, Value::String));
        p.insert("config".into(), json!({"k": raw}));
        let _ = weir_admin::ltsv_row(&p);
    }
});
