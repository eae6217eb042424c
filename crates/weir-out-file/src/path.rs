//! File names: Fluentd's path template (time slice, `_**` index, suffixes) and filling it in
//! for one chunk.
//!
//! Checking a template against the chunk keys uses `weir_route::placeholder`; filling it in is
//! done here by [`PathTemplate::render`], because every value a placeholder inserts must pass
//! through [`crate::sanitize::value`] and `weir_route`'s renderer has no hook for that. It is
//! the one function to swap if the placeholder module grows one.

use weir_format::{strftime, TimeZoneSpec};
use weir_proto::EventTime;
use weir_route::placeholder::TimeFormatter;
use weir_store::ChunkKey;

use crate::sanitize;

/// Where the `_N` index goes in a template (`append false`).
pub const INDEX_PLACEHOLDER: &str = "_**";

/// What [`PathTemplate::render`] leaves where the index goes. It holds NUL bytes, which no
/// escaped value can hold, so a tag such as `a_**` cannot move the index.
pub const INDEX_MARKER: &str = "\u{0}index\u{0}";

/// Fluentd's `timekey_to_timeformat`: the time-slice format a timekey implies.
pub fn timekey_to_timeformat(timekey: Option<u64>) -> &'static str {
    match timekey {
        None => "",
        Some(0..=59) => "%Y%m%d%H%M%S",
        Some(60..=3599) => "%Y%m%d%H%M",
        Some(3600..=86399) => "%Y%m%d%H",
        Some(_) => "%Y%m%d",
    }
}

/// Fluentd's `generate_path_template`: the configured `path` turned into the template of the
/// file names, with the time slice, the `_**` index (unless `append`), the suffix and `.gz`.
///
/// * a path with `*`: each `*` becomes the time-slice format (plus `_**`), then `.gz`;
/// * otherwise, with a timekey: `time_slice_format` if configured is always appended as
///   `.<format>`; else, when the path already has some of the timekey's strftime fields it
///   must have all of them and nothing is added; else `.<format>` is appended;
/// * without a timekey: nothing is added but the index and suffixes.
pub fn generate_path_template(
    original: &str,
    timekey: Option<u64>,
    append: bool,
    gzip: bool,
    path_suffix: &str,
    time_slice_format: Option<&str>,
) -> Result<String, String> {
    let comp = if gzip { ".gz" } else { "" };
    let index = if append { "" } else { INDEX_PLACEHOLDER };
    if original.contains('*') {
        let Some(tk) = timekey else {
            return Err("path including '*' must be used with buffer chunk key 'time'".into());
        };
        let part = time_slice_format.unwrap_or(timekey_to_timeformat(Some(tk)));
        return Ok(format!(
            "{}{comp}",
            original.replace('*', &format!("{part}{index}"))
        ));
    }
    let Some(tk) = timekey else {
        return Ok(format!("{original}{index}{path_suffix}{comp}"));
    };
    if let Some(tsf) = time_slice_format {
        return Ok(format!("{original}.{tsf}{index}{path_suffix}{comp}"));
    }
    let fmt = timekey_to_timeformat(Some(tk));
    // Ruby's `scan(/../)`: two-character pieces.
    let pieces: Vec<&str> = (0..fmt.len() / 2)
        .filter_map(|i| fmt.get(i * 2..i * 2 + 2))
        .collect();
    if pieces.iter().any(|p| original.contains(p)) {
        if pieces.iter().any(|p| !original.contains(p)) {
            return Err("insufficient timestamp placeholders in path".into());
        }
        Ok(format!("{original}{index}{path_suffix}{comp}"))
    } else {
        Ok(format!("{original}.{fmt}{index}{path_suffix}{comp}"))
    }
}

/// Ruby-compatible strftime for `weir_route`'s template checks.
pub(crate) struct RubyStrftime;

impl TimeFormatter for RubyStrftime {
    fn strftime(&self, format: &str, unix_secs: i64) -> Option<String> {
        let secs = u32::try_from(unix_secs).ok()?;
        Some(strftime(
            format,
            EventTime::new(secs, 0),
            &TimeZoneSpec::Utc,
        ))
    }
}

/// A path template ready to fill in per chunk.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    /// The template, as produced by [`generate_path_template`].
    pub source: String,
    /// The zone of the time slice: `timekey_zone` (or UTC with `timekey_use_utc`).
    pub zone: TimeZoneSpec,
    /// `time` is a chunk key: strftime fields are formatted.
    pub time: bool,
    /// `tag` is a chunk key: `${tag}` and `${tag[N]}` are replaced.
    pub tag: bool,
    /// Record chunk keys exist: `${key}` placeholders are replaced (unknown ones by nothing,
    /// as Ruby's `gsub` with a hash does).
    pub keys: bool,
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'$')
}

