//! Turning one frame into a request: the four modes, the option map, decompression and entry
//! scanning.

use std::io::Read;

use bytes::Bytes;

use crate::batch::{EntryRef, EventBatch};
use crate::error::{RequestError, ScanError};
use crate::msgpack::{
    is_array_marker, is_map_marker, read_header, read_payload, skip_value, Header,
};
use crate::time::{read_time, read_time_slot, EventTime};

/// How requests are parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Skip invalid events (and count them) instead of rejecting the whole request. Fluentd's
    /// default since 1.19.0.
    pub skip_invalid_event: bool,
    /// Largest decompressed size of a compressed blob, in bytes.
    pub decompression_size_limit: usize,
    /// The receive time, used for events whose time is 0.
    pub now: EventTime,
}

impl Default for ParseOptions {
    /// Skip invalid events, 256 MiB decompression limit (Fluentd 1.19.3's default), now = 0.
    fn default() -> Self {
        ParseOptions {
            skip_invalid_event: true,
            decompression_size_limit: 256 * 1024 * 1024,
            now: EventTime::default(),
        }
    }
}

/// One parsed request.
#[derive(Clone, Debug)]
pub enum Request {
    /// `nil`: an in-band keep-alive. Nothing to do, nothing to send.
    KeepAlive,
    /// A request carrying events.
    Events(EventRequest),
}

/// The request mode, decided by the type of element 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `[tag, time, record, option?]`.
    Message,
    /// `[tag, [[time, record], ...], option?]`.
    Forward,
    /// `[tag, blob, option?]` with concatenated entries in the blob.
    PackedForward,
    /// `[tag, blob, option?]` with compressed concatenated entries (`compressed` gzip or zstd).
    CompressedPackedForward,
}

impl Mode {
    /// The mode's name as in the protocol document.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Message => "Message",
            Mode::Forward => "Forward",
            Mode::PackedForward => "PackedForward",
            Mode::CompressedPackedForward => "CompressedPackedForward",
        }
    }
}

/// The value of the `compressed` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// `"text"`: not compressed.
    Text,
    /// `"gzip"`: one or more gzip members.
    Gzip,
    /// `"zstd"`: one or more zstd frames.
    Zstd,
}

impl Compression {
    /// The option value naming this compression.
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::Text => "text",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A request carrying events.
#[derive(Clone, Debug)]
pub struct EventRequest {
    /// The tag, decoded as lossy UTF-8, otherwise as sent (no sanitising).
    pub tag: String,
    /// The request mode.
    pub mode: Mode,
    /// The raw bytes of the `chunk` option, to be echoed verbatim in the ack. Present means the
    /// client wants an ack.
    pub chunk: Option<Bytes>,
    /// The `size` option, a hint only.
    pub size_hint: Option<u64>,
    /// The `fluent_signal` option: 0 for logs. Non-zero means the payload is metrics or traces:
    /// `events` is then empty and `signal_bytes` counts the payload.
    pub fluent_signal: u8,
    /// For non-log signals, the size in bytes of the payload as received (element 1; a packed
    /// blob's payload bytes, not decompressed). 0 for logs.
    pub signal_bytes: usize,
    /// The events.
    pub events: EventBatch,
    /// Entries skipped as invalid (only when `skip_invalid_event` is on).
    pub invalid_events: usize,
}

/// The option map as far as the server uses it.
#[derive(Debug, Default)]
struct Options {
    chunk: Option<(usize, usize)>,
    size: Option<u64>,
    compressed: Option<Result<Compression, String>>,
    signal: u8,
}

fn parse_options(buf: &[u8], pos: usize) -> Result<(Options, usize), RequestError> {
    let mut o = Options::default();
    let (h, mut p) = read_header(buf, pos)?;
    let n = match h {
        Header::Map(n) => n,
        // nil, or anything else that is not a map: no options.
        _ => return Ok((o, skip_value(buf, pos)?)),
    };
    for _ in 0..n {
        let (kh, kp) = read_header(buf, p)?;
        let key = match kh {
            Header::Str(len) => {
                let (k, e) = read_payload(buf, kp, len)?;
                p = e;
                Some(k)
            }
            _ => {
                p = skip_value(buf, p)?;
                None
            }
        };
        let vstart = p;
        let vend = skip_value(buf, vstart)?;
        if let Some(key) = key {
            let (vh, vp) = read_header(buf, vstart)?;
            match key {
                b"chunk" => {
                    if let Header::Str(len) | Header::Bin(len) = vh {
                        o.chunk = Some((vp, vp + len as usize));
                    }
                }
                b"size" => o.size = vh.as_u64(),
                b"compressed" => {
                    o.compressed = Some(match vh {
                        Header::Str(len) | Header::Bin(len) => {
                            match read_payload(buf, vp, len)?.0 {
                                b"text" => Ok(Compression::Text),
                                b"gzip" => Ok(Compression::Gzip),
                                b"zstd" => Ok(Compression::Zstd),
                                other => Err(String::from_utf8_lossy(other).into_owned()),
                            }
                        }
                        other => Err(format!("{other:?}")),
                    })
                }
                b"fluent_signal" => {
                    if let Some(v) = vh.as_u64() {
                        o.signal = u8::try_from(v).unwrap_or(u8::MAX);
                    }
                }
                _ => {}
            }
        }
        p = vend;
    }
    Ok((o, p))
}

/// What scanning a run of entries found.
struct Scanned {
    entries: Vec<EntryRef>,
    invalid: usize,
    first_invalid: Option<usize>,
    /// Every entry so far was valid and in chunk form (see [`EventBatch::in_chunk_form`]).
    chunk_form: bool,
}

impl Scanned {
    fn with_capacity(n: usize) -> Self {
        Scanned {
            entries: Vec::with_capacity(n),
            invalid: 0,
            first_invalid: None,
            chunk_form: true,
        }
    }

