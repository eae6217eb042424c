//! The hub: the pipeline publishes every request's events to it; it hands each subscriber the
//! lines of the events its filter keeps, through a bounded queue of its own.
//!
//! Publishing never waits and does almost nothing on the ingest path. With no subscriber it
//! costs one atomic load. With subscribers, it checks each one's tag and source and, if any
//! wants the request, queues the request (sharing its buffer) for the hub's filter thread. That
//! thread runs at the lowest CPU priority the system offers (`SCHED_IDLE` on Linux, else nice
//! 19), so the tail only ever uses CPU time that ingest leaves idle. It runs each subscriber's
//! `--grep` and `--exclude` conditions on the records, formats the passing events and queues the
//! lines for the subscriber's task, which only writes them to the socket.
//!
//! Two bounded queues, two kinds of loss, each counted and told to the subscriber:
//!
//! * the filter thread's intake: when the machine is too busy for the tail to keep up, requests
//!   are skipped before they are examined (`N events skipped unexamined (server busy)`: the
//!   events of the asked-for tags, of which any number might have matched);
//! * each subscriber's queue of lines: when a reader is slow, its events are dropped
//!   (`N events dropped (slow reader)`), for that reader only, at the place of the gap.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use weir_proto::EventBatch;

use crate::filter::TailFilter;
use crate::format::LineWriter;
use crate::request::TailRequest;

/// The start of every line the stream carries that is not an event.
pub const CONTROL_PREFIX: &str = "# weir: ";

/// Limits and timings of a hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Most bytes of formatted lines one subscriber's queue holds.
    pub queue_bytes: usize,
    /// Most events one subscriber's queue holds.
    pub queue_events: usize,
    /// Most bytes of requests waiting for the filter thread (their whole buffers, which the
    /// wait keeps alive). A request is always taken when nothing waits, however large.
    pub intake_bytes: usize,
    /// How long a stream may stay silent: after this long with nothing to send, it sends an
    /// empty line, so a vanished client is noticed and proxies keep the connection open.
    pub heartbeat: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_bytes: 8 << 20,
            queue_events: 100_000,
            intake_bytes: 16 << 20,
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
    /// Formatted lines of this many events.
    Lines(Bytes, usize),
    /// This many events were dropped here.
    Dropped(u64),
    /// The limit is reached: the stream ends here.
    LimitReached,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    events: usize,
}

/// What the hub, its filter thread and a subscriber's task share.
struct Shared {
    id: u64,
    filter: TailFilter,
    limit: Option<u64>,
    /// The filter thread's: formats this subscriber's lines.
    writer: Mutex<LineWriter>,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Events this subscriber still takes (its limit minus what was queued); `u64::MAX`
    /// without a limit.
    wanted: AtomicU64,
    /// Events of wanted tags skipped before the filter thread examined them.
    skipped: AtomicU64,
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

    fn is_done(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.wanted.load(Ordering::Relaxed) == 0
    }

    /// Filters and formats one request for this subscriber and queues the lines, or counts
    /// them as dropped when the queue is full. Runs on the filter thread.
    fn offer(&self, config: &HubConfig, tag: &str, events: &EventBatch) -> u64 {
        if self.is_done() {
            return 0;
        }
        let mut out = Vec::new();
        let mut n = 0usize;
        {
            let mut writer = lock(&self.writer);
            for (time, record) in events.iter() {
                if self.filter.reads_records() && !self.filter.keeps(record) {
                    continue;
                }
                if self.take_wanted(1) == 0 {
                    break;
                }
                match writer.write(tag, time, record, &mut out) {
                    Ok(()) => n += 1,
                    Err(e) => {
                        self.give_back(1);
                        tracing::debug!(tag, error = %e, "tail: event not formatted");
                    }
                }
            }
        }
        if n == 0 {
            return 0;
        }
        let mut q = lock(&self.queue);
        let full = !q.items.is_empty()
            && (q.bytes.saturating_add(out.len()) > config.queue_bytes
                || q.events.saturating_add(n) > config.queue_events);
        if full {
            match q.items.back_mut() {
                Some(Item::Dropped(d)) => *d += n as u64,
                _ => q.items.push_back(Item::Dropped(n as u64)),
            }
            drop(q);
            self.give_back(n as u64);
            return n as u64;
        }
        q.bytes += out.len();
        q.events += n;
        q.items.push_back(Item::Lines(Bytes::from(out), n));
        if self.limit.is_some() && self.wanted.load(Ordering::Acquire) == 0 {
            q.items.push_back(Item::LimitReached);
        }
        drop(q);
        self.notify.notify_one();
        0
    }
}

