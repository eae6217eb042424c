//! The on-disk format: CRC-framed blocks and the chunk sidecar.
//!
//! A block is `len: u32 LE | crc: u32 LE | payload[len]`, where `crc` is the CRC-32C
//! (Castagnoli) of the chunk's id (its 32 hex digits), the four `len` bytes and the payload,
//! so a damaged length is caught as surely as a damaged payload, and a block written for
//! another chunk never passes as one of this chunk's: a delivered chunk's file is reused for
//! a new chunk (see the store's recycling), and the old chunk's blocks past the new chunk's end
//! fail the check. The id enters as the CRC's starting value, its [`seed`]. Chunks written
//! before sidecar version 2, and memory chunks, use the seed 0 (no id). The payload is msgpack
//! entries back to back, gzip-compressed as one gzip member per block when the buffer has
//! `compress gzip`. A chunk file is nothing but blocks, back to back.
//!
//! An entry is one of:
//!
//! * `[time, record]` (a two-element array): the time as the EventTime ext (nil reads as
//!   zero) and the record, one msgpack map. The event's tag is the chunk key's tag when `tag`
//!   is a chunk key, and unknown otherwise. A payload of these entries is a PackedForward
//!   blob. This is what a buffer writes by default.
//! * `[time, record, tag]` (a three-element array): the same, followed by the tag the event
//!   was appended under, a msgpack `str` of UTF-8. A buffer writes these when
//!   [`crate::BufferConfig::keep_tags`] is set (by an output that writes each event's tag
//!   while `tag` is not a chunk key).
//!
//! Readers accept both kinds, mixed in one chunk and even in one block (a chunk written before
//! a restart whose configuration changed keeps its older entries).
//!
//! A chunk file that is still being written may end with fewer than [`PAGE`] zero bytes after
//! its last block: the padding of a direct write (see the store's `direct` module). A zero
//! length ends a scan there, recovery cuts such padding off without calling it damage, and a
//! chunk file is cut to its last block before it is queued for delivery.

use std::io::Read;

use serde::{Deserialize, Serialize};

/// Bytes in a block header.
pub const BLOCK_HEADER: usize = 8;

/// The largest payload a block may declare; anything above is treated as damage.
pub const MAX_BLOCK: u32 = 1 << 30;

/// The sidecar's format version. Version 2 added the chunk id to the block CRC; version 1
/// chunks (CRC without the id) are still read.
pub const META_VERSION: u32 = 2;

/// The page size of direct writes: a chunk file being written may end with up to this many
/// zero bytes, less one, after its last block.
pub const PAGE: usize = 4096;

/// True when `bytes`, what follows the last intact block of a chunk file, is only the zero
/// padding of a direct write: shorter than a [`PAGE`] and all zeros.
pub fn is_padding(bytes: &[u8]) -> bool {
    bytes.len() < PAGE && bytes.iter().all(|&b| b == 0)
}

/// The CRC seed of the chunk with id `id`: the CRC-32C of the id's bytes.
pub fn seed(id: &str) -> u32 {
    crc32c::crc32c(id.as_bytes())
}

/// The CRC of a block of a chunk whose seed is `seed`: CRC-32C of its four length bytes
/// followed by its payload, starting from `seed`.
///
/// The payload, which is most of a chunk's bytes, goes through `crc_fast`: on x86-64 with
/// AVX-512 it folds 64 bytes at a time with carry-less multiplication, about twice the rate of
/// the `crc32` instruction that `crc32c` uses (measured here: 62 against 30 GB/s on 220 KB
/// blocks), and it picks the best code the CPU has at run time. The four length bytes stay
/// with `crc32c`; both compute the same CRC-32C (see the test beside this).
pub(crate) fn crc_of(seed: u32, len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c_append_fast(crc32c::crc32c_append(seed, &len), payload)
}

/// `crc32c::crc32c_append(crc, bytes)`, computed by `crc_fast`. A finished CRC-32C is its
/// register inverted, so the register to carry on from is `!crc`.
fn crc32c_append_fast(crc: u32, bytes: &[u8]) -> u32 {
    let mut digest =
        crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(bytes);
    digest.finalize() as u32
}

/// The header of a block holding `payload` in a chunk whose CRC seed is `seed`.
pub(crate) fn block_header(seed: u32, payload: &[u8]) -> [u8; BLOCK_HEADER] {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let crc = crc_of(seed, len, payload).to_le_bytes();
    [
        len[0], len[1], len[2], len[3], crc[0], crc[1], crc[2], crc[3],
    ]
}

