//! Ruby's `to_s` and `inspect` of record values, written straight from msgpack bytes.
//!
//! Fluentd decodes a record with msgpack-ruby and its text formatters call `to_s` on values
//! (`"#{value}"` in `ltsv`, `record[key].to_s` in `single_value`, `String(value)` in `csv`,
//! `record.to_s` in `hash`). What that gives, and so what this module writes:
//!
//! * `str` and `bin`: the bytes as they are, valid UTF-8 or not.
//! * `nil`: empty. Booleans: `true`/`false`. Integers: decimal.
//! * Floats: `Float#to_s` (`1.0`, `1.0e+16`, `NaN`, `Infinity`, `-Infinity`).
//! * Maps and arrays: `Hash#inspect` and `Array#inspect` **as Ruby 3.4 prints them**, which is
//!   the Ruby that fluent-package 6 (the current td-agent successor) bundles:
//!   `{"a" => 1, "b" => [nil, true, 1.5]}`. Ruby 3.3 and older printed `{"a"=>1}`.
//! * Strings inside them: `String#inspect` for a UTF-8 string (msgpack `str`) or a binary one
//!   (msgpack `bin`): `"` `\` and `#{`/`#$`/`#@` escaped, `\n \t \r \f \v \b \a \e`, other
//!   control characters as `\u0001` (UTF-8) or `\x01` (binary), bytes that are not valid UTF-8
//!   as `\xFF`, non-ASCII bytes of a binary string as `\xE3`. Printable non-ASCII characters are
//!   written as they are, which is what Ruby does when its default external encoding is UTF-8
//!   (a UTF-8 locale); U+0085, U+2028, U+2029 and C1 controls are escaped as `\u0085`.
//!   Unassigned code points are treated as printable (Ruby escapes them; weir carries no
//!   Unicode tables).
//! * ext type 0 with 8 bytes is Fluentd's `EventTime`: `to_s` is its seconds, `inspect` is
//!   `%Y-%m-%d %H:%M:%S.%N %z` in local time. Other ext types are refused by Fluentd's
//!   unpacker before any formatter runs; weir writes them as msgpack-ruby's
//!   `#<struct MessagePack::ExtensionValue type=1, payload="\x01">`.
//! * Duplicate keys in a map are written as sent (Ruby's Hash would keep one), as
//!   `weir_proto::record_to_json` does.

use weir_proto::msgpack::{read_header, read_payload, Header};
use weir_proto::{write_ruby_float, EventTime};

use crate::error::FormatError;
use crate::time::{strftime_into, TimeZoneSpec};

/// How deep arrays and maps may nest inside a value that is printed with `inspect`.
pub const MAX_DEPTH: usize = 256;

/// Ruby's `Float#to_s`, including the non-finite values.
pub fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else {
        write_ruby_float(out, v);
    }
}

fn write_decimal(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{v}");
}

fn event_time(data: &[u8]) -> Option<EventTime> {
    let sec = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?);
    let nsec = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?);
    Some(EventTime::new(sec, nsec))
}

/// Appends Ruby's `to_s` of the value at `pos`; returns the offset after it.
pub fn write_to_s(buf: &[u8], pos: usize, out: &mut Vec<u8>) -> Result<usize, FormatError> {
    let (h, p) = read_header(buf, pos)?;
    Ok(match h {
        Header::Str(n) | Header::Bin(n) => {
            let (s, e) = read_payload(buf, p, n)?;
            out.extend_from_slice(s);
            e
        }
        Header::Ext(0, 8) => {
            let (d, e) = read_payload(buf, p, 8)?;
            if let Some(t) = event_time(d) {
                write_decimal(out, t.sec);
            }
            e
        }
        Header::Array(_) | Header::Map(_) | Header::Ext(..) => write_inspect(buf, pos, out, 0)?,
        other => {
            write_scalar(out, other);
            p
        }
    })
}

/// Writes a scalar's `to_s` (`nil` as nothing).
fn write_scalar(out: &mut Vec<u8>, h: Header) {
    match h {
        Header::Bool(true) => out.extend_from_slice(b"true"),
        Header::Bool(false) => out.extend_from_slice(b"false"),
        Header::Uint(v) => write_decimal(out, v),
        Header::Int(v) => write_decimal(out, v),
        Header::F32(v) => write_float(out, f64::from(v)),
        Header::F64(v) => write_float(out, v),
        _ => {}
    }
}

