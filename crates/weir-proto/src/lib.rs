//! The Fluentd forward protocol v1 as weir speaks it: incremental framing of the byte stream,
//! the four request modes, event times, options, acks, the shared-key handshake, and an encoder
//! for every mode. Pure code, no I/O.

mod ack;
mod batch;
mod encode;
mod error;
mod frame;
mod handshake;
pub mod msgpack;
mod record;
mod request;
mod time;

pub use ack::{encode_ack, parse_ack};
pub use batch::{EntryRef, EventBatch};
pub use encode::{
    encode_entry, encode_forward, encode_message, encode_packed, encode_packed_blob, gzip,
    write_event_time, zstd_compress, EncodeOptions, TimeFormat,
};
pub use error::{FrameError, HandshakeError, RequestError, ScanError};
pub use frame::{FrameDecoder, FrameLimits};
pub use handshake::{digest_eq, key_digest, password_digest, Helo, Ping, Pong};
pub use record::{json_to_msgpack, record_to_json, write_ruby_float};
pub use request::{
    gunzip, parse_request, unzstd, Compression, EventRequest, Mode, ParseOptions, Request,
};
pub use time::{read_time, EventTime};
