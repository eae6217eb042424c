//! Placeholders in output parameters such as a file `path` or an S3 `s3_object_key_format`:
//! parsed once, checked at load time against the section's chunk keys, rendered per chunk.
//!
//! The rules are Fluentd's (`lib/fluent/plugin/output.rb`):
//!
//! - `${tag}` is the whole tag; `${tag[N]}` is its N-th dot-separated part, and a negative N
//!   counts from the end (`${tag[-1]}` is the last part). weir also reads `${tag_parts[N]}`, the
//!   spelling `record_transformer` and `rewrite_tag_filter` use, the same way.
//! - `${key}` is the value of the record key `key` (or of a nested key written as the chunk key
//!   was, `${$.a.b}`); the key must be one of the `<buffer>` chunk keys.
//! - `%Y`, `%m`, `%d`, `%H`, `%M`, `%S` and the other strftime fields format the chunk's time
//!   slice (`timekey`); they need `time` among the chunk keys, and the template must be fine
//!   enough for the timekey (a 1-hour timekey needs at least an hour field).
//! - `${chunk_id}` is the chunk's unique id in hex.
//!
//! A template that the chunk keys cannot fill is an error at load time, with Fluentd's message
//! (`Parameter 'path: ...' has tag placeholders, but chunk key 'tag' is not configured`), and so
//! is a chunk key that the template does not use, as in Fluentd (every chunk must get its own
//! name).
//!
//! Strftime formatting is delegated to a [`TimeFormatter`], so the formatter crate can supply
//! Ruby-compatible output; [`ChronoFormatter`] is the default and uses chrono's `strftime`, which
//! agrees with Ruby for the common fields (`%Y %m %d %H %M %S %y %b %j %s %z %%`).

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{FixedOffset, Offset, TimeZone, Utc};

/// Why a template does not fit its section. The message is Fluentd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    /// The chunk keys include `time` but the template has no strftime field.
    #[error(
        "Parameter '{name}: {template}' doesn't have timestamp placeholders for timekey {timekey}"
    )]
    NoTimePlaceholder {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
        /// The timekey in seconds.
        timekey: u64,
    },
    /// The template has strftime fields but `time` is not a chunk key.
    #[error("Parameter '{name}: {template}' has timestamp placeholders, but chunk key 'time' is not configured")]
    TimeWithoutTimekey {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
    },
    /// The template's finest strftime field is coarser than the timekey.
    #[error("Parameter '{name}: {template}' doesn't have timestamp placeholder for {unit}('{field}') for timekey {timekey}")]
    TimeTooCoarse {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
        /// The finest unit the template has: `second`, `minute`, `hour` or `day`.
        unit: &'static str,
        /// That unit's strftime field, such as `%d` (Fluentd names it in the message).
        field: &'static str,
        /// The timekey in seconds.
        timekey: u64,
    },
    /// `tag` is a chunk key but the template never uses the tag.
    #[error("Parameter '{name}: {template}' doesn't have tag placeholder")]
    NoTagPlaceholder {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
    },
    /// The template uses the tag but `tag` is not a chunk key.
    #[error("Parameter '{name}: {template}' has tag placeholders, but chunk key 'tag' is not configured")]
    TagWithoutChunkKey {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
    },
    /// Some chunk keys do not appear in the template.
    #[error("Parameter '{name}: {template}' doesn't have enough placeholders for keys {}", .keys.join(","))]
    MissingKeys {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
        /// The chunk keys the template leaves out, sorted.
        keys: Vec<String>,
    },
    /// The template names keys that are not chunk keys.
    #[error("Parameter '{name}: {template}' has placeholders, but chunk keys doesn't have keys {}", .keys.join(","))]
    UnknownKeys {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
        /// The keys that are not chunk keys, sorted.
        keys: Vec<String>,
    },
    /// The strftime fields cannot be formatted.
    #[error("Parameter '{name}: {template}' has a strftime field weir cannot format")]
    BadStrftime {
        /// The parameter's name.
        name: String,
        /// The template as written.
        template: String,
    },
}

/// The chunk keys of a `<buffer>` section: `<buffer tag,time,key1>` plus its `timekey`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkKeys {
    /// `tag` is a chunk key.
    pub tag: bool,
    /// `time` is a chunk key, with this timekey in seconds.
    pub timekey: Option<u64>,
    /// The record keys, as written (`host`, `$.kubernetes.pod`).
    pub keys: Vec<String>,
}

