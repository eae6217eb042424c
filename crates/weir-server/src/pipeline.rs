//! The pipeline between the listeners and the outputs.
//!
//! A listener hands each decoded request to [`Pipeline::emit`]. The pipeline is a set of
//! labels, each an ordered list of `<filter>` and `<match>` directives, as in Fluentd: the root
//! (`@ROOT`, the directives outside any `<label>`), one per `<label @NAME>`, and `@ERROR`, which
//! receives the records filters could not process. A source starts its events at the root or at
//! the label its `@label` names.
//!
//! Within a label, an event's route is every `<filter>` whose pattern fits its tag and that comes
//! before the first `<match>` that fits, then that `<match>`'s output. The route is compiled once
//! per tag and cached, so the cost per event does not grow with the number of directives.
//!
//! The output answers with an [`Accepted`]: at once, or later, when the events are where it
//! promised to keep them. Outputs that send events on (`relabel`, `rewrite_tag_filter`, `copy`)
//! emit through the [`Router`] they are given and combine the answers, so a forwarder's ack waits
//! for every output its events reach. A re-emit chain deeper than [`MAX_REEMIT_DEPTH`] is a
//! routing loop: those events are dropped, counted and logged once per tag.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::oneshot;
use weir_filter::{ErrorEvent, Filter};
use weir_proto::{EventBatch, EventTime};
use weir_route::{PatternSet, TagCache, DEFAULT_CACHE_CAPACITY};

/// Why an output did not accept events. The forwarder gets no ack for them and sends them again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The output's buffer has no room (its overflow action is to refuse).
    #[error("buffer full: {0}")]
    BufferFull(String),
    /// Storing the events failed (a full disk, an I/O error).
    #[error("could not store events: {0}")]
    Storage(String),
    /// The output could not write the events.
    #[error("output failed: {0}")]
    Output(String),
    /// weir is shutting down and takes no new events.
    #[error("shutting down")]
    ShuttingDown,
}

/// An output's answer to an emit: now, or once the events are safe.
#[must_use = "the ack must wait for this answer"]
pub enum Accepted {
    /// The answer is known already.
    Now(Result<(), Refused>),
    /// The answer comes when the output has committed the events.
    Later(oneshot::Receiver<Result<(), Refused>>),
    /// Every one of several outputs (a `copy`, a re-emit to several tags) must accept.
    All(Vec<Accepted>),
    /// A `copy` store with `ignore_error`: a refusal is logged under this store id and counts as
    /// accepted.
    IgnoreError(Box<Accepted>, String),
    /// The answer comes when this future finishes (a buffered output's group commit).
    Pending(BoxFuture<'static, Result<(), Refused>>),
}

impl Accepted {
    /// Accepted at once.
    pub fn ok() -> Self {
        Accepted::Now(Ok(()))
    }

    /// Combines several answers into one that waits for all of them.
    pub fn all(mut parts: Vec<Accepted>) -> Self {
        if parts.len() == 1 {
            if let Some(only) = parts.pop() {
                return only;
            }
        }
        Accepted::All(parts)
    }

    /// Waits for the answer. An output that went away without answering counts as a refusal.
    pub async fn wait(self) -> Result<(), Refused> {
        match self {
            Accepted::Now(result) => result,
            Accepted::Later(rx) => rx.await.unwrap_or_else(|_| {
                Err(Refused::Output(
                    "the output stopped before committing".into(),
                ))
            }),
            Accepted::All(parts) => {
                // Every part must finish anyway, so waiting in order costs nothing extra.
                let mut first_err = None;
                for part in parts {
                    if let Err(e) = Box::pin(part.wait()).await {
                        first_err.get_or_insert(e);
                    }
                }
                first_err.map_or(Ok(()), Err)
            }
            Accepted::Pending(fut) => fut.await,
            Accepted::IgnoreError(inner, store) => {
                if let Err(e) = Box::pin(inner.wait()).await {
                    tracing::warn!(store = %store, error = %e, "ignore_error: a copy store refused events");
                }
                Ok(())
            }
        }
    }
}

/// Something events can be given to: an output plugin.
pub trait Output: Send + Sync + 'static {
    /// The plugin's id (`@id`) or a generated one, for logs and metrics.
    fn id(&self) -> &str;

