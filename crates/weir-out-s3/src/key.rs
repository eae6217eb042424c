//! Object keys: `s3_object_key_format` filled for one chunk, in fluent-plugin-s3's order.
//!
//! 1. `%{path}` and `%{file_extension}` are replaced (other `%{...}` stay);
//! 2. Fluentd's chunk placeholders: strftime fields over the whole text with the chunk's time
//!    slice (when `time` is a chunk key), then `${tag}`, `${tag[N]}`, record keys and
//!    `${chunk_id}` (through `weir_route::placeholder`);
//! 3. `%{time_slice}`, `%{index}`, `%{hex_random}`, `%{uuid_flush}` (and, with
//!    `check_object false`, `%{hms_slice}` and `%{date_slice}`) are replaced; any other
//!    `%{...}` becomes empty text, as Ruby's `gsub` with a hash does.
//!
//! `%{hostname}` is replaced once, when the configuration is read.

use weir_format::TimeZoneSpec;
use weir_proto::EventTime;
use weir_route::placeholder::{ChunkValues, Template, TimeFormatter};

/// `index_format`: how `%{index}` is printed (`%d`, `%03d`, `%x`, `%04X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFormat {
    width: usize,
    radix: Radix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Radix {
    Decimal,
    HexLower,
    HexUpper,
}

impl Default for IndexFormat {
    fn default() -> Self {
        IndexFormat {
            width: 0,
            radix: Radix::Decimal,
        }
    }
}

impl IndexFormat {
    /// Parses `%[0[width]](d|x|X)`, the only forms fluent-plugin-s3 accepts.
    pub fn parse(s: &str) -> Option<IndexFormat> {
        let body = s.strip_prefix('%')?;
        let (flags, kind) = body.split_at(body.len().checked_sub(1)?);
        let radix = match kind {
            "d" => Radix::Decimal,
            "x" => Radix::HexLower,
            "X" => Radix::HexUpper,
            _ => return None,
        };
        let width = if flags.is_empty() {
            0
        } else {
            let digits = flags.strip_prefix('0')?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if digits.is_empty() {
                0
            } else {
                digits.parse().ok()?
            }
        };
        Some(IndexFormat { width, radix })
    }

    /// Prints `i`.
    pub fn format(&self, i: u64) -> String {
        let w = self.width;
        match self.radix {
            Radix::Decimal => format!("{i:0w$}"),
            Radix::HexLower => format!("{i:0w$x}"),
            Radix::HexUpper => format!("{i:0w$X}"),
        }
    }
}

/// fluent-plugin-s3's `%{time_slice}` format when `time_slice_format` is not set: derived from
/// the timekey (`%Y%m%d` for the default one-day timekey, `%Y%m%d%H` for an hour).
pub fn default_time_slice_format(timekey: Option<i64>) -> &'static str {
    match timekey {
        None => "",
        Some(t) if t < 60 => "%Y%m%d%H%M%S",
        Some(t) if t < 3600 => "%Y%m%d%H%M",
        Some(t) if t < 86400 => "%Y%m%d%H",
        Some(_) => "%Y%m%d",
    }
}

/// Ruby-compatible strftime in a fixed zone, for `weir_route`'s templates. Unknown directives
/// (such as the `%{` of `%{index}`) are copied through, as Ruby does.
struct RubyTime(TimeZoneSpec);

impl TimeFormatter for RubyTime {
    fn strftime(&self, format: &str, unix_secs: i64) -> Option<String> {
        Some(weir_format::strftime(
            format,
            event_time(unix_secs),
            &self.0,
        ))
    }
}

fn event_time(unix_secs: i64) -> EventTime {
    EventTime::new(u32::try_from(unix_secs.max(0)).unwrap_or(u32::MAX), 0)
}

/// What one chunk contributes to its key.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// The tag, when `tag` is a chunk key.
    pub tag: Option<&'a str>,
    /// The time slice start (Unix seconds), when `time` is a chunk key.
    pub timekey: Option<i64>,
    /// Record chunk keys and their values.
    pub variables: &'a [(String, String)],
    /// The chunk id (32 hex digits).
    pub chunk_id: &'a str,
    /// Now, Unix seconds (for `%{hms_slice}`).
    pub now: i64,
}

