//! `@type secondary_file` (Fluentd's `out_secondary_file`): where a `<secondary>` section puts
//! the chunks its primary output could not deliver, as files an operator can inspect and
//! replay.
//!
//! What Fluentd does, and so what this module does:
//!
//! * `directory` (required) and `basename` (`dump.bin`; no `/`) give the path; both may hold
//!   `${chunk_id}`, `${tag}`, `${tag[N]}`, the primary's record chunk keys (`${key}`) and
//!   strftime fields of the chunk's time slice, each only when the primary's `<buffer>` has
//!   the matching chunk key (else a configuration error, with Fluentd's message). Values are
//!   escaped as the file output escapes them ([`crate::sanitize`]).
//! * `append false` (default): each chunk gets its own file `<path>.N` (N the first free
//!   number from 0); `append true`: every chunk is appended to `<path>`. `compress gzip`
//!   adds `.gz` and writes each chunk as one gzip member.
//! * The file holds the chunk **as the primary would have written it**: Fluentd writes the
//!   chunk's bytes, which its primary formatted when the events were buffered. weir's chunks
//!   hold the events, so it formats them with the primary's `<format>` and `<inject>` (file
//!   and S3 outputs); a primary without a formatter (the webhook output) gets a msgpack
//!   stream of `[time, record]` entries, time as Fluentd's EventTime, as Fluentd's forward
//!   output would dump.
//!
//! Writes are durable before the chunk leaves the buffer: the data and the directory are
//! fsync'ed. With `append false` the chunk is written to a temporary name and linked to its
//! final name, whose inode is recorded in the chunk's metadata first, so a retry after a crash
//! neither leaves a partial file nor writes a second copy. With `append true` a chunk retried
//! after a crash in the middle of its write may appear twice (partly); Fluentd gives no more.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::write::GzEncoder;
use flate2::Compression;
use futures::future::BoxFuture;
use weir_config::{ConfigError, Section};
use weir_format::{Formatter, Inject, TimeZoneSpec};
use weir_proto::EventTime;
use weir_route::placeholder::Template;
use weir_store::{blocking, ChunkKeySpec, ChunkRef, ChunkSink, TimekeyZone, WriteError};

use crate::error::FileOutputError;
use crate::path::{PathTemplate, RubyStrftime};
use crate::sanitize;
use crate::write::{io_err, lock, mkdir_p, sync_dir};

/// Chunk metadata key: the file a chunk was linked to (`append false`), as `ino:path`.
pub const META_SECONDARY_WRITTEN: &str = "secondary_file.written";

/// How the chunk's events are written: the primary's formatter, or msgpack.
#[derive(Clone, Default)]
pub struct PrimaryFormat {
    /// The primary's formatter; `None` writes msgpack `[time, record]` entries.
    pub formatter: Option<Arc<dyn Formatter>>,
    /// The primary's `<inject>`.
    pub inject: Option<Arc<Inject>>,
}

/// A parsed `<secondary> @type secondary_file`.
#[derive(Clone)]
pub struct SecondaryFileConfig {
    /// `directory` joined with `basename`, as configured.
    pub path: String,
    /// The path template, filled per chunk.
    pub template: PathTemplate,
    /// `append` (false).
    pub append: bool,
    /// `compress gzip`.
    pub gzip: bool,
    /// Mode of created files (0644).
    pub file_perm: u32,
    /// Mode of created directories (0755).
    pub dir_perm: u32,
    /// How events are written.
    pub format: PrimaryFormat,
}

impl std::fmt::Debug for SecondaryFileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondaryFileConfig")
            .field("path", &self.path)
            .field("append", &self.append)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

