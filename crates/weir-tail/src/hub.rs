//! The hub: the pipeline publishes every request's events to it; it hands each subscriber the
//! events its filter keeps, through a bounded queue of its own.
//!
//! Publishing never waits for a subscriber. With no subscriber it costs one atomic load. With
//! subscribers, the ingest thread checks each one's tag and source, runs its `--grep` and
//! `--exclude` conditions on the records, and queues what passes (sharing the request's buffer
//! when every event passes, copying the passing records otherwise). Formatting and writing
//! happen on the subscriber's own task. When a queue is full the events are dropped for that
//! subscriber only, counted, and the count is put in the queue where the gap is, so the
//! subscriber's stream says how many events it lost, and where.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use weir_proto::{EntryRef, EventBatch};

use crate::filter::TailFilter;
use crate::format::LineWriter;
use crate::request::TailRequest;

/// The start of every line the stream carries that is not an event.
pub const CONTROL_PREFIX: &str = "# weir: ";

/// Limits and timings of a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Most record bytes one subscriber's queue holds (a request whose every event passes
    /// counts its whole buffer, which it keeps alive). A queue always takes one request when
    /// it is empty, however large.
    pub queue_bytes: usize,
    /// Most events one subscriber's queue holds.
    pub queue_events: usize,
    /// How long a stream may stay silent: after this long with nothing to send, it sends an
    /// empty line, so a vanished client is noticed and proxies keep the connection open.
    pub heartbeat: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_bytes: 8 << 20,
            queue_events: 100_000,
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// A subscribe after [`Hub::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("weir is shutting down")]
pub struct HubClosed;

/// One entry of a subscriber's queue.
enum Item {
    Events {
        tag: Arc<str>,
        batch: EventBatch,
        cost: usize,
    },
    /// This many events were dropped here.
    Dropped(u64),
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    events: usize,
}

/// What the hub and a subscriber's task share.
struct Shared {
    id: u64,
    filter: TailFilter,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Events this subscriber still takes (its limit minus what was queued); `u64::MAX`
    /// without a limit.
    wanted: AtomicU64,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Takes up to `n` of the wanted events; returns how many were granted.
    fn take_wanted(&self, n: u64) -> u64 {
        let mut granted = 0;
        let _ = self
            .wanted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                if w == u64::MAX {
                    granted = n;
                    return None;
                }
                granted = n.min(w);
                Some(w - granted)
            });
        granted
    }

    /// Gives back wanted events that were not delivered after all.
    fn give_back(&self, n: u64) {
        let _ = self
            .wanted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w != u64::MAX).then(|| w.saturating_add(n))
            });
    }
}

/// The server side of the live tail. Create one per process, give it to the pipeline (which
/// calls [`Hub::publish`]) and to [`crate::routes`] (which subscribes).
pub struct Hub {
    config: HubConfig,
    /// How many subscribers there are: the one load `publish` makes when there are none.
    active: AtomicUsize,
    subscribers: RwLock<Vec<Arc<Shared>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    dropped: AtomicU64,
    sent: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

impl Hub {
    /// A hub with no subscriber.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            active: AtomicUsize::new(0),
            subscribers: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Offers one request's events, entering the pipeline from source `source_id` under
    /// `tag`, to every subscriber. Never blocks on a subscriber; with none, it only loads one
    /// atomic.
    pub fn publish(&self, source_id: &str, tag: &str, events: &EventBatch) {
        if self.active.load(Ordering::Acquire) == 0 || events.is_empty() {
            return;
        }
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut shared_tag: Option<Arc<str>> = None;
        for s in subscribers.iter() {
            if s.closed.load(Ordering::Relaxed)
                || s.wanted.load(Ordering::Relaxed) == 0
                || !s.filter.wants(source_id, tag)
            {
                continue;
            }
            let tag = shared_tag.get_or_insert_with(|| Arc::from(tag));
            self.offer(s, tag, events);
        }
    }