    /// Takes the events of one request. Must not block: a slow output answers `Later`.
    fn emit(&self, tag: &str, events: &EventBatch) -> Accepted;

    /// Takes events from the pipeline, with the [`Router`] to send events on through. Outputs
    /// that re-emit (`relabel`, `rewrite_tag_filter`) and that contain other outputs (`copy`)
    /// implement this; the default calls [`Output::emit`].
    fn emit_routed(&self, tag: &str, events: &EventBatch, router: &Router<'_>) -> Accepted {
        let _ = router;
        self.emit(tag, events)
    }

    /// Writes out whatever the output holds back (SIGUSR1, shutdown). Outputs that hold nothing
    /// back do nothing.
    fn flush(&self) {}

    /// Gets the output ready before any source listens: a buffered output opens its buffer
    /// (recovering what an earlier run left) and starts delivering. `weir check` never calls
    /// this, so checking a config touches no buffer and no remote service.
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Called as soon as weir starts shutting down, before the sources drain: an output that
    /// holds requests back (a full buffer with `overflow_action block`) stops waiting for room
    /// so those connections can be answered and closed.
    fn begin_shutdown(&self) {}

    /// Stops the output after every source has stopped: a buffered output flushes if its
    /// `flush_at_shutdown` says so, and keeps on disk what it could not deliver.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Stops the output for a config reload, after every source of the old config has
    /// stopped: like [`Output::shutdown`], except that a file buffer keeps its chunks on disk
    /// (the new config's output recovers them) instead of flushing them.
    fn shutdown_for_reload(&self) -> BoxFuture<'_, ()> {
        self.shutdown()
    }

    /// The buffered output this is (or wraps), for the admin API's buffer counters and the
    /// health check.
    fn buffered(&self) -> Option<&crate::outputs::BufferedOutput> {
        None
    }

    /// The identity and emit counters the plan wrapped around this output.
    fn metered(&self) -> Option<&crate::monitor::Metered> {
        None
    }
}

/// How many times events may be re-emitted (by `relabel` or `rewrite_tag_filter`) on their way
/// from a source. Fluentd has no limit and loops until its stack overflows; weir drops the
/// events of a deeper chain, counts them and logs the tag once.
pub const MAX_REEMIT_DEPTH: u32 = 32;

/// How many distinct tags are remembered for the once-per-tag warnings.
const WARNED_TAGS_REMEMBERED: usize = 4096;

/// A label's index in the pipeline.
pub type LabelId = usize;

/// One `<filter>` or `<match>` directive in a label.
pub enum Step {
    /// A `<filter>`.
    Filter(Arc<dyn Filter>),
    /// A `<match>`.
    Match(Arc<dyn Output>),
}

/// A label: its name and its directives in file order.
pub struct Label {
    name: String,
    steps: Vec<(PatternSet, Step)>,
    cache: TagCache<Arc<Route>>,
}

impl Label {
    /// A label named `name` (`@ROOT` for the top level) with its directives in file order.
    pub fn new(name: impl Into<String>, steps: Vec<(PatternSet, Step)>) -> Self {
        Label {
            name: name.into(),
            steps,
            cache: TagCache::new(DEFAULT_CACHE_CAPACITY),
        }
    }

    /// The compiled route for a tag.
    fn route(&self, tag: &str) -> Arc<Route> {
        self.cache.get_or_insert_with(tag, || {
            let mut filters = Vec::new();
            for (patterns, step) in &self.steps {
                if !patterns.matches(tag) {
                    continue;
                }
                match step {
                    Step::Filter(f) => filters.push(Arc::clone(f)),
                    Step::Match(o) => {
                        return Arc::new(Route {
                            filters,
                            output: Some(Arc::clone(o)),
                        })
                    }
                }
            }
            // Fluentd runs no filter for a tag that no <match> takes.
            Arc::new(Route {
                filters: Vec::new(),
                output: None,
            })
        })
    }
}

