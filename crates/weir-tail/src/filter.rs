//! What a subscriber asks to see: a tag pattern, `key=regex` conditions on record values
//! (`--grep`, all must match; `--exclude`, any one drops the event), and optionally one source.
//!
//! A condition's value is read the way Fluentd's `grep` filter reads it: the record value's
//! Ruby `to_s` (a missing key reads as empty text), keys may be nested (`$.a.b`,
//! `$['a b'][0]`), and the regex may be written bare or as `/body/flags` (`i`, `m`, `x`).

use regex::Regex;
use weir_filter::{ruby_regex, ruby_to_s, RecordPath};
use weir_route::PatternSet;

/// Why a filter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A condition without `=`.
    #[error("'{0}': expected key=regex")]
    MissingEquals(String),
    /// A condition with nothing before `=`.
    #[error("'{0}': the key before '=' is empty")]
    EmptyKey(String),
    /// A key that is not a valid record accessor (`$.a.b`, `$['a']`).
    #[error("'{arg}': invalid key: {reason}")]
    BadKey {
        /// The condition as given.
        arg: String,
        /// What is wrong with the key.
        reason: String,
    },
    /// A regex that does not compile.
    #[error("'{arg}': {reason}")]
    BadRegex {
        /// The condition as given.
        arg: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A tag pattern that does not parse.
    #[error("tag pattern '{pattern}': {reason}")]
    BadTag {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One `key=regex` condition.
#[derive(Debug, Clone)]
pub struct FieldMatch {
    text: String,
    key: RecordPath,
    pattern: Regex,
}

/// Where `arg` splits into key and regex: the first `=` outside the brackets of a `$[...]`
/// key (so `$['a=b']=x` has the key `$['a=b']`). Plain keys end at the first `=`.
fn split_at_equals(arg: &str) -> Option<usize> {
    if !arg.starts_with('$') {
        return arg.find('=');
    }
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (i, c) in arg.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') if depth > 0 => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            (None, '=') if depth == 0 => return Some(i),
            (None, _) => {}
        }
    }
    None
}

impl FieldMatch {
    /// Parses `key=regex`. The key is a top-level record key, or a nested one written as
    /// Fluentd's record accessor writes it (`$.a.b`, `$['a=b']`); the regex is everything after
    /// the `=` that ends the key, bare or as `/body/flags`.
    pub fn parse(arg: &str) -> Result<FieldMatch, FilterError> {
        let at = split_at_equals(arg).ok_or_else(|| FilterError::MissingEquals(arg.into()))?;
        let (key, pattern) = (&arg[..at], &arg[at + 1..]);
        if key.is_empty() {
            return Err(FilterError::EmptyKey(arg.into()));
        }
        let key = RecordPath::parse(key).map_err(|reason| FilterError::BadKey {
            arg: arg.into(),
            reason,
        })?;
        let pattern = ruby_regex(pattern).map_err(|reason| FilterError::BadRegex {
            arg: arg.into(),
            reason,
        })?;
        Ok(FieldMatch {
            text: arg.to_string(),
            key,
            pattern,
        })
    }

    /// The condition as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key part.
    pub fn key(&self) -> &str {
        self.key.as_str()
    }

    /// The regex part, as written.
    pub fn pattern(&self) -> &str {
        &self.text[self.key.as_str().len() + 1..]
    }

    /// Whether the record's value at the key matches. `record` is one msgpack map.
    pub fn matches(&self, record: &[u8]) -> bool {
        let text = self.key.find(record).map(ruby_to_s).unwrap_or_default();
        self.pattern.is_match(&text)
    }
}

/// A subscriber's filter. The default lets every event through.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    tag: Option<PatternSet>,
    source: Option<String>,
    grep: Vec<FieldMatch>,
    exclude: Vec<FieldMatch>,
}

