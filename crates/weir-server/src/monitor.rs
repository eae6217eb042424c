//! What the admin endpoint shows about the running plugins: each plugin's id, category, type
//! and config (for `/api/plugins.json`), the counters weir keeps for them, and the Prometheus
//! families of `/metrics`.
//!
//! Counting happens in thin wrappers the plan puts around every output ([`Metered`]) and
//! filter ([`MeteredFilter`]), and in the pipeline handle of each source ([`SourceMetrics`]),
//! so no plugin has to know about metrics. Everything else (buffer sizes, forward listener
//! counters) is read when the endpoint is asked.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use weir_filter::{Filter, Filtered};
use weir_metrics::Counter;
use weir_proto::EventBatch;

use weir_metrics::{Encoder, Kind};

use crate::app::View;
use crate::forward::ForwardStats;
use crate::outputs::{BufferedOutput, WriteStats};
use crate::pipeline::{Accepted, Output, Router};

/// A plugin's identity as monitor_agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMeta {
    /// `@id`, or the id weir generated.
    pub id: String,
    /// `input`, `filter` or `output`.
    pub category: &'static str,
    /// `@type`.
    pub type_name: String,
    /// The directive's parameters as written (secrets masked), in file order.
    pub config: Vec<(String, String)>,
}

/// What a masked secret shows as.
const MASK: &str = "xxxxxx";

/// True for parameters whose values are secrets: they are shown as `xxxxxx`.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "shared_key",
        "sec_key",
        "key_id",
        "private_key",
        "passphrase",
        "webhook_url",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl PluginMeta {
    /// The identity of the plugin a directive defines.
    pub fn new(
        id: impl Into<String>,
        category: &'static str,
        type_name: impl Into<String>,
        el: &weir_config::Element,
    ) -> Self {
        PluginMeta {
            id: id.into(),
            category,
            type_name: type_name.into(),
            config: el
                .params
                .iter()
                .map(|p| {
                    let v = if is_secret(&p.key) {
                        MASK.to_string()
                    } else {
                        p.value.clone()
                    };
                    (p.key.clone(), v)
                })
                .collect(),
        }
    }

    /// The first fields of a `/api/plugins.json` entry.
    pub fn info(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("plugin_id".into(), json!(self.id));
        m.insert("plugin_category".into(), json!(self.category));
        m.insert("type".into(), json!(self.type_name));
        let config: Map<String, Value> = self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        m.insert("config".into(), Value::Object(config));
        m
    }
}

/// Fluentd's per-output emit counters.
#[derive(Debug, Default)]
pub struct EmitCounters {
    /// Emit calls (one per request or re-emitted batch).
    pub emit_count: Counter,
    /// Events given to the output.
    pub emit_records: Counter,
    /// Record bytes given to the output.
    pub emit_size: Counter,
}

impl EmitCounters {
    fn count(&self, events: &EventBatch) {
        self.emit_count.inc();
        self.emit_records.add(events.len() as u64);
        self.emit_size.add(events.byte_len() as u64);
    }
}

/// An output with its identity and emit counters around it.
pub struct Metered {
    meta: PluginMeta,
    inner: Arc<dyn Output>,
    counters: EmitCounters,
}

impl Metered {
    /// Wraps `inner`.
    pub fn new(meta: PluginMeta, inner: Arc<dyn Output>) -> Self {
        Metered {
            meta,
            inner,
            counters: EmitCounters::default(),
        }
    }

    /// The plugin's identity.
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    /// The emit counters.
    pub fn counters(&self) -> &EmitCounters {
        &self.counters
    }
}

impl Output for Metered {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
        self.counters.count(events);
        self.inner.emit(tag, events)
    }

    fn emit_routed(&self, tag: &str, events: &EventBatch, router: &Router<'_>) -> Accepted {
        self.counters.count(events);
        self.inner.emit_routed(tag, events, router)
    }

    fn flush(&self) {
        self.inner.flush();
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        self.inner.start()
    }

    fn begin_shutdown(&self) {
        self.inner.begin_shutdown();
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown()
    }

    fn shutdown_for_reload(&self) -> BoxFuture<'_, ()> {
        self.inner.shutdown_for_reload()
    }

    fn buffered(&self) -> Option<&BufferedOutput> {
        self.inner.buffered()
    }

    fn metered(&self) -> Option<&Metered> {
        Some(self)
    }
}

