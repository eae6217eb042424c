//! The HTTP client: hyper 1 over rustls with ring (the TLS stack the rest of weir uses), the
//! system's roots plus `tls_ca_cert_path`, HTTP/1.1, one request bounded by `http_timeout`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::WebhookError;
use crate::limiter::parse_retry_after;

/// How much of an answer's body is kept for the log (Slack answers `ok` or an error word).
const BODY_KEEP: usize = 512;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `Retry-After`, in seconds, when present and readable.
    pub retry_after: Option<Duration>,
    /// The start of the body, as text.
    pub body: String,
}

/// An HTTPS (or plain HTTP) client for one webhook.
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// The TLS settings: system roots plus the PEM certificates in `extra_ca`, or no
/// verification at all.
pub fn tls_config(
    verify: bool,
    extra_ca: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, WebhookError> {
    let builder = weir_tls::client_builder().map_err(|e| WebhookError::Tls(e.to_string()))?;
    if !verify {
        return Ok(weir_tls::accept_any_server_cert(builder).with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as the system's own tools do.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path)
            .map_err(|e| WebhookError::Tls(format!("reading {}: {e}", path.display())))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| WebhookError::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| WebhookError::Tls(format!("{}: {e}", path.display())))?;
            found += 1;
        }
        if found == 0 {
            return Err(WebhookError::Tls(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

impl HttpClient {
    /// A client with these TLS settings; `timeout` bounds each request.
    pub fn new(tls: rustls::ClientConfig, timeout: Duration) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient { client, timeout }
    }

    /// POSTs `body` as JSON to `url` and reads the answer. The error text never holds the
    /// URL (it is a secret).
    pub async fn post_json(&self, url: &http::Uri, body: Vec<u8>) -> Result<Answer, String> {
        let req = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("weir/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| chain(&e))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            // The body is read (so the connection can be reused) but only its start is kept.
            let collected = Limited::new(resp.into_body(), 64 * 1024).collect().await;
            let body = match collected {
                Ok(c) => {
                    let b = c.to_bytes();
                    let keep = &b[..b.len().min(BODY_KEEP)];
                    String::from_utf8_lossy(keep).into_owned()
                }
                Err(_) => String::new(),
            };
            Ok::<Answer, String>(Answer {
                status,
                retry_after,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer within http_timeout ({}s)",
                self.timeout.as_secs_f64()
            )),
        }
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
