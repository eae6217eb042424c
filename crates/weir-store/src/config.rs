//! The `<buffer>` section: chunk keys, limits, flushing and retries, with Fluentd's defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_config::{ConfigError, Section};

use crate::key::{ChunkKeySpec, RecordKey, TimekeyZone};
use crate::retry::RetryParams;

/// Where chunks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferType {
    /// `@type memory`: chunks in memory; an ack means "accepted", not "durable".
    Memory,
    /// `@type file`: chunk files under `dir`, named `<prefix><b|q><id><suffix>`.
    File(FileLayout),
}

/// How the file buffer's `path` maps to file names, following Fluentd's `buf_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// The directory holding the chunk files (created if missing).
    pub dir: PathBuf,
    /// What chunk file names start with (`buffer.` by default).
    pub prefix: String,
    /// What chunk file names end with (`path_suffix`, `.log` by default).
    pub suffix: String,
    /// `file_permission` for chunk files.
    pub file_mode: u32,
    /// `dir_permission` for directories weir creates.
    pub dir_mode: u32,
}

impl FileLayout {
    /// Derives the layout from `path` and `path_suffix` as Fluentd does:
    ///
    /// * an existing directory, or a path that does not exist and has no `.*` in it, is a
    ///   directory: files are `<path>/buffer.<state><id><suffix>`
    ///   (so `/var/log/blog/buf/var-log.buf` becomes a directory of that name);
    /// * a name with `.*.` in it is a pattern: `*` is replaced by `<state><id>`
    ///   (`/var/log/fluent/myapp.*.buffer`);
    /// * a name ending in `.*` gets the suffix appended;
    /// * any other existing file name gets `.*<suffix>` appended.
    pub fn from_path(path: &str, suffix: &str) -> Result<FileLayout, String> {
        if path.is_empty() {
            return Err("path is empty".into());
        }
        let p = Path::new(path);
        let is_dir = p.is_dir() || (!p.exists() && !path.contains(".*"));
        let (dir, pattern) = if is_dir {
            (p.to_path_buf(), format!("buffer.*{suffix}"))
        } else {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| format!("'{path}' has no file name"))?;
            let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
            let pattern = if name.contains(".*.") {
                name
            } else if name.ends_with(".*") {
                format!("{name}{suffix}")
            } else {
                format!("{name}.*{suffix}")
            };
            (parent, pattern)
        };
        let Some((prefix, rest)) = pattern.split_once('*') else {
            return Err(format!("'{path}': no '*' in the file pattern"));
        };
        if rest.contains('*') {
            return Err(format!("'{path}': more than one '*'"));
        }
        Ok(FileLayout {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            },
            prefix: prefix.to_string(),
            suffix: rest.to_string(),
            file_mode: 0o644,
            dir_mode: 0o755,
        })
    }
}

/// `flush_mode` after resolving `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Enqueue a chunk when its time range plus `timekey_wait` has passed (with `time` as a
    /// chunk key), or when it is full.
    Lazy,
    /// Enqueue a chunk `flush_interval` after it was created, or when it is full.
    Interval,
    /// Enqueue every chunk right after the append that wrote it.
    Immediate,
}

/// `overflow_action`: what an append does when the buffer holds `total_limit_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowAction {
    /// Refuse the events (no ack; the forwarder sends them again).
    ThrowException,
    /// The commit waits until flushing makes room (the forwarder's ack waits too).
    Block,
    /// Delete the oldest queued chunk to make room (data loss by choice, logged).
    DropOldestChunk,
}

/// `commit_priority` (weir's own `<buffer>` parameter): how the commit threads of a file
/// buffer are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitPriority {
    /// Real-time scheduling (`SCHED_FIFO`, the lowest real-time priority) where the system
    /// allows it, else the normal scheduling with a log line saying so. Every ack waits for a
    /// commit thread, and a commit thread that is ready to run but queued behind busy worker
    /// threads holds up every connection's ack; it runs for microseconds per commit and then
    /// waits on the disk, so it takes little CPU from anything else.
    Realtime,
    /// The normal scheduling, like every other thread of weir.
    Normal,
}

/// `compress`: how block payloads are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// As msgpack.
    Text,
    /// Each block payload is one gzip member, so a chunk's payloads concatenated are a valid
    /// multi-member gzip stream of the packed entries.
    Gzip,
}