/// A tag's compiled route within one label.
struct Route {
    filters: Vec<Arc<dyn Filter>>,
    output: Option<Arc<dyn Output>>,
}

/// Counters and once-per-tag warnings.
#[derive(Default)]
struct Counters {
    unmatched_events: AtomicU64,
    loop_dropped_events: AtomicU64,
    error_events: AtomicU64,
    warned: Mutex<HashSet<(u8, String)>>,
}

impl Counters {
    /// True the first time `(kind, tag)` is seen, up to a bound.
    fn first(&self, kind: u8, tag: &str) -> bool {
        match self.warned.lock() {
            Ok(mut seen) if seen.len() < WARNED_TAGS_REMEMBERED => {
                seen.insert((kind, tag.to_string()))
            }
            _ => false,
        }
    }
}

/// Every label and the shared counters.
struct Labels {
    labels: Vec<Label>,
    error: Option<LabelId>,
    counters: Counters,
}

/// The handle re-emitting outputs send events through: the labels, and how deep in a re-emit
/// chain the current events are.
pub struct Router<'a> {
    labels: &'a Labels,
    depth: u32,
}

impl Router<'_> {
    /// Re-emits events under `tag` into `label`, one level deeper. Past [`MAX_REEMIT_DEPTH`]
    /// the events are dropped (and counted as accepted: sending them again would loop again).
    pub fn emit(&self, label: LabelId, tag: &str, events: &EventBatch) -> Accepted {
        if self.depth >= MAX_REEMIT_DEPTH {
            self.labels
                .counters
                .loop_dropped_events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            if self.labels.counters.first(1, tag) {
                tracing::error!(
                    tag,
                    depth = MAX_REEMIT_DEPTH,
                    "events re-emitted too many times (a relabel/rewrite_tag_filter loop?); dropped"
                );
            }
            return Accepted::ok();
        }
        self.labels.emit(label, tag, events, self.depth + 1)
    }
}

impl Labels {
    fn emit(&self, label: LabelId, tag: &str, events: &EventBatch, depth: u32) -> Accepted {
        if events.is_empty() {
            return Accepted::ok();
        }
        let Some(l) = self.labels.get(label) else {
            return Accepted::Now(Err(Refused::Output(format!("no label #{label}"))));
        };
        let route = l.route(tag);
        let Some(output) = &route.output else {
            self.counters
                .unmatched_events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            if self.counters.first(0, tag) {
                if l.name == "@ROOT" {
                    tracing::warn!(tag, "no patterns matched");
                } else {
                    tracing::warn!(tag, label = %l.name, "no patterns matched");
                }
            }
            return Accepted::ok();
        };
        let router = Router {
            labels: self,
            depth,
        };
        if route.filters.is_empty() {
            return output.emit_routed(tag, events, &router);
        }
        let mut batch = events.clone();
        let mut answers = Vec::new();
        for f in &route.filters {
            let out = f.filter(tag, batch);
            batch = out.events;
            if !out.errors.is_empty() {
                answers.push(self.error_events(tag, f.id(), out.errors, depth));
            }
            if batch.is_empty() {
                break;
            }
        }
        if !batch.is_empty() {
            answers.push(output.emit_routed(tag, &batch, &router));
        }
        Accepted::all(answers)
    }

