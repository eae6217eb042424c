//! `weir-out-webhook` owns the `@type webhook` output: events posted to a Slack-compatible
//! incoming webhook as chat messages, for alerts. It reads its configuration (with
//! fluent-plugin-slack's parameter names where they exist), turns each event into a line of
//! text with a template ([`template`]), cuts a chunk's lines into messages within Slack's
//! limits ([`payload`]), keeps to a rate limit and to `Retry-After` ([`limiter`]), and posts
//! over HTTPS as a [`weir_store::ChunkSink`], so retries, `<secondary>` and `failed/` are the
//! buffer's, as for every buffered output.
//!
//! It does not own the buffer (`weir-store`) or the time formatting (`weir-format`).
//!
//! # Delivery
//!
//! A chunk is delivered when every one of its messages got a 2xx answer. Any other answer, a
//! timeout or a connection error fails the write and the buffer retries the chunk on its
//! schedule. When a chunk needs several messages, the number already delivered is recorded in
//! the chunk's metadata after each one, so a retry (after a restart too, with a file buffer)
//! sends only the rest: a message is repeated only if weir stopped between Slack's answer and
//! that record. The webhook URL is a secret and never appears in logs or errors; they show
//! `scheme://host/…`.
//!
//! See `docs/outputs.md` ("Webhook output") and `docs/operations.md` ("Alerts").

#![warn(missing_docs)]

mod client;
mod config;
mod error;
pub mod limiter;
mod output;
pub mod payload;
pub mod template;

pub use client::{tls_config, Answer, HttpClient};
pub use config::{
    redact, WebhookConfig, DEFAULT_MAX_MESSAGE_LENGTH, DEFAULT_RATE_LIMIT_PER_MINUTE,
    SLACK_MAX_TEXT,
};
pub use error::WebhookError;
pub use output::{WebhookOutput, META_SENT};
