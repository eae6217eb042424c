//! Record helpers for outputs: msgpack record → JSON text, and JSON → msgpack for `weir cat`.
//!
//! JSON decisions, following what Fluentd's JSON formatter prints (Oj in compat mode, or Ruby's
//! `JSON.generate` when Oj is unavailable, which agree on these points):
//!
//! * Compact output, no spaces; map keys in wire order, duplicates kept as sent.
//! * Strings: `"` and `\` are escaped, control characters become `\b`, `\f`, `\n`, `\r`, `\t` or
//!   `\u00XX` (lowercase hex). Everything else, `/` and non-ASCII characters included, is written
//!   as is (UTF-8), not `\u`-escaped.
//! * `str` holding invalid UTF-8 is decoded lossily (each bad sequence becomes U+FFFD). `bin` is
//!   treated as a string the same way. An ext value is written as its data bytes, decoded lossily
//!   as a string, except the EventTime ext (type 0, 8 bytes): Fluentd unpacks that as an
//!   `EventTime`, whose JSON is its whole seconds, so it is written as that integer.
//! * Integers in decimal. Floats as Ruby's `Float#to_s` prints them: shortest round-trip digits,
//!   always with a fraction (`1.0`), exponent form outside 1e-4 ≤ |x| < 1e16 (`1.0e+16`,
//!   `1.0e-05`). A `float 32` is widened to a double first, as msgpack-ruby does. NaN and
//!   infinities, which JSON cannot represent (Ruby's generator raises on them), become `null`.
//! * `nil` is `null`, booleans are `true`/`false`.
//! * Map keys that are not strings are written as strings: integers and floats as their text,
//!   `nil` as `""`, booleans as `"true"`/`"false"`, arrays and maps as their compact JSON text.

use crate::error::RequestError;
use crate::msgpack::{
    read_header, read_payload, write_array_len, write_bool, write_f64, write_int, write_map_len,
    write_nil, write_str, write_uint, Header,
};

/// Writes `s` (lossy UTF-8) as a JSON string literal.
fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let text = String::from_utf8_lossy(s);
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or(&[]));
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or(&[]));
    out.push(b'"');
}

/// Writes `v` as Ruby's `Float#to_s` does (NaN and infinities as `null`, see the module docs).
pub fn write_ruby_float(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-5", "1e16".
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push(b'-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits.as_bytes());
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                let (i, f) = digits.split_at(int_len);
                out.extend_from_slice(i.as_bytes());
                out.push(b'.');
                out.extend_from_slice(f.as_bytes());
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits.as_bytes());
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.extend_from_slice(first.as_bytes());
        out.push(b'.');
        out.extend_from_slice(if rest.is_empty() { "0" } else { rest }.as_bytes());
        out.extend_from_slice(
            format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()).as_bytes(),
        );
    }
}

enum Open {
    Array { left: u32 },
    Map { left: u32, key: bool },
}

/// How deep non-string keys that are themselves arrays or maps may nest inside each other.
const MAX_KEY_NESTING: u32 = 4;

fn write_value(
    buf: &[u8],
    mut pos: usize,
    out: &mut Vec<u8>,
    key_nesting: u32,
) -> Result<usize, RequestError> {
    let mut stack: Vec<Open> = Vec::new();
    loop {
        let is_key = matches!(stack.last(), Some(Open::Map { key: true, .. }));
        let (h, p) = read_header(buf, pos)?;
        if is_key {
            pos = match h {
                Header::Str(n) | Header::Bin(n) | Header::Ext(_, n) => {
                    let (s, e) = read_payload(buf, p, n)?;
                    write_json_str(out, s);
                    e
                }
                Header::Array(_) | Header::Map(_) => {
                    if key_nesting >= MAX_KEY_NESTING {
                        return Err(RequestError::Malformed(crate::ScanError::Truncated));
                    }
                    let mut tmp = Vec::new();
                    let e = write_value(buf, pos, &mut tmp, key_nesting + 1)?;
                    write_json_str(out, &tmp);
                    e
                }
                other => {
                    let mut tmp = Vec::new();
                    write_scalar(&mut tmp, other);
                    let text: &[u8] = if matches!(other, Header::Nil) {
                        b""
                    } else {
                        &tmp
                    };
                    write_json_str(out, text);
                    p
                }
            };
            out.push(b':');
            if let Some(Open::Map { key, .. }) = stack.last_mut() {
                *key = false;
            }
            continue;
        }
        match h {
            Header::Ext(0, 8) => {
                // Fluentd unpacks ext type 0 as an EventTime, whose JSON is its seconds.
                let (s, e) = read_payload(buf, p, 8)?;
                let sec = s
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                out.extend_from_slice(sec.to_string().as_bytes());
                pos = e;
            }
            Header::Str(n) | Header::Bin(n) | Header::Ext(_, n) => {
                let (s, e) = read_payload(buf, p, n)?;
                write_json_str(out, s);
                pos = e;
            }
            Header::Array(0) => {
                out.extend_from_slice(b"[]");
                pos = p;
            }
            Header::Map(0) => {
                out.extend_from_slice(b"{}");
                pos = p;
            }
            Header::Array(n) => {
                out.push(b'[');
                stack.push(Open::Array { left: n });
                pos = p;
                continue;
            }
            Header::Map(n) => {
                out.push(b'{');
                stack.push(Open::Map { left: n, key: true });
                pos = p;
                continue;
            }
            other => {
                write_scalar(out, other);
                pos = p;
            }
        }
        // A value is complete: close containers that are now full.
        loop {
            match stack.last_mut() {
                None => return Ok(pos),
                Some(Open::Array { left }) => {
                    *left -= 1;
                    if *left == 0 {
                        out.push(b']');
                        stack.pop();
                    } else {
                        out.push(b',');
                        break;
                    }
                }
                Some(Open::Map { left, key }) => {
                    *left -= 1;
                    if *left == 0 {
                        out.push(b'}');
                        stack.pop();
                    } else {
                        out.push(b',');
                        *key = true;
                        break;
                    }
                }
            }
        }
    }
}

