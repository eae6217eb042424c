//! weir's runtime: the forward listener (TCP, TLS, UDP heartbeats, the shared-key handshake),
//! the ordered acks, the pipeline that routes each request to its outputs and waits for them to
//! accept it, and the outputs that live inside the process (`stdout`, `null`).
//!
//! Everything that touches a socket or a signal-driven lifecycle lives here; the protocol itself
//! is `weir-proto`, the config language is `weir-config`, tag patterns are `weir-route`.

pub mod app;
pub mod forward;
pub mod log_level;
pub mod monitor;
pub mod outputs;
pub mod pipeline;
pub mod supervisor;

pub use pipeline::{Accepted, Output, Pipeline, Refused};
