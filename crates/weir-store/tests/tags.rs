//! Per-event tags (`keep_tags`): `[time, record, tag]` entries round-trip through the file
//! buffer, mix with `[time, record]` entries in one chunk, and recover exactly after a torn tail.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::*;
use futures::future::BoxFuture;
use proptest::prelude::*;
use weir_store::{Buffer, BufferConfig, ChunkRef, ChunkSink, Compress, RecoveryReport, WriteError};

/// One delivered event: its sequence number and the tag it was stored with.
type Tagged = (u64, Option<String>);

/// A sink that reads every event with its tag, and checks that the other readers agree.
#[derive(Default)]
struct TagSink {
    /// Per delivered chunk, its events.
    chunks: Mutex<Vec<Vec<Tagged>>>,
}

impl TagSink {
    fn events(&self) -> Vec<Tagged> {
        let mut v: Vec<Tagged> = self.chunks.lock().expect("lock").concat();
        v.sort();
        v
    }
}

impl ChunkSink for TagSink {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            let mut got = Vec::new();
            let mut r = chunk.event_reader().expect("reader");
            while let Some((_, record, tag)) = r.next_tagged_event().expect("event") {
                got.push((seq_of(record), tag.map(str::to_string)));
            }
            // The tag-blind readers see the same records.
            let whole: Vec<u64> = chunk.events().map(|(_, r)| seq_of(r)).collect();
            assert_eq!(whole, got.iter().map(|(s, _)| *s).collect::<Vec<_>>());
            let mut r = chunk.event_reader().expect("reader");
            let mut plain = Vec::new();
            while let Some((_, record)) = r.next_event().expect("event") {
                plain.push(seq_of(record));
            }
            assert_eq!(whole, plain);
            assert!(chunk.read_error().is_none());
            assert_eq!(chunk.records(), got.len() as u64);
            self.chunks.lock().expect("lock").push(got);
            Ok(())
        })
    }
}

fn config(dir: &Path, keep_tags: bool, gzip: bool) -> BufferConfig {
    let mut cfg = BufferConfig::file(dir);
    cfg.keep_tags = keep_tags;
    if gzip {
        cfg.compress = Compress::Gzip;
    }
    cfg
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Opens the buffer, appends `(tag, events)` batches (sequence numbers from `first`), and
/// drops it without a shutdown, like a crash after the acks.
fn append_batches(cfg: BufferConfig, first: u64, batches: &[(String, usize)]) -> RecoveryReport {
    runtime().block_on(async {
        let (buf, report) = Buffer::open(cfg, "tags").expect("open");
        let mut seq = first;
        for (tag, n) in batches {
            buf.append(tag, &batch(seq..seq + *n as u64, 1_700_000_000))
                .await
                .expect("commit");
            seq += *n as u64;
        }
        report
    })
}

/// Opens the buffer and delivers everything in it.
fn deliver(cfg: BufferConfig) -> (std::sync::Arc<TagSink>, RecoveryReport) {
    runtime().block_on(async {
        let (buf, report) = Buffer::open(cfg, "tags").expect("open");
        let sink = std::sync::Arc::new(TagSink::default());
        let h = weir_store::spawn_flusher(buf.clone(), sink.clone(), None);
        buf.flush_all();
        buf.shutdown(true).await;
        let _ = h.await;
        (sink, report)
    })
}

/// What `batches` appended from sequence number `first` should read back as.
fn expected(first: u64, batches: &[(String, usize)], tagged: bool) -> Vec<Tagged> {
    let mut seq = first;
    let mut want = Vec::new();
    for (tag, n) in batches {
        for _ in 0..*n {
            want.push((seq, tagged.then(|| tag.clone())));
            seq += 1;
        }
    }
    want
}

/// Tags of every msgpack str length class: fixstr, str 8, str 16, and non-ASCII.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(\\.[a-z0-9_]{1,8}){0,3}",
        "[a-z.]{32,300}",
        Just("app.ünïcødé.☃".to_string()),
        Just("x".repeat(70_000)),
    ]
}

