//! `weir-out-file` owns Fluentd's `@type file` output: reading its configuration (including
//! the v0.12 flat parameters), naming files exactly as Fluentd's `out_file` names them (time
//! slice, `*`, `_N` index, `path_suffix`, `.gz`, placeholders), formatting a chunk's events,
//! and writing them durably as a [`weir_store::ChunkSink`]. It also owns [`sanitize`], the
//! rule that keeps tag and record values from steering a path outside its directory, public so
//! that the S3 output can apply it to object keys, and [`secondary`], Fluentd's
//! `secondary_file` output for `<secondary>` sections.
//!
//! It does not own the buffer (that is `weir-store`), the formatters (`weir-format`) or the
//! placeholder checks (`weir-route::placeholder`).
//!
//! # Durability and retries
//!
//! `write` returns `Ok` only after the file's data is fsync'ed and, for every file or
//! directory created or renamed, its directory too; only then does the flusher delete the
//! chunk. A write that fails, or a process that dies half-way, leaves the chunk in the buffer,
//! and the retry must not write any line twice. weir uses two schemes:
//!
//! * **`append false`** (one file per chunk, `_N`): the chunk is written whole to
//!   `.weir-out-file.<chunk id>.tmp` beside the target and fsync'ed; its final name (the first
//!   free `_N`) and inode are recorded in the chunk's metadata (`set_metadata`, durable); then
//!   `link(2)` gives it that name (never replacing an existing file) and the temporary name is
//!   removed. A retry that finds the recorded name holding the recorded inode returns at once.
//!   Readers never see a partial file under a final name.
//! * **`append true`** (one file per slice): a marker `.weir-append.<hash of the file name>.<chunk id>` records
//!   the file's length before the chunk's bytes; after the bytes are fsync'ed the marker is
//!   marked committed, the chunk's metadata records the append, and the marker is removed.
//!   Whoever next appends to that file (the same chunk retried, or another chunk) first cuts
//!   the file back to the length in any *uncommitted* marker: those bytes belong to a chunk
//!   still in the buffer, which writes them again whole. So each line ends up in the file
//!   exactly once. A reader tailing the file may see a partial chunk that is later cut.
//!
//! # Differences from Fluentd
//!
//! * `symlink_path` points at the newest **output file** written; Fluentd points it at the
//!   newest buffer chunk file, but weir's chunk files hold framed msgpack, not text.
//! * `recompress` is accepted and changes nothing: weir always formats and then compresses.
//! * Placeholder values are escaped by [`sanitize::value`]; Fluentd inserts them raw.
//! * When `tag` is not a chunk key but the formatter or `<inject>` writes the tag, weir adds
//!   `tag` to the chunk keys internally (weir's chunks do not keep per-event tags), so with
//!   several tags and `append false` each tag gets its own `_N` file where Fluentd mixes them.
//! * `file_perm`/`dir_perm` are read as parameters (Fluentd v1 reads `<system>`
//!   `file_permission`/`dir_permission`); the server may set [`FileOutputConfig::file_perm`]
//!   and [`FileOutputConfig::dir_perm`] from `<system>`.
//! * Events a formatter rejects are skipped with a warning (Fluentd fails at emit time).
//!
//! See `docs/outputs.md` for the whole picture.

#![warn(missing_docs)]

mod config;
mod error;
pub mod path;
pub mod sanitize;
pub mod secondary;
mod write;

pub use config::{FileOutputConfig, DEFAULT_TIMEKEY_SECS};
pub use error::FileOutputError;
pub use secondary::{PrimaryFormat, SecondaryFileConfig, SecondaryFileOutput};
pub use write::{
    ChunkSource, EventStream, FileOutput, IterEvents, META_APPENDED, META_WRITTEN, WRITE_BUFFER,
};
