//! Writing one chunk to its file, durably and without duplicates across retries.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flate2::write::GzEncoder;
use flate2::Compression;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use weir_proto::EventTime;
use weir_store::{ChunkKey, ChunkRef, ChunkSink, TaggedEvent, WriteError};

use crate::config::FileOutputConfig;
use crate::error::FileOutputError;
use crate::path::{with_index, INDEX_MARKER};
use crate::sanitize;

/// Chunk metadata key: where a chunk was written with `append false` (JSON: `path`, `dev`,
/// `ino` of the file).
pub const META_WRITTEN: &str = "out_file.written";
/// Chunk metadata key: the file a chunk was appended to, once the append is complete.
pub const META_APPENDED: &str = "out_file.appended";

/// A chunk's events, read one at a time (a lending iterator: each record borrows the stream
/// until the next call), so that a writer never needs the whole chunk in memory.
pub trait EventStream {
    /// The next event: its time, its record (one msgpack map) and the tag stored with it
    /// (`None` when the chunk keeps no per-event tags: the chunk key's tag is then the
    /// event's); `None` after the last one. An error means the chunk could not be read back.
    fn next_event(&mut self) -> Result<Option<TaggedEvent<'_>>, String>;
}

impl EventStream for weir_store::ChunkEvents<'_> {
    fn next_event(&mut self) -> Result<Option<TaggedEvent<'_>>, String> {
        weir_store::ChunkEvents::next_tagged_event(self).map_err(|e| e.to_string())
    }
}

/// An [`EventStream`] over any iterator of events held in memory (for tests and small
/// sources), without per-event tags.
#[derive(Debug)]
pub struct IterEvents<'a, I> {
    iter: I,
    _records: std::marker::PhantomData<&'a [u8]>,
}

impl<'a, I: Iterator<Item = (EventTime, &'a [u8])>> IterEvents<'a, I> {
    /// Wraps an iterator of events.
    pub fn new(iter: I) -> Self {
        IterEvents {
            iter,
            _records: std::marker::PhantomData,
        }
    }
}

impl<'a, I: Iterator<Item = (EventTime, &'a [u8])>> EventStream for IterEvents<'a, I> {
    fn next_event(&mut self) -> Result<Option<TaggedEvent<'_>>, String> {
        Ok(self.iter.next().map(|(time, record)| (time, record, None)))
    }
}

/// What an output needs from a chunk. [`ChunkRef`] implements it with the store's streaming
/// reader; tests implement it to replay a chunk after a simulated crash.
pub trait ChunkSource {
    /// The chunk id (unique, stable across restarts).
    fn id(&self) -> &str;
    /// The chunk key: tag, time slice, record-key values.
    fn key(&self) -> &ChunkKey;
    /// Opens the events for reading, in order. Each call starts from the first event.
    fn events(&self) -> Result<Box<dyn EventStream + '_>, String>;
    /// A metadata value stored with [`ChunkSource::set_metadata`], possibly before a restart.
    fn metadata(&self, key: &str) -> Option<String>;
    /// Stores a metadata value durably before returning.
    fn set_metadata(&self, key: &str, value: &str) -> Result<(), String>;
}

impl ChunkSource for ChunkRef {
    fn id(&self) -> &str {
        ChunkRef::id(self)
    }
    fn key(&self) -> &ChunkKey {
        ChunkRef::key(self)
    }
    fn events(&self) -> Result<Box<dyn EventStream + '_>, String> {
        match ChunkRef::event_reader(self) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(e.to_string()),
        }
    }
    fn metadata(&self, key: &str) -> Option<String> {
        ChunkRef::metadata(self, key)
    }
    fn set_metadata(&self, key: &str, value: &str) -> Result<(), String> {
        ChunkRef::set_metadata(self, key, value).map_err(|e| e.to_string())
    }
}

/// Formatted text is written out whenever this much has gathered, so a chunk of any size is
/// written through one buffer of about this size (plus one formatted event).
pub const WRITE_BUFFER: usize = 1 << 20;

/// A chunk's events being formatted, [`WRITE_BUFFER`] bytes at a time.
struct Formatted<'c> {
    out: &'c FileOutput,
    id: &'c str,
    /// The chunk key's tag, for events stored without their own.
    tag: &'c str,
    events: Box<dyn EventStream + 'c>,
    /// Formatted text not yet written.
    text: Vec<u8>,
    injected: Vec<u8>,
    skipped: u64,
    done: bool,
}

