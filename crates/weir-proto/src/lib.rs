//! The Fluentd forward protocol v1 as weir speaks it: incremental framing of the byte stream,
//! the four request modes, event times, options, acks, the shared-key handshake, and an encoder
//! for every mode, and the PROXY protocol header a load balancer puts in front of a connection.
//! Pure code, no I/O.

mod ack;
mod batch;
mod encode;
mod error;
mod frame;
mod handshake;
pub mod msgpack;
mod proxy;
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
pub use proxy::{
    parse_proxy_header, ProxyAddresses, ProxyCommand, ProxyError, ProxyHeader, ProxyParse,
    ProxyTlv, ProxyVersion, PP2_SUBTYPE_AWS_VPCE_ID, PP2_SUBTYPE_SSL_CN, PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN, PP2_TYPE_AUTHORITY, PP2_TYPE_AWS, PP2_TYPE_CRC32C, PP2_TYPE_NETNS,
    PP2_TYPE_NOOP, PP2_TYPE_SSL, PP2_TYPE_UNIQUE_ID, PROXY_V1_MAX_LEN, PROXY_V2_MAX_LEN,
    PROXY_V2_SIGNATURE,
};
pub use record::{json_to_msgpack, record_to_json, write_ruby_float};
pub use request::{
    gunzip, parse_request, unzstd, Compression, EventRequest, Mode, ParseOptions, Request,
};
pub use time::{read_time, EventTime};
