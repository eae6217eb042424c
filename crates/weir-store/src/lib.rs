//! `weir-store` owns weir's durable chunk store and the Fluentd-style buffer policy in front
//! of every buffered output: chunk files of CRC-framed blocks with a JSON sidecar, group commit
//! (one write and one fdatasync per chunk file per batch, on a dedicated thread per shard,
//! with `O_DIRECT` where the filesystem allows it; delivered chunk files are reused),
//! recovery on open (torn tails cut, damaged sidecars moved to `corrupt/`), chunk keys
//! (`tag`, `time`, record keys), size and count limits, overflow actions, flush modes, the
//! retry schedule and the flusher loop that hands queued chunks to an output's [`ChunkSink`].
//!
//! It does no networking and knows nothing of the server: an output calls
//! [`Buffer::append`] from its `emit` and turns the returned [`Commit`] into the pipeline's
//! `Accepted::Later`. See `docs/buffering.md` for the guarantees in plain words.
//!
//! ```no_run
//! # async fn demo(batch: weir_proto::EventBatch) -> Result<(), weir_store::StoreError> {
//! use weir_store::{Buffer, BufferConfig};
//! let (buffer, report) = Buffer::open(BufferConfig::file("/var/lib/weir/buf"), "out_s3")?;
//! println!("recovered {} queued chunks", report.queued);
//! buffer.append("app.log", &batch).await?; // on disk now: safe to ack
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod config;
mod direct;
mod error;
mod flush;
pub mod format;
pub mod key;
mod pace;
mod read;
pub mod retry;
mod store;

pub use config::{
    BufferConfig, BufferDefaults, BufferType, CommitPriority, Compress, FileLayout, FlushMode,
    OverflowAction,
};
pub use error::{StoreError, WriteError};
pub use flush::{blocking, spawn_flusher, ChunkSink};
pub use key::{ChunkKey, ChunkKeySpec, RecordKey, TimekeyZone};
pub use read::{ChunkEvents, ChunkReader, TaggedEvent};
pub use retry::{RetryParams, RetryState};
pub use store::{Buffer, BufferStats, BufferUsage, ChunkRef, Commit, RecoveryReport};
