//! `@type grep` (Fluentd's filter_grep): keeps or drops records by regexes on their values.
//!
//! Top-level `<regexp>` sections must all match (and); top-level `<exclude>` sections drop the
//! record when any matches (or); `<and>` and `<or>` hold either `<regexp>` or `<exclude>`
//! sections and combine them as named. The old `regexpN key pattern` and `excludeN` parameters
//! still work. A key that is missing reads as empty text. Keys may be nested (`$.a.b`).

use regex::Regex;
use weir_config::{ConfigError, Section};
use weir_proto::EventBatch;

use crate::accessor::RecordPath;
use crate::value::{ruby_regex, ruby_to_s};
use crate::{done, required, warn_unused, Filter, Filtered};

#[derive(Debug)]
struct Expr {
    key: RecordPath,
    pattern: Regex,
}

impl Expr {
    fn matches(&self, record: &[u8]) -> bool {
        let text = self.key.find(record).map(ruby_to_s).unwrap_or_default();
        self.pattern.is_match(&text)
    }
}

/// The grep filter.
#[derive(Debug)]
pub struct GrepFilter {
    id: String,
    regexp_and: Vec<Expr>,
    regexp_or: Vec<Expr>,
    exclude_and: Vec<Expr>,
    exclude_or: Vec<Expr>,
}

/// Which of the four groups an expression joins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    RegexpAnd,
    RegexpOr,
    ExcludeAnd,
    ExcludeOr,
}

impl GrepFilter {
    /// Builds the filter from its `<filter>` section.
    pub fn from_section(
        s: &mut Section<'_>,
        id: String,
        warnings: &mut Vec<ConfigError>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut f = GrepFilter {
            id,
            regexp_and: Vec::new(),
            regexp_or: Vec::new(),
            exclude_and: Vec::new(),
            exclude_or: Vec::new(),
        };
        let mut seen: Vec<(Group, String)> = Vec::new();
        // The deprecated numbered forms: "regexpN key pattern".
        for (prefix, group) in [("regexp", Group::RegexpAnd), ("exclude", Group::ExcludeOr)] {
            for i in 1..=20 {
                let name = format!("{prefix}{i}");
                let Some(v) = s.string(&name) else { continue };
                let Some((key, pattern)) = v.split_once(' ') else {
                    errors.push(
                        s.error(Some(&name), format!("{name} does not contain 2 parameters")),
                    );
                    continue;
                };
                if seen.contains(&(group, key.to_string())) {
                    errors.push(s.error(
                        Some(&name),
                        format!("{name} contains a duplicated key, {key}"),
                    ));
                    continue;
                }
                seen.push((group, key.to_string()));
                match (RecordPath::parse(key), ruby_regex(pattern)) {
                    (Ok(key), Ok(pattern)) => f.push(group, Expr { key, pattern }),
                    (Err(e), _) | (_, Err(e)) => errors.push(s.error(Some(&name), e)),
                }
            }
        }
        let mut read = |sub: &mut Section<'_>,
                        group: Group,
                        dup_msg: &str,
                        f: &mut GrepFilter,
                        errors: &mut Vec<ConfigError>,
                        warnings: &mut Vec<ConfigError>| {
            let key = required(sub, "key", errors);
            let pattern = required(sub, "pattern", errors);
            warn_unused(sub, warnings);
            if key.is_empty() && pattern.is_empty() {
                return;
            }
            if seen.contains(&(group, key.clone())) {
                errors.push(sub.error(Some("key"), format!("{dup_msg}: {key}")));
                return;
            }
            seen.push((group, key.clone()));
            match RecordPath::parse(&key) {
                Ok(k) => match ruby_regex(&pattern) {
                    Ok(p) => f.push(group, Expr { key: k, pattern: p }),
                    Err(e) => errors.push(sub.error(Some("pattern"), e)),
                },
                Err(e) => errors.push(sub.error(Some("key"), e)),
            }
        };
        for mut sub in s.sections("regexp") {
            read(
                &mut sub,
                Group::RegexpAnd,
                "Duplicate key",
                &mut f,
                &mut errors,
                warnings,
            );
        }
        for mut sub in s.sections("exclude") {
            read(
                &mut sub,
                Group::ExcludeOr,
                "Duplicate key",
                &mut f,
                &mut errors,
                warnings,
            );
        }
        for (name, rgroup, egroup) in [
            ("and", Group::RegexpAnd, Group::ExcludeAnd),
            ("or", Group::RegexpOr, Group::ExcludeOr),
        ] {
            for mut cond in s.sections(name) {
                let regexps = cond.sections("regexp");
                let excludes = cond.sections("exclude");
                if !regexps.is_empty() && !excludes.is_empty() {
                    errors.push(cond.error(
                        None,
                        format!("Do not specify both <regexp> and <exclude> in <{name}>"),
                    ));
                }
                let dup = format!("Duplicate key in <{name}>");
                for mut sub in regexps {
                    read(&mut sub, rgroup, &dup, &mut f, &mut errors, warnings);
                }
                for mut sub in excludes {
                    read(&mut sub, egroup, &dup, &mut f, &mut errors, warnings);
                }
                warn_unused(&cond, warnings);
            }
        }
        done(f, errors)
    }