impl TailFilter {
    /// Only events whose tag matches `pattern` (Fluentd `<match>` syntax: `*`, `**`, `{a,b}`,
    /// `/regex/`, several patterns separated by spaces). An empty pattern matches every tag.
    pub fn tag(mut self, pattern: &str) -> Result<Self, FilterError> {
        if pattern.trim().is_empty() {
            self.tag = None;
            return Ok(self);
        }
        let set = PatternSet::parse(pattern).map_err(|e| FilterError::BadTag {
            pattern: pattern.into(),
            reason: e.to_string(),
        })?;
        self.tag = Some(set);
        Ok(self)
    }

    /// Only events that entered through the source with this id (`@id`).
    pub fn source(mut self, id: impl Into<String>) -> Self {
        self.source = Some(id.into());
        self
    }

    /// Adds a condition every event must meet.
    pub fn grep(mut self, m: FieldMatch) -> Self {
        self.grep.push(m);
        self
    }

    /// Adds a condition that drops the events meeting it.
    pub fn exclude(mut self, m: FieldMatch) -> Self {
        self.exclude.push(m);
        self
    }

    /// The tag pattern, if any.
    pub fn tag_pattern(&self) -> Option<&str> {
        self.tag.as_ref().map(PatternSet::as_str)
    }

    /// The source id, if any.
    pub fn source_id(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The `--grep` conditions.
    pub fn greps(&self) -> &[FieldMatch] {
        &self.grep
    }

    /// The `--exclude` conditions.
    pub fn excludes(&self) -> &[FieldMatch] {
        &self.exclude
    }

    /// Whether events from `source_id` under `tag` can pass at all.
    pub fn wants(&self, source_id: &str, tag: &str) -> bool {
        if let Some(s) = &self.source {
            if s != source_id {
                return false;
            }
        }
        self.tag.as_ref().is_none_or(|p| p.matches(tag))
    }

    /// Whether the record conditions look at records at all (if not, every event of a wanted
    /// tag passes).
    pub fn reads_records(&self) -> bool {
        !self.grep.is_empty() || !self.exclude.is_empty()
    }

    /// Whether one record passes the `--grep` and `--exclude` conditions.
    pub fn keeps(&self, record: &[u8]) -> bool {
        self.grep.iter().all(|m| m.matches(record))
            && !self.exclude.iter().any(|m| m.matches(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::record;
    use proptest::prelude::*;

    #[test]
    fn splits_at_the_first_equals_of_a_plain_key() {
        let m = FieldMatch::parse("msg=a=b").unwrap();
        assert_eq!(m.key(), "msg");
        assert_eq!(m.pattern(), "a=b");
        assert!(m.matches(&record(r#"{"msg":"xa=by"}"#)));
        assert!(!m.matches(&record(r#"{"msg":"ab"}"#)));
    }

    #[test]
    fn bracket_keys_may_hold_equals() {
        let m = FieldMatch::parse("$['a=b'].c=^x$").unwrap();
        assert_eq!(m.key(), "$['a=b'].c");
        assert_eq!(m.pattern(), "^x$");
        assert!(m.matches(&record(r#"{"a=b":{"c":"x"}}"#)));
    }

    #[test]
    fn nested_keys_and_ruby_to_s() {
        let m = FieldMatch::parse("$.http.status=^5\\d\\d$").unwrap();
        assert!(m.matches(&record(r#"{"http":{"status":503}}"#)));
        assert!(!m.matches(&record(r#"{"http":{"status":200}}"#)));
        assert!(!m.matches(&record(r#"{"http":"503"}"#)));
        let b = FieldMatch::parse("ok=true").unwrap();
        assert!(b.matches(&record(r#"{"ok":true}"#)));
    }

    #[test]
    fn missing_key_reads_as_empty_text() {
        let empty = FieldMatch::parse("level=^$").unwrap();
        assert!(empty.matches(&record(r#"{"msg":"x"}"#)));
        let error = FieldMatch::parse("level=error").unwrap();
        assert!(!error.matches(&record(r#"{"msg":"error"}"#)));
    }

    #[test]
    fn slash_form_with_flags() {
        let m = FieldMatch::parse("level=/^ERROR$/i").unwrap();
        assert!(m.matches(&record(r#"{"level":"error"}"#)));
    }

    #[test]
    fn errors_name_the_argument() {
        assert_eq!(
            FieldMatch::parse("level").unwrap_err(),
            FilterError::MissingEquals("level".into())
        );
        assert_eq!(
            FieldMatch::parse("=x").unwrap_err(),
            FilterError::EmptyKey("=x".into())
        );
        assert!(matches!(
            FieldMatch::parse("a=(").unwrap_err(),
            FilterError::BadRegex { .. }
        ));
        assert!(matches!(
            FieldMatch::parse("$.=x").unwrap_err(),
            FilterError::BadKey { .. }
        ));
        let e = FieldMatch::parse("a=(?=x)").unwrap_err().to_string();
        assert!(e.starts_with("'a=(?=x)': "), "{e}");
    }

    #[test]
    fn grep_is_and_exclude_is_or() {
        let f = TailFilter::default()
            .grep(FieldMatch::parse("level=error").unwrap())
            .grep(FieldMatch::parse("app=^web").unwrap())
            .exclude(FieldMatch::parse("msg=health").unwrap())
            .exclude(FieldMatch::parse("msg=ping").unwrap());
        assert!(f.keeps(&record(r#"{"level":"error","app":"web1","msg":"boom"}"#)));
        assert!(!f.keeps(&record(r#"{"level":"error","app":"db","msg":"boom"}"#)));
        assert!(!f.keeps(&record(r#"{"level":"error","app":"web1","msg":"ping"}"#)));
        assert!(!f.keeps(&record(r#"{"level":"error","app":"web1","msg":"health"}"#)));
    }

    #[test]
    fn tag_and_source() {
        let f = TailFilter::default().tag("blog.** app.{a,b}").unwrap();
        assert!(f.wants("in", "blog"));
        assert!(f.wants("in", "blog.x.y"));
        assert!(f.wants("in", "app.a"));
        assert!(!f.wants("in", "app.c"));
        let f = f.source("fwd1");
        assert!(!f.wants("fwd2", "blog"));
        assert!(f.wants("fwd1", "blog"));
        assert!(TailFilter::default().tag("").unwrap().wants("x", "any"));
        assert!(TailFilter::default().tag("a.{b").is_err());
    }

    /// Keys the parser must give back unchanged: plain keys without `=` and dotted paths of
    /// plain words.
    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_@][a-zA-Z0-9_.@ -]{0,12}".prop_filter("no $", |k| !k.starts_with('$')),
            proptest::collection::vec("[a-z_][a-z0-9_]{0,6}", 1..4)
                .prop_map(|parts| format!("$.{}", parts.join("."))),
            "[a-z=]{1,6}".prop_map(|k| format!("$['{k}']")),
        ]
    }

    proptest! {
        #[test]
        fn key_and_regex_round_trip(key in key_strategy(), body in "[a-z0-9=.*+?^$ ]{0,16}") {
            let arg = format!("{key}={body}");
            match FieldMatch::parse(&arg) {
                Ok(m) => {
                    prop_assert_eq!(m.key(), key.as_str());
                    prop_assert_eq!(m.pattern(), body.as_str());
                    prop_assert_eq!(m.as_str(), arg.as_str());
                }
                // Only the regex may be refused (`**`, `+?*` ...), never the split.
                Err(e) => prop_assert!(matches!(e, FilterError::BadRegex { .. }), "{}", e),
            }
        }

        #[test]
        fn literal_values_match_themselves(key in "[a-z]{1,8}", value in "[a-zA-Z0-9 ]{0,20}") {
            let m = FieldMatch::parse(&format!("{key}=^{}$", regex::escape(&value))).unwrap();
            let mut rec = Vec::new();
            weir_proto::json_to_msgpack(&serde_json::json!({ key.clone(): value }), &mut rec);
            prop_assert!(m.matches(&rec));
        }

        #[test]
        fn never_panics(arg in "\\PC{0,40}", rec in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = FieldMatch::parse(&arg) {
                let _ = m.matches(&rec);
                prop_assert!(arg.starts_with(m.key()));
            }
        }
    }
}
