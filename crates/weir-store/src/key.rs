//! Chunk keys: which events share a chunk (Fluentd's `<buffer tag, time, key>` argument).

use weir_proto::msgpack::{read_header, read_payload, skip_value, Header};
use weir_proto::EventTime;

/// The key of a chunk: events with equal keys go to the same chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChunkKey {
    /// The tag, when `tag` is a chunk key.
    pub tag: Option<String>,
    /// The start of the event's time range (Unix seconds), when `time` is a chunk key.
    pub timekey: Option<i64>,
    /// Record-key values in configuration order, as `(key as configured, value)`. A missing
    /// key or `nil` gives an empty string.
    pub variables: Vec<(String, String)>,
}

/// One record key: the configured spelling and the path into the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    /// The key as written in the configuration (`host`, `$.kubernetes.namespace`).
    pub name: String,
    /// The map keys to follow from the record's top level.
    pub path: Vec<String>,
}

impl RecordKey {
    /// Parses a record chunk key: a plain top-level key (`host`, `a.b` is one key named `a.b`,
    /// as in Fluentd) or a record-accessor path `$.a.b`. Bracket notation is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("$.") {
            if rest.contains('[') {
                return Err(format!(
                    "'{s}': bracket notation is not supported in chunk keys"
                ));
            }
            let path: Vec<String> = rest.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(format!("'{s}': empty path segment"));
            }
            return Ok(RecordKey {
                name: s.to_string(),
                path,
            });
        }
        if s.starts_with('$') {
            return Err(format!(
                "'{s}': record accessor must start with '$.' (bracket notation is not supported)"
            ));
        }
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
        {
            return Err(format!(
                "'{s}': chunk keys may hold only letters, digits, '_', '-', '.', '@'"
            ));
        }
        Ok(RecordKey {
            name: s.to_string(),
            path: vec![s.to_string()],
        })
    }
}

/// How the chunk key of an event is computed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkKeySpec {
    /// `tag` is a chunk key.
    pub tag: bool,
    /// `time` is a chunk key with this range length in seconds.
    pub timekey: Option<i64>,
    /// The UTC offset in seconds used to align time ranges (0 with `timekey_use_utc`).
    pub utc_offset: i64,
    /// Record keys, in configuration order.
    pub record_keys: Vec<RecordKey>,
}

impl ChunkKeySpec {
    /// True when every event of a request has the same key (only `tag` or nothing).
    pub fn is_simple(&self) -> bool {
        self.timekey.is_none() && self.record_keys.is_empty()
    }

    /// The chunk key of one event.
    pub fn key_of(&self, tag: &str, time: EventTime, record: &[u8]) -> ChunkKey {
        ChunkKey {
            tag: self.tag.then(|| tag.to_string()),
            timekey: self
                .timekey
                .map(|tk| timekey_of(i64::from(time.sec), tk, self.utc_offset)),
            variables: self
                .record_keys
                .iter()
                .map(|k| (k.name.clone(), record_value_string(record, &k.path)))
                .collect(),
        }
    }
}

/// The start of the `timekey`-second range holding `t`, with ranges aligned on local midnight
/// of a zone `utc_offset` seconds east of UTC (as Fluentd computes it).
pub fn timekey_of(t: i64, timekey: i64, utc_offset: i64) -> i64 {
    if timekey <= 0 {
        return t;
    }
    t - (t + utc_offset).rem_euclid(timekey)
}

