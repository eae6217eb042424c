//! The buffer: staged chunks, the queue, group commit and recovery.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};
use weir_proto::{EventBatch, EventTime};

use crate::config::{
    BufferConfig, BufferType, CommitPriority, Compress, FileLayout, FlushMode, OverflowAction,
};
use crate::direct;
use crate::error::StoreError;
use crate::format::{self, MetaFile};
use crate::key::ChunkKey;
use crate::pace::Pace;
use crate::read::{ChunkEvents, ChunkReader, CommitActivity, PacedReader, Source};

/// Locks a mutex, ignoring poisoning (the data under these locks stays consistent because
/// every critical section either completes its update or makes none).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fsyncs a directory so that renames and new names in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, &e))
}

/// Wall-clock seconds derived from tokio's clock, so tests with paused time control it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    unix0: f64,
    t0: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let unix0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            unix0,
            t0: tokio::time::Instant::now(),
        }
    }

    /// Unix seconds now.
    pub(crate) fn now(&self) -> f64 {
        self.unix0 + self.t0.elapsed().as_secs_f64()
    }

    /// The tokio instant of a Unix time.
    pub(crate) fn instant_of(&self, unix: f64) -> tokio::time::Instant {
        let d = (unix - self.unix0).max(0.0);
        self.t0 + std::time::Duration::from_secs_f64(d.min(1e9))
    }
}

/// What the flush workers are told to do.
pub(crate) const RUNNING: u8 = 0;
/// Deliver what is queued once, then stop.
pub(crate) const DRAIN: u8 = 1;
/// Stop after the write in progress.
pub(crate) const STOP: u8 = 2;

/// Where a chunk's bytes are.
enum Storage {
    /// Framed blocks in memory (shared with readers without a copy; a queued chunk takes no
    /// more appends, so the `Arc` is never cloned on write in practice).
    Memory(Mutex<Arc<Vec<u8>>>),
    /// A chunk file and its sidecar.
    File(Mutex<FileState>),
}

struct FileState {
    data_path: PathBuf,
    meta_path: PathBuf,
    file: Option<File>,
    /// Committed length of the data file.
    len: u64,
    on_disk: bool,
    queued: bool,
    /// The data file is written with `O_DIRECT` (see [`crate::direct`]): in whole pages, the
    /// last partial one kept in `tail`.
    direct: bool,
    tail: direct::Tail,
    /// The data file is a delivered chunk's file reused: past `len` it may hold that chunk's
    /// bytes (it is not cut at seal; readers stop at `len`).
    recycled: bool,
}

/// One chunk: its key, its counters and where its bytes are.
pub(crate) struct Chunk {
    pub(crate) id: String,
    pub(crate) key: ChunkKey,
    pub(crate) created: f64,
    shard: usize,
    /// The CRC seed of the chunk's blocks ([`format::seed`] of the id; 0 for memory chunks and
    /// for chunks recovered from version 1 sidecars).
    pub(crate) seed: u32,
    /// Records accepted into the chunk (reserved at append; reduced again if the write fails).
    pub(crate) records: AtomicU64,
    /// Uncompressed payload bytes, counted like `records`.
    pub(crate) bytes: AtomicU64,
    extra: Mutex<Vec<(String, String)>>,
    storage: Storage,
}

impl Chunk {
    fn meta(
        &self,
        compress: Compress,
        state: &str,
        extra: &[(String, String)],
        recycled: bool,
    ) -> MetaFile {
        MetaFile {
            version: if self.seed == 0 {
                1
            } else {
                format::META_VERSION
            },
            id: self.id.clone(),
            tag: self.key.tag.clone(),
            timekey: self.key.timekey,
            variables: self.key.variables.clone(),
            created: self.created,
            state: state.to_string(),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            compress: match compress {
                Compress::Text => "text".into(),
                Compress::Gzip => "gzip".into(),
            },
            extra: extra.to_vec(),
            recycled,
        }
    }
}

/// A request to a commit thread.
enum Cmd {
    Write {
        chunk: Arc<Chunk>,
        /// One framed block, written as it is.
        block: Block,
        records: u64,
        /// Uncompressed payload bytes, as reserved in the chunk's counters.
        bytes: u64,
        done: oneshot::Sender<Result<(), StoreError>>,
        /// When it was handed to the commit thread (see [`crate::pace`]).
        sent: std::time::Instant,
    },
    Seal(Arc<Chunk>),
    Barrier(oneshot::Sender<()>),
    Stop,
}

#[derive(Default)]
struct State {
    /// The chunk taking events, per chunk key and commit shard.
    staged: HashMap<(ChunkKey, usize), Arc<Chunk>>,
    queue: VecDeque<Arc<Chunk>>,
    total_bytes: u64,
    closing: bool,
}

pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) cfg: BufferConfig,
    layout: Option<FileLayout>,
    state: Mutex<State>,
    /// Woken when bytes leave the buffer (for `overflow_action block`) or on shutdown.
    space: Notify,
    /// Woken when a chunk is queued or the mode changes.
    pub(crate) work: Notify,
    shards: Vec<Mutex<mpsc::Sender<Cmd>>>,
    /// The reaper thread's queue (file buffers only).
    reaper: Option<Mutex<mpsc::Sender<Reap>>>,
    /// Delivered chunk files waiting to be reused by new chunks (file buffers only): at most
    /// [`Inner::free_limit`].
    free: Mutex<Vec<PathBuf>>,
    pub(crate) clock: Clock,
    pub(crate) mode: AtomicU8,
    pub(crate) workers: AtomicUsize,
    pub(crate) workers_done: Notify,
    in_flight: AtomicUsize,
    /// File chunks sent to a commit thread to be sealed and not yet in `queue` (counted with
    /// the queued ones, so that a chunk is always counted somewhere on its way to delivery).
    sealing: AtomicUsize,
    fsyncs: AtomicU64,
    batches: AtomicU64,
    block_writes: AtomicU64,
    /// How long each chunk-file write + fdatasync took (for the admin API's metrics).
    commit_latency: weir_metrics::Histogram,
    /// When a commit thread last wrote: chunk readers yield the disk while it is recent.
    commits: CommitActivity,
}

/// What recovery found when a file buffer was opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryReport {
    /// Staged chunks rebuilt (they keep taking events).
    pub staged: usize,
    /// Queued chunks rebuilt (they are delivered first, oldest first).
    pub queued: usize,
    /// Events in the rebuilt chunks.
    pub records: u64,
    /// Uncompressed payload bytes in the rebuilt chunks.
    pub bytes: u64,
    /// Chunk files whose tail was cut: the file and how many bytes were cut. The cut bytes are
    /// copied to `corrupt/<file>.cut-at-<offset>` first; they were never acknowledged if they
    /// were a torn last write.
    pub truncated: Vec<(PathBuf, u64)>,
    /// Chunks moved to `corrupt/` and why (an unreadable sidecar, a missing sidecar).
    pub corrupt: Vec<(PathBuf, String)>,
    /// Files left alone: Fluentd's own buffer files, which weir does not read.
    pub skipped: Vec<PathBuf>,
    /// Chunks already in `failed/` (kept for an operator).
    pub failed_present: usize,
}

/// Counters of a buffer, for logs and an admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Chunks still taking events.
    pub staged_chunks: usize,
    /// Chunks waiting for delivery (not counting those being written out).
    pub queued_chunks: usize,
    /// Chunks being written out by the flush workers.
    pub in_flight_chunks: usize,
    /// Bytes held, as counted against `total_limit_size`.
    pub total_bytes: u64,
    /// Batches the commit threads have taken (one per wake-up).
    pub commit_batches: u64,
    /// fdatasync calls on chunk files.
    pub fsyncs: u64,
    /// Blocks written (one per chunk per append).
    pub blocks_written: u64,
    /// Delivered chunk files kept for reuse by new chunks.
    pub free_files: usize,
}

/// A Fluentd-style buffer in front of one output. Cheap to clone; every clone is the same
/// buffer.
#[derive(Clone)]
pub struct Buffer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// The answer to [`Buffer::append`]: resolves once the events are committed (for a file
/// buffer: written and fdatasync'ed), or with the reason they were not.
#[must_use = "the ack must wait for the commit"]
pub struct Commit(Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>);

impl Commit {
    fn ready(r: Result<(), StoreError>) -> Self {
        Commit(Box::pin(std::future::ready(r)))
    }
}

impl Future for Commit {
    type Output = Result<(), StoreError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// A framed block on its way into a chunk: its header (made with the seed 0 and re-seeded
/// by the commit thread, see [`format::reseed_header`]) and its stored payload. The payload
/// is often a slice of the request the events came in, not a copy of it.
pub(crate) struct Block {
    header: [u8; format::BLOCK_HEADER],
    payload: Bytes,
}

impl Block {
    fn new(payload: Bytes) -> Block {
        Block {
            header: format::block_header(0, &payload),
            payload,
        }
    }

