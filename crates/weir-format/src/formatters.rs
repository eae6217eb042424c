//! The formatters themselves. Each one documents the Fluentd code it follows.

use weir_proto::msgpack::{
    read_header, read_payload, write_array_len, write_bin, write_bool, write_f64, write_int,
    write_map_len, write_nil, write_str, write_uint, Header,
};
use weir_proto::{record_to_json, EventTime, RequestError};

use crate::error::FormatError;
use crate::ruby::{for_each_pair, key_is, lookup, write_inspect, write_to_s, MAX_DEPTH};
use crate::time::TimeFormatter;
use crate::Formatter;

/// Checks that `record` is exactly one msgpack map.
fn check_map(record: &[u8]) -> Result<(), FormatError> {
    let end = for_each_pair(record, 0, |_, _| Ok(()))?;
    if end != record.len() {
        return Err(FormatError::TrailingBytes);
    }
    Ok(())
}

fn json_error(e: RequestError) -> FormatError {
    match e {
        RequestError::Malformed(s) => FormatError::Malformed(s),
        RequestError::TrailingBytes => FormatError::TrailingBytes,
        _ => FormatError::NotAMap,
    }
}

/// True when `hay` holds `needle` somewhere. Searches for the first byte with `memchr` (what
/// `<[u8]>::contains` does) rather than comparing a window at every offset: this check runs on
/// every LTSV value.
fn contains_slice(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if rest.is_empty() {
        return hay.contains(&first);
    }
    let mut from = 0;
    while let Some(i) = hay
        .get(from..)
        .and_then(|h| h.iter().position(|&b| b == first))
    {
        let at = from + i;
        if hay.get(at + 1..).is_some_and(|t| t.starts_with(rest)) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Ruby's `str.gsub(pattern, replacement)` with a literal `pattern`, applied to `out[at..]`.
/// An empty pattern matches before every character and at the end, as in Ruby.
fn gsub_tail(out: &mut Vec<u8>, at: usize, pattern: &[u8], replacement: &[u8]) {
    let Some(tail) = out.get(at..) else { return };
    if pattern.is_empty() {
        let mut rebuilt = Vec::with_capacity(tail.len() * (1 + replacement.len()) + 1);
        for chunk in tail.utf8_chunks() {
            for c in chunk.valid().chars() {
                rebuilt.extend_from_slice(replacement);
                let mut b = [0u8; 4];
                rebuilt.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
            for &b in chunk.invalid() {
                rebuilt.extend_from_slice(replacement);
                rebuilt.push(b);
            }
        }
        rebuilt.extend_from_slice(replacement);
        out.truncate(at);
        out.extend_from_slice(&rebuilt);
        return;
    }
    if !contains_slice(tail, pattern) {
        return;
    }
    let mut rebuilt = Vec::with_capacity(tail.len());
    let mut i = 0;
    while i < tail.len() {
        if tail.get(i..i + pattern.len()) == Some(pattern) {
            rebuilt.extend_from_slice(replacement);
            i += pattern.len();
        } else {
            if let Some(&b) = tail.get(i) {
                rebuilt.push(b);
            }
            i += 1;
        }
    }
    out.truncate(at);
    out.extend_from_slice(&rebuilt);
}

/// `ltsv` (Fluentd `formatter_ltsv.rb`): `label:value` pairs joined by `delimiter`, each value
/// as Ruby's `to_s` with every occurrence of `delimiter` replaced by `replacement` (Fluentd
/// 1.12.2 and later; labels are not touched, and newlines inside values are kept as they
/// are), then `newline` when `add_newline`.
#[derive(Clone, Debug)]
pub struct Ltsv {
    /// Between pairs; default tab.
    pub delimiter: Vec<u8>,
    /// Between label and value; default `:`.
    pub label_delimiter: Vec<u8>,
    /// What a delimiter inside a value becomes; default one space.
    pub replacement: Vec<u8>,
    /// Whether a newline ends the line; default true.
    pub add_newline: bool,
    /// The newline: `\n` (`lf`, the default) or `\r\n` (`crlf`).
    pub newline: &'static [u8],
}

impl Default for Ltsv {
    fn default() -> Self {
        Ltsv {
            delimiter: b"\t".to_vec(),
            label_delimiter: b":".to_vec(),
            replacement: b" ".to_vec(),
            add_newline: true,
            newline: b"\n",
        }
    }
}

impl Formatter for Ltsv {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let mut first = true;
        let end = for_each_pair(record, 0, |k, v| {
            if !first {
                out.extend_from_slice(&self.delimiter);
            }
            first = false;
            write_to_s(record, k, out)?;
            out.extend_from_slice(&self.label_delimiter);
            let at = out.len();
            write_to_s(record, v, out)?;
            gsub_tail(out, at, &self.delimiter, &self.replacement);
            Ok(())
        })?;
        if end != record.len() {
            return Err(FormatError::TrailingBytes);
        }
        if self.add_newline {
            out.extend_from_slice(self.newline);
        }
        Ok(())
    }
}

/// `json` (Fluentd `formatter_json.rb`): the record as compact JSON
/// (`weir_proto::record_to_json`, whichever of `json_parser` oj/yajl/json is named), then
/// `newline` when `add_newline`.
#[derive(Clone, Debug)]
pub struct Json {
    /// Whether a newline ends the line; default true.
    pub add_newline: bool,
    /// The newline.
    pub newline: &'static [u8],
}

impl Formatter for Json {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_map(record)?;
        record_to_json(record, out).map_err(json_error)?;
        if self.add_newline {
            out.extend_from_slice(self.newline);
        }
        Ok(())
    }
}

/// `msgpack` (Fluentd `formatter_msgpack.rb`): `record.to_msgpack`, no newline. The record is
/// re-encoded as msgpack-ruby packs a decoded record: every integer, string, binary, array,
/// map and ext header in its smallest form, `float 32` widened to `float 64`.
#[derive(Clone, Debug, Default)]
pub struct Msgpack;

fn write_ext_header(out: &mut Vec<u8>, ty: i8, len: usize) {
    match len {
        1 => out.push(0xd4),
        2 => out.push(0xd5),
        4 => out.push(0xd6),
        8 => out.push(0xd7),
        16 => out.push(0xd8),
        n if n <= 0xff => out.extend_from_slice(&[0xc7, n as u8]),
        n if n <= 0xffff => {
            out.push(0xc8);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0xc9);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    out.push(ty as u8);
}

/// Re-encodes the value at `pos` canonically; returns the offset after it.
pub(crate) fn repack(
    buf: &[u8],
    pos: usize,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<usize, FormatError> {
    let (h, p) = read_header(buf, pos)?;
    Ok(match h {
        Header::Nil => {
            write_nil(out);
            p
        }
        Header::Bool(b) => {
            write_bool(out, b);
            p
        }
        Header::Uint(v) => {
            write_uint(out, v);
            p
        }
        Header::Int(v) => {
            write_int(out, v);
            p
        }
        Header::F32(v) => {
            write_f64(out, f64::from(v));
            p
        }
        Header::F64(v) => {
            write_f64(out, v);
            p
        }
        Header::Str(n) => {
            let (s, e) = read_payload(buf, p, n)?;
            write_str(out, s);
            e
        }
        Header::Bin(n) => {
            let (s, e) = read_payload(buf, p, n)?;
            write_bin(out, s);
            e
        }
        Header::Ext(ty, n) => {
            let (s, e) = read_payload(buf, p, n)?;
            write_ext_header(out, ty, s.len());
            out.extend_from_slice(s);
            e
        }
        Header::Array(n) | Header::Map(n) => {
            if depth >= MAX_DEPTH {
                return Err(FormatError::TooDeep(MAX_DEPTH));
            }
            let is_map = matches!(h, Header::Map(_));
            if is_map {
                write_map_len(out, n as usize);
            } else {
                write_array_len(out, n as usize);
            }
            let mut at = p;
            let items = if is_map {
                2 * u64::from(n)
            } else {
                u64::from(n)
            };
            for _ in 0..items {
                at = repack(buf, at, out, depth + 1)?;
            }
            at
        }
    })
}

impl Formatter for Msgpack {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_map(record)?;
        repack(record, 0, out, 0)?;
        Ok(())
    }
}

/// `single_value` (Fluentd `formatter_single_value.rb`): `record[message_key].to_s` (empty when
/// the key is missing or `nil`), then `newline` when `add_newline`.
#[derive(Clone, Debug)]
pub struct SingleValue {
    /// The key to print; default `message`.
    pub message_key: String,
    /// Whether a newline ends the line; default true.
    pub add_newline: bool,
    /// The newline.
    pub newline: &'static [u8],
}

impl Formatter for SingleValue {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        if let Some(v) = lookup(record, self.message_key.as_bytes())? {
            write_to_s(record, v, out)?;
        }
        if self.add_newline {
            out.extend_from_slice(self.newline);
        }
        Ok(())
    }
}

/// One step of a record accessor path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKey {
    /// A hash key.
    Key(String),
    /// An array index (negative counts from the end), or an integer hash key.
    Index(i64),
}

