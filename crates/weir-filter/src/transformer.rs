//! `@type record_transformer` (Fluentd's filter_record_transformer, without Ruby): adds or
//! replaces fields from `<record>`, removes or keeps keys.
//!
//! Values in `<record>` may use `${tag}`, `${tag_parts[N]}`, `${tag_prefix[N]}`,
//! `${tag_suffix[N]}` (N may be negative, counting from the end), `${hostname}`, `${time}` (the
//! event time as Ruby's `Time#to_s` prints it, in the local zone) and `${record["key"]}` (a
//! top-level key of the incoming record). With `auto_typecast true` (the default) a value that is
//! exactly one placeholder keeps the type of what it refers to. A value starting with `{` or
//! `[` is JSON, and placeholders inside it are expanded too. Any other `${...}` is unknown: it
//! expands to nothing, with a warning at load time (Fluentd warns for every event).
//!
//! `enable_ruby true` is refused: weir embeds no Ruby.

use chrono::{Local, TimeZone};
use rmpv::Value;
use weir_config::{ConfigError, Section};
use weir_proto::{EventBatch, EventTime};

use crate::accessor::RecordPath;
use crate::value::{decode, encode, from_json, map_set, value_to_s};
use crate::{done, opt, BatchBuilder, ErrorEvent, Filter, Filtered};

#[derive(Debug, Clone, PartialEq)]
enum Ph {
    Tag,
    TagParts(i64),
    TagPrefix(i64),
    TagSuffix(i64),
    Hostname,
    Time,
    Record(String),
    Unknown,
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Ph(Ph),
}

#[derive(Debug, Clone)]
enum Tpl {
    /// Text with placeholders; `single` when the whole text is one placeholder.
    Str(Vec<Piece>),
    Array(Vec<Tpl>),
    Map(Vec<(Vec<Piece>, Tpl)>),
    Other(Value),
}

/// The record_transformer filter.
#[derive(Debug)]
pub struct RecordTransformer {
    id: String,
    map: Vec<(String, Tpl)>,
    remove_keys: Vec<RecordPath>,
    keep_keys: Vec<String>,
    renew_record: bool,
    renew_time_key: Option<String>,
    auto_typecast: bool,
    hostname: String,
}

