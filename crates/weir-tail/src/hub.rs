//! The hub: the pipeline publishes every request's events to it; it hands each subscriber the
//! lines of the events its filter keeps, through a bounded queue of its own.
//!
//! Publishing never waits and does almost nothing on the ingest path. With no subscriber it
//! costs one atomic load. With subscribers, it checks each one's tag and source and, if any
//! wants the request, queues the request (sharing its buffer) for the hub's filter thread. That
//! thread runs at the lowest CPU priority the system offers (`SCHED_IDLE` on Linux), so the
//! tail only ever uses CPU time that ingest leaves idle, and while the machine has almost no
//! idle CPU time it also holds itself to a small share of one core (see [`crate::throttle`]).
//! It runs each subscriber's
//! `--grep` and `--exclude` conditions on the records, formats the passing events and queues the
//! lines for the subscriber's task, which only writes them to the socket.
//!
//! The filter thread shares no lock with ingest or with the subscribers' tasks (a thread at
//! idle priority that is preempted while holding a lock would stall whoever waits for it):
//! requests reach it through a bounded lock-free channel, which it polls every 10 ms (so
//! publishing never makes a system call to wake it), lines leave it through each subscriber's
//! channel, which the subscriber's task polls every 20 ms (so the thread never wakes a tokio
//! task and never takes the runtime's scheduler lock), and the bounds are atomic counters.
//!
//! Two bounds, two kinds of loss, each counted and told to the subscriber:
//!
//! * the filter thread's intake: when the machine is too busy for the tail to keep up, requests
//!   are skipped before they are examined (`N events skipped unexamined (server busy)`: the
//!   events of the asked-for tags, of which any number might have matched);
//! * each subscriber's queue of lines: when a reader is slow, its events are dropped
//!   (`N events dropped (slow reader)`), for that reader only.
//!
//! Each such line counts the events lost since the previous line of its kind.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, channel, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
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

/// Most requests waiting for the filter thread, whatever their size.
const INTAKE_REQUESTS: usize = 4096;

/// How often the filter thread looks for requests while anyone is subscribed. Publishing never
/// wakes it: a wake-up per request would cost ingest a system call and the machine two context
/// switches per request.
const FILTER_POLL: Duration = Duration::from_millis(10);

/// A subscribe after [`Hub::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("weir is shutting down")]
pub struct HubClosed;

/// What a subscriber's channel carries.
enum Item {
    /// Formatted lines of this many events.
    Lines(Bytes, usize),
    /// Events were dropped for this slow reader: the count is in [`Shared::dropped`].
    Dropped,
    /// Requests were skipped unexamined: the count is in [`Shared::skipped`].
    Skipped,
    /// The limit is reached: the stream ends here.
    LimitReached,
    /// The hub closed: the stream ends here.
    Closed,
}

/// What the hub, its filter thread and a subscriber's task share.
struct Shared {
    id: u64,
    filter: TailFilter,
    limit: Option<u64>,
    /// Only the filter thread uses it.
    writer: Mutex<LineWriter>,
    tx: Sender<Item>,
    /// Lines and events sent and not yet taken by the subscriber's task.
    queued_bytes: AtomicUsize,
    queued_events: AtomicUsize,
    /// Events this subscriber still takes (its limit minus what was queued); `u64::MAX`
    /// without a limit.
    wanted: AtomicU64,
    /// Events dropped since the last `dropped` line.
    dropped: AtomicU64,
    /// Events skipped since the last `skipped` line.
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

    /// Counts `n` events lost in `counter`, and sends `item` to say so unless a line about
    /// earlier losses of the same kind is still on its way.
    fn lose(&self, counter: &AtomicU64, item: Item, n: u64) {
        if counter.fetch_add(n, Ordering::AcqRel) == 0 {
            let _ = self.tx.send(item);
        }
    }

    /// Filters and formats one request for this subscriber and sends the lines, or counts
    /// them as dropped when its queue is full. Runs on the filter thread; returns how many
    /// events were dropped.
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
        let bytes = self.queued_bytes.load(Ordering::Acquire);
        let queued = self.queued_events.load(Ordering::Acquire);
        let full = queued > 0
            && (bytes.saturating_add(out.len()) > config.queue_bytes
                || queued.saturating_add(n) > config.queue_events);
        if full {
            self.give_back(n as u64);
            self.lose(&self.dropped, Item::Dropped, n as u64);
            return n as u64;
        }
        self.queued_bytes.fetch_add(out.len(), Ordering::AcqRel);
        self.queued_events.fetch_add(n, Ordering::AcqRel);
        let _ = self.tx.send(Item::Lines(Bytes::from(out), n));
        if self.limit.is_some() && self.wanted.load(Ordering::Acquire) == 0 {
            let _ = self.tx.send(Item::LimitReached);
        }
        0
    }
}