/// A request waiting for the filter thread, with the subscribers that want its tag.
struct Job {
    tag: Arc<str>,
    batch: EventBatch,
    subscribers: Vec<Arc<Shared>>,
}

#[derive(Default)]
struct Intake {
    jobs: VecDeque<Job>,
    bytes: usize,
    /// Whether the filter thread runs.
    started: bool,
}

/// The server side of the live tail. Create one per process, give it to the pipeline (which
/// calls [`Hub::publish`]) and to [`crate::routes`] (which subscribes).
pub struct Hub {
    config: HubConfig,
    /// How many subscribers there are: the one load `publish` makes when there are none.
    active: AtomicUsize,
    subscribers: RwLock<Vec<Arc<Shared>>>,
    intake: Mutex<Intake>,
    work: Condvar,
    next_id: AtomicU64,
    closed: AtomicBool,
    dropped: AtomicU64,
    skipped: AtomicU64,
    sent: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

impl Hub {
    /// A hub with no subscriber. Its filter thread starts with the first subscriber.
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            active: AtomicUsize::new(0),
            subscribers: RwLock::new(Vec::new()),
            intake: Mutex::new(Intake::default()),
            work: Condvar::new(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// The hub's limits.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Offers one request's events, entering the pipeline from source `source_id` under
    /// `tag`, to every subscriber. Never blocks on a subscriber; with none, it only loads one
    /// atomic; with some, it only checks their tags and queues the request for the filter
    /// thread.
    pub fn publish(&self, source_id: &str, tag: &str, events: &EventBatch) {
        if self.active.load(Ordering::Acquire) == 0 || events.is_empty() {
            return;
        }
        let wanting: Vec<Arc<Shared>> = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|s| !s.is_done() && s.filter.wants(source_id, tag))
            .cloned()
            .collect();
        if wanting.is_empty() {
            return;
        }
        let cost = events.buffer().len();
        let mut intake = lock(&self.intake);
        if !intake.jobs.is_empty() && intake.bytes.saturating_add(cost) > self.config.intake_bytes {
            drop(intake);
            let n = events.len() as u64;
            for s in &wanting {
                s.skipped.fetch_add(n, Ordering::Relaxed);
                s.notify.notify_one();
            }
            self.skipped
                .fetch_add(n * wanting.len() as u64, Ordering::Relaxed);
            return;
        }
        intake.bytes += cost;
        intake.jobs.push_back(Job {
            tag: Arc::from(tag),
            batch: events.clone(),
            subscribers: wanting,
        });
        drop(intake);
        self.work.notify_one();
    }

    /// The filter thread: takes requests off the intake and offers them to their subscribers,
    /// until the hub is gone.
    fn filter_loop(hub: Weak<Hub>) {
        lower_priority();
        loop {
            let Some(hub) = hub.upgrade() else {
                return;
            };
            let job = {
                let mut intake = lock(&hub.intake);
                match intake.jobs.pop_front() {
                    Some(job) => {
                        intake.bytes -= job.batch.buffer().len();
                        Some(job)
                    }
                    None => {
                        // Wake now and then to notice the hub was dropped.
                        let _ = hub
                            .work
                            .wait_timeout(intake, Duration::from_millis(500))
                            .unwrap_or_else(PoisonError::into_inner);
                        None
                    }
                }
            };
            let Some(job) = job else {
                continue;
            };
            for s in &job.subscribers {
                let dropped = s.offer(&hub.config, &job.tag, &job.batch);
                if dropped > 0 {
                    hub.dropped.fetch_add(dropped, Ordering::Relaxed);
                }
            }
        }
    }

