//! A small JSON reader and writer for values written as `[...]` or `{...}` in config files.
//!
//! It keeps object keys in file order (as Ruby's JSON does) and writes values back the way
//! Fluentd's `JSON.dump` does: compact, with floats printed like Ruby prints them.

/// Deepest JSON nesting accepted.
const MAX_DEPTH: usize = 128;

/// A parsed JSON value. Object members keep their order; a key given twice keeps its first place
/// and its last value, as Ruby's hashes do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// The number as written (validated); rendered by [`write_value`].
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The value as Ruby's `to_s` would give it for scalars, and as JSON text otherwise.
    pub(crate) fn to_plain_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => {
                let mut out = String::new();
                write_value(&mut out, other);
                out
            }
        }
    }
}

/// Why a JSON value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JsonError;

pub(crate) struct Reader<'s> {
    s: &'s [u8],
    text: &'s str,
    pub(crate) pos: usize,
    /// In config mode `#` starts a comment where Fluentd would take it as one.
    config_mode: bool,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(text: &'s str, pos: usize, config_mode: bool) -> Self {
        Reader {
            s: text.as_bytes(),
            text,
            pos,
            config_mode,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips white space; in config mode at the top level, also skips a `#` comment to the end
    /// of its line when `comment_ok` says closing the value here would be valid JSON.
    /// `comma_at` is the position of a comma just read, if any: Fluentd only drops a trailing
    /// comma that is on the comment's own line.
    fn skip_ws_top(&mut self, depth: usize, comment_ok: bool, comma_at: Option<usize>) -> bool {
        loop {
            self.skip_ws();
            if self.config_mode && depth == 1 && self.peek() == Some(b'#') {
                let ok = match comma_at {
                    Some(c) => comment_ok && !self.s[c..self.pos].contains(&b'\n'),
                    None => comment_ok,
                };
                if !ok {
                    return false;
                }
                while let Some(b) = self.peek() {
                    self.pos += 1;
                    if b == b'\n' {
                        break;
                    }
                }
                if self.peek().is_none() {
                    return false;
                }
                continue;
            }
            return true;
        }
    }

    /// Reads one value starting at the current position.
    pub(crate) fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError);
        }
        self.skip_ws();
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                self.array(depth + 1)
            }
            Some(b'{') => {
                self.pos += 1;
                self.object(depth + 1)
            }
            Some(b'"') => {
                self.pos += 1;
                self.string().map(Value::String)
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(JsonError),
        }
    }

    /// Reads the rest of an array whose `[` was already read.
    pub(crate) fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        let mut items = Vec::new();
        if !self.skip_ws_top(depth, true, None) {
            return Err(JsonError);
        }
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            if !self.skip_ws_top(depth, true, None) {
                return Err(JsonError);
            }
            match self.peek() {
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    if !self.skip_ws_top(depth, true, Some(comma)) {
                        return Err(JsonError);
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(JsonError),
            }
        }
    }

    /// Reads the rest of an object whose `{` was already read.
    pub(crate) fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        let mut members: Vec<(String, Value)> = Vec::new();
        if !self.skip_ws_top(depth, true, None) {
            return Err(JsonError);
        }
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(JsonError);
            }
            self.pos += 1;
            let key = self.string()?;
            if !self.skip_ws_top(depth, false, None) || self.peek() != Some(b':') {
                return Err(JsonError);
            }
            self.pos += 1;
            if !self.skip_ws_top(depth, false, None) {
                return Err(JsonError);
            }
            let v = self.value(depth)?;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = v,
                None => members.push((key, v)),
            }
            if !self.skip_ws_top(depth, true, None) {
                return Err(JsonError);
            }
            match self.peek() {
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    if !self.skip_ws_top(depth, true, Some(comma)) {
                        return Err(JsonError);
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(JsonError),
            }
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, JsonError> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(JsonError)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let n = self.digits();
        if n == 0 || (n > 1 && self.s.get(int_start) == Some(&b'0')) {
            return Err(JsonError);
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(JsonError);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError);
            }
        }
        Ok(Value::Number(self.text[start..self.pos].to_string()))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.s.get(self.pos..self.pos + 4).ok_or(JsonError)?;
        let h = std::str::from_utf8(h).map_err(|_| JsonError)?;
        let v = u32::from_str_radix(h, 16).map_err(|_| JsonError)?;
        self.pos += 4;
        Ok(v)
    }

    /// Reads the rest of a string whose opening quote was already read.
    fn string(&mut self) -> Result<String, JsonError> {
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.text.get(start..self.pos).ok_or(JsonError)?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self.peek().ok_or(JsonError)?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(JsonError);
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(JsonError);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(c).ok_or(JsonError)?);
                        }
                        _ => return Err(JsonError),
                    }
                }
                _ => return Err(JsonError),
            }
        }
    }
}