/// A request waiting for the filter thread, with the subscribers that want its tag.
struct Job {
    tag: Arc<str>,
    batch: EventBatch,
    subscribers: Vec<Arc<Shared>>,
}

/// The server side of the live tail. Create one per process, give it to the pipeline (which
/// calls [`Hub::publish`]) and to [`crate::routes`] (which subscribes).
pub struct Hub {
    config: HubConfig,
    /// How many subscribers there are: the one load `publish` makes when there are none.
    active: AtomicUsize,
    subscribers: RwLock<Vec<Arc<Shared>>>,
    intake: SyncSender<Job>,
    /// The intake's other end, until the filter thread takes it.
    intake_rx: Mutex<Option<Receiver<Job>>>,
    /// Bytes of the requests waiting in the intake.
    intake_bytes: AtomicUsize,
    filter_thread: OnceLock<std::thread::Thread>,
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
        let (intake, rx) = mpsc::sync_channel(INTAKE_REQUESTS);
        Hub {
            config,
            active: AtomicUsize::new(0),
            subscribers: RwLock::new(Vec::new()),
            intake,
            intake_rx: Mutex::new(Some(rx)),
            intake_bytes: AtomicUsize::new(0),
            filter_thread: OnceLock::new(),
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
    /// `tag`, to every subscriber. Never blocks; with no subscriber, it only loads one atomic;
    /// with some, it only checks their tags and queues the request for the filter thread.
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
        let held = self.intake_bytes.load(Ordering::Acquire);
        if held > 0 && held.saturating_add(cost) > self.config.intake_bytes {
            self.skip(&wanting, events.len());
            return;
        }
        self.intake_bytes.fetch_add(cost, Ordering::AcqRel);
        let job = Job {
            tag: Arc::from(tag),
            batch: events.clone(),
            subscribers: wanting,
        };
        // The filter thread is not woken: it looks for requests every FILTER_POLL.
        if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
            self.intake.try_send(job)
        {
            self.intake_bytes.fetch_sub(cost, Ordering::AcqRel);
            self.skip(&job.subscribers, job.batch.len());
        }
    }

    fn skip(&self, subscribers: &[Arc<Shared>], n: usize) {
        let n = n as u64;
        for s in subscribers {
            s.lose(&s.skipped, Item::Skipped, n);
        }
        self.skipped
            .fetch_add(n * subscribers.len() as u64, Ordering::Relaxed);
    }