    /// Sends records a filter could not process to `@ERROR`, or logs them when there is no such
    /// label, as Fluentd's `emit_error_event` does.
    fn error_events(
        &self,
        tag: &str,
        filter: &str,
        errors: Vec<ErrorEvent>,
        depth: u32,
    ) -> Accepted {
        self.counters
            .error_events
            .fetch_add(errors.len() as u64, Ordering::Relaxed);
        match self.error {
            Some(label) => {
                let mut b = weir_filter::BatchBuilder::default();
                for e in &errors {
                    tracing::debug!(tag, filter, error = %e.error, "error event sent to @ERROR");
                    b.push(e.time, &e.record);
                }
                let batch = b.finish();
                Router {
                    labels: self,
                    depth,
                }
                .emit(label, tag, &batch)
            }
            None => {
                for e in errors {
                    let mut json = Vec::new();
                    let _ = weir_proto::record_to_json(&e.record, &mut json);
                    tracing::warn!(
                        tag,
                        filter,
                        error = %e.error,
                        time = %fmt_time(e.time),
                        record = %String::from_utf8_lossy(&json),
                        "dump an error event"
                    );
                }
                Accepted::ok()
            }
        }
    }
}

fn fmt_time(t: EventTime) -> String {
    format!("{}.{:09}", t.sec, t.nsec)
}

/// Routes requests through the labels. Cloning is cheap; every clone shares the labels.
#[derive(Clone)]
pub struct Pipeline {
    labels: Arc<Labels>,
    entry: LabelId,
    outputs: Arc<Vec<Arc<dyn Output>>>,
    /// The live tail this handle shows its requests to, and the id of its source.
    tap: Option<(Arc<weir_tail::Hub>, Arc<str>)>,
    /// The counters of the source this handle belongs to, if any.
    source: Option<Arc<crate::monitor::SourceMetrics>>,
}

impl Pipeline {
    /// Builds a pipeline of one root label from `<match>` entries in file order.
    pub fn new(entries: Vec<(PatternSet, Arc<dyn Output>)>) -> Self {
        let outputs = entries.iter().map(|(_, o)| Arc::clone(o)).collect();
        let steps = entries
            .into_iter()
            .map(|(p, o)| (p, Step::Match(o)))
            .collect();
        Self::with_labels(vec![Label::new("@ROOT", steps)], None, outputs)
    }

    /// Builds a pipeline from labels (index 0 is `@ROOT`), the index of `@ERROR` if defined, and
    /// every output (for flushing).
    pub fn with_labels(
        labels: Vec<Label>,
        error: Option<LabelId>,
        outputs: Vec<Arc<dyn Output>>,
    ) -> Self {
        Pipeline {
            labels: Arc::new(Labels {
                labels,
                error,
                counters: Counters::default(),
            }),
            entry: 0,
            outputs: Arc::new(outputs),
            tap: None,
            source: None,
        }
    }

    /// The same pipeline, with events entering at `label` (a source's `@label`).
    pub fn entering_at(&self, label: LabelId) -> Pipeline {
        Pipeline {
            labels: Arc::clone(&self.labels),
            entry: label,
            outputs: Arc::clone(&self.outputs),
            tap: self.tap.clone(),
            source: None,
        }
    }

    /// The same handle, counting what it is given in `metrics` (a source's events and bytes
    /// per tag prefix).
    pub fn counting_into(mut self, metrics: Arc<crate::monitor::SourceMetrics>) -> Pipeline {
        self.source = Some(metrics);
        self
    }

    /// The same handle, showing every request it is given to the live tail's `hub` as coming
    /// from source `source_id`, before routing. Handles made from it by
    /// [`Pipeline::entering_at`] keep the tap.
    pub fn with_tap(mut self, hub: Arc<weir_tail::Hub>, source_id: &str) -> Pipeline {
        self.tap = Some((hub, Arc::from(source_id)));
        self
    }