/// Appends Ruby's `inspect` of the value at `pos`; returns the offset after it.
pub fn write_inspect(
    buf: &[u8],
    pos: usize,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<usize, FormatError> {
    let (h, p) = read_header(buf, pos)?;
    Ok(match h {
        Header::Nil => {
            out.extend_from_slice(b"nil");
            p
        }
        Header::Str(n) => {
            let (s, e) = read_payload(buf, p, n)?;
            inspect_str(out, s, true);
            e
        }
        Header::Bin(n) => {
            let (s, e) = read_payload(buf, p, n)?;
            inspect_str(out, s, false);
            e
        }
        Header::Ext(ty, n) => {
            let (d, e) = read_payload(buf, p, n)?;
            match (ty, event_time(d)) {
                (0, Some(t)) if n == 8 => {
                    let t = EventTime::new(t.sec, t.nsec.min(999_999_999));
                    strftime_into(out, "%Y-%m-%d %H:%M:%S.%N %z", t, &TimeZoneSpec::Local);
                }
                _ => {
                    out.extend_from_slice(b"#<struct MessagePack::ExtensionValue type=");
                    write_decimal(out, ty);
                    out.extend_from_slice(b", payload=");
                    inspect_str(out, d, false);
                    out.push(b'>');
                }
            }
            e
        }
        Header::Array(n) => {
            if depth >= MAX_DEPTH {
                return Err(FormatError::TooDeep(MAX_DEPTH));
            }
            out.push(b'[');
            let mut at = p;
            for i in 0..n {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                at = write_inspect(buf, at, out, depth + 1)?;
            }
            out.push(b']');
            at
        }
        Header::Map(n) => {
            if depth >= MAX_DEPTH {
                return Err(FormatError::TooDeep(MAX_DEPTH));
            }
            out.push(b'{');
            let mut at = p;
            for i in 0..n {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                at = write_inspect(buf, at, out, depth + 1)?;
                out.extend_from_slice(b" => ");
                at = write_inspect(buf, at, out, depth + 1)?;
            }
            out.push(b'}');
            at
        }
        other => {
            write_scalar(out, other);
            p
        }
    })
}

fn push_hex_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 0xf)],
    ]);
}

fn special_escape(c: u32) -> Option<u8> {
    Some(match c {
        0x0a => b'n',
        0x0d => b'r',
        0x09 => b't',
        0x0c => b'f',
        0x0b => b'v',
        0x08 => b'b',
        0x07 => b'a',
        0x1b => b'e',
        _ => return None,
    })
}

/// Whether Ruby (UTF-8 locale) prints this character as it is inside `String#inspect`.
fn unicode_printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20 || (0x7f..=0x9f).contains(&u) || u == 0x2028 || u == 0x2029)
}

/// Ruby's `String#inspect`: `utf8` for a `str` (UTF-8, possibly broken), otherwise binary.
fn inspect_str(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    out.push(b'"');
    if utf8 {
        for chunk in s.utf8_chunks() {
            let valid = chunk.valid();
            let mut chars = valid.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                let u = c as u32;
                if c == '"' || c == '\\' {
                    out.push(b'\\');
                    out.push(c as u8);
                } else if c == '#' {
                    // At the end of a chunk the next bytes are invalid ones, never `$`, `@`, `{`.
                    let next = chars.peek().map(|&(_, n)| n);
                    if matches!(next, Some('$' | '@' | '{')) {
                        out.push(b'\\');
                    }
                    out.push(b'#');
                } else if let Some(e) = special_escape(u) {
                    out.extend_from_slice(&[b'\\', e]);
                } else if unicode_printable(c) {
                    let end = i + c.len_utf8();
                    out.extend_from_slice(valid.as_bytes().get(i..end).unwrap_or(&[]));
                } else if u < 0x10000 {
                    write_decimal(out, format_args!("\\u{u:04X}"));
                } else {
                    write_decimal(out, format_args!("\\u{{{u:X}}}"));
                }
            }
            for &b in chunk.invalid() {
                push_hex_byte(out, b);
            }
        }
    } else {
        let mut iter = s.iter().peekable();
        while let Some(&b) = iter.next() {
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'#' => {
                    if matches!(iter.peek(), Some(b'$' | b'@' | b'{')) {
                        out.push(b'\\');
                    }
                    out.push(b'#');
                }
                0x20..=0x7e => out.push(b),
                _ => match special_escape(u32::from(b)) {
                    Some(e) => out.extend_from_slice(&[b'\\', e]),
                    None => push_hex_byte(out, b),
                },
            }
        }
    }
    out.push(b'"');
}

/// Walks a top-level record map: calls `f(key_pos, value_pos)` for each pair and returns the
/// offset after the map. Fails if the value at `pos` is not a map.
pub fn for_each_pair(
    buf: &[u8],
    pos: usize,
    mut f: impl FnMut(usize, usize) -> Result<(), FormatError>,
) -> Result<usize, FormatError> {
    let (h, mut at) = read_header(buf, pos)?;
    let Header::Map(n) = h else {
        return Err(FormatError::NotAMap);
    };
    for _ in 0..n {
        let k = at;
        let v = weir_proto::msgpack::skip_value(buf, k)?;
        at = weir_proto::msgpack::skip_value(buf, v)?;
        f(k, v)?;
    }
    Ok(at)
}

/// True if the key at `pos` equals `name` as Ruby's Hash compares String keys: a `str` with
/// the same bytes, or a `bin` with the same bytes when they are ASCII.
pub fn key_is(buf: &[u8], pos: usize, name: &[u8]) -> bool {
    match read_header(buf, pos) {
        Ok((Header::Str(n), p)) => read_payload(buf, p, n).is_ok_and(|(s, _)| s == name),
        Ok((Header::Bin(n), p)) => {
            read_payload(buf, p, n).is_ok_and(|(s, _)| s == name && s.is_ascii())
        }
        _ => false,
    }
}

/// The position of the value Ruby's `record[name]` would return: the last pair with that key
/// (a Hash built from a map with duplicate keys keeps the last value). `None` if absent.
pub fn lookup(buf: &[u8], name: &[u8]) -> Result<Option<usize>, FormatError> {
    let mut found = None;
    let end = for_each_pair(buf, 0, |k, v| {
        if key_is(buf, k, name) {
            found = Some(v);
        }
        Ok(())
    })?;
    if end != buf.len() {
        return Err(FormatError::TrailingBytes);
    }
    Ok(found)
}
