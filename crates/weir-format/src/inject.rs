//! `<inject>`: adding the hostname, worker id, tag and time to a record before it is
//! formatted (Fluentd `plugin_helper/inject.rb`), and the v0.12 flat parameters that turn into
//! it (`plugin_helper/compat_parameters.rb`).

use weir_config::{ConfigError, Section};
use weir_proto::msgpack::{
    read_header, skip_value, write_f64, write_int, write_map_len, write_str, Header,
};
use weir_proto::EventTime;

use crate::error::FormatError;
use crate::ruby::key_is;
use crate::time::{TimeFormatter, TimeType, TimeZoneSpec};

/// How the injected time is written.
#[derive(Clone, Debug)]
enum InjectTime {
    /// `time.to_r.truncate(6).to_f`: a msgpack float of seconds, truncated to microseconds.
    Float,
    /// `time.to_i`: a msgpack integer.
    Unixtime,
    /// A string from `Fluent::TimeFormatter`.
    String(TimeFormatter),
}

/// A configured `<inject>`: which keys to add to each record. Keys are set as Ruby's
/// `record[key] = value` sets them: an existing key keeps its place and gets the new value,
/// a new key goes at the end; the order is hostname, worker id, tag, time.
#[derive(Clone, Debug)]
pub struct Inject {
    hostname: Option<(String, String)>,
    worker_id: Option<(String, i64)>,
    tag_key: Option<String>,
    time: Option<(String, InjectTime)>,
}

/// One value to inject.
enum Value<'a> {
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Formatted(Vec<u8>),
}

fn write_value(out: &mut Vec<u8>, v: &Value<'_>) {
    match v {
        Value::Str(s) => write_str(out, s),
        Value::Int(i) => write_int(out, *i),
        Value::Float(f) => write_f64(out, *f),
        Value::Formatted(s) => write_str(out, s),
    }
}

/// Keys that `compat_parameters` moves from the plugin's own section into `<inject>`.
const INJECT_PARAMS: [&str; 8] = [
    "include_time_key",
    "time_key",
    "time_format",
    "timezone",
    "include_tag_key",
    "tag_key",
    "localtime",
    "utc",
];

fn collect<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

impl Inject {
    /// Reads the injection settings for a plugin.
    ///
    /// `s` may be the `<inject>` section itself, or the plugin's section: then its `<inject>`
    /// child is read, or, when there is none, the v0.12 parameters `include_time_key`,
    /// `time_key`, `time_format`, `timezone`, `include_tag_key`, `tag_key`, `localtime`, `utc`
    /// and `time_as_epoch` as Fluentd's `compat_parameters` converts them: `include_time_key
    /// true` means `time_key time` with `time_type string`; `include_tag_key true` means
    /// `tag_key tag`; a bare `time_key` injects with the `<inject>` default `time_type float`;
    /// `localtime` and `utc` together are an error.
    ///
    /// Returns `None` when nothing is injected.
    pub fn from_section(s: &mut Section<'_>) -> Result<Option<Inject>, Vec<ConfigError>> {
        if s.name() == "inject" {
            return Self::from_inject(s);
        }
        match s.section("inject") {
            Ok(Some(mut child)) => return Self::from_inject(&mut child),
            Ok(None) => {}
            Err(e) => return Err(vec![e]),
        }
        let present = |k: &str| s.element().param(k).is_some();
        if !INJECT_PARAMS.iter().any(|k| present(k)) {
            return Ok(None);
        }
        Self::from_compat(s)
    }

