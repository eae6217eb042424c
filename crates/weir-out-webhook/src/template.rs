//! The message template: the text of one event in the Slack message.
//!
//! Two syntaxes, chosen by the configuration:
//!
//! * **Placeholders** (weir's, in the spelling Fluentd users know from `record_transformer`
//!   and output paths): `${tag}`, `${tag[N]}` / `${tag_parts[N]}` (N may be negative,
//!   counting from the end), `${tag_prefix[N]}`, `${tag_suffix[N]}`, `${time}` (formatted with
//!   `time_format` in the configured zone), `${hostname}`, `${record["key"]}` and
//!   `${record["a"]["b"]}` (record fields, nested), `${$.a.b}` (a record accessor), and
//!   `${key}` for any other name (the record's top-level `key`, as in `${message}`).
//! * **fluent-plugin-slack's** `message` with `%s` and `message_keys`: each `%s` is replaced
//!   by the next key's value; `%%` is a percent sign. The keys `time` and `tag` are the
//!   event's time and tag (that plugin injects them into every record).
//!
//! A value is written as Ruby's `to_s` writes it (strings as they are, `nil` as nothing,
//! numbers in Ruby's spelling, maps and arrays as Ruby's `inspect`); a missing key is empty.
//! Values taken from records can be escaped for Slack (`&`, `<`, `>`), so that a log line
//! cannot mention `<!channel>` or forge a link; the template's own text is never escaped.

use weir_format::{ruby, TimeFormatter};
use weir_proto::msgpack::skip_value;
use weir_proto::EventTime;

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `${` without its closing `}`.
    #[error("'${{' at byte {0} has no closing '}}'")]
    Unterminated(usize),
    /// `${...}` whose inside weir cannot read.
    #[error("unknown placeholder '${{{0}}}'")]
    Unknown(String),
    /// A `%` directive other than `%s` and `%%` in the fluent-plugin-slack syntax.
    #[error("'%{0}': only %s and %% are supported in message with message_keys")]
    Directive(char),
    /// Fewer keys than `%s` (Ruby's `format` raises `ArgumentError`).
    #[error(
        "string specifier '%s' and message_keys mismatch: {specifiers} '%s' but {keys} key(s)"
    )]
    TooFewKeys {
        /// The number of `%s`.
        specifiers: usize,
        /// The number of keys.
        keys: usize,
    },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Tag,
    TagPart(i64),
    TagPrefix(i64),
    TagSuffix(i64),
    Time,
    Hostname,
    /// A record field: the keys to follow from the top level.
    Field(Vec<String>),
}

/// A parsed message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a template is filled from, besides the record.
pub struct Context<'a> {
    /// The event's tag.
    pub tag: &'a str,
    /// Formats `${time}`.
    pub time_format: &'a TimeFormatter,
    /// `${hostname}`.
    pub hostname: &'a str,
    /// Escape `&`, `<` and `>` in values taken from the tag and the record.
    pub escape: bool,
}

