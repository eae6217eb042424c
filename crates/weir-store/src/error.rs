//! Errors of the store, the buffer policy and the outputs that drain it.

use std::path::PathBuf;

/// Why an append, a recovery or a state change failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed (a full disk, a read-only file system, a missing directory).
    /// The events of a failed append are not in the store and must not be acknowledged.
    #[error("{op} {path}: {message}")]
    Io {
        /// What weir was doing, for example `write` or `fsync`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's message.
        message: String,
        /// The raw OS error number, when there is one (ENOSPC is 28 on Linux).
        errno: Option<i32>,
    },
    /// The buffer is at `total_limit_size` and its overflow action refuses new events.
    #[error("buffer '{0}' is full (total_limit_size reached)")]
    BufferFull(String),
    /// The buffer is shutting down and takes no new events.
    #[error("buffer '{0}' is shutting down")]
    ShuttingDown(String),
    /// The commit thread of the buffer is gone (it panicked or the buffer was dropped).
    #[error("buffer '{0}': the commit thread stopped")]
    CommitThreadGone(String),
    /// A chunk's data could not be read back (bad CRC or undecodable payload).
    #[error("chunk {id}: {message}")]
    Corrupt {
        /// The chunk id.
        id: String,
        /// What is wrong.
        message: String,
    },
}

impl StoreError {
    /// Builds an [`StoreError::Io`] from an `std::io::Error`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, e: &std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            message: e.to_string(),
            errno: e.raw_os_error(),
        }
    }

    /// True when the error is "no space left on device" (or EFBIG / EDQUOT, which mean the same
    /// to a caller: the bytes did not fit).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { errno: Some(e), .. }
            if *e == libc::ENOSPC || *e == libc::EFBIG || *e == libc::EDQUOT)
    }
}

/// Why an output could not write a chunk.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// A failure worth retrying (network, throttling, a 5xx answer). The chunk stays queued and
    /// the retry schedule decides when it is tried again.
    #[error("{0}")]
    Retryable(String),
    /// A failure retrying cannot fix (the destination rejects this data). The chunk goes to the
    /// secondary output if there is one, else to `failed/`.
    #[error("unrecoverable: {0}")]
    Unrecoverable(String),
}