/// A filter with its identity and counters around it.
pub struct MeteredFilter {
    meta: PluginMeta,
    inner: Arc<dyn Filter>,
    counters: EmitCounters,
}

impl MeteredFilter {
    /// Wraps `inner`.
    pub fn new(meta: PluginMeta, inner: Arc<dyn Filter>) -> Self {
        MeteredFilter {
            meta,
            inner,
            counters: EmitCounters::default(),
        }
    }

    /// The plugin's identity.
    pub fn meta(&self) -> &PluginMeta {
        &self.meta
    }

    /// Events in (`emit_records`), as Fluentd counts them for filters.
    pub fn counters(&self) -> &EmitCounters {
        &self.counters
    }
}

impl Filter for MeteredFilter {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    fn filter(&self, tag: &str, events: EventBatch) -> Filtered {
        self.counters.count(&events);
        self.inner.filter(tag, events)
    }
}

/// How many dot-separated parts of a tag name its prefix in `weir_source_*` metrics.
pub const TAG_PREFIX_PARTS: usize = 2;
/// How many distinct tag prefixes a source counts separately; the rest count as `other`.
pub const MAX_TAG_PREFIXES: usize = 100;
/// The prefix label of tags past [`MAX_TAG_PREFIXES`].
pub const OTHER_PREFIX: &str = "other";
/// Longest prefix kept as it is; longer ones are cut (at a character boundary).
const MAX_PREFIX_LEN: usize = 64;

/// The first [`TAG_PREFIX_PARTS`] parts of a tag.
pub fn tag_prefix(tag: &str) -> &str {
    let end = tag
        .match_indices('.')
        .nth(TAG_PREFIX_PARTS - 1)
        .map_or(tag.len(), |(i, _)| i);
    let mut end = end.min(MAX_PREFIX_LEN);
    while !tag.is_char_boundary(end) {
        end -= 1;
    }
    &tag[..end]
}

#[derive(Debug, Default)]
struct PrefixCounters {
    events: Counter,
    bytes: Counter,
}

/// Events and bytes a source handed to the pipeline, per tag prefix, with a bounded number of
/// prefixes.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    prefixes: RwLock<HashMap<String, Arc<PrefixCounters>>>,
}

impl SourceMetrics {
    /// Counts one request's events.
    pub fn record(&self, tag: &str, events: u64, bytes: u64) {
        let prefix = tag_prefix(tag);
        let found = self
            .prefixes
            .read()
            .ok()
            .and_then(|m| m.get(prefix).cloned());
        let counters = match found {
            Some(c) => c,
            None => {
                let Ok(mut m) = self.prefixes.write() else {
                    return;
                };
                let key = if m.len() >= MAX_TAG_PREFIXES && !m.contains_key(prefix) {
                    OTHER_PREFIX
                } else {
                    prefix
                };
                Arc::clone(m.entry(key.to_string()).or_default())
            }
        };
        counters.events.add(events);
        counters.bytes.add(bytes);
    }