impl SecondaryFileConfig {
    /// Reads a `<secondary> @type secondary_file` section. `keys` are the primary's chunk keys
    /// (the placeholders are checked against them, as Fluentd's `acts_as_secondary` does) and
    /// `format` is how the primary formats events.
    pub fn from_section(
        s: &mut Section<'_>,
        keys: &ChunkKeySpec,
        format: PrimaryFormat,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let directory = s.string("directory");
        if directory.is_none() {
            errors.push(s.error(None, "'directory' parameter is required"));
        }
        let basename = s.string_or("basename", "dump.bin");
        if basename.contains('/') {
            errors.push(s.error(Some("basename"), "basename should not include `/`"));
        }
        let append = match s.boolean("append") {
            Ok(v) => v.unwrap_or(false),
            Err(e) => {
                errors.push(e);
                false
            }
        };
        let gzip = match s.enumeration("compress", &["text", "gzip"]) {
            Ok(v) => v.as_deref() == Some("gzip"),
            Err(e) => {
                errors.push(e);
                false
            }
        };
        let Some(directory) = directory else {
            return Err(errors);
        };
        let path = Path::new(&directory)
            .join(&basename)
            .to_string_lossy()
            .into_owned();
        let tpl = Template::parse(&path, &RubyStrftime);
        if tpl.has_time() && keys.timekey.is_none() {
            errors.push(s.error(Some("basename"), "out_secondary_file: basename or directory has an incompatible placeholder, remove time formats, like `%Y%m%d`, from basename or directory"));
        }
        if tpl.has_tag() && !keys.tag {
            errors.push(s.error(Some("basename"), "out_secondary_file: basename or directory has an incompatible placeholder ${tag}, remove tag placeholder, like `${tag}`, from basename or directory"));
        }
        if let Some(k) = tpl
            .keys()
            .into_iter()
            .find(|k| !keys.record_keys.iter().any(|r| &r.name == k))
        {
            errors.push(s.error(Some("basename"), format!("out_secondary_file: basename or directory has an incompatible placeholder {k}, remove variable placeholder, like `${{varname}}`, from basename or directory")));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let zone = match keys.zone {
            TimekeyZone::Fixed(o) => TimeZoneSpec::Fixed(o as i32),
            TimekeyZone::Named(tz) => TimeZoneSpec::Named(tz),
        };
        Ok(SecondaryFileConfig {
            template: PathTemplate {
                source: path.clone(),
                zone,
                time: keys.timekey.is_some(),
                tag: keys.tag,
                keys: !keys.record_keys.is_empty(),
            },
            path,
            append,
            gzip,
            file_perm: 0o644,
            dir_perm: 0o755,
            format,
        })
    }
}

/// The `secondary_file` output as a [`ChunkSink`].
pub struct SecondaryFileOutput {
    cfg: SecondaryFileConfig,
    /// Serialises writers of one output (Fluentd takes an exclusive `flock`).
    write_lock: Mutex<()>,
}

impl SecondaryFileOutput {
    /// The output for `cfg`.
    pub fn new(cfg: SecondaryFileConfig) -> Self {
        SecondaryFileOutput {
            cfg,
            write_lock: Mutex::new(()),
        }
    }

    /// The path for a chunk, without the `.N` index and `.gz`.
    pub fn base_path(&self, chunk: &ChunkRef) -> Result<PathBuf, FileOutputError> {
        let mut tpl = self.cfg.template.clone();
        // Chunk ids are hex: safe to insert as they are.
        tpl.source = tpl.source.replace("${chunk_id}", chunk.id());
        let rendered = tpl.render(chunk.key(), chunk.id());
        sanitize::check_rendered(&self.cfg.template.source, &rendered).map_err(|why| {
            FileOutputError::UnsafePath {
                path: rendered.replace('\0', "\\0"),
                why,
            }
        })?;
        Ok(PathBuf::from(rendered))
    }