/// Defaults an output plugin gives its buffer (Fluentd outputs override some of the buffer's
/// own defaults, for example `out_file` uses `time` chunks of one day).
#[derive(Debug, Clone, PartialEq)]
pub struct BufferDefaults {
    /// Chunk keys used when `<buffer>` has no argument, written as in the argument.
    pub chunk_keys: String,
    /// `timekey` when the section does not set it.
    pub timekey: Option<Duration>,
    /// `@type` when the section does not set it.
    pub memory: bool,
    /// `path` for a file buffer when the section does not set it.
    pub path: Option<String>,
}

impl Default for BufferDefaults {
    fn default() -> Self {
        BufferDefaults {
            chunk_keys: String::new(),
            timekey: None,
            memory: true,
            path: None,
        }
    }
}

/// A parsed `<buffer>` section. Fields are public so that outputs and tests can build one
/// directly; [`BufferConfig::from_section`] fills them from a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// `@type` and, for files, the layout from `path`.
    pub buffer_type: BufferType,
    /// The chunk keys (the section's argument).
    pub keys: ChunkKeySpec,
    /// `timekey_wait`.
    pub timekey_wait: Duration,
    /// `chunk_limit_size` (8 MiB memory, 256 MiB file).
    pub chunk_limit_size: u64,
    /// `chunk_limit_records`.
    pub chunk_limit_records: Option<u64>,
    /// `total_limit_size` (512 MiB memory, 64 GiB file), or `chunk_limit_size ×
    /// queue_limit_length` when the latter is set.
    pub total_limit_size: u64,
    /// `chunk_full_threshold` (0.95).
    pub chunk_full_threshold: f64,
    /// `compress` (`text`).
    pub compress: Compress,
    /// `overflow_action` (`throw_exception`).
    pub overflow_action: OverflowAction,
    /// `flush_mode`, resolved: `default` is `lazy` with `time` as a chunk key, else `interval`.
    pub flush_mode: FlushMode,
    /// `flush_interval` (60 s).
    pub flush_interval: Duration,
    /// `flush_thread_count` (1).
    pub flush_thread_count: usize,
    /// `flush_thread_interval` (1 s): how often the flusher checks for chunks to enqueue.
    pub flush_thread_interval: Duration,
    /// `flush_at_shutdown`: true for both buffer types. Fluentd defaults it to false for file
    /// buffers; weir flushes them too, because an aggregator in an Auto Scaling group may be
    /// terminated after it stops, taking its disk with it.
    pub flush_at_shutdown: bool,
    /// `delayed_commit_timeout` (60 s): how long one chunk write may take before it counts as
    /// failed.
    pub delayed_commit_timeout: Duration,
    /// The retry parameters (`secondary` is set by [`crate::spawn_flusher`]).
    pub retry: RetryParams,
    /// Number of group-commit threads (weir's own knob, not a Fluentd parameter; 1).
    pub commit_shards: usize,
    /// How the commit threads are scheduled (weir's own knob; realtime where allowed).
    pub commit_priority: CommitPriority,
    /// Store each event's tag with it: entries become `[time, record, tag]` instead of
    /// `[time, record]` (see [`crate::format`]). Not a Fluentd parameter: an output sets it
    /// when what it writes for an event carries the tag and `tag` is not a chunk key, so that
    /// one chunk can hold the events of many tags, as a Fluentd chunk holds them formatted.
    /// Readers accept both kinds of entry whatever this says (false).
    pub keep_tags: bool,
}

const MIB: u64 = 1024 * 1024;

impl BufferConfig {
    /// A memory buffer with every default and no chunk keys.
    pub fn memory() -> Self {
        let mut cfg = Self::base(true);
        cfg.buffer_type = BufferType::Memory;
        cfg
    }

    /// A file buffer in `dir` with every default and no chunk keys.
    pub fn file(dir: impl Into<PathBuf>) -> Self {
        let mut cfg = Self::base(false);
        cfg.buffer_type = BufferType::File(FileLayout {
            dir: dir.into(),
            prefix: "buffer.".into(),
            suffix: ".log".into(),
            file_mode: 0o644,
            dir_mode: 0o755,
        });
        cfg
    }

