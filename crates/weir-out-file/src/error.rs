//! The crate's error type.

use std::path::PathBuf;

use crate::sanitize::UnsafePath;

/// Why a chunk could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FileOutputError {
    /// A file system operation failed (retryable: a full disk, a missing mount).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The chunk's metadata could not be stored (retryable).
    #[error("chunk metadata: {0}")]
    Metadata(String),
    /// The chunk's events could not be read back from the buffer (an I/O error or damage).
    /// Nothing of the chunk is left under a final name; the buffer keeps the chunk (in
    /// `failed/` when the damage is in its data).
    #[error("reading the chunk: {0}")]
    Read(String),
    /// Compression failed (retryable).
    #[error("gzip: {0}")]
    Gzip(String),
    /// The rendered path would leave the configured directory or break file-system limits;
    /// nothing is written (unrecoverable: the chunk goes to the secondary or `failed/`).
    #[error("refusing to write '{path}': {why}")]
    UnsafePath {
        /// The rendered path (NUL shown as `\0`).
        path: String,
        /// What is wrong with it.
        why: UnsafePath,
    },
    /// The test hook stopped the write as a crash would.
    #[error("simulated crash (test hook)")]
    SimulatedCrash,
}

impl FileOutputError {
    /// True when retrying cannot help.
    pub fn is_unrecoverable(&self) -> bool {
        matches!(self, FileOutputError::UnsafePath { .. })
    }
}