/// Parses a whole string as one JSON value (white space around it allowed).
pub(crate) fn parse(text: &str) -> Result<Value, JsonError> {
    let mut r = Reader::new(text, 0, false);
    let v = r.value(0)?;
    r.skip_ws();
    if r.pos != text.len() {
        return Err(JsonError);
    }
    Ok(v)
}

/// Writes a string as a JSON string literal, escaping as Ruby's JSON generator does.
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes a value compactly, as Fluentd's `JSON.dump` does.
pub(crate) fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&ruby_number(n)),
        Value::String(s) => write_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON number as Ruby prints it after parsing: integers as written (`-0` as `0`), floats in
/// Ruby's `Float#to_s` form (`100.0`, `1.0e+20`, `1.0e-05`).
fn ruby_number(n: &str) -> String {
    let is_float = n.contains(['.', 'e', 'E']);
    if !is_float {
        return if n == "-0" {
            "0".to_string()
        } else {
            n.to_string()
        };
    }
    match n.parse::<f64>() {
        Ok(f) if f.is_finite() => ruby_float(f),
        Ok(f) if f > 0.0 => "Infinity".to_string(),
        Ok(_) => "-Infinity".to_string(),
        Err(_) => n.to_string(),
    }
}

fn ruby_float(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let a = f.abs();
    if (1e-4..1e16).contains(&a) {
        let s = format!("{f}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(text: &str) -> Option<String> {
        let v = parse(text).ok()?;
        let mut out = String::new();
        write_value(&mut out, &v);
        Some(out)
    }

    #[test]
    fn compact_and_ordered() {
        assert_eq!(
            dump(r#" { "b" : 1 , "a" : [ true , null , "x\"y" ] } "#).as_deref(),
            Some(r#"{"b":1,"a":[true,null,"x\"y"]}"#)
        );
        assert_eq!(
            dump(r#"{"a":1,"b":2,"a":3}"#).as_deref(),
            Some(r#"{"a":3,"b":2}"#)
        );
    }

    #[test]
    fn floats_like_ruby() {
        assert_eq!(
            dump("[1.50, 1e2, 1E+20, 0.00001, 0.0001, -0, 2.5e-3]").as_deref(),
            Some("[1.5,100.0,1.0e+20,1.0e-05,0.0001,0,0.0025]")
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            dump(r#"["\u00e9\ud83d\ude00\n\/"]"#).as_deref(),
            Some("[\"é😀\\n/\"]")
        );
        assert_eq!(dump("[\"a\u{1}\"]"), None);
        assert_eq!(dump(r#"["\u0001"]"#).as_deref(), Some(r#"["\u0001"]"#));
    }

    #[test]
    fn invalid() {
        for bad in [
            "[1,]",
            "[01]",
            "{\"a\"}",
            "[1 2]",
            "[",
            "{",
            "[-]",
            "[1.]",
            "tru",
            "[1] x",
            "[\"\\ud800\"]",
        ] {
            assert_eq!(parse(bad), Err(JsonError), "{bad}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), Err(JsonError));
    }
}