    /// Routes one request's events. Events whose tag matches no `<match>` are dropped and
    /// counted, with one warning per tag, as Fluentd does; they still count as accepted, because
    /// sending them again would not change where they go.
    pub fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
        if let Some((hub, source)) = &self.tap {
            hub.publish(source, tag, events);
        }
        if let Some(m) = &self.source {
            m.record(tag, events.len() as u64, events.byte_len() as u64);
        }
        self.labels.emit(self.entry, tag, events, 0)
    }

    /// Events dropped because no `<match>` fitted their tag.
    pub fn unmatched_events(&self) -> u64 {
        self.labels
            .counters
            .unmatched_events
            .load(Ordering::Relaxed)
    }

    /// Events dropped because they were re-emitted more than [`MAX_REEMIT_DEPTH`] times.
    pub fn loop_dropped_events(&self) -> u64 {
        self.labels
            .counters
            .loop_dropped_events
            .load(Ordering::Relaxed)
    }

    /// Records filters could not process (sent to `@ERROR` or logged).
    pub fn error_events(&self) -> u64 {
        self.labels.counters.error_events.load(Ordering::Relaxed)
    }

    /// The output events with `tag` reach from the root label (the first `<match>` that
    /// fits), for monitor_agent's `?tag=`.
    pub fn output_for(&self, tag: &str) -> Option<Arc<dyn Output>> {
        self.labels
            .labels
            .first()
            .and_then(|l| l.route(tag).output.clone())
    }

    /// Asks every output to write out what it holds back.
    pub fn flush(&self) {
        for output in self.outputs.iter() {
            output.flush();
        }
    }

    /// Every output, in config order.
    pub fn outputs(&self) -> &[Arc<dyn Output>] {
        &self.outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Records the tags it was given.
    struct Seen(String, Mutex<Vec<String>>);

    impl Output for Seen {
        fn id(&self) -> &str {
            &self.0
        }
        fn emit(&self, tag: &str, events: &EventBatch) -> Accepted {
            if let Ok(mut v) = self.1.lock() {
                v.push(format!("{tag}:{}", events.len()));
            }
            Accepted::ok()
        }
    }

    /// Drops every event and counts its calls.
    struct DropAll(AtomicUsize);

    impl Filter for DropAll {
        fn id(&self) -> &str {
            "drop"
        }
        fn type_name(&self) -> &str {
            "drop"
        }
        fn filter(&self, _tag: &str, _events: EventBatch) -> weir_filter::Filtered {
            self.0.fetch_add(1, Ordering::Relaxed);
            weir_filter::Filtered::default()
        }
    }

    fn batch() -> EventBatch {
        let mut b = weir_filter::BatchBuilder::default();
        b.push(EventTime::new(1, 0), &[0x80]);
        b.finish()
    }

    #[test]
    fn first_match_wins_and_only_earlier_filters_run() {
        let a = Arc::new(Seen("a".into(), Mutex::new(Vec::new())));
        let b = Arc::new(Seen("b".into(), Mutex::new(Vec::new())));
        let drop = Arc::new(DropAll(AtomicUsize::new(0)));
        let p = |s: &str| PatternSet::parse(s).unwrap();
        let pipeline = Pipeline::with_labels(
            vec![Label::new(
                "@ROOT",
                vec![
                    (p("x.**"), Step::Filter(drop.clone())),
                    (p("x.** y.**"), Step::Match(a.clone())),
                    (p("y.**"), Step::Filter(drop.clone())),
                    (p("**"), Step::Match(b.clone())),
                ],
            )],
            None,
            Vec::new(),
        );
        let _ = pipeline.emit("y.1", &batch());
        let _ = pipeline.emit("y.1", &batch());
        let _ = pipeline.emit("x.1", &batch());
        let _ = pipeline.emit("z", &batch());
        // y.1 reaches `a` unfiltered (the y.** filter comes after the match), x.1 is dropped by
        // the filter before it, z goes to the catch-all.
        assert_eq!(*a.1.lock().unwrap(), vec!["y.1:1", "y.1:1"]);
        assert_eq!(*b.1.lock().unwrap(), vec!["z:1"]);
        assert_eq!(drop.0.load(Ordering::Relaxed), 1);
        assert_eq!(pipeline.unmatched_events(), 0);
    }
}