fn tag_index(inner: &str) -> Option<i64> {
    let n = inner
        .strip_prefix("tag[")
        .or_else(|| inner.strip_prefix("tag_parts["))?
        .strip_suffix(']')?;
    let digits = n.strip_prefix('-').unwrap_or(n);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

impl PathTemplate {
    /// Fills the template for one chunk, as Fluentd's `extract_placeholders` does, except that
    /// every inserted value is escaped by [`sanitize::value`] and inserted values are never
    /// scanned again for placeholders. The first `_**` becomes [`INDEX_MARKER`], for
    /// [`with_index`] to replace.
    pub fn render(&self, key: &ChunkKey, chunk_id: &str) -> String {
        let mut out = String::new();
        for limit in [sanitize::MAX_VALUE_BYTES, 100, 50, 33] {
            out = self.render_within(key, chunk_id, limit);
            if out
                .split('/')
                .all(|c| c.len() <= sanitize::MAX_COMPONENT_BYTES)
            {
                break;
            }
        }
        out
    }

    fn render_within(&self, key: &ChunkKey, chunk_id: &str, limit: usize) -> String {
        let value = |v: &str| sanitize::value_within(v, limit).into_owned();
        let source = self.source.replacen(INDEX_PLACEHOLDER, INDEX_MARKER, 1);
        let text = match (self.time, key.timekey) {
            (true, Some(t)) => {
                let secs = u32::try_from(t).unwrap_or(0);
                strftime(&source, EventTime::new(secs, 0), &self.zone)
            }
            _ => source,
        };
        let tag = key.tag.as_deref();
        let mut out = String::with_capacity(text.len() + 64);
        let mut rest = text.as_str();
        let mut chunk_id_done = false;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(close) = after.find('}') else {
                out.push_str(&rest[at..]);
                rest = "";
                break;
            };
            let inner = &after[..close];
            let raw = &rest[at..at + 2 + close + 1];
            let next = &after[close + 1..];
            if inner == "tag" && self.tag {
                out.push_str(&value(tag.unwrap_or("")));
            } else if let (Some(n), true) = (tag_index(inner), self.tag) {
                match tag.and_then(|t| weir_route::placeholder::tag_part(t, n)) {
                    Some(part) => out.push_str(&value(part)),
                    None => out.push_str(raw),
                }
            } else if !inner.is_empty()
                && inner.bytes().all(is_key_char)
                && self.keys
                && inner != "tag"
            {
                // Ruby's gsub with a hash: a key that is not a chunk key becomes nothing
                // (this includes `${chunk_id}` when there are record chunk keys).
                if let Some((_, v)) = key.variables.iter().find(|(k, _)| k == inner) {
                    out.push_str(&value(v));
                }
            } else if inner == "chunk_id" && !chunk_id_done {
                chunk_id_done = true;
                out.push_str(chunk_id);
            } else {
                out.push_str(raw);
            }
            rest = next;
        }
        out.push_str(rest);
        out
    }
}

