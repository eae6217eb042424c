//! Reading a chunk back block by block, with memory bounded by its largest block.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use weir_proto::EventTime;

use crate::error::StoreError;
use crate::format::{self, BLOCK_HEADER};
use crate::store::ChunkRef;

/// How a [`PacedReader`] reads: pieces of `piece` bytes, with the disk asked for `ahead`
/// pieces past the reader's position at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadPace {
    pub(crate) piece: usize,
    pub(crate) ahead: usize,
}

/// While the buffer commits: small pieces, one asked for ahead. A commit then waits behind at
/// most one 128 KiB read, and delivery takes the disk in turns with ingest.
pub(crate) const BUSY: ReadPace = ReadPace {
    piece: 128 << 10,
    ahead: 1,
};

/// While the buffer does not commit (a flush after the load, or at shutdown): 1 MiB pieces,
/// two asked for ahead, as fast as the disk reads.
pub(crate) const QUIET: ReadPace = ReadPace {
    piece: 1 << 20,
    ahead: 2,
};

/// A commit less than this long ago makes readers read at the [`BUSY`] pace.
pub(crate) const BUSY_WINDOW: Duration = Duration::from_millis(100);

/// When a buffer's commit threads last wrote, for the readers of its chunks.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitActivity(Arc<AtomicU64>);

/// The instant [`CommitActivity`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl CommitActivity {
    /// Notes a commit now.
    pub(crate) fn note(&self) {
        // Stored plus one, so that zero means "never".
        let micros = u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX);
        self.0.store(micros.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether a commit happened within `window`.
    pub(crate) fn within(&self, window: Duration) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        if last == 0 {
            return false;
        }
        let now = u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX);
        now.saturating_add(1).saturating_sub(last) < window.as_micros() as u64
    }
}

/// Reads a chunk file from its start, a piece at a time, with the disk asked for a bounded
/// number of pieces ahead of the reader, and no more.
///
/// The kernel's own read-ahead for a file read from start to end grows to the device's setting:
/// several megabytes on many virtual disks (8 MiB on the machine weir's benchmarks run on). A
/// disk that takes one request at a time then makes every commit wait behind megabytes of
/// delivery's reads, and the usual I/O schedulers serve reads before writes. So a chunk file is
/// read with the kernel's read-ahead off (`POSIX_FADV_RANDOM`) and the reader asks for the
/// pieces ahead itself (`POSIX_FADV_WILLNEED`): small ones while the buffer is committing
/// ([`BUSY`]), so delivery takes the disk in turns with the acks, and large ones when it is not
/// ([`QUIET`]), so that a flush with nothing arriving goes as fast as the disk reads. The
/// pieces already read are dropped from the page cache: a chunk is read once, and hundreds of
/// megabytes of it would otherwise push out pages worth keeping.
pub(crate) struct PacedReader {
    file: File,
    activity: CommitActivity,
    busy: ReadPace,
    quiet: ReadPace,
    buf: Vec<u8>,
    /// Unread bytes of `buf` start here.
    at: usize,
    /// File offset of the first byte not yet in `buf`.
    pos: u64,
    /// File offset up to which pieces have been asked for.
    requested: u64,
    /// File offset from which the pages read are still in the page cache.
    kept: u64,
    /// Nothing at or past this offset is read or asked for (the chunk's committed length: a
    /// reused chunk file holds older bytes past it).
    end: u64,
    eof: bool,
}

/// Gives the kernel `advice` about `len` bytes of `file` from `offset` (0: to the end); a hint,
/// so a failure or an offset that does not fit is ignored.
pub(crate) fn advise(file: &File, offset: u64, len: u64, advice: libc::c_int) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads the descriptor, which `file` keeps open for the call;
    // advice is a hint and changes no data.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, advice);
    }
}

impl PacedReader {
    /// Reads `file` from its start up to `end` at the [`BUSY`] or [`QUIET`] pace, as
    /// `activity` says.
    pub(crate) fn new(file: File, end: u64, activity: CommitActivity) -> PacedReader {
        PacedReader::with_paces(file, end, activity, BUSY, QUIET)
    }

    pub(crate) fn with_paces(
        file: File,
        end: u64,
        activity: CommitActivity,
        busy: ReadPace,
        quiet: ReadPace,
    ) -> PacedReader {
        advise(&file, 0, 0, libc::POSIX_FADV_RANDOM);
        let mut r = PacedReader {
            file,
            activity,
            busy,
            quiet,
            buf: Vec::new(),
            at: 0,
            pos: 0,
            requested: 0,
            kept: 0,
            end,
            eof: false,
        };
        let pace = r.pace();
        r.ask_ahead(pace);
        r
    }