fn index(inner: &str, name: &str) -> Option<i64> {
    let n = inner
        .strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    let digits = n.strip_prefix('-').unwrap_or(n);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `record["a"]["b"]` as `["a", "b"]`.
fn record_path(inner: &str) -> Option<Vec<String>> {
    let mut rest = inner.strip_prefix("record")?;
    let mut path = Vec::new();
    while !rest.is_empty() {
        let r = rest.strip_prefix("[\"")?;
        let end = r.find("\"]")?;
        let key = &r[..end];
        if key.contains('"') {
            return None;
        }
        path.push(key.to_string());
        rest = &r[end + 2..];
    }
    (!path.is_empty()).then_some(path)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

fn classify(inner: &str) -> Result<Piece, TemplateError> {
    let piece = match inner {
        "tag" => Piece::Tag,
        "time" => Piece::Time,
        "hostname" => Piece::Hostname,
        _ => {
            if let Some(n) = index(inner, "tag").or_else(|| index(inner, "tag_parts")) {
                Piece::TagPart(n)
            } else if let Some(n) = index(inner, "tag_prefix") {
                Piece::TagPrefix(n)
            } else if let Some(n) = index(inner, "tag_suffix") {
                Piece::TagSuffix(n)
            } else if let Some(path) = record_path(inner) {
                Piece::Field(path)
            } else if let Some(rest) = inner.strip_prefix("$.") {
                let path: Vec<String> = rest.split('.').map(str::to_string).collect();
                if path.iter().any(|p| !is_name(p)) {
                    return Err(TemplateError::Unknown(inner.to_string()));
                }
                Piece::Field(path)
            } else if is_name(inner) {
                Piece::Field(vec![inner.to_string()])
            } else {
                return Err(TemplateError::Unknown(inner.to_string()));
            }
        }
    };
    Ok(piece)
}

fn push_lit(pieces: &mut Vec<Piece>, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Some(Piece::Lit(last)) = pieces.last_mut() {
        last.push_str(s);
    } else {
        pieces.push(Piece::Lit(s.to_string()));
    }
}

impl Template {
    /// Parses a template with `${...}` placeholders.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(at) = rest.find("${") {
            push_lit(&mut pieces, &rest[..at]);
            let after = &rest[at + 2..];
            // A record key in quotes may hold '}': look for the '}' that closes the
            // placeholder, after any quoted part.
            let close = closing_brace(after).ok_or(TemplateError::Unterminated(offset + at))?;
            pieces.push(classify(&after[..close])?);
            let consumed = at + 2 + close + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        push_lit(&mut pieces, rest);
        Ok(Template { pieces })
    }

    /// Builds a template from fluent-plugin-slack's `message` (with `%s`) and `message_keys`.
    pub fn from_printf(message: &str, keys: &[String]) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut keys_iter = keys.iter();
        let mut chars = message.char_indices().peekable();
        let mut lit_start = 0;
        while let Some((i, c)) = chars.next() {
            if c != '%' {
                continue;
            }
            push_lit(&mut pieces, &message[lit_start..i]);
            match chars.next() {
                Some((_, '%')) => push_lit(&mut pieces, "%"),
                Some((_, 's')) => match keys_iter.next() {
                    Some(k) if k == "tag" => pieces.push(Piece::Tag),
                    Some(k) if k == "time" => pieces.push(Piece::Time),
                    Some(k) => pieces.push(Piece::Field(vec![k.clone()])),
                    None => {
                        return Err(TemplateError::TooFewKeys {
                            specifiers: message.matches("%s").count(),
                            keys: keys.len(),
                        })
                    }
                },
                Some((_, other)) => return Err(TemplateError::Directive(other)),
                None => return Err(TemplateError::Directive(' ')),
            }
            lit_start = chars.peek().map_or(message.len(), |(j, _)| *j);
        }
        push_lit(&mut pieces, &message[lit_start.min(message.len())..]);
        Ok(Template { pieces })
    }

    /// True when the template uses the tag (then the tag must be a chunk key).
    pub fn uses_tag(&self) -> bool {
        self.pieces.iter().any(|p| {
            matches!(
                p,
                Piece::Tag | Piece::TagPart(_) | Piece::TagPrefix(_) | Piece::TagSuffix(_)
            )
        })
    }

    /// Appends the text of one event to `out`. `record` is one msgpack map; a record that
    /// cannot be read gives empty fields.
    pub fn render(&self, ctx: &Context<'_>, time: EventTime, record: &[u8], out: &mut String) {
        let mut scratch = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Tag => push_value(out, ctx.tag, ctx.escape),
                Piece::TagPart(n) => {
                    if let Some(part) = weir_route::placeholder::tag_part(ctx.tag, *n) {
                        push_value(out, part, ctx.escape);
                    }
                }
                Piece::TagPrefix(n) => {
                    if let Some(s) = tag_prefix(ctx.tag, *n) {
                        push_value(out, s, ctx.escape);
                    }
                }
                Piece::TagSuffix(n) => {
                    if let Some(s) = tag_suffix(ctx.tag, *n) {
                        push_value(out, s, ctx.escape);
                    }
                }
                Piece::Time => out.push_str(&ctx.time_format.format(time)),
                Piece::Hostname => out.push_str(ctx.hostname),
                Piece::Field(path) => {
                    scratch.clear();
                    if field_to_s(record, path, &mut scratch) {
                        push_value(out, &String::from_utf8_lossy(&scratch), ctx.escape);
                    }
                }
            }
        }
    }
}