/// The file name for index `n`: the index marker replaced by `_<n>` (Fluentd replaces the
/// first `_**`).
pub fn with_index(rendered: &str, n: u64) -> String {
    rendered.replacen(INDEX_MARKER, &format!("_{n}"), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cases from Fluentd's test/plugin/test_out_file.rb, sub_test_case '#generate_path_template'.
    #[test]
    fn templates_like_fluentd() {
        let g = |o: &str, tk: Option<u64>, app: bool, gz: bool, sfx: &str, tsf: Option<&str>| {
            generate_path_template(o, tk, app, gz, sfx, tsf)
        };
        for (tk, ph, tsf) in [
            (86400, "%Y%m%d", "%Y-%m-%d"),
            (3600, "%Y%m%d%H", "%Y-%m-%d_%H"),
            (60, "%Y%m%d%H%M", "%Y-%m-%d_%H%M"),
        ] {
            let t = Some(tk);
            assert_eq!(
                g("/path/to/file.*", t, false, false, "", None).unwrap(),
                format!("/path/to/file.{ph}_**")
            );
            assert_eq!(
                g("/path/to/file.*", t, false, true, "", None).unwrap(),
                format!("/path/to/file.{ph}_**.gz")
            );
            assert_eq!(
                g("/path/to/file.*", t, true, false, "", None).unwrap(),
                format!("/path/to/file.{ph}")
            );
            assert_eq!(
                g("/path/to/file.*", t, true, true, "", None).unwrap(),
                format!("/path/to/file.{ph}.gz")
            );
            assert_eq!(
                g("/path/to/file.*", t, false, false, "", Some(tsf)).unwrap(),
                format!("/path/to/file.{tsf}_**")
            );
            assert_eq!(
                g("/path/to/file.*", t, true, true, "", Some(tsf)).unwrap(),
                format!("/path/to/file.{tsf}.gz")
            );
            assert_eq!(
                g("/path/to/file.*.data", t, false, true, "", None).unwrap(),
                format!("/path/to/file.{ph}_**.data.gz")
            );
            assert_eq!(
                g("/path/to/file.*.data", t, true, false, "", Some(tsf)).unwrap(),
                format!("/path/to/file.{tsf}.data")
            );
            assert_eq!(
                g("/path/to/file", t, false, false, ".log", None).unwrap(),
                format!("/path/to/file.{ph}_**.log")
            );
            assert_eq!(
                g("/path/to/file", t, true, true, ".log", None).unwrap(),
                format!("/path/to/file.{ph}.log.gz")
            );
            assert_eq!(
                g("/path/to/file", t, false, true, ".log", Some(tsf)).unwrap(),
                format!("/path/to/file.{tsf}_**.log.gz")
            );
            assert_eq!(
                g("/path/to/file", t, false, false, "", None).unwrap(),
                format!("/path/to/file.{ph}_**")
            );
        }
        assert_eq!(
            g("/path/to/file.%Y%m%d", Some(86400), true, false, "", None).unwrap(),
            "/path/to/file.%Y%m%d"
        );
        assert_eq!(
            g("/path/to/%Y%m%d/file", Some(86400), false, false, "", None).unwrap(),
            "/path/to/%Y%m%d/file_**"
        );
        assert_eq!(
            g("/path/to/%Y%m/file", Some(86400), true, false, "", None).unwrap_err(),
            "insufficient timestamp placeholders in path"
        );
        assert_eq!(
            g(
                "/path/to/file.%Y%m%d.log",
                Some(3600),
                true,
                false,
                "",
                None
            )
            .unwrap_err(),
            "insufficient timestamp placeholders in path"
        );
        assert_eq!(
            g(
                "/path/to/file.%Y%m%d_%H",
                Some(7200),
                false,
                true,
                ".log",
                None
            )
            .unwrap(),
            "/path/to/file.%Y%m%d_%H_**.log.gz"
        );
        assert_eq!(
            g(
                "/path/to/${tag}/file.%Y%m%d_%H",
                Some(7200),
                false,
                true,
                ".log",
                None
            )
            .unwrap(),
            "/path/to/${tag}/file.%Y%m%d_%H_**.log.gz"
        );
        assert_eq!(
            g(
                "/path/to/%Y%m%d/file",
                Some(86400),
                false,
                false,
                ".log",
                Some("%Y-%m-%d_%H")
            )
            .unwrap(),
            "/path/to/%Y%m%d/file.%Y-%m-%d_%H_**.log"
        );
        assert_eq!(
            g("/path/to/file.log", None, true, false, "", None).unwrap(),
            "/path/to/file.log"
        );
        assert_eq!(
            g("/path/to/file.log", None, false, false, "", None).unwrap(),
            "/path/to/file.log_**"
        );
        assert_eq!(
            g("/path/to/file.${tag}.log", None, false, false, "", None).unwrap(),
            "/path/to/file.${tag}.log_**"
        );
        assert_eq!(
            g("/path/to/file.${tag}", None, false, false, ".log", None).unwrap(),
            "/path/to/file.${tag}_**.log"
        );
        assert!(g("/path/to/file.*.log", None, false, false, "", None).is_err());
    }

    #[test]
    fn timeformats() {
        assert_eq!(timekey_to_timeformat(None), "");
        for (tk, f) in [
            (1, "%Y%m%d%H%M%S"),
            (59, "%Y%m%d%H%M%S"),
            (60, "%Y%m%d%H%M"),
            (3599, "%Y%m%d%H%M"),
            (3600, "%Y%m%d%H"),
            (86399, "%Y%m%d%H"),
            (86400, "%Y%m%d"),
            (1_000_000_000, "%Y%m%d"),
        ] {
            assert_eq!(timekey_to_timeformat(Some(tk)), f);
        }
    }

    #[test]
    fn renders_like_extract_placeholders() {
        let t = PathTemplate {
            source: "/d/${tag}/${tag[1]}/${tag[-1]}/${tag[9]}/%Y%m%d_**.log".into(),
            zone: TimeZoneSpec::Utc,
            time: true,
            tag: true,
            keys: false,
        };
        let key = ChunkKey {
            tag: Some("blog.access.1".into()),
            timekey: Some(1_293_973_200), // 2011-01-02 13:00:00 UTC
            variables: vec![],
        };
        let r = t.render(&key, "abc");
        assert_eq!(
            with_index(&r, 0),
            "/d/blog.access.1/access/1/${tag[9]}/20110102_0.log"
        );
        let t = PathTemplate {
            source: "/d/${host}/${chunk_id}/${nope}".into(),
            zone: TimeZoneSpec::Utc,
            time: false,
            tag: false,
            keys: true,
        };
        let key = ChunkKey {
            tag: None,
            timekey: None,
            variables: vec![("host".into(), "../x".into())],
        };
        assert_eq!(t.render(&key, "abc"), "/d/%2E.%2Fx//");
        // A tag cannot move the index.
        let t = PathTemplate {
            source: "/d/${tag}_**.log".into(),
            zone: TimeZoneSpec::Utc,
            time: false,
            tag: true,
            keys: false,
        };
        let key = ChunkKey {
            tag: Some("a_**".into()),
            timekey: None,
            variables: vec![],
        };
        assert_eq!(with_index(&t.render(&key, "x"), 3), "/d/a_**_3.log");
    }
}
