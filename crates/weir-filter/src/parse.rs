//! The `<parse>` section: Fluentd's parsers `json`, `ltsv`, `regexp`, `apache2`, `nginx`,
//! `syslog` (RFC 3164) and `none`, with their time handling (`time_key`, `time_format`,
//! `keep_time_key`, `estimate_current_event`, `utc`/`localtime`). The v0.12 spelling (`format`
//! and friends directly in the plugin's section) is read the way Fluentd's compat layer reads it.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use rmpv::Value;
use weir_config::{ConfigError, Section};
use weir_proto::EventTime;

use crate::value::ruby_regex;
use crate::{opt, warn_unused};

const APACHE2: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>(?:[^\"]|\\")*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>(?:[^\"]|\\")*)" "(?<agent>(?:[^\"]|\\")*)")?$"#;
const NGINX: &str = r#"^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)"(?:\s+(?<http_x_forwarded_for>[^ ]+))?)?$"#;
const SYSLOG: &str = r#"^(?<time>[^ ]*\s*[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[^ \]]*)\])?[^\:]*: *(?<message>.*)$"#;
const SYSLOG_PRI: &str = r#"^<(?<pri>[0-9]+)>(?<time>[^ ]*\s*[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[^ \]]*)\])?[^\:]*: *(?<message>.*)$"#;
const CLF_TIME: &str = "%d/%b/%Y:%H:%M:%S %z";

/// The parser types weir supports.
pub const PARSER_TYPES: &[&str] = &[
    "json", "ltsv", "regexp", "apache2", "nginx", "syslog", "none",
];

#[derive(Debug, Clone)]
enum Kind {
    Json,
    Ltsv {
        delimiter: String,
        label_delimiter: String,
    },
    Regexp(Regex),
    Apache2(Regex),
    None {
        message_key: String,
    },
}

/// A configured parser.
#[derive(Debug, Clone)]
pub struct Parser {
    kind: Kind,
    time_key: Option<String>,
    time_format: Option<String>,
    keep_time_key: bool,
    estimate_current_event: bool,
    utc: bool,
    /// The format has no year (syslog): the current year is assumed.
    yearless: bool,
}

/// A parser and the name of its type, for the routing plan.
#[derive(Debug, Clone)]
pub struct ParserConfig {
    /// The parser.
    pub parser: Parser,
    /// Its `@type`.
    pub type_name: String,
}

/// v0.12 parser parameters Fluentd's compat layer moves into `<parse>`.
const COMPAT: &[&str] = &[
    "format",
    "time_key",
    "time_format",
    "keep_time_key",
    "delimiter",
    "label_delimiter",
    "message_key",
    "with_priority",
    "estimate_current_event",
    "utc",
    "localtime",
    "types",
    "null_empty_string",
    "null_value_pattern",
    "time_type",
    "keys",
];

impl ParserConfig {
    /// Reads the `<parse>` section of `s`, or the v0.12 `format` parameters when there is none.
    /// When a `<parse>` section is present the v0.12 parameters are not read (Fluentd ignores
    /// them too, so they get the "not used" warning).
    pub fn from_plugin_section(
        s: &mut Section<'_>,
        warnings: &mut Vec<ConfigError>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<ParserConfig> {
        match s.section("parse") {
            Err(e) => {
                errors.push(e);
                None
            }
            Ok(Some(mut p)) => {
                let r = Self::read(&mut p, "@type", warnings, errors);
                warn_unused(&p, warnings);
                r
            }
            Ok(None) => {
                if s.element().param("format").is_none() {
                    errors.push(s.error(None, "<parse> section is required"));
                    // Mark the compat parameters as read so they are not also reported unused.
                    for k in COMPAT {
                        let _ = s.string(k);
                    }
                    return None;
                }
                Self::read(s, "format", warnings, errors)
            }
        }
    }

    fn read(
        s: &mut Section<'_>,
        type_key: &str,
        warnings: &mut Vec<ConfigError>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<ParserConfig> {
        let Some(raw_type) = s.string(type_key).or_else(|| {
            if type_key == "@type" {
                s.string("type")
            } else {
                None
            }
        }) else {
            errors.push(s.error(None, "missing @type"));
            return None;
        };
        let mut type_name = raw_type.clone();
        let mut expression = s.string("expression");
        // v0.12: `format /regex/` is a regexp parser.
        if type_key == "format" && raw_type.starts_with('/') {
            type_name = "regexp".into();
            expression = Some(raw_type.clone());
        }
        let mut time_key = Some("time".to_string());
        let mut time_format = None;
        let kind = match type_name.as_str() {
            "json" => {
                if let Some(p) = s.string("json_parser") {
                    if !matches!(p.as_str(), "oj" | "json" | "yajl") {
                        errors.push(s.error(
                            Some("json_parser"),
                            format!("valid options are oj,yajl,json but got '{p}'"),
                        ));
                    }
                }
                Kind::Json
            }
            "ltsv" => Kind::Ltsv {
                delimiter: s.string_or("delimiter", "\t"),
                label_delimiter: s.string_or("label_delimiter", ":"),
            },
            "regexp" => match expression {
                None => {
                    errors.push(s.error(Some("expression"), "is required"));
                    return None;
                }
                Some(e) => match ruby_regex(&e) {
                    Ok(r) if r.capture_names().flatten().next().is_none() => {
                        errors.push(s.error(Some("expression"), "No named captures in 'expression' parameter. The regexp must have at least one named capture"));
                        return None;
                    }
                    Ok(r) => Kind::Regexp(r),
                    Err(e) => {
                        errors.push(s.error(
                            Some(if type_key == "format" {
                                "format"
                            } else {
                                "expression"
                            }),
                            e,
                        ));
                        return None;
                    }
                },
            },
            "apache2" => {
                time_format = Some(CLF_TIME.to_string());
                Kind::Apache2(Regex::new(APACHE2).ok()?)
            }
            "nginx" => {
                time_format = Some(CLF_TIME.to_string());
                Kind::Regexp(Regex::new(NGINX).ok()?)
            }
            "syslog" => {
                time_format = Some("%b %d %H:%M:%S".to_string());
                let pri = opt(s.boolean("with_priority"), errors).unwrap_or(false);
                if let Some(t) = s.string("message_format") {
                    if t != "rfc3164" {
                        errors.push(s.error(Some("message_format"), format!("message_format {t} is not supported by weir yet (supported: rfc3164)")));
                    }
                }
                Kind::Regexp(Regex::new(if pri { SYSLOG_PRI } else { SYSLOG }).ok()?)
            }
            "none" => {
                time_key = None;
                Kind::None {
                    message_key: s.string_or("message_key", "message"),
                }
            }
            other => {
                errors.push(s.error(
                    Some(type_key),
                    format!(
                        "parser plugin '{other}' is not supported by weir (supported: {})",
                        PARSER_TYPES.join(", ")
                    ),
                ));
                return None;
            }
        };
        if let Some(k) = s.string("time_key") {
            time_key = Some(k);
        }
        let user_format = s.string("time_format");
        if user_format.is_some() && time_key.is_none() {
            // Fluentd warns and runs; so does weir.
            warnings.push(s.error(
                Some("time_format"),
                "time_format is set but time_key is not: time_format is not used",
            ));
        }
        if let Some(f) = user_format {
            time_format = Some(f);
        }
        let yearless = type_name == "syslog" && time_format.as_deref() == Some("%b %d %H:%M:%S");
        for (k, why) in [
            ("types", "type conversion of parsed values"),
            ("null_empty_string", "null_empty_string"),
            ("null_value_pattern", "null_value_pattern"),
            ("timezone", "named time zones (use utc or localtime)"),
            (
                "time_type",
                "time_type (weir reads strings with time_format, numbers as Unix time)",
            ),
        ] {
            if let Err(e) = s.unsupported(k, why) {
                errors.push(e);
            }
        }
        let keep_time_key = opt(s.boolean("keep_time_key"), errors).unwrap_or(false);
        let estimate_current_event =
            opt(s.boolean("estimate_current_event"), errors).unwrap_or(true);
        let utc = opt(s.boolean("utc"), errors).unwrap_or(false);
        let localtime = opt(s.boolean("localtime"), errors).unwrap_or(true);
        Some(ParserConfig {
            parser: Parser {
                kind,
                time_key,
                time_format,
                keep_time_key,
                estimate_current_event,
                utc: utc || !localtime,
                yearless,
            },
            type_name,
        })
    }
}

/// What parsing one text gives.
pub type Parsed = Option<(Option<EventTime>, Vec<(Value, Value)>)>;

impl Parser {
    /// Parses `text`. `Ok(None)` means the text does not fit the format (Fluentd's "pattern not
    /// match"); `Err` is a parse error (such as a time that does not fit `time_format`). The
    /// time is `None` when the record has no time and `estimate_current_event` is false.
    pub fn parse(&self, text: &str) -> Result<Parsed, String> {
        let mut record: Vec<(Value, Value)> = match &self.kind {
            Kind::Json => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(serde_json::Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| (Value::from(k.as_str()), crate::value::from_json(v)))
                    .collect(),
                _ => return Ok(None),
            },
            Kind::Ltsv {
                delimiter,
                label_delimiter,
            } => {
                let mut fields: Vec<&str> = text.split(delimiter.as_str()).collect();
                while fields.last().is_some_and(|f| f.is_empty()) {
                    fields.pop();
                }
                let mut out = Vec::new();
                for f in fields {
                    let (k, v) = match f.split_once(label_delimiter.as_str()) {
                        Some((k, v)) => (k, Value::from(v)),
                        None => (f, Value::Nil),
                    };
                    crate::value::map_set(&mut out, k, v);
                }
                out
            }
            Kind::Regexp(re) => {
                let Some(c) = re.captures(text) else {
                    return Ok(None);
                };
                re.capture_names()
                    .flatten()
                    .filter_map(|n| c.name(n).map(|m| (Value::from(n), Value::from(m.as_str()))))
                    .collect()
            }
            Kind::Apache2(re) => {
                let Some(c) = re.captures(text) else {
                    return Ok(None);
                };
                let s = |n: &str| c.name(n).map(|m| m.as_str());
                let dash_nil = |v: Option<&str>| match v {
                    None | Some("-") => Value::Nil,
                    Some(x) => Value::from(x),
                };
                let ruby_to_i = |v: &str| -> i64 {
                    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
                    digits.parse().unwrap_or(0)
                };
                let code = match s("code").map(ruby_to_i) {
                    Some(0) | None => Value::Nil,
                    Some(n) => Value::from(n),
                };
                let size = match s("size") {
                    None | Some("-") => Value::Nil,
                    Some(v) => Value::from(ruby_to_i(v)),
                };
                let mut out = vec![
                    (Value::from("host"), dash_nil(s("host")).clone()),
                    (Value::from("user"), dash_nil(s("user"))),
                    (
                        Value::from("method"),
                        s("method").map(Value::from).unwrap_or(Value::Nil),
                    ),
                    (
                        Value::from("path"),
                        s("path").map(Value::from).unwrap_or(Value::Nil),
                    ),
                    (Value::from("code"), code),
                    (Value::from("size"), size),
                    (Value::from("referer"), dash_nil(s("referer"))),
                    (Value::from("agent"), dash_nil(s("agent"))),
                ];
                // host keeps "-" as written; only user, referer and agent map "-" to nil.
                out[0].1 = s("host").map(Value::from).unwrap_or(Value::Nil);
                if let Some(t) = s("time") {
                    out.push((Value::from("time"), Value::from(t)));
                }
                out
            }
            Kind::None { message_key } => {
                vec![(Value::from(message_key.as_str()), Value::from(text))]
            }
        };
        let mut time = None;
        if let Some(key) = &self.time_key {
            let pos = record
                .iter()
                .rposition(|(k, _)| crate::accessor::key_is(k, key));
            if let Some(i) = pos {
                let v = if self.keep_time_key {
                    record[i].1.clone()
                } else {
                    let v = record.remove(i).1;
                    record.retain(|(k, _)| !crate::accessor::key_is(k, key));
                    v
                };
                time = Some(self.parse_time(&v)?);
            }
        }
        if time.is_none() && self.estimate_current_event {
            time = Some(EventTime::now());
        }
        Ok(Some((time, record)))
    }

    fn parse_time(&self, v: &Value) -> Result<EventTime, String> {
        let bad = |v: &dyn std::fmt::Display| format!("invalid time format: value = {v}");
        let text = match v {
            Value::Integer(i) => {
                return i
                    .as_u64()
                    .and_then(|u| u32::try_from(u).ok())
                    .map(|s| EventTime::new(s, 0))
                    .ok_or_else(|| bad(v));
            }
            Value::F64(f) => return EventTime::from_f64(*f).ok_or_else(|| bad(v)),
            Value::F32(f) => return EventTime::from_f64(f64::from(*f)).ok_or_else(|| bad(v)),
            Value::String(s) => s.as_str().unwrap_or(""),
            _ => return Err(bad(v)),
        };
        let to_event = |secs: i64, nanos: u32| -> Result<EventTime, String> {
            u32::try_from(secs)
                .map(|s| EventTime::new(s, nanos))
                .map_err(|_| bad(&text))
        };
        match &self.time_format {
            None => {
                if let Ok(f) = text.trim().parse::<f64>() {
                    return EventTime::from_f64(f).ok_or_else(|| bad(&text));
                }
                if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                    return to_event(t.timestamp(), t.timestamp_subsec_nanos());
                }
                for f in [
                    "%Y-%m-%d %H:%M:%S %z",
                    "%Y-%m-%dT%H:%M:%S%z",
                    "%d/%b/%Y:%H:%M:%S %z",
                ] {
                    if let Ok(t) = DateTime::parse_from_str(text, f) {
                        return to_event(t.timestamp(), t.timestamp_subsec_nanos());
                    }
                }
                for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                    if let Ok(n) = NaiveDateTime::parse_from_str(text, f) {
                        return self
                            .naive(n)
                            .map_or_else(|| Err(bad(&text)), |(s, ns)| to_event(s, ns));
                    }
                }
                Err(bad(&text))
            }
            Some(f) => {
                let (f, text) = if self.yearless {
                    (
                        format!("%Y {f}"),
                        format!("{} {text}", Local::now().format("%Y")),
                    )
                } else {
                    (f.clone(), text.to_string())
                };
                // `%s` and formats with a zone give an absolute time.
                if let Ok(t) = DateTime::parse_from_str(&text, &f) {
                    return to_event(t.timestamp(), t.timestamp_subsec_nanos());
                }
                match NaiveDateTime::parse_from_str(&text, &f) {
                    Ok(n) => self
                        .naive(n)
                        .map_or_else(|| Err(bad(&text)), |(s, ns)| to_event(s, ns)),
                    Err(_) => Err(bad(&text)),
                }
            }
        }
    }

    fn naive(&self, n: NaiveDateTime) -> Option<(i64, u32)> {
        if self.utc {
            let t = Utc.from_utc_datetime(&n);
            Some((t.timestamp(), t.timestamp_subsec_nanos()))
        } else {
            let t = Local.from_local_datetime(&n).earliest()?;
            Some((t.timestamp(), t.timestamp_subsec_nanos()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::element;

    fn parser(conf: &str) -> Parser {
        let el = element(conf);
        let mut s = Section::new(&el, "<filter **>");
        let mut errors = Vec::new();
        let p = ParserConfig::from_plugin_section(&mut s, &mut Vec::new(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        p.unwrap().parser
    }

    fn show(r: &[(Value, Value)]) -> String {
        Value::Map(r.to_vec()).to_string()
    }

    #[test]
    fn apache2() {
        let p = parser("<filter **>\n<parse>\n@type apache2\n</parse>\n</filter>");
        let (t, r) = p
            .parse(r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#)
            .unwrap()
            .unwrap();
        assert_eq!(t.map(|t| t.sec), Some(1_362_020_400));
        assert_eq!(
            show(&r),
            r#"{"host": "192.168.0.1", "user": nil, "method": "GET", "path": "/", "code": 200, "size": 777, "referer": nil, "agent": "Opera/12.0"}"#
        );
    }

    #[test]
    fn nginx_ltsv_json_regexp_none_syslog() {
        let p = parser("<filter **>\n<parse>\n@type nginx\n</parse>\n</filter>");
        let (_, r) = p
            .parse(r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#)
            .unwrap()
            .unwrap();
        assert_eq!(
            show(&r),
            r#"{"remote": "127.0.0.1", "host": "192.168.0.1", "user": "-", "method": "GET", "path": "/", "code": "200", "size": "777", "referer": "-", "agent": "Opera/12.0"}"#
        );
        // v0.12 spelling.
        let p = parser("<filter **>\nformat ltsv\n</filter>");
        let (_, r) = p.parse("a:1\tb:x:y\tc").unwrap().unwrap();
        assert_eq!(show(&r), r#"{"a": "1", "b": "x:y", "c": nil}"#);
        let p = parser("<filter **>\n<parse>\n@type json\n</parse>\n</filter>");
        let (t, r) = p.parse(r#"{"time":1362020400,"x":[1]}"#).unwrap().unwrap();
        assert_eq!(t.map(|t| t.sec), Some(1_362_020_400));
        assert_eq!(show(&r), r#"{"x": [1]}"#);
        assert!(p.parse("not json").unwrap().is_none());
        let p = parser("<filter **>\nformat /^(?<a>\\w+) (?<time>\\S+)$/\ntime_format %Y-%m-%dT%H:%M:%S\nutc true\n</filter>");
        let (t, r) = p.parse("hello 2013-02-28T03:00:00").unwrap().unwrap();
        assert_eq!(t.map(|t| t.sec), Some(1_362_020_400));
        assert_eq!(show(&r), r#"{"a": "hello"}"#);
        assert!(p.parse("hello").unwrap().is_none());
        assert!(p.parse("hello bad").is_err());
        let p = parser("<filter **>\n<parse>\n@type none\n</parse>\n</filter>");
        let (_, r) = p.parse("raw line").unwrap().unwrap();
        assert_eq!(show(&r), r#"{"message": "raw line"}"#);
        let p = parser("<filter **>\n<parse>\n@type syslog\n</parse>\n</filter>");
        let (_, r) = p
            .parse("Feb 28 12:00:00 host1 sshd[123]: Accepted key")
            .unwrap()
            .unwrap();
        assert_eq!(
            show(&r),
            r#"{"host": "host1", "ident": "sshd", "pid": "123", "message": "Accepted key"}"#
        );
    }
}
