//! Reading a chunk back block by block, with memory bounded by its largest block.

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use weir_proto::EventTime;

use crate::error::StoreError;
use crate::format::{self, BLOCK_HEADER};
use crate::store::ChunkRef;

/// Capacity of the buffered reader over a chunk file.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// Where a reader takes framed blocks from.
pub(crate) enum Source {
    /// A chunk file.
    File {
        /// The file, buffered.
        reader: BufReader<File>,
        /// Its path, for errors.
        path: PathBuf,
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

/// Parses one `[time, record]` entry at `pos`: the time (nil reads as zero) and the byte
/// range of the record, whose end is where the next entry starts.
pub(crate) fn parse_entry(buf: &[u8], pos: usize) -> Result<(EventTime, Range<usize>), String> {
    match weir_proto::msgpack::read_header(buf, pos) {
        Ok((weir_proto::msgpack::Header::Array(2), p)) => {
            let (t, p2) = weir_proto::read_time(buf, p).map_err(|e| e.to_string())?;
            let end = weir_proto::msgpack::skip_value(buf, p2).map_err(|e| e.to_string())?;
            Ok((t.unwrap_or_default(), p2..end))
        }
        Ok(_) => Err(format!("entry at offset {pos} is not [time, record]")),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads a chunk's blocks one at a time, checking each block's CRC and gunzipping it with
/// `compress gzip`. Holds one block (as stored, and uncompressed with gzip) plus a 64 KiB
/// read buffer; the block buffers are reused from block to block.
///
/// Made by [`ChunkRef::reader`]. Any error is also kept as the chunk's
/// [`ChunkRef::read_error`], and every later call returns it again.
pub struct ChunkReader<'a> {
    chunk: &'a ChunkRef,
    source: Source,
    gzip: bool,
    limit: usize,
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
            Source::File { reader, path } => {
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
            Source::File { reader, path } => read_full(reader, &mut self.stored)
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
        if format::crc_of(len_bytes, &self.stored) != crc {
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

    /// Reads the next block and returns its uncompressed payload: msgpack `[time, record]`
    /// entries back to back. `None` at the end of the chunk.
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
        while self.pos >= self.reader.block().len() {
            if !self.reader.advance()? {
                return Ok(None);
            }
            self.pos = 0;
        }
        let parsed = parse_entry(self.reader.block(), self.pos);
        match parsed {
            Ok((time, range)) => {
                self.pos = range.end;
                self.events += 1;
                Ok(Some((time, &self.reader.block()[range])))
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