    /// (prefix, events, bytes), sorted by prefix.
    pub fn snapshot(&self) -> Vec<(String, u64, u64)> {
        let mut v: Vec<(String, u64, u64)> = self
            .prefixes
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, c)| (k.clone(), c.events.get(), c.bytes.get()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Every plugin as `/api/plugins.json` shows it: inputs, then filters, then outputs, each
/// with `config` and (for buffered outputs) `retry`.
pub fn plugins(view: &View) -> Vec<Map<String, Value>> {
    let mut list = Vec::new();
    for input in &view.inputs {
        let mut m = input.meta.info();
        let (records, size) = input
            .forward
            .as_ref()
            .map(|(_, sm)| {
                sm.snapshot()
                    .iter()
                    .fold((0, 0), |(r, b), (_, e, by)| (r + e, b + by))
            })
            .unwrap_or((0, 0));
        m.insert("output_plugin".into(), json!(false));
        m.insert("retry_count".into(), Value::Null);
        m.insert("emit_records".into(), json!(records));
        m.insert("emit_size".into(), json!(size));
        list.push(m);
    }
    for f in &view.filters {
        let mut m = f.meta().info();
        let c = f.counters();
        m.insert("output_plugin".into(), json!(false));
        m.insert("retry_count".into(), Value::Null);
        m.insert("emit_records".into(), json!(c.emit_records.get()));
        m.insert("emit_size".into(), json!(c.emit_size.get()));
        list.push(m);
    }
    for o in view.pipeline.outputs() {
        let Some(metered) = o.metered() else { continue };
        list.push(output_info(metered, o.buffered()));
    }
    list
}

fn output_info(metered: &Metered, buffered: Option<&BufferedOutput>) -> Map<String, Value> {
    let mut m = metered.meta().info();
    let c = metered.counters();
    m.insert("output_plugin".into(), json!(true));
    let usage = buffered.and_then(|b| b.buffer().map(|buf| (b, buf.usage(), buf.stats())));
    if let Some((_, u, st)) = &usage {
        m.insert("buffer_queue_length".into(), json!(u.queue_length));
        m.insert("buffer_timekeys".into(), json!(u.timekeys));
        m.insert("buffer_total_queued_size".into(), json!(st.total_bytes));
    }
    let ws = buffered.map(BufferedOutput::write_stats);
    let get = |f: fn(&WriteStats) -> &Counter| ws.map_or(0, |w| f(w).get());
    m.insert(
        "retry_count".into(),
        json!(get(|w: &WriteStats| &w.num_errors)),
    );
    m.insert("emit_records".into(), json!(c.emit_records.get()));
    m.insert("emit_size".into(), json!(c.emit_size.get()));
    m.insert("emit_count".into(), json!(c.emit_count.get()));
    m.insert(
        "write_count".into(),
        json!(get(|w: &WriteStats| &w.write_count)),
    );
    m.insert(
        "write_secondary_count".into(),
        json!(get(|w: &WriteStats| &w.write_secondary_count)),
    );
    m.insert(
        "rollback_count".into(),
        json!(get(|w: &WriteStats| &w.rollback_count)),
    );
    m.insert(
        "slow_flush_count".into(),
        json!(get(|w: &WriteStats| &w.slow_flush_count)),
    );
    m.insert(
        "flush_time_count".into(),
        json!(get(|w: &WriteStats| &w.flush_time_count)),
    );
    if let Some((b, u, st)) = &usage {
        m.insert("buffer_stage_length".into(), json!(u.stage_length));
        m.insert("buffer_stage_byte_size".into(), json!(u.stage_bytes));
        m.insert("buffer_queue_byte_size".into(), json!(u.queue_bytes));
        m.insert(
            "buffer_available_buffer_space_ratios".into(),
            json!(space_ratio(st.total_bytes, b.config().total_limit_size)),
        );
        if let (Some(old), Some(new)) = (u.timekeys.first(), u.timekeys.last()) {
            m.insert("buffer_oldest_timekey".into(), json!(old));
            m.insert("buffer_newest_timekey".into(), json!(new));
        }
    }
    if let Some(w) = ws {
        let retry = match w.retry() {
            Some(r) => json!({
                "start": ruby_time(r.start),
                "steps": r.steps,
                "next_time": ruby_time(r.next_time),
            }),
            None => json!({}),
        };
        m.insert("retry".into(), retry);
    }
    m
}

/// Percent of `total_limit_size` still free, to one decimal, as Fluentd shows it.
fn space_ratio(used: u64, limit: u64) -> f64 {
    if limit == 0 {
        return 0.0;
    }
    let free = 100.0 * (1.0 - used as f64 / limit as f64);
    (free.clamp(0.0, 100.0) * 10.0).round() / 10.0
}

/// A time as Ruby's `Time#to_s` writes it (what monitor_agent's JSON shows).
fn ruby_time(unix: f64) -> String {
    let secs = unix.floor() as i64;
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        })
        .unwrap_or_default()
}