    fn base(memory: bool) -> Self {
        BufferConfig {
            buffer_type: BufferType::Memory,
            keys: ChunkKeySpec {
                tag: false,
                timekey: None,
                zone: TimekeyZone::Fixed(0),
                record_keys: Vec::new(),
            },
            timekey_wait: Duration::from_secs(600),
            chunk_limit_size: if memory { 8 * MIB } else { 256 * MIB },
            chunk_limit_records: None,
            total_limit_size: if memory { 512 * MIB } else { 64 * 1024 * MIB },
            chunk_full_threshold: 0.95,
            compress: Compress::Text,
            overflow_action: OverflowAction::ThrowException,
            flush_mode: FlushMode::Interval,
            flush_interval: Duration::from_secs(60),
            flush_thread_count: 1,
            flush_thread_interval: Duration::from_secs(1),
            flush_at_shutdown: true,
            delayed_commit_timeout: Duration::from_secs(60),
            retry: RetryParams {
                exponential: true,
                wait: 1.0,
                timeout: 72.0 * 3600.0,
                forever: false,
                max_steps: None,
                backoff_base: 2.0,
                max_interval: None,
                randomize: true,
                secondary: false,
                secondary_threshold: 0.8,
            },
            commit_shards: 1,
            commit_priority: CommitPriority::Realtime,
            keep_tags: false,
        }
    }

    /// True for a file buffer: an ack means the events are on disk.
    pub fn persistent(&self) -> bool {
        matches!(self.buffer_type, BufferType::File(_))
    }

    /// Reads an output's `<buffer>` section (`buffer`), or, when the output (`output`) has
    /// none, takes the defaults as an empty section at the output's line would give them.
    pub fn from_output(
        buffer: Option<Section<'_>>,
        output: &Section<'_>,
        defaults: BufferDefaults,
    ) -> Result<Self, Vec<ConfigError>> {
        match buffer {
            Some(mut b) => BufferConfig::from_section(&mut b, defaults),
            None => {
                let empty = weir_config::Element {
                    name: "buffer".into(),
                    arg: String::new(),
                    params: Vec::new(),
                    elements: Vec::new(),
                    location: output.location().clone(),
                };
                let mut b = Section::new(&empty, format!("{} <buffer>", output.context()));
                BufferConfig::from_section(&mut b, defaults)
            }
        }
    }

    /// Reads a `<buffer>` section. Every problem is reported, each with its file and line.
    /// Parameters weir does not implement are errors that name them.
    pub fn from_section(
        s: &mut Section,
        defaults: BufferDefaults,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        macro_rules! get {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            };
        }

        let memory = match s.type_name() {
            None => defaults.memory,
            Some("memory") => true,
            Some("file") => false,
            Some(other) => {
                errors.push(s.error(
                    Some("@type"),
                    format!("unknown buffer type '{other}' (weir has 'memory' and 'file')"),
                ));
                defaults.memory
            }
        };
        let mut cfg = Self::base(memory);

        // Chunk keys.
        let arg = s.arg().trim().to_string();
        let arg = if arg.is_empty() {
            defaults.chunk_keys.clone()
        } else {
            arg
        };
        let arg = arg.trim();
        let arg = arg
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(arg);
        let mut has_time = false;
        for k in arg
            .split(',')
            .map(|k| k.trim().trim_matches('"'))
            .filter(|k| !k.is_empty())
        {
            match k {
                "tag" => cfg.keys.tag = true,
                "time" => has_time = true,
                other => match RecordKey::parse(other) {
                    Ok(rk) => cfg.keys.record_keys.push(rk),
                    Err(m) => errors.push(s.error(None, format!("chunk keys: {m}"))),
                },
            }
        }