    fn from_compat(s: &mut Section<'_>) -> Result<Option<Inject>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let include_time = collect(&mut errors, s.boolean("include_time_key")).flatten();
        let include_tag = collect(&mut errors, s.boolean("include_tag_key")).flatten();
        let time_as_epoch = collect(&mut errors, s.boolean("time_as_epoch")).flatten();
        let localtime = collect(&mut errors, s.boolean("localtime")).flatten();
        let utc = collect(&mut errors, s.boolean("utc")).flatten();
        let mut time_key = s.string("time_key");
        let mut tag_key = s.string("tag_key");
        let time_format = s.string("time_format");
        let timezone = s.string("timezone");
        let mut time_type = None;
        if include_time == Some(true) {
            time_key.get_or_insert_with(|| "time".to_string());
            time_type = Some(TimeType::String);
        }
        if time_as_epoch == Some(true) {
            time_type = Some(TimeType::Unixtime);
        }
        let local = match (localtime, utc) {
            (Some(_), Some(_)) => {
                errors.push(s.error(
                    Some("utc"),
                    "both of utc and localtime are specified, use only one of them",
                ));
                true
            }
            (Some(l), None) => l,
            (None, Some(u)) => !u,
            (None, None) => true,
        };
        if include_tag == Some(true) {
            tag_key.get_or_insert_with(|| "tag".to_string());
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let time = match time_key {
            Some(k) => {
                let tt = time_type.unwrap_or(TimeType::Float);
                match Self::time_kind(tt, time_format, local, false, timezone.as_deref()) {
                    Ok(t) => Some((k, t)),
                    Err(e) => return Err(vec![s.error(Some("timezone"), e.to_string())]),
                }
            }
            None => None,
        };
        Ok(Self::build(None, None, tag_key, time))
    }

    fn from_inject(s: &mut Section<'_>) -> Result<Option<Inject>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let hostname_key = s.string("hostname_key");
        let hostname = s.string("hostname");
        let worker_id_key = s.string("worker_id_key");
        let tag_key = s.string("tag_key");
        let time_key = s.string("time_key");
        let time_type = collect(
            &mut errors,
            s.enumeration("time_type", &["float", "unixtime", "string"]),
        )
        .flatten()
        .and_then(|t| TimeType::parse(&t))
        .unwrap_or(TimeType::Float);
        let time_format = s.string("time_format");
        let localtime = collect(&mut errors, s.boolean("localtime"))
            .flatten()
            .unwrap_or(true);
        let utc = collect(&mut errors, s.boolean("utc"))
            .flatten()
            .unwrap_or(false);
        let timezone = s.string("timezone");
        if !errors.is_empty() {
            return Err(errors);
        }
        let time = match time_key {
            Some(k) => {
                match Self::time_kind(time_type, time_format, localtime, utc, timezone.as_deref()) {
                    Ok(t) => Some((k, t)),
                    Err(e) => return Err(vec![s.error(Some("timezone"), e.to_string())]),
                }
            }
            None => None,
        };
        let hostname = hostname_key.map(|k| {
            let h = hostname.unwrap_or_else(|| {
                hostname::get()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            (k, h)
        });
        // weir runs one worker, so the worker id is always 0.
        let worker = worker_id_key.map(|k| (k, 0));
        Ok(Self::build(hostname, worker, tag_key, time))
    }

    fn time_kind(
        tt: TimeType,
        format: Option<String>,
        localtime: bool,
        utc: bool,
        timezone: Option<&str>,
    ) -> Result<InjectTime, FormatError> {
        Ok(match tt {
            TimeType::Float => InjectTime::Float,
            TimeType::Unixtime => InjectTime::Unixtime,
            TimeType::String => {
                let tz = TimeZoneSpec::from_params(localtime, utc, timezone)?;
                InjectTime::String(TimeFormatter::new(TimeType::String, format, tz))
            }
        })
    }

    fn build(
        hostname: Option<(String, String)>,
        worker_id: Option<(String, i64)>,
        tag_key: Option<String>,
        time: Option<(String, InjectTime)>,
    ) -> Option<Inject> {
        if hostname.is_none() && worker_id.is_none() && tag_key.is_none() && time.is_none() {
            return None;
        }
        Some(Inject {
            hostname,
            worker_id,
            tag_key,
            time,
        })
    }

    /// Builds an injection directly: `tag_key` adds the tag; `time` adds the time under a key
    /// as `time_type` (`format` and `tz` for strings).
    pub fn new(
        tag_key: Option<String>,
        time: Option<(String, TimeType, Option<String>, TimeZoneSpec)>,
    ) -> Inject {
        Inject {
            hostname: None,
            worker_id: None,
            tag_key,
            time: time.map(|(k, tt, f, tz)| {
                let kind = match tt {
                    TimeType::Float => InjectTime::Float,
                    TimeType::Unixtime => InjectTime::Unixtime,
                    TimeType::String => InjectTime::String(TimeFormatter::new(tt, f, tz)),
                };
                (k, kind)
            }),
        }
    }

    /// Writes `record` (a msgpack map) with the injected keys to `out`, as msgpack.
    pub fn apply(
        &self,
        tag: &str,
        time: EventTime,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        // The assignments, in Fluentd's order; a key assigned twice keeps its first place and
        // its last value.
        let mut sets: Vec<(&[u8], Value<'_>)> = Vec::with_capacity(4);
        fn set<'a>(sets: &mut Vec<(&'a [u8], Value<'a>)>, k: &'a [u8], v: Value<'a>) {
            if let Some(slot) = sets.iter_mut().find(|(key, _)| *key == k) {
                slot.1 = v;
            } else {
                sets.push((k, v));
            }
        }
        if let Some((k, h)) = &self.hostname {
            set(&mut sets, k.as_bytes(), Value::Str(h.as_bytes()));
        }
        if let Some((k, id)) = &self.worker_id {
            set(&mut sets, k.as_bytes(), Value::Int(*id));
        }
        if let Some(k) = &self.tag_key {
            set(&mut sets, k.as_bytes(), Value::Str(tag.as_bytes()));
        }
        if let Some((k, kind)) = &self.time {
            let v = match kind {
                InjectTime::Unixtime => Value::Int(i64::from(time.sec)),
                InjectTime::Float => {
                    let usec = u64::from(time.sec) * 1_000_000 + u64::from(time.nsec / 1000);
                    Value::Float(usec as f64 / 1e6)
                }
                InjectTime::String(f) => {
                    let mut b = Vec::with_capacity(32);
                    f.format_into(&mut b, time);
                    Value::Formatted(b)
                }
            };
            set(&mut sets, k.as_bytes(), v);
        }

        // First pass: which injected keys the record already has, and how many pairs the
        // output will hold.
        let (h, body) = read_header(record, 0)?;
        let Header::Map(n) = h else {
            return Err(FormatError::NotAMap);
        };
        let mut seen = vec![false; sets.len()];
        let mut kept: usize = 0;
        let mut at = body;
        for _ in 0..n {
            let v = skip_value(record, at)?;
            let e = skip_value(record, v)?;
            match sets.iter().position(|(k, _)| key_is(record, at, k)) {
                Some(i) => {
                    if let Some(s) = seen.get_mut(i) {
                        if !*s {
                            *s = true;
                            kept += 1;
                        }
                    }
                }
                None => kept += 1,
            }
            at = e;
        }
        if at != record.len() {
            return Err(FormatError::TrailingBytes);
        }
        let added = seen.iter().filter(|s| !**s).count();
        write_map_len(out, kept + added);

        // Second pass: copy, replacing injected keys in place and dropping their duplicates.
        let mut done = vec![false; sets.len()];
        let mut at = body;
        for _ in 0..n {
            let v = skip_value(record, at)?;
            let e = skip_value(record, v)?;
            match sets.iter().position(|(k, _)| key_is(record, at, k)) {
                Some(i) => {
                    if let (Some(d), Some((_, val))) = (done.get_mut(i), sets.get(i)) {
                        if !*d {
                            *d = true;
                            out.extend_from_slice(record.get(at..v).unwrap_or(&[]));
                            write_value(out, val);
                        }
                    }
                }
                None => out.extend_from_slice(record.get(at..e).unwrap_or(&[])),
            }
            at = e;
        }
        for ((k, v), d) in sets.iter().zip(&done) {
            if !*d {
                write_str(out, k);
                write_value(out, v);
            }
        }
        Ok(())
    }
}