/// Fluentd's record accessor (`$.a.b[0]`, `$['a']['b']`): a field name as it is, or a path
/// into nested maps and arrays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A top-level key.
    Plain(String),
    /// A path, for `$.`/`$[` names.
    Path(Vec<PathKey>),
}

impl Field {
    /// Parses a field name; `$.`/`$[` start a path. Returns `None` for a malformed path.
    pub fn parse(s: &str) -> Option<Field> {
        if !(s.starts_with("$.") || s.starts_with("$[")) {
            return Some(Field::Plain(s.to_string()));
        }
        let b = s.as_bytes();
        let mut i = 1;
        let mut keys = Vec::new();
        while i < b.len() {
            match b.get(i)? {
                b'.' => {
                    i += 1;
                    let start = i;
                    while i < b.len() && !matches!(b.get(i), Some(b'.' | b'[')) {
                        i += 1;
                    }
                    let k = s.get(start..i)?;
                    if k.is_empty() {
                        return None;
                    }
                    keys.push(PathKey::Key(k.to_string()));
                }
                b'[' => {
                    i += 1;
                    match b.get(i)? {
                        q @ (b'\'' | b'"') => {
                            let start = i + 1;
                            let end = start + s.get(start..)?.find(char::from(*q))?;
                            keys.push(PathKey::Key(s.get(start..end)?.to_string()));
                            i = end + 1;
                        }
                        _ => {
                            let start = i;
                            let end = start + s.get(start..)?.find(']')?;
                            keys.push(PathKey::Index(s.get(start..end)?.trim().parse().ok()?));
                            i = end;
                        }
                    }
                    if b.get(i) != Some(&b']') {
                        return None;
                    }
                    i += 1;
                }
                _ => return None,
            }
        }
        if keys.is_empty() {
            return None;
        }
        Some(Field::Path(keys))
    }