    fn pace(&self) -> ReadPace {
        let p = if self.activity.within(BUSY_WINDOW) {
            self.busy
        } else {
            self.quiet
        };
        ReadPace {
            piece: p.piece.max(1),
            ahead: p.ahead,
        }
    }

    /// Asks for the pieces from `requested` up to `pace.ahead` pieces past `pos` (never past
    /// `end`).
    fn ask_ahead(&mut self, pace: ReadPace) {
        let until = (self.pos + (pace.ahead * pace.piece) as u64).min(self.end);
        while self.requested < until {
            let len = (pace.piece as u64).min(until - self.requested);
            advise(&self.file, self.requested, len, libc::POSIX_FADV_WILLNEED);
            self.requested += len;
        }
        self.requested = self.requested.max(self.pos);
    }

    /// Drops the file's pages from `kept` up to `until` from the page cache.
    fn drop_cached(&mut self, until: u64) {
        if until > self.kept {
            advise(
                &self.file,
                self.kept,
                until - self.kept,
                libc::POSIX_FADV_DONTNEED,
            );
            self.kept = until;
        }
    }

    /// Reads the next piece into `buf`, drops the pages before it from the page cache and asks
    /// for the pieces ahead.
    fn fill(&mut self) -> std::io::Result<()> {
        let pace = self.pace();
        let want = usize::try_from(self.end.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(pace.piece);
        self.buf.resize(want, 0);
        let mut n = 0;
        while n < want {
            match self.file.read_at(&mut self.buf[n..], self.pos + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.buf.truncate(n);
        self.at = 0;
        self.eof = n < want || self.pos + n as u64 >= self.end;
        self.pos += n as u64;
        self.drop_cached(self.pos);
        if !self.eof {
            self.ask_ahead(pace);
        }
        Ok(())
    }
}

impl Read for PacedReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for PacedReader {
    fn drop(&mut self) {
        // Pages asked for ahead and not read (the reader stopped early) go too.
        self.drop_cached(self.requested);
    }
}

/// Where a reader takes framed blocks from.
pub(crate) enum Source {
    /// A chunk file.
    File {
        /// The file, read a piece at a time.
        reader: PacedReader,
        /// Its path, for errors.
        path: PathBuf,
        /// The chunk's committed length: reading stops there (a chunk file still being
        /// written may hold page padding or a reused file's older bytes past it).
        end: u64,
    },
    /// A memory chunk's framed blocks (shared with the chunk, not copied).
    Memory {
        /// The framed blocks.
        data: Arc<Vec<u8>>,
        /// Offset of the next block.
        pos: usize,
    },
}

/// Reads `buf.len()` bytes, or fewer only at the end of the input. Returns how many were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One entry of a block, as [`parse_entry`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The event time (nil reads as zero).
    pub(crate) time: EventTime,
    /// The byte range of the record (one msgpack map).
    pub(crate) record: Range<usize>,
    /// The byte range of the tag's UTF-8 bytes, in a `[time, record, tag]` entry.
    pub(crate) tag: Option<Range<usize>>,
    /// Where the next entry starts.
    pub(crate) end: usize,
}

/// Parses one entry at `pos`: `[time, record]`, or `[time, record, tag]` with the tag a msgpack
/// `str` holding UTF-8 (see [`crate::format`]).
pub(crate) fn parse_entry(buf: &[u8], pos: usize) -> Result<Entry, String> {
    let (tagged, p) = match weir_proto::msgpack::read_header(buf, pos) {
        Ok((weir_proto::msgpack::Header::Array(2), p)) => (false, p),
        Ok((weir_proto::msgpack::Header::Array(3), p)) => (true, p),
        Ok(_) => {
            return Err(format!(
                "entry at offset {pos} is not [time, record] or [time, record, tag]"
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    let (t, p2) = weir_proto::read_time(buf, p).map_err(|e| e.to_string())?;
    let end = weir_proto::msgpack::skip_value(buf, p2).map_err(|e| e.to_string())?;
    let record = p2..end;
    if !tagged {
        return Ok(Entry {
            time: t.unwrap_or_default(),
            record,
            tag: None,
            end,
        });
    }
    let (len, start) = match weir_proto::msgpack::read_header(buf, end) {
        Ok((weir_proto::msgpack::Header::Str(n), s)) => (n as usize, s),
        Ok(_) => {
            return Err(format!(
                "the tag of the entry at offset {pos} is not a string"
            ))
        }
        Err(e) => return Err(e.to_string()),
    };
    let tag = start..start + len;
    match buf.get(tag.clone()) {
        Some(b) if std::str::from_utf8(b).is_ok() => {}
        Some(_) => return Err(format!("the tag of the entry at offset {pos} is not UTF-8")),
        None => return Err(format!("the tag of the entry at offset {pos} is truncated")),
    }
    Ok(Entry {
        time: t.unwrap_or_default(),
        record,
        end: tag.end,
        tag: Some(tag),
    })
}

/// Reads a chunk's blocks one at a time, checking each block's CRC and gunzipping it with
/// `compress gzip`. Holds one block (as stored, and uncompressed with gzip) plus a piece of
/// the file (see [`PacedReader`]); the buffers are reused from block to block.
///
/// Made by [`ChunkRef::reader`]. Any error is also kept as the chunk's
/// [`ChunkRef::read_error`], and every later call returns it again.
pub struct ChunkReader<'a> {
    chunk: &'a ChunkRef,
    source: Source,
    gzip: bool,
    limit: usize,
    /// The chunk's CRC seed.
    seed: u32,
    /// The current block as stored.
    stored: Vec<u8>,
    /// The current block uncompressed (gzip only).
    plain: Vec<u8>,
    /// File offset of the next block.
    offset: u64,
    failed: Option<StoreError>,
    finished: bool,
}

impl std::fmt::Debug for ChunkReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("chunk", &self.chunk.id())
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(chunk: &'a ChunkRef, source: Source) -> Self {
        ChunkReader {
            gzip: chunk.is_gzip(),
            limit: chunk.block_limit(),
            seed: chunk.chunk.seed,
            chunk,
            source,
            stored: Vec::new(),
            plain: Vec::new(),
            offset: 0,
            failed: None,
            finished: false,
        }
    }

    fn corrupt(&self, message: String) -> StoreError {
        StoreError::Corrupt {
            id: self.chunk.id().to_string(),
            message,
        }
    }

    /// Reads the next block's header and stored bytes into `self.stored`; false at the end.
    fn read_stored(&mut self) -> Result<bool, StoreError> {
        let mut header = [0u8; BLOCK_HEADER];
        let got = match &mut self.source {
            Source::File { end, .. } if self.offset >= *end => 0,
            Source::File { reader, path, .. } => {
                read_full(reader, &mut header).map_err(|e| StoreError::io("read", &*path, &e))?
            }
            Source::Memory { data, pos } => {
                let n = data.len().saturating_sub(*pos).min(BLOCK_HEADER);
                header[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                n
            }
        };
        if got == 0 {
            return Ok(false);
        }
        if got < BLOCK_HEADER {
            return Err(self.corrupt(format!("torn block header at offset {}", self.offset)));
        }
        let len_bytes = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes(len_bytes);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > format::MAX_BLOCK || len as usize > self.limit {
            return Err(self.corrupt(format!(
                "block at offset {} declares {len} bytes (limit {})",
                self.offset, self.limit
            )));
        }
        let len = len as usize;
        self.stored.clear();
        self.stored.resize(len, 0);
        let got = match &mut self.source {
            Source::File { reader, path, .. } => read_full(reader, &mut self.stored)
                .map_err(|e| StoreError::io("read", &*path, &e))?,
            Source::Memory { data, pos } => {
                let n = data.len().saturating_sub(*pos).min(len);
                self.stored[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                n
            }
        };
        if got < len {
            return Err(self.corrupt(format!("torn block at offset {}", self.offset)));
        }
        if format::crc_of(self.seed, len_bytes, &self.stored) != crc {
            return Err(self.corrupt(format!("bad CRC in the block at offset {}", self.offset)));
        }
        if self.gzip {
            self.plain.clear();
            let mut d = flate2::read::GzDecoder::new(&self.stored[..]).take(self.limit as u64 + 1);
            if let Err(e) = d.read_to_end(&mut self.plain) {
                return Err(self.corrupt(format!(
                    "block at offset {} does not gunzip: {e}",
                    self.offset
                )));
            }
            if self.plain.len() > self.limit {
                return Err(self.corrupt(format!(
                    "block at offset {} inflates past {} bytes",
                    self.offset, self.limit
                )));
            }
        }
        self.offset += (BLOCK_HEADER + len) as u64;
        Ok(true)
    }

    /// Moves to the next block; false at the end of the chunk.
    pub(crate) fn advance(&mut self) -> Result<bool, StoreError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.finished {
            return Ok(false);
        }
        match self.read_stored() {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.finished = true;
                self.stored = Vec::new();
                self.plain = Vec::new();
                Ok(false)
            }
            Err(e) => {
                self.chunk.note_read_error(&e);
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The current block's uncompressed payload (empty before the first block).
    pub(crate) fn block(&self) -> &[u8] {
        if self.gzip {
            &self.plain
        } else {
            &self.stored
        }
    }

    /// The current block as stored (a gzip member with `compress gzip`).
    pub(crate) fn stored_block(&self) -> &[u8] {
        &self.stored
    }

    /// Reads the next block and returns its uncompressed payload: msgpack entries back to back
    /// (`[time, record]`, or `[time, record, tag]` with [`crate::BufferConfig::keep_tags`]). `None` at the end of the chunk.
    pub fn next_block(&mut self) -> Result<Option<&[u8]>, StoreError> {
        Ok(if self.advance()? {
            Some(self.block())
        } else {
            None
        })
    }

    /// Reads the next block and returns it as stored: the same as [`ChunkReader::next_block`]
    /// without compression, one gzip member with `compress gzip` (the members concatenated
    /// are [`ChunkRef::stored`]). `None` at the end of the chunk.
    pub fn next_stored_block(&mut self) -> Result<Option<&[u8]>, StoreError> {
        Ok(if self.advance()? {
            Some(self.stored_block())
        } else {
            None
        })
    }

    /// File offset (in the framed chunk) of the next block to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// An event with the tag stored with it: time, record (one msgpack map), and the tag when
/// the entry has one (see [`ChunkEvents::next_tagged_event`]).
pub type TaggedEvent<'a> = (EventTime, &'a [u8], Option<&'a str>);

/// The events of a chunk in order, read one block at a time (see [`ChunkReader`]).
///
/// This is a lending iterator: the record returned by [`ChunkEvents::next_event`] borrows the
/// reader until the next call.
///
/// ```no_run
/// # fn demo(chunk: &weir_store::ChunkRef) -> Result<(), weir_store::StoreError> {
/// let mut events = chunk.event_reader()?;
/// while let Some((time, record)) = events.next_event()? {
///     // format `record` (one msgpack map) ...
/// #   let _ = (time, record);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ChunkEvents<'a> {
    reader: ChunkReader<'a>,
    /// Offset of the next entry in the current block.
    pos: usize,
    events: u64,
}

impl<'a> ChunkEvents<'a> {
    pub(crate) fn new(reader: ChunkReader<'a>) -> Self {
        ChunkEvents {
            reader,
            pos: 0,
            events: 0,
        }
    }

    /// The next event: its time and its record (one msgpack map). `None` after the last one.
    /// An entry that does not decode is an error (kept as the chunk's
    /// [`ChunkRef::read_error`]).
    pub fn next_event(&mut self) -> Result<Option<(EventTime, &[u8])>, StoreError> {
        Ok(self
            .next_tagged_event()?
            .map(|(time, record, _)| (time, record)))
    }

    /// The next event with its own tag: the time, the record (one msgpack map) and the tag the
    /// event was appended under when the buffer stores tags ([`crate::BufferConfig::keep_tags`]);
    /// `None` as the tag for an entry stored without one (the chunk key's tag, if any, is then
    /// the event's tag). `None` after the last event. Errors as [`ChunkEvents::next_event`].
    pub fn next_tagged_event(&mut self) -> Result<Option<TaggedEvent<'_>>, StoreError> {
        while self.pos >= self.reader.block().len() {
            if !self.reader.advance()? {
                return Ok(None);
            }
            self.pos = 0;
        }
        let parsed = parse_entry(self.reader.block(), self.pos);
        match parsed {
            Ok(entry) => {
                self.pos = entry.end;
                self.events += 1;
                let block = self.reader.block();
                // parse_entry checked that the tag is UTF-8.
                let tag = entry.tag.and_then(|r| std::str::from_utf8(&block[r]).ok());
                Ok(Some((entry.time, &block[entry.record], tag)))
            }
            Err(m) => {
                let e = StoreError::Corrupt {
                    id: self.reader.chunk.id().to_string(),
                    message: format!("block before offset {}: {m}", self.reader.offset()),
                };
                self.reader.chunk.note_read_error(&e);
                self.reader.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Events returned so far.
    pub fn count(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[time, {"a": 1}]`, or `[time, {"a": 1}, tag]` with the tag's bytes as given.
    fn entry(sec: u32, tag: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        weir_proto::encode_entry(
            &mut out,
            EventTime::new(sec, 7),
            &[0x81, 0xa1, b'a', 0x01],
            weir_proto::TimeFormat::EventTime,
        );
        if let Some(t) = tag {
            out[0] = 0x93;
            weir_proto::msgpack::write_str(&mut out, t);
        }
        out
    }

    #[test]
    fn parses_both_kinds_of_entry() {
        let mut buf = entry(5, None);
        let second = buf.len();
        buf.extend(entry(6, Some("app.web".as_bytes())));
        let e = parse_entry(&buf, 0).expect("two elements");
        assert_eq!((e.time, e.tag, e.end), (EventTime::new(5, 7), None, second));
        assert_eq!(&buf[e.record], &[0x81, 0xa1, b'a', 0x01]);
        let e = parse_entry(&buf, second).expect("three elements");
        assert_eq!(e.time, EventTime::new(6, 7));
        assert_eq!(&buf[e.record], &[0x81, 0xa1, b'a', 0x01]);
        assert_eq!(e.tag.map(|r| &buf[r]), Some("app.web".as_bytes()));
        assert_eq!(e.end, buf.len());
    }

    #[test]
    fn refuses_a_bad_tag() {
        // Not a string.
        let mut b = entry(1, None);
        b[0] = 0x93;
        b.push(0x01);
        assert!(parse_entry(&b, 0).unwrap_err().contains("not a string"));
        // Not UTF-8.
        let b = entry(1, Some(&[0xff, 0xfe]));
        assert!(parse_entry(&b, 0).unwrap_err().contains("not UTF-8"));
        // Cut short.
        let b = entry(1, Some(b"app.web"));
        assert!(parse_entry(&b[..b.len() - 2], 0).is_err());
        // A missing third element.
        let mut b = entry(1, None);
        b[0] = 0x93;
        assert!(parse_entry(&b, 0).is_err());
    }

    /// A file under the system temp dir holding `bytes`, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(bytes: &[u8]) -> TempFile {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "weir-paced-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::write(&p, bytes).unwrap();
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Reads `bytes` back up to `end` through a paced reader with `busy` and `quiet` pieces of
    /// the given sizes, `step` bytes per call; the buffer counts as committing during the calls whose
    /// number `busy_at` returns true for.
    fn read_back(
        bytes: &[u8],
        end: u64,
        (busy, quiet): (usize, usize),
        step: usize,
        busy_at: impl Fn(usize) -> bool,
    ) -> Vec<u8> {
        let f = TempFile::new(bytes);
        let activity = CommitActivity::default();
        let paces = (
            ReadPace {
                piece: busy,
                ahead: 1,
            },
            ReadPace {
                piece: quiet,
                ahead: 2,
            },
        );
        let mut r = PacedReader::with_paces(
            File::open(&f.0).unwrap(),
            end,
            activity.clone(),
            paces.0,
            paces.1,
        );
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        for call in 0.. {
            if busy_at(call) {
                activity.note();
            } else {
                activity.0.store(0, Ordering::Relaxed);
            }
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        // At the end it stays at the end.
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        out
    }

    #[test]
    fn commit_activity_is_recent_only_after_a_commit() {
        let a = CommitActivity::default();
        assert!(!a.within(BUSY_WINDOW), "no commit yet");
        a.note();
        // A window of an hour: a loaded test machine may pause this thread for a while.
        let hour = Duration::from_secs(3600);
        assert!(a.within(hour));
        assert!(a.clone().within(hour), "clones share it");
        assert!(!a.within(Duration::ZERO));
    }

    #[test]
    fn a_paced_reader_reads_every_byte_across_piece_boundaries() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 4095, 4096, 4097, 8192, 10_000] {
            for step in [1, 100, 4096, 20_000] {
                for busy in [false, true] {
                    let got = read_back(&bytes[..len], u64::MAX, (4096, 8192), step, |_| busy);
                    assert_eq!(got, &bytes[..len], "{len} {step} {busy}");
                    // Stopping at a committed length short of the file's end.
                    let end = len / 3;
                    let got = read_back(&bytes[..len], end as u64, (4096, 8192), step, |_| busy);
                    assert_eq!(got, &bytes[..end], "{len} {step} {busy} end {end}");
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn paced_reads_match_the_file(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20_000),
            busy in 1usize..5000,
            quiet in 1usize..9000,
            step in 1usize..7000,
            switches in proptest::collection::vec(proptest::prelude::any::<bool>(), 1..64),
            cut in 0usize..25_000,
        ) {
            let end = cut.min(bytes.len());
            let got = read_back(&bytes, end as u64, (busy, quiet), step, |call| {
                switches[call % switches.len()]
            });
            proptest::prop_assert_eq!(&got[..], &bytes[..end]);
        }
    }
}
