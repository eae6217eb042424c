//! The crate's error type.

use thiserror::Error;
use weir_proto::ScanError;

/// Why a record could not be formatted, or a time zone not understood.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The record bytes are not well-formed msgpack.
    #[error("malformed msgpack record: {0}")]
    Malformed(#[from] ScanError),
    /// The record is well-formed msgpack but not a map.
    #[error("record is not a map")]
    NotAMap,
    /// There are bytes after the record's value.
    #[error("bytes after the end of the record")]
    TrailingBytes,
    /// Arrays and maps inside the record nest deeper than the formatter follows.
    #[error("record nests deeper than {0} levels")]
    TooDeep(usize),
    /// A `timezone` value Fluentd would refuse.
    #[error("unsupported timezone '{0}'")]
    Timezone(String),
}