impl<'c> Formatted<'c> {
    fn new(out: &'c FileOutput, c: &'c dyn ChunkSource) -> Result<Self, FileOutputError> {
        Ok(Formatted {
            out,
            id: c.id(),
            tag: c.key().tag.as_deref().unwrap_or(""),
            events: c.events().map_err(FileOutputError::Read)?,
            text: Vec::new(),
            injected: Vec::new(),
            skipped: 0,
            done: false,
        })
    }

    /// Formats events into `text` until it holds [`WRITE_BUFFER`] bytes or the events end.
    /// Events that cannot be formatted are skipped with a warning.
    fn fill(&mut self) -> Result<(), FileOutputError> {
        let cfg = &self.out.cfg;
        while !self.done && self.text.len() < WRITE_BUFFER {
            let Some((time, record, tag)) =
                self.events.next_event().map_err(FileOutputError::Read)?
            else {
                self.done = true;
                if self.skipped > 0 {
                    tracing::warn!(
                        chunk_id = self.id,
                        "{} event(s) could not be formatted and were not written",
                        self.skipped
                    );
                }
                break;
            };
            let tag = tag.unwrap_or(self.tag);
            let rec: &[u8] = match &cfg.inject {
                Some(inj) => {
                    self.injected.clear();
                    if let Err(e) = inj.apply(tag, time, record, &mut self.injected) {
                        self.skipped += 1;
                        tracing::warn!(chunk_id = self.id, "event skipped: {e}");
                        continue;
                    }
                    &self.injected
                }
                None => record,
            };
            if let Err(e) = cfg.formatter.format(tag, time, rec, &mut self.text) {
                self.skipped += 1;
                tracing::warn!(chunk_id = self.id, "event skipped: {e}");
            }
        }
        Ok(())
    }

    /// True when the chunk formats to nothing at all (checked after the first `fill`).
    fn is_empty(&self) -> bool {
        self.done && self.text.is_empty()
    }
}

/// Written bytes are handed to the disk (`sync_file_range`) every this many bytes while a
/// chunk is written, instead of all at the final fsync.
pub const WRITE_BEHIND_STEP: u64 = 1 << 20;

/// How far behind the newest write the writer waits for the disk: at most this many bytes of
/// a chunk's file are dirty or in flight at once.
pub const WRITE_BEHIND_LAG: u64 = 8 << 20;

/// Starts writeback of what was written and waits for what lies more than
/// [`WRITE_BEHIND_LAG`] behind, so that a large chunk reaches the disk steadily while it is
/// written, and the final fsync has little left to do.
///
/// Why: on ext4 (`data=ordered`), a file's dirty pages are allocated and written when it is
/// synced, in the same journal commit that the buffer's group commit waits for. Hundreds of
/// megabytes of formatted output synced at once stall every ack behind them; a few megabytes
/// at a time do not. This is only a hint to the kernel: durability still comes from the fsync
/// at the end, and errors here are ignored (that fsync reports them).
#[derive(Debug, Default)]
struct WriteBehind {
    /// Offset up to which writeback has been started.
    started: u64,
    /// Offset up to which writeback has been waited for.
    waited: u64,
}

impl WriteBehind {
    fn at(offset: u64) -> Self {
        WriteBehind {
            started: offset,
            waited: offset,
        }
    }

    /// Called after the file was written up to `end`.
    fn advance(&mut self, file: &File, end: u64) {
        if end < self.started.saturating_add(WRITE_BEHIND_STEP) {
            return;
        }
        sync_range(file, self.started, end - self.started, false);
        self.started = end;
        let target = end.saturating_sub(WRITE_BEHIND_LAG);
        if target > self.waited {
            sync_range(file, self.waited, target - self.waited, true);
            self.waited = target;
        }
    }
}

/// `sync_file_range(2)`: starts writeback of a range (and, with `wait`, waits for it). A hint;
/// failures are ignored.
#[cfg(target_os = "linux")]
fn sync_range(file: &File, offset: u64, len: u64, wait: bool) {
    use std::os::fd::AsRawFd;
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
}

#[cfg(not(target_os = "linux"))]
fn sync_range(_file: &File, _offset: u64, _len: u64, _wait: bool) {}