/// Re-seeds a block header made with the seed 0 ([`block_header`], [`frame_block`]): its CRC
/// becomes the one for `seed`, without reading the payload again.
pub(crate) fn reseed_header(header: &mut [u8; BLOCK_HEADER], seed: u32) {
    if seed == 0 {
        return;
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let payload_len = u64::from(u32::from_le_bytes([l0, l1, l2, l3]));
    // The CRC of `seed-bytes ++ M` from the CRC of M alone: the seed is the CRC of the id,
    // so this is the CRC of `id ++ M`.
    let crc = crc_combine(seed, crc, 4 + payload_len);
    header[4..].copy_from_slice(&crc.to_le_bytes());
}

/// The CRC-32C polynomial, bit-reflected (the lowest power of x in the top bit).
const POLY: u32 = 0x82F6_3B78;

/// `a(x) * b(x) mod P(x)` for two polynomials in the CRC's reflected bit order.
const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit >>= 1;
    }
    product
}

/// `x^(2^k) mod P(x)` for every k below 64, by squaring.
const X_POW_2K: [u32; 64] = {
    let mut table = [0u32; 64];
    let mut x = 1u32 << 30; // x^1
    let mut k = 0;
    while k < 64 {
        table[k] = x;
        x = mul_mod_p(x, x);
        k += 1;
    }
    table
};

/// `x^(2^k) mod P(x)`: from the table, or for `k` past it (lengths of 2^61 bytes and more,
/// which no chunk has) by squaring its last entry.
fn x_pow_2k(k: usize) -> u32 {
    match X_POW_2K.get(k) {
        Some(&x) => x,
        None => {
            let mut x = X_POW_2K[X_POW_2K.len() - 1];
            for _ in X_POW_2K.len() - 1..k {
                x = mul_mod_p(x, x);
            }
            x
        }
    }
}

/// `x^(8 * bytes) mod P(x)`: the operator that moves a CRC past `bytes` zero bytes.
fn x_pow_bytes(bytes: u64) -> u32 {
    let mut result = 1u32 << 31; // x^0
    let mut n = bytes;
    let mut k = 3; // 8 * bytes = bytes << 3
    while n != 0 {
        if n & 1 != 0 {
            result = mul_mod_p(x_pow_2k(k), result);
        }
        n >>= 1;
        k += 1;
    }
    result
}

/// The CRC-32C of `A ++ B` from the CRC of `A`, the CRC of `B` and the length of `B`. A few
/// hundred shifts whatever the length: a block is reseeded on the commit path, where the
/// square-and-multiply-matrices method took about as long as computing the CRC again.
pub(crate) fn crc_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    mul_mod_p(x_pow_bytes(len_b), crc_a) ^ crc_b
}

/// Appends one framed block holding `payload` to `out`, with the seed 0.
pub fn frame_block(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&block_header(0, payload));
    out.extend_from_slice(payload);
}

/// The result of scanning a chunk file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Byte ranges of the intact payloads, in order.
    pub payloads: Vec<std::ops::Range<usize>>,
    /// Length of the intact prefix: every byte past it is damaged or torn.
    pub good_len: usize,
}

/// Scans framed blocks from the start of `data`, stopping at the first block that is torn
/// (shorter than its header says), has a bad CRC, or declares an impossible length. For a
/// chunk of seed 0 (see [`scan_chunk`]).
pub fn scan_blocks(data: &[u8]) -> Scan {
    scan_chunk(data, 0)
}

/// [`scan_blocks`] for the chunk whose CRC seed is `seed` (see [`seed`]).
pub fn scan_chunk(data: &[u8], seed: u32) -> Scan {
    let mut pos = 0usize;
    let mut payloads = Vec::new();
    while let Some(header) = data.get(pos..pos + BLOCK_HEADER) {
        let len_bytes = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes(len_bytes);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_BLOCK {
            break;
        }
        let start = pos + BLOCK_HEADER;
        let Some(payload) = data.get(start..start + len as usize) else {
            break;
        };
        if crc_of(seed, len_bytes, payload) != crc {
            break;
        }
        payloads.push(start..start + len as usize);
        pos = start + len as usize;
    }
    Scan {
        payloads,
        good_len: pos,
    }
}

/// Gzip-compresses one block payload (one gzip member).
pub fn gzip_block(payload: &[u8]) -> Vec<u8> {
    weir_proto::gzip(payload)
}

/// Decompresses one gzip block payload, refusing output above `limit` bytes.
pub fn gunzip_block(payload: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut d = flate2::read::GzDecoder::new(payload).take(limit as u64 + 1);
    d.read_to_end(&mut out).map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("block inflates past {limit} bytes"));
    }
    Ok(out)
}

