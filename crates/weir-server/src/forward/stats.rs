//! Counters the forward listener keeps; the admin API and the logs read them.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one forward source has seen since start. All counters only grow, except
/// `connections_open`.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Requests decoded (each Message, Forward or PackedForward array).
    pub requests: AtomicU64,
    /// Events handed to the pipeline.
    pub events: AtomicU64,
    /// Bytes of requests decoded.
    pub bytes: AtomicU64,
    /// Acks written.
    pub acks_sent: AtomicU64,
    /// Requests the pipeline refused (no ack; the connection was closed).
    pub refused: AtomicU64,
    /// Events skipped as invalid (`skip_invalid_event`).
    pub invalid_events: AtomicU64,
    /// Requests carrying metrics or traces (`fluent_signal` 1 or 2), acknowledged and dropped.
    pub signal_requests_dropped: AtomicU64,
    /// Connections closed because of malformed or oversized input.
    pub protocol_errors: AtomicU64,
    /// Handshakes that failed (bad key, bad user, denied host, timeout).
    pub handshake_failures: AtomicU64,
    /// UDP heartbeats answered.
    pub heartbeats: AtomicU64,
}

impl ForwardStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