        let timekey = get!(s.duration("timekey")).or(defaults.timekey);
        if has_time {
            match timekey {
                Some(t) if t.as_secs() >= 1 => cfg.keys.timekey = Some(t.as_secs() as i64),
                Some(_) => errors.push(s.error(Some("timekey"), "must be at least 1s")),
                None => errors.push(s.error(
                    None,
                    "<buffer ...> argument includes 'time', but timekey is not configured",
                )),
            }
        }
        if let Some(w) = get!(s.duration("timekey_wait")) {
            cfg.timekey_wait = w;
        }
        let use_utc = get!(s.boolean("timekey_use_utc")).unwrap_or(false);
        let zone = s.string("timekey_zone");
        cfg.keys.zone = if use_utc {
            TimekeyZone::Fixed(0)
        } else if let Some(z) = zone {
            match TimekeyZone::parse(&z) {
                Ok(zone) => zone,
                Err(m) => {
                    errors.push(s.error(Some("timekey_zone"), m));
                    TimekeyZone::Fixed(0)
                }
            }
        } else {
            // Fluentd's default is the local offset at start-up, kept fixed.
            TimekeyZone::Fixed(i64::from(chrono::Local::now().offset().local_minus_utc()))
        };

        // Limits.
        if let Some(v) = get!(s.size("chunk_limit_size")) {
            if v == 0 {
                errors.push(s.error(Some("chunk_limit_size"), "must be positive"));
            } else {
                cfg.chunk_limit_size = v;
            }
        }
        if let Some(v) = get!(s.integer("chunk_limit_records")) {
            if v <= 0 {
                errors.push(s.error(Some("chunk_limit_records"), "must be positive"));
            } else {
                cfg.chunk_limit_records = Some(v as u64);
            }
        }
        if let Some(v) = get!(s.size("total_limit_size")) {
            cfg.total_limit_size = v;
        }
        if let Some(v) = get!(s.integer("queue_limit_length")) {
            if v <= 0 {
                errors.push(s.error(Some("queue_limit_length"), "must be positive"));
            } else {
                cfg.total_limit_size = cfg.chunk_limit_size.saturating_mul(v as u64);
            }
        }
        if let Some(v) = get!(s.float("chunk_full_threshold")) {
            if v > 0.0 && v <= 1.0 {
                cfg.chunk_full_threshold = v;
            } else {
                errors.push(s.error(Some("chunk_full_threshold"), "must be in (0, 1]"));
            }
        }
        if let Some(v) = get!(s.enumeration("compress", &["text", "gzip"])) {
            cfg.compress = if v == "gzip" {
                Compress::Gzip
            } else {
                Compress::Text
            };
        }
        if let Some(v) = get!(s.enumeration(
            "overflow_action",
            &["throw_exception", "block", "drop_oldest_chunk"]
        )) {
            cfg.overflow_action = match v.as_str() {
                "block" => OverflowAction::Block,
                "drop_oldest_chunk" => OverflowAction::DropOldestChunk,
                _ => OverflowAction::ThrowException,
            };
        }

        // Flushing.
        let mode = get!(s.enumeration("flush_mode", &["default", "lazy", "interval", "immediate"]));
        let explicit_mode = mode.as_deref().is_some_and(|m| m != "default");
        cfg.flush_mode = match mode.as_deref() {
            Some("lazy") => FlushMode::Lazy,
            Some("interval") => FlushMode::Interval,
            Some("immediate") => FlushMode::Immediate,
            _ if has_time => FlushMode::Lazy,
            _ => FlushMode::Interval,
        };
        if let Some(v) = get!(s.duration("flush_interval")) {
            if cfg.flush_mode != FlushMode::Interval {
                if explicit_mode {
                    errors.push(s.error(
                        Some("flush_interval"),
                        "'flush_interval' can't be specified when 'flush_mode' is not 'interval'",
                    ));
                } else {
                    tracing::warn!(
                        "{}: 'flush_interval' is ignored because the default flush_mode is 'lazy' (time is a chunk key)",
                        s.context()
                    );
                }
            }
            cfg.flush_interval = v;
        }
        if let Some(v) = get!(s.integer("flush_thread_count")) {
            if v < 1 {
                errors.push(s.error(Some("flush_thread_count"), "must be at least 1"));
            } else {
                cfg.flush_thread_count = v as usize;
            }
        }
        if let Some(v) = get!(s.integer("commit_shards")) {
            if memory {
                errors.push(s.error(
                    Some("commit_shards"),
                    "applies to file buffers only (a memory buffer has no commit thread)",
                ));
            } else if !(1..=64).contains(&v) {
                errors.push(s.error(Some("commit_shards"), "must be between 1 and 64"));
            } else {
                cfg.commit_shards = v as usize;
            }
        }
        if let Some(v) = get!(s.enumeration("commit_priority", &["realtime", "normal"])) {
            if memory {
                errors.push(s.error(
                    Some("commit_priority"),
                    "applies to file buffers only (a memory buffer has no commit thread)",
                ));
            } else if v == "normal" {
                cfg.commit_priority = CommitPriority::Normal;
            }
        }
        if let Some(v) = get!(s.duration("flush_thread_interval")) {
            cfg.flush_thread_interval = v.max(Duration::from_millis(10));
        }
        if let Some(v) = get!(s.boolean("flush_at_shutdown")) {
            if !v && memory {
                tracing::warn!(
                    "{}: 'flush_at_shutdown' is false with a memory buffer: buffered events are lost at shutdown",
                    s.context()
                );
            }
            cfg.flush_at_shutdown = v;
        }
        if let Some(v) = get!(s.duration("delayed_commit_timeout")) {
            cfg.delayed_commit_timeout = v;
        }