/// Parses a fixed UTC offset as Fluentd's `timekey_zone` accepts it: `+0900`, `-05:00`, `+09`,
/// `UTC`, `Z`. Named zones (`Asia/Tokyo`) need a time zone database weir does not carry.
pub fn parse_utc_offset(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt") || t == "Z" {
        return Ok(0);
    }
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => {
            return Err(format!(
                "'{s}': only fixed offsets such as +0900 or -05:00 (or UTC) are supported; named zones are not"
            ))
        }
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(format!("'{s}': expected +HH, +HHMM or +HH:MM"));
    }
    let h: i64 = digits[..2]
        .parse()
        .map_err(|_| format!("'{s}': bad hours"))?;
    let m: i64 = if digits.len() == 4 {
        digits[2..]
            .parse()
            .map_err(|_| format!("'{s}': bad minutes"))?
    } else {
        0
    };
    if h > 23 || m > 59 {
        return Err(format!("'{s}': offset out of range"));
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// Finds the value at `path` in a msgpack map without decoding the rest of it. Returns the
/// value's byte range, or `None` when a step is missing or not a map.
pub fn find_path(record: &[u8], path: &[String]) -> Option<(usize, usize)> {
    let mut pos = 0usize;
    for seg in path {
        let (h, mut p) = read_header(record, pos).ok()?;
        let Header::Map(n) = h else { return None };
        let mut found = None;
        for _ in 0..n {
            let (kh, kp) = read_header(record, p).ok()?;
            let matches = match kh {
                Header::Str(len) | Header::Bin(len) => {
                    let (bytes, _) = read_payload(record, kp, len).ok()?;
                    bytes == seg.as_bytes()
                }
                _ => false,
            };
            let value_at = skip_value(record, p).ok()?;
            if matches {
                found = Some(value_at);
                break;
            }
            p = skip_value(record, value_at).ok()?;
        }
        pos = found?;
    }
    let end = skip_value(record, pos).ok()?;
    Some((pos, end))
}

/// The value at `path` as the string Fluentd would put in the chunk key: strings as they are,
/// numbers and booleans in Ruby's spelling, `nil` or a missing key as empty, maps and arrays as
/// JSON.
pub fn record_value_string(record: &[u8], path: &[String]) -> String {
    let Some((start, end)) = find_path(record, path) else {
        return String::new();
    };
    let value = &record[start..end];
    let Ok((h, p)) = read_header(value, 0) else {
        return String::new();
    };
    match h {
        Header::Nil => String::new(),
        Header::Bool(b) => b.to_string(),
        Header::Uint(v) => v.to_string(),
        Header::Int(v) => v.to_string(),
        Header::F32(_) | Header::F64(_) => {
            let v = match h {
                Header::F32(f) => f64::from(f),
                Header::F64(f) => f,
                _ => 0.0,
            };
            let mut out = Vec::new();
            weir_proto::write_ruby_float(&mut out, v);
            String::from_utf8_lossy(&out).into_owned()
        }
        Header::Str(len) | Header::Bin(len) => match read_payload(value, p, len) {
            Ok((b, _)) => String::from_utf8_lossy(b).into_owned(),
            Err(_) => String::new(),
        },
        _ => {
            let mut out = Vec::new();
            match weir_proto::record_to_json(value, &mut out) {
                Ok(()) => String::from_utf8_lossy(&out).into_owned(),
                Err(_) => String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::msgpack::{write_map_len, write_str, write_uint};

    fn rec() -> Vec<u8> {
        // {"host":"a","n":7,"k8s":{"ns":"prod","x":{"y":true}}}
        let mut r = Vec::new();
        write_map_len(&mut r, 3);
        write_str(&mut r, b"host");
        write_str(&mut r, b"a");
        write_str(&mut r, b"n");
        write_uint(&mut r, 7);
        write_str(&mut r, b"k8s");
        write_map_len(&mut r, 2);
        write_str(&mut r, b"ns");
        write_str(&mut r, b"prod");
        write_str(&mut r, b"x");
        write_map_len(&mut r, 1);
        write_str(&mut r, b"y");
        r.push(0xc3);
        r
    }

    fn path(s: &str) -> Vec<String> {
        RecordKey::parse(s).map(|k| k.path).unwrap_or_default()
    }

    #[test]
    fn extracts_nested_values() {
        let r = rec();
        assert_eq!(record_value_string(&r, &path("host")), "a");
        assert_eq!(record_value_string(&r, &path("n")), "7");
        assert_eq!(record_value_string(&r, &path("$.k8s.ns")), "prod");
        assert_eq!(record_value_string(&r, &path("$.k8s.x.y")), "true");
        assert_eq!(record_value_string(&r, &path("$.k8s.x")), "{\"y\":true}");
        assert_eq!(record_value_string(&r, &path("$.k8s.missing")), "");
        assert_eq!(record_value_string(&r, &path("$.host.deeper")), "");
        assert_eq!(record_value_string(b"\x81", &path("host")), "");
    }

    #[test]
    fn parses_record_keys() {
        assert!(RecordKey::parse("$['a']").is_err());
        assert!(RecordKey::parse("$.a..b").is_err());
        assert!(RecordKey::parse("a b").is_err());
        assert_eq!(path("a.b"), vec!["a.b".to_string()]);
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_utc_offset("+0900"), Ok(32400));
        assert_eq!(parse_utc_offset("-05:30"), Ok(-19800));
        assert_eq!(parse_utc_offset("+09"), Ok(32400));
        assert_eq!(parse_utc_offset("UTC"), Ok(0));
        assert!(parse_utc_offset("Asia/Tokyo").is_err());
        assert!(parse_utc_offset("+2500").is_err());
    }

    #[test]
    fn timekeys_align_on_zone_midnight() {
        // 2024-01-01T20:00:00Z is 2024-01-02T05:00 in +0900.
        let t = 1_704_139_200;
        assert_eq!(timekey_of(t, 86400, 0), 1_704_067_200); // 2024-01-01T00:00Z
        assert_eq!(timekey_of(t, 86400, 32400), 1_704_121_200); // 2024-01-02T00:00+09
        assert_eq!(timekey_of(t, 3600, 0), t);
        assert_eq!(timekey_of(t + 59, 60, 19800), t); // half-hour zone, minute ranges
        assert_eq!(timekey_of(t, 3600, 19800), t - 1800); // +0530 hours start at :30 UTC
    }
}