    /// Frames `payload` as stored with `compress`.
    fn stored(payload: Bytes, compress: Compress) -> Block {
        match compress {
            Compress::Text => Block::new(payload),
            Compress::Gzip => Block::new(Bytes::from(format::gzip_block(&payload))),
        }
    }
}

/// Events of one append for one chunk key, already encoded as entries (see [`crate::format`]).
///
/// When a request holds its entries exactly as a chunk stores them, one after the other (what
/// Fluentd and Fluent Bit send in PackedForward), the group is a slice of the request and its
/// bytes are not copied until the commit thread writes them.
struct Group {
    key: ChunkKey,
    /// Entries encoded or copied so far, back to back (allocated on first use).
    data: Vec<u8>,
    /// How many bytes to allocate for `data` when it is first needed.
    hint: usize,
    /// Entry end offsets in the group's payload, counting the entries of `run` as if they
    /// were already copied.
    ends: Vec<usize>,
    /// A byte range of the request that holds entries exactly as the chunk stores them, one
    /// after the other, not yet copied into `data`: copied in one piece when the run ends, or
    /// taken as the whole payload without a copy if nothing else joins the group.
    run: Option<std::ops::Range<usize>>,
    /// The group's payload once framed (uncompressed).
    payload: Bytes,
    /// The whole group as one framed block, until taken.
    block: Option<Block>,
}

/// Bytes of an entry before its record, as the chunk stores it: fixarray 2, then the
/// EventTime as fixext 8 (type 0, seconds and nanoseconds big-endian).
const ENTRY_PREFIX: usize = 11;

/// The prefix a `[time, record]` entry with time `t` has in a chunk.
fn entry_prefix(t: EventTime) -> [u8; ENTRY_PREFIX] {
    let mut p = [0u8; ENTRY_PREFIX];
    p[0] = 0x92;
    p[1] = 0xD7;
    p[3..7].copy_from_slice(&t.sec.to_be_bytes());
    p[7..].copy_from_slice(&t.nsec.to_be_bytes());
    p
}

impl Group {
    /// A group for `key`; `hint` bytes are allocated for `data` when it is first needed, and
    /// room for `entries` entry ends now (the first group of a request usually takes all of
    /// them: the list is then not grown and copied again as entries are added).
    fn new(key: ChunkKey, hint: usize, entries: usize) -> Self {
        Group {
            key,
            data: Vec::new(),
            hint,
            ends: Vec::with_capacity(entries),
            run: None,
            payload: Bytes::new(),
            block: None,
        }
    }

    /// `data`, allocated with the hint on first use.
    fn data(&mut self) -> &mut Vec<u8> {
        if self.data.capacity() == 0 {
            self.data.reserve(self.hint);
        }
        &mut self.data
    }

    /// Copies the pending run of request bytes into `data`.
    fn end_run(&mut self, request: &[u8]) {
        if let Some(r) = self.run.take() {
            self.data().extend_from_slice(request.get(r).unwrap_or(&[]));
        }
    }

    /// Adds an entry that is already stored as the chunk stores it at `entry` in the request:
    /// it joins the pending run when it follows it, else starts a new one.
    fn add_verbatim(&mut self, request: &[u8], entry: std::ops::Range<usize>) {
        match &mut self.run {
            Some(r) if r.end == entry.start => r.end = entry.end,
            _ => {
                self.end_run(request);
                self.run = Some(entry);
            }
        }
        let pending = self.run.as_ref().map_or(0, |r| r.len());
        self.ends.push(self.data.len() + pending);
    }

    /// Frames the whole group as one block (and, with gzip, compresses it). Done before the
    /// state lock is taken, so connections frame (and compress) their requests in parallel.
    fn frame(&mut self, request: &Bytes, compress: Compress) {
        self.payload = match self.run.take() {
            Some(r) if self.data.is_empty() && r.end <= request.len() => request.slice(r),
            run => {
                self.run = run;
                self.end_run(request);
                Bytes::from(std::mem::take(&mut self.data))
            }
        };
        self.block = Some(Block::stored(self.payload.clone(), compress));
    }
}

enum Placed {
    Waiting(Vec<oneshot::Receiver<Result<(), StoreError>>>),
    Overflow,
}

fn new_id(now: f64) -> String {
    let micros = (now * 1e6) as u64;
    format!("{micros:016x}{:016x}", rand::random::<u64>())
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileLayout {
    fn data_name(&self, id: &str, queued: bool) -> String {
        format!(
            "{}{}{id}{}",
            self.prefix,
            if queued { 'q' } else { 'b' },
            self.suffix
        )
    }

    /// The name of a delivered chunk's data file kept for reuse, in [`FileLayout::free_dir`]:
    /// under a new id, so that nothing mistakes it for the delivered chunk.
    fn free_name(&self, id: &str) -> String {
        format!("{}f{id}{}", self.prefix, self.suffix)
    }

    /// Where delivered chunk files wait to be reused: `free/` beside `failed/`; the names
    /// carry the buffer's prefix and suffix, so buffers sharing a directory keep their own.
    fn free_dir(&self) -> PathBuf {
        self.dir.join("free")
    }

    fn is_free_name(&self, name: &str) -> bool {
        name.strip_prefix(&self.prefix)
            .and_then(|m| m.strip_suffix(&self.suffix))
            .and_then(|m| m.strip_prefix('f'))
            .is_some_and(is_hex_id)
    }

    fn meta_name(&self, id: &str) -> String {
        format!("{}{id}{}.meta", self.prefix, self.suffix)
    }

    /// Parses a data file name into (id, queued).
    fn parse_data(&self, name: &str) -> Option<(String, bool)> {
        let mid = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        let (state, id) = mid.split_at_checked(1)?;
        let queued = match state {
            "b" => false,
            "q" => true,
            _ => return None,
        };
        is_hex_id(id).then(|| (id.to_string(), queued))
    }

    fn parse_meta(&self, name: &str) -> Option<String> {
        let mid = name
            .strip_suffix(".meta")?
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        is_hex_id(mid).then(|| mid.to_string())
    }

    fn failed_dir(&self) -> PathBuf {
        self.dir.join("failed")
    }

    fn corrupt_dir(&self) -> PathBuf {
        self.dir.join("corrupt")
    }
}

fn write_meta(path: &Path, mode: u32, meta: &MetaFile) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| StoreError::io("create", &tmp, &e))?;
    let r = f
        .write_all(&meta.to_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("write", &tmp, &e));
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", path, &e))
}

/// Moves `path` into `dir` under the same name (or a numbered one if taken).
/// Cuts a chunk file to `len` bytes, durably.
fn cut_file(path: &Path, len: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io("open", path, &e))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("truncate", path, &e))
}