fn index(inner: &str, name: &str) -> Option<i64> {
    inner
        .strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn classify(ph: &str) -> Ph {
    let Some(inner) = ph.strip_prefix("${").and_then(|r| r.strip_suffix('}')) else {
        return Ph::Unknown;
    };
    match inner {
        "tag" => return Ph::Tag,
        "hostname" => return Ph::Hostname,
        "time" => return Ph::Time,
        _ => {}
    }
    if let Some(n) = index(inner, "tag_parts") {
        return Ph::TagParts(n);
    }
    if let Some(n) = index(inner, "tag_prefix") {
        return Ph::TagPrefix(n);
    }
    if let Some(n) = index(inner, "tag_suffix") {
        return Ph::TagSuffix(n);
    }
    if let Some(k) = inner
        .strip_prefix("record[\"")
        .and_then(|r| r.strip_suffix("\"]"))
    {
        if !k.contains('"') {
            return Ph::Record(k.to_string());
        }
    }
    Ph::Unknown
}

/// Splits text on `${...}` and `__UPPER__` placeholders.
fn parse_pieces(s: &str, unknown: &mut Vec<String>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        let end = if rest.starts_with("${") {
            rest.find('}').map(|i| i + 1)
        } else if let Some(after) = rest.strip_prefix("__") {
            let body: String = after
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            // The longest run of [A-Z_] that ends in "__", as Ruby's regex would take it.
            let full = format!("__{body}");
            full.rfind("__").filter(|&i| i >= 3).map(|i| i + 2)
        } else {
            None
        };
        if let Some(end) = end {
            let ph = &rest[..end];
            if !lit.is_empty() {
                out.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            let c = classify(ph);
            if c == Ph::Unknown {
                unknown.push(ph.to_string());
            }
            out.push(Piece::Ph(c));
            rest = &rest[end..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            lit.push(c);
        }
        rest = chars.as_str();
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

fn build_tpl(v: &Value, unknown: &mut Vec<String>) -> Tpl {
    match v {
        Value::String(s) => Tpl::Str(parse_pieces(s.as_str().unwrap_or(""), unknown)),
        Value::Array(items) => Tpl::Array(items.iter().map(|i| build_tpl(i, unknown)).collect()),
        Value::Map(pairs) => Tpl::Map(
            pairs
                .iter()
                .map(|(k, v)| (parse_pieces(&value_to_s(k), unknown), build_tpl(v, unknown)))
                .collect(),
        ),
        other => Tpl::Other(other.clone()),
    }
}

/// Per-batch values of the placeholders.
struct Ctx<'a> {
    tag: &'a str,
    parts: Vec<&'a str>,
    hostname: &'a str,
    time: String,
    record: &'a Value,
}

fn pick(parts: &[&str], n: i64) -> Option<usize> {
    let len = parts.len() as i64;
    let i = if n < 0 { len + n } else { n };
    (0..len).contains(&i).then_some(i as usize)
}

impl Ctx<'_> {
    fn value(&self, ph: &Ph) -> Value {
        match ph {
            Ph::Tag => Value::from(self.tag),
            Ph::Hostname => Value::from(self.hostname),
            Ph::Time => Value::from(self.time.as_str()),
            Ph::TagParts(n) => pick(&self.parts, *n)
                .map(|i| Value::from(self.parts[i]))
                .unwrap_or(Value::Nil),
            Ph::TagPrefix(n) => pick(&self.parts, *n)
                .map(|i| Value::from(self.parts[..=i].join(".")))
                .unwrap_or(Value::Nil),
            Ph::TagSuffix(n) => pick(&self.parts, *n)
                .map(|i| Value::from(self.parts[i..].join(".")))
                .unwrap_or(Value::Nil),
            Ph::Record(k) => match self.record {
                Value::Map(pairs) => pairs
                    .iter()
                    .rev()
                    .find(|(key, _)| crate::accessor::key_is(key, k))
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Value::Nil),
                _ => Value::Nil,
            },
            Ph::Unknown => Value::Nil,
        }
    }

    fn text(&self, pieces: &[Piece]) -> String {
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Ph(ph) => out.push_str(&value_to_s(&self.value(ph))),
            }
        }
        out
    }

    fn expand(&self, t: &Tpl, typecast: bool) -> Value {
        match t {
            Tpl::Str(pieces) => match pieces.as_slice() {
                [Piece::Ph(ph)] if typecast => self.value(ph),
                _ => Value::from(self.text(pieces)),
            },
            Tpl::Array(items) => {
                Value::Array(items.iter().map(|i| self.expand(i, typecast)).collect())
            }
            Tpl::Map(pairs) => Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (Value::from(self.text(k)), self.expand(v, typecast)))
                    .collect(),
            ),
            Tpl::Other(v) => v.clone(),
        }
    }
}

/// Ruby's `Time#to_s` in the local zone.
fn ruby_time(t: EventTime) -> String {
    match Local.timestamp_opt(i64::from(t.sec), 0).single() {
        Some(lt) => lt.format("%Y-%m-%d %H:%M:%S %z").to_string(),
        None => t.sec.to_string(),
    }
}

