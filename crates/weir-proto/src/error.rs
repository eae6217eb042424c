//! Error types of the codec.

use thiserror::Error;

/// A failure of the low-level msgpack scanner on a complete buffer.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// The buffer ends before the value does.
    #[error("msgpack value is truncated")]
    Truncated,
    /// The byte 0xC1, which msgpack never uses, appeared where a value should start.
    #[error("byte 0xC1 at offset {offset} is never valid msgpack")]
    InvalidByte {
        /// Offset of the offending byte in the scanned buffer.
        offset: usize,
    },
}

/// A failure of the frame decoder. The byte stream cannot be trusted after one of these: the
/// connection should be closed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is, or has declared that it will be, larger than the chunk size limit.
    #[error("request of at least {needed} bytes exceeds the chunk size limit of {limit} bytes")]
    TooLarge {
        /// The configured chunk size limit.
        limit: usize,
        /// The least number of bytes the frame is known to need.
        needed: usize,
    },
    /// Arrays and maps are nested deeper than allowed.
    #[error("msgpack nesting deeper than {max_depth} levels")]
    TooDeep {
        /// The configured maximum depth.
        max_depth: usize,
    },
    /// The byte 0xC1, which msgpack never uses, appeared where a value should start.
    #[error("byte 0xC1 at offset {offset} of the frame is never valid msgpack")]
    InvalidByte {
        /// Offset of the offending byte from the start of the frame.
        offset: usize,
    },
}

/// Why a frame could not be turned into a request, or a record into JSON.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The bytes are not well-formed msgpack.
    #[error("malformed msgpack: {0}")]
    Malformed(#[from] ScanError),
    /// The request is neither `nil` nor an array.
    #[error("request is not an array")]
    NotArray,
    /// The request is an empty array.
    #[error("request is an empty array")]
    EmptyArray,
    /// Element 0 of the request is not a string.
    #[error("request tag is not a string")]
    TagNotString,
    /// The request array has a number of elements its mode does not allow.
    #[error("{mode} request with {len} elements")]
    BadLength {
        /// The mode the request was recognised as.
        mode: &'static str,
        /// The number of elements found.
        len: u32,
    },
    /// Bytes follow the request value inside the frame.
    #[error("trailing bytes after the request")]
    TrailingBytes,
    /// The frame or a decompressed blob is too large to be addressed with 32-bit offsets.
    #[error("request larger than 4 GiB")]
    TooLarge,
    /// The `compressed` option names an unknown compression.
    #[error("unknown compression {0:?}")]
    UnknownCompression(String),
    /// The compressed blob could not be decompressed.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// The decompressed blob would exceed the decompression size limit.
    #[error("decompressed size exceeds the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// An uncompressed packed blob starts with the gzip magic bytes.
    #[error("packed blob looks like gzip but the request does not say it is compressed")]
    UnexpectedGzip,
    /// A packed blob ends in the middle of an entry.
    #[error("packed entries are truncated")]
    TruncatedEntries,
    /// A packed blob holds one array of entries instead of concatenated entries.
    #[error("packed blob is an array of entries, not a concatenation")]
    BlobIsArray,
    /// An event is invalid (time not a time value, record not a map, or entry not a
    /// two-element array) and invalid events are not being skipped.
    #[error("invalid event at index {index}")]
    InvalidEvent {
        /// Index of the first invalid event in the request.
        index: usize,
    },
    /// An ack reply is not a map with an `ack` string.
    #[error("not an ack reply")]
    NotAck,
}

/// Why a handshake message could not be parsed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The bytes are not well-formed msgpack.
    #[error("malformed msgpack: {0}")]
    Malformed(#[from] ScanError),
    /// The message is not an array.
    #[error("handshake message is not an array")]
    NotArray,
    /// The array has the wrong number of elements for the message.
    #[error("{message} with {len} elements, expected {expected}")]
    BadLength {
        /// The message name expected.
        message: &'static str,
        /// The number of elements found.
        len: u32,
        /// The number of elements required.
        expected: u32,
    },
    /// Element 0 is not the expected message name.
    #[error("expected a {expected} message")]
    WrongMessage {
        /// The message name expected.
        expected: &'static str,
    },
    /// A field has the wrong type.
    #[error("field {field} of {message} has the wrong type")]
    BadField {
        /// The message name.
        message: &'static str,
        /// The field name.
        field: &'static str,
    },
    /// A required field is missing.
    #[error("field {field} of {message} is missing")]
    MissingField {
        /// The message name.
        message: &'static str,
        /// The field name.
        field: &'static str,
    },
    /// Bytes follow the message.
    #[error("trailing bytes after the handshake message")]
    TrailingBytes,
}
