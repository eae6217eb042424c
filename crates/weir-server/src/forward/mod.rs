//! `<source> @type forward`: the forward protocol listener.
//!
//! One TCP listener (optionally TLS) and one UDP socket on the same port. Each accepted
//! connection runs [`conn::accept`]: the PROXY protocol header when `proxy_protocol` is set,
//! TLS when `<transport tls>` is, the shared-key handshake when `<security>` is set, then a
//! reader that decodes requests and hands them to the pipeline, and a writer that sends each
//! ack, in request order, once the pipeline says the events are accepted.

pub mod config;
mod conn;
mod handshake;
mod listener;
mod proxy;
mod records;
mod stats;
mod tls;

pub use config::ForwardConfig;
pub use listener::{BoundForward, ForwardListener, ListenError};
pub use stats::ForwardStats;
