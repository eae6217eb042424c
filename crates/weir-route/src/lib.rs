//! Tag patterns and routing: Fluentd's `<match>`/`<filter>` pattern language, compiled once;
//! a per-tag cache for compiled routes ([`TagCache`]); and output placeholders
//! ([`placeholder`]: `${tag}`, `${tag[N]}`, record keys, strftime fields, `${chunk_id}`).
//!
//! A [`Pattern`] is one pattern string, either a glob (`a.*`, `a.**`, `{a,b}.c`, `**.c`) or a
//! regex written between slashes (`/(?!a\.).*/`). A [`PatternSet`] is the whole argument of
//! a `<match a.* b.**>` directive: patterns separated by whitespace, any of which may match.
//! A [`TagCache`] remembers, per tag, what a pipeline computed from its pattern sets (the
//! filters and the first matching `<match>`), in a bounded cache.
//!
//! The matching rules are Fluentd v1's (`lib/fluent/match.rb` and the rule and cache in
//! `lib/fluent/event_router.rb`); the module documentation of each part lists them, with the
//! few places where weir deliberately differs. Matching never backtracks: globs run on a
//! small automaton in `O(tag length * pattern length)` and regexes run on the `regex` crate.
//!
//! ```
//! use weir_route::{PatternSet, TagCache};
//!
//! let rules = [
//!     (PatternSet::parse("app.{web,api}.**").unwrap(), "app"),
//!     (PatternSet::parse(r"/(?!debug\.).*/ audit").unwrap(), "rest"),
//! ];
//! let cache = TagCache::new(1024);
//! let route = |tag: &str| {
//!     cache.get_or_insert_with(tag, || rules.iter().find(|(p, _)| p.matches(tag)).map(|r| r.1))
//! };
//! assert_eq!(route("app.web"), Some("app"));
//! assert_eq!(route("app.api.v2"), Some("app"));
//! assert_eq!(route("system.kernel"), Some("rest"));
//! assert_eq!(route("debug.trace"), None);
//! ```

mod cache;
mod error;
mod glob;
pub mod placeholder;
mod regex_pattern;

pub use cache::TagCache;
pub use cache::{DEFAULT_CACHE_CAPACITY, MAX_CACHED_TAG_LEN};
pub use error::PatternError;
pub use glob::MAX_BRACE_DEPTH;

/// One compiled tag pattern.
///
/// The pattern `**` matches every tag; a pattern that starts with `/` is a regex and must
/// end with `/`; anything else is a glob (see [`Pattern::parse`]).
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `**` on its own: every tag.
    All,
    /// A glob without wildcards or braces: the tag must equal this text (or this text
    /// followed by one line feed, as Ruby's `\Z` allows).
    Literal(String),
    /// Any other glob.
    Glob(glob::Program),
    /// `/regex/`.
    Regex(regex_pattern::RegexPattern),
}

impl Pattern {
    /// Compiles one pattern.
    ///
    /// Globs follow Fluentd v1:
    ///
    /// - `*` matches one tag part: any characters except `.`. `a.*` matches `a.b`, not `a`
    ///   or `a.b.c`; `a*` matches `ab` but not `a.b`.
    /// - `**` matches zero or more tag parts: `a.**` matches `a`, `a.b` and `a.b.c` but not
    ///   `ab`; `**.c` matches `c` and `a.b.c`; `a.**.c` matches `a.c` and `a.b.c`.
    /// - `{x,y}` matches either sub-pattern; braces nest and may hold wildcards.
    /// - `\c` matches `c` literally; every other character matches itself.
    ///
    /// `/regex/` is matched against the whole tag (anchored at both ends unless the regex
    /// has a top-level `|`, exactly as in Fluentd).
    ///
    /// # Errors
    ///
    /// Unbalanced braces, a regex without its closing `/`, an invalid regex, or a regex
    /// feature that cannot run in linear time. See [`PatternError`].
    pub fn parse(s: &str) -> Result<Pattern, PatternError> {
        let kind = if s == "**" {
            Kind::All
        } else if let Some(after_slash) = s.strip_prefix('/') {
            // Like Fluentd, a lone `/` is the empty regex: it matches only the empty tag.
            let body = if after_slash.is_empty() {
                ""
            } else {
                after_slash
                    .strip_suffix('/')
                    .ok_or_else(|| PatternError::UnterminatedRegex {
                        pattern: s.to_owned(),
                    })?
            };
            Kind::Regex(regex_pattern::RegexPattern::compile(s, body)?)
        } else {
            let nodes = glob::parse(s)?;
            let literal: Option<String> = nodes
                .iter()
                .map(|node| match node {
                    glob::Node::Lit(c) => Some(*c),
                    _ => None,
                })
                .collect();
            match literal {
                Some(text) => Kind::Literal(text),
                None => Kind::Glob(glob::Program::compile(&nodes)),
            }
        };
        Ok(Pattern {
            source: s.to_owned(),
            kind,
        })
    }

    /// Whether `tag` matches this pattern.
    pub fn matches(&self, tag: &str) -> bool {
        match &self.kind {
            Kind::All => true,
            Kind::Literal(text) => tag
                .strip_prefix(text.as_str())
                .is_some_and(|rest| rest.is_empty() || rest == "\n"),
            Kind::Glob(program) => program.matches(tag),
            Kind::Regex(regex) => regex.matches(tag),
        }
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

/// The argument of a `<match>` or `<filter>` directive: one or more patterns separated by
/// whitespace. A tag matches the set when it matches any of its patterns.
#[derive(Debug, Clone)]
pub struct PatternSet {
    source: String,
    patterns: Vec<Pattern>,
}

impl PatternSet {
    /// Compiles a directive argument such as `a.** b.*`.
    ///
    /// The argument is split on runs of ASCII whitespace (Ruby's `\s`: space, tab, line
    /// feed, vertical tab, form feed, carriage return). An empty or all-whitespace argument
    /// means `**`, as in Fluentd, where `<match>` with no argument matches every tag.
    ///
    /// # Errors
    ///
    /// The first pattern that does not compile; see [`Pattern::parse`].
    pub fn parse(arg: &str) -> Result<PatternSet, PatternError> {
        let mut patterns = arg
            .split(is_ruby_space)
            .filter(|part| !part.is_empty())
            .map(Pattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            patterns.push(Pattern::parse("**")?);
        }
        Ok(PatternSet {
            source: arg.to_owned(),
            patterns,
        })
    }

    /// Whether `tag` matches any pattern of the set.
    pub fn matches(&self, tag: &str) -> bool {
        self.patterns.iter().any(|pattern| pattern.matches(tag))
    }

    /// The argument as it was written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled patterns, in the order they were written.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
}

impl std::fmt::Display for PatternSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for PatternSet {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PatternSet::parse(s)
    }
}

/// Ruby's `\s`.
fn is_ruby_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}
