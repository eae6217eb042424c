//! Fluentd v1 configuration syntax: parsing files into directives that remember their file and
//! line, typed access to parameters, and errors that say exactly where they are.
//!
//! [`parse_file`] and [`parse_str`] read Fluentd v1 configuration text, including `@include`d
//! files, into a tree of [`Element`]s whose root is named `ROOT`. Plugin code then reads each
//! element through a [`Section`], which converts values with Fluentd's type rules and records
//! what was read so that unused parameters can be reported.
//!
//! Behaviour follows Fluentd's `V1Parser`: `#` starts a comment at the start of a line or after
//! a blank; unquoted values run to the end of the line; single-quoted strings know only `\'` and
//! `\\`; double-quoted strings know Fluentd's escapes and embedded Ruby (of which weir evaluates
//! only `ENV[...]`, `ENV.fetch(...)` and `Socket.gethostname`); a value starting with `[` or `{`
//! is JSON and may span lines; a key set twice keeps its last value.

mod element;
mod error;
mod glob;
mod json;
mod parser;
mod ruby;
mod section;
#[cfg(test)]
mod section_tests;
#[cfg(test)]
mod syntax_tests;

use std::path::Path;

pub use element::{quote_value, Element, Param};
pub use error::{ConfigError, ConfigErrors, ConfigWarning, Location};
pub use parser::{Parsed, MAX_INCLUDE_DEPTH, MAX_NESTING};
pub use section::{
    parse_array, parse_bool, parse_duration, parse_float, parse_hash, parse_integer, parse_size,
    Section,
};

/// Reads a configuration file and the files it includes. Paths in `@include` are relative to
/// the including file's directory. The root element is named `ROOT`.
pub fn parse_file(path: &Path) -> Result<Element, ConfigErrors> {
    parse_file_with_warnings(path).map(|p| p.root)
}

/// Like [`parse_file`], and also returns the warnings (a key set twice, a deprecated form, an
/// include that matches no file).
pub fn parse_file_with_warnings(path: &Path) -> Result<Parsed, ConfigErrors> {
    parser::parse_path(path, parser::process_env())
}

/// Parses configuration text. `file_name` names it in locations; `base_dir` is where relative
/// `@include` paths start.
pub fn parse_str(text: &str, file_name: &str, base_dir: &Path) -> Result<Element, ConfigErrors> {
    parse_str_with_warnings(text, file_name, base_dir).map(|p| p.root)
}

/// Like [`parse_str`], and also returns the warnings.
pub fn parse_str_with_warnings(
    text: &str,
    file_name: &str,
    base_dir: &Path,
) -> Result<Parsed, ConfigErrors> {
    parser::parse_text(text, file_name, base_dir, parser::process_env(), None)
}
