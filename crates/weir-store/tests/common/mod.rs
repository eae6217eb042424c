//! Helpers shared by the integration tests: batches with sequence numbers, a collecting sink,
//! temporary directories.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use weir_proto::msgpack::{write_map_len, write_str, write_uint};
use weir_proto::{EntryRef, EventBatch, EventTime};
use weir_store::{Buffer, ChunkKey, ChunkRef, ChunkSink, WriteError};

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "weir-store-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `count` entries `[time, record]` (records of [`record`] with seq 0.., 4 shards, all at the
/// same EventTime) back to back: what a chunk stores for them.
pub fn entries_blob(count: u64) -> Vec<u8> {
    let mut blob = Vec::new();
    for seq in 0..count {
        let mut rec = Vec::new();
        record(&mut rec, seq, 4);
        weir_proto::encode_entry(
            &mut blob,
            weir_proto::EventTime::new(1_700_000_000, 0),
            &rec,
            weir_proto::TimeFormat::EventTime,
        );
    }
    blob
}

/// A record `{"seq": n, "msg": "hello weir", "k": {"shard": n % shards}}`.
pub fn record(out: &mut Vec<u8>, seq: u64, shards: u64) {
    write_map_len(out, 3);
    write_str(out, b"seq");
    write_uint(out, seq);
    write_str(out, b"msg");
    write_str(out, b"hello weir, this is a log line");
    write_str(out, b"k");
    write_map_len(out, 1);
    write_str(out, b"shard");
    write_uint(out, seq % shards.max(1));
}

/// A batch with one event per sequence number, all at `time`.
pub fn batch(seqs: impl IntoIterator<Item = u64>, time: u32) -> EventBatch {
    batch_at(seqs.into_iter().map(|s| (s, time)))
}

/// A batch of (seq, time) events.
pub fn batch_at(events: impl IntoIterator<Item = (u64, u32)>) -> EventBatch {
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    for (s, t) in events {
        let start = buf.len() as u32;
        record(&mut buf, s, 4);
        entries.push(EntryRef {
            time: EventTime::new(t, 0),
            start,
            end: buf.len() as u32,
        });
    }
    EventBatch::new(Bytes::from(buf), entries)
}

/// The `seq` field of a record.
pub fn seq_of(record: &[u8]) -> u64 {
    weir_store::key::record_value_string(record, &["seq".to_string()])
        .parse()
        .unwrap_or(u64::MAX)
}

/// One delivered chunk: its key, sequence numbers and event times.
pub type Delivered = (ChunkKey, Vec<u64>, Vec<u32>);

/// A sink that keeps what it is given; it can be told to fail.
#[derive(Default)]
pub struct Collect {
    /// Delivered chunks: key, sequence numbers, times.
    pub chunks: Mutex<Vec<Delivered>>,
    /// Fail this many more writes with a retryable error.
    pub fail_next: AtomicUsize,
    /// Fail every write with an unrecoverable error.
    pub unrecoverable: std::sync::atomic::AtomicBool,
    /// When each write was attempted (tokio clock).
    pub attempts: Mutex<Vec<tokio::time::Instant>>,
}

impl Collect {
    pub fn seqs(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .chunks
            .lock()
            .map(|c| c.iter().flat_map(|(_, s, _)| s.clone()).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl ChunkSink for Collect {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            if let Ok(mut a) = self.attempts.lock() {
                a.push(tokio::time::Instant::now());
            }
            if self.unrecoverable.load(Ordering::SeqCst) {
                return Err(WriteError::Unrecoverable("rejected".into()));
            }
            if self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(WriteError::Retryable("destination down".into()));
            }
            let seqs = chunk.events().map(|(_, r)| seq_of(r)).collect();
            let times = chunk.events().map(|(t, _)| t.sec).collect();
            if let Ok(mut c) = self.chunks.lock() {
                c.push((chunk.key().clone(), seqs, times));
            }
            Ok(())
        })
    }
}

/// Delivers everything in `buffer` to a fresh collecting sink and shuts the buffer down.
pub async fn drain(buffer: &Buffer) -> Arc<Collect> {
    let sink = Arc::new(Collect::default());
    let h = weir_store::spawn_flusher(buffer.clone(), sink.clone(), None);
    buffer.flush_all();
    buffer.shutdown(true).await;
    let _ = h.await;
    sink
}

/// Scans a chunk data file written by the store (`<prefix>b<id><suffix>` or `…q…`): its blocks'
/// CRCs are seeded with the chunk id, which is the 32 hex digits after the state letter.
pub fn scan_file(path: &std::path::Path, data: &[u8]) -> weir_store::format::Scan {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = name
        .char_indices()
        .filter(|&(_, c)| c == 'b' || c == 'q')
        .map(|(i, _)| &name[i + 1..])
        .find_map(|rest| {
            rest.get(..32)
                .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .unwrap_or_default();
    weir_store::format::scan_chunk(data, weir_store::format::seed(id))
}
