//! The Fluentd forward protocol v1 as weir speaks it: incremental framing of the byte stream,
//! the four request modes, event times, options, acks, the shared-key handshake, and an encoder
//! for every mode. Pure code, no I/O.
