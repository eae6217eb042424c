//! The webhook output as a [`ChunkSink`]: a chunk's events become one or more Slack
//! messages, posted in order, at most `rate_limit_per_minute` a minute.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use futures::future::BoxFuture;
use weir_proto::EventTime;
use weir_store::{blocking, ChunkRef, ChunkSink, WriteError};

use crate::client::{tls_config, HttpClient};
use crate::config::WebhookConfig;
use crate::error::WebhookError;
use crate::limiter::RateLimiter;
use crate::payload::Batcher;
use crate::template::Context;

/// Chunk metadata key: how many of the chunk's messages were delivered, so that a retry (also
/// after a restart, with a file buffer) sends only the rest.
pub const META_SENT: &str = "webhook.sent";

/// The `@type webhook` output.
pub struct WebhookOutput {
    cfg: WebhookConfig,
    client: HttpClient,
    limiter: Mutex<RateLimiter>,
    hostname: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WebhookOutput {
    /// Builds the output: the TLS settings are read now (a bad `tls_ca_cert_path` is an
    /// error); nothing is sent until a chunk is written.
    pub fn new(cfg: WebhookConfig) -> Result<Self, WebhookError> {
        let tls = tls_config(cfg.tls_verify, cfg.tls_ca_cert_path.as_deref())?;
        if !cfg.tls_verify {
            tracing::warn!(
                url = %cfg.redacted_url(),
                "tls_verify_mode none: the webhook server's certificate is not checked"
            );
        }
        let client = HttpClient::new(tls, cfg.http_timeout);
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(WebhookOutput {
            limiter: Mutex::new(RateLimiter::new(cfg.rate_limit_per_minute)),
            cfg,
            client,
            hostname,
        })
    }

    /// The message texts for a chunk's events: one line per event (an event whose line is
    /// empty is left out), cut to fit `max_message_length` and `max_records_per_message`.
    pub fn messages<'a>(
        &self,
        tag: &str,
        events: impl Iterator<Item = (EventTime, &'a [u8])>,
    ) -> Vec<String> {
        let ctx = Context {
            tag,
            time_format: &self.cfg.time_format,
            hostname: &self.hostname,
            escape: self.cfg.escape,
        };
        let mut batcher = Batcher::new(
            self.cfg.max_message_length,
            self.cfg.max_records_per_message,
        );
        let mut out = Vec::new();
        let mut line = String::new();
        for (time, record) in events {
            line.clear();
            self.cfg.template.render(&ctx, time, record, &mut line);
            if line.trim().is_empty() {
                continue;
            }
            out.extend(batcher.push(&line));
        }
        out.extend(batcher.finish());
        out
    }

    /// Records that the first `sent` messages of the chunk were delivered.
    fn save_progress(chunk: &ChunkRef, sent: usize) {
        if let Err(e) = blocking(|| chunk.set_metadata(META_SENT, &sent.to_string())) {
            tracing::warn!(
                chunk_id = %chunk.id(),
                "could not record webhook progress ({sent} message(s) sent): a retry may repeat them: {e}"
            );
        }
    }

    /// Waits for the rate limit and takes a slot, or says why the chunk must wait in the
    /// buffer instead (the wait would not fit in the write's time budget).
    async fn take_slot(&self, started: Instant) -> Result<(), String> {
        loop {
            let now = Instant::now();
            let at = {
                let mut l = lock(&self.limiter);
                let at = l.next_free(now);
                if at <= now {
                    l.record(now);
                }
                at
            };
            if at <= now {
                return Ok(());
            }
            let wait = at - now;
            if started.elapsed() + wait + self.cfg.http_timeout >= self.cfg.write_budget {
                return Err(format!(
                    "rate limit: the next message may be sent in {:.1}s (rate_limit_per_minute {}, or a Retry-After); the chunk waits in the buffer",
                    wait.as_secs_f64(),
                    self.cfg.rate_limit_per_minute
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn deliver(&self, chunk: &ChunkRef) -> Result<(), WriteError> {
        let started = Instant::now();
        let tag = chunk.key().tag.clone().unwrap_or_default();
        let msgs = self.messages(&tag, chunk.events());
        let done: usize = chunk
            .metadata(META_SENT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let url = self.cfg.redacted_url();
        for (i, text) in msgs.iter().enumerate().skip(done) {
            let progress = format!("message {} of {}", i + 1, msgs.len());
            self.take_slot(started)
                .await
                .map_err(|m| WriteError::Retryable(format!("{m} ({progress} is next)")))?;
            let answer = self
                .client
                .post_json(&self.cfg.url, self.cfg.style.body(text))
                .await
                .map_err(|e| {
                    WriteError::Retryable(format!("posting to {url} ({progress}): {e}"))
                })?;
            match answer.status {
                200..=299 => {
                    if i + 1 < msgs.len() {
                        Self::save_progress(chunk, i + 1);
                    }
                }
                429 => {
                    let wait = answer.retry_after;
                    if let Some(w) = wait {
                        lock(&self.limiter).block_until(Instant::now() + w);
                    }
                    return Err(WriteError::Retryable(format!(
                        "{url} answered 429 Too Many Requests ({progress}){}",
                        wait.map_or(String::new(), |w| format!(
                            "; nothing is sent for the {}s its Retry-After asks",
                            w.as_secs()
                        ))
                    )));
                }
                status => {
                    return Err(WriteError::Retryable(format!(
                        "{url} answered {status} ({progress}): {}",
                        answer.body.trim()
                    )))
                }
            }
        }
        Ok(())
    }
}

impl ChunkSink for WebhookOutput {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(self.deliver(chunk))
    }
}
