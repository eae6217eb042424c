//! `/regex/` patterns (Fluentd v1.11.2 and later).
//!
//! Fluentd builds a Ruby regex from the text between the slashes by putting `\A` in front
//! and `\Z` behind it, and looks for a match anywhere in the tag. weir does the same with the
//! `regex` crate, which runs in time linear in the tag length, with these adjustments:
//!
//! - Ruby's `\Z` (end of tag, or before a final line feed) is written `(?:\n?\z)`.
//! - `^` and `$` match at line starts and ends, as they always do in Ruby.
//! - Because the wrapping is plain text, a top-level `|` splits the anchors just as in
//!   Fluentd: `/a|b/` matches tags that start with `a` or end with `b`.
//! - Look-around is not available in the `regex` crate. weir accepts the common case that
//!   Fluentd documents, look-aheads at the very start such as `/(?!a\.).*/`: each is checked
//!   as a separate regex anchored at the start of the tag. Look-around anywhere else, and
//!   back-references, are rejected with [`PatternError::UnsupportedRegex`].
//! - `\w`, `\d`, `\s` and `\b` are Unicode-aware in the `regex` crate and ASCII-only in
//!   Ruby; write `(?-u:\w)` for Ruby's exact meaning. Tags are nearly always ASCII.

use regex::{Regex, RegexBuilder};

use crate::PatternError;

/// A compiled `/regex/` pattern.
#[derive(Debug, Clone)]
pub(crate) struct RegexPattern {
    /// Leading look-aheads: (must match, regex anchored at the start of the tag).
    lookaheads: Vec<(bool, Regex)>,
    /// The main regex, anchored as Fluentd anchors it.
    main: Regex,
}

impl RegexPattern {
    /// Compiles the text between the slashes. `pattern` is the whole pattern, for errors.
    pub(crate) fn compile(pattern: &str, body: &str) -> Result<RegexPattern, PatternError> {
        let mut rest = body;
        let mut lookaheads = Vec::new();
        while let Some((positive, inner, after)) = leading_lookahead(rest) {
            let anchored = format!("\\A(?:{inner})");
            lookaheads.push((positive, build(pattern, &anchored)?));
            rest = after;
        }
        if !lookaheads.is_empty() && has_top_level_bar(rest) {
            return Err(PatternError::UnsupportedRegex {
                pattern: pattern.to_owned(),
                message: "a look-ahead at the start cannot be combined with a top-level '|'; \
                          use separate patterns instead"
                    .to_owned(),
            });
        }
        // Ruby joins the text as-is; a body ending in a lone backslash escapes the backslash
        // of `\Z`, so keep Ruby's text in that case and the regex crate reads it the same way.
        let suffix = if ends_with_lone_backslash(rest) {
            "\\Z"
        } else {
            "(?:\\n?\\z)"
        };
        let main = build(pattern, &format!("\\A{rest}{suffix}"))?;
        Ok(RegexPattern { lookaheads, main })
    }

    /// Whether the tag matches.
    pub(crate) fn matches(&self, tag: &str) -> bool {
        self.lookaheads
            .iter()
            .all(|(positive, re)| re.is_match(tag) == *positive)
            && self.main.is_match(tag)
    }
}

fn build(pattern: &str, text: &str) -> Result<Regex, PatternError> {
    RegexBuilder::new(text)
        .multi_line(true)
        .build()
        .map_err(|err| {
            let message = err.to_string();
            if message.contains("look-around") || message.contains("backreferences") {
                PatternError::UnsupportedRegex {
                    pattern: pattern.to_owned(),
                    message: format!(
                        "look-around (except leading look-aheads) and back-references cannot \
                         run in linear time and are not supported: {message}"
                    ),
                }
            } else {
                PatternError::InvalidRegex {
                    pattern: pattern.to_owned(),
                    message,
                }
            }
        })
}

/// If `text` starts with `(?=...)` or `(?!...)`, returns (positive, inner text, rest).
fn leading_lookahead(text: &str) -> Option<(bool, &str, &str)> {
    let positive = if text.starts_with("(?=") {
        true
    } else if text.starts_with("(?!") {
        false
    } else {
        return None;
    };
    let close = matching_paren(text)?;
    let inner = text.get(3..close)?;
    let rest = text.get(close + 1..)?;
    Some((positive, inner, rest))
}

/// Walks regex text outside and inside character classes, calling `f(byte offset, char,
/// group depth)` for every character that is neither escaped nor inside a class. Stops when
/// `f` returns true and returns that offset.
fn scan(text: &str, mut f: impl FnMut(usize, char, usize) -> bool) -> Option<usize> {
    let mut depth = 0usize;
    let mut class = 0usize;
    let mut escape = false;
    for (pos, c) in text.char_indices() {
        if escape {
            escape = false;
            continue;
        }
        match c {
            '\\' => escape = true,
            '[' => class += 1,
            ']' if class > 0 => class -= 1,
            _ if class > 0 => {}
            '(' => {
                depth += 1;
                if f(pos, c, depth) {
                    return Some(pos);
                }
            }
            ')' => {
                if f(pos, c, depth) {
                    return Some(pos);
                }
                depth = depth.saturating_sub(1);
            }
            _ => {
                if f(pos, c, depth) {
                    return Some(pos);
                }
            }
        }
    }
    None
}

/// Byte offset of the `)` that closes the group opened at offset 0.
fn matching_paren(text: &str) -> Option<usize> {
    scan(text, |_, c, depth| c == ')' && depth == 1)
}

fn has_top_level_bar(text: &str) -> bool {
    scan(text, |_, c, depth| c == '|' && depth == 0).is_some()
}

fn ends_with_lone_backslash(text: &str) -> bool {
    text.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}