fn move_aside(path: &Path, dir: &Path) -> Result<PathBuf, StoreError> {
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut target = dir.join(&name);
    let mut n = 1;
    while target.exists() {
        let mut alt = name.clone();
        alt.push(format!(".{n}"));
        target = dir.join(alt);
        n += 1;
    }
    fs::rename(path, &target).map_err(|e| StoreError::io("rename", path, &e))?;
    Ok(target)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn send(&self, shard: usize, cmd: Cmd) -> Result<(), StoreError> {
        let tx = self
            .shards
            .get(shard)
            .ok_or_else(|| StoreError::CommitThreadGone(self.name.clone()))?;
        lock(tx)
            .send(cmd)
            .map_err(|_| StoreError::CommitThreadGone(self.name.clone()))
    }

    /// The commit shard an append goes to: with one shard (or none), 0. With several, chosen
    /// by the calling tokio task, so that every append from one task (one forward connection)
    /// goes to the same shard, and so to the same chunks, in order.
    fn pick_shard(&self) -> usize {
        let n = self.shards.len();
        if n <= 1 {
            return 0;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match tokio::task::try_id() {
            Some(id) => std::hash::Hash::hash(&id, &mut h),
            None => std::hash::Hash::hash(&std::thread::current().id(), &mut h),
        }
        (std::hash::Hasher::finish(&h) % n as u64) as usize
    }

    fn new_chunk(&self, key: ChunkKey, shard: usize) -> Arc<Chunk> {
        let created = self.clock.now();
        let id = new_id(created);
        let storage = match &self.layout {
            None => Storage::Memory(Mutex::new(Arc::new(Vec::new()))),
            Some(l) => Storage::File(Mutex::new(FileState {
                data_path: l.dir.join(l.data_name(&id, false)),
                meta_path: l.dir.join(l.meta_name(&id)),
                file: None,
                len: 0,
                on_disk: false,
                queued: false,
                direct: false,
                tail: direct::Tail::default(),
                recycled: false,
            })),
        };
        let seed = match &self.layout {
            Some(_) => format::seed(&id),
            None => 0,
        };
        Arc::new(Chunk {
            id,
            key,
            created,
            shard,
            seed,
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            extra: Mutex::new(Vec::new()),
            storage,
        })
    }

    /// Takes a staged chunk out of the stage and queues it (memory) or asks its commit thread
    /// to (file), after the writes already sent to it.
    fn seal_locked(&self, st: &mut State, chunk: Arc<Chunk>) {
        let at = (chunk.key.clone(), chunk.shard);
        if st.staged.get(&at).is_some_and(|c| Arc::ptr_eq(c, &chunk)) {
            st.staged.remove(&at);
        }
        match &chunk.storage {
            Storage::Memory(_) => {
                if chunk.records.load(Ordering::Relaxed) == 0 {
                    return;
                }
                st.queue.push_back(chunk);
                self.work.notify_waiters();
            }
            Storage::File(_) => {
                let shard = chunk.shard;
                self.sealing.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = self.send(shard, Cmd::Seal(chunk)) {
                    self.sealing.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(buffer = %self.name, "cannot queue a chunk: {e}");
                }
            }
        }
    }

    fn is_full(&self, chunk: &Chunk) -> bool {
        let th = self.cfg.chunk_full_threshold;
        let bytes = chunk.bytes.load(Ordering::Relaxed) as f64;
        let records = chunk.records.load(Ordering::Relaxed) as f64;
        bytes >= self.cfg.chunk_limit_size as f64 * th
            || self
                .cfg
                .chunk_limit_records
                .is_some_and(|r| records >= r as f64 * th)
    }

    /// Places the groups into chunks, reserving their space, and sends the writes.
    fn try_place(&self, groups: &mut [Group], shard: usize) -> Result<Placed, StoreError> {
        let mut st = self.lock();
        if st.closing {
            return Err(StoreError::ShuttingDown(self.name.clone()));
        }
        if st.total_bytes >= self.cfg.total_limit_size {
            return Ok(Placed::Overflow);
        }
        let mut waits = Vec::new();
        for g in groups {
            let mut first = 0usize;
            while first < g.ends.len() {
                let at = (g.key.clone(), shard);
                let chunk = match st.staged.get(&at) {
                    Some(c) => Arc::clone(c),
                    None => {
                        let c = self.new_chunk(g.key.clone(), shard);
                        st.staged.insert(at, Arc::clone(&c));
                        c
                    }
                };
                let c_bytes = chunk.bytes.load(Ordering::Relaxed);
                let c_records = chunk.records.load(Ordering::Relaxed);
                let start_off = if first == 0 { 0 } else { g.ends[first - 1] };
                let mut last = first;
                while last < g.ends.len() {
                    let size = (g.ends[last] - start_off) as u64;
                    let n = (last - first + 1) as u64;
                    if c_bytes + size > self.cfg.chunk_limit_size
                        || self
                            .cfg
                            .chunk_limit_records
                            .is_some_and(|r| c_records + n > r)
                    {
                        break;
                    }
                    last += 1;
                }
                if last == first {
                    // Nothing fits in this chunk: queue it and take a new one. (Every entry
                    // fits an empty chunk; larger ones were dropped in `prepare`.)
                    if c_records == 0 {
                        break;
                    }
                    self.seal_locked(&mut st, chunk);
                    continue;
                }
                let end_off = g.ends[last - 1];
                let bytes = (end_off - start_off) as u64;
                let n = (last - first) as u64;
                // The whole group fits: its block is already framed. Otherwise (the group
                // spans chunks) frame this part now.
                let block = match g.block.take() {
                    Some(b) if first == 0 && last == g.ends.len() => b,
                    whole => {
                        g.block = whole;
                        let payload = g.payload.slice(start_off..end_off);
                        Block::stored(payload, self.cfg.compress)
                    }
                };
                chunk.records.fetch_add(n, Ordering::Relaxed);
                chunk.bytes.fetch_add(bytes, Ordering::Relaxed);
                st.total_bytes += bytes;
                match &chunk.storage {
                    Storage::Memory(m) => {
                        let mut m = lock(m);
                        let m = Arc::make_mut(&mut m);
                        m.extend_from_slice(&block.header);
                        m.extend_from_slice(&block.payload);
                    }
                    Storage::File(_) => {
                        let (tx, rx) = oneshot::channel();
                        let cmd = Cmd::Write {
                            chunk: Arc::clone(&chunk),
                            block,
                            records: n,
                            bytes,
                            done: tx,
                            sent: std::time::Instant::now(),
                        };
                        if let Err(e) = self.send(chunk.shard, cmd) {
                            chunk.records.fetch_sub(n, Ordering::Relaxed);
                            chunk.bytes.fetch_sub(bytes, Ordering::Relaxed);
                            st.total_bytes -= bytes;
                            return Err(e);
                        }
                        waits.push(rx);
                    }
                }
                if self.cfg.flush_mode == FlushMode::Immediate || self.is_full(&chunk) {
                    self.seal_locked(&mut st, chunk);
                }
                first = last;
            }
        }
        Ok(Placed::Waiting(waits))
    }

    /// Removes the oldest queued chunk (for `drop_oldest_chunk`). Returns false if none.
    fn drop_oldest(&self) -> bool {
        let victim = {
            let mut st = self.lock();
            let v = st.queue.pop_front();
            if let Some(c) = &v {
                st.total_bytes = st
                    .total_bytes
                    .saturating_sub(c.bytes.load(Ordering::Relaxed));
            }
            v
        };
        match victim {
            Some(c) => {
                tracing::warn!(
                    buffer = %self.name,
                    chunk_id = %c.id,
                    records = c.records.load(Ordering::Relaxed),
                    "dropping oldest chunk to make space after buffer overflow"
                );
                self.remove_files(&c);
                true
            }
            None => {
                tracing::error!(buffer = %self.name, "no queued chunks to be dropped for drop_oldest_chunk");
                false
            }
        }
    }

    /// Undoes the reservation of a failed write.
    fn unreserve(&self, chunk: &Chunk, records: u64, bytes: u64) {
        chunk.records.fetch_sub(records, Ordering::Relaxed);
        chunk.bytes.fetch_sub(bytes, Ordering::Relaxed);
        let mut st = self.lock();
        st.total_bytes = st.total_bytes.saturating_sub(bytes);
        drop(st);
        self.space.notify_waiters();
    }

    /// The next queued chunk, counted as in flight before the queue's lock is let go (so
    /// that `stats` never sees it in neither place).
    pub(crate) fn take_next(&self) -> Option<Arc<Chunk>> {
        let mut st = self.lock();
        let c = st.queue.pop_front();
        if c.is_some() {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        c
    }

    pub(crate) fn takeback(&self, chunk: Arc<Chunk>) {
        let mut st = self.lock();
        st.queue.push_front(chunk);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The chunk was delivered: remove it.
    pub(crate) fn purge(&self, chunk: &Chunk) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.remove_files(chunk);
        let mut st = self.lock();
        st.total_bytes = st
            .total_bytes
            .saturating_sub(chunk.bytes.load(Ordering::Relaxed));
        drop(st);
        self.space.notify_waiters();
    }

    /// The chunk cannot be delivered: keep it in `failed/` (file) or log its loss (memory).
    pub(crate) fn fail(&self, chunk: &Chunk, in_flight: bool, why: &str) {
        if in_flight {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        match &chunk.storage {
            Storage::Memory(_) => tracing::error!(
                buffer = %self.name,
                chunk_id = %chunk.id,
                records = chunk.records.load(Ordering::Relaxed),
                "memory buffer: dropping a chunk that could not be delivered: {why}"
            ),
            Storage::File(fs) => {
                let fs = lock(fs);
                let Some(layout) = &self.layout else { return };
                let dir = layout.failed_dir();
                let moved = fs::create_dir_all(&dir)
                    .map_err(|e| StoreError::io("create", &dir, &e))
                    .and_then(|()| move_aside(&fs.data_path, &dir))
                    .and_then(|p| {
                        if fs.meta_path.exists() {
                            move_aside(&fs.meta_path, &dir)?;
                        }
                        sync_dir(&dir)?;
                        sync_dir(&layout.dir)?;
                        Ok(p)
                    });
                match moved {
                    Ok(p) => tracing::error!(
                        buffer = %self.name,
                        chunk_id = %chunk.id,
                        records = chunk.records.load(Ordering::Relaxed),
                        path = %p.display(),
                        "chunk moved to failed/: {why}"
                    ),
                    Err(e) => tracing::error!(
                        buffer = %self.name,
                        chunk_id = %chunk.id,
                        "chunk could not be delivered ({why}) nor moved to failed/: {e}; it stays where it is"
                    ),
                }
            }
        }
        let mut st = self.lock();
        st.total_bytes = st
            .total_bytes
            .saturating_sub(chunk.bytes.load(Ordering::Relaxed));
        drop(st);
        self.space.notify_waiters();
    }

    /// Moves every queued chunk to `failed/` (retry limit reached, as Fluentd clears its queue).
    pub(crate) fn fail_queue(&self, why: &str) -> usize {
        let chunks: Vec<_> = self.lock().queue.drain(..).collect();
        for c in &chunks {
            self.fail(c, false, why);
        }
        chunks.len()
    }

    /// Enqueues staged chunks whose time has come.
    pub(crate) fn enqueue_due(&self, now: f64) {
        let mut st = self.lock();
        let due: Vec<Arc<Chunk>> = st
            .staged
            .values()
            .filter(|c| match self.cfg.flush_mode {
                FlushMode::Immediate => true,
                FlushMode::Interval => c.created + self.cfg.flush_interval.as_secs_f64() <= now,
                FlushMode::Lazy => match (c.key.timekey, self.cfg.keys.timekey) {
                    (Some(tk), Some(_)) => {
                        self.cfg.keys.slice_end(tk) as f64 + self.cfg.timekey_wait.as_secs_f64()
                            <= now
                    }
                    _ => false,
                },
            })
            .cloned()
            .collect();
        for c in due {
            self.seal_locked(&mut st, c);
        }
    }

    fn enqueue_all(&self) {
        let mut st = self.lock();
        let all: Vec<_> = st.staged.values().cloned().collect();
        for c in all {
            self.seal_locked(&mut st, c);
        }
    }

    async fn barrier(&self) {
        let mut waits = Vec::new();
        for shard in 0..self.shards.len() {
            let (tx, rx) = oneshot::channel();
            if self.send(shard, Cmd::Barrier(tx)).is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }

    pub(crate) fn chunk_extra(&self, chunk: &Chunk, key: &str) -> Option<String> {
        lock(&chunk.extra)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn set_chunk_extra(
        &self,
        chunk: &Chunk,
        key: &str,
        value: &str,
    ) -> Result<(), StoreError> {
        let mut extra = lock(&chunk.extra);
        let mut next = extra.clone();
        match next.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => next.push((key.to_string(), value.to_string())),
        }
        if let (Storage::File(fs), Some(layout)) = (&chunk.storage, &self.layout) {
            let fs = lock(fs);
            let state = if fs.queued { "queued" } else { "staged" };
            let meta = chunk.meta(self.cfg.compress, state, &next, fs.recycled);
            write_meta(&fs.meta_path, layout.file_mode, &meta)?;
            sync_dir(&layout.dir)?;
        }
        *extra = next;
        Ok(())
    }

    /// Opens a chunk's framed blocks for reading: the data file a piece at a time, or the
    /// blocks in memory (shared, not copied).
    pub(crate) fn open_blocks(&self, chunk: &Chunk) -> Result<Source, StoreError> {
        match &chunk.storage {
            Storage::Memory(m) => Ok(Source::Memory {
                data: Arc::clone(&lock(m)),
                pos: 0,
            }),
            Storage::File(fs) => {
                let (path, end) = {
                    let fs = lock(fs);
                    (fs.data_path.clone(), fs.len)
                };
                let f = File::open(&path).map_err(|e| StoreError::io("open", &path, &e))?;
                Ok(Source::File {
                    reader: PacedReader::new(f, end, self.commits.clone()),
                    path,
                    end,
                })
            }
        }
    }
}

/// The name a chunk's data file takes while the reaper removes it.
const DELETING_SUFFIX: &str = ".deleting";

/// Bytes the reaper cuts off a chunk file per step.
pub const REMOVE_STEP: u64 = 8 << 20;

/// The reaper's pause between two steps.
pub const REMOVE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// What the reaper thread is told.
enum Reap {
    /// Remove this file, a few megabytes at a time.
    File(PathBuf),
    /// Answer once every file sent before is removed.
    Barrier(oneshot::Sender<()>),
}

/// The reaper thread of a file buffer: removes delivered chunk files.
///
/// Removing a large file in one `unlink` frees all its blocks in one journal transaction (and,
/// on a filesystem mounted with `discard`, discards them all at once); every fdatasync of the
/// group commit waits behind that transaction, for tens of milliseconds. Cutting the file down
/// [`REMOVE_STEP`] bytes at a time, with a short pause between steps, spreads the work over
/// many small transactions, and acks never wait for it.
fn reaper_thread(rx: mpsc::Receiver<Reap>) {
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Reap::File(p) => remove_gradually(&p),
            Reap::Barrier(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// Truncates `p` step by step from its end, then removes it.
fn remove_gradually(p: &Path) {
    if let Ok(f) = OpenOptions::new().write(true).open(p) {
        let mut len = f.metadata().map(|m| m.len()).unwrap_or(0);
        while len > REMOVE_STEP {
            len -= REMOVE_STEP;
            if f.set_len(len).is_err() {
                break;
            }
            std::thread::sleep(REMOVE_PAUSE);
        }
    }
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), "cannot remove a delivered chunk file: {e}");
        }
    }
}

impl Inner {
    /// Removes a delivered or dropped chunk's files: the data file is renamed to its
    /// `.deleting` name (it no longer counts as a chunk, here or for recovery after a crash),
    /// the sidecar is removed, and the reaper thread removes the data file gradually.
    fn remove_files(&self, chunk: &Chunk) {
        let Storage::File(fs) = &chunk.storage else {
            return;
        };
        let fs = lock(fs);
        if self.recycle(&fs.data_path) {
            if let Err(e) = fs::remove_file(&fs.meta_path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %fs.meta_path.display(), "cannot remove a delivered chunk file: {e}");
                }
            }
            return;
        }
        let mut doomed = fs.data_path.as_os_str().to_owned();
        doomed.push(DELETING_SUFFIX);
        let doomed = PathBuf::from(doomed);
        let data = match fs::rename(&fs.data_path, &doomed) {
            Ok(()) => Some(doomed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %fs.data_path.display(), "cannot rename a delivered chunk file for removal: {e}");
                Some(fs.data_path.clone())
            }
        };
        if let Err(e) = fs::remove_file(&fs.meta_path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %fs.meta_path.display(), "cannot remove a delivered chunk file: {e}");
            }
        }
        let Some(data) = data else { return };
        let sent = match &self.reaper {
            Some(tx) => lock(tx).send(Reap::File(data.clone())).is_ok(),
            None => false,
        };
        if !sent {
            remove_gradually(&data);
        }
    }

    /// How many delivered chunk files are kept for reuse: one per commit thread, and one more
    /// for a chunk sealed while another is being delivered.
    fn free_limit(&self) -> usize {
        self.shards.len() + 1
    }

    /// Keeps a delivered chunk's data file for reuse by a new chunk, if there is room among the
    /// kept files: moved to `free/` under a new name. A new chunk that takes it overwrites the
    /// blocks the filesystem has already allocated and written, and its fdatasyncs then have
    /// no allocation to commit; removing the file instead would also cost a journal transaction
    /// (and, on a filesystem mounted with `discard`, a discard of every block). No sync: after
    /// a crash the file is either still the delivered chunk (delivered again: a duplicate, as
    /// for any chunk whose removal a crash interrupts) or a free file.
    fn recycle(&self, path: &Path) -> bool {
        let Some(layout) = &self.layout else {
            return false;
        };
        let mut free = lock(&self.free);
        if free.len() >= self.free_limit() {
            return false;
        }
        let free_dir = layout.free_dir();
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(layout.dir_mode)
            .create(&free_dir)
        {
            tracing::debug!(buffer = %self.name, "cannot create {}: {e}", free_dir.display());
            return false;
        }
        let target = free_dir.join(layout.free_name(&new_id(self.clock.now())));
        direct::drop_cache(path);
        match fs::rename(path, &target) {
            Ok(()) => {
                free.push(target);
                true
            }
            Err(_) => false,
        }
    }

    /// Opens the data file of a chunk about to take its first write: `reuse` (a kept delivered
    /// chunk's file) renamed to the chunk's name if given, else a new file. Returns the file,
    /// whether it is direct and whether it is a reused one.
    fn open_data_file(
        &self,
        path: &Path,
        mode: u32,
        reuse: Option<PathBuf>,
    ) -> Result<(File, bool, bool), StoreError> {
        if let Some(old) = reuse {
            match fs::rename(&old, path) {
                Ok(()) => {
                    let (f, d) = direct::open_existing(path)
                        .map_err(|e| StoreError::io("open", path, &e))?;
                    return Ok((f, d, true));
                }
                Err(e) => {
                    tracing::warn!(buffer = %self.name, path = %old.display(), "cannot reuse a delivered chunk file: {e}");
                    let _ = fs::remove_file(&old);
                }
            }
        }
        let (f, d) = direct::create(path, mode).map_err(|e| StoreError::io("create", path, &e))?;
        Ok((f, d, false))
    }

    /// Waits until the reaper has removed every file handed to it so far.
    async fn reaper_barrier(&self) {
        let Some(tx) = &self.reaper else { return };
        let (done, wait) = oneshot::channel();
        if lock(tx).send(Reap::Barrier(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Puts the calling thread under real-time scheduling (`SCHED_FIFO` at the lowest real-time
/// priority; threads it starts would not inherit it). Refused without `CAP_SYS_NICE` or an
/// `RLIMIT_RTPRIO` of at least 1.
fn realtime_scheduling() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler with pid 0 changes the calling thread's own policy; it reads
    // `param`, which outlives the call, and touches no memory of ours.
    let r = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether weir already said that a commit thread runs at normal priority (said once per
/// process, not once per buffer).
static NORMAL_PRIORITY_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Schedules the calling commit thread as `priority` asks.
fn set_commit_priority(priority: CommitPriority, buffer: &str) {
    if priority == CommitPriority::Normal {
        return;
    }
    if let Err(e) = realtime_scheduling() {
        if !NORMAL_PRIORITY_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::info!(
                buffer,
                "commit threads run at normal priority: the system refused real-time scheduling ({e}); acks may wait longer while the CPUs are busy. Allow it with CAP_SYS_NICE or an RLIMIT_RTPRIO of 1 (see docs/buffering.md), or set commit_priority normal to not ask"
            );
        }
    }
}

/// The commit thread of one shard: takes one command, then everything that queued behind it,
/// and commits them together.
fn commit_thread(inner: Weak<Inner>, rx: mpsc::Receiver<Cmd>) {
    if let Some(inner) = inner.upgrade() {
        set_commit_priority(inner.cfg.commit_priority, &inner.name);
    }
    let mut staging = direct::Staging::default();
    let mut pace = Pace::default();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        if let ([Cmd::Write { .. }], Some(wait)) = (&batch[..], pace.wait()) {
            // A single request while requests come as fast as commits complete: wait a
            // little for a second one to commit with it (see crate::pace).
            if let Ok(more) = rx.recv_timeout(wait) {
                batch.push(more);
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
            }
        }
        for cmd in &batch {
            if let Cmd::Write { sent, .. } = cmd {
                pace.arrived(*sent);
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        if !inner.commit_batch(batch, &mut staging, &mut pace) {
            return;
        }
    }
}

/// A framed block, its records and uncompressed bytes, and who waits for it.
type WriteReq = (Block, u64, u64, oneshot::Sender<Result<(), StoreError>>);

impl Inner {
    /// Commits one batch; false when told to stop.
    fn commit_batch(
        &self,
        batch: Vec<Cmd>,
        staging: &mut direct::Staging,
        pace: &mut Pace,
    ) -> bool {
        self.batches.fetch_add(1, Ordering::Relaxed);
        let mut groups: Vec<(Arc<Chunk>, Vec<WriteReq>)> = Vec::new();
        let mut seals = Vec::new();
        let mut barriers = Vec::new();
        let mut stop = false;
        for cmd in batch {
            match cmd {
                Cmd::Write {
                    chunk,
                    block,
                    records,
                    bytes,
                    done,
                    sent: _,
                } => match groups.iter_mut().find(|(c, _)| Arc::ptr_eq(c, &chunk)) {
                    Some((_, reqs)) => reqs.push((block, records, bytes, done)),
                    None => groups.push((chunk, vec![(block, records, bytes, done)])),
                },
                Cmd::Seal(c) => seals.push(c),
                Cmd::Barrier(tx) => barriers.push(tx),
                Cmd::Stop => stop = true,
            }
        }
        let writes_started = std::time::Instant::now();
        let wrote = !groups.is_empty();
        if wrote {
            // Chunk readers take small pieces from now on, not only once this commit is done.
            self.commits.note();
        }
        for (chunk, mut reqs) in groups {
            for (block, _, _, _) in &mut reqs {
                format::reseed_header(&mut block.header, chunk.seed);
            }
            let total: u64 = reqs.iter().map(|(_, _, b, _)| *b).sum();
            let records: u64 = reqs.iter().map(|(_, r, _, _)| *r).sum();
            let result = self.write_chunk(&chunk, &reqs, staging);
            if result.is_err() {
                self.unreserve(&chunk, records, total);
            }
            for (_, _, _, done) in reqs {
                let _ = done.send(result.clone());
            }
        }
        if wrote {
            pace.committed(writes_started.elapsed());
            self.commits.note();
        }
        if !seals.is_empty() {
            let sealed = seals.len();
            let mut queued = Vec::new();
            for chunk in seals {
                if self.seal_file(&chunk) {
                    queued.push(chunk);
                }
            }
            if let Some(l) = &self.layout {
                if let Err(e) = sync_dir(&l.dir) {
                    tracing::error!(buffer = %self.name, "{e}");
                }
            }
            let mut st = self.lock();
            st.queue.extend(queued);
            self.sealing.fetch_sub(sealed, Ordering::SeqCst);
            drop(st);
            self.work.notify_waiters();
        }
        for b in barriers {
            let _ = b.send(());
        }
        !stop
    }

    /// Writes the framed blocks of one batch to a chunk file, one after the other, and
    /// fdatasyncs it once. On failure the file is cut back to its committed length.
    fn write_chunk(
        &self,
        chunk: &Chunk,
        reqs: &[WriteReq],
        staging: &mut direct::Staging,
    ) -> Result<(), StoreError> {
        let Storage::File(fs) = &chunk.storage else {
            return Ok(());
        };
        let Some(layout) = &self.layout else {
            return Ok(());
        };
        let mut fs = lock(fs);
        if !fs.on_disk {
            // The sidecar says the file is a reused one before it is: recovery then cuts
            // whatever follows the chunk's last block without calling it damage.
            let reuse = lock(&self.free).pop();
            let meta = chunk.meta(
                self.cfg.compress,
                "staged",
                &lock(&chunk.extra),
                reuse.is_some(),
            );
            if let Err(e) = write_meta(&fs.meta_path, layout.file_mode, &meta) {
                if let Some(r) = reuse {
                    lock(&self.free).push(r);
                }
                return Err(e);
            }
            let (file, is_direct, recycled) =
                self.open_data_file(&fs.data_path, layout.file_mode, reuse)?;
            sync_dir(&layout.dir)?;
            fs.file = Some(file);
            fs.len = 0;
            fs.on_disk = true;
            fs.direct = is_direct;
            fs.tail = direct::Tail::default();
            fs.recycled = recycled;
        }
        let len = fs.len;
        let path = fs.data_path.clone();
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.block_writes
            .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        let fs = &mut *fs;
        let Some(file) = fs.file.as_ref() else {
            return Err(StoreError::io(
                "write",
                &path,
                &std::io::Error::other("chunk file is not open"),
            ));
        };
        let pieces: Vec<&[u8]> = reqs
            .iter()
            .flat_map(|(b, _, _, _)| [&b.header[..], &b.payload[..]])
            .collect();
        let commit_started = std::time::Instant::now();
        let mut end = len;
        let mut r = Ok(());
        if fs.direct {
            match direct::write(file, staging, &mut fs.tail, len, &pieces) {
                Ok(e) => end = e,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // The device wants a larger alignment than a page: this file goes through
                    // the page cache from now on, starting with this batch.
                    tracing::warn!(buffer = %self.name, path = %path.display(), "direct write refused ({e}); writing this chunk file through the page cache");
                    if let Err(e) = direct::disable(file).and_then(|()| file.set_len(len)) {
                        r = Err(StoreError::io("write", &path, &e));
                    }
                    fs.direct = false;
                }
                Err(e) => r = Err(StoreError::io("write", &path, &e)),
            }
        }
        if r.is_ok() && !fs.direct {
            for piece in &pieces {
                if let Err(e) = file.write_all_at(piece, end) {
                    r = Err(StoreError::io("write", &path, &e));
                    break;
                }
                end += piece.len() as u64;
            }
        }
        let r = r.and_then(|()| {
            file.sync_data()
                .map_err(|e| StoreError::io("fdatasync", &path, &e))
        });
        self.commit_latency.observe(commit_started.elapsed());
        match r {
            Ok(()) => {
                fs.len = end;
                Ok(())
            }
            Err(e) => {
                // Cut the partial block so the file stays a clean sequence of blocks.
                if let Err(te) = file.set_len(len).and_then(|()| file.sync_data()) {
                    tracing::error!(path = %path.display(), "cannot cut back a failed write: {te}; recovery will cut it");
                }
                Err(e)
            }
        }
    }

    /// Renames a staged chunk file to its queued name. False if the chunk has no data.
    fn seal_file(&self, chunk: &Chunk) -> bool {
        let Storage::File(fs) = &chunk.storage else {
            return false;
        };
        let Some(layout) = &self.layout else {
            return false;
        };
        let mut fs = lock(fs);
        if !fs.on_disk || chunk.records.load(Ordering::Relaxed) == 0 {
            if fs.on_disk {
                let _ = fs::remove_file(&fs.data_path);
                let _ = fs::remove_file(&fs.meta_path);
            }
            return false;
        }
        // Past the committed length: page padding, or a reused file's older bytes. Readers stop
        // at the committed length. The padding is cut; a reused file keeps its length (cutting
        // it could free hundreds of megabytes in one journal transaction, which every
        // fdatasync would wait for: the stall the reaper exists to avoid), and its sidecar
        // keeps saying it is reused, so that recovery cuts its older bytes quietly.
        if fs.direct && !fs.recycled {
            if let Some(Err(e)) = fs.file.as_ref().map(|f| f.set_len(fs.len)) {
                tracing::error!(buffer = %self.name, path = %fs.data_path.display(), "cannot cut the page padding off a chunk file: {e}");
            }
        }
        let meta = chunk.meta(
            self.cfg.compress,
            "queued",
            &lock(&chunk.extra),
            fs.recycled,
        );
        if let Err(e) = write_meta(&fs.meta_path, layout.file_mode, &meta) {
            tracing::warn!(buffer = %self.name, "cannot update the sidecar of a queued chunk: {e}");
        }
        let target = layout.dir.join(layout.data_name(&chunk.id, true));
        match fs::rename(&fs.data_path, &target) {
            Ok(()) => {
                fs.data_path = target;
                fs.queued = true;
                fs.file = None;
            }
            Err(e) => tracing::error!(
                buffer = %self.name,
                "cannot rename {} to its queued name: {e}; it is delivered anyway",
                fs.data_path.display()
            ),
        }
        true
    }
}

impl Buffer {
    /// Opens a buffer: for a file buffer, creates the directory if needed and recovers every
    /// chunk in it (see [`RecoveryReport`]); starts the commit threads. `name` names the buffer
    /// in logs and errors (the output's `@id`).
    pub fn open(cfg: BufferConfig, name: &str) -> Result<(Buffer, RecoveryReport), StoreError> {
        let layout = match &cfg.buffer_type {
            BufferType::Memory => None,
            BufferType::File(l) => Some(l.clone()),
        };
        let shards_n = if layout.is_some() {
            cfg.commit_shards.max(1)
        } else {
            0
        };
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..shards_n {
            let (tx, rx) = mpsc::channel();
            senders.push(Mutex::new(tx));
            receivers.push(rx);
        }
        let (reaper_tx, reaper_rx) = if layout.is_some() {
            let (tx, rx) = mpsc::channel();
            (Some(Mutex::new(tx)), Some(rx))
        } else {
            (None, None)
        };
        let inner = Arc::new(Inner {
            name: name.to_string(),
            cfg,
            layout,
            state: Mutex::new(State::default()),
            space: Notify::new(),
            work: Notify::new(),
            shards: senders,
            reaper: reaper_tx,
            free: Mutex::new(Vec::new()),
            clock: Clock::new(),
            mode: AtomicU8::new(RUNNING),
            workers: AtomicUsize::new(0),
            workers_done: Notify::new(),
            in_flight: AtomicUsize::new(0),
            sealing: AtomicUsize::new(0),
            fsyncs: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            block_writes: AtomicU64::new(0),
            commit_latency: weir_metrics::Histogram::default(),
            commits: CommitActivity::default(),
        });
        let report = match &inner.layout {
            Some(l) => inner.recover(l)?,
            None => RecoveryReport::default(),
        };
        for (i, rx) in receivers.into_iter().enumerate() {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name(format!("weir-commit-{i}"))
                .spawn(move || commit_thread(weak, rx))
                .map_err(|e| StoreError::io("spawn commit thread", PathBuf::new(), &e))?;
        }
        if let Some(rx) = reaper_rx {
            std::thread::Builder::new()
                .name("weir-reaper".into())
                .spawn(move || reaper_thread(rx))
                .map_err(|e| StoreError::io("spawn reaper thread", PathBuf::new(), &e))?;
        }
        Ok((Buffer { inner }, report))
    }

    /// The configuration the buffer runs with.
    pub fn config(&self) -> &BufferConfig {
        &self.inner.cfg
    }

    /// The buffer's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Current counters.
    pub fn stats(&self) -> BufferStats {
        let st = self.inner.lock();
        BufferStats {
            staged_chunks: st.staged.len(),
            queued_chunks: st.queue.len() + self.inner.sealing.load(Ordering::SeqCst),
            in_flight_chunks: self.inner.in_flight.load(Ordering::Relaxed),
            total_bytes: st.total_bytes,
            commit_batches: self.inner.batches.load(Ordering::Relaxed),
            fsyncs: self.inner.fsyncs.load(Ordering::Relaxed),
            blocks_written: self.inner.block_writes.load(Ordering::Relaxed),
            free_files: lock(&self.inner.free).len(),
        }
    }

    /// Adds the events of one request under `tag`. Events are split by chunk key; each part is
    /// appended as one block to its chunk (a part that does not fit the chunk's limits starts a
    /// new chunk). The returned [`Commit`] resolves after every part is committed: for a file
    /// buffer, written and fdatasync'ed together with whatever else queued for the same commit
    /// thread. An event larger than `chunk_limit_size` is dropped with a warning, as Fluentd
    /// does. Does not block; the future does the waiting.
    pub fn append(&self, tag: &str, events: &EventBatch) -> Commit {
        let mut groups = self.prepare(tag, events);
        if groups.is_empty() {
            return Commit::ready(Ok(()));
        }
        let shard = self.inner.pick_shard();
        let inner = Arc::clone(&self.inner);
        match inner.try_place(&mut groups, shard) {
            Err(e) => Commit::ready(Err(e)),
            Ok(Placed::Waiting(waits)) => Commit(Box::pin(wait_all(inner, waits))),
            Ok(Placed::Overflow) => match inner.cfg.overflow_action {
                OverflowAction::ThrowException => {
                    Commit::ready(Err(StoreError::BufferFull(inner.name.clone())))
                }
                OverflowAction::DropOldestChunk => {
                    inner.drop_oldest();
                    match inner.try_place(&mut groups, shard) {
                        Ok(Placed::Waiting(waits)) => Commit(Box::pin(wait_all(inner, waits))),
                        Ok(Placed::Overflow) => {
                            Commit::ready(Err(StoreError::BufferFull(inner.name.clone())))
                        }
                        Err(e) => Commit::ready(Err(e)),
                    }
                }
                OverflowAction::Block => Commit(Box::pin(async move {
                    loop {
                        let notified = inner.space.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        match inner.try_place(&mut groups, shard)? {
                            Placed::Waiting(waits) => {
                                return wait_all(Arc::clone(&inner), waits).await
                            }
                            Placed::Overflow => notified.await,
                        }
                    }
                })),
            },
        }
    }

    /// Splits a request's events by chunk key and encodes them, each group straight into the
    /// buffer that becomes its block, then frames every group.
    fn prepare(&self, tag: &str, events: &EventBatch) -> Vec<Group> {
        let spec = &self.inner.cfg.keys;
        let limit = self.inner.cfg.chunk_limit_size;
        // Without record keys, an event's key depends on its second at most: events of the
        // same second as the one before share its group, and the key (which allocates) is
        // only computed when the second changes.
        let by_second = spec.record_keys.is_empty();
        let mut last: Option<(u32, usize)> = None;
        // With `keep_tags`, every entry ends with the tag: its msgpack str header, made once
        // here on the stack, and its bytes.
        let keep_tags = self.inner.cfg.keep_tags;
        let (header, header_len) = format::str_header(tag.len());
        let tag_header = &header[..header_len];
        // An entry is the record plus its array header and EventTime (at most 11 bytes), and
        // the tag when kept.
        let per_entry = if keep_tags {
            11 + tag_header.len() + tag.len()
        } else {
            11
        };
        let capacity = events.byte_len() + events.len() * per_entry;
        // When the parser saw every entry in chunk form, no entry's bytes need looking at.
        let all_verbatim = !keep_tags && events.in_chunk_form();
        let mut groups: Vec<Group> = Vec::new();
        let request: &[u8] = events.buffer();
        for e in events.entries() {
            let (time, start, end) = (e.time, e.start as usize, e.end as usize);
            let record = request.get(start..end).unwrap_or(&[]);
            let gi = match last {
                Some((sec, gi)) if by_second && sec == time.sec => gi,
                _ => {
                    let key = spec.key_of(tag, time, record);
                    let gi = match groups.iter().position(|g| g.key == key) {
                        Some(i) => i,
                        None => {
                            let (hint, entries) = if groups.is_empty() {
                                (capacity, events.len())
                            } else {
                                (0, 0)
                            };
                            groups.push(Group::new(key, hint, entries));
                            groups.len() - 1
                        }
                    };
                    last = Some((time.sec, gi));
                    gi
                }
            };
            let g = &mut groups[gi];
            // Most forwarders send each entry exactly as the chunk stores it: then the entry
            // is not encoded again, and entries that follow each other are copied in one go.
            let verbatim = all_verbatim
                || (!keep_tags
                    && start >= ENTRY_PREFIX
                    && request.get(start - ENTRY_PREFIX..start) == Some(&entry_prefix(time)[..]));
            let size = if verbatim {
                ENTRY_PREFIX + record.len()
            } else {
                g.end_run(request);
                let at = g.data.len();
                weir_proto::encode_entry(g.data(), time, record, weir_proto::TimeFormat::EventTime);
                if keep_tags {
                    // `[time, record]` becomes `[time, record, tag]`: fixarray 3, then the tag.
                    g.data[at] = 0x93;
                    g.data.extend_from_slice(tag_header);
                    g.data.extend_from_slice(tag.as_bytes());
                }
                g.data.len() - at
            };
            if size as u64 > limit {
                if !verbatim {
                    g.data.truncate(g.data.len() - size);
                }
                tracing::warn!(
                    buffer = %self.inner.name,
                    tag,
                    size,
                    chunk_limit_size = limit,
                    "a record is larger than chunk_limit_size; dropped"
                );
                continue;
            }
            if verbatim {
                g.add_verbatim(request, start - ENTRY_PREFIX..end);
            } else {
                g.ends.push(g.data.len());
            }
        }
        groups.retain(|g| !g.ends.is_empty());
        for g in &mut groups {
            g.frame(events.buffer(), self.inner.cfg.compress);
        }
        groups
    }

    /// Enqueues every staged chunk now (Fluentd's SIGUSR1 / `force_flush`). The flush workers
    /// pick them up at once, except while a retry wait is in progress.
    pub fn flush_all(&self) {
        self.inner.enqueue_all();
        self.inner.work.notify_waiters();
    }

    /// Stops taking events and waits for the commits in progress. With `flush`, every staged
    /// chunk is queued and the flush workers (if [`crate::spawn_flusher`] started them) try to
    /// deliver every queued chunk once before they stop; without it they stop after the write
    /// in progress. What is not delivered stays on disk for the next start (file buffer) or is
    /// lost with an error line (memory buffer).
    pub async fn shutdown(&self, flush: bool) {
        let inner = &self.inner;
        inner.lock().closing = true;
        inner.space.notify_waiters();
        inner.barrier().await;
        if flush {
            inner.enqueue_all();
            inner.barrier().await;
            inner.mode.store(DRAIN, Ordering::SeqCst);
        } else {
            inner.mode.store(STOP, Ordering::SeqCst);
        }
        loop {
            let done = inner.workers_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            inner.work.notify_waiters();
            if inner.workers.load(Ordering::SeqCst) == 0 {
                break;
            }
            done.await;
        }
        for shard in 0..inner.shards.len() {
            let _ = inner.send(shard, Cmd::Stop);
        }
        // Delivered chunk files are gone before shutdown returns (otherwise the next start
        // removes what is left of them).
        inner.reaper_barrier().await;
        if inner.layout.is_none() {
            let st = inner.lock();
            let chunks = st.staged.len() + st.queue.len();
            if chunks > 0 {
                tracing::error!(
                    buffer = %inner.name,
                    chunks,
                    bytes = st.total_bytes,
                    "memory buffer shut down with undelivered chunks; they are lost"
                );
            }
        }
    }

    /// Waits until everything sent to the commit threads so far is committed, and every
    /// delivered chunk's files are removed (for tests and orderly shutdowns).
    pub async fn sync(&self) {
        self.inner.barrier().await;
        self.inner.reaper_barrier().await;
    }
}

async fn wait_all(
    inner: Arc<Inner>,
    waits: Vec<oneshot::Receiver<Result<(), StoreError>>>,
) -> Result<(), StoreError> {
    let mut result = Ok(());
    for w in waits {
        let r = w
            .await
            .unwrap_or_else(|_| Err(StoreError::CommitThreadGone(inner.name.clone())));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

impl Inner {
    /// Scans the chunk directory and rebuilds the stage and the queue.
    fn recover(&self, layout: &FileLayout) -> Result<RecoveryReport, StoreError> {
        let mut report = RecoveryReport::default();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(layout.dir_mode)
            .create(&layout.dir)
            .map_err(|e| StoreError::io("create directory", &layout.dir, &e))?;
        let mut datas = Vec::new();
        let mut metas = HashMap::new();
        let mut free = Vec::new();
        let entries = fs::read_dir(&layout.dir)
            .map_err(|e| StoreError::io("read directory", &layout.dir, &e))?;
        for e in entries {
            let e = e.map_err(|e| StoreError::io("read directory", &layout.dir, &e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some((id, queued)) = layout.parse_data(&name) {
                datas.push((id, queued, e.path()));
            } else if let Some(id) = layout.parse_meta(&name) {
                metas.insert(id, e.path());
            } else if name.ends_with(".meta.tmp") && name.starts_with(&layout.prefix) {
                // An unfinished sidecar rewrite: the rename never happened, so the old sidecar
                // (or none, for a chunk that never took a write) is the real one.
                let _ = fs::remove_file(e.path());
            } else if name
                .strip_suffix(DELETING_SUFFIX)
                .is_some_and(|n| layout.parse_data(n).is_some())
            {
                // A delivered chunk whose removal a stop interrupted.
                let _ = fs::remove_file(e.path());
            }
        }
        let failed = layout.failed_dir();
        if let Ok(rd) = fs::read_dir(&failed) {
            report.failed_present = rd
                .filter_map(Result::ok)
                .filter(|e| {
                    layout
                        .parse_data(&e.file_name().to_string_lossy())
                        .is_some()
                })
                .count();
        }
        datas.sort();
        let corrupt_dir = layout.corrupt_dir();
        let mut staged: Vec<Arc<Chunk>> = Vec::new();
        let mut queued: Vec<Arc<Chunk>> = Vec::new();
        for (id, is_queued, path) in datas {
            let meta_path = metas.remove(&id);
            let fluentd_meta = {
                let mut p = path.as_os_str().to_owned();
                p.push(".meta");
                PathBuf::from(p)
            };
            let meta = match &meta_path {
                None if fluentd_meta.exists() => {
                    tracing::warn!(path = %path.display(), "a Fluentd buffer file; weir does not read these");
                    report.skipped.push(path);
                    continue;
                }
                None => Err("its sidecar is missing".to_string()),
                Some(mp) => fs::read(mp)
                    .map_err(|e| e.to_string())
                    .and_then(|b| MetaFile::from_bytes(&b))
                    .and_then(|m| {
                        if m.id == id {
                            Ok(m)
                        } else {
                            Err(format!("sidecar names chunk {}", m.id))
                        }
                    }),
            };
            let meta = match meta {
                Ok(m) => m,
                Err(why) => {
                    fs::create_dir_all(&corrupt_dir)
                        .map_err(|e| StoreError::io("create", &corrupt_dir, &e))?;
                    let moved = move_aside(&path, &corrupt_dir)?;
                    if let Some(mp) = &meta_path {
                        move_aside(mp, &corrupt_dir)?;
                    }
                    sync_dir(&corrupt_dir)?;
                    tracing::error!(
                        path = %path.display(),
                        moved_to = %moved.display(),
                        "chunk with an unreadable sidecar moved aside: {why}"
                    );
                    report.corrupt.push((path, why));
                    continue;
                }
            };
            let compress = if meta.compress == "gzip" {
                Compress::Gzip
            } else {
                Compress::Text
            };
            let data = fs::read(&path).map_err(|e| StoreError::io("read", &path, &e))?;
            let scan = format::scan_chunk(&data, meta.seed());
            let mut good_len = scan.good_len;
            let mut records = 0u64;
            let mut bytes = 0u64;
            for r in &scan.payloads {
                let payload = &data[r.clone()];
                let decoded = match compress {
                    Compress::Text => Ok(payload.to_vec()),
                    Compress::Gzip => {
                        format::gunzip_block(payload, self.cfg.chunk_limit_size as usize * 2)
                    }
                };
                match decoded.and_then(|d| format::count_entries(&d).map(|n| (n, d.len()))) {
                    Ok((n, len)) => {
                        records += n;
                        bytes += len as u64;
                    }
                    Err(why) => {
                        tracing::error!(path = %path.display(), offset = r.start - format::BLOCK_HEADER, "block with a good CRC does not decode: {why}");
                        good_len = r.start - format::BLOCK_HEADER;
                        break;
                    }
                }
            }
            if good_len < data.len() && format::is_padding(&data[good_len..]) {
                // Only the zero padding of the last direct write: not damage.
                cut_file(&path, good_len as u64)?;
            } else if good_len < data.len() && meta.recycled {
                // A reused file: what follows the chunk's blocks is the older chunk's bytes
                // (their CRCs carry the older chunk's id), after at most a torn last write
                // that was never acknowledged. Damage inside the chunk would look the same, so
                // the cut is logged with its offset.
                cut_file(&path, good_len as u64)?;
                tracing::info!(path = %path.display(), offset = good_len, cut = data.len() - good_len, "cut a reused chunk file after its last intact block (the rest is an older chunk's bytes)");
            } else if good_len < data.len() {
                fs::create_dir_all(&corrupt_dir)
                    .map_err(|e| StoreError::io("create", &corrupt_dir, &e))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let cut_path = corrupt_dir.join(format!("{name}.cut-at-{good_len}"));
                fs::write(&cut_path, &data[good_len..])
                    .map_err(|e| StoreError::io("write", &cut_path, &e))?;
                cut_file(&path, good_len as u64)?;
                tracing::warn!(
                    path = %path.display(),
                    cut = data.len() - good_len,
                    "cut a torn or damaged tail off a chunk (copied to corrupt/)"
                );
                report
                    .truncated
                    .push((path.clone(), (data.len() - good_len) as u64));
            }
            let Some(mp) = meta_path else { continue };
            if records == 0 {
                let _ = fs::remove_file(&path);
                let _ = fs::remove_file(&mp);
                continue;
            }
            let key = ChunkKey {
                tag: meta.tag.clone(),
                timekey: meta.timekey,
                variables: meta.variables.clone(),
            };
            let chunk = Arc::new(Chunk {
                id: id.clone(),
                key,
                created: meta.created,
                shard: (u64::from_str_radix(&id[16..32], 16).unwrap_or(0) as usize)
                    % self.shards.len().max(1),
                seed: meta.seed(),
                records: AtomicU64::new(records),
                bytes: AtomicU64::new(bytes),
                extra: Mutex::new(meta.extra.clone()),
                storage: Storage::File(Mutex::new(FileState {
                    data_path: path.clone(),
                    meta_path: mp,
                    file: None,
                    len: good_len as u64,
                    on_disk: true,
                    queued: is_queued,
                    direct: false,
                    tail: direct::Tail::default(),
                    recycled: false,
                })),
            });
            report.records += records;
            report.bytes += bytes;
            if is_queued {
                queued.push(chunk);
            } else {
                staged.push(chunk);
            }
        }
        // Sidecars without data: the chunk never took a write, or was delivered and its data
        // file removed first.
        for (_, mp) in metas {
            let _ = fs::remove_file(mp);
        }
        // Delivered chunk files kept for reuse, as many as this configuration keeps.
        if let Ok(rd) = fs::read_dir(layout.free_dir()) {
            free.extend(
                rd.filter_map(Result::ok)
                    .filter(|e| layout.is_free_name(&e.file_name().to_string_lossy()))
                    .map(|e| e.path()),
            );
        }
        free.sort();
        let keep = free.len().min(self.free_limit());
        for extra in free.split_off(keep) {
            let _ = fs::remove_file(extra);
        }
        *lock(&self.free) = free;
        let mut st = self.lock();
        for c in queued {
            st.total_bytes += c.bytes.load(Ordering::Relaxed);
            st.queue.push_back(c);
        }
        // Staged chunks reopen for appends (each on the shard its id gives); a second one with
        // the same key and shard is queued instead.
        for c in staged {
            st.total_bytes += c.bytes.load(Ordering::Relaxed);
            if let Storage::File(fs) = &c.storage {
                let mut fs = lock(fs);
                match OpenOptions::new().write(true).open(&fs.data_path) {
                    Ok(f) => fs.file = Some(f),
                    Err(e) => return Err(StoreError::io("open", &fs.data_path, &e)),
                }
            }
            let at = (c.key.clone(), c.shard);
            if let Some(old) = st.staged.insert(at.clone(), Arc::clone(&c)) {
                st.staged.insert(at, Arc::clone(&old));
                let newer = c;
                // Queue the newer duplicate right away on the same thread: rename it.
                drop(st);
                self.seal_file(&newer);
                st = self.lock();
                st.queue.push_back(newer);
            }
        }
        report.staged = st.staged.len();
        report.queued = st.queue.len();
        drop(st);
        sync_dir(&layout.dir)?;
        Ok(report)
    }
}

/// A chunk handed to an output: its key, its events and its metadata.
///
/// Making one reads nothing. A writer should read the events with [`ChunkRef::reader`] or
/// [`ChunkRef::event_reader`], which hold one block at a time, so that delivering a chunk of
/// any size takes memory in proportion to its largest block rather than to the chunk.
/// [`ChunkRef::blob`], [`ChunkRef::stored`] and [`ChunkRef::events`] load the **whole** chunk
/// into memory on first use (once; later calls share it), which for a file buffer can be up to
/// `chunk_limit_size` (256 MiB by default) or twice that with `compress gzip`.
///
/// If the chunk cannot be read back (an I/O error, a bad CRC, a block that does not decode),
/// the readers return the error, [`ChunkRef::blob`] and friends return what was read before
/// it (nothing), and [`ChunkRef::read_error`] keeps it: the flusher then moves the chunk to
/// `failed/` whatever the output answered, so a damaged chunk is never counted as delivered.
pub struct ChunkRef {
    pub(crate) chunk: Arc<Chunk>,
    pub(crate) inner: Arc<Inner>,
    loaded: OnceLock<Loaded>,
    read_error: Mutex<Option<StoreError>>,
}

/// A whole chunk in memory, for the [`ChunkRef::blob`] family.
#[derive(Default)]
struct Loaded {
    stored: Bytes,
    blob: Bytes,
}

impl std::fmt::Debug for ChunkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkRef")
            .field("id", &self.chunk.id)
            .field("key", &self.chunk.key)
            .field("records", &self.records())
            .finish_non_exhaustive()
    }
}

impl ChunkRef {
    /// True when the chunk is in memory (reading it back does no I/O).
    pub(crate) fn in_memory(chunk: &Chunk) -> bool {
        matches!(chunk.storage, Storage::Memory(_))
    }

    /// A handle on a queued chunk. Reads nothing.
    pub(crate) fn new(inner: Arc<Inner>, chunk: Arc<Chunk>) -> ChunkRef {
        ChunkRef {
            chunk,
            inner,
            loaded: OnceLock::new(),
            read_error: Mutex::new(None),
        }
    }

    /// Remembers the first error met while reading the chunk back.
    pub(crate) fn note_read_error(&self, e: &StoreError) {
        let mut slot = lock(&self.read_error);
        if slot.is_none() {
            *slot = Some(e.clone());
        }
    }

    /// The first error met while reading this chunk back, through any reader or the whole-chunk
    /// accessors. The flusher checks it after every write.
    pub fn read_error(&self) -> Option<StoreError> {
        lock(&self.read_error).clone()
    }

    /// The largest block payload (stored or uncompressed) a reader accepts: twice
    /// `chunk_limit_size`, the bound recovery applies too. Appends never write a block above
    /// `chunk_limit_size` (plus gzip's few bytes of overhead), so anything larger is damage.
    pub(crate) fn block_limit(&self) -> usize {
        usize::try_from(self.inner.cfg.chunk_limit_size.saturating_mul(2)).unwrap_or(usize::MAX)
    }

    /// Reads the chunk block by block: each call to [`ChunkReader::next_block`] reads one
    /// block, checks its CRC and returns its uncompressed payload (gunzipped with `compress
    /// gzip`). Memory held: one block plus a piece of the file (at most 1 MiB), read at a pace
    /// that leaves the disk to commits while the buffer takes appends.
    /// Blocking I/O for a file buffer: call it off the async threads.
    pub fn reader(&self) -> Result<ChunkReader<'_>, StoreError> {
        match self.inner.open_blocks(&self.chunk) {
            Ok(source) => Ok(ChunkReader::new(self, source)),
            Err(e) => {
                self.note_read_error(&e);
                Err(e)
            }
        }
    }

    /// Reads the events in order, one block in memory at a time: see [`ChunkEvents`].
    /// Blocking I/O for a file buffer: call it off the async threads.
    pub fn event_reader(&self) -> Result<ChunkEvents<'_>, StoreError> {
        Ok(ChunkEvents::new(self.reader()?))
    }

    /// Loads the whole chunk now (what [`ChunkRef::blob`], [`ChunkRef::stored`] and
    /// [`ChunkRef::events`] would do on first use). Blocking I/O for a file buffer.
    pub fn load(&self) -> Result<(), StoreError> {
        self.loaded();
        match self.read_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn loaded(&self) -> &Loaded {
        self.loaded.get_or_init(|| match self.load_whole() {
            Ok(l) => l,
            Err(e) => {
                self.note_read_error(&e);
                Loaded::default()
            }
        })
    }

    fn load_whole(&self) -> Result<Loaded, StoreError> {
        let mut r = self.reader()?;
        let gzip = self.is_gzip();
        let mut stored = Vec::new();
        let mut blob = Vec::new();
        while r.advance()? {
            stored.extend_from_slice(r.stored_block());
            if gzip {
                blob.extend_from_slice(r.block());
            }
        }
        let stored = Bytes::from(stored);
        let blob = if gzip {
            Bytes::from(blob)
        } else {
            // The same bytes: share them.
            stored.clone()
        };
        Ok(Loaded { stored, blob })
    }

    /// The chunk id: 32 hex digits, unique, ordered by creation time.
    pub fn id(&self) -> &str {
        &self.chunk.id
    }

    /// The chunk key.
    pub fn key(&self) -> &ChunkKey {
        &self.chunk.key
    }

    /// Creation time, Unix seconds.
    pub fn created(&self) -> f64 {
        self.chunk.created
    }

    /// Number of events (from the chunk's counters, which recovery recounts and the sidecar
    /// records; reads nothing).
    pub fn records(&self) -> u64 {
        self.chunk.records.load(Ordering::Relaxed)
    }

    /// Uncompressed payload bytes of the chunk (from its counters; reads nothing).
    pub fn bytes(&self) -> u64 {
        self.chunk.bytes.load(Ordering::Relaxed)
    }

    /// The events as one packed blob: msgpack `[time, record]` entries back to back (the
    /// forward protocol's PackedForward entries), uncompressed; `[time, record, tag]` entries
    /// with [`BufferConfig::keep_tags`] (see [`crate::format`]).
    ///
    /// Loads the **whole chunk** into memory on first use (blocking I/O for a file buffer);
    /// writers should prefer [`ChunkRef::reader`] / [`ChunkRef::event_reader`]. Empty if the
    /// chunk cannot be read (see [`ChunkRef::read_error`]).
    pub fn blob(&self) -> &Bytes {
        &self.loaded().blob
    }

    /// The payloads as stored: equal to [`ChunkRef::blob`] without compression, or a
    /// multi-member gzip stream of it with `compress gzip`.
    ///
    /// Loads the **whole chunk** into memory on first use, like [`ChunkRef::blob`] (with
    /// `compress gzip` both are kept; without, they share one copy).
    pub fn stored(&self) -> &Bytes {
        &self.loaded().stored
    }

    /// True when [`ChunkRef::stored`] is gzip.
    pub fn is_gzip(&self) -> bool {
        self.inner.cfg.compress == Compress::Gzip
    }

    /// The events in order: time and record bytes (one msgpack map each).
    ///
    /// Iterates over [`ChunkRef::blob`], so it loads the **whole chunk** on first use; writers
    /// should prefer [`ChunkRef::event_reader`]. Stops early (and records a
    /// [`ChunkRef::read_error`]) at an entry that does not decode.
    pub fn events(&self) -> impl Iterator<Item = (EventTime, &[u8])> + '_ {
        let buf: &[u8] = self.blob();
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= buf.len() {
                return None;
            }
            match crate::read::parse_entry(buf, pos) {
                Ok(entry) => {
                    pos = entry.end;
                    Some((entry.time, &buf[entry.record]))
                }
                Err(m) => {
                    self.note_read_error(&StoreError::Corrupt {
                        id: self.chunk.id.clone(),
                        message: m,
                    });
                    pos = buf.len();
                    None
                }
            }
        })
    }

    /// A metadata value the output stored earlier with [`ChunkRef::set_metadata`] (possibly
    /// before a restart).
    pub fn metadata(&self, key: &str) -> Option<String> {
        self.inner.chunk_extra(&self.chunk, key)
    }

    /// Stores a metadata value durably (the sidecar is replaced and fsync'ed) before returning,
    /// so a retry after a crash sees it. Blocking I/O; call it once per chunk, not per event.
    pub fn set_metadata(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.set_chunk_extra(&self.chunk, key, value)
    }
}

/// What a buffer holds at one moment, for the admin API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BufferUsage {
    /// Chunks still taking events.
    pub stage_length: usize,
    /// Uncompressed bytes in them.
    pub stage_bytes: u64,
    /// Chunks waiting for delivery (not counting those being written out).
    pub queue_length: usize,
    /// Uncompressed bytes in them.
    pub queue_bytes: u64,
    /// Seconds since the oldest staged or queued chunk was created.
    pub oldest_age: Option<f64>,
    /// The time keys of the staged and queued chunks, ascending, without repeats.
    pub timekeys: Vec<i64>,
}

impl Buffer {
    /// The latency of every chunk-file write + fdatasync so far.
    pub fn commit_latency(&self) -> &weir_metrics::Histogram {
        &self.inner.commit_latency
    }

    /// What the buffer holds now (read-only; takes the state lock briefly).
    pub fn usage(&self) -> BufferUsage {
        let now = self.inner.clock.now();
        let st = self.inner.lock();
        let mut u = BufferUsage {
            stage_length: st.staged.len(),
            queue_length: st.queue.len(),
            ..BufferUsage::default()
        };
        let mut oldest: Option<f64> = None;
        for (c, staged) in st
            .staged
            .values()
            .map(|c| (c, true))
            .chain(st.queue.iter().map(|c| (c, false)))
        {
            let bytes = c.bytes.load(Ordering::Relaxed);
            if staged {
                u.stage_bytes += bytes;
            } else {
                u.queue_bytes += bytes;
            }
            oldest = Some(oldest.map_or(c.created, |o| o.min(c.created)));
            if let Some(tk) = c.key.timekey {
                u.timekeys.push(tk);
            }
        }
        drop(st);
        u.timekeys.sort_unstable();
        u.timekeys.dedup();
        u.oldest_age = oldest.map(|o| (now - o).max(0.0));
        u
    }
}