    /// The bytes of a chunk: formatted with the primary's formatter, each event with its own
    /// tag when the buffer stored one (else the chunk key's), or msgpack. An error when the
    /// chunk cannot be read back (nothing is written then).
    pub fn content(&self, chunk: &ChunkRef) -> Result<Vec<u8>, FileOutputError> {
        let key_tag = chunk.key().tag.as_deref().unwrap_or("");
        let mut out = Vec::new();
        let mut injected = Vec::new();
        let mut skipped = 0u64;
        let read = |e: weir_store::StoreError| FileOutputError::Read(e.to_string());
        let mut events = chunk.event_reader().map_err(read)?;
        while let Some((time, record, tag)) = events.next_tagged_event().map_err(read)? {
            let tag = tag.unwrap_or(key_tag);
            match &self.cfg.format.formatter {
                None => write_msgpack_entry(&mut out, time, record),
                Some(f) => {
                    let rec: &[u8] = match &self.cfg.format.inject {
                        Some(inj) => {
                            injected.clear();
                            if inj.apply(tag, time, record, &mut injected).is_err() {
                                skipped += 1;
                                continue;
                            }
                            &injected
                        }
                        None => record,
                    };
                    if f.format(tag, time, rec, &mut out).is_err() {
                        skipped += 1;
                    }
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(
                chunk_id = %chunk.id(),
                "{skipped} event(s) could not be formatted and were not written to the secondary file"
            );
        }
        Ok(out)
    }

    fn write_chunk(&self, chunk: &ChunkRef) -> Result<PathBuf, FileOutputError> {
        let base = self.base_path(chunk)?;
        let suffix = if self.cfg.gzip { ".gz" } else { "" };
        let data = self.content(chunk)?;
        let data = if self.cfg.gzip {
            let mut gz = GzEncoder::new(Vec::new(), Compression::default());
            gz.write_all(&data)
                .and_then(|_| gz.finish())
                .map_err(|e| FileOutputError::Gzip(e.to_string()))?
        } else {
            data
        };
        let dir = match base.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        mkdir_p(&dir, self.cfg.dir_perm)?;
        let _guard = lock(&self.write_lock);
        if self.cfg.append {
            let path = PathBuf::from(format!("{}{suffix}", base.display()));
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(self.cfg.file_perm)
                .open(&path)
                .map_err(|e| io_err("open", &path, e))?;
            f.write_all(&data).map_err(|e| io_err("write", &path, e))?;
            f.sync_data().map_err(|e| io_err("fsync", &path, e))?;
            sync_dir(&dir)?;
            return Ok(path);
        }
        // A retry of a chunk already linked under its final name is done.
        if let Some(done) = chunk.metadata(META_SECONDARY_WRITTEN) {
            if let Some((ino, p)) = done.split_once(':') {
                let p = PathBuf::from(p);
                if fs::metadata(&p).is_ok_and(|m| m.ino().to_string() == ino) {
                    return Ok(p);
                }
            }
        }
        let tmp = dir.join(format!(".weir-secondary.{}.tmp", chunk.id()));
        let mut f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(&data).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_data().map_err(|e| io_err("fsync", &tmp, e))?;
        let _ = fs::set_permissions(
            &tmp,
            std::os::unix::fs::PermissionsExt::from_mode(self.cfg.file_perm),
        );
        let ino = f.metadata().map_err(|e| io_err("stat", &tmp, e))?.ino();
        drop(f);
        let mut i = 0u64;
        let path = loop {
            let candidate = PathBuf::from(format!("{}.{i}{suffix}", base.display()));
            if !candidate.exists() {
                chunk
                    .set_metadata(
                        META_SECONDARY_WRITTEN,
                        &format!("{ino}:{}", candidate.display()),
                    )
                    .map_err(|e| FileOutputError::Metadata(e.to_string()))?;
                match fs::hard_link(&tmp, &candidate) {
                    Ok(()) => break candidate,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("link", &candidate, e)),
                }
            }
            i += 1;
        };
        fs::remove_file(&tmp).map_err(|e| io_err("remove", &tmp, e))?;
        sync_dir(&dir)?;
        Ok(path)
    }
}

/// One msgpack `[time, record]` entry, time as Fluentd's EventTime (ext type 0).
fn write_msgpack_entry(out: &mut Vec<u8>, time: EventTime, record: &[u8]) {
    out.push(0x92);
    out.extend_from_slice(&[0xd7, 0x00]);
    out.extend_from_slice(&time.sec.to_be_bytes());
    out.extend_from_slice(&time.nsec.to_be_bytes());
    out.extend_from_slice(record);
}

impl ChunkSink for SecondaryFileOutput {
    fn write<'a>(&'a self, chunk: &'a ChunkRef) -> BoxFuture<'a, Result<(), WriteError>> {
        Box::pin(async move {
            match blocking(|| self.write_chunk(chunk)) {
                Ok(path) => {
                    tracing::warn!(
                        chunk_id = %chunk.id(),
                        file = %path.display(),
                        records = chunk.records(),
                        "the primary output failed: chunk written to the secondary file"
                    );
                    Ok(())
                }
                Err(e) if e.is_unrecoverable() => Err(WriteError::Unrecoverable(e.to_string())),
                Err(e) => Err(WriteError::Retryable(e.to_string())),
            }
        })
    }
}