/// A file being written, honouring the crash hook. After any failure it refuses every later
/// write, so that nothing (a gzip trailer on drop, say) lands after the failure point.
struct Hooked<'f> {
    out: &'f FileOutput,
    file: &'f mut File,
    path: &'f Path,
    /// Set at the first failure: every later write is refused.
    stopped: bool,
    /// The failure that stopped the writes, until taken.
    error: Option<FileOutputError>,
    /// The file offset the next write lands at.
    pos: u64,
    behind: WriteBehind,
}

impl Hooked<'_> {
    fn refuse(&mut self, e: FileOutputError) -> io::Error {
        let msg = e.to_string();
        if !self.stopped {
            self.error = Some(e);
        }
        self.stopped = true;
        io::Error::other(msg)
    }

    /// Stops every later write and returns the error that stopped them (or `fallback`).
    fn stop(&mut self, fallback: FileOutputError) -> FileOutputError {
        self.stopped = true;
        self.error.take().unwrap_or(fallback)
    }
}

impl Write for Hooked<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.stopped {
            return Err(io::Error::other("write refused after an earlier failure"));
        }
        let budget = self.out.crash_after.load(Ordering::SeqCst);
        if budget != u64::MAX && (data.len() as u64) >= budget {
            self.out.crash_after.store(u64::MAX, Ordering::SeqCst);
            let part = data.get(..budget as usize).unwrap_or(data);
            if let Err(e) = self.file.write_all(part) {
                return Err(self.refuse(io_err("write", self.path, e)));
            }
            let _ = self.file.sync_all();
            return Err(self.refuse(FileOutputError::SimulatedCrash));
        }
        if budget != u64::MAX {
            self.out
                .crash_after
                .store(budget - data.len() as u64, Ordering::SeqCst);
        }
        match self.file.write_all(data) {
            Ok(()) => {
                self.pos += data.len() as u64;
                self.behind.advance(self.file, self.pos);
                Ok(data.len())
            }
            Err(e) => Err(self.refuse(io_err("write", self.path, e))),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where formatted text goes: the file, or a gzip stream over it.
enum Sink<'f> {
    Plain(Hooked<'f>),
    Gzip(GzEncoder<Hooked<'f>>),
}

impl<'f> Sink<'f> {
    fn hooked(&mut self) -> &mut Hooked<'f> {
        match self {
            Sink::Plain(h) => h,
            Sink::Gzip(g) => g.get_mut(),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), FileOutputError> {
        let r = match self {
            Sink::Plain(h) => h.write_all(data),
            Sink::Gzip(g) => g.write_all(data),
        };
        r.map_err(|e| self.fail(FileOutputError::Gzip(e.to_string())))
    }

    /// Stops every later write and returns the error that stopped them (or `fallback`).
    fn fail(&mut self, fallback: FileOutputError) -> FileOutputError {
        self.hooked().stop(fallback)
    }

    /// Finishes the gzip stream, if any, and fsyncs the file.
    fn finish(self) -> Result<(), FileOutputError> {
        let h = match self {
            Sink::Plain(h) => h,
            Sink::Gzip(g) => {
                let mut g = g;
                if let Err(e) = g.try_finish() {
                    return Err(g.get_mut().stop(FileOutputError::Gzip(e.to_string())));
                }
                match g.finish() {
                    Ok(h) => h,
                    Err(e) => return Err(FileOutputError::Gzip(e.to_string())),
                }
            }
        };
        h.file.sync_all().map_err(|e| io_err("fsync", h.path, e))
    }
}

/// Where a non-append chunk went: the file and the identity of the inode written.
#[derive(Debug, Serialize, Deserialize)]
struct Written {
    path: String,
    dev: u64,
    ino: u64,
}

/// The marker beside an append target while a chunk is being appended.
#[derive(Debug, Serialize, Deserialize)]
struct AppendMarker {
    /// File length before this chunk's bytes.
    offset: u64,
    /// The bytes are all written and synced.
    committed: bool,
}

/// Fluentd's `@type file` output as a [`ChunkSink`].
pub struct FileOutput {
    cfg: FileOutputConfig,
    /// One lock per target file, so that appends to one file never interleave.
    locks: Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>,
    /// The newest time slice written, for `symlink_path`.
    latest_timekey: Mutex<Option<i64>>,
    /// Test hook: stop (as if killed) after this many more data bytes.
    crash_after: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn io_err(op: &'static str, path: &Path, e: io::Error) -> FileOutputError {
    FileOutputError::Io {
        op,
        path: path.to_path_buf(),
        source: e,
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileOutputError> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(d)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err("fsync directory", d, e))
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `mkdir -p` with `mode`, fsyncing the parent of every directory it creates.
pub(crate) fn mkdir_p(dir: &Path, mode: u32) -> Result<(), FileOutputError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    for d in missing.iter().rev() {
        match fs::DirBuilder::new().mode(mode).create(d) {
            Ok(()) => sync_dir(&parent_of(d))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create directory", d, e)),
        }
    }
    Ok(())
}

impl FileOutput {
    /// Makes the output from its configuration.
    pub fn new(cfg: FileOutputConfig) -> Self {
        FileOutput {
            cfg,
            locks: Mutex::new(HashMap::new()),
            latest_timekey: Mutex::new(None),
            crash_after: AtomicU64::new(u64::MAX),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FileOutputConfig {
        &self.cfg
    }

    /// Test hook: the next write of chunk data stops after `n` bytes (with `n` at least the
    /// chunk's size: after all of them, before anything is committed), leaving everything as a
    /// process killed at that point would (no clean-up), and returns an error. Later writes are
    /// normal.
    #[doc(hidden)]
    pub fn crash_after_bytes(&self, n: u64) {
        self.crash_after.store(n, Ordering::SeqCst);
    }

    /// Formats a chunk's events as the file holds them (gzip applied when configured), all in
    /// one buffer: for tests and small chunks. [`FileOutput::write_chunk`] streams instead.
    /// Events that cannot be formatted are skipped with a warning.
    pub fn format_chunk(&self, c: &dyn ChunkSource) -> Result<Vec<u8>, FileOutputError> {
        let mut body = Formatted::new(self, c)?;
        let mut text = Vec::new();
        loop {
            body.fill()?;
            text.append(&mut body.text);
            if body.done {
                break;
            }
        }
        if !self.cfg.gzip || text.is_empty() {
            return Ok(text);
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::default());
        gz.write_all(&text)
            .and_then(|()| gz.finish())
            .map_err(|e| FileOutputError::Gzip(e.to_string()))
    }

    /// The file name template filled in for a chunk (the index still unresolved), checked by
    /// [`sanitize::check_rendered`].
    pub fn render(&self, c: &dyn ChunkSource) -> Result<String, FileOutputError> {
        let rendered = self.cfg.template.render(c.key(), c.id());
        let probe = with_index(&rendered, 0);
        sanitize::check_rendered(&self.cfg.template.source, &probe).map_err(|why| {
            FileOutputError::UnsafePath {
                path: probe.replace('\0', "\\0"),
                why,
            }
        })?;
        Ok(rendered)
    }

    /// Writes one chunk and returns the file written. Blocking; the [`ChunkSink`] impl calls
    /// it off the async threads. Safe to call again for the same chunk after any failure or
    /// crash: lines already written are not written twice.
    pub fn write_chunk(&self, c: &dyn ChunkSource) -> Result<PathBuf, FileOutputError> {
        let rendered = self.render(c)?;
        let dir = parent_of(Path::new(&with_index(&rendered, 0)));
        mkdir_p(&dir, self.cfg.dir_perm)?;
        let written = if rendered.contains(INDEX_MARKER) {
            self.write_indexed(c, &rendered)?
        } else {
            self.write_append(c, Path::new(&rendered))?
        };
        self.update_symlink(c, &written)?;
        Ok(written)
    }

    /// Writes the rest of `body` (its first piece already formatted) to `f`, gzip-compressed
    /// when configured, [`WRITE_BUFFER`] bytes at a time, then fsyncs `f`. Honours the crash
    /// hook. Writes nothing (not even a gzip header) when the chunk formats to nothing.
    fn write_body(
        &self,
        f: &mut File,
        path: &Path,
        body: &mut Formatted<'_>,
    ) -> Result<(), FileOutputError> {
        if body.is_empty() {
            return f.sync_all().map_err(|e| io_err("fsync", path, e));
        }
        let pos = f.stream_position().map_err(|e| io_err("seek", path, e))?;
        let hooked = Hooked {
            out: self,
            file: f,
            path,
            stopped: false,
            error: None,
            pos,
            behind: WriteBehind::at(pos),
        };
        let mut sink = if self.cfg.gzip {
            Sink::Gzip(GzEncoder::new(hooked, Compression::default()))
        } else {
            Sink::Plain(hooked)
        };
        loop {
            sink.write_all(&body.text)?;
            body.text.clear();
            if body.done {
                break;
            }
            if let Err(e) = body.fill() {
                // Nothing more lands in the file (no gzip trailer when the encoder drops).
                sink.hooked().stopped = true;
                return Err(e);
            }
        }
        sink.finish()
    }

    /// `append false`: write the whole chunk to a temporary file beside the target, fsync it,
    /// then give it the first free `_N` name with `link(2)` (which never replaces an existing
    /// file), recording the name and inode in the chunk's metadata first. A retry that finds
    /// that name holding that inode knows the chunk is already written.
    fn write_indexed(
        &self,
        c: &dyn ChunkSource,
        rendered: &str,
    ) -> Result<PathBuf, FileOutputError> {
        let dir = parent_of(Path::new(&with_index(rendered, 0)));
        let tmp = dir.join(format!(".weir-out-file.{}.tmp", c.id()));
        if let Some(w) = c
            .metadata(META_WRITTEN)
            .and_then(|m| serde_json::from_str::<Written>(&m).ok())
        {
            let p = PathBuf::from(&w.path);
            if let Ok(m) = fs::symlink_metadata(&p) {
                if m.dev() == w.dev && m.ino() == w.ino {
                    if tmp.exists() {
                        fs::remove_file(&tmp).map_err(|e| io_err("remove", &tmp, e))?;
                        sync_dir(&dir)?;
                    }
                    return Ok(p);
                }
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.cfg.file_perm)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        let written = Formatted::new(self, c).and_then(|mut body| {
            body.fill()?;
            self.write_body(&mut f, &tmp, &mut body)
        });
        if let Err(e) = written {
            if !matches!(e, FileOutputError::SimulatedCrash) {
                // Best effort: a retry truncates it anyway.
                drop(f);
                if fs::remove_file(&tmp).is_ok() {
                    let _ = sync_dir(&dir);
                }
            }
            return Err(e);
        }
        let meta = f.metadata().map_err(|e| io_err("stat", &tmp, e))?;
        drop(f);
        let mut n = 0u64;
        let target = loop {
            let candidate = PathBuf::from(with_index(rendered, n));
            // Fluentd's find_filepath_available: the first index whose file does not exist.
            if fs::symlink_metadata(&candidate).is_ok() {
                n += 1;
                continue;
            }
            let w = Written {
                path: candidate.to_string_lossy().into_owned(),
                dev: meta.dev(),
                ino: meta.ino(),
            };
            let json =
                serde_json::to_string(&w).map_err(|e| FileOutputError::Metadata(e.to_string()))?;
            c.set_metadata(META_WRITTEN, &json)
                .map_err(FileOutputError::Metadata)?;
            match fs::hard_link(&tmp, &candidate) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io_err("link", &candidate, e)),
            }
        };
        sync_dir(&dir)?;
        fs::remove_file(&tmp).map_err(|e| io_err("remove", &tmp, e))?;
        sync_dir(&dir)?;
        Ok(target)
    }

    fn path_lock(&self, p: &Path) -> Arc<Mutex<()>> {
        let mut m = lock(&self.locks);
        Arc::clone(m.entry(p.to_path_buf()).or_default())
    }

    /// `append true`. Before appending, a marker file `.weir-append.<hash of name>.<chunk id>`
    /// beside
    /// the target records the file's length; it is marked committed once the bytes are synced,
    /// the chunk's metadata then records the append as done, and the marker is removed. Any
    /// writer that finds an uncommitted marker (its own after a crash, or another chunk's)
    /// first cuts the file back to the recorded length: those bytes belong to a chunk that is
    /// still in the buffer and will be written again whole.
    fn write_append(&self, c: &dyn ChunkSource, path: &Path) -> Result<PathBuf, FileOutputError> {
        let path_lock = self.path_lock(path);
        let _guard = lock(&path_lock);
        let dir = parent_of(path);
        let name = file_name(path);
        // Named by a hash of the file name, so that a long file name still leaves room.
        let prefix = format!(".weir-append.{:016x}.", sanitize::fnv1a64(name.as_bytes()));
        let own = dir.join(format!("{prefix}{}", c.id()));
        let path_str = path.to_string_lossy().into_owned();
        if c.metadata(META_APPENDED).as_deref() == Some(path_str.as_str()) {
            if own.exists() {
                fs::remove_file(&own).map_err(|e| io_err("remove", &own, e))?;
                sync_dir(&dir)?;
            }
            return Ok(path.to_path_buf());
        }
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(self.cfg.file_perm)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        // Markers left by interrupted appends.
        let mut cut: Option<u64> = None;
        let mut stale = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| io_err("read directory", &dir, e))?;
        for entry in entries.flatten() {
            let fname = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = fname.strip_prefix(&prefix) else {
                continue;
            };
            let mpath = entry.path();
            let marker = fs::read(&mpath)
                .ok()
                .and_then(|b| serde_json::from_slice::<AppendMarker>(&b).ok());
            let Some(marker) = marker else {
                // A marker torn by a crash while it was first written: nothing was appended
                // under it yet.
                stale.push(mpath);
                continue;
            };
            if marker.committed {
                if owner == c.id() {
                    c.set_metadata(META_APPENDED, &path_str)
                        .map_err(FileOutputError::Metadata)?;
                    fs::remove_file(&mpath).map_err(|e| io_err("remove", &mpath, e))?;
                    sync_dir(&dir)?;
                    return Ok(path.to_path_buf());
                }
                // Another chunk's complete append; that chunk removes its marker.
                continue;
            }
            cut = Some(cut.map_or(marker.offset, |o: u64| o.min(marker.offset)));
            stale.push(mpath);
        }
        if let Some(offset) = cut {
            let len = f.metadata().map_err(|e| io_err("stat", path, e))?.len();
            if len > offset {
                tracing::warn!(
                    file = %path.display(),
                    "cutting {} bytes of an interrupted append (they are written again with their chunk)",
                    len - offset
                );
                f.set_len(offset).map_err(|e| io_err("truncate", path, e))?;
                f.sync_all().map_err(|e| io_err("fsync", path, e))?;
            }
        }
        if !stale.is_empty() {
            for m in &stale {
                fs::remove_file(m).map_err(|e| io_err("remove", m, e))?;
            }
            sync_dir(&dir)?;
        }
        let mut body = Formatted::new(self, c)?;
        body.fill()?;
        if body.is_empty() {
            return Ok(path.to_path_buf());
        }
        let offset = f
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err("seek", path, e))?;
        self.write_marker(&own, offset, false)?;
        if let Err(e) = self.write_body(&mut f, path, &mut body) {
            if !matches!(e, FileOutputError::SimulatedCrash) {
                // Best effort; a marker left behind makes the next writer cut instead.
                if f.set_len(offset).and_then(|()| f.sync_all()).is_ok()
                    && fs::remove_file(&own).is_ok()
                {
                    let _ = sync_dir(&dir);
                }
            }
            return Err(e);
        }
        self.write_marker(&own, offset, true)?;
        c.set_metadata(META_APPENDED, &path_str)
            .map_err(FileOutputError::Metadata)?;
        fs::remove_file(&own).map_err(|e| io_err("remove", &own, e))?;
        sync_dir(&dir)?;
        Ok(path.to_path_buf())
    }

    /// Replaces a marker atomically: write a temporary file, fsync, rename, fsync the directory.
    fn write_marker(&self, p: &Path, offset: u64, committed: bool) -> Result<(), FileOutputError> {
        let dir = parent_of(p);
        let tmp = dir.join(format!(".{}.tmp", file_name(p).trim_start_matches('.')));
        let body = serde_json::to_vec(&AppendMarker { offset, committed })
            .map_err(|e| FileOutputError::Metadata(e.to_string()))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(&body).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        fs::rename(&tmp, p).map_err(|e| io_err("rename", p, e))?;
        sync_dir(&dir)
    }

    /// `symlink_path`: point the link at the file just written when its chunk has the newest
    /// time slice seen so far (only chunks with a time slice count, as in Fluentd).
    fn update_symlink(&self, c: &dyn ChunkSource, target: &Path) -> Result<(), FileOutputError> {
        let (Some(tpl), Some(tk)) = (&self.cfg.symlink_path, c.key().timekey) else {
            return Ok(());
        };
        {
            let mut latest = lock(&self.latest_timekey);
            if latest.is_some_and(|l| tk < l) {
                return Ok(());
            }
            *latest = Some(tk);
        }
        let link = tpl.render(c.key(), c.id());
        sanitize::check_rendered(&tpl.source, &link).map_err(|why| {
            FileOutputError::UnsafePath {
                path: link.replace('\0', "\\0"),
                why,
            }
        })?;
        let link = PathBuf::from(link);
        let dir = parent_of(&link);
        mkdir_p(&dir, self.cfg.dir_perm)?;
        let abs = if target.is_absolute() {
            target.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| io_err("getcwd", target, e))?
                .join(target)
        };
        let tmp = dir.join(format!(
            ".weir-link.{:016x}.tmp",
            sanitize::fnv1a64(file_name(&link).as_bytes())
        ));
        let pointee = if self.cfg.symlink_relative {
            let link_dir = if dir.is_absolute() {
                dir.clone()
            } else {
                std::env::current_dir()
                    .map_err(|e| io_err("getcwd", &dir, e))?
                    .join(&dir)
            };
            relative_path(&link_dir, &abs)
        } else {
            abs
        };
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&pointee, &tmp).map_err(|e| io_err("symlink", &tmp, e))?;
        fs::rename(&tmp, &link).map_err(|e| io_err("rename", &link, e))?;
        sync_dir(&dir)
    }
}