    fn push(&mut self, entry: Option<EntryRef>, in_chunk_form: bool) {
        self.chunk_form &= in_chunk_form;
        match entry {
            Some(e) => self.entries.push(e),
            None => {
                if self.first_invalid.is_none() {
                    self.first_invalid = Some(self.entries.len() + self.invalid);
                }
                self.invalid += 1;
            }
        }
    }
}

/// Smallest possible entry: `92 00 80`.
const MIN_ENTRY: usize = 3;

fn truncated(e: ScanError) -> RequestError {
    match e {
        ScanError::Truncated => RequestError::TruncatedEntries,
        other => RequestError::Malformed(other),
    }
}

/// Scans one `[time, record]` entry at `start`: the event (None if it is not a valid one), where
/// the next entry starts, and whether the entry is in chunk form (a fixarray 2, the time as the
/// EventTime ext in a fixext 8, not replaced by the receive time, then the record map). In a
/// packed blob, an array of entries is an error for the whole request.
#[inline]
fn scan_entry(
    buf: &[u8],
    start: usize,
    packed: bool,
    now: EventTime,
) -> Result<(Option<EntryRef>, usize, bool), RequestError> {
    let (h, p) = read_header(buf, start).map_err(truncated)?;
    match h {
        Header::Array(2) => {
            let (time, slot_is_array, rec_start) = read_time_slot(buf, p).map_err(truncated)?;
            let marker = buf.get(rec_start).copied();
            let rec_end = skip_value(buf, rec_start).map_err(truncated)?;
            if packed && slot_is_array && marker.is_some_and(is_array_marker) {
                return Err(RequestError::BlobIsArray);
            }
            let entry = match (time, marker) {
                (Some(t), Some(m)) if is_map_marker(m) => Some(EntryRef {
                    time: if t.is_zero() { now } else { t },
                    start: rec_start as u32,
                    end: rec_end as u32,
                }),
                _ => None,
            };
            // A one-byte array header, then a fixext 8 of type 0 (the EventTime ext; type -1,
            // the msgpack timestamp, is a time too, but not in the chunk's form).
            let in_chunk_form = p == start + 1
                && buf.get(p..p + 2) == Some(&[0xD7, 0x00][..])
                && time.is_some_and(|t| !t.is_zero())
                && entry.is_some();
            Ok((entry, rec_end, in_chunk_form))
        }
        Header::Array(n) => {
            if packed && n > 0 && buf.get(p).copied().is_some_and(is_array_marker) {
                return Err(RequestError::BlobIsArray);
            }
            Ok((None, skip_value(buf, start).map_err(truncated)?, false))
        }
        _ => Ok((None, skip_value(buf, start).map_err(truncated)?, false)),
    }
}

/// Scans the concatenated entries in `buf[start..end]`.
fn scan_packed(
    buf: &[u8],
    start: usize,
    end: usize,
    capacity_hint: Option<u64>,
    now: EventTime,
) -> Result<Scanned, RequestError> {
    let region = buf.get(..end).ok_or(RequestError::TruncatedEntries)?;
    let max_entries = end.saturating_sub(start) / MIN_ENTRY;
    let cap = capacity_hint
        .map(|s| usize::try_from(s).unwrap_or(usize::MAX).min(max_entries))
        .unwrap_or(0);
    let mut s = Scanned::with_capacity(cap);
    let mut pos = start;
    while pos < end {
        let (entry, next, in_chunk_form) = scan_entry(region, pos, true, now)?;
        s.push(entry, in_chunk_form);
        pos = next;
    }
    Ok(s)
}

/// Decompresses gzip data (one or more members) into one buffer of at most `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, RequestError> {
    // The last member's ISIZE (size mod 2^32) is a hint from the sender, so it is trusted only
    // up to 32 times the compressed size (far above what logs compress to); the buffer still
    // grows past that if the data really is larger, up to the limit.
    let isize_hint = data
        .len()
        .checked_sub(4)
        .and_then(|at| data.get(at..))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(|b| u32::from_le_bytes(b) as usize)
        .unwrap_or(0);
    let cap = isize_hint
        .min(data.len().saturating_mul(32))
        .max(data.len().saturating_mul(4))
        .min(limit);
    let mut out = Vec::with_capacity(cap);
    let dec = flate2::read::MultiGzDecoder::new(data);
    read_capped(dec, &mut out, limit)?;
    Ok(out)
}

