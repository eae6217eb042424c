//! Encoding requests in every mode, for clients, tests, `weir cat` and `weir bench`.

use std::io::Write;

use bytes::Bytes;

use crate::msgpack::{write_array_len, write_bin_len, write_map_len, write_str, write_uint};
use crate::request::Compression;
use crate::time::EventTime;

/// How event times are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TimeFormat {
    /// Whole seconds as an integer (Fluentd's `time_as_integer`); nanoseconds are dropped.
    Integer,
    /// The EventTime ext type 0 with a `fixext8` header (Fluentd's and Fluent Bit's default).
    #[default]
    EventTime,
    /// Seconds as a `float 64` (microsecond precision at today's dates).
    Float,
    /// Fluent Bit ≥ 5.0.5's `[EventTime, {}]` wrapper inside entries. In Message mode, where the
    /// wrapper is not allowed, the plain EventTime is written instead.
    FluentBitWrapped,
}

/// Options of an encoded request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EncodeOptions {
    /// The `chunk` option (asks for an ack), written verbatim as a `str`.
    pub chunk: Option<Bytes>,
    /// Write the `size` option (number of entries).
    pub size: bool,
    /// Write `compressed: "text"` when not compressed, as Fluentd always does.
    pub compressed_text: bool,
    /// Announce a packed blob with a `str32` header, as Fluentd does, instead of `bin`.
    pub blob_as_str32: bool,
    /// How times are written.
    pub time_format: TimeFormat,
}

fn write_fixext_time(out: &mut Vec<u8>, t: EventTime) {
    out.extend_from_slice(&[0xD7, 0x00]);
    out.extend_from_slice(&t.sec.to_be_bytes());
    out.extend_from_slice(&t.nsec.to_be_bytes());
}

/// Writes a time value in the given format.
pub fn write_event_time(out: &mut Vec<u8>, t: EventTime, fmt: TimeFormat) {
    match fmt {
        TimeFormat::Integer => write_uint(out, u64::from(t.sec)),
        TimeFormat::EventTime => write_fixext_time(out, t),
        TimeFormat::Float => crate::msgpack::write_f64(out, t.as_f64()),
        TimeFormat::FluentBitWrapped => {
            out.push(0x92);
            write_fixext_time(out, t);
            out.push(0x80);
        }
    }
}

/// Writes one entry `[time, record]`; `record_msgpack` must be one encoded msgpack map and is
/// copied as is.
pub fn encode_entry(out: &mut Vec<u8>, t: EventTime, record_msgpack: &[u8], fmt: TimeFormat) {
    out.push(0x92);
    write_event_time(out, t, fmt);
    out.extend_from_slice(record_msgpack);
}

/// Writes the option map if it has keys; returns nothing. Keys in Fluentd's order: size,
/// compressed, chunk.
fn write_options(out: &mut Vec<u8>, o: &EncodeOptions, size: usize, compressed: Option<&str>) {
    let n =
        usize::from(o.size) + usize::from(compressed.is_some()) + usize::from(o.chunk.is_some());
    if n == 0 {
        return;
    }
    write_map_len(out, n);
    if o.size {
        write_str(out, b"size");
        write_uint(out, size as u64);
    }
    if let Some(c) = compressed {
        write_str(out, b"compressed");
        write_str(out, c.as_bytes());
    }
    if let Some(chunk) = &o.chunk {
        write_str(out, b"chunk");
        write_str(out, chunk);
    }
}

fn option_count(o: &EncodeOptions, compressed: Option<&str>) -> usize {
    usize::from(o.size) + usize::from(compressed.is_some()) + usize::from(o.chunk.is_some())
}

/// Encodes a Message-mode request `[tag, time, record, option?]`. The option map (only `size` 1
/// and `chunk` apply) is written only when it has keys.
pub fn encode_message(tag: &str, t: EventTime, record: &[u8], o: &EncodeOptions) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + record.len() + 32);
    let has_opts = option_count(o, None) > 0;
    write_array_len(&mut out, if has_opts { 4 } else { 3 });
    write_str(&mut out, tag.as_bytes());
    let fmt = match o.time_format {
        TimeFormat::FluentBitWrapped => TimeFormat::EventTime,
        f => f,
    };
    write_event_time(&mut out, t, fmt);
    out.extend_from_slice(record);
    write_options(&mut out, o, 1, None);
    out
}

/// Encodes a Forward-mode request `[tag, [[time, record], ...], option?]`.
pub fn encode_forward(tag: &str, entries: &[(EventTime, &[u8])], o: &EncodeOptions) -> Vec<u8> {
    let body: usize = entries.iter().map(|(_, r)| r.len() + 16).sum();
    let mut out = Vec::with_capacity(tag.len() + body + 32);
    let has_opts = option_count(o, None) > 0;
    write_array_len(&mut out, if has_opts { 3 } else { 2 });
    write_str(&mut out, tag.as_bytes());
    write_array_len(&mut out, entries.len());
    for (t, r) in entries {
        encode_entry(&mut out, *t, r, o.time_format);
    }
    write_options(&mut out, o, entries.len(), None);
    out
}

/// Compresses `data` as one gzip member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Compresses `data` as one zstd frame (level 3).
pub fn zstd_compress(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap_or_default()
}

/// Encodes a (Compressed)PackedForward request from entries: the entries are concatenated into a
/// blob, compressed as asked (`Gzip` or `Zstd` makes it CompressedPackedForward), and written
/// with [`encode_packed_blob`].
pub fn encode_packed(
    tag: &str,
    entries: &[(EventTime, &[u8])],
    compression: Compression,
    o: &EncodeOptions,
) -> Vec<u8> {
    let body: usize = entries.iter().map(|(_, r)| r.len() + 16).sum();
    let mut blob = Vec::with_capacity(body);
    for (t, r) in entries {
        encode_entry(&mut blob, *t, r, o.time_format);
    }
    let blob = match compression {
        Compression::Text => blob,
        Compression::Gzip => gzip(&blob),
        Compression::Zstd => zstd_compress(&blob),
    };
    encode_packed_blob(tag, &blob, compression, entries.len(), o)
}

/// Encodes a packed request around an already built (and, for `Gzip`/`Zstd`, already
/// compressed) blob. `entry_count` is written as `size` when `o.size` is set. The blob is
/// announced as `bin` (smallest header) or, with `blob_as_str32`, as `str32`. `compressed` is
/// written for `Gzip`/`Zstd`, and as `"text"` for `Text` only with `compressed_text`.
pub fn encode_packed_blob(
    tag: &str,
    blob: &[u8],
    compression: Compression,
    entry_count: usize,
    o: &EncodeOptions,
) -> Vec<u8> {
    let compressed = match compression {
        Compression::Text if !o.compressed_text => None,
        c => Some(c.as_str()),
    };
    let mut out = Vec::with_capacity(tag.len() + blob.len() + 64);
    let has_opts = option_count(o, compressed) > 0;
    write_array_len(&mut out, if has_opts { 3 } else { 2 });
    write_str(&mut out, tag.as_bytes());
    if o.blob_as_str32 {
        out.push(0xDB);
        out.extend_from_slice(&(blob.len() as u32).to_be_bytes());
    } else {
        write_bin_len(&mut out, blob.len());
    }
    out.extend_from_slice(blob);
    write_options(&mut out, o, entry_count, compressed);
    out
}