    /// Adds a subscriber. Its events come out of the returned [`Subscription`]; dropping it
    /// unsubscribes.
    pub fn subscribe(self: &Arc<Self>, request: TailRequest) -> Result<Subscription, HubClosed> {
        let shared = Arc::new(Shared {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            filter: request.filter,
            limit: request.limit,
            writer: Mutex::new(LineWriter::new(request.format)),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            wanted: AtomicU64::new(request.limit.unwrap_or(u64::MAX)),
            skipped: AtomicU64::new(0),
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
        self.start_filter_thread();
        tracing::info!(
            subscriber = shared.id,
            tag = shared.filter.tag_pattern().unwrap_or("**"),
            "tail subscriber attached"
        );
        Ok(Subscription {
            hub: Arc::clone(self),
            shared,
            delivered: 0,
            done: false,
        })
    }

    fn start_filter_thread(self: &Arc<Self>) {
        let mut intake = lock(&self.intake);
        if intake.started {
            return;
        }
        let hub = Arc::downgrade(self);
        match std::thread::Builder::new()
            .name("weir-tail".into())
            .spawn(move || Hub::filter_loop(hub))
        {
            Ok(_) => intake.started = true,
            // Subscribers get nothing but heartbeats and skip counts; tried again on the next
            // subscribe.
            Err(e) => tracing::error!(error = %e, "tail: cannot start the filter thread"),
        }
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

    /// Events skipped unexamined because the filter thread could not keep up, counted once
    /// per subscriber that wanted them.
    pub fn skipped_events(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Events written to subscribers since start.
    pub fn sent_events(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// Puts the calling thread at the lowest CPU priority: `SCHED_IDLE` on Linux (it runs only
/// when a CPU would otherwise be idle), else nice 19.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` for the duration of the call; pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    // SAFETY: setpriority takes plain integers; who 0 is the calling thread on Linux and the
    // process elsewhere.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
        tracing::debug!("tail: could not lower the filter thread's priority");
    }
}

/// How many bytes of lines one chunk of the stream gathers at most (roughly: the lines of one
/// request are never split).
const CHUNK_BYTES: usize = 256 << 10;

/// One subscriber's end: yields the stream's bytes, chunk by chunk.
pub struct Subscription {
    hub: Arc<Hub>,
    shared: Arc<Shared>,
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
            if let Some(chunk) = self.take() {
                return Some(chunk);
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

    /// What is queued, about one chunk's worth, with the skip count first.
    fn take(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        let skipped = self.shared.skipped.swap(0, Ordering::Relaxed);
        if skipped > 0 {
            let _ = writeln!(
                out,
                "{CONTROL_PREFIX}{skipped} events skipped unexamined (server busy)"
            );
        }
        let before = self.delivered;
        {
            let mut q = lock(&self.shared.queue);
            while out.len() < CHUNK_BYTES {
                let Some(item) = q.items.pop_front() else {
                    break;
                };
                match item {
                    Item::Lines(lines, n) => {
                        q.bytes -= lines.len();
                        q.events -= n;
                        self.delivered += n as u64;
                        if out.is_empty() {
                            // The common case: hand the lines on without copying.
                            out = Vec::from(lines);
                        } else {
                            out.extend_from_slice(&lines);
                        }
                    }
                    Item::Dropped(n) => {
                        let _ = writeln!(out, "{CONTROL_PREFIX}{n} events dropped (slow reader)");
                    }
                    Item::LimitReached => {
                        let limit = self.shared.limit.unwrap_or(self.delivered);
                        let _ =
                            writeln!(out, "{CONTROL_PREFIX}end (limit of {limit} events reached)");
                        self.done = true;
                        break;
                    }
                }
            }
        }
        self.hub
            .sent
            .fetch_add(self.delivered - before, Ordering::Relaxed);
        (!out.is_empty()).then(|| Bytes::from(out))
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

    /// The JSON part of each out_file line, and control lines as they are.
    fn records(chunk: &str) -> Vec<String> {
        chunk
            .lines()
            .map(|l| l.rsplit('\t').next().unwrap_or(l).to_string())
            .collect()
    }

    /// Reads chunks until `n` lines (events and control lines, no heartbeats) have come, or
    /// the stream ends; returns them as [`records`] shows them.
    async fn read(s: &mut Subscription, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let chunk = tokio::time::timeout(Duration::from_secs(10), s.next_chunk())
                .await
                .expect("the filter thread delivered in time");
            let Some(chunk) = chunk else { break };
            let text = String::from_utf8(chunk.to_vec()).unwrap();
            got.extend(records(&text).into_iter().filter(|l| !l.is_empty()));
        }
        got
    }

    fn hub(config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub::new(config))
    }

    /// Waits until the filter thread has dropped `n` events in all.
    fn wait_dropped(hub: &Hub, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while hub.dropped_events() < n {
            assert!(std::time::Instant::now() < deadline, "nothing dropped");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn n(i: usize) -> String {
        format!(r#"{{"n":{i}}}"#)
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
        hub.publish("in", "blog.b", &batch(&[r#"{"level":"info","n":6}"#]));
        hub.publish("in", "blog.b", &batch(&[r#"{"level":"error","n":7}"#]));
        assert_eq!(
            read(&mut s, 4).await,
            [
                r#"{"level":"error","n":1}"#,
                r#"{"level":"error","n":3}"#,
                r#"{"level":"error","n":5}"#,
                r#"{"level":"error","n":7}"#
            ]
        );
        assert_eq!(hub.sent_events(), 4);
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
        for i in 0..6 {
            hub.publish("in", "t", &batch(&[&n(i)]));
            assert_eq!(read(&mut fast, 1).await, [n(i)]);
        }
        assert_eq!(hub.dropped_events(), 4);
        assert_eq!(
            read(&mut slow, 3).await,
            [n(0), n(1), "# weir: 4 events dropped (slow reader)".into()]
        );
        hub.publish("in", "t", &batch(&[&n(6)]));
        assert_eq!(read(&mut slow, 1).await, [n(6)]);
    }

    #[tokio::test]
    async fn a_queue_also_holds_at_most_its_bytes() {
        let hub = hub(HubConfig {
            queue_bytes: 10,
            ..HubConfig::default()
        });
        let mut s = hub.subscribe(request("**", &[], None)).unwrap();
        // The first lines are always taken, however long; the next do not fit.
        hub.publish("in", "t", &batch(&[r#"{"message":"a long enough value"}"#]));
        hub.publish("in", "t", &batch(&[&n(1), &n(2)]));
        wait_dropped(&hub, 2);
        assert_eq!(
            read(&mut s, 2).await,
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
        hub.publish("in", "t", &batch(&[&n(0)]));
        hub.publish("in", "t", &batch(&[&n(1)]));
        wait_dropped(&hub, 1);
        assert_eq!(
            read(&mut s, 2).await,
            [n(0), "# weir: 1 events dropped (slow reader)".into()]
        );
        hub.publish("in", "t", &batch(&[&n(2), &n(3), &n(4)]));
        assert_eq!(
            read(&mut s, 3).await,
            [n(2), n(3), "# weir: end (limit of 3 events reached)".into()]
        );
        assert!(s.next_chunk().await.is_none());
    }

    #[tokio::test]
    async fn a_busy_filter_thread_skips_requests_and_says_how_many() {
        let hub = hub(HubConfig {
            intake_bytes: 1,
            ..HubConfig::default()
        });
        let mut s = hub.subscribe(request("**", &[], None)).unwrap();
        // Hold the filter thread inside the first request.
        let writer = lock(&s.shared.writer);
        hub.publish("in", "t", &batch(&[&n(0)]));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !lock(&hub.intake).jobs.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the filter thread took nothing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // One request may wait however large it is; the next one is skipped.
        hub.publish("in", "t", &batch(&[&n(1)]));
        hub.publish("in", "t", &batch(&[&n(2), &n(3)]));
        assert_eq!(hub.skipped_events(), 2);
        drop(writer);
        let mut got = read(&mut s, 3).await;
        got.sort();
        assert_eq!(
            got,
            [
                "# weir: 2 events skipped unexamined (server busy)".to_string(),
                n(0),
                n(1)
            ]
        );
    }

    #[tokio::test]
    async fn source_filter() {
        let hub = hub(HubConfig::default());
        let mut req = request("**", &[], None);
        req.filter = req.filter.source("b");
        let mut s = hub.subscribe(req).unwrap();
        hub.publish("a", "t", &batch(&[&n(0)]));
        hub.publish("b", "t", &batch(&[&n(1)]));
        assert_eq!(read(&mut s, 1).await, [n(1)]);
    }

    #[tokio::test]
    async fn close_ends_every_stream_and_refuses_new_ones() {
        let hub = hub(HubConfig::default());
        let mut s = hub.subscribe(request("**", &[], None)).unwrap();
        hub.publish("in", "t", &batch(&[&n(0)]));
        // What was queued still goes out, then the end.
        assert_eq!(read(&mut s, 1).await, [n(0)]);
        hub.close();
        assert!(hub.subscribe(request("**", &[], None)).is_err());
        assert_eq!(
            read(&mut s, 2).await,
            ["# weir: end (server shutting down)"]
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
        assert_eq!(&s.next_chunk().await.unwrap()[..], b"\n");
    }
}