/// Decompresses zstd data (one or more frames) into one buffer of at most `limit` bytes.
pub fn unzstd(data: &[u8], limit: usize) -> Result<Vec<u8>, RequestError> {
    let cap = data.len().saturating_mul(4).min(limit);
    let mut out = Vec::with_capacity(cap);
    let dec = zstd::stream::read::Decoder::with_buffer(data)
        .map_err(|e| RequestError::Decompress(e.to_string()))?;
    read_capped(dec, &mut out, limit)?;
    Ok(out)
}

fn read_capped<R: Read>(r: R, out: &mut Vec<u8>, limit: usize) -> Result<(), RequestError> {
    let mut r = r.take((limit as u64).saturating_add(1));
    r.read_to_end(out)
        .map_err(|e| RequestError::Decompress(e.to_string()))?;
    if out.len() > limit {
        return Err(RequestError::DecompressedTooLarge { limit });
    }
    Ok(())
}

fn check_len(mode: Mode, n: u32, min: u32) -> Result<(), RequestError> {
    if n == min || n == min + 1 {
        Ok(())
    } else {
        Err(RequestError::BadLength {
            mode: mode.as_str(),
            len: n,
        })
    }
}

fn finish_options(
    buf: &[u8],
    pos: usize,
    has_options: bool,
) -> Result<(Options, usize), RequestError> {
    if has_options {
        parse_options(buf, pos)
    } else {
        Ok((Options::default(), pos))
    }
}