/// Formats a time slice with a strftime format. Implemented by the formatter crate for
/// Ruby-exact output; [`ChronoFormatter`] is the default.
pub trait TimeFormatter: Send + Sync {
    /// Formats `unix_secs` with `format`; `None` when the format has a field it cannot format.
    fn strftime(&self, format: &str, unix_secs: i64) -> Option<String>;
}

/// The default [`TimeFormatter`], built on chrono's strftime, in a fixed UTC offset
/// (`timekey_zone`). Until the formatter crate provides Ruby-compatible strftime, this is what
/// weir uses; chrono agrees with Ruby on the usual fields but differs on some rare ones (for
/// example `%N` width flags and `%-l`).
#[derive(Debug, Clone, Copy)]
pub struct ChronoFormatter {
    offset: FixedOffset,
}

impl ChronoFormatter {
    /// Formats in UTC.
    pub fn utc() -> Self {
        ChronoFormatter { offset: Utc.fix() }
    }

    /// Formats in a fixed offset from UTC.
    pub fn with_offset(offset: FixedOffset) -> Self {
        ChronoFormatter { offset }
    }
}

impl TimeFormatter for ChronoFormatter {
    fn strftime(&self, format: &str, unix_secs: i64) -> Option<String> {
        let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
        if items.iter().any(|i| matches!(i, Item::Error)) {
            return None;
        }
        let t = self.offset.timestamp_opt(unix_secs, 0).single()?;
        let mut out = String::new();
        write!(out, "{}", t.format_with_items(items.into_iter())).ok()?;
        Some(out)
    }
}

/// One `${...}` placeholder found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ph {
    Tag,
    TagPart(i64),
    ChunkId,
    Key(String),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    placeholders: Vec<Ph>,
    /// The finest time unit the strftime fields resolve: (seconds, unit name, field).
    time: Option<(u64, &'static str, &'static str)>,
    strftime_ok: bool,
}

/// Fluentd's check base time, 2016-01-01 00:00:00 UTC.
const CHECK_BASE: i64 = 1_451_606_400;
const THRESHOLDS: [(u64, &str, &str); 4] = [
    (1, "second", "%S"),
    (60, "minute", "%M"),
    (3600, "hour", "%H"),
    (86400, "day", "%d"),
];

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '$')
}

/// Scans `${...}` placeholders: `(start, end, inner)` for each.
fn scan(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = s.get(i..).and_then(|rest| rest.find("${")) {
        let start = i + off;
        let Some(close) = s.get(start + 2..).and_then(|rest| rest.find('}')) else {
            break;
        };
        let end = start + 2 + close + 1;
        let inner = s.get(start + 2..end - 1).unwrap_or("");
        if is_placeholder(inner) {
            out.push((start, end, inner));
            i = end;
        } else {
            i = start + 2;
        }
    }
    out
}

fn tag_index(inner: &str) -> Option<i64> {
    let rest = inner
        .strip_prefix("tag[")
        .or_else(|| inner.strip_prefix("tag_parts["))?;
    let n = rest.strip_suffix(']')?;
    let digits = n.strip_prefix('-').unwrap_or(n);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn is_placeholder(inner: &str) -> bool {
    tag_index(inner).is_some() || (!inner.is_empty() && inner.chars().all(is_key_char))
}

fn classify(inner: &str) -> Ph {
    if inner == "tag" {
        Ph::Tag
    } else if let Some(n) = tag_index(inner) {
        Ph::TagPart(n)
    } else if inner == "chunk_id" {
        Ph::ChunkId
    } else {
        Ph::Key(inner.to_string())
    }
}

/// The values one chunk fills a template with.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkValues<'a> {
    /// The chunk's tag, when `tag` is a chunk key.
    pub tag: Option<&'a str>,
    /// The start of the chunk's time slice (Unix seconds), when `time` is a chunk key.
    pub timekey: Option<i64>,
    /// The values of the record chunk keys; a key that is absent renders as empty text.
    pub keys: &'a [(String, String)],
    /// The chunk's id in hex.
    pub chunk_id: Option<&'a str>,
}