fn write_scalar(out: &mut Vec<u8>, h: Header) {
    match h {
        Header::Nil => out.extend_from_slice(b"null"),
        Header::Bool(true) => out.extend_from_slice(b"true"),
        Header::Bool(false) => out.extend_from_slice(b"false"),
        Header::Uint(v) => out.extend_from_slice(v.to_string().as_bytes()),
        Header::Int(v) => out.extend_from_slice(v.to_string().as_bytes()),
        Header::F32(v) => write_ruby_float(out, f64::from(v)),
        Header::F64(v) => write_ruby_float(out, v),
        // Containers and payload types are handled by the caller.
        _ => {}
    }
}

/// Appends the JSON text of a msgpack record (normally a map) to `out`, as Fluentd's JSON
/// formatter prints it; see the module documentation for the exact rules. Fails on malformed or
/// truncated msgpack, or bytes after the value.
pub fn record_to_json(record: &[u8], out: &mut Vec<u8>) -> Result<(), RequestError> {
    let end = write_value(record, 0, out, 0)?;
    if end != record.len() {
        return Err(RequestError::TrailingBytes);
    }
    Ok(())
}

/// Appends `v` as msgpack: integers stay integers (smallest format), other numbers become
/// `float 64`, strings `str`, objects maps in their iteration order.
pub fn json_to_msgpack(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Null => write_nil(out),
        Value::Bool(b) => write_bool(out, *b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                write_int(out, i);
            } else {
                write_f64(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Array(a) => {
            write_array_len(out, a.len());
            for x in a {
                json_to_msgpack(x, out);
            }
        }
        Value::Object(m) => {
            write_map_len(out, m.len());
            for (k, x) in m {
                write_str(out, k.as_bytes());
                json_to_msgpack(x, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut out = Vec::new();
        write_ruby_float(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_print_like_ruby() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(-0.0), "-0.0");
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(123.456), "123.456");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e15), "1000000000000000.0");
        assert_eq!(float(1e16), "1.0e+16");
        assert_eq!(float(1.5e300), "1.5e+300");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(0.00001), "1.0e-05");
        assert_eq!(float(-2.5e-7), "-2.5e-07");
        assert_eq!(float(f64::from(0.1f32)), "0.10000000149011612");
        assert_eq!(float(f64::NAN), "null");
    }

    fn json(v: &rmpv::Value) -> String {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, v).unwrap();
        let mut out = Vec::new();
        record_to_json(&b, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn record_json_like_fluentd() {
        use rmpv::Value as V;
        let v = V::Map(vec![
            (
                V::from("msg"),
                V::from("a/b \"q\" \\ é 日本 \n\t\u{1}\u{7f}"),
            ),
            (V::from("n"), V::from(-5)),
            (V::from("u"), V::from(u64::MAX)),
            (V::from("f"), V::F64(2.0)),
            (V::from("nil"), V::Nil),
            (V::from("t"), V::Boolean(true)),
            (
                V::from("nested"),
                V::Map(vec![(
                    V::from("a"),
                    V::Array(vec![V::from(1), V::Array(vec![])]),
                )]),
            ),
            (V::from(7), V::Map(vec![])),
            (V::Nil, V::Boolean(false)),
        ]);
        assert_eq!(
            json(&v),
            "{\"msg\":\"a/b \\\"q\\\" \\\\ é 日本 \\n\\t\\u0001\u{7f}\",\"n\":-5,\
             \"u\":18446744073709551615,\"f\":2.0,\"nil\":null,\"t\":true,\
             \"nested\":{\"a\":[1,[]]},\"7\":{},\"\":false}"
        );
        assert_eq!(json(&V::Map(vec![])), "{}");
        let t = V::Map(vec![(
            V::from("time"),
            V::Ext(0, vec![0x65, 0x53, 0xF1, 0x00, 0x07, 0x5B, 0xCD, 0x15]),
        )]);
        assert_eq!(json(&t), "{\"time\":1700000000}");
        let k = V::Map(vec![(V::Array(vec![V::from(1), V::from("x")]), V::from(1))]);
        assert_eq!(json(&k), "{\"[1,\\\"x\\\"]\":1}");
    }

    #[test]
    fn record_json_rejects_truncated_and_trailing() {
        let mut out = Vec::new();
        assert!(record_to_json(&[0x82, 0xA1, b'a'], &mut out).is_err());
        assert!(record_to_json(&[0x80, 0x80], &mut out).is_err());
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let mut b = vec![0x91; 100_000];
        b.push(0xC0);
        let mut out = Vec::new();
        record_to_json(&b, &mut out).unwrap();
        assert_eq!(out.len(), 200_004);
    }

    #[test]
    fn json_to_msgpack_keeps_integers() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"a":1,"b":-2,"c":1.5,"d":[true,null,"x"],"e":18446744073709551615}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        json_to_msgpack(&v, &mut out);
        let back = rmpv::decode::read_value(&mut &out[..]).unwrap();
        let mut txt = Vec::new();
        record_to_json(&out, &mut txt).unwrap();
        assert_eq!(
            String::from_utf8(txt).unwrap(),
            r#"{"a":1,"b":-2,"c":1.5,"d":[true,null,"x"],"e":18446744073709551615}"#
        );
        assert!(matches!(back, rmpv::Value::Map(_)));
    }
}