        // Retries.
        if let Some(v) = get!(s.enumeration("retry_type", &["exponential_backoff", "periodic"])) {
            cfg.retry.exponential = v == "exponential_backoff";
        }
        if let Some(v) = get!(s.duration("retry_wait")) {
            cfg.retry.wait = v.as_secs_f64();
        }
        if let Some(v) = get!(s.duration("retry_max_interval")) {
            cfg.retry.max_interval = Some(v.as_secs_f64());
        }
        if let Some(v) = get!(s.float("retry_exponential_backoff_base")) {
            if v > 1.0 {
                cfg.retry.backoff_base = v;
            } else {
                errors.push(s.error(Some("retry_exponential_backoff_base"), "must be above 1"));
            }
        }
        if let Some(v) = get!(s.boolean("retry_randomize")) {
            cfg.retry.randomize = v;
        }
        if let Some(v) = get!(s.duration("retry_timeout")) {
            cfg.retry.timeout = v.as_secs_f64();
        }
        if let Some(v) = get!(s.integer("retry_max_times")) {
            if v < 0 {
                errors.push(s.error(Some("retry_max_times"), "must not be negative"));
            } else {
                cfg.retry.max_steps = Some(v as u64);
            }
        }
        if let Some(v) = get!(s.boolean("retry_forever")) {
            cfg.retry.forever = v;
        }
        if let Some(v) = get!(s.float("retry_secondary_threshold")) {
            if v > 0.0 && v < 1.0 {
                cfg.retry.secondary_threshold = v;
            } else {
                errors.push(s.error(Some("retry_secondary_threshold"), "must be in (0, 1)"));
            }
        }

        // Files.
        let path = s.string("path").or(defaults.path);
        let suffix = s.string_or("path_suffix", ".log");
        let file_mode = get!(s
            .string("file_permission")
            .map(|v| parse_mode(&v))
            .transpose()
            .map_err(|m| s.error(Some("file_permission"), m)));
        let dir_mode = get!(s
            .string("dir_permission")
            .map(|v| parse_mode(&v))
            .transpose()
            .map_err(|m| s.error(Some("dir_permission"), m)));
        if memory {
            cfg.buffer_type = BufferType::Memory;
        } else {
            match path {
                None => errors.push(s.error(None, "a file buffer needs 'path'")),
                Some(p) => match FileLayout::from_path(&p, &suffix) {
                    Ok(mut layout) => {
                        if let Some(m) = file_mode {
                            layout.file_mode = m;
                        }
                        if let Some(m) = dir_mode {
                            layout.dir_mode = m;
                        }
                        cfg.buffer_type = BufferType::File(layout);
                    }
                    Err(m) => errors.push(s.error(Some("path"), m)),
                },
            }
        }

        for (key, why) in [
            (
                "queued_chunks_limit_size",
                "weir does not cap the queue length separately; use total_limit_size",
            ),
            (
                "flush_thread_burst_interval",
                "weir's flush workers take queued chunks back to back",
            ),
            (
                "disable_chunk_backup",
                "weir never deletes a chunk that failed; it goes to failed/",
            ),
            ("chunk_format", "weir always stores msgpack entries"),
        ] {
            if let Err(e) = s.unsupported(key, why) {
                errors.push(e);
            }
        }

        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }
}

fn parse_mode(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{v}' is not an octal permission such as 0644"))
}