/// Counters that outlive one config: the process and its reloads.
#[derive(Debug, Default)]
pub struct ProcessMetrics {
    /// Reloads that put a new config in place.
    pub reloads_ok: Counter,
    /// Reloads that failed (the previous config kept running).
    pub reloads_failed: Counter,
    /// Unix seconds of the last successful reload (or the start).
    pub last_config_load: std::sync::atomic::AtomicU64,
    /// Unix seconds when the process started.
    pub started: std::sync::atomic::AtomicU64,
}

fn plugin_labels(m: &PluginMeta) -> [(&'static str, &str); 2] {
    [("plugin_id", m.id.as_str()), ("type", m.type_name.as_str())]
}

/// Writes every metric family: fluent-plugin-prometheus's `fluentd_output_status_*` for each
/// output (labelled `plugin_id` and `type`), then weir's own `weir_*`.
pub fn render_metrics(view: &View, process: &ProcessMetrics, healthy: bool, out: &mut String) {
    use std::sync::atomic::Ordering;
    let mut enc = Encoder::new(out);
    let outputs: Vec<(&Metered, Option<&BufferedOutput>)> = view
        .pipeline
        .outputs()
        .iter()
        .filter_map(|o| o.metered().map(|m| (m, o.buffered())))
        .collect();
    let buffered: Vec<(&Metered, &BufferedOutput, &weir_store::Buffer)> = outputs
        .iter()
        .filter_map(|(m, b)| b.and_then(|b| b.buffer().map(|buf| (*m, b, buf))))
        .collect();
    let usages: Vec<_> = buffered
        .iter()
        .map(|(m, b, buf)| (*m, *b, *buf, buf.usage(), buf.stats()))
        .collect();

    // fluent-plugin-prometheus's buffer gauges.
    type UsageFn = fn(&weir_store::BufferUsage, &weir_store::BufferStats, &BufferedOutput) -> f64;
    let buffer_families: [(&str, &str, UsageFn); 6] = [
        (
            "fluentd_output_status_buffer_total_bytes",
            "Current total size of stage and queue buffers.",
            |_, st, _| st.total_bytes as f64,
        ),
        (
            "fluentd_output_status_buffer_stage_length",
            "Current length of stage buffers.",
            |u, _, _| u.stage_length as f64,
        ),
        (
            "fluentd_output_status_buffer_stage_byte_size",
            "Current total size of stage buffers.",
            |u, _, _| u.stage_bytes as f64,
        ),
        (
            "fluentd_output_status_buffer_queue_length",
            "Current length of queue buffers.",
            |u, _, _| u.queue_length as f64,
        ),
        (
            "fluentd_output_status_buffer_queue_byte_size",
            "Current total size of queue buffers.",
            |u, _, _| u.queue_bytes as f64,
        ),
        (
            "fluentd_output_status_buffer_available_space_ratio",
            "Ratio of available space in buffer.",
            |_, st, b| space_ratio(st.total_bytes, b.config().total_limit_size),
        ),
    ];
    for (name, help, f) in buffer_families {
        enc.family(name, help, Kind::Gauge);
        for (m, b, _, u, st) in &usages {
            enc.sample(name, &plugin_labels(m.meta()), f(u, st, b));
        }
    }
    for (name, help, pick) in [
        (
            "fluentd_output_status_buffer_oldest_timekey",
            "Oldest timekey in buffer.",
            true,
        ),
        (
            "fluentd_output_status_buffer_newest_timekey",
            "Newest timekey in buffer.",
            false,
        ),
    ] {
        enc.family(name, help, Kind::Gauge);
        for (m, _, _, u, _) in &usages {
            let tk = if pick {
                u.timekeys.first()
            } else {
                u.timekeys.last()
            };
            if let Some(tk) = tk {
                enc.sample(name, &plugin_labels(m.meta()), *tk as f64);
            }
        }
    }
    // fluent-plugin-prometheus's output gauges (it reports these counts as gauges).
    type OutFn = fn(&EmitCounters, Option<&WriteStats>) -> f64;
    let output_families: [(&str, &str, OutFn); 9] = [
        (
            "fluentd_output_status_retry_count",
            "Current retry counts.",
            |_, w| w.map_or(0.0, |w| w.num_errors.get() as f64),
        ),
        (
            "fluentd_output_status_num_errors",
            "Current number of errors.",
            |_, w| w.map_or(0.0, |w| w.num_errors.get() as f64),
        ),
        (
            "fluentd_output_status_emit_count",
            "Current emit counts.",
            |c, _| c.emit_count.get() as f64,
        ),
        (
            "fluentd_output_status_emit_records",
            "Current emit records.",
            |c, _| c.emit_records.get() as f64,
        ),
        (
            "fluentd_output_status_write_count",
            "Current write counts.",
            |_, w| w.map_or(0.0, |w| w.write_count.get() as f64),
        ),
        (
            "fluentd_output_status_rollback_count",
            "Current rollback counts.",
            |_, w| w.map_or(0.0, |w| w.rollback_count.get() as f64),
        ),
        (
            "fluentd_output_status_flush_time_count",
            "Total flush time.",
            |_, w| w.map_or(0.0, |w| w.flush_time_count.get() as f64),
        ),
        (
            "fluentd_output_status_slow_flush_count",
            "Current slow flush counts.",
            |_, w| w.map_or(0.0, |w| w.slow_flush_count.get() as f64),
        ),
        (
            "fluentd_output_status_retry_wait",
            "Current retry wait",
            |_, w| {
                w.and_then(WriteStats::retry)
                    .map_or(0.0, |r| r.next_time - r.start)
            },
        ),
    ];
    for (name, help, f) in output_families {
        enc.family(name, help, Kind::Gauge);
        for (m, b) in &outputs {
            let ws = b.map(BufferedOutput::write_stats);
            enc.sample(name, &plugin_labels(m.meta()), f(m.counters(), ws));
        }
    }

    // weir's own: sources.
    let forwards: Vec<(&PluginMeta, &Arc<ForwardStats>, &Arc<SourceMetrics>)> = view
        .inputs
        .iter()
        .filter_map(|i| i.forward.as_ref().map(|(st, sm)| (&i.meta, st, sm)))
        .collect();
    let snapshots: Vec<_> = forwards
        .iter()
        .map(|(m, _, sm)| (*m, sm.snapshot()))
        .collect();
    for (name, help, bytes) in [
        ("weir_source_events_total", "Events a source handed to the pipeline, by the first two parts of their tag (at most 100 prefixes per source; the rest count as 'other').", false),
        ("weir_source_bytes_total", "Record bytes a source handed to the pipeline, by tag prefix.", true),
    ] {
        enc.family(name, help, Kind::Counter);
        for (m, snap) in &snapshots {
            for (prefix, events, b) in snap {
                let v = if bytes { *b } else { *events };
                enc.sample(name, &[("source", m.id.as_str()), ("tag_prefix", prefix.as_str())], v as f64);
            }
        }
    }
    type FwdFn = fn(&ForwardStats) -> &std::sync::atomic::AtomicU64;
    let forward_families: [(&str, &str, Kind, FwdFn); 10] = [
        ("weir_forward_connections_open", "Forward connections open now.", Kind::Gauge, |s| &s.connections_open),
        ("weir_forward_connections_total", "Forward connections accepted.", Kind::Counter, |s| &s.connections_total),
        ("weir_forward_requests_total", "Forward requests decoded.", Kind::Counter, |s| &s.requests),
        ("weir_forward_request_bytes_total", "Bytes of forward requests decoded.", Kind::Counter, |s| &s.bytes),
        ("weir_forward_acks_sent_total", "Acks sent (the events were stored).", Kind::Counter, |s| &s.acks_sent),
        ("weir_forward_acks_refused_total", "Requests refused without an ack (buffer full, disk full, shutting down); the connection was closed.", Kind::Counter, |s| &s.refused),
        ("weir_forward_handshake_failures_total", "Shared-key or TLS handshakes that failed.", Kind::Counter, |s| &s.handshake_failures),
        ("weir_forward_protocol_errors_total", "Connections closed for malformed or oversized input.", Kind::Counter, |s| &s.protocol_errors),
        ("weir_forward_invalid_events_total", "Events skipped as invalid (skip_invalid_event).", Kind::Counter, |s| &s.invalid_events),
        ("weir_forward_heartbeats_total", "UDP heartbeats answered.", Kind::Counter, |s| &s.heartbeats),
    ];
    for (name, help, kind, f) in forward_families {
        enc.family(name, help, kind);
        for (m, st, _) in &forwards {
            enc.sample(
                name,
                &[("source", m.id.as_str())],
                ForwardStats::get(f(st)) as f64,
            );
        }
    }

    // Buffers.
    enc.family(
        "weir_buffer_commit_duration_seconds",
        "Time to write and fdatasync one chunk file in a group commit (the wait before an ack).",
        Kind::Histogram,
    );
    for (m, _, buf, _, _) in &usages {
        enc.histogram(
            "weir_buffer_commit_duration_seconds",
            &[("plugin_id", m.meta().id.as_str())],
            &buf.commit_latency().snapshot(),
        );
    }
    enc.family(
        "weir_buffer_bytes",
        "Bytes held in the chunk store, as counted against total_limit_size.",
        Kind::Gauge,
    );
    for (m, _, _, _, st) in &usages {
        enc.sample(
            "weir_buffer_bytes",
            &[("plugin_id", m.meta().id.as_str())],
            st.total_bytes as f64,
        );
    }
    enc.family(
        "weir_buffer_chunks",
        "Chunks in the buffer, by state.",
        Kind::Gauge,
    );
    for (m, _, _, _, st) in &usages {
        for (state, n) in [
            ("staged", st.staged_chunks),
            ("queued", st.queued_chunks),
            ("in_flight", st.in_flight_chunks),
        ] {
            enc.sample(
                "weir_buffer_chunks",
                &[("plugin_id", m.meta().id.as_str()), ("state", state)],
                n as f64,
            );
        }
    }
    enc.family(
        "weir_buffer_oldest_chunk_age_seconds",
        "Age of the oldest staged or queued chunk (0 when the buffer is empty).",
        Kind::Gauge,
    );
    for (m, _, _, u, _) in &usages {
        enc.sample(
            "weir_buffer_oldest_chunk_age_seconds",
            &[("plugin_id", m.meta().id.as_str())],
            u.oldest_age.unwrap_or(0.0),
        );
    }
    enc.family(
        "weir_buffer_fsyncs_total",
        "fdatasync calls on chunk files.",
        Kind::Counter,
    );
    for (m, _, _, _, st) in &usages {
        enc.sample(
            "weir_buffer_fsyncs_total",
            &[("plugin_id", m.meta().id.as_str())],
            st.fsyncs as f64,
        );
    }

    // Outputs' chunk writes.
    enc.family("weir_output_write_duration_seconds", "Time to deliver one chunk (file written and fsync'd, object uploaded), failed tries included.", Kind::Histogram);
    for (m, b, _) in &buffered {
        enc.histogram(
            "weir_output_write_duration_seconds",
            &plugin_labels(m.meta()),
            &b.write_stats().latency.snapshot(),
        );
    }
    type WsFn = fn(&WriteStats) -> &Counter;
    let write_families: [(&str, &str, WsFn); 3] = [
        ("weir_output_writes_total", "Chunk writes tried.", |w| {
            &w.write_count
        }),
        (
            "weir_output_write_errors_total",
            "Chunk writes that failed (for an S3 output: failed uploads).",
            |w| &w.num_errors,
        ),
        (
            "weir_output_retries_total",
            "Chunks put back to be retried after a failed write.",
            |w| &w.rollback_count,
        ),
    ];
    for (name, help, f) in write_families {
        enc.family(name, help, Kind::Counter);
        for (m, b, _) in &buffered {
            enc.sample(
                name,
                &plugin_labels(m.meta()),
                f(b.write_stats()).get() as f64,
            );
        }
    }
    enc.family(
        "weir_output_emit_records_total",
        "Events given to each output.",
        Kind::Counter,
    );
    for (m, _) in &outputs {
        enc.sample(
            "weir_output_emit_records_total",
            &plugin_labels(m.meta()),
            m.counters().emit_records.get() as f64,
        );
    }

    // The pipeline and the process.
    let p = &view.pipeline;
    for (name, help, v) in [
        (
            "weir_pipeline_unmatched_events_total",
            "Events dropped because no <match> fitted their tag.",
            p.unmatched_events(),
        ),
        (
            "weir_pipeline_loop_dropped_events_total",
            "Events dropped because they were re-emitted too many times.",
            p.loop_dropped_events(),
        ),
        (
            "weir_pipeline_error_events_total",
            "Records filters could not process (sent to @ERROR or logged).",
            p.error_events(),
        ),
        (
            "weir_config_reloads_total",
            "Config reloads that put a new config in place.",
            process.reloads_ok.get(),
        ),
        (
            "weir_config_reload_failures_total",
            "Config reloads that failed; the previous config kept running.",
            process.reloads_failed.get(),
        ),
    ] {
        enc.family(name, help, Kind::Counter);
        enc.sample(name, &[], v as f64);
    }
    enc.family(
        "weir_config_last_load_timestamp_seconds",
        "When the running config was loaded (start or last successful reload).",
        Kind::Gauge,
    );
    enc.sample(
        "weir_config_last_load_timestamp_seconds",
        &[],
        process.last_config_load.load(Ordering::Relaxed) as f64,
    );
    enc.family(
        "weir_process_start_time_seconds",
        "When weir started (Unix seconds).",
        Kind::Gauge,
    );
    enc.sample(
        "weir_process_start_time_seconds",
        &[],
        process.started.load(Ordering::Relaxed) as f64,
    );
    enc.family(
        "weir_healthy",
        "1 when /healthz answers 200, 0 when it answers 503.",
        Kind::Gauge,
    );
    enc.sample("weir_healthy", &[], if healthy { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_are_the_first_two_parts() {
        assert_eq!(tag_prefix("app.web.access"), "app.web");
        assert_eq!(tag_prefix("app.web"), "app.web");
        assert_eq!(tag_prefix("app"), "app");
        assert_eq!(tag_prefix(""), "");
    }

    #[test]
    fn prefixes_past_the_cap_count_as_other() {
        let m = SourceMetrics::default();
        for i in 0..MAX_TAG_PREFIXES + 5 {
            m.record(&format!("t{i}.x.y"), 2, 10);
        }
        m.record("t0.x.z", 1, 1);
        let snap = m.snapshot();
        assert_eq!(snap.len(), MAX_TAG_PREFIXES + 1);
        let other = snap.iter().find(|s| s.0 == OTHER_PREFIX).unwrap();
        assert_eq!((other.1, other.2), (10, 50));
        let t0 = snap.iter().find(|s| s.0 == "t0.x").unwrap();
        assert_eq!((t0.1, t0.2), (3, 11));
    }

    #[test]
    fn secrets_are_masked() {
        let el = weir_config::parse_str(
            "<match x>\n  @type s3\n  aws_sec_key abc\n  s3_bucket b\n</match>\n",
            "t.conf",
            std::path::Path::new("."),
        )
        .unwrap();
        let m = PluginMeta::new("o", "output", "s3", &el.elements[0]);
        assert_eq!(
            m.config,
            vec![
                ("@type".to_string(), "s3".to_string()),
                ("aws_sec_key".to_string(), MASK.to_string()),
                ("s3_bucket".to_string(), "b".to_string()),
            ]
        );
    }

    proptest! {
        #[test]
        fn a_prefix_is_a_short_prefix_of_the_tag(tag in "\\PC{0,100}") {
            let p = tag_prefix(&tag);
            prop_assert!(tag.starts_with(p));
            prop_assert!(p.len() <= MAX_PREFIX_LEN);
            prop_assert!(p.matches('.').count() < TAG_PREFIX_PARTS);
        }
    }
}