/// The `}` closing a placeholder whose inside starts `s`, skipping `"..."` parts.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// record_transformer's `tag_prefix[N]`: the first N+1 parts joined (negative N from the end).
fn tag_prefix(tag: &str, n: i64) -> Option<&str> {
    let parts = tag.split('.').count() as i64;
    let i = if n < 0 { parts + n } else { n };
    if i < 0 || i >= parts {
        return None;
    }
    let end = tag
        .match_indices('.')
        .nth(usize::try_from(i).ok()?)
        .map_or(tag.len(), |(p, _)| p);
    tag.get(..end)
}

/// record_transformer's `tag_suffix[N]`: the parts from N on joined (negative N from the end).
fn tag_suffix(tag: &str, n: i64) -> Option<&str> {
    let parts = tag.split('.').count() as i64;
    let i = if n < 0 { parts + n } else { n };
    if i < 0 || i >= parts {
        return None;
    }
    let start = match usize::try_from(i).ok()? {
        0 => 0,
        k => tag.match_indices('.').nth(k - 1).map(|(p, _)| p + 1)?,
    };
    tag.get(start..)
}

/// Writes Ruby's `to_s` of the field at `path` into `out`; false when it is missing.
fn field_to_s(record: &[u8], path: &[String], out: &mut Vec<u8>) -> bool {
    let mut value = record;
    for key in path {
        let Ok(Some(pos)) = ruby::lookup(value, key.as_bytes()) else {
            return false;
        };
        let Ok(end) = skip_value(value, pos) else {
            return false;
        };
        let Some(v) = value.get(pos..end) else {
            return false;
        };
        value = v;
    }
    ruby::write_to_s(value, 0, out).is_ok()
}

