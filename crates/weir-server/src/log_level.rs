//! Fluentd's log levels in a config: `<system> log_level` for the whole process and
//! `@log_level` for one plugin. The `weir` binary's log filter applies them: a log line about a
//! plugin (one that names it in its `output`, `buffer`, `source`, `filter` or `plugin_id`
//! field) is kept or dropped by that plugin's level, every other line by the process level.

use weir_config::{ConfigError, Section};

/// The levels Fluentd accepts, in its spelling. `fatal` is weir's `error`: weir has no level
/// above it.
pub const LEVELS: &str = "trace, debug, info, warn, error, fatal";

/// Reads a level as Fluentd spells it.
pub fn parse_level(s: &str) -> Option<tracing::Level> {
    match s.trim() {
        "trace" => Some(tracing::Level::TRACE),
        "debug" => Some(tracing::Level::DEBUG),
        "info" => Some(tracing::Level::INFO),
        "warn" => Some(tracing::Level::WARN),
        "error" | "fatal" => Some(tracing::Level::ERROR),
        _ => None,
    }
}

/// The levels a config sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogLevels {
    /// `<system> log_level`: the process's level unless `--log-level` or `WEIR_LOG` says
    /// otherwise.
    pub system: Option<tracing::Level>,
    /// Each plugin's `@log_level`, by plugin id.
    pub plugins: Vec<(String, tracing::Level)>,
}

/// Reads `key` of `s` as a level; an unknown level is an error naming the file and line.
pub fn read_level(
    s: &mut Section<'_>,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<tracing::Level> {
    let v = s.string(key)?;
    match parse_level(&v) {
        Some(l) => Some(l),
        None => {
            errors.push(s.error(
                Some(key),
                format!("unknown log level '{v}' (valid: {LEVELS})"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fluentd_level_names() {
        assert_eq!(parse_level("debug"), Some(tracing::Level::DEBUG));
        assert_eq!(parse_level("fatal"), Some(tracing::Level::ERROR));
        assert_eq!(parse_level(" warn "), Some(tracing::Level::WARN));
        assert_eq!(parse_level("warning"), None);
        assert_eq!(parse_level("INFO"), None);
    }
}
