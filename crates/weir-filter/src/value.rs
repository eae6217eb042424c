//! Record values as Ruby sees them: `to_s` of a value (what grep and rewrite_tag_filter match
//! against), decoding and re-encoding records, JSON to msgpack values, and Ruby regexes.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};
use rmpv::Value;
use weir_proto::msgpack::{read_header, read_payload, Header};

/// Ruby's `value.to_s` for the msgpack value in `v`: strings as they are, `nil` as empty text,
/// numbers and booleans as Ruby prints them, arrays and maps as Ruby's `inspect`.
pub fn ruby_to_s(v: &[u8]) -> Cow<'_, str> {
    if let Ok((h, p)) = read_header(v, 0) {
        match h {
            Header::Str(n) | Header::Bin(n) => {
                if let Ok((bytes, _)) = read_payload(v, p, n) {
                    return String::from_utf8_lossy(bytes);
                }
            }
            Header::Nil => return Cow::Borrowed(""),
            Header::Bool(b) => return Cow::Borrowed(if b { "true" } else { "false" }),
            Header::Uint(u) => return Cow::Owned(u.to_string()),
            Header::Int(i) => return Cow::Owned(i.to_string()),
            _ => {}
        }
    }
    match rmpv::decode::read_value(&mut &v[..]) {
        Ok(value) => Cow::Owned(value_to_s(&value)),
        Err(_) => Cow::Borrowed(""),
    }
}

/// Ruby's `to_s` of a decoded value.
pub fn value_to_s(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => inspect(v),
    }
}

/// Ruby's `inspect` (the form Ruby 3.3 and earlier print).
pub fn inspect(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::F32(f) => ruby_float(f64::from(*f)),
        Value::F64(f) => ruby_float(*f),
        Value::String(s) => format!("{:?}", String::from_utf8_lossy(s.as_bytes())),
        Value::Binary(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(inspect).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Map(pairs) => {
            let parts: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}=>{}", inspect(k), inspect(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Ext(_, data) => match <[u8; 8]>::try_from(data.as_slice()) {
            Ok(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string(),
            Err(_) => String::new(),
        },
    }
}

/// Ruby's `Float#to_s`.
pub fn ruby_float(f: f64) -> String {
    let mut out = Vec::new();
    weir_proto::write_ruby_float(&mut out, f);
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes one record.
pub fn decode(record: &[u8]) -> Option<Value> {
    rmpv::decode::read_value(&mut &record[..]).ok()
}

/// Encodes a value onto `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(out, v);
}

/// A JSON value as a msgpack value.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// Sets `key` in a map as Ruby's `Hash#[]=` does: an existing key keeps its place.
pub fn map_set(map: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match map
        .iter_mut()
        .find(|(k, _)| crate::accessor::key_is(k, key))
    {
        Some(slot) => slot.1 = value,
        None => map.push((Value::from(key), value)),
    }
}

/// Compiles a Fluentd `:regexp` parameter: `/body/flags` (flags `i`, `m`, `x`) or the bare
/// body. Ruby's `m` (dot matches newline) is the `s` flag here. Patterns that need
/// backtracking (look-around, back-references) are refused with the regex crate's message.
pub fn ruby_regex(text: &str) -> Result<Regex, String> {
    let (body, flags) = match text
        .strip_prefix('/')
        .and_then(|r| r.rfind('/').map(|i| (r, i)))
    {
        Some((r, i)) if r[i + 1..].chars().all(|c| matches!(c, 'i' | 'm' | 'x')) => {
            (&r[..i], &r[i + 1..])
        }
        _ => (text, ""),
    };
    // Ruby's \A and \z are the regex crate's too; \Z (end or before a final newline) and \h
    // (hex digit) are not, so translate them.
    let body = body.replace("\\Z", "\\n?\\z").replace("\\h", "[0-9a-fA-F]");
    RegexBuilder::new(&body)
        .case_insensitive(flags.contains('i'))
        .dot_matches_new_line(flags.contains('m'))
        .ignore_whitespace(flags.contains('x'))
        .multi_line(true)
        .build()
        .map_err(|e| format!("invalid regexp {text}: {}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_s_like_ruby() {
        let mut b = Vec::new();
        weir_proto::json_to_msgpack(&serde_json::json!(5), &mut b);
        assert_eq!(ruby_to_s(&b), "5");
        b.clear();
        weir_proto::json_to_msgpack(&serde_json::json!(null), &mut b);
        assert_eq!(ruby_to_s(&b), "");
        b.clear();
        weir_proto::json_to_msgpack(&serde_json::json!(1.5), &mut b);
        assert_eq!(ruby_to_s(&b), "1.5");
        b.clear();
        weir_proto::json_to_msgpack(&serde_json::json!({"a":[1,"x",null]}), &mut b);
        assert_eq!(ruby_to_s(&b), r#"{"a"=>[1, "x", nil]}"#);
    }

    #[test]
    fn regex_forms() {
        assert!(ruby_regex("/^ERROR/").unwrap().is_match("ERROR x"));
        assert!(ruby_regex("/error/i").unwrap().is_match("ERROR x"));
        assert!(ruby_regex("^web\\d+$").unwrap().is_match("web12"));
        // Ruby's ^ matches at line starts.
        assert!(ruby_regex("^b").unwrap().is_match("a\nb"));
        assert!(ruby_regex("(?!x)").is_err());
    }
}
