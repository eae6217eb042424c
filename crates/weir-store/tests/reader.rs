//! The streaming chunk reader: the same events as the whole-chunk accessors, one block at a
//! time, and a chunk damaged after it was queued is never counted as delivered.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::*;
use futures::future::BoxFuture;
use weir_store::{Buffer, BufferConfig, ChunkRef, ChunkSink, Compress, WriteError};

/// What a streaming sink saw of each chunk.
#[derive(Default)]
struct Streamed {
    seqs: Mutex<Vec<u64>>,
    blocks: Mutex<Vec<usize>>,
    errors: Mutex<Vec<String>>,
    /// Damage the chunk file (flip a byte in its first payload) before reading it.
    damage_in: Option<PathBuf>,
}

impl ChunkSink for Streamed {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            if let Some(dir) = &self.damage_in {
                for e in std::fs::read_dir(dir).expect("buffer dir").flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with("buffer.q") && !name.ends_with(".meta") {
                        let mut f = std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(e.path())
                            .expect("chunk file");
                        let mut b = [0u8; 1];
                        f.seek(SeekFrom::Start(20)).expect("seek");
                        f.read_exact(&mut b).expect("read");
                        f.seek(SeekFrom::Start(20)).expect("seek");
                        f.write_all(&[b[0] ^ 0x55]).expect("write");
                    }
                }
            }
            let mut seqs = Vec::new();
            let mut events = match chunk.event_reader() {
                Ok(r) => r,
                Err(e) => {
                    self.errors.lock().expect("lock").push(e.to_string());
                    return Ok(());
                }
            };
            loop {
                match events.next_event() {
                    Ok(Some((_, record))) => seqs.push(seq_of(record)),
                    Ok(None) => break,
                    Err(e) => {
                        self.errors.lock().expect("lock").push(e.to_string());
                        // Claims success anyway: the flusher must not believe it.
                        return Ok(());
                    }
                }
            }
            // The whole-chunk accessors give the same events, and the stored blocks
            // concatenated are `stored()`.
            let whole: Vec<u64> = chunk.events().map(|(_, r)| seq_of(r)).collect();
            assert_eq!(whole, seqs);
            let mut r = chunk.reader().expect("reader");
            let mut stored = Vec::new();
            let mut n = 0;
            while let Some(b) = r.next_stored_block().expect("block") {
                stored.extend_from_slice(b);
                n += 1;
            }
            assert_eq!(&stored[..], &chunk.stored()[..]);
            assert_eq!(chunk.records(), seqs.len() as u64);
            self.blocks.lock().expect("lock").push(n);
            self.seqs.lock().expect("lock").extend(seqs);
            Ok(())
        })
    }

    fn reads_whole_chunk(&self) -> bool {
        false
    }
}

async fn deliver(buffer: &Buffer, sink: Arc<Streamed>) {
    let h = weir_store::spawn_flusher(buffer.clone(), sink, None);
    buffer.flush_all();
    buffer.shutdown(true).await;
    let _ = h.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_reader_matches_the_whole_chunk() {
    for (file, compress) in [
        (true, Compress::Text),
        (true, Compress::Gzip),
        (false, Compress::Text),
        (false, Compress::Gzip),
    ] {
        let dir = temp_dir("reader");
        let mut cfg = if file {
            BufferConfig::file(&dir)
        } else {
            BufferConfig::memory()
        };
        cfg.compress = compress;
        let (buffer, _) = Buffer::open(cfg, "reader").expect("open");
        for b in 0..20u64 {
            buffer
                .append("t", &batch(b * 10..b * 10 + 10, 1_700_000_000))
                .await
                .expect("commit");
        }
        let sink = Arc::new(Streamed::default());
        deliver(&buffer, sink.clone()).await;
        let seqs = sink.seqs.lock().expect("lock").clone();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>(), "{file} {compress:?}");
        assert_eq!(*sink.blocks.lock().expect("lock"), vec![20]);
        assert!(sink.errors.lock().expect("lock").is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_damaged_after_queueing_goes_to_failed_whatever_the_output_says() {
    let dir = temp_dir("reader-damaged");
    let (buffer, _) = Buffer::open(BufferConfig::file(&dir), "reader").expect("open");
    buffer
        .append("t", &batch(0..10, 1_700_000_000))
        .await
        .expect("commit");
    let sink = Arc::new(Streamed {
        damage_in: Some(dir.clone()),
        ..Streamed::default()
    });
    deliver(&buffer, sink.clone()).await;
    let errors = sink.errors.lock().expect("lock").clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("bad CRC"), "{errors:?}");
    let failed: Vec<_> = std::fs::read_dir(dir.join("failed"))
        .expect("failed/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        failed.iter().any(|n| n.starts_with("buffer.q")),
        "{failed:?}"
    );
}