    /// The position of the value this field names in `record`, if any (Ruby's `dig`; a step
    /// Ruby's `dig` would raise on gives `None`).
    pub fn find(&self, record: &[u8]) -> Result<Option<usize>, FormatError> {
        match self {
            Field::Plain(k) => lookup(record, k.as_bytes()),
            Field::Path(keys) => {
                // Validate the record as a whole first.
                check_map(record)?;
                let mut at = 0;
                for key in keys {
                    let (h, p) = read_header(record, at)?;
                    let next = match (h, key) {
                        (Header::Map(n), _) => {
                            let mut found = None;
                            let mut cur = p;
                            for _ in 0..n {
                                let v = weir_proto::msgpack::skip_value(record, cur)?;
                                let hit = match key {
                                    PathKey::Key(name) => key_is(record, cur, name.as_bytes()),
                                    PathKey::Index(i) => {
                                        matches!(
                                            read_header(record, cur),
                                            Ok((Header::Uint(u), _)) if i64::try_from(u).ok() == Some(*i)
                                        ) || matches!(
                                            read_header(record, cur),
                                            Ok((Header::Int(x), _)) if x == *i
                                        )
                                    }
                                };
                                if hit {
                                    found = Some(v);
                                }
                                cur = weir_proto::msgpack::skip_value(record, v)?;
                            }
                            found
                        }
                        (Header::Array(n), PathKey::Index(i)) => {
                            let idx = if *i < 0 { i64::from(n) + i } else { *i };
                            if idx < 0 || idx >= i64::from(n) {
                                None
                            } else {
                                let mut cur = p;
                                for _ in 0..idx {
                                    cur = weir_proto::msgpack::skip_value(record, cur)?;
                                }
                                Some(cur)
                            }
                        }
                        _ => None,
                    };
                    match next {
                        Some(n) => at = n,
                        None => return Ok(None),
                    }
                    // A nil along the way ends the dig with nil.
                    if matches!(read_header(record, at), Ok((Header::Nil, _))) {
                        return Ok(None);
                    }
                }
                Ok(Some(at))
            }
        }
    }
}

/// `csv` (Fluentd `formatter_csv.rb`, Ruby's `CSV` writer): the `fields` of the record joined
/// by `delimiter`, each as `String(value)`. With `force_quotes` (the default) every field is
/// quoted, `nil` as `""`; without it `nil` is empty, an empty string is `""`, and a field is
/// quoted when it is valid in its encoding and holds `\r`, `\n`, `"` or any character of the
/// delimiter. Quotes inside are doubled. `\n` ends the row when `add_newline`.
#[derive(Clone, Debug)]
pub struct Csv {
    /// The fields, in order (empty names dropped).
    pub fields: Vec<Field>,
    /// Between fields; default `,` (`\t` and `TAB` mean a tab).
    pub delimiter: Vec<u8>,
    /// Quote every field; default true.
    pub force_quotes: bool,
    /// Whether `\n` ends the row; default true.
    pub add_newline: bool,
}

