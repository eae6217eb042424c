//! Splitting a byte stream into complete top-level msgpack values (one value = one request).

use bytes::{Bytes, BytesMut};

use crate::error::{FrameError, ScanError};
use crate::msgpack::{header_len, read_header, Header};

/// Limits the frame decoder enforces while scanning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame, in bytes, that is accepted. A frame is refused as soon as it is known to
    /// be larger, even before its bytes have arrived.
    pub chunk_size_limit: usize,
    /// Deepest nesting of arrays and maps accepted (a top-level array is depth 1).
    pub max_depth: usize,
}

impl Default for FrameLimits {
    /// 256 MiB (Fluentd's file buffer chunk limit) and a depth of 128.
    fn default() -> Self {
        FrameLimits {
            chunk_size_limit: 256 * 1024 * 1024,
            max_depth: 128,
        }
    }
}

/// A resumable scanner that takes complete top-level msgpack values off the front of a buffer.
///
/// The decoder remembers how far it has scanned the frame at the front of the buffer and which
/// element counts are still outstanding, so every byte is examined once however the stream is
/// split: total work is linear in the stream length. Payloads of `str`, `bin` and `ext` are
/// skipped without being looked at.
///
/// The caller appends received bytes to the end of the buffer and calls
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. The caller must not remove or
/// change bytes at the front of the buffer between calls other than through this decoder.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: FrameLimits,
    /// Offset, from the start of the buffer, up to which the current frame has been scanned.
    pos: usize,
    /// Element counts still outstanding for each open array or map.
    stack: Vec<u64>,
    /// End offset of a `str`/`bin`/`ext` payload whose bytes have not all arrived.
    skip_to: Option<usize>,
    /// Least number of further bytes needed, as known at the last `Ok(None)`.
    need: usize,
    /// Bytes examined so far (headers read), for tests of linearity.
    examined: u64,
}

impl FrameDecoder {
    /// Makes a decoder with the given limits.
    pub fn new(limits: FrameLimits) -> Self {
        FrameDecoder {
            limits,
            pos: 0,
            stack: Vec::new(),
            skip_to: None,
            need: 0,
            examined: 0,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// Takes the next complete top-level value off the front of `buf` (split off and frozen,
    /// without copying). `Ok(None)` means more bytes are needed; what has been scanned so far is
    /// remembered and the next call continues where this one stopped.
    ///
    /// Fails as soon as the frame is known to exceed the chunk size limit (including when a
    /// `str`, `bin`, `ext`, array or map header declares a length that cannot fit, before those
    /// bytes arrive), when nesting goes deeper than the depth limit, or on the byte 0xC1. After an
    /// error the stream is desynchronised; the decoder resets itself, but the connection should be
    /// closed.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.scan(buf) {
            Ok(true) => {
                let frame = buf.split_to(self.pos).freeze();
                self.reset();
                Ok(Some(frame))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
        self.skip_to = None;
        self.need = 0;
    }

    fn too_large(&self, needed: usize) -> FrameError {
        FrameError::TooLarge {
            limit: self.limits.chunk_size_limit,
            needed,
        }
    }

    /// Marks one value as complete. Returns true when the top-level value is complete.
    #[inline]
    fn complete_value(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            *top -= 1;
            if *top == 0 {
                self.stack.pop();
            } else {
                return false;
            }
        }
        true
    }

    /// Scans on from the saved position. Ok(true) when a frame of `self.pos` bytes is complete.
    fn scan(&mut self, buf: &[u8]) -> Result<bool, FrameError> {
        let limit = self.limits.chunk_size_limit;
        loop {
            if let Some(end) = self.skip_to {
                if buf.len() < end {
                    self.need = end - buf.len();
                    return Ok(false);
                }
                self.skip_to = None;
                self.pos = end;
                if self.complete_value() {
                    return Ok(true);
                }
                continue;
            }
            let Some(&m) = buf.get(self.pos) else {
                self.need = usize::from(self.pos > 0);
                return Ok(false);
            };
            let hl = header_len(m);
            let header_end = self.pos.saturating_add(hl);
            if header_end > limit {
                return Err(self.too_large(header_end));
            }
            if buf.len() < header_end {
                self.examined += 1;
                self.need = header_end - buf.len();
                return Ok(false);
            }
            self.examined += hl as u64;
            let (h, p) = match read_header(buf, self.pos) {
                Ok(v) => v,
                Err(ScanError::InvalidByte { offset }) => {
                    return Err(FrameError::InvalidByte { offset })
                }
                // Cannot happen: the whole header is present.
                Err(ScanError::Truncated) => {
                    self.need = 1;
                    return Ok(false);
                }
            };
            match h {
                Header::Str(n) | Header::Bin(n) | Header::Ext(_, n) => {
                    let end = p.saturating_add(n as usize);
                    if end > limit {
                        return Err(self.too_large(end));
                    }
                    self.pos = p;
                    self.skip_to = Some(end);
                }
                Header::Array(n) | Header::Map(n) => {
                    let count = if matches!(h, Header::Map(_)) {
                        2 * u64::from(n)
                    } else {
                        u64::from(n)
                    };
                    self.pos = p;
                    if count == 0 {
                        if self.complete_value() {
                            return Ok(true);
                        }
                        continue;
                    }
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(FrameError::TooDeep {
                            max_depth: self.limits.max_depth,
                        });
                    }
                    // Each element needs at least one byte.
                    let min_end = (p as u64).saturating_add(count);
                    if min_end > limit as u64 {
                        return Err(self.too_large(usize::try_from(min_end).unwrap_or(usize::MAX)));
                    }
                    self.stack.push(count);
                }
                _ => {
                    self.pos = p;
                    if self.complete_value() {
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// Bytes of the current, still incomplete frame scanned so far.
    pub fn pending(&self) -> usize {
        self.pos
    }

    /// The least number of further bytes the current frame is known to need (for example the
    /// rest of a declared `bin`), as of the last call that returned `Ok(None)`. Useful to size
    /// reads. 0 if nothing is known.
    pub fn needed_hint(&self) -> usize {
        self.need
    }

    /// Total header bytes examined by this decoder since it was made. Payloads are skipped
    /// without being examined. Exposed so tests can check that scanning is linear.
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(FrameLimits::default())
    }
}