/// The path of `target` as seen from the directory `from` (both absolute): `..` for each of
/// `from`'s components past the common prefix, then the rest of `target`.
fn relative_path(from: &Path, target: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

impl ChunkSink for FileOutput {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let r = weir_store::blocking(|| self.write_chunk(chunk));
            match r {
                Ok(p) => {
                    tracing::debug!(chunk_id = chunk.id(), file = %p.display(), "chunk written");
                    Ok(())
                }
                Err(e) if e.is_unrecoverable() => Err(WriteError::Unrecoverable(e.to_string())),
                Err(e) => Err(WriteError::Retryable(e.to_string())),
            }
        })
    }

    /// The file output reads chunks with the store's streaming reader.
    fn reads_whole_chunk(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod relative_tests {
    use super::relative_path;
    use std::path::{Path, PathBuf};

    #[test]
    fn relative_paths_climb_to_the_common_prefix() {
        assert_eq!(
            relative_path(Path::new("/var/log/link"), Path::new("/var/log/out/a.log")),
            PathBuf::from("../out/a.log")
        );
        assert_eq!(
            relative_path(Path::new("/var/log"), Path::new("/var/log/a.log")),
            PathBuf::from("a.log")
        );
        assert_eq!(
            relative_path(Path::new("/a/b/c"), Path::new("/x/y.log")),
            PathBuf::from("../../../x/y.log")
        );
    }
}

#[cfg(test)]
mod write_behind_tests {
    use super::*;

    /// Writeback is started once a step's worth is written and waited for only past the lag;
    /// the data written through it is untouched.
    #[test]
    fn write_behind_starts_every_step_and_waits_behind_the_lag() {
        let dir = std::env::temp_dir().join(format!("weir-write-behind-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        let mut f = File::create(&path).expect("create");
        let piece = vec![7u8; 256 * 1024];
        let mut wb = WriteBehind::at(0);
        let mut end = 0u64;
        let mut starts = Vec::new();
        while end < 12 << 20 {
            f.write_all(&piece).expect("write");
            end += piece.len() as u64;
            let before = wb.started;
            wb.advance(&f, end);
            if wb.started != before {
                starts.push(wb.started);
            }
            assert!(end - wb.started < WRITE_BEHIND_STEP);
            assert_eq!(wb.waited, wb.started.saturating_sub(WRITE_BEHIND_LAG));
        }
        assert_eq!(starts.len() as u64, end / WRITE_BEHIND_STEP);
        f.sync_all().expect("fsync");
        let back = fs::read(&path).expect("read");
        assert_eq!(back.len() as u64, end);
        assert!(back.iter().all(|&b| b == 7));
        let _ = fs::remove_dir_all(&dir);
    }
}