impl Csv {
    fn quotable(&self, s: &[u8]) -> bool {
        if s.iter().any(|&b| matches!(b, b'\r' | b'\n' | b'"')) {
            return true;
        }
        let Ok(d) = std::str::from_utf8(&self.delimiter) else {
            return !self.delimiter.is_empty()
                && s.windows(self.delimiter.len())
                    .any(|w| w == self.delimiter.as_slice());
        };
        d.chars().any(|c| {
            let mut b = [0u8; 4];
            let c = c.encode_utf8(&mut b).as_bytes();
            s.windows(c.len()).any(|w| w == c)
        })
    }
}

impl Formatter for Csv {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_map(record)?;
        let mut text = Vec::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(&self.delimiter);
            }
            let v = f.find(record)?;
            text.clear();
            let mut valid = true;
            let is_nil = match v {
                None => true,
                Some(p) => {
                    let (h, _) = read_header(record, p)?;
                    write_to_s(record, p, &mut text)?;
                    if let Header::Str(_) = h {
                        valid = std::str::from_utf8(&text).is_ok();
                    }
                    matches!(h, Header::Nil)
                }
            };
            let quote = if self.force_quotes {
                true
            } else if is_nil {
                false
            } else {
                text.is_empty() || (valid && self.quotable(&text))
            };
            if quote {
                out.push(b'"');
                for &b in &text {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(&text);
            }
        }
        if self.add_newline {
            out.push(b'\n');
        }
        Ok(())
    }
}

/// `tsv` (Fluentd `formatter_tsv.rb`): `record[key].to_s` for each of `keys`, joined by
/// `delimiter`, then `newline` when `add_newline`.
#[derive(Clone, Debug)]
pub struct Tsv {
    /// The keys, in order.
    pub keys: Vec<String>,
    /// Between values; default tab.
    pub delimiter: Vec<u8>,
    /// Whether a newline ends the line; default true.
    pub add_newline: bool,
    /// The newline.
    pub newline: &'static [u8],
}

impl Formatter for Tsv {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_map(record)?;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(&self.delimiter);
            }
            if let Some(v) = lookup(record, k.as_bytes())? {
                write_to_s(record, v, out)?;
            }
        }
        if self.add_newline {
            out.extend_from_slice(self.newline);
        }
        Ok(())
    }
}

/// `out_file` (Fluentd `formatter_out_file.rb`): `time<delimiter>tag<delimiter>json`, the
/// time by the formatter's time settings (`time_type` string and ISO 8601 by default), each
/// header part only when `output_time`/`output_tag`, then `newline`.
#[derive(Clone, Debug)]
pub struct OutFile {
    /// Write the time first; default true.
    pub output_time: bool,
    /// Write the tag; default true.
    pub output_tag: bool,
    /// Tab, or a space for `SPACE`, or a comma for `COMMA` (any case, anywhere in the value).
    pub delimiter: u8,
    /// How the time is written.
    pub time: TimeFormatter,
    /// The newline.
    pub newline: &'static [u8],
}

impl Formatter for OutFile {
    fn write(
        &self,
        tag: &str,
        time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_map(record)?;
        if self.output_time {
            self.time.format_into(out, time);
            out.push(self.delimiter);
        }
        if self.output_tag {
            out.extend_from_slice(tag.as_bytes());
            out.push(self.delimiter);
        }
        record_to_json(record, out).map_err(json_error)?;
        out.extend_from_slice(self.newline);
        Ok(())
    }
}

/// `hash` (Fluentd `formatter_hash.rb`): `record.to_s`, Ruby 3.4's `Hash#inspect`
/// (`{"a" => 1}`), then `newline` when `add_newline`.
#[derive(Clone, Debug)]
pub struct Hash {
    /// Whether a newline ends the line; default true.
    pub add_newline: bool,
    /// The newline.
    pub newline: &'static [u8],
}

impl Formatter for Hash {
    fn write(
        &self,
        _tag: &str,
        _time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        check_map(record)?;
        write_inspect(record, 0, out, 0)?;
        if self.add_newline {
            out.extend_from_slice(self.newline);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::contains_slice;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn contains_slice_agrees_with_a_window_scan(
            hay in proptest::collection::vec(0u8..4, 0..64),
            needle in proptest::collection::vec(0u8..4, 1..4),
        ) {
            let expected = hay.windows(needle.len()).any(|w| w == needle.as_slice());
            prop_assert_eq!(contains_slice(&hay, &needle), expected);
        }
    }

    #[test]
    fn contains_slice_finds_a_match_after_a_false_start() {
        assert!(contains_slice(b"a\t\tb\t\r\n", b"\t\r\n"));
        assert!(!contains_slice(b"a\t\tb\t\r", b"\t\r\n"));
        assert!(contains_slice(b"x", b""));
    }
}