impl Template {
    /// Parses a template. `formatter` is used to find which strftime fields it contains.
    pub fn parse(source: &str, formatter: &dyn TimeFormatter) -> Template {
        let placeholders = scan(source)
            .into_iter()
            .map(|(_, _, inner)| classify(inner))
            .collect();
        let base = formatter.strftime(source, CHECK_BASE);
        let strftime_ok = base.is_some();
        let time = base.and_then(|base| {
            THRESHOLDS.iter().copied().find(|(sec, _, _)| {
                formatter
                    .strftime(source, CHECK_BASE + *sec as i64)
                    .is_some_and(|s| s != base)
            })
        });
        Template {
            source: source.to_string(),
            placeholders,
            time,
            strftime_ok,
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the template has strftime fields.
    pub fn has_time(&self) -> bool {
        self.time.is_some()
    }

    /// True when the template uses the tag.
    pub fn has_tag(&self) -> bool {
        self.placeholders
            .iter()
            .any(|p| matches!(p, Ph::Tag | Ph::TagPart(_)))
    }

    /// The record keys the template uses, sorted and without repeats.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .placeholders
            .iter()
            .filter_map(|p| match p {
                Ph::Key(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Checks the template against the section's chunk keys, as Fluentd does at start-up.
    /// `name` is the parameter's name, used in the message.
    pub fn validate(&self, name: &str, chunk: &ChunkKeys) -> Result<(), PlaceholderError> {
        let name = name.to_string();
        let template = self.source.clone();
        if !self.strftime_ok {
            return Err(PlaceholderError::BadStrftime { name, template });
        }
        match (self.time, chunk.timekey) {
            (None, Some(timekey)) => {
                return Err(PlaceholderError::NoTimePlaceholder {
                    name,
                    template,
                    timekey,
                })
            }
            (Some(_), None) => return Err(PlaceholderError::TimeWithoutTimekey { name, template }),
            (Some((sec, unit, field)), Some(timekey)) if timekey < sec => {
                return Err(PlaceholderError::TimeTooCoarse {
                    name,
                    template,
                    unit,
                    field,
                    timekey,
                })
            }
            _ => {}
        }
        match (chunk.tag, self.has_tag()) {
            (true, false) => return Err(PlaceholderError::NoTagPlaceholder { name, template }),
            (false, true) => return Err(PlaceholderError::TagWithoutChunkKey { name, template }),
            _ => {}
        }
        let used = self.keys();
        let mut missing: Vec<String> = chunk
            .keys
            .iter()
            .filter(|k| !used.contains(k))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            return Err(PlaceholderError::MissingKeys {
                name,
                template,
                keys: missing,
            });
        }
        let unknown: Vec<String> = used
            .into_iter()
            .filter(|k| !chunk.keys.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(PlaceholderError::UnknownKeys {
                name,
                template,
                keys: unknown,
            });
        }
        Ok(())
    }

    /// Fills the template for one chunk. Strftime fields are formatted first (over the whole
    /// text, as Fluentd does), then `${...}` placeholders are replaced. A tag part that the tag
    /// does not have is left as written.
    pub fn render(&self, values: &ChunkValues<'_>, formatter: &dyn TimeFormatter) -> String {
        let text = match values.timekey {
            Some(t) => formatter
                .strftime(&self.source, t)
                .unwrap_or_else(|| self.source.clone()),
            None => self.source.clone(),
        };
        let mut out = String::with_capacity(text.len() + 32);
        let mut last = 0;
        for (start, end, inner) in scan(&text) {
            out.push_str(text.get(last..start).unwrap_or(""));
            last = end;
            let raw = text.get(start..end).unwrap_or("");
            match classify(inner) {
                Ph::Tag => out.push_str(values.tag.unwrap_or(raw)),
                Ph::TagPart(n) => match values.tag.and_then(|t| tag_part(t, n)) {
                    Some(part) => out.push_str(part),
                    None => out.push_str(raw),
                },
                Ph::ChunkId => out.push_str(values.chunk_id.unwrap_or(raw)),
                Ph::Key(k) => {
                    if let Some((_, v)) = values.keys.iter().find(|(key, _)| *key == k) {
                        out.push_str(v);
                    } else if values.keys.is_empty() {
                        out.push_str(raw);
                    }
                }
            }
        }
        out.push_str(text.get(last..).unwrap_or(""));
        out
    }
}

/// Part `n` of a dotted tag; negative `n` counts from the end.
pub fn tag_part(tag: &str, n: i64) -> Option<&str> {
    let count = tag.split('.').count() as i64;
    let i = if n < 0 { count + n } else { n };
    if i < 0 {
        return None;
    }
    tag.split('.').nth(usize::try_from(i).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s, &ChronoFormatter::utc())
    }

    fn keys(tag: bool, timekey: Option<u64>, k: &[&str]) -> ChunkKeys {
        ChunkKeys {
            tag,
            timekey,
            keys: k.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn finds_time_units() {
        assert_eq!(t("/x/%Y%m%d").time.map(|x| x.0), Some(86400));
        assert_eq!(t("/x/%Y%m%d%H").time.map(|x| x.0), Some(3600));
        assert_eq!(t("/x/%M").time.map(|x| x.0), Some(60));
        assert_eq!(t("/x/file.log").time, None);
    }

    #[test]
    fn validates_like_fluentd() {
        let f = t("/my/path/file.%Y-%m-%d.log");
        assert_eq!(
            f.validate("path", &keys(false, None, &[])).unwrap_err().to_string(),
            "Parameter 'path: /my/path/file.%Y-%m-%d.log' has timestamp placeholders, but chunk key 'time' is not configured"
        );
        assert_eq!(
            t("/my/path/to/file.log")
                .validate("path", &keys(false, Some(30), &[]))
                .unwrap_err()
                .to_string(),
            "Parameter 'path: /my/path/to/file.log' doesn't have timestamp placeholders for timekey 30"
        );
        assert_eq!(
            f.validate("path", &keys(false, Some(3600), &[])).unwrap_err().to_string(),
            "Parameter 'path: /my/path/file.%Y-%m-%d.log' doesn't have timestamp placeholder for day('%d') for timekey 3600"
        );
        assert!(f.validate("path", &keys(false, Some(86400), &[])).is_ok());
        assert_eq!(
            t("/x/${tag}").validate("path", &keys(false, None, &[])).unwrap_err().to_string(),
            "Parameter 'path: /x/${tag}' has tag placeholders, but chunk key 'tag' is not configured"
        );
        assert_eq!(
            t("/x/a")
                .validate("path", &keys(true, None, &[]))
                .unwrap_err()
                .to_string(),
            "Parameter 'path: /x/a' doesn't have tag placeholder"
        );
        assert_eq!(
            t("/x/${host}")
                .validate("path", &keys(false, None, &["host", "app"]))
                .unwrap_err()
                .to_string(),
            "Parameter 'path: /x/${host}' doesn't have enough placeholders for keys app"
        );
        assert_eq!(
            t("/x/${host}/${zone}").validate("path", &keys(false, None, &["host"])).unwrap_err().to_string(),
            "Parameter 'path: /x/${host}/${zone}' has placeholders, but chunk keys doesn't have keys zone"
        );
        assert!(t("/x/${tag[1]}/${tag_parts[-1]}/${$.a.b}/${chunk_id}")
            .validate("path", &keys(true, None, &["$.a.b"]))
            .is_ok());
    }

    #[test]
    fn renders() {
        let f = ChronoFormatter::utc();
        let tpl = t(
            "logs/${tag}/${tag[1]}/${tag[-1]}/${tag_parts[0]}/${host}/%Y/%m/%d/%H/${chunk_id}.log",
        );
        let kv = vec![("host".to_string(), "web1".to_string())];
        let out = tpl.render(
            &ChunkValues {
                tag: Some("blog.access.123"),
                timekey: Some(CHECK_BASE + 3600),
                keys: &kv,
                chunk_id: Some("abc"),
            },
            &f,
        );
        assert_eq!(
            out,
            "logs/blog.access.123/access/123/blog/web1/2016/01/01/01/abc.log"
        );
        // A part the tag does not have is left as written.
        assert_eq!(
            t("${tag[5]}").render(
                &ChunkValues {
                    tag: Some("a.b"),
                    ..Default::default()
                },
                &f
            ),
            "${tag[5]}"
        );
    }

    #[test]
    fn tag_parts() {
        assert_eq!(tag_part("a.b.c", 0), Some("a"));
        assert_eq!(tag_part("a.b.c", -1), Some("c"));
        assert_eq!(tag_part("a.b.c", -3), Some("a"));
        assert_eq!(tag_part("a.b.c", -4), None);
        assert_eq!(tag_part("a.b.c", 3), None);
    }
}
