//! Locations, errors and warnings.

use std::fmt;
use std::sync::Arc;

/// A place in a configuration file: the file's name as weir opened it and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// The file name (for an included file, the path it was found at).
    pub file: Arc<str>,
    /// The line number, counting from 1.
    pub line: u32,
}

impl Location {
    /// Builds a location from a file name and a line number.
    pub fn new(file: impl Into<Arc<str>>, line: u32) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One configuration error, with the place it was found.
///
/// Displayed as `FILE:LINE: CONTEXT: parameter 'KEY': MESSAGE`; the context and parameter parts
/// are left out when they are empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the error is.
    pub location: Location,
    /// The directive the error belongs to, for example `<match blog.**>`; empty for syntax errors.
    pub context: String,
    /// The parameter the error is about, if any.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// Builds an error that names only a place and a message (as syntax errors do).
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        ConfigError {
            location,
            context: String::new(),
            param: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        if let Some(param) = &self.param {
            write!(f, "parameter '{param}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one pass, in the order they were found.
///
/// Displayed one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Something in the configuration that works but deserves a word, such as a parameter set twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where it is.
    pub location: Location,
    /// What it is about.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}