/// A parsed `s3_object_key_format` with everything it needs to be filled.
#[derive(Debug, Clone)]
pub struct KeyTemplate {
    /// The format, `%{hostname}` already replaced.
    pub format: String,
    /// `path`.
    pub path: String,
    /// The extension of `store_as` (`gz`, `json`, `txt`, `zst`).
    pub file_extension: String,
    /// `%{time_slice}`'s format: `time_slice_format` as configured, else derived from the
    /// buffer's timekey with [`default_time_slice_format`].
    pub time_slice_format: String,
    /// The timekey zone (the buffer's `timekey_zone` / `timekey_use_utc`).
    pub zone: TimeZoneSpec,
    /// `index_format`.
    pub index_format: IndexFormat,
    /// `hex_random_length`.
    pub hex_random_length: usize,
    /// `check_object`: with `false`, `%{hms_slice}` and `%{date_slice}` are filled and
    /// `%{index}` is empty.
    pub check_object: bool,
}

impl KeyTemplate {
    /// `%{time_slice}` for a chunk.
    pub fn time_slice(&self, timekey: Option<i64>) -> String {
        match timekey {
            None => String::new(),
            Some(t) => weir_format::strftime(&self.time_slice_format, event_time(t), &self.zone),
        }
    }

    /// `%{hex_random}`: the chunk id reversed (its random bits first), cut to
    /// `hex_random_length`.
    pub fn hex_random(&self, chunk_id: &str) -> String {
        chunk_id
            .chars()
            .rev()
            .take(self.hex_random_length)
            .collect()
    }

    /// True when the format uses `%{uuid_flush}`.
    pub fn uses_uuid_flush(&self) -> bool {
        self.format.contains("%{uuid_flush}")
    }

    /// The key for a chunk with this `index` (ignored with `check_object false`) and
    /// `uuid_flush` value.
    pub fn render(&self, c: &KeyInput<'_>, index: u64, uuid_flush: &str) -> String {
        // 1. %{path} and %{file_extension}.
        let pre = replace_percent(&self.format, |name| match name {
            "path" => Some(self.path.clone()),
            "file_extension" => Some(self.file_extension.clone()),
            _ => None,
        });
        // 2. Fluentd's chunk placeholders.
        let fmt = RubyTime(self.zone.clone());
        let template = Template::parse(&pre, &fmt);
        let mid = template.render(
            &ChunkValues {
                tag: c.tag,
                timekey: c.timekey,
                keys: c.variables,
                chunk_id: Some(c.chunk_id),
            },
            &fmt,
        );
        // 3. The remaining %{...}.
        let time_slice = self.time_slice(c.timekey);
        replace_percent(&mid, |name| {
            Some(match name {
                "time_slice" => time_slice.clone(),
                "hex_random" => self.hex_random(c.chunk_id),
                "uuid_flush" => uuid_flush.to_string(),
                "index" if self.check_object => self.index_format.format(index),
                "date_slice" if !self.check_object => time_slice.clone(),
                "hms_slice" if !self.check_object => {
                    weir_format::strftime("%H%M%S", event_time(c.now), &TimeZoneSpec::Utc)
                }
                _ => String::new(),
            })
        })
    }
}