/// Parses one frame (one complete top-level msgpack value) into a request.
///
/// Shape rules (forward-protocol.md section 3): `nil` is a keep-alive; otherwise an array whose
/// element 0 is a `str` tag. Element 1 decides the mode: `bin`/`str` is packed (compressed when
/// the option says gzip or zstd), an array is Forward, anything else is Message. The option map is
/// the last element and may be absent or `nil`; keys that are not strings and unknown keys are
/// ignored. Record maps are located, not decoded.
///
/// Invalid events (time not a time value, record not a map, entry not a two-element array) are
/// counted in `invalid_events` when `skip_invalid_event` is on, and fail the request otherwise.
/// A packed blob that is truncated, is an array of entries, fails to decompress or exceeds the
/// decompression limit fails the whole request regardless.
pub fn parse_request(frame: Bytes, opts: &ParseOptions) -> Result<Request, RequestError> {
    let buf: &[u8] = &frame;
    if buf.len() > u32::MAX as usize {
        return Err(RequestError::TooLarge);
    }
    let (h, pos) = read_header(buf, 0)?;
    let n = match h {
        Header::Nil => {
            return if pos == buf.len() {
                Ok(Request::KeepAlive)
            } else {
                Err(RequestError::TrailingBytes)
            };
        }
        Header::Array(0) => return Err(RequestError::EmptyArray),
        Header::Array(n) => n,
        _ => return Err(RequestError::NotArray),
    };
    let (th, tp) = read_header(buf, pos)?;
    let Header::Str(tlen) = th else {
        return Err(RequestError::TagNotString);
    };
    let (tag, el1) = read_payload(buf, tp, tlen)?;
    let tag = String::from_utf8_lossy(tag).into_owned();
    if n < 2 {
        return Err(RequestError::BadLength {
            mode: "request",
            len: n,
        });
    }
    let (h1, p1) = read_header(buf, el1)?;
    let mut invalid_first = None;
    let (mode, options, end, events, invalid, signal_bytes) = match h1 {
        Header::Str(blen) | Header::Bin(blen) => {
            check_len(Mode::PackedForward, n, 2)?;
            let (blob, blob_end) = read_payload(buf, p1, blen)?;
            let (o, end) = finish_options(buf, blob_end, n == 3)?;
            let compression = match &o.compressed {
                None => Compression::Text,
                Some(Ok(c)) => *c,
                Some(Err(name)) => return Err(RequestError::UnknownCompression(name.clone())),
            };
            let mode = match compression {
                Compression::Text => Mode::PackedForward,
                _ => Mode::CompressedPackedForward,
            };
            if o.signal != 0 {
                (mode, o, end, EventBatch::empty(), 0, blob.len())
            } else {
                let limit = opts.decompression_size_limit;
                let (batch_buf, start, stop) = match compression {
                    Compression::Text => {
                        if blob.starts_with(&[0x1f, 0x8b]) {
                            return Err(RequestError::UnexpectedGzip);
                        }
                        (frame.clone(), p1, blob_end)
                    }
                    Compression::Gzip => {
                        let v = gunzip(blob, limit)?;
                        let len = v.len();
                        (Bytes::from(v), 0, len)
                    }
                    Compression::Zstd => {
                        let v = unzstd(blob, limit)?;
                        let len = v.len();
                        (Bytes::from(v), 0, len)
                    }
                };
                if batch_buf.len() > u32::MAX as usize {
                    return Err(RequestError::TooLarge);
                }
                let s = scan_packed(&batch_buf, start, stop, o.size, opts.now)?;
                invalid_first = s.first_invalid;
                (
                    mode,
                    o,
                    end,
                    EventBatch::new(batch_buf, s.entries).in_chunk_form_if(s.chunk_form),
                    s.invalid,
                    0,
                )
            }
        }
        Header::Array(count) => {
            check_len(Mode::Forward, n, 2)?;
            let max_entries = buf.len().saturating_sub(p1) / MIN_ENTRY;
            let mut s = Scanned::with_capacity((count as usize).min(max_entries));
            let mut p = p1;
            for _ in 0..count {
                let (entry, next, in_chunk_form) = scan_entry(buf, p, false, opts.now)?;
                s.push(entry, in_chunk_form);
                p = next;
            }
            let (o, end) = finish_options(buf, p, n == 3)?;
            if o.signal != 0 {
                (Mode::Forward, o, end, EventBatch::empty(), 0, p - el1)
            } else {
                invalid_first = s.first_invalid;
                (
                    Mode::Forward,
                    o,
                    end,
                    EventBatch::new(frame.clone(), s.entries).in_chunk_form_if(s.chunk_form),
                    s.invalid,
                    0,
                )
            }
        }
        _ => {
            check_len(Mode::Message, n, 3)?;
            let (time, rec_start) = read_time(buf, el1)?;
            let marker = buf.get(rec_start).copied();
            let rec_end = skip_value(buf, rec_start)?;
            let (o, end) = finish_options(buf, rec_end, n == 4)?;
            if o.signal != 0 {
                (Mode::Message, o, end, EventBatch::empty(), 0, rec_end - el1)
            } else {
                let entry = match (time, marker) {
                    (Some(t), Some(m)) if is_map_marker(m) => Some(EntryRef {
                        time: if t.is_zero() { opts.now } else { t },
                        start: rec_start as u32,
                        end: rec_end as u32,
                    }),
                    _ => None,
                };
                let (entries, invalid) = match entry {
                    Some(e) => (vec![e], 0),
                    None => {
                        invalid_first = Some(0);
                        (Vec::new(), 1)
                    }
                };
                (
                    Mode::Message,
                    o,
                    end,
                    EventBatch::new(frame.clone(), entries),
                    invalid,
                    0,
                )
            }
        }
    };
    if end != buf.len() {
        return Err(RequestError::TrailingBytes);
    }
    if let Some(index) = invalid_first {
        if !opts.skip_invalid_event {
            return Err(RequestError::InvalidEvent { index });
        }
    }
    let chunk = options
        .chunk
        .and_then(|(s, e)| (e <= frame.len()).then(|| frame.slice(s..e)));
    Ok(Request::Events(EventRequest {
        tag,
        mode,
        chunk,
        size_hint: options.size,
        fluent_signal: options.signal,
        signal_bytes,
        events,
        invalid_events: invalid,
    }))
}
