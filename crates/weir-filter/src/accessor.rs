//! Record keys as Fluentd's `record_accessor` helper reads them: a plain key (`message`), or a
//! path into nested maps (`$.kubernetes.pod_name`, `$['a']['b c']`, `$.items[0]`).

use rmpv::Value;
use weir_proto::msgpack::{read_header, read_payload, skip_value, Header};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A compiled record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPath {
    text: String,
    steps: Vec<Step>,
}

impl RecordPath {
    /// Parses a key. Text that does not start with `$.` or `$[` is one top-level key, as in
    /// Fluentd.
    pub fn parse(text: &str) -> Result<RecordPath, String> {
        let steps = if text.starts_with("$.") || text.starts_with("$[") {
            parse_path(text)?
        } else {
            vec![Step::Key(text.to_string())]
        };
        Ok(RecordPath {
            text: text.to_string(),
            steps,
        })
    }

    /// The key as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level key when the path has one step.
    pub fn top_key(&self) -> Option<&str> {
        match self.steps.as_slice() {
            [Step::Key(k)] => Some(k),
            _ => None,
        }
    }

    /// The msgpack bytes of the value at this path in `record` (one msgpack map), without
    /// decoding anything else.
    pub fn find<'a>(&self, record: &'a [u8]) -> Option<&'a [u8]> {
        let mut value = record;
        for step in &self.steps {
            value = match step {
                Step::Key(k) => map_get(value, k.as_bytes())?,
                Step::Index(i) => array_get(value, *i)?,
            };
        }
        Some(value)
    }

    /// The value at this path in a decoded record.
    pub fn get<'a>(&self, record: &'a Value) -> Option<&'a Value> {
        let mut v = record;
        for step in &self.steps {
            v = match (step, v) {
                (Step::Key(k), Value::Map(pairs)) => {
                    &pairs.iter().rev().find(|(key, _)| key_is(key, k))?.1
                }
                (Step::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }

    /// Removes the value at this path from a decoded record, if present.
    pub fn delete(&self, record: &mut Value) {
        let Some((last, parents)) = self.steps.split_last() else {
            return;
        };
        let mut v = record;
        for step in parents {
            v = match (step, v) {
                (Step::Key(k), Value::Map(pairs)) => {
                    match pairs.iter_mut().rev().find(|(key, _)| key_is(key, k)) {
                        Some((_, inner)) => inner,
                        None => return,
                    }
                }
                (Step::Index(i), Value::Array(items)) => match items.get_mut(*i) {
                    Some(inner) => inner,
                    None => return,
                },
                _ => return,
            };
        }
        match (last, v) {
            (Step::Key(k), Value::Map(pairs)) => pairs.retain(|(key, _)| !key_is(key, k)),
            (Step::Index(i), Value::Array(items)) if *i < items.len() => {
                items.remove(*i);
            }
            _ => {}
        }
    }
}

/// True when a map key is the string `k`.
pub fn key_is(key: &Value, k: &str) -> bool {
    match key {
        Value::String(s) => s.as_bytes() == k.as_bytes(),
        Value::Binary(b) => b.as_slice() == k.as_bytes(),
        _ => false,
    }
}

fn parse_path(text: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("invalid record accessor '{text}': {why}");
    let mut steps = Vec::new();
    let mut rest = text.get(1..).unwrap_or("");
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (key, after) = r.split_at(end);
            if key.is_empty() {
                return Err(bad("empty key"));
            }
            steps.push(Step::Key(key.to_string()));
            rest = after;
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']').ok_or_else(|| bad("'[' without ']'"))?;
            let inner = &r[..close];
            if let Some(q) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                steps.push(Step::Key(q.to_string()));
            } else {
                let i: usize = inner
                    .parse()
                    .map_err(|_| bad("brackets need a quoted key or an index"))?;
                steps.push(Step::Index(i));
            }
            rest = &r[close + 1..];
        } else {
            return Err(bad("expected '.' or '['"));
        }
    }
    if steps.is_empty() {
        return Err(bad("no key"));
    }
    Ok(steps)
}

/// The value for `key` in the msgpack map at the start of `buf`. When a key appears twice the
/// last one wins, as when Ruby decodes the map.
pub fn map_get<'a>(buf: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let (h, mut pos) = read_header(buf, 0).ok()?;
    let Header::Map(n) = h else { return None };
    let mut found = None;
    for _ in 0..n {
        let (kh, kp) = read_header(buf, pos).ok()?;
        let matches = match kh {
            Header::Str(len) | Header::Bin(len) => read_payload(buf, kp, len).ok()?.0 == key,
            _ => false,
        };
        let vstart = skip_value(buf, pos).ok()?;
        let vend = skip_value(buf, vstart).ok()?;
        if matches {
            found = buf.get(vstart..vend);
        }
        pos = vend;
    }
    found
}

fn array_get(buf: &[u8], index: usize) -> Option<&[u8]> {
    let (h, mut pos) = read_header(buf, 0).ok()?;
    let Header::Array(n) = h else { return None };
    if index >= n as usize {
        return None;
    }
    for _ in 0..index {
        pos = skip_value(buf, pos).ok()?;
    }
    let end = skip_value(buf, pos).ok()?;
    buf.get(pos..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(json: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        weir_proto::json_to_msgpack(&v, &mut out);
        out
    }

    #[test]
    fn finds_plain_and_nested_keys() {
        let r = mp(r#"{"a":"x","k":{"p":{"q":7}},"arr":[1,"two"],"b c":1}"#);
        assert_eq!(
            RecordPath::parse("a").unwrap().find(&r),
            Some(&[0xa1, b'x'][..])
        );
        assert_eq!(
            RecordPath::parse("$.k.p.q").unwrap().find(&r),
            Some(&[7u8][..])
        );
        assert_eq!(
            RecordPath::parse("$['k']['p']['q']").unwrap().find(&r),
            Some(&[7u8][..])
        );
        assert_eq!(
            RecordPath::parse("$.arr[1]").unwrap().find(&r),
            Some(&[0xa3, b't', b'w', b'o'][..])
        );
        assert_eq!(RecordPath::parse("$.missing").unwrap().find(&r), None);
        assert_eq!(
            RecordPath::parse("$['b c']").unwrap().find(&r),
            Some(&[1u8][..])
        );
        assert!(RecordPath::parse("$.a[").is_err());
    }

    #[test]
    fn deletes_nested() {
        let r = mp(r#"{"k":{"p":1,"q":2},"z":3}"#);
        let mut v = rmpv::decode::read_value(&mut &r[..]).unwrap();
        RecordPath::parse("$.k.p").unwrap().delete(&mut v);
        RecordPath::parse("z").unwrap().delete(&mut v);
        assert_eq!(v.to_string(), r#"{"k": {"q": 2}}"#);
    }
}
