//! `weir-out-s3` owns weir's `@type s3` output, compatible with fluent-plugin-s3: reading its
//! configuration ([`S3OutputConfig::from_section`], with fluent-plugin-s3's buffer defaults),
//! building object keys from `s3_object_key_format` ([`key`]), formatting and compressing
//! chunks (`store_as` gzip, zstd, json, text), and uploading them with the AWS SDK
//! ([`S3Output`], a [`weir_store::ChunkSink`]): one PUT for small bodies, a multipart upload
//! for large ones, each object with a CRC32 checksum.
//!
//! Delivery is exactly once per chunk, across crashes: the key chosen for a chunk (after HEAD
//! probing for `%{index}` when `check_object` is on) is recorded durably in the chunk's
//! metadata before the upload starts, and every later try, even after a restart, writes that
//! same key. So S3 never holds a chunk twice and `%{index}` has no gaps.
//!
//! The AWS SDK is used only here, so only this crate compiles it. It does not own the buffer
//! (`weir-store`), the formatters (`weir-format`) or the placeholders (`weir-route`). See the
//! "S3 output" section of `docs/outputs.md`.
//!
//! ```no_run
//! # async fn demo(section: &mut weir_config::Section<'_>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use weir_out_s3::{S3Output, S3OutputConfig};
//! let (cfg, buffer_cfg) = S3OutputConfig::from_section(section).map_err(|e| format!("{e:?}"))?;
//! let (buffer, _report) = weir_store::Buffer::open(buffer_cfg, "out_s3")?;
//! let output = Arc::new(S3Output::start(cfg).await?);
//! let _flusher = weir_store::spawn_flusher(buffer, output, None);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod config;
mod error;
pub mod key;
mod output;

pub use config::{
    AssumeRole, S3OutputConfig, StoreAs, DEFAULT_KEY_FORMAT, DEFAULT_KEY_FORMAT_NO_CHECK,
    MAX_HEX_RANDOM_LENGTH, MIN_PART_SIZE,
};
pub use error::S3Error;
pub use output::{chunk_body, compress, crc32_base64, S3Output, META_KEY, META_UPLOAD_ID};
