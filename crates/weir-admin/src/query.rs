//! The query string of `/api/plugins(.json)` and the LTSV rows, as Fluentd's monitor_agent
//! reads and writes them. No HTTP here, so the parser can be fuzzed on its own.

use serde_json::Value;

use crate::{Control, PluginInfo};

/// The query parameters of `/api/plugins(.json)`, as Fluentd's monitor_agent reads them (the
/// first value of each key).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PluginQuery {
    /// `?with_config=`.
    pub with_config: Option<bool>,
    /// `?with_retry=`.
    pub with_retry: Option<bool>,
    /// `?tag=`: the output events with this tag reach.
    pub tag: Option<String>,
    /// `?@id=` (or `?id=`): the plugin with this id.
    pub id: Option<String>,
    /// `?@type=` (or `?type=`): the plugins of this type.
    pub type_name: Option<String>,
    /// `?debug=`: pretty-printed JSON.
    pub debug: bool,
}

impl PluginQuery {
    /// Parses a query string. A boolean that is not `true`, `false`, `yes` or `no` is an error.
    pub fn parse(raw: &str) -> Result<PluginQuery, String> {
        let mut q = PluginQuery::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if !seen.insert(k.to_string()) {
                continue;
            }
            match k.as_ref() {
                "with_config" => q.with_config = Some(parse_bool("with_config", &v)?),
                "with_retry" => q.with_retry = Some(parse_bool("with_retry", &v)?),
                "tag" => q.tag = Some(v.into_owned()),
                "@id" => q.id = Some(v.into_owned()),
                "id" if q.id.is_none() => q.id = Some(v.into_owned()),
                "@type" => q.type_name = Some(v.into_owned()),
                "type" if q.type_name.is_none() => q.type_name = Some(v.into_owned()),
                "debug" => q.debug = true,
                _ => {}
            }
        }
        Ok(q)
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" | "" => Ok(true),
        "false" | "no" => Ok(false),
        other => Err(format!(
            "{key}: '{other}' is not a boolean (true, false, yes, no)"
        )),
    }
}

/// The plugins a query selects, with `config` and `retry` removed unless asked for.
pub fn select(
    control: &dyn Control,
    q: &PluginQuery,
    include_config: bool,
    include_retry: bool,
) -> Vec<PluginInfo> {
    let all = control.plugins();
    let id_is = |p: &PluginInfo, id: &str| p.get("plugin_id").and_then(Value::as_str) == Some(id);
    let mut list: Vec<PluginInfo> = if let Some(tag) = &q.tag {
        match control.plugin_for_tag(tag) {
            Some(id) => all.into_iter().filter(|p| id_is(p, &id)).take(1).collect(),
            None => Vec::new(),
        }
    } else if let Some(id) = &q.id {
        all.into_iter().filter(|p| id_is(p, id)).take(1).collect()
    } else if let Some(t) = &q.type_name {
        all.into_iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some(t.as_str()))
            .collect()
    } else {
        all
    };
    let with_config = q.with_config.unwrap_or(include_config);
    let with_retry = q.with_retry.unwrap_or(include_retry);
    for p in &mut list {
        if !with_config {
            p.remove("config");
        }
        if !with_retry {
            p.remove("retry");
        }
    }
    list
}

/// One LTSV row as monitor_agent writes it: every field that is not an object or an array,
/// `null` as an empty value.
pub fn ltsv_row(p: &PluginInfo) -> String {
    let mut row = Vec::new();
    for (k, v) in p {
        let value = match v {
            Value::Object(_) | Value::Array(_) => continue,
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        row.push(format!("{k}:{value}"));
    }
    row.join("\t")
}
