//! Feeds arbitrary bytes to what recovery reads from disk: the block scanner (as a chunk file),
//! the entry counter and the gzip block reader (as each intact payload), and the sidecar
//! parser. A damaged file must be cut or refused, never panic or claim bytes it does not have.
//! The file is scanned as a chunk of seed 0 and as one whose seed is its first four bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_store::format::{
    count_entries, gunzip_block, scan_blocks, scan_chunk, MetaFile, BLOCK_HEADER,
};

fuzz_target!(|data: &[u8]| {
    let seeded = match data.get(..4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    };
    for seed in [0, seeded] {
        check(data, seed);
    }
    // The whole input as a sidecar: parsed or refused.
    if let Ok(m) = MetaFile::from_bytes(data) {
        let _ = m.seed();
    }
});

fn check(data: &[u8], seed: u32) {
    let scan = scan_chunk(data, seed);
    if seed == 0 {
        assert_eq!(scan, scan_blocks(data));
    }
    assert!(scan.good_len <= data.len());
    let mut end = 0;
    for r in &scan.payloads {
        // Payloads follow each other, each after its header, inside the intact prefix.
        assert!(r.start >= end + BLOCK_HEADER && r.end <= scan.good_len);
        end = r.end;
        let payload = &data[r.clone()];
        let _ = count_entries(payload);
        if let Ok(inflated) = gunzip_block(payload, 1 << 20) {
            assert!(inflated.len() <= 1 << 20);
            let _ = count_entries(&inflated);
        }
    }
    assert_eq!(end, scan.good_len);
    // The intact prefix scans the same; the cut-off tail adds nothing.
    let again = scan_chunk(&data[..scan.good_len], seed);
    assert_eq!(again, scan);
}
