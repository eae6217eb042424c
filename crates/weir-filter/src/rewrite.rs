//! The rules of `@type rewrite_tag_filter` (fluent-plugin-rewrite-tag-filter 2.x): for each
//! record, the first `<rule>` whose `pattern` matches the value of its `key` (or, with
//! `invert true`, does not match) gives the record a new tag. Records that no rule picks, and
//! records whose new tag equals the old one, are dropped, as in the plugin.
//!
//! The new tag may use `$1`..`$9` (the pattern's groups, not with `invert`), `${tag}`/`__TAG__`,
//! `${tag_parts[N]}`/`__TAG_PARTS[N]__` and `${hostname}`/`__HOSTNAME__`. An unknown placeholder
//! becomes empty text, with a warning at load time.

use regex::Regex;
use weir_config::{ConfigError, Section};

use crate::accessor::RecordPath;
use crate::value::{ruby_regex, ruby_to_s};
use crate::{done, opt, required, warn_unused};

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Group(usize),
    Tag,
    TagPart(usize),
    Hostname,
    Unknown,
}

#[derive(Debug)]
struct Rule {
    key: RecordPath,
    pattern: Regex,
    invert: bool,
    tag: Vec<Piece>,
}

/// The compiled rules.
#[derive(Debug)]
pub struct RewriteRules {
    rules: Vec<Rule>,
    capitalize: bool,
    remove_tag_prefix: Option<String>,
    hostname: String,
}

/// The whole config of a `rewrite_tag_filter` output.
#[derive(Debug)]
pub struct RewriteTagConfig {
    /// The rules.
    pub rules: RewriteRules,
}