/// Replaces each `%{name}` (`name` non-empty, without `}`) for which `f` gives a value.
pub fn replace_percent(s: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    while let Some(start) = rest.find("%{") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if end > 0 => {
                out.push_str(&rest[..start]);
                let name = &after[..end];
                match f(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("%{");
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(format: &str, path: &str) -> KeyTemplate {
        KeyTemplate {
            format: format.to_string(),
            path: path.to_string(),
            file_extension: "gz".into(),
            time_slice_format: "%Y%m%d".into(),
            zone: TimeZoneSpec::Utc,
            index_format: IndexFormat::default(),
            hex_random_length: 4,
            check_object: true,
        }
    }

    const ID: &str = "0005e1c2d3f4a5b600112233445566aa";
    // 2024-03-05 07:00:00 UTC
    const T: i64 = 1_709_622_000;

    fn input(tag: Option<&'static str>, timekey: Option<i64>) -> KeyInput<'static> {
        KeyInput {
            tag,
            timekey,
            variables: &[],
            chunk_id: ID,
            now: T + 3723,
        }
    }

    #[test]
    fn default_format_with_a_daily_timekey() {
        let t = tpl("%{path}%{time_slice}_%{index}.%{file_extension}", "logs/");
        assert_eq!(t.render(&input(None, Some(T)), 0, ""), "logs/20240305_0.gz");
        assert_eq!(t.render(&input(None, Some(T)), 3, ""), "logs/20240305_3.gz");
    }

    #[test]
    fn time_slice_follows_the_timekey() {
        assert_eq!(default_time_slice_format(Some(3600)), "%Y%m%d%H");
        assert_eq!(default_time_slice_format(Some(86400)), "%Y%m%d");
        assert_eq!(default_time_slice_format(Some(300)), "%Y%m%d%H%M");
        assert_eq!(default_time_slice_format(Some(30)), "%Y%m%d%H%M%S");
        assert_eq!(default_time_slice_format(None), "");
        let mut t = tpl("%{path}%{time_slice}_%{index}.%{file_extension}", "");
        t.time_slice_format = "%Y/%m/%d/%H".into();
        assert_eq!(t.render(&input(None, Some(T)), 0, ""), "2024/03/05/07_0.gz");
    }

    #[test]
    fn athena_layout_with_tag_parts_and_strftime_in_path() {
        let t = tpl(
            "%{path}%{time_slice}_%{index}.%{file_extension}",
            "logs/${tag[1]}/dt=%Y-%m-%d/hour=%H/",
        );
        let mut i = input(Some("blog.nginx.123456789012.vpc-1"), Some(T));
        i.timekey = Some(T);
        let mut t2 = t.clone();
        t2.time_slice_format = "%Y%m%d%H".into();
        assert_eq!(
            t2.render(&i, 0, ""),
            "logs/nginx/dt=2024-03-05/hour=07/2024030507_0.gz"
        );
    }

    #[test]
    fn tag_chunk_id_hex_random_uuid() {
        let t = tpl(
            "${tag}/${tag[-1]}/${chunk_id}-%{hex_random}-%{uuid_flush}.%{file_extension}",
            "",
        );
        let k = t.render(&input(Some("a.b.c"), None), 0, "U-U");
        assert_eq!(k, format!("a.b.c/c/{ID}-aa66-U-U.gz"));
    }

    #[test]
    fn unknown_percent_placeholders_become_empty() {
        let t = tpl("%{path}x%{nope}y.%{file_extension}", "p/");
        assert_eq!(t.render(&input(None, None), 0, ""), "p/xy.gz");
        // %{hms_slice} is only filled with check_object false.
        let t = tpl("%{hms_slice}-%{index}", "");
        assert_eq!(t.render(&input(None, None), 2, ""), "-2");
        let mut t = tpl(
            "%{path}/%{time_slice}_%{hms_slice}-%{index}.%{file_extension}",
            "p",
        );
        t.check_object = false;
        assert_eq!(
            t.render(&input(None, Some(T)), 2, ""),
            "p/20240305_080203-.gz"
        );
    }

    #[test]
    fn strftime_sees_percent_braces_as_text() {
        let t = tpl("%Y/%{index}%%", "");
        assert_eq!(t.render(&input(None, Some(T)), 7, ""), "2024/7%");
    }

    #[test]
    fn index_formats() {
        let f = |s: &str| IndexFormat::parse(s);
        assert_eq!(f("%d").map(|x| x.format(7)).as_deref(), Some("7"));
        assert_eq!(f("%03d").map(|x| x.format(7)).as_deref(), Some("007"));
        assert_eq!(f("%x").map(|x| x.format(255)).as_deref(), Some("ff"));
        assert_eq!(f("%04X").map(|x| x.format(255)).as_deref(), Some("00FF"));
        assert_eq!(f("%0d").map(|x| x.format(5)).as_deref(), Some("5"));
        assert!(f("%3d").is_none());
        assert!(f("%s").is_none());
        assert!(f("d").is_none());
        assert!(f("%").is_none());
    }

    #[test]
    fn replace_percent_leaves_unclosed_text() {
        assert_eq!(replace_percent("a%{b", |_| Some("X".into())), "a%{b");
        assert_eq!(replace_percent("a%{}b", |_| Some("X".into())), "a%{}b");
        assert_eq!(
            replace_percent("%{a}%{b}", |n| Some(n.to_uppercase())),
            "AB"
        );
    }
}