impl RecordTransformer {
    /// Builds the filter from its `<filter>` section.
    pub fn from_section(
        s: &mut Section<'_>,
        id: String,
        warnings: &mut Vec<ConfigError>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let remove = opt(s.array("remove_keys"), &mut errors);
        let keep_keys = opt(s.array("keep_keys"), &mut errors);
        let renew_record = opt(s.boolean("renew_record"), &mut errors).unwrap_or(false);
        let renew_time_key = s.string("renew_time_key");
        let auto_typecast = opt(s.boolean("auto_typecast"), &mut errors).unwrap_or(true);
        if opt(s.boolean("enable_ruby"), &mut errors) == Some(true) {
            errors.push(s.error(
                Some("enable_ruby"),
                "enable_ruby true is not supported: weir does not embed Ruby. Without it, ${tag}, ${tag_parts[N]}, ${tag_prefix[N]}, ${tag_suffix[N]}, ${hostname}, ${time} and ${record[\"key\"]} work",
            ));
        }
        if keep_keys.is_some() && !renew_record {
            errors.push(s.error(
                Some("keep_keys"),
                "`renew_record` must be true to use `keep_keys`",
            ));
        }
        let mut map = Vec::new();
        for rs in s.sections("record") {
            let el = rs.element();
            for p in &el.params {
                let raw = &p.value;
                let v = if raw.starts_with('{') || raw.starts_with('[') {
                    match serde_json::from_str::<serde_json::Value>(raw) {
                        Ok(j) => from_json(&j),
                        Err(e) => {
                            warnings.push(rs.error(
                                Some(&p.key),
                                format!("failed to parse {raw} as json. Assuming {raw} is a string: {e}"),
                            ));
                            Value::from(raw.as_str())
                        }
                    }
                } else {
                    Value::from(raw.as_str())
                };
                let mut unknown = Vec::new();
                let tpl = build_tpl(&v, &mut unknown);
                for u in unknown {
                    warnings.push(rs.error(
                        Some(&p.key),
                        format!("unknown placeholder `{u}` found (it expands to nothing; weir evaluates no Ruby)"),
                    ));
                }
                match map
                    .iter_mut()
                    .find(|(k, _): &&mut (String, Tpl)| *k == p.key)
                {
                    Some(slot) => slot.1 = tpl,
                    None => map.push((p.key.clone(), tpl)),
                }
            }
        }
        let mut remove_keys = Vec::new();
        for k in remove.unwrap_or_default() {
            match RecordPath::parse(&k) {
                Ok(p) => remove_keys.push(p),
                Err(e) => errors.push(s.error(Some("remove_keys"), e)),
            }
        }
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        done(
            RecordTransformer {
                id,
                map,
                remove_keys,
                keep_keys: keep_keys.unwrap_or_default(),
                renew_record,
                renew_time_key,
                auto_typecast,
                hostname,
            },
            errors,
        )
    }

    fn reform(&self, ctx: &Ctx<'_>, record: &Value) -> Value {
        let mut out: Vec<(Value, Value)> = if self.renew_record {
            Vec::new()
        } else {
            match record {
                Value::Map(pairs) => pairs.clone(),
                _ => Vec::new(),
            }
        };
        if self.renew_record {
            if let Value::Map(pairs) = record {
                for k in &self.keep_keys {
                    if let Some((_, v)) = pairs
                        .iter()
                        .rev()
                        .find(|(key, _)| crate::accessor::key_is(key, k))
                    {
                        map_set(&mut out, k, v.clone());
                    }
                }
            }
        }
        for (k, tpl) in &self.map {
            map_set(&mut out, k, ctx.expand(tpl, self.auto_typecast));
        }
        Value::Map(out)
    }
}

fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => i.as_f64(),
        Value::F32(f) => Some(f64::from(*f)),
        Value::F64(f) => Some(*f),
        Value::String(s) => s.as_str()?.trim().parse().ok(),
        _ => None,
    }
}

impl Filter for RecordTransformer {
    fn id(&self) -> &str {
        &self.id
    }

    fn type_name(&self) -> &str {
        "record_transformer"
    }

