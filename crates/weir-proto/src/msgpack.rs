//! Low-level msgpack: a header reader, a value skipper for complete buffers, and writers for
//! headers and scalars. Other crates use these writers instead of hand-rolling msgpack markers.

use crate::error::ScanError;

/// The header of one msgpack value, as read by [`read_header`]. For `Str`, `Bin` and `Ext` the
/// payload of the given length follows the header; for `Array` and `Map` the elements follow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Header {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer in a positive fixint or `uint` format.
    Uint(u64),
    /// An integer in a negative fixint or `int` format (the value may still be non-negative).
    Int(i64),
    /// A `float 32`.
    F32(f32),
    /// A `float 64`.
    F64(f64),
    /// A `str` of the given byte length.
    Str(u32),
    /// A `bin` of the given byte length.
    Bin(u32),
    /// An array with the given number of elements.
    Array(u32),
    /// A map with the given number of key/value pairs.
    Map(u32),
    /// An ext value with the given type and data length.
    Ext(i8, u32),
}

impl Header {
    /// The value as a `u64` if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Header::Uint(v) => Some(v),
            Header::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// Total length of the header that starts with marker byte `m`, marker included (for ext types,
/// the type byte included). Payloads of `str`, `bin` and `ext` are not counted.
#[inline]
pub const fn header_len(m: u8) -> usize {
    match m {
        0xc4 | 0xd9 | 0xcc | 0xd0 | 0xd4..=0xd8 => 2,
        0xc5 | 0xda | 0xcd | 0xd1 | 0xdc | 0xde | 0xc7 => 3,
        0xc8 => 4,
        0xc6 | 0xdb | 0xca | 0xce | 0xd2 | 0xdd | 0xdf => 5,
        0xc9 => 6,
        0xcb | 0xcf | 0xd3 => 9,
        _ => 1,
    }
}

#[inline]
fn be<const N: usize>(h: &[u8], at: usize) -> [u8; N] {
    h.get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

#[inline]
fn be8(h: &[u8], at: usize) -> u8 {
    h.get(at).copied().unwrap_or(0)
}

#[inline]
fn be16(h: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(be(h, at))
}

#[inline]
fn be32(h: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(be(h, at))
}

#[inline]
fn be64(h: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(be(h, at))
}

/// Reads the header of the value starting at `pos`. Returns the header and the offset just after
/// it (where a payload or the first element starts). Payload bytes are not checked to be present.
#[inline]
pub fn read_header(buf: &[u8], pos: usize) -> Result<(Header, usize), ScanError> {
    let m = *buf.get(pos).ok_or(ScanError::Truncated)?;
    let end = pos + header_len(m);
    let h = buf.get(pos..end).ok_or(ScanError::Truncated)?;
    let header = match m {
        0x00..=0x7f => Header::Uint(u64::from(m)),
        0x80..=0x8f => Header::Map(u32::from(m & 0x0f)),
        0x90..=0x9f => Header::Array(u32::from(m & 0x0f)),
        0xa0..=0xbf => Header::Str(u32::from(m & 0x1f)),
        0xc0 => Header::Nil,
        0xc1 => return Err(ScanError::InvalidByte { offset: pos }),
        0xc2 => Header::Bool(false),
        0xc3 => Header::Bool(true),
        0xc4 => Header::Bin(u32::from(be8(h, 1))),
        0xc5 => Header::Bin(u32::from(be16(h, 1))),
        0xc6 => Header::Bin(be32(h, 1)),
        0xc7 => Header::Ext(be8(h, 2) as i8, u32::from(be8(h, 1))),
        0xc8 => Header::Ext(be8(h, 3) as i8, u32::from(be16(h, 1))),
        0xc9 => Header::Ext(be8(h, 5) as i8, be32(h, 1)),
        0xca => Header::F32(f32::from_bits(be32(h, 1))),
        0xcb => Header::F64(f64::from_bits(be64(h, 1))),
        0xcc => Header::Uint(u64::from(be8(h, 1))),
        0xcd => Header::Uint(u64::from(be16(h, 1))),
        0xce => Header::Uint(u64::from(be32(h, 1))),
        0xcf => Header::Uint(be64(h, 1)),
        0xd0 => Header::Int(i64::from(be8(h, 1) as i8)),
        0xd1 => Header::Int(i64::from(be16(h, 1) as i16)),
        0xd2 => Header::Int(i64::from(be32(h, 1) as i32)),
        0xd3 => Header::Int(be64(h, 1) as i64),
        0xd4 => Header::Ext(be8(h, 1) as i8, 1),
        0xd5 => Header::Ext(be8(h, 1) as i8, 2),
        0xd6 => Header::Ext(be8(h, 1) as i8, 4),
        0xd7 => Header::Ext(be8(h, 1) as i8, 8),
        0xd8 => Header::Ext(be8(h, 1) as i8, 16),
        0xd9 => Header::Str(u32::from(be8(h, 1))),
        0xda => Header::Str(u32::from(be16(h, 1))),
        0xdb => Header::Str(be32(h, 1)),
        0xdc => Header::Array(u32::from(be16(h, 1))),
        0xdd => Header::Array(be32(h, 1)),
        0xde => Header::Map(u32::from(be16(h, 1))),
        0xdf => Header::Map(be32(h, 1)),
        0xe0..=0xff => Header::Int(i64::from(m as i8)),
    };
    Ok((header, end))
}

/// Returns the payload of a `str`/`bin`/`ext` value whose header ended at `pos`, and the offset
/// after it.
#[inline]
pub fn read_payload(buf: &[u8], pos: usize, len: u32) -> Result<(&[u8], usize), ScanError> {
    let end = pos.checked_add(len as usize).ok_or(ScanError::Truncated)?;
    let p = buf.get(pos..end).ok_or(ScanError::Truncated)?;
    Ok((p, end))
}

/// Skips the complete value starting at `pos` and returns the offset just after it. Works
/// without recursion or allocation (a single counter of outstanding values), so nesting depth
/// cannot exhaust the stack.
pub fn skip_value(buf: &[u8], mut pos: usize) -> Result<usize, ScanError> {
    let mut remaining: u64 = 1;
    while remaining > 0 {
        let (h, p) = read_header(buf, pos)?;
        remaining -= 1;
        pos = match h {
            Header::Str(n) | Header::Bin(n) | Header::Ext(_, n) => read_payload(buf, p, n)?.1,
            Header::Array(n) => {
                remaining += u64::from(n);
                p
            }
            Header::Map(n) => {
                remaining += 2 * u64::from(n);
                p
            }
            _ => p,
        };
        // Every outstanding value needs at least one byte.
        if remaining > (buf.len().saturating_sub(pos)) as u64 {
            return Err(ScanError::Truncated);
        }
    }
    Ok(pos)
}

/// True if `m` is the marker of a map.
#[inline]
pub const fn is_map_marker(m: u8) -> bool {
    matches!(m, 0x80..=0x8f | 0xde | 0xdf)
}

/// True if `m` is the marker of an array.
#[inline]
pub const fn is_array_marker(m: u8) -> bool {
    matches!(m, 0x90..=0x9f | 0xdc | 0xdd)
}

/// Writes a `str` header for `len` bytes in the smallest format.
pub fn write_str_len(out: &mut Vec<u8>, len: usize) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Writes `s` as a msgpack `str` (smallest header). The bytes are written as given, UTF-8 or not.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    write_str_len(out, s.len());
    out.extend_from_slice(s);
}

/// Writes a `bin` header for `len` bytes in the smallest format.
pub fn write_bin_len(out: &mut Vec<u8>, len: usize) {
    if len <= 0xff {
        out.extend_from_slice(&[0xc4, len as u8]);
    } else if len <= 0xffff {
        out.push(0xc5);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Writes `b` as a msgpack `bin` (smallest header).
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    write_bin_len(out, b.len());
    out.extend_from_slice(b);
}

/// Writes an array header for `len` elements in the smallest format.
pub fn write_array_len(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if len <= 0xffff {
        out.push(0xdc);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Writes a map header for `len` key/value pairs in the smallest format.
pub fn write_map_len(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0xde);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Writes a non-negative integer in the smallest format.
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= 0xff {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Writes a signed integer in the smallest format (non-negative values as with [`write_uint`]).
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Writes a `float 64`.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_bits().to_be_bytes());
}

/// Writes `nil`.
pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

/// Writes `true` or `false`.
pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xc3 } else { 0xc2 });
}