    /// The filter thread: takes requests off the intake and offers them to their subscribers,
    /// until the hub is gone.
    fn filter_loop(hub: Weak<Hub>, intake: Receiver<Job>) {
        lower_priority();
        let mut throttle = crate::throttle::Throttle::new();
        loop {
            match intake.try_recv() {
                Ok(job) => {
                    let Some(hub) = hub.upgrade() else {
                        return;
                    };
                    hub.intake_bytes
                        .fetch_sub(job.batch.buffer().len(), Ordering::AcqRel);
                    for s in &job.subscribers {
                        let dropped = s.offer(&hub.config, &job.tag, &job.batch);
                        if dropped > 0 {
                            hub.dropped.fetch_add(dropped, Ordering::Relaxed);
                        }
                    }
                    // Not held while pacing sleeps: the hub must be free to go away.
                    drop((job, hub));
                    throttle.pace();
                }
                // Nothing waiting: look again in a moment (while nobody is subscribed, in a
                // while: subscribe wakes the thread), and notice when the hub is gone.
                Err(TryRecvError::Empty) => {
                    let Some(h) = hub.upgrade() else {
                        return;
                    };
                    let subscribed = h.active.load(Ordering::Acquire) > 0;
                    drop(h);
                    if subscribed {
                        std::thread::sleep(FILTER_POLL);
                    } else {
                        std::thread::park_timeout(Duration::from_millis(500));
                    }
                }
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Adds a subscriber. Its events come out of the returned [`Subscription`]; dropping it
    /// unsubscribes.
    pub fn subscribe(self: &Arc<Self>, request: TailRequest) -> Result<Subscription, HubClosed> {
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            filter: request.filter,
            limit: request.limit,
            writer: Mutex::new(LineWriter::new(request.format)),
            tx,
            queued_bytes: AtomicUsize::new(0),
            queued_events: AtomicUsize::new(0),
            wanted: AtomicU64::new(request.limit.unwrap_or(u64::MAX)),
            dropped: AtomicU64::new(0),
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
        if let Some(t) = self.filter_thread.get() {
            t.unpark();
        }
        tracing::info!(
            subscriber = shared.id,
            tag = shared.filter.tag_pattern().unwrap_or("**"),
            "tail subscriber attached"
        );
        Ok(Subscription {
            hub: Arc::clone(self),
            shared,
            rx,
            delivered: 0,
            done: false,
            quiet: Duration::ZERO,
        })
    }

    fn start_filter_thread(self: &Arc<Self>) {
        let mut slot = lock(&self.intake_rx);
        let Some(rx) = slot.take() else {
            return;
        };
        let hub = Arc::downgrade(self);
        match std::thread::Builder::new()
            .name("weir-tail".into())
            .spawn(move || Hub::filter_loop(hub, rx))
        {
            Ok(handle) => {
                let _ = self.filter_thread.set(handle.thread().clone());
            }
            // Subscribers get nothing but heartbeats and skip counts.
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

    /// Ends every stream (each says the server is shutting down, after what was already
    /// queued for it) and refuses new subscribers. Call it when shutdown begins, so HTTP
    /// connections can finish.
    pub fn close(&self) {
        let subs = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::Release);
        for s in subs.iter() {
            if !s.closed.swap(true, Ordering::AcqRel) {
                let _ = s.tx.send(Item::Closed);
            }
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
/// when a CPU would otherwise be idle), else nice 19 on Linux (there `setpriority` with `who` 0
/// is the calling thread). Elsewhere nothing is changed: `setpriority` would renice the whole
/// process.
///
/// A thread at idle priority may wait long for the CPU, so it must hold nothing others wait
/// for: it shares no lock with ingest, and it never wakes a tokio task (subscribers poll their
/// channel), so it never takes the runtime's scheduler lock.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` for the duration of the call; pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
        // SAFETY: setpriority takes plain integers; who 0 is the calling thread on Linux.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } != 0 {
            tracing::debug!("tail: could not lower the filter thread's priority");
        }
    }
}

/// How many bytes of lines one chunk of the stream gathers at most (roughly: the lines of one
/// request are never split).
const CHUNK_BYTES: usize = 256 << 10;

/// One subscriber's end: yields the stream's bytes, chunk by chunk.
pub struct Subscription {
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    rx: Receiver<Item>,
    delivered: u64,
    done: bool,
    /// How long the stream has had nothing to send (for the heartbeat).
    quiet: Duration,
}

/// How often a subscriber's task looks for new lines: the most a line waits on the server.
const POLL: Duration = Duration::from_millis(20);

impl Subscription {
    /// The next bytes of the stream: event lines, `# weir: ...` control lines, or an empty
    /// line when nothing happened for [`HubConfig::heartbeat`]. `None` once the stream is over
    /// (its limit was reached, or the hub closed).
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            // The channel is polled rather than awaited: the filter thread then never wakes a
            // tokio task, so it never touches the runtime's scheduler (see `lower_priority`).
            let first = match self.rx.try_recv() {
                Ok(item) => {
                    self.quiet = Duration::ZERO;
                    item
                }
                Err(TryRecvError::Empty) => {
                    if self.quiet >= self.hub.config.heartbeat {
                        self.quiet = Duration::ZERO;
                        return Some(Bytes::from_static(b"\n"));
                    }
                    tokio::time::sleep(POLL).await;
                    self.quiet += POLL;
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    self.done = true;
                    return None;
                }
            };
            if let Some(chunk) = self.render(first) {
                return Some(chunk);
            }
        }
    }

    /// Writes `first` and whatever else is queued, about one chunk's worth.
    fn render(&mut self, first: Item) -> Option<Bytes> {
        let mut out = Vec::new();
        let before = self.delivered;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Lines(lines, n) => {
                    self.shared
                        .queued_bytes
                        .fetch_sub(lines.len(), Ordering::AcqRel);
                    self.shared.queued_events.fetch_sub(n, Ordering::AcqRel);
                    self.delivered += n as u64;
                    if out.is_empty() {
                        // The common case: hand the lines on without copying.
                        out = Vec::from(lines);
                    } else {
                        out.extend_from_slice(&lines);
                    }
                }
                Item::Dropped => {
                    let n = self.shared.dropped.swap(0, Ordering::AcqRel);
                    if n > 0 {
                        let _ = writeln!(out, "{CONTROL_PREFIX}{n} events dropped (slow reader)");
                    }
                }
                Item::Skipped => {
                    let n = self.shared.skipped.swap(0, Ordering::AcqRel);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "{CONTROL_PREFIX}{n} events skipped unexamined (server busy)"
                        );
                    }
                }
                Item::LimitReached => {
                    let limit = self.shared.limit.unwrap_or(self.delivered);
                    let _ = writeln!(out, "{CONTROL_PREFIX}end (limit of {limit} events reached)");
                    self.done = true;
                }
                Item::Closed => {
                    let _ = writeln!(out, "{CONTROL_PREFIX}end (server shutting down)");
                    self.done = true;
                }
            }
            if !self.done && out.len() < CHUNK_BYTES {
                next = self.rx.try_recv().ok();
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
        while hub.intake_bytes.load(Ordering::Acquire) > 0 {
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