/// Counts the entries of an uncompressed payload, checking that it is a sequence of complete
/// `[time, record]` or `[time, record, tag]` arrays.
pub fn count_entries(payload: &[u8]) -> Result<u64, String> {
    let mut pos = 0;
    let mut n = 0u64;
    while pos < payload.len() {
        match weir_proto::msgpack::read_header(payload, pos) {
            Ok((weir_proto::msgpack::Header::Array(2 | 3), _)) => {}
            Ok(_) => {
                return Err(format!(
                    "entry at offset {pos} is not [time, record] or [time, record, tag]"
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
        pos = weir_proto::msgpack::skip_value(payload, pos).map_err(|e| e.to_string())?;
        n += 1;
    }
    Ok(n)
}

/// The msgpack `str` header of a string of `len` bytes (the smallest form), in a stack
/// buffer: the header is the first `.1` bytes. The tag of a `[time, record, tag]` entry is
/// written as this header followed by its bytes.
pub(crate) fn str_header(len: usize) -> ([u8; 5], usize) {
    let mut h = [0u8; 5];
    let n = if len < 32 {
        h[0] = 0xa0 | len as u8;
        1
    } else if len <= 0xff {
        h[0] = 0xd9;
        h[1] = len as u8;
        2
    } else if len <= 0xffff {
        h[0] = 0xda;
        h[1..3].copy_from_slice(&(len as u16).to_be_bytes());
        3
    } else {
        h[0] = 0xdb;
        h[1..5].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        5
    };
    (h, n)
}

/// The sidecar of a chunk (`<name>.meta` beside the data file): JSON, replaced atomically
/// (write a temporary file, fsync it, rename it over the old one, fsync the directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaFile {
    /// Format version, [`META_VERSION`].
    pub version: u32,
    /// The chunk id (32 lowercase hex digits).
    pub id: String,
    /// The tag, when `tag` is a chunk key.
    pub tag: Option<String>,
    /// The start of the time range, when `time` is a chunk key (Unix seconds).
    pub timekey: Option<i64>,
    /// Record-key chunk keys and their values, in configuration order.
    pub variables: Vec<(String, String)>,
    /// Creation time, Unix seconds.
    pub created: f64,
    /// `staged` or `queued` as of the last sidecar write; the data file's name is authoritative.
    pub state: String,
    /// Record count as of the last sidecar write (written when the chunk is queued); recovery
    /// counts the blocks again and trusts its own count.
    pub records: u64,
    /// Uncompressed payload bytes as of the last sidecar write; recovery recounts.
    pub bytes: u64,
    /// `text` or `gzip`: how block payloads are stored.
    pub compress: String,
    /// Metadata set by the output before delivery (for example the S3 object key), kept across
    /// restarts.
    pub extra: Vec<(String, String)>,
    /// The data file is a delivered chunk's file reused: past this chunk's last block it holds
    /// the older chunk's bytes, which recovery cuts off without calling them damage.
    #[serde(default)]
    pub recycled: bool,
}

impl MetaFile {
    /// Serializes the sidecar.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Parses a sidecar, checking its version.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        let m: MetaFile = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if !(1..=META_VERSION).contains(&m.version) {
            return Err(format!("unknown sidecar version {}", m.version));
        }
        Ok(m)
    }

    /// The CRC seed of the chunk's blocks: from its id since version 2, 0 before.
    pub fn seed(&self) -> u32 {
        if self.version >= 2 {
            seed(&self.id)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_scan_back() {
        let mut f = Vec::new();
        frame_block(&mut f, b"abc");
        frame_block(&mut f, b"defg");
        let s = scan_blocks(&f);
        assert_eq!(s.payloads, vec![8..11, 19..23]);
        assert_eq!(s.good_len, f.len());
        // A torn second block keeps the first.
        let s = scan_blocks(&f[..f.len() - 1]);
        assert_eq!(s.payloads.len(), 1);
        assert_eq!(s.good_len, 11);
    }

    #[test]
    fn str_header_is_the_smallest_msgpack_str_header() {
        for len in [0, 1, 31, 32, 255, 256, 65_535, 65_536, 1 << 20] {
            let mut want = Vec::new();
            weir_proto::msgpack::write_str_len(&mut want, len);
            let (h, n) = str_header(len);
            assert_eq!(&h[..n], &want[..], "len {len}");
        }
    }

    fn entry(out: &mut Vec<u8>, sec: u32, tag: Option<&str>) {
        let record = [0x81, 0xa1, b'a', 0x01]; // {"a": 1}
        let start = out.len();
        weir_proto::encode_entry(
            out,
            weir_proto::EventTime::new(sec, 0),
            &record,
            weir_proto::TimeFormat::EventTime,
        );
        if let Some(t) = tag {
            out[start] = 0x93;
            weir_proto::msgpack::write_str(out, t.as_bytes());
        }
    }

    #[test]
    fn counts_two_and_three_element_entries_mixed() {
        let mut p = Vec::new();
        entry(&mut p, 1, None);
        entry(&mut p, 2, Some("app.a"));
        entry(&mut p, 3, Some(&"x".repeat(300)));
        entry(&mut p, 4, None);
        assert_eq!(count_entries(&p), Ok(4));
        // A cut entry, or an array of another length, is refused.
        assert!(count_entries(&p[..p.len() - 1]).is_err());
        let mut four = p.clone();
        four.extend_from_slice(&[0x94, 0xc0, 0x80, 0xa0, 0xc0]);
        assert!(count_entries(&four)
            .unwrap_err()
            .contains("is not [time, record]"));
    }

    #[test]
    fn a_block_passes_only_under_its_own_chunks_seed() {
        let (a, b) = (seed(&"a".repeat(32)), seed(&"b".repeat(32)));
        for payload in [&b"x"[..], b"hello, block", &[0u8; 5000]] {
            let mut header = block_header(0, payload);
            reseed_header(&mut header, a);
            let block = [&header[..], payload].concat();
            assert_eq!(header, block_header(a, payload));
            // The same bytes as a CRC over the id, the length and the payload.
            let mut whole = "a".repeat(32).into_bytes();
            whole.extend_from_slice(&block[..4]);
            whole.extend_from_slice(payload);
            assert_eq!(block[4..8], crc32c::crc32c(&whole).to_le_bytes());
            assert_eq!(scan_chunk(&block, a).payloads.len(), 1);
            assert!(scan_chunk(&block, b).payloads.is_empty());
            assert!(scan_blocks(&block).payloads.is_empty());
        }
    }

    #[test]
    fn version_one_sidecars_still_read_with_seed_zero() {
        let mut m = MetaFile::from_bytes(
            br#"{"version":1,"id":"0123456789abcdef0123456789abcdef","tag":null,"timekey":null,
                "variables":[],"created":1.0,"state":"staged","records":0,"bytes":0,
                "compress":"text","extra":[]}"#,
        )
        .expect("a version 1 sidecar");
        assert_eq!(m.seed(), 0);
        assert!(!m.recycled);
        m.version = 2;
        assert_eq!(m.seed(), seed("0123456789abcdef0123456789abcdef"));
        m.version = 3;
        assert!(MetaFile::from_bytes(&m.to_bytes()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn combining_crcs_is_the_crc_of_both(
            a in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
        ) {
            let whole = [a.as_slice(), b.as_slice()].concat();
            let combined = crc_combine(crc32c::crc32c(&a), crc32c::crc32c(&b), b.len() as u64);
            proptest::prop_assert_eq!(combined, crc32c::crc32c(&whole));
        }
    }

    #[test]
    fn combining_agrees_with_the_crates_method_for_long_lengths() {
        for len in [
            1u64,
            8,
            4095,
            1 << 20,
            (1 << 30) + 7,
            u64::from(u32::MAX) + 3,
        ] {
            let (a, b) = (0xDEAD_BEEF, 0x1234_5678);
            let expected = crc32c::crc32c_combine(a, b, len as usize);
            assert_eq!(crc_combine(a, b, len), expected, "length {len}");
        }
    }

    #[test]
    fn lengths_past_the_table_are_squared_not_refused() {
        // x^(8 * 2^(k+1)) is the square of x^(8 * 2^k), past the table's last entry too.
        for k in 58..63 {
            let half = x_pow_bytes(1 << k);
            assert_eq!(
                x_pow_bytes(1 << (k + 1)),
                mul_mod_p(half, half),
                "2^{}",
                k + 1
            );
        }
        // The longest length there is: reaches k = 66, and must not panic.
        let _ = crc_combine(0xDEAD_BEEF, 0x1234_5678, u64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn the_fast_crc_carries_on_like_crc32c(
            crc in proptest::num::u32::ANY,
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
        ) {
            proptest::prop_assert_eq!(
                crc32c_append_fast(crc, &bytes),
                crc32c::crc32c_append(crc, &bytes)
            );
        }
    }

    #[test]
    fn the_fast_crc_agrees_at_every_length_the_simd_paths_split_on() {
        // Lengths around the folding widths (16, 64, 128, 256 bytes and more) and a block of
        // a typical request's size, from an unaligned start.
        let data: Vec<u8> = (0..300_001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut lens: Vec<usize> = (0..=600).collect();
        lens.extend([
            1023, 1024, 1025, 4095, 4096, 4097, 65_535, 65_536, 220_017, 300_000,
        ]);
        for len in lens {
            let bytes = &data[1..1 + len];
            for crc in [0, 0xFFFF_FFFF, 0x1234_5678] {
                assert_eq!(
                    crc32c_append_fast(crc, bytes),
                    crc32c::crc32c_append(crc, bytes),
                    "length {len}, crc {crc:#x}"
                );
            }
        }
    }

    #[test]
    fn crc_is_castagnoli() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }
}