/// Appends `s`, escaped for Slack's message text when `escape` is set.
pub fn push_value(out: &mut String, s: &str, escape: bool) {
    if !escape {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_format::{TimeType, TimeZoneSpec};

    fn rec(v: serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        let value = json_to_rmpv(&v);
        rmpv::encode::write_value(&mut out, &value).expect("encode");
        out
    }

    fn json_to_rmpv(v: &serde_json::Value) -> rmpv::Value {
        match v {
            serde_json::Value::Null => rmpv::Value::Nil,
            serde_json::Value::Bool(b) => rmpv::Value::Boolean(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => rmpv::Value::from(i),
                None => rmpv::Value::from(n.as_f64().unwrap_or_default()),
            },
            serde_json::Value::String(s) => rmpv::Value::from(s.as_str()),
            serde_json::Value::Array(a) => rmpv::Value::Array(a.iter().map(json_to_rmpv).collect()),
            serde_json::Value::Object(m) => rmpv::Value::Map(
                m.iter()
                    .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_rmpv(v)))
                    .collect(),
            ),
        }
    }

    fn render(t: &Template, tag: &str, record: &[u8], escape: bool) -> String {
        let tf = TimeFormatter::new(TimeType::String, Some("%H:%M:%S".into()), TimeZoneSpec::Utc);
        let ctx = Context {
            tag,
            time_format: &tf,
            hostname: "agg1",
            escape,
        };
        let mut out = String::new();
        t.render(&ctx, EventTime::new(1_700_000_000, 0), record, &mut out);
        out
    }

    #[test]
    fn placeholders() {
        let r = rec(
            serde_json::json!({"level": "error", "message": "disk <full>", "n": 3, "k8s": {"ns": "prod"}, "nil": null, "list": [1, "a"]}),
        );
        let t = Template::parse(
            "[${tag}|${tag[1]}|${tag_parts[-1]}|${tag_prefix[1]}|${tag_suffix[1]}] ${time} ${hostname} ${record[\"level\"]} ${message} n=${n} ns=${record[\"k8s\"][\"ns\"]}/${$.k8s.ns} nil=${nil} missing=${nope} list=${list}",
        )
        .expect("parses");
        assert_eq!(
            render(&t, "app.web.prod", &r, false),
            "[app.web.prod|web|prod|app.web|web.prod] 22:13:20 agg1 error disk <full> n=3 ns=prod/prod nil= missing= list=[1, \"a\"]"
        );
        assert_eq!(
            render(
                &Template::parse("${message} <!here>").expect("parses"),
                "t",
                &r,
                true
            ),
            "disk &lt;full&gt; <!here>",
            "values are escaped, the template's own text is not"
        );
        assert!(t.uses_tag());
        assert!(!Template::parse("${message}").expect("parses").uses_tag());
    }

    #[test]
    fn keys_with_braces_and_quotes() {
        let r = rec(serde_json::json!({"a}b": "x"}));
        let t = Template::parse("${record[\"a}b\"]}!").expect("parses");
        assert_eq!(render(&t, "t", &r, false), "x!");
    }

    #[test]
    fn template_errors() {
        assert_eq!(
            Template::parse("abc ${tag"),
            Err(TemplateError::Unterminated(4))
        );
        assert_eq!(
            Template::parse("${record[level]}"),
            Err(TemplateError::Unknown("record[level]".into()))
        );
        assert_eq!(
            Template::parse("${a b}"),
            Err(TemplateError::Unknown("a b".into()))
        );
        assert!(Template::parse("${$.a..b}").is_err());
        assert_eq!(
            Template::parse("plain $ { } text").map(|t| t.pieces.len()),
            Ok(1)
        );
    }

    #[test]
    fn fluent_plugin_slack_syntax() {
        let r = rec(serde_json::json!({"message": "boom", "host": "web1"}));
        let keys: Vec<String> = ["tag", "time", "host", "message", "absent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = Template::from_printf("%s %s %s: %s (%s) 100%%", &keys).expect("parses");
        assert_eq!(
            render(&t, "app.x", &r, false),
            "app.x 22:13:20 web1: boom () 100%"
        );
        // Extra keys are ignored, as Ruby's format ignores extra arguments.
        let t = Template::from_printf("only %s", &keys[3..]).expect("parses");
        assert_eq!(render(&t, "app.x", &r, false), "only boom");
        assert_eq!(
            Template::from_printf("%s %s", &keys[..1]),
            Err(TemplateError::TooFewKeys {
                specifiers: 2,
                keys: 1
            })
        );
        assert_eq!(
            Template::from_printf("%d", &keys),
            Err(TemplateError::Directive('d'))
        );
        assert!(Template::from_printf("50%", &keys).is_err());
    }

    proptest::proptest! {
        /// Parsing never panics, and a template without `${` is its own text.
        #[test]
        fn parse_is_total(s in "\\PC{0,64}") {
            let parsed = Template::parse(&s);
            if !s.contains("${") {
                let t = parsed.expect("plain text parses");
                proptest::prop_assert_eq!(render(&t, "t", &rec(serde_json::json!({})), false), s);
            }
        }

        /// Escaping never leaves a raw `<`, `>` or unescaped `&` from a value.
        #[test]
        fn escaped_values_are_inert(v in "\\PC{0,40}") {
            let mut out = String::new();
            push_value(&mut out, &v, true);
            proptest::prop_assert!(!out.contains('<') && !out.contains('>'));
            let unescaped = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            proptest::prop_assert_eq!(unescaped, v);
        }

        /// Any tag-part index renders without panicking.
        #[test]
        fn tag_parts_are_total(tag in "[a-z.]{0,12}", n in -20i64..20) {
            let _ = tag_prefix(&tag, n);
            let _ = tag_suffix(&tag, n);
        }
    }
}
