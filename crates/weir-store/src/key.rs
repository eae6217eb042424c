//! Chunk keys: which events share a chunk (Fluentd's `<buffer tag, time, key>` argument).

use chrono::{DateTime, LocalResult, Offset, TimeZone};
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
    /// The zone whose local clock time ranges are aligned on (`timekey_zone`; UTC with
    /// `timekey_use_utc`).
    pub zone: TimekeyZone,
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
                .map(|tk| self.zone.timekey_of(i64::from(time.sec), tk)),
            variables: self
                .record_keys
                .iter()
                .map(|k| (k.name.clone(), record_value_string(record, &k.path)))
                .collect(),
        }
    }

    /// The end of the time range that starts at `start` (the start of the next range): `start +
    /// timekey`, except in a named zone, where a day that has a daylight-saving change is 23
    /// or 25 hours long. `start + timekey` without `time` as a chunk key.
    pub fn slice_end(&self, start: i64) -> i64 {
        match self.timekey {
            Some(tk) => self.zone.slice_end(start, tk),
            None => start,
        }
    }
}

/// The zone time ranges (`timekey`) are aligned in: `timekey_zone`, or UTC with
/// `timekey_use_utc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimekeyZone {
    /// A fixed offset east of UTC, in seconds (0 is UTC).
    Fixed(i64),
    /// An IANA zone (`Asia/Tokyo`, `America/New_York`): each instant uses the offset in force
    /// then, so ranges follow the zone's daylight-saving changes.
    Named(chrono_tz::Tz),
}

impl Default for TimekeyZone {
    fn default() -> Self {
        TimekeyZone::Fixed(0)
    }
}