fn parse_tag(tag: &str, warnings: &mut Vec<String>) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = tag;
    while !rest.is_empty() {
        let ph_end = if rest.starts_with("${") {
            rest.find('}').map(|i| i + 1)
        } else if rest.starts_with("__") && rest.len() > 2 {
            rest[2..].find("__").map(|i| i + 4)
        } else {
            None
        };
        if let Some(end) = ph_end {
            let ph = &rest[..end];
            let piece = match ph {
                "${tag}" | "__TAG__" => Some(Piece::Tag),
                "${hostname}" | "__HOSTNAME__" => Some(Piece::Hostname),
                _ => {
                    let idx = ph
                        .strip_prefix("${tag_parts[")
                        .and_then(|r| r.strip_suffix("]}"))
                        .or_else(|| {
                            ph.strip_prefix("__TAG_PARTS[")
                                .and_then(|r| r.strip_suffix("]__"))
                        });
                    match idx.map(str::parse::<usize>) {
                        Some(Ok(n)) => Some(Piece::TagPart(n)),
                        _ if ph.starts_with("${")
                            || ph[2..ph.len() - 2]
                                .chars()
                                .all(|c| c.is_ascii_uppercase() || c == '_') =>
                        {
                            warnings.push(format!(
                                "rewrite_tag_filter: unknown placeholder found. :placeholder=>{ph} :rewritetag=>{tag}"
                            ));
                            Some(Piece::Unknown)
                        }
                        _ => None,
                    }
                }
            };
            if let Some(p) = piece {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(p);
                rest = &rest[end..];
                continue;
            }
        }
        if let Some(r) = rest.strip_prefix('$') {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<usize>() {
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(Piece::Group(n));
                rest = &r[digits.len()..];
                continue;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            lit.push(c);
        }
        rest = chars.as_str();
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

impl RewriteTagConfig {
    /// Reads the output's section (`<rule>` sections and the plugin's parameters).
    pub fn from_section(
        s: &mut Section<'_>,
        warnings: &mut Vec<ConfigError>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let capitalize =
            opt(s.boolean("capitalize_regex_backreference"), &mut errors).unwrap_or(false);
        let remove_tag_prefix = s.string("remove_tag_prefix");
        if let Some(cmd) = s.string("hostname_command") {
            if cmd != "hostname" {
                errors.push(s.error(
                    Some("hostname_command"),
                    "not supported by weir: weir does not run commands; ${hostname} is the system host name",
                ));
            }
        }
        let keys: Vec<String> = s
            .element()
            .params
            .iter()
            .filter(|p| p.key.starts_with("rewriterule"))
            .map(|p| p.key.clone())
            .collect();
        if let Some(k) = keys.first() {
            errors.push(s.error(
                Some(k),
                "\"rewriterule<num>\" support has been dropped. Use <rule> section instead.",
            ));
            for k in &keys {
                let _ = s.string(k);
            }
        }
        let mut rules = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for mut r in s.sections("rule") {
            let key = required(&mut r, "key", &mut errors);
            let pattern = required(&mut r, "pattern", &mut errors);
            let tag = required(&mut r, "tag", &mut errors);
            let invert = opt(r.boolean("invert"), &mut errors).unwrap_or(false);
            warn_unused(&r, warnings);
            if key.is_empty() || pattern.is_empty() || tag.is_empty() {
                continue;
            }
            let name = format!("{key}{}{pattern}", if invert { "!" } else { "" });
            if names.contains(&name) {
                errors.push(r.error(
                    None,
                    format!("duplicated rewriterules found: key {key}, pattern {pattern}"),
                ));
                continue;
            }
            names.push(name);
            if tag.contains("${tag_parts[") && tag.contains("..") {
                errors.push(r.error(
                    Some("tag"),
                    "${tag_parts[n]} and __TAG_PARTS[n]__ placeholder does not support range specify",
                ));
                continue;
            }
            let mut w = Vec::new();
            let pieces = parse_tag(&tag, &mut w);
            for m in w {
                warnings.push(r.error(Some("tag"), m));
            }
            match (RecordPath::parse(&key), ruby_regex(&pattern)) {
                (Ok(key), Ok(pattern)) => rules.push(Rule {
                    key,
                    pattern,
                    invert,
                    tag: pieces,
                }),
                (Err(e), _) => errors.push(r.error(Some("key"), e)),
                (_, Err(e)) => errors.push(r.error(Some("pattern"), e)),
            }
        }
        if rules.is_empty() && errors.is_empty() {
            errors.push(s.error(None, "missing rewriterules"));
        }
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        done(
            RewriteTagConfig {
                rules: RewriteRules {
                    rules,
                    capitalize,
                    remove_tag_prefix,
                    hostname,
                },
            },
            errors,
        )
    }
}

impl RewriteRules {
    /// The new tag for one record, or `None` when it is dropped (no rule picks it, or the new
    /// tag equals `tag`).
    pub fn rewrite(&self, tag: &str, record: &[u8]) -> Option<String> {
        for rule in &self.rules {
            let value = rule.key.find(record).map(ruby_to_s).unwrap_or_default();
            if value.is_empty() && !rule.invert {
                continue;
            }
            let caps = rule.pattern.captures(&value);
            if rule.invert == caps.is_some() {
                continue;
            }
            let new_tag = self.render(rule, tag, caps.as_ref());
            return if new_tag == tag { None } else { Some(new_tag) };
        }
        None
    }

    fn render(&self, rule: &Rule, tag: &str, caps: Option<&regex::Captures<'_>>) -> String {
        let tag = match &self.remove_tag_prefix {
            Some(p) => match tag.strip_prefix(p.as_str()) {
                Some(rest) => rest.strip_prefix('.').unwrap_or(rest),
                None => tag,
            },
            None => tag,
        };
        let mut out = String::new();
        for piece in &rule.tag {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Tag => out.push_str(tag),
                Piece::Hostname => out.push_str(&self.hostname),
                Piece::TagPart(n) => out.push_str(tag.split('.').nth(*n).unwrap_or("")),
                Piece::Group(n) => match caps {
                    // With `invert` there is no match, and `$N` stays as written.
                    None => {
                        out.push('$');
                        out.push_str(&n.to_string());
                    }
                    Some(c) => {
                        let g = c.get(*n).map(|m| m.as_str()).unwrap_or("");
                        if self.capitalize {
                            out.push_str(&capitalize(g));
                        } else {
                            out.push_str(g);
                        }
                    }
                },
                Piece::Unknown => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::element;

    fn rules(conf: &str) -> RewriteRules {
        let el = element(conf);
        let mut s = Section::new(&el, "<match **>");
        let mut w = Vec::new();
        RewriteTagConfig::from_section(&mut s, &mut w)
            .unwrap()
            .rules
    }

    fn rec(json: &str) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut out = Vec::new();
        weir_proto::json_to_msgpack(&v, &mut out);
        out
    }

    #[test]
    fn first_rule_wins_with_groups_and_placeholders() {
        let r = rules(
            r#"<match app.**>
  @type rewrite_tag_filter
  capitalize_regex_backreference yes
  <rule>
    key     $.req.domain
    pattern ^(www)\.(example)\.com$
    tag     site.$2.$1.${tag_parts[1]}
  </rule>
  <rule>
    key     level
    pattern /^error$/i
    tag     error.${tag}
  </rule>
  <rule>
    key     level
    pattern ^.+$
    tag     other.__TAG__
    invert  true
  </rule>
</match>"#,
        );
        assert_eq!(
            r.rewrite("app.web", &rec(r#"{"req":{"domain":"www.example.com"}}"#))
                .as_deref(),
            Some("site.Example.Www.web")
        );
        assert_eq!(
            r.rewrite("app.web", &rec(r#"{"level":"ERROR"}"#))
                .as_deref(),
            Some("error.app.web")
        );
        assert_eq!(
            r.rewrite("app.web", &rec(r#"{"msg":"x"}"#)).as_deref(),
            Some("other.app.web")
        );
        assert_eq!(r.rewrite("app.web", &rec(r#"{"level":"info"}"#)), None);
    }

    #[test]
    fn same_tag_is_dropped_and_errors() {
        let r = rules("<match a>\n@type rewrite_tag_filter\n<rule>\nkey k\npattern .\ntag a\n</rule>\n</match>");
        assert_eq!(r.rewrite("a", &rec(r#"{"k":"v"}"#)), None);
        let el = element("<match a>\n@type rewrite_tag_filter\nrewriterule1 k ^x$ y\n</match>");
        let mut s = Section::new(&el, "<match a>");
        let e = RewriteTagConfig::from_section(&mut s, &mut Vec::new()).unwrap_err();
        assert_eq!(
            e[0].message,
            "\"rewriterule<num>\" support has been dropped. Use <rule> section instead."
        );
        let el = element("<match a>\n@type rewrite_tag_filter\n</match>");
        let mut s = Section::new(&el, "<match a>");
        let e = RewriteTagConfig::from_section(&mut s, &mut Vec::new()).unwrap_err();
        assert_eq!(e[0].message, "missing rewriterules");
    }
}