    /// Filters `events` for one subscriber and queues what passes, or counts it as dropped.
    fn offer(&self, s: &Shared, tag: &Arc<str>, events: &EventBatch) {
        let buf = events.buffer();
        let kept: Vec<EntryRef> = if s.filter.reads_records() {
            events
                .entries()
                .iter()
                .filter(|e| {
                    let record = buf.get(e.start as usize..e.end as usize).unwrap_or(&[]);
                    s.filter.keeps(record)
                })
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let passing = if s.filter.reads_records() {
            kept.len()
        } else {
            events.len()
        };
        if passing == 0 {
            return;
        }
        let granted = s.take_wanted(passing as u64);
        if granted == 0 {
            return;
        }
        let granted_n = usize::try_from(granted).unwrap_or(passing);
        let (batch, cost) = if granted_n == events.len() {
            // Every event passes: share the request's buffer, and count all of it.
            (events.clone(), buf.len())
        } else {
            let entries: &[EntryRef] = if s.filter.reads_records() {
                &kept
            } else {
                events.entries()
            };
            let batch = compact(buf, entries.get(..granted_n).unwrap_or(entries));
            let cost = batch.buffer().len();
            (batch, cost)
        };
        let n = batch.len();
        let mut q = lock(&s.queue);
        let full = !q.items.is_empty()
            && (q.bytes.saturating_add(cost) > self.config.queue_bytes
                || q.events.saturating_add(n) > self.config.queue_events);
        if full {
            match q.items.back_mut() {
                Some(Item::Dropped(d)) => *d += n as u64,
                _ => q.items.push_back(Item::Dropped(n as u64)),
            }
            drop(q);
            s.give_back(n as u64);
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        q.bytes += cost;
        q.events += n;
        q.items.push_back(Item::Events {
            tag: Arc::clone(tag),
            batch,
            cost,
        });
        drop(q);
        s.notify.notify_one();
    }

    /// Adds a subscriber. Its events come out of the returned [`Subscription`]; dropping it
    /// unsubscribes.
    pub fn subscribe(self: &Arc<Self>, request: TailRequest) -> Result<Subscription, HubClosed> {
        let shared = Arc::new(Shared {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            filter: request.filter,
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            wanted: AtomicU64::new(request.limit.unwrap_or(u64::MAX)),
            closed: AtomicBool::new(false),
        });
        {
            let mut subs = self
                .subscribers
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked under the lock, so close() cannot miss a subscriber added meanwhile.
            if self.closed.load(Ordering::Acquire) {
                return Err(HubClosed);
            }
            subs.push(Arc::clone(&shared));
            self.active.store(subs.len(), Ordering::Release);
        }
        tracing::info!(
            subscriber = shared.id,
            tag = shared.filter.tag_pattern().unwrap_or("**"),
            "tail subscriber attached"
        );
        Ok(Subscription {
            hub: Arc::clone(self),
            shared,
            writer: LineWriter::new(request.format),
            limit: request.limit,
            delivered: 0,
            done: false,
        })
    }

    fn unsubscribe(&self, id: u64) {
        let mut subs = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        subs.retain(|s| s.id != id);
        self.active.store(subs.len(), Ordering::Release);
    }

    /// Ends every stream (each says the server is shutting down) and refuses new subscribers.
    /// Call it when shutdown begins, so HTTP connections can finish.
    pub fn close(&self) {
        let subs = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::Release);
        for s in subs.iter() {
            s.closed.store(true, Ordering::Release);
            s.notify.notify_one();
        }
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// How many subscribers are attached now.
    pub fn subscribers(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Events dropped for slow subscribers since start, over all subscribers.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events written to subscribers since start.
    pub fn sent_events(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Copies the records of `entries` out of `buf` into a buffer of their own.
fn compact(buf: &Bytes, entries: &[EntryRef]) -> EventBatch {
    let mut out = Vec::with_capacity(
        entries
            .iter()
            .map(|e| (e.end as usize).saturating_sub(e.start as usize))
            .sum(),
    );
    let mut refs = Vec::with_capacity(entries.len());
    for e in entries {
        let record = buf.get(e.start as usize..e.end as usize).unwrap_or(&[]);
        let start = u32::try_from(out.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(record);
        let end = u32::try_from(out.len()).unwrap_or(u32::MAX);
        refs.push(EntryRef {
            time: e.time,
            start,
            end,
        });
    }
    EventBatch::new(Bytes::from(out), refs)
}

/// How many bytes of formatted lines one chunk of the stream gathers at most (roughly: the
/// events of one queued request are never split).
const CHUNK_BYTES: usize = 256 << 10;

/// One subscriber's end: yields the stream's bytes, chunk by chunk.
pub struct Subscription {
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    writer: LineWriter,
    limit: Option<u64>,
    delivered: u64,
    done: bool,
}

impl Subscription {
    /// The next bytes of the stream: event lines, `# weir: ...` control lines, or an empty
    /// line when nothing happened for [`HubConfig::heartbeat`]. `None` once the stream is over
    /// (its limit was reached, or the hub closed).
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            let items = self.take();
            if !items.is_empty() {
                return Some(self.render(items));
            }
            if self.shared.closed.load(Ordering::Acquire) {
                self.done = true;
                return Some(Bytes::from(format!(
                    "{CONTROL_PREFIX}end (server shutting down)\n"
                )));
            }
            let wait = self.shared.notify.notified();
            if tokio::time::timeout(self.hub.config.heartbeat, wait)
                .await
                .is_err()
            {
                return Some(Bytes::from_static(b"\n"));
            }
        }
    }

    /// Takes queued items worth about one chunk.
    fn take(&self) -> Vec<Item> {
        let mut q = lock(&self.shared.queue);
        let mut items = Vec::new();
        let mut taken = 0usize;
        while taken < CHUNK_BYTES {
            let Some(item) = q.items.pop_front() else {
                break;
            };
            if let Item::Events { batch, cost, .. } = &item {
                q.bytes -= cost;
                q.events -= batch.len();
                taken += cost;
            }
            items.push(item);
        }
        items
    }

    fn render(&mut self, items: Vec<Item>) -> Bytes {
        let mut out = Vec::new();
        let before = self.delivered;
        for item in items {
            match item {
                Item::Dropped(n) => {
                    let _ = writeln!(out, "{CONTROL_PREFIX}{n} events dropped (slow reader)");
                }
                Item::Events { tag, batch, .. } => {
                    for (time, record) in batch.iter() {
                        if self.limit.is_some_and(|l| self.delivered >= l) {
                            break;
                        }
                        match self.writer.write(&tag, time, record, &mut out) {
                            Ok(()) => self.delivered += 1,
                            Err(e) => {
                                // Not a line after all: the limit may take another event.
                                self.shared.give_back(1);
                                tracing::debug!(tag = %tag, error = %e, "tail: event not formatted");
                            }
                        }
                    }
                }
            }
        }
        if let Some(limit) = self.limit {
            if self.delivered >= limit {
                let _ = writeln!(out, "{CONTROL_PREFIX}end (limit of {limit} events reached)");
                self.done = true;
            }
        }
        self.hub
            .sent
            .fetch_add(self.delivered - before, Ordering::Relaxed);
        Bytes::from(out)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.hub.unsubscribe(self.shared.id);
        tracing::info!(
            subscriber = self.shared.id,
            events = self.delivered,
            "tail subscriber detached"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::FieldMatch;
    use crate::format::LineFormat;

    fn batch(records: &[&str]) -> EventBatch {
        crate::testutil::batch_at(1_700_000_000, records)
    }

    fn request(tag: &str, grep: &[&str], limit: Option<u64>) -> TailRequest {
        let mut filter = TailFilter::default().tag(tag).unwrap();
        for g in grep {
            filter = filter.grep(FieldMatch::parse(g).unwrap());
        }
        TailRequest {
            filter,
            format: LineFormat::OutFile,
            limit,
        }
    }

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    /// The JSON part of each out_file line, and control lines as they are.
    fn records(chunk: &str) -> Vec<String> {
        chunk
            .lines()
            .map(|l| l.rsplit('\t').next().unwrap_or(l).to_string())
            .collect()
    }

    fn hub(config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub::new(config))
    }

    #[tokio::test]
    async fn only_matching_events_reach_a_subscriber() {
        let hub = hub(HubConfig::default());
        hub.publish("in", "blog.a", &batch(&[r#"{"level":"error"}"#]));
        assert_eq!(hub.subscribers(), 0);
        let mut s = hub
            .subscribe(request("blog.**", &["level=error"], None))
            .unwrap();
        assert_eq!(hub.subscribers(), 1);
        hub.publish(
            "in",
            "blog.a",
            &batch(&[
                r#"{"level":"error","n":1}"#,
                r#"{"level":"info","n":2}"#,
                r#"{"level":"error","n":3}"#,
            ]),
        );
        hub.publish("in", "app.a", &batch(&[r#"{"level":"error","n":4}"#]));
        hub.publish("in", "blog", &batch(&[r#"{"level":"error","n":5}"#]));
        let got = text(s.next_chunk().await.unwrap());
        assert_eq!(
            records(&got),
            [
                r#"{"level":"error","n":1}"#,
                r#"{"level":"error","n":3}"#,
                r#"{"level":"error","n":5}"#
            ]
        );
        assert!(
            got.contains("\tblog.a\t") && got.contains("\tblog\t"),
            "{got}"
        );
        assert_eq!(hub.sent_events(), 3);
        drop(s);
        assert_eq!(hub.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_says_how_many_where() {
        let hub = hub(HubConfig {
            queue_events: 2,
            ..HubConfig::default()
        });
        let mut slow = hub.subscribe(request("**", &[], None)).unwrap();
        let mut fast = hub.subscribe(request("**", &[], None)).unwrap();
        // The second subscriber reads as it goes and loses nothing.
        for n in 0..6 {
            hub.publish("in", "t", &batch(&[&format!(r#"{{"n":{n}}}"#)]));
            let got = text(fast.next_chunk().await.unwrap());
            assert_eq!(records(&got), [format!(r#"{{"n":{n}}}"#)]);
        }
        assert_eq!(hub.dropped_events(), 4);
        let got = text(slow.next_chunk().await.unwrap());
        assert_eq!(
            records(&got),
            [
                r#"{"n":0}"#,
                r#"{"n":1}"#,
                "# weir: 4 events dropped (slow reader)"
            ]
        );
        hub.publish("in", "t", &batch(&[r#"{"n":6}"#]));
        assert_eq!(
            records(&text(slow.next_chunk().await.unwrap())),
            [r#"{"n":6}"#]
        );
    }

    #[tokio::test]
    async fn a_queue_also_holds_at_most_its_bytes() {
        let hub = hub(HubConfig {
            queue_bytes: 10,
            ..HubConfig::default()
        });
        let mut s = hub.subscribe(request("**", &[], None)).unwrap();
        // The first request is always taken, however large; the next does not fit.
        hub.publish("in", "t", &batch(&[r#"{"message":"a long enough value"}"#]));
        hub.publish("in", "t", &batch(&[r#"{"n":1}"#, r#"{"n":2}"#]));
        let got = text(s.next_chunk().await.unwrap());
        assert_eq!(
            records(&got),
            [
                r#"{"message":"a long enough value"}"#,
                "# weir: 2 events dropped (slow reader)"
            ]
        );
    }

    #[tokio::test]
    async fn the_limit_ends_the_stream_and_dropped_events_do_not_count() {
        let hub = hub(HubConfig {
            queue_events: 1,
            ..HubConfig::default()
        });
        let mut s = hub.subscribe(request("**", &[], Some(3))).unwrap();
        hub.publish("in", "t", &batch(&[r#"{"n":0}"#]));
        hub.publish("in", "t", &batch(&[r#"{"n":1}"#]));
        let got = text(s.next_chunk().await.unwrap());
        assert_eq!(
            records(&got),
            [r#"{"n":0}"#, "# weir: 1 events dropped (slow reader)"]
        );
        hub.publish(
            "in",
            "t",
            &batch(&[r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#]),
        );
        let got = text(s.next_chunk().await.unwrap());
        assert_eq!(
            records(&got),
            [
                r#"{"n":2}"#,
                r#"{"n":3}"#,
                "# weir: end (limit of 3 events reached)"
            ]
        );
        assert!(s.next_chunk().await.is_none());
    }

    #[tokio::test]
    async fn source_filter() {
        let hub = hub(HubConfig::default());
        let mut req = request("**", &[], None);
        req.filter = req.filter.source("b");
        let mut s = hub.subscribe(req).unwrap();
        hub.publish("a", "t", &batch(&[r#"{"n":0}"#]));
        hub.publish("b", "t", &batch(&[r#"{"n":1}"#]));
        assert_eq!(
            records(&text(s.next_chunk().await.unwrap())),
            [r#"{"n":1}"#]
        );
    }

    #[tokio::test]
    async fn close_ends_every_stream_and_refuses_new_ones() {
        let hub = hub(HubConfig::default());
        let mut s = hub.subscribe(request("**", &[], None)).unwrap();
        hub.publish("in", "t", &batch(&[r#"{"n":0}"#]));
        hub.close();
        assert!(hub.subscribe(request("**", &[], None)).is_err());
        // What was queued still goes out, then the end.
        assert_eq!(
            records(&text(s.next_chunk().await.unwrap())),
            [r#"{"n":0}"#]
        );
        assert_eq!(
            text(s.next_chunk().await.unwrap()),
            "# weir: end (server shutting down)\n"
        );
        assert!(s.next_chunk().await.is_none());
    }

    #[tokio::test]
    async fn a_silent_stream_sends_a_heartbeat() {
        let hub = hub(HubConfig {
            heartbeat: Duration::from_millis(20),
            ..HubConfig::default()
        });
        let mut s = hub.subscribe(request("**", &[], None)).unwrap();
        assert_eq!(text(s.next_chunk().await.unwrap()), "\n");
    }

    #[test]
    fn compact_copies_only_the_kept_records() {
        let b = batch(&[r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
        let kept = [b.entries()[0], b.entries()[2]];
        let c = compact(b.buffer(), &kept);
        assert_eq!(c.len(), 2);
        assert_eq!(c.buffer().len(), c.byte_len());
        let recs: Vec<_> = c.iter().map(|(_, r)| r.to_vec()).collect();
        let orig: Vec<_> = b.iter().map(|(_, r)| r.to_vec()).collect();
        assert_eq!(recs, [orig[0].clone(), orig[2].clone()]);
    }
}