    fn filter(&self, tag: &str, events: EventBatch) -> Filtered {
        let mut out =
            BatchBuilder::with_capacity(events.len(), events.byte_len() + events.len() * 32);
        let mut errors = Vec::new();
        let parts: Vec<&str> = tag.split('.').collect();
        for (i, (time, raw)) in events.iter().enumerate() {
            let Some(record) = decode(raw) else {
                errors.push(ErrorEvent {
                    time,
                    record: events.record(i).unwrap_or_default(),
                    error: "record is not valid msgpack".into(),
                });
                continue;
            };
            let ctx = Ctx {
                tag,
                parts: parts.clone(),
                hostname: &self.hostname,
                time: ruby_time(time),
                record: &record,
            };
            let mut new = self.reform(&ctx, &record);
            let mut new_time = time;
            if let (Some(key), Value::Map(pairs)) = (&self.renew_time_key, &new) {
                if let Some((_, v)) = pairs
                    .iter()
                    .rev()
                    .find(|(k, _)| crate::accessor::key_is(k, key))
                {
                    match to_f64(v).and_then(EventTime::from_f64) {
                        Some(t) => new_time = t,
                        None => {
                            errors.push(ErrorEvent {
                                time,
                                record: events.record(i).unwrap_or_default(),
                                error: format!("renew_time_key '{key}' is not a unix time"),
                            });
                            continue;
                        }
                    }
                }
            }
            for p in &self.remove_keys {
                p.delete(&mut new);
            }
            out.push_with(new_time, |buf| encode(&new, buf));
        }
        Filtered {
            events: out.finish(),
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch, element, json};

    fn rt(conf: &str) -> RecordTransformer {
        let el = element(conf);
        let mut s = Section::new(&el, "<filter **>");
        RecordTransformer::from_section(&mut s, "rt".into(), &mut Vec::new()).unwrap()
    }

    #[test]
    fn placeholders_and_typecast() {
        let f = rt(r#"<filter **>
  @type record_transformer
  <record>
    t ${tag}
    p ${tag_parts[1]}-${tag_parts[-1]}
    pre ${tag_prefix[1]}
    suf ${tag_suffix[1]}
    code ${record["code"]}
    msg got ${record["code"]} from ${record["nope"]}
    nested {"k":"${tag_parts[0]}","${tag_parts[2]}":[1,"${tag_parts[1]}"]}
  </record>
  remove_keys drop,$.n.x
</filter>"#);
        let out = f.filter(
            "a.b.c",
            batch(&[r#"{"code":500,"drop":1,"n":{"x":1,"y":2}}"#]),
        );
        assert_eq!(
            json(&out.events),
            vec![
                r#"{"code":500,"n":{"y":2},"t":"a.b.c","p":"b-c","pre":"a.b","suf":"b.c","msg":"got 500 from ","nested":{"k":"a","c":[1,"b"]}}"#
            ]
        );
    }

    #[test]
    fn renew_keep_and_time() {
        let f = rt(r#"<filter **>
  @type record_transformer
  renew_record true
  keep_keys a
  renew_time_key ts
  <record>
    ts ${record["t"]}
  </record>
</filter>"#);
        let out = f.filter("x", batch(&[r#"{"a":1,"b":2,"t":1700000000}"#]));
        assert_eq!(json(&out.events), vec![r#"{"a":1,"ts":1700000000}"#]);
        assert_eq!(out.events.time(0).map(|t| t.sec), Some(1_700_000_000));
    }

    #[test]
    fn ruby_and_keep_keys_errors() {
        let el = element(
            "<filter **>\n@type record_transformer\nenable_ruby true\nkeep_keys a\n</filter>",
        );
        let mut s = Section::new(&el, "<filter **>");
        let e = RecordTransformer::from_section(&mut s, "x".into(), &mut Vec::new()).unwrap_err();
        assert!(e[0]
            .message
            .starts_with("enable_ruby true is not supported"));
        assert_eq!(
            e[1].message,
            "`renew_record` must be true to use `keep_keys`"
        );
    }

    #[test]
    fn unknown_placeholder_warns_at_load() {
        let el = element(
            "<filter **>\n@type record_transformer\n<record>\nx ${message}\n</record>\n</filter>",
        );
        let mut s = Section::new(&el, "<filter **>");
        let mut w = Vec::new();
        let f = RecordTransformer::from_section(&mut s, "x".into(), &mut w).unwrap();
        assert_eq!(w.len(), 1);
        let out = f.filter("t", batch(&[r#"{"message":"m"}"#]));
        assert_eq!(json(&out.events), vec![r#"{"message":"m","x":null}"#]);
    }
}