    fn push(&mut self, group: Group, e: Expr) {
        match group {
            Group::RegexpAnd => self.regexp_and.push(e),
            Group::RegexpOr => self.regexp_or.push(e),
            Group::ExcludeAnd => self.exclude_and.push(e),
            Group::ExcludeOr => self.exclude_or.push(e),
        }
    }

    /// Whether one record is kept.
    pub fn keeps(&self, record: &[u8]) -> bool {
        if self.regexp_and.iter().any(|e| !e.matches(record)) {
            return false;
        }
        if !self.regexp_or.is_empty() && !self.regexp_or.iter().any(|e| e.matches(record)) {
            return false;
        }
        if !self.exclude_and.is_empty() && self.exclude_and.iter().all(|e| e.matches(record)) {
            return false;
        }
        !self.exclude_or.iter().any(|e| e.matches(record))
    }
}

impl Filter for GrepFilter {
    fn id(&self) -> &str {
        &self.id
    }

    fn type_name(&self) -> &str {
        "grep"
    }

    fn filter(&self, _tag: &str, events: EventBatch) -> Filtered {
        let buf = events.buffer();
        let kept: Vec<_> = events
            .entries()
            .iter()
            .filter(|e| {
                let record = buf.get(e.start as usize..e.end as usize).unwrap_or(&[]);
                self.keeps(record)
            })
            .copied()
            .collect();
        if kept.len() == events.len() {
            return Filtered::pass(events);
        }
        // Same buffer, fewer entries: nothing is copied.
        Filtered::pass(EventBatch::new(buf.clone(), kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{batch, element, json};

    fn grep(conf: &str) -> Result<GrepFilter, Vec<ConfigError>> {
        let el = element(conf);
        let mut s = Section::new(&el, "<filter **>");
        let mut w = Vec::new();
        GrepFilter::from_section(&mut s, "g".into(), &mut w)
    }

    #[test]
    fn fluentd_documentation_example() {
        let g = grep(
            r#"<filter foo.bar>
  @type grep
  <regexp>
    key message
    pattern /cool/
  </regexp>
  <regexp>
    key hostname
    pattern /^web\d+\.example\.com$/
  </regexp>
  <exclude>
    key message
    pattern /uncool/
  </exclude>
</filter>"#,
        )
        .unwrap();
        let b = batch(&[
            r#"{"message":"It's cool outside today","hostname":"web001.example.com"}"#,
            r#"{"message":"That's not cool","hostname":"web1337.example.com"}"#,
            r#"{"message":"I am cool but you are uncool","hostname":"db001.example.com"}"#,
            r#"{"hostname":"web001.example.com"}"#,
            r#"{"message":"It's cool outside today"}"#,
        ]);
        let out = g.filter("foo.bar", b);
        assert_eq!(
            json(&out.events),
            vec![
                r#"{"message":"It's cool outside today","hostname":"web001.example.com"}"#,
                r#"{"message":"That's not cool","hostname":"web1337.example.com"}"#,
            ]
        );
    }

    #[test]
    fn and_or_nested_and_legacy() {
        let g = grep(
            r#"<filter **>
  @type grep
  <or>
    <regexp>
      key $.k8s.ns
      pattern ^prod$
    </regexp>
    <regexp>
      key level
      pattern ^error$
    </regexp>
  </or>
  <and>
    <exclude>
      key level
      pattern debug
    </exclude>
    <exclude>
      key code
      pattern ^2
    </exclude>
  </and>
  exclude1 path /health
</filter>"#,
        )
        .unwrap();
        let b = batch(&[
            r#"{"k8s":{"ns":"prod"},"level":"info","code":200}"#,
            r#"{"k8s":{"ns":"dev"},"level":"error","code":500}"#,
            r#"{"k8s":{"ns":"dev"},"level":"info"}"#,
            r#"{"k8s":{"ns":"prod"},"level":"debug","code":204}"#,
            r#"{"k8s":{"ns":"prod"},"level":"debug","code":500}"#,
            r#"{"k8s":{"ns":"prod"},"path":"/health"}"#,
        ]);
        let out = g.filter("t", b);
        assert_eq!(
            json(&out.events),
            vec![
                r#"{"k8s":{"ns":"prod"},"level":"info","code":200}"#,
                r#"{"k8s":{"ns":"dev"},"level":"error","code":500}"#,
                r#"{"k8s":{"ns":"prod"},"level":"debug","code":500}"#,
            ]
        );
    }

    #[test]
    fn errors_are_fluentds() {
        let e = grep("<filter **>\n@type grep\n<and>\n<regexp>\nkey a\npattern b\n</regexp>\n<exclude>\nkey a\npattern b\n</exclude>\n</and>\n</filter>").unwrap_err();
        assert_eq!(
            e[0].message,
            "Do not specify both <regexp> and <exclude> in <and>"
        );
        let e = grep("<filter **>\n@type grep\n<regexp>\nkey a\npattern b\n</regexp>\n<regexp>\nkey a\npattern c\n</regexp>\n</filter>").unwrap_err();
        assert_eq!(e[0].message, "Duplicate key: a");
        let e = grep("<filter **>\n@type grep\nregexp1 onlykey\n</filter>").unwrap_err();
        assert_eq!(e[0].message, "regexp1 does not contain 2 parameters");
        let e = grep("<filter **>\n@type grep\n<regexp>\nkey a\n</regexp>\n</filter>").unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "test.conf:3: <filter **> <regexp>: parameter 'pattern': is required"
        );
    }
}