fn batches() -> impl Strategy<Value = Vec<(String, usize)>> {
    proptest::collection::vec((tag(), 1usize..5), 1..6)
}

fn data_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("data file")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Every event reads back with the tag it was appended under, all tags in one chunk (no
    /// `tag` chunk key), across a restart, with and without gzip.
    #[test]
    fn tagged_entries_round_trip(batches in batches(), gzip in any::<bool>()) {
        let dir = temp_dir("tags-roundtrip");
        let total: usize = batches.iter().map(|(_, n)| n).sum();
        append_batches(config(&dir, true, gzip), 0, &batches);
        let (sink, report) = deliver(config(&dir, true, gzip));
        prop_assert_eq!(report.records, total as u64);
        prop_assert_eq!(sink.chunks.lock().expect("lock").len(), 1);
        prop_assert_eq!(sink.events(), expected(0, &batches, true));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A chunk written without tags and continued with them (a restart with a new
    /// configuration) holds both kinds of entry: recovery counts them all, and readers give
    /// a tag only for the entries that have one. The other way round too.
    #[test]
    fn mixed_entries_count_and_read_right(
        before in batches(),
        after in batches(),
        tagged_first in any::<bool>(),
        gzip in any::<bool>(),
    ) {
        let dir = temp_dir("tags-mixed");
        let n_before: usize = before.iter().map(|(_, n)| n).sum();
        let n_after: usize = after.iter().map(|(_, n)| n).sum();
        append_batches(config(&dir, tagged_first, gzip), 0, &before);
        let report = append_batches(config(&dir, !tagged_first, gzip), n_before as u64, &after);
        prop_assert_eq!(report.records, n_before as u64);
        let (sink, report) = deliver(config(&dir, tagged_first, gzip));
        prop_assert_eq!(report.records, (n_before + n_after) as u64);
        prop_assert_eq!(sink.chunks.lock().expect("lock").len(), 1);
        let mut want = expected(0, &before, tagged_first);
        want.extend(expected(n_before as u64, &after, !tagged_first));
        prop_assert_eq!(sink.events(), want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A tagged chunk cut anywhere recovers exactly the events of the blocks before the cut,
    /// with their tags.
    #[test]
    fn torn_tail_recovery_is_exact(batches in batches(), at in 0.0f64..1.0) {
        let dir = temp_dir("tags-torn");
        append_batches(config(&dir, true, false), 0, &batches);
        let file = data_file(&dir);
        let mut data = std::fs::read(&file).expect("read");
        let blocks = scan_file(&file, &data).payloads;
        prop_assert_eq!(blocks.len(), batches.len());
        let off = ((data.len() as f64 * at) as usize).min(data.len() - 1);
        data.truncate(off);
        std::fs::write(&file, &data).expect("write");
        let whole = blocks.iter().zip(&batches).take_while(|(r, _)| r.end <= off).count();
        let (sink, report) = deliver(config(&dir, true, false));
        let want = expected(0, &batches[..whole], true);
        prop_assert_eq!(report.records, want.len() as u64);
        prop_assert_eq!(sink.events(), want);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Without `keep_tags` the entries stay `[time, record]`, byte for byte what the forward
/// protocol packs, so a buffer that does not need tags pays nothing for them.
#[test]
fn without_keep_tags_entries_are_packed_forward() {
    let dir = temp_dir("tags-off");
    append_batches(config(&dir, false, false), 0, &[("app.a".into(), 3)]);
    let data = std::fs::read(data_file(&dir)).expect("read");
    let blocks = scan_file(&data_file(&dir), &data).payloads;
    let want = entries_blob(3);
    assert_eq!(&data[blocks[0].clone()], &want[..]);
    let (sink, _) = deliver(config(&dir, true, false));
    assert_eq!(sink.events(), vec![(0, None), (1, None), (2, None)]);
    let _ = std::fs::remove_dir_all(&dir);
}
