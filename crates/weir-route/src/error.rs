//! The error type for patterns that cannot be compiled.

/// Why a pattern string could not be compiled.
///
/// Every variant carries the pattern text it was given, so the message can be shown to the
/// person who wrote the configuration without more context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A `{` was opened and never closed.
    ///
    /// Fluentd accepts this silently and then matches the unclosed alternatives as escaped
    /// literal regex text, which is never what was meant, so weir rejects it.
    #[error("tag pattern {pattern:?}: the '{{' at byte {position} is never closed by a '}}'")]
    UnclosedBrace {
        /// The pattern as written.
        pattern: String,
        /// Byte offset of the unclosed `{`.
        position: usize,
    },
    /// A `}` appeared with no `{` open.
    ///
    /// Fluentd treats it as a literal `}`; weir rejects it because it is almost always a typo.
    /// Write `\}` to match a literal `}`.
    #[error(
        "tag pattern {pattern:?}: the '}}' at byte {position} has no matching '{{' (write \\}} for a literal '}}')"
    )]
    UnmatchedBrace {
        /// The pattern as written.
        pattern: String,
        /// Byte offset of the stray `}`.
        position: usize,
    },
    /// The pattern starts with `/` but does not end with `/`.
    #[error("tag pattern {pattern:?} starts with '/' but does not end with '/': a regex pattern is written /regex/")]
    UnterminatedRegex {
        /// The pattern as written.
        pattern: String,
    },
    /// The text between the slashes of a `/regex/` pattern is not a valid regex.
    #[error("tag pattern {pattern:?}: invalid regex: {message}")]
    InvalidRegex {
        /// The pattern as written.
        pattern: String,
        /// What the regex compiler reported.
        message: String,
    },
    /// The regex uses a Ruby feature that weir cannot run in linear time.
    #[error("tag pattern {pattern:?}: unsupported regex: {message}")]
    UnsupportedRegex {
        /// The pattern as written.
        pattern: String,
        /// Which feature is not supported and what to write instead.
        message: String,
    },
    /// Braces nest deeper than weir allows.
    #[error("tag pattern {pattern:?}: the '{{' at byte {position} nests braces deeper than {limit} levels")]
    TooDeeplyNested {
        /// The pattern as written.
        pattern: String,
        /// Byte offset of the `{` that went too deep.
        position: usize,
        /// The deepest nesting allowed.
        limit: usize,
    },
}
