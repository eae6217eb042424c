//! The file store: round trips, group commit, recovery of torn and damaged chunks.

mod common;

use std::time::Instant;

use common::*;
use proptest::prelude::*;
use weir_store::{Buffer, BufferConfig};

fn open(dir: &std::path::Path) -> (Buffer, weir_store::RecoveryReport) {
    Buffer::open(BufferConfig::file(dir), "test").expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_round_trip() {
    let dir = temp_dir("roundtrip");
    let (buf, report) = open(&dir);
    assert_eq!(report.queued + report.staged, 0);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let buf = buf.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50u64 {
                let seq = t * 1000 + i;
                buf.append("app", &batch([seq], 1_700_000_000))
                    .await
                    .expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let stats = buf.stats();
    assert_eq!(stats.blocks_written, 800);
    // Every committed block is on disk: read the files directly, without the buffer.
    let mut on_disk = 0;
    for e in std::fs::read_dir(&dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "log") {
            let data = std::fs::read(&p).expect("read");
            let scan = scan_file(&p, &data);
            assert!(weir_store::format::is_padding(&data[scan.good_len..]));
            for r in scan.payloads {
                on_disk += weir_store::format::count_entries(&data[r]).expect("entries");
            }
        }
    }
    assert_eq!(on_disk, 800);
    drop(buf); // no shutdown: like a crash after the acks

    let (buf, report) = open(&dir);
    assert_eq!(report.records, 800);
    assert!(report.truncated.is_empty() && report.corrupt.is_empty());
    let got = drain(&buf).await.seqs();
    let mut want: Vec<u64> = (0..16u64)
        .flat_map(|t| (0..50).map(move |i| t * 1000 + i))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Not a timed assertion: prints what group commit does at several concurrency levels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_micro_benchmark() {
    for writers in [1usize, 8, 64] {
        let dir = temp_dir("bench");
        let (buf, _) = open(&dir);
        let per_writer = (512 / writers).max(8);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let buf = buf.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..per_writer {
                    let t0 = Instant::now();
                    let seq = (w * 100_000 + i) as u64;
                    buf.append("bench", &batch(seq * 10..seq * 10 + 10, 1_700_000_000))
                        .await
                        .expect("commit");
                    lat.push(t0.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.expect("task"));
        }
        let elapsed = start.elapsed();
        lat.sort();
        let s = buf.stats();
        let commits = lat.len();
        println!(
            "group commit: {writers:>3} writers, {commits} commits of 10 events in {:.2?}: {:.0} commits/s, {} fdatasyncs ({:.1} commits per fsync), latency p50 {:.2?} p99 {:.2?}",
            elapsed,
            commits as f64 / elapsed.as_secs_f64(),
            s.fsyncs,
            commits as f64 / s.fsyncs.max(1) as f64,
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100],
        );
        assert_eq!(s.blocks_written as usize, commits);
        buf.shutdown(false).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test]
async fn unreadable_sidecar_moves_chunk_to_corrupt() {
    let dir = temp_dir("corrupt");
    let (buf, _) = open(&dir);
    buf.append("a", &batch([1, 2, 3], 1_700_000_000))
        .await
        .expect("commit");
    drop(buf);
    let meta = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(".meta"))
        .expect("sidecar");
    std::fs::write(&meta, b"{not json").expect("write");
    let (buf, report) = open(&dir);
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert!(report.corrupt[0].0.to_string_lossy().contains("buffer.b"));
    let moved: Vec<_> = std::fs::read_dir(dir.join("corrupt"))
        .expect("corrupt dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(moved.len(), 2, "{moved:?}");
    assert_eq!(buf.stats().staged_chunks, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `blocks` appends (one block each) to a fresh file buffer, then returns the
/// directory, the data file and each block's (end offset, records).
fn chunk_with_blocks(
    blocks: &[usize],
) -> (std::path::PathBuf, std::path::PathBuf, Vec<(usize, u64)>) {
    let dir = temp_dir("torn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (buf, _) = open(&dir);
        let mut seq = 0u64;
        for &n in blocks {
            buf.append("t", &batch(seq..seq + n as u64, 1_700_000_000))
                .await
                .expect("commit");
            seq += n as u64;
        }
    });
    let data_file = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("data file");
    let mut data = std::fs::read(&data_file).expect("read");
    let scan = scan_file(&data_file, &data);
    // A direct write leaves page padding after the last block; the tests damage the blocks
    // alone.
    assert!(weir_store::format::is_padding(&data[scan.good_len..]));
    data.truncate(scan.good_len);
    std::fs::write(&data_file, &data).expect("write");
    let ends = scan
        .payloads
        .iter()
        .zip(blocks)
        .map(|(r, &n)| (r.end, n as u64))
        .collect();
    (dir, data_file, ends)
}

fn recovered_seqs(dir: &std::path::Path) -> (Vec<u64>, weir_store::RecoveryReport) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (buf, report) = open(dir);
        let seqs = drain(&buf).await.seqs();
        (seqs, report)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Truncating a chunk file anywhere, or flipping a byte anywhere, leaves exactly the
    /// blocks that end before the damage.
    #[test]
    fn recovery_keeps_intact_prefix(
        blocks in proptest::collection::vec(1usize..6, 1..6),
        at in 0.0f64..1.0,
        flip in any::<bool>(),
        xor in 1u8..=255,
    ) {
        let (dir, file, ends) = chunk_with_blocks(&blocks);
        let mut data = std::fs::read(&file).expect("read");
        let len = data.len();
        let off = ((len as f64 * at) as usize).min(len - 1);
        if flip {
            data[off] ^= xor;
        } else {
            data.truncate(off);
        }
        std::fs::write(&file, &data).expect("write");
        // Blocks wholly before the damaged byte survive; for a cut at `off`, blocks ending at
        // or before it.
        let mut want_records = 0u64;
        for &(end, n) in &ends {
            if end <= off { want_records += n; }
        }
        let (seqs, report) = recovered_seqs(&dir);
        prop_assert_eq!(seqs, (0..want_records).collect::<Vec<_>>());
        let cut = flip || !(off == 0 || ends.iter().any(|&(e, _)| e == off));
        prop_assert_eq!(!report.truncated.is_empty(), cut);
        if cut {
            // The cut bytes are kept in corrupt/.
            let kept = std::fs::read_dir(dir.join("corrupt")).map(|d| d.count()).unwrap_or(0);
            prop_assert!(kept >= 1);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn page_padding_after_the_last_block_is_cut_quietly() {
    let (dir, file, ends) = chunk_with_blocks(&[3, 2]);
    let mut data = std::fs::read(&file).expect("read");
    let blocks_len = data.len();
    data.resize(blocks_len + weir_store::format::PAGE - 1, 0);
    std::fs::write(&file, &data).expect("write");
    let (seqs, report) = recovered_seqs(&dir);
    assert_eq!(seqs, (0..5).collect::<Vec<_>>());
    assert!(report.truncated.is_empty(), "{:?}", report.truncated);
    assert!(!dir.join("corrupt").exists());
    assert_eq!(ends.last().map(|e| e.0), Some(blocks_len));
    // A whole page of zeros is more than padding: it is cut as damage and kept.
    let _ = std::fs::remove_dir_all(&dir);
    let (dir, file, _) = chunk_with_blocks(&[3]);
    let mut data = std::fs::read(&file).expect("read");
    data.resize(data.len() + weir_store::format::PAGE, 0);
    std::fs::write(&file, &data).expect("write");
    let (seqs, report) = recovered_seqs(&dir);
    assert_eq!(seqs, (0..3).collect::<Vec<_>>());
    assert_eq!(report.truncated.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncation_at_every_offset_of_the_last_block() {
    let (dir, file, ends) = chunk_with_blocks(&[3, 2, 4]);
    let original = std::fs::read(&file).expect("read");
    let last_start = ends[1].0;
    for off in last_start..original.len() {
        std::fs::write(&file, &original[..off]).expect("write");
        // Clean any earlier recovery's leftovers so each round starts from the same files.
        let _ = std::fs::remove_dir_all(dir.join("corrupt"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (buf, report) = rt.block_on(async { open(&dir) });
        assert_eq!(report.records, 5, "cut at {off}");
        assert_eq!(
            report.truncated.len(),
            usize::from(off > last_start),
            "cut at {off}"
        );
        drop(buf);
        assert_eq!(
            std::fs::metadata(&file).expect("meta").len() as usize,
            last_start
        );
        std::fs::write(&file, &original).expect("restore");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Chunk files (data and sidecar) and files being removed, in a buffer directory.
fn buffer_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A request that does not fit one chunk is split over several (framed part by part), with
/// and without gzip; everything survives a restart and is delivered once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_split_over_chunks_round_trips() {
    for gzip in [false, true] {
        let dir = temp_dir(if gzip { "split-gzip" } else { "split" });
        let mut cfg = BufferConfig::file(&dir);
        cfg.chunk_limit_records = Some(10);
        if gzip {
            cfg.compress = weir_store::Compress::Gzip;
        }
        let (buf, _) = Buffer::open(cfg.clone(), "split").expect("open");
        buf.append("t", &batch(0..25, 1_700_000_000))
            .await
            .expect("commit");
        buf.append("t", &batch(25..31, 1_700_000_000))
            .await
            .expect("commit");
        buf.sync().await;
        let s = buf.stats();
        assert_eq!((s.queued_chunks, s.staged_chunks), (3, 1), "gzip {gzip}");
        drop(buf); // a crash after the acks

        let (buf, report) = Buffer::open(cfg, "split").expect("reopen");
        assert_eq!(report.records, 31, "gzip {gzip}");
        assert!(report.truncated.is_empty() && report.corrupt.is_empty());
        let sink = drain(&buf).await;
        assert_eq!(sink.seqs(), (0..31).collect::<Vec<_>>(), "gzip {gzip}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The names of the delivered chunk files kept for reuse (`free/buffer.f<id>.log`).
fn free_files(dir: &std::path::Path) -> Vec<String> {
    let free = buffer_files(&dir.join("free"));
    assert!(free
        .iter()
        .all(|n| n.starts_with("buffer.f") && n.ends_with(".log")));
    free
}

/// The chunk data file in `dir` whose name starts with `start` (`buffer.b`: staged,
/// `buffer.q`: queued).
fn chunk_file(dir: &std::path::Path, start: &str) -> std::path::PathBuf {
    let name = buffer_files(dir)
        .into_iter()
        .find(|n| n.starts_with(start) && n.ends_with(".log"))
        .unwrap_or_else(|| panic!("no {start}*.log in {}", dir.display()));
    dir.join(name)
}

/// Delivered chunks leave nothing behind once the buffer is shut down but the data files kept
/// for reuse, and a delivered chunk whose removal was interrupted (its `.deleting` file) is
/// removed on the next start and never delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_chunk_files_are_removed_even_after_an_interrupted_removal() {
    let dir = temp_dir("reaper");
    let mut cfg = BufferConfig::file(&dir);
    cfg.chunk_limit_records = Some(100);
    let (buf, _) = Buffer::open(cfg, "test").expect("open");
    for part in 0..4u64 {
        // Four chunks: more than a buffer with one commit thread keeps for reuse (two).
        buf.append("t", &batch(part * 100..part * 100 + 100, 1_700_000_000))
            .await
            .expect("commit");
    }
    let sink = drain(&buf).await;
    assert_eq!(sink.seqs().len(), 400);
    assert!(
        buffer_files(&dir).is_empty(),
        "left: {:?}",
        buffer_files(&dir)
    );
    assert_eq!(free_files(&dir).len(), 2);

    // A chunk file caught half-removed by a crash: renamed, partly cut.
    let mut block = Vec::new();
    weir_store::format::frame_block(&mut block, &[0x92, 0x01, 0x80]);
    let name = "buffer.q0000000000000001aaaaaaaaaaaaaaaa.log.deleting";
    std::fs::write(dir.join(name), &block).expect("write");
    let (buf, report) = open(&dir);
    assert_eq!(report.records, 0);
    assert!(report.truncated.is_empty() && report.corrupt.is_empty());
    assert!(
        buffer_files(&dir).is_empty(),
        "left: {:?}",
        buffer_files(&dir)
    );
    assert_eq!(buf.stats().free_files, 2);
    let sink = drain(&buf).await;
    assert!(sink.seqs().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A delivered chunk's data file is reused by the next chunk, which overwrites it from the
/// start: the older chunk's bytes past the new chunk's blocks are never read as events,
/// neither after a crash (recovery cuts them quietly: their CRCs carry the older chunk's id)
/// nor when the new chunk is delivered (readers stop at its committed length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_chunk_file_never_gives_back_the_older_chunks_events() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = temp_dir("reuse");
    let (buf, _) = open(&dir);
    buf.append("t", &batch(0..3000, 1_700_000_000))
        .await
        .expect("commit");
    assert_eq!(drain(&buf).await.seqs().len(), 3000);
    let free = free_files(&dir);
    assert_eq!(free.len(), 1);
    let old = std::fs::metadata(dir.join("free").join(&free[0])).expect("free file");

    // The next chunk takes the file: same inode, and the older bytes are still past its blocks.
    let (buf, report) = open(&dir);
    assert_eq!((report.records, buf.stats().free_files), (0, 1));
    buf.append("t", &batch(10_000..10_003, 1_700_000_000))
        .await
        .expect("commit");
    assert_eq!(buf.stats().free_files, 0);
    let data_file = chunk_file(&dir, "buffer.b");
    let now = std::fs::metadata(&data_file).expect("data file");
    assert_eq!(
        now.ino(),
        old.ino(),
        "the delivered chunk's file was not reused"
    );
    assert_eq!(
        now.len(),
        old.len(),
        "the reused file was cut before the seal"
    );
    drop(buf); // a crash after the ack

    let (buf, report) = open(&dir);
    assert_eq!(report.records, 3);
    assert!(report.truncated.is_empty() && report.corrupt.is_empty());
    assert!(!dir.join("corrupt").exists());
    assert_eq!(drain(&buf).await.seqs(), vec![10_000, 10_001, 10_002]);

    // Without a crash: the queued chunk keeps the older bytes past its blocks (the file is not
    // cut), and is read to its last block.
    let (buf, _) = open(&dir);
    buf.append("t", &batch(0..3000, 1_700_000_000))
        .await
        .expect("commit");
    assert_eq!(drain(&buf).await.seqs().len(), 3000);
    let (buf, _) = open(&dir);
    buf.append("t", &batch(20_000..20_002, 1_700_000_000))
        .await
        .expect("commit");
    assert_eq!(drain(&buf).await.seqs(), vec![20_000, 20_001]);

    // A crash while such a chunk is queued: recovery cuts the older bytes quietly.
    let (buf, _) = open(&dir);
    buf.append("t", &batch(30_000..30_002, 1_700_000_000))
        .await
        .expect("commit");
    buf.flush_all();
    buf.sync().await;
    assert_eq!(buf.stats().queued_chunks, 1);
    let queued = chunk_file(&dir, "buffer.q");
    // Not cut to its two events: still the length of the older chunks' file.
    assert!(std::fs::metadata(&queued).expect("queued file").len() >= old.len());
    drop(buf);
    let (buf, report) = open(&dir);
    assert_eq!((report.queued, report.records), (1, 2));
    assert!(report.truncated.is_empty() && report.corrupt.is_empty());
    assert_eq!(drain(&buf).await.seqs(), vec![30_000, 30_001]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With several commit shards, each connection (here: each task) appends to its own shard's
/// chunk: every event survives a crash and a restart, and each task's events are delivered in
/// the order it appended them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_shards_keep_each_connection_in_order_across_a_restart() {
    let dir = temp_dir("shards");
    let mut cfg = BufferConfig::file(&dir);
    cfg.commit_shards = 4;
    let (buf, _) = Buffer::open(cfg.clone(), "shards").expect("open");
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let buf = buf.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let seq = t * 1000 + i * 3;
                buf.append("t", &batch(seq..seq + 3, 1_700_000_000))
                    .await
                    .expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let staged = buf.stats().staged_chunks;
    assert!(staged > 1, "8 tasks over 4 shards use more than one chunk");
    drop(buf); // a crash after the acks

    let (buf, report) = Buffer::open(cfg, "shards").expect("reopen");
    assert_eq!(report.records, 8 * 60);
    assert_eq!(report.staged + report.queued, staged);
    let got = drain(&buf).await.seqs();
    assert_eq!(got.len(), 8 * 60);
    for t in 0..8u64 {
        let mine: Vec<u64> = got.iter().copied().filter(|s| s / 1000 == t).collect();
        let want: Vec<u64> = (0..60).map(|i| t * 1000 + i).collect();
        assert_eq!(mine, want, "task {t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One event of a real request: its time, whether the forwarder wrote the time as an integer
/// (not as the EventTime ext a chunk stores) and its sequence number.
type SentEvent = (u32, u32, bool, u64);

/// Parses a PackedForward request made of `events` (records `{"seq": n, "pad": ...}`) with the
/// real request parser, as the forward input does.
fn packed_request(events: &[SentEvent]) -> weir_proto::EventBatch {
    use weir_proto::msgpack::{write_map_len, write_str, write_uint};
    let mut blob = Vec::new();
    for &(sec, nsec, integer, seq) in events {
        blob.push(0x92);
        if integer {
            write_uint(&mut blob, u64::from(sec));
        } else {
            weir_proto::write_event_time(
                &mut blob,
                weir_proto::EventTime { sec, nsec },
                weir_proto::TimeFormat::EventTime,
            );
        }
        write_map_len(&mut blob, 2);
        write_str(&mut blob, b"seq");
        write_uint(&mut blob, seq);
        write_str(&mut blob, b"pad");
        write_str(&mut blob, "x".repeat((seq % 7) as usize * 10).as_bytes());
    }
    let frame = weir_proto::encode_packed_blob(
        "t",
        &blob,
        weir_proto::Compression::Text,
        events.len(),
        &weir_proto::EncodeOptions::default(),
    );
    match weir_proto::parse_request(
        bytes::Bytes::from(frame),
        &weir_proto::ParseOptions::default(),
    ) {
        Ok(weir_proto::Request::Events(r)) => r.events,
        other => panic!("not an event request: {other:?}"),
    }
}

/// The blocks' payloads of every chunk file in `dir`, concatenated per file.
fn stored_entries(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let data = std::fs::read(p).expect("read");
            let scan = scan_file(p, &data);
            assert!(weir_store::format::is_padding(&data[scan.good_len..]));
            scan.payloads
                .into_iter()
                .flat_map(|r| data[r].to_vec())
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// Entries a forwarder sent exactly as a chunk stores them are copied as they are (runs of
    /// them in one piece); the others (integer times) are encoded again. Either way a chunk
    /// holds exactly the canonical `[EventTime, record]` encoding of every event, in order, per
    /// chunk key.
    #[test]
    fn chunks_hold_the_canonical_entries_whatever_the_request_wrote(
        events in proptest::collection::vec(
            (0u32..3, prop_oneof![Just(0u32), 1u32..1_000_000_000], any::<bool>()),
            1..40,
        ),
        time_key in any::<bool>(),
        small_chunks in any::<bool>(),
    ) {
        // Small chunks split the request over several chunks, at entry boundaries.
        let time_key = time_key && !small_chunks;
        let events: Vec<SentEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, (s, nsec, integer))| (1_700_000_000 + s, nsec, integer, i as u64))
            .collect();
        let dir = temp_dir("verbatim");
        let mut cfg = BufferConfig::file(&dir);
        if time_key {
            cfg.keys.timekey = Some(1);
        }
        if small_chunks {
            cfg.chunk_limit_size = 200;
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        // Kept open while the files are read: full chunks are renamed when they are queued.
        let buf = rt.block_on(async {
            let (buf, _) = Buffer::open(cfg, "test").expect("open");
            buf.append("t", &packed_request(&events)).await.expect("commit");
            buf.sync().await;
            buf
        });
        // The expected chunks: per second of event time with the time key, else one.
        let mut expected: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        for &(sec, nsec, integer, seq) in &events {
            let one = packed_request(&[(sec, nsec, integer, seq)]);
            let (t, record) = one.iter().next().expect("one event");
            let key = if time_key { sec } else { 0 };
            weir_proto::encode_entry(
                expected.entry(key).or_default(),
                t,
                record,
                weir_proto::TimeFormat::EventTime,
            );
        }
        let mut got = stored_entries(&dir);
        let mut want: Vec<Vec<u8>> = expected.into_values().collect();
        if small_chunks {
            // The pieces, put back where they were cut from, tile the whole stream.
            let whole = want.concat();
            let mut at: Vec<(usize, usize)> = got
                .iter()
                .map(|p| {
                    let pos = whole.windows(p.len()).position(|w| w == &p[..]);
                    (pos.unwrap_or(usize::MAX), p.len())
                })
                .collect();
            at.sort();
            let mut next = 0;
            for (pos, len) in at {
                prop_assert_eq!(pos, next);
                next += len;
            }
            prop_assert_eq!(next, whole.len());
            prop_assert!(got.len() > 1 || whole.len() <= 200);
        } else {
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
        drop(buf);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A chunk written before sidecar version 2 (block CRCs without the chunk id) is still
/// recovered and delivered: an upgrade keeps what the buffer held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_chunk_is_still_read() {
    let dir = temp_dir("v1");
    let id = "0005f0000000000000000000000000aa";
    let payload = entries_blob(3);
    let mut data = Vec::new();
    weir_store::format::frame_block(&mut data, &payload);
    std::fs::write(dir.join(format!("buffer.q{id}.log")), &data).expect("data");
    let meta = format!(
        r#"{{"version":1,"id":"{id}","tag":null,"timekey":null,"variables":[],"created":1.0,
            "state":"queued","records":3,"bytes":{},"compress":"text","extra":[]}}"#,
        payload.len()
    );
    std::fs::write(dir.join(format!("buffer.{id}.log.meta")), meta).expect("sidecar");
    let (buf, report) = open(&dir);
    assert_eq!((report.queued, report.records), (1, 3));
    assert!(report.truncated.is_empty() && report.corrupt.is_empty());
    assert_eq!(drain(&buf).await.seqs(), vec![0, 1, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A start keeps as many delivered chunk files for reuse as the configuration allows (one
/// commit thread: two) and removes the others, for example after `commit_shards` went down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_keeps_only_as_many_free_files_as_configured() {
    let dir = temp_dir("free-limit");
    std::fs::create_dir_all(dir.join("free")).expect("free/");
    for n in 0..5 {
        let name = format!("buffer.f{n:032x}.log");
        std::fs::write(dir.join("free").join(name), vec![7u8; 4096]).expect("free file");
    }
    // Not a free file of this buffer: left alone.
    std::fs::write(dir.join("free").join("other.f0.log"), b"x").expect("other");
    let (buf, report) = open(&dir);
    assert_eq!(report.records, 0);
    assert_eq!(buf.stats().free_files, 2);
    let left = buffer_files(&dir.join("free"));
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.contains(&"other.f0.log".to_string()));
    buf.append("t", &batch(0..3, 1_700_000_000))
        .await
        .expect("commit");
    assert_eq!(buf.stats().free_files, 1);
    assert_eq!(drain(&buf).await.seqs(), vec![0, 1, 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A flushed chunk is counted as queued from the moment it leaves the staged ones, also while
/// its commit thread has not sealed it yet: a caller waiting for "nothing staged, queued or in
/// flight" (a test, an operator watching the admin API) must not see an empty buffer then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_chunk_is_counted_until_it_is_queued() {
    let dir = temp_dir("sealing-counted");
    let (buf, _) = open(&dir);
    for round in 0..50u64 {
        buf.append("app", &batch([round], 1_700_000_000))
            .await
            .expect("commit");
        buf.flush_all();
        let s = buf.stats();
        assert_eq!(
            (s.staged_chunks, s.queued_chunks + s.in_flight_chunks),
            (0, round as usize + 1),
            "round {round}: {s:?}"
        );
    }
    buf.sync().await;
    assert_eq!(buf.stats().queued_chunks, 50);
    let _ = std::fs::remove_dir_all(&dir);
}
