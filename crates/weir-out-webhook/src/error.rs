//! Errors of the webhook output.

/// Why the webhook output could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The TLS settings could not be built (an unreadable `tls_ca_cert_path`).
    #[error("TLS: {0}")]
    Tls(String),
}
