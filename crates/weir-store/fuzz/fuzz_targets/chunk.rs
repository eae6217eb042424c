//! Feeds arbitrary bytes to what recovery reads from disk: the block scanner (as a chunk file),
//! the entry counter and the gzip block reader (as each intact payload), and the sidecar
//! parser. A damaged file must be cut or refused, never panic or claim bytes it does not have.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_store::format::{count_entries, gunzip_block, scan_blocks, MetaFile, BLOCK_HEADER};

fuzz_target!(|data: &[u8]| {
    let scan = scan_blocks(data);
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
    // The whole input as a sidecar: parsed or refused.
    let _ = MetaFile::from_bytes(data);
    // The intact prefix scans the same; the cut-off tail adds nothing.
    let again = scan_blocks(&data[..scan.good_len]);
    assert_eq!(again, scan);
});