impl TimekeyZone {
    /// Parses a `timekey_zone` value: a fixed offset as [`parse_utc_offset`] reads it, or an
    /// IANA name of the form `Region/Zone` or `Region/Zone/Zone` known to the time zone
    /// database (Fluentd's `Fluent::Timezone` rules; abbreviations such as `JST` are refused).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let parts: Vec<&str> = t.split('/').collect();
        if (parts.len() == 2 || parts.len() == 3) && parts.iter().all(|p| !p.is_empty()) {
            return t
                .parse::<chrono_tz::Tz>()
                .map(TimekeyZone::Named)
                .map_err(|_| {
                    format!("'{s}': unknown time zone (not in the IANA time zone database)")
                });
        }
        parse_utc_offset(t).map(TimekeyZone::Fixed).map_err(|_| {
            format!(
                "'{s}': expected a fixed offset (+0900, -05:00, +09, UTC) or an IANA zone name such as Asia/Tokyo"
            )
        })
    }

    /// The zone's offset east of UTC at the instant `t` (Unix seconds).
    pub fn offset_at(&self, t: i64) -> i64 {
        match self {
            TimekeyZone::Fixed(o) => *o,
            TimekeyZone::Named(tz) => match DateTime::from_timestamp(t, 0) {
                Some(dt) => i64::from(
                    tz.offset_from_utc_datetime(&dt.naive_utc())
                        .fix()
                        .local_minus_utc(),
                ),
                None => 0,
            },
        }
    }

    /// The start of the `timekey`-second range holding `t`.
    ///
    /// Ranges are aligned on the zone's local clock: with a fixed offset, on multiples of
    /// `timekey` since local midnight of 1970-01-01 (Fluentd's formula). In a named zone the
    /// local time of `t` is rounded down the same way and turned back into an instant with
    /// the zone's rules, so a one-day range starts at the real local midnight on the days the
    /// clocks change too: a day with a spring-forward change is 23 hours long, one with a
    /// fall-back change 25 hours. When the rounded local time happens twice (clocks set back),
    /// the range is the one holding `t`; when it does not exist (clocks set forward over it),
    /// the range starts at the change.
    pub fn timekey_of(&self, t: i64, timekey: i64) -> i64 {
        match self {
            TimekeyZone::Fixed(o) => timekey_of(t, timekey, *o),
            TimekeyZone::Named(tz) => named_timekey_of(tz, t, timekey),
        }
    }

    /// The start of the range after the one starting at `start`.
    pub fn slice_end(&self, start: i64, timekey: i64) -> i64 {
        if timekey <= 0 {
            return start;
        }
        if let TimekeyZone::Fixed(_) = self {
            return start + timekey;
        }
        // A range is at most one hour longer than timekey (a fall-back change): probe past
        // its nominal end until a later range begins.
        let step = timekey.min(3600);
        let mut probe = start + timekey;
        for _ in 0..4 {
            let next = self.timekey_of(probe, timekey);
            if next > start {
                return next;
            }
            probe += step;
        }
        start + timekey
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

/// [`TimekeyZone::timekey_of`] for a named zone.
fn named_timekey_of(tz: &chrono_tz::Tz, t: i64, timekey: i64) -> i64 {
    if timekey <= 0 {
        return t;
    }
    let zone = TimekeyZone::Named(*tz);
    let local = t + zone.offset_at(t);
    let floor = local - local.rem_euclid(timekey);
    let fallback = t - local.rem_euclid(timekey);
    let Some(naive) = DateTime::from_timestamp(floor, 0).map(|d| d.naive_utc()) else {
        return fallback;
    };
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(d) if d.timestamp() <= t => d.timestamp(),
        LocalResult::Ambiguous(a, b) => {
            // The later of the two instants that is not after t: the range holding t.
            let (a, b) = (a.timestamp(), b.timestamp());
            let (early, late) = (a.min(b), a.max(b));
            if late <= t {
                late
            } else if early <= t {
                early
            } else {
                fallback
            }
        }
        LocalResult::None => {
            // The rounded local time fell in a gap: the range begins at the change, the first
            // instant whose local time is at or after `floor`. Local time only moves forward
            // across a gap, so a binary search over the preceding two days finds it.
            let local_at = |u: i64| u + zone.offset_at(u);
            let (mut lo, mut hi) = (t - timekey - 2 * 86_400, t);
            if local_at(lo) >= floor {
                return fallback;
            }
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if local_at(mid) >= floor {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi
        }
        LocalResult::Single(_) => fallback,
    }
}

/// Parses a fixed UTC offset as Fluentd's `timekey_zone` accepts it: `+0900`, `-05:00`, `+09`,
/// `UTC`, `Z`. Named zones are read by [`TimekeyZone::parse`].
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
                "'{s}': expected a fixed offset such as +0900 or -05:00, or UTC"
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
    fn zones_parse_fixed_and_named() {
        assert_eq!(TimekeyZone::parse("+0900"), Ok(TimekeyZone::Fixed(32400)));
        assert_eq!(TimekeyZone::parse("UTC"), Ok(TimekeyZone::Fixed(0)));
        assert_eq!(
            TimekeyZone::parse("Asia/Tokyo"),
            Ok(TimekeyZone::Named(chrono_tz::Tz::Asia__Tokyo))
        );
        assert_eq!(
            TimekeyZone::parse("America/Argentina/Buenos_Aires"),
            Ok(TimekeyZone::Named(
                chrono_tz::Tz::America__Argentina__Buenos_Aires
            ))
        );
        for bad in ["Asia/Nowhere", "JST", "Tokyo", "Asia/", "a/b/c/d", "+2500"] {
            assert!(TimekeyZone::parse(bad).is_err(), "{bad}");
        }
    }

    const NY: TimekeyZone = TimekeyZone::Named(chrono_tz::Tz::America__New_York);

    /// Unix seconds of a UTC date and time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .map(|t| t.and_utc().timestamp())
            .unwrap_or_default()
    }

    #[test]
    fn named_zone_without_changes_is_a_fixed_offset() {
        let tokyo = TimekeyZone::Named(chrono_tz::Tz::Asia__Tokyo);
        let t = 1_704_139_200;
        assert_eq!(tokyo.timekey_of(t, 86400), timekey_of(t, 86400, 32400));
        assert_eq!(tokyo.timekey_of(t, 3600), t);
        assert_eq!(tokyo.slice_end(1_704_121_200, 86400), 1_704_121_200 + 86400);
    }

    #[test]
    fn days_follow_the_spring_forward_change() {
        // 2024-03-10: New York moves from EST (-5) to EDT (-4) at 07:00Z (02:00 local).
        let midnight = utc(2024, 3, 10, 5, 0); // 00:00 EST
        for t in [
            midnight,
            utc(2024, 3, 10, 6, 59),
            utc(2024, 3, 10, 12, 0),
            utc(2024, 3, 11, 3, 59),
        ] {
            assert_eq!(NY.timekey_of(t, 86400), midnight, "{t}");
        }
        // The next day starts at 00:00 EDT, 23 hours later.
        assert_eq!(
            NY.timekey_of(utc(2024, 3, 11, 4, 0), 86400),
            utc(2024, 3, 11, 4, 0)
        );
        assert_eq!(NY.slice_end(midnight, 86400), midnight + 23 * 3600);
        // Fluentd's formula would start the slice at 04:00Z (the offset of the event's time),
        // which is 23:00 on the 9th in New York.
        assert_eq!(
            timekey_of(utc(2024, 3, 10, 12, 0), 86400, -4 * 3600),
            utc(2024, 3, 10, 4, 0)
        );
        // Hours: 01:00 EST is followed by 03:00 EDT.
        assert_eq!(
            NY.timekey_of(utc(2024, 3, 10, 6, 30), 3600),
            utc(2024, 3, 10, 6, 0)
        );
        assert_eq!(
            NY.timekey_of(utc(2024, 3, 10, 7, 30), 3600),
            utc(2024, 3, 10, 7, 0)
        );
        assert_eq!(
            NY.slice_end(utc(2024, 3, 10, 6, 0), 3600),
            utc(2024, 3, 10, 7, 0)
        );
    }

    #[test]
    fn days_follow_the_fall_back_change() {
        // 2024-11-03: New York moves from EDT (-4) to EST (-5) at 06:00Z (02:00 local).
        let midnight = utc(2024, 11, 3, 4, 0); // 00:00 EDT
        for t in [
            midnight,
            utc(2024, 11, 3, 5, 30),
            utc(2024, 11, 3, 6, 30),
            utc(2024, 11, 4, 4, 59),
        ] {
            assert_eq!(NY.timekey_of(t, 86400), midnight, "{t}");
        }
        assert_eq!(
            NY.timekey_of(utc(2024, 11, 4, 5, 0), 86400),
            utc(2024, 11, 4, 5, 0)
        );
        assert_eq!(NY.slice_end(midnight, 86400), midnight + 25 * 3600);
        // 01:00-02:00 local happens twice: two hour ranges, one per real hour.
        assert_eq!(
            NY.timekey_of(utc(2024, 11, 3, 5, 30), 3600),
            utc(2024, 11, 3, 5, 0)
        );
        assert_eq!(
            NY.timekey_of(utc(2024, 11, 3, 6, 30), 3600),
            utc(2024, 11, 3, 6, 0)
        );
        assert_eq!(
            NY.slice_end(utc(2024, 11, 3, 5, 0), 3600),
            utc(2024, 11, 3, 6, 0)
        );
    }

    #[test]
    fn a_day_that_starts_in_a_gap_starts_at_the_change() {
        // 2019-09-08: Santiago (Chile) moved from -04 to -03 at 04:00Z, 00:00 local: that day
        // had no midnight and began at 01:00.
        let scl = TimekeyZone::Named(chrono_tz::Tz::America__Santiago);
        let change = utc(2019, 9, 8, 4, 0);
        assert_eq!(scl.offset_at(change - 1), -4 * 3600);
        assert_eq!(scl.offset_at(change), -3 * 3600);
        assert_eq!(scl.timekey_of(change + 3600, 86400), change);
        assert_eq!(scl.timekey_of(change - 1, 86400), change - 86400);
    }

    proptest::proptest! {
        /// Every instant lies in its range, ranges are consecutive, and a fixed zone agrees
        /// with Fluentd's formula.
        #[test]
        fn named_ranges_hold_their_instants(t in 0i64..4_102_444_800, tk in proptest::sample::select(vec![60i64, 900, 3600, 86400])) {
            for zone in [NY, TimekeyZone::Named(chrono_tz::Tz::Europe__London), TimekeyZone::Named(chrono_tz::Tz::Australia__Lord_Howe)] {
                let start = zone.timekey_of(t, tk);
                let end = zone.slice_end(start, tk);
                proptest::prop_assert!(start <= t && t < end, "{zone:?} {t} {tk}: {start}..{end}");
                proptest::prop_assert_eq!(zone.timekey_of(end, tk), end);
                proptest::prop_assert_eq!(zone.timekey_of(start, tk), start);
            }
            let fixed = TimekeyZone::Fixed(19800);
            proptest::prop_assert_eq!(fixed.timekey_of(t, tk), timekey_of(t, tk, 19800));
        }
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
