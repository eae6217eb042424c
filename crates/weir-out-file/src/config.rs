//! Reading `<match> @type file`: out_file's own parameters, `<buffer>` with out_file's
//! defaults, `<format>`/`<inject>`, and the v0.12 flat parameters as Fluentd's
//! `compat_parameters` converts them.

use std::sync::Arc;

use weir_config::{ConfigError, Element, Param, Section};
use weir_format::{formatter_from_section, writes_tag, Formatter, Inject, TimeZoneSpec};
use weir_route::placeholder::{ChunkKeys, Template};
use weir_store::{BufferConfig, BufferDefaults, FlushMode, TimekeyZone};

use crate::path::{generate_path_template, PathTemplate, RubyStrftime};

/// out_file's default timekey: one day.
pub const DEFAULT_TIMEKEY_SECS: u64 = 86_400;

/// Flat v0.12 parameters copied into `<buffer>` (Fluentd's `BUFFER_PARAMS` and
/// `BUFFER_TIME_SLICED_PARAMS`), as (old name, new name).
const BUFFER_COMPAT: [(&str, &str); 15] = [
    ("buffer_type", "@type"),
    ("buffer_path", "path"),
    ("num_threads", "flush_thread_count"),
    ("flush_interval", "flush_interval"),
    ("try_flush_interval", "flush_thread_interval"),
    ("queued_chunk_flush_interval", "flush_thread_burst_interval"),
    ("disable_retry_limit", "retry_forever"),
    ("retry_limit", "retry_max_times"),
    ("max_retry_wait", "retry_max_interval"),
    ("buffer_chunk_limit", "chunk_limit_size"),
    ("buffer_queue_limit", "queue_limit_length"),
    ("buffer_queue_full_action", "overflow_action"),
    ("flush_at_shutdown", "flush_at_shutdown"),
    ("time_slice_wait", "timekey_wait"),
    ("timezone", "timekey_zone"),
];

/// A parsed `@type file` output.
#[derive(Clone)]
pub struct FileOutputConfig {
    /// `path` as configured.
    pub path: String,
    /// The file-name template derived from `path` (Fluentd's `generate_path_template`).
    pub template: PathTemplate,
    /// `append` (false): append every chunk of a slice to one file instead of one file per
    /// chunk with the `_N` index.
    pub append: bool,
    /// `compress gzip` (or `gz`): write gzip and add `.gz`.
    pub gzip: bool,
    /// `symlink_path`: a link kept pointing at the newest file written (see the crate docs).
    pub symlink_path: Option<PathTemplate>,
    /// `symlink_path_use_relative`: the link holds a path relative to its own directory.
    pub symlink_relative: bool,
    /// Mode of created files (0644; `file_perm`, or `<system> file_permission`).
    pub file_perm: u32,
    /// Mode of created directories (0755; `dir_perm`, or `<system> dir_permission`).
    pub dir_perm: u32,
    /// The formatter (`<format>`, default `out_file`).
    pub formatter: Arc<dyn Formatter>,
    /// `<inject>`, if anything is injected.
    pub inject: Option<Inject>,
}

impl std::fmt::Debug for FileOutputConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOutputConfig")
            .field("path", &self.path)
            .field("template", &self.template.source)
            .field("append", &self.append)
            .field("gzip", &self.gzip)
            .field(
                "symlink_path",
                &self.symlink_path.as_ref().map(|t| &t.source),
            )
            .finish_non_exhaustive()
    }
}

fn collect<T>(errors: &mut Vec<ConfigError>, r: Result<T, ConfigError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

fn parse_mode(v: &str) -> Option<u32> {
    u32::from_str_radix(v.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
}

/// Fluentd's `compat_parameters_buffer`: a `<buffer>` element built from flat parameters, or
/// `None` when there is a `<buffer>` section or no flat buffer parameter is set. Reading the
/// flat parameters marks them as used.
fn compat_buffer(s: &mut Section<'_>, errors: &mut Vec<ConfigError>) -> Option<Element> {
    let e = s.element();
    if e.children("buffer").next().is_some() {
        return None;
    }
    let any = BUFFER_COMPAT
        .iter()
        .map(|(k, _)| *k)
        .chain(["time_slice_format"])
        .any(|k| e.param(k).is_some());
    if !any {
        return None;
    }
    let mut params = Vec::new();
    for (old, new) in BUFFER_COMPAT {
        if let Some(p) = e.param(old) {
            let _ = s.string(old);
            let mut value = p.value.clone();
            if old == "buffer_queue_full_action" && value == "exception" {
                value = "throw_exception".into();
            }
            params.push(Param {
                key: new.to_string(),
                value,
                location: p.location.clone(),
            });
        }
    }
    if let Some(tsf) = e.param("time_slice_format") {
        let timekey = if tsf.value.contains("%S") {
            Some(1)
        } else if tsf.value.contains("%M") {
            Some(60)
        } else if tsf.value.contains("%H") {
            Some(3600)
        } else if tsf.value.contains("%d") {
            Some(86400)
        } else {
            None
        };
        match timekey {
            Some(t) => params.push(Param {
                key: "timekey".into(),
                value: t.to_string(),
                location: tsf.location.clone(),
            }),
            None => errors.push(s.error(
                Some("time_slice_format"),
                "time_slice_format only with %Y or %m is too long",
            )),
        }
        let (local, utc) = (e.param("localtime"), e.param("utc"));
        match (local, utc) {
            (Some(_), Some(_)) => errors.push(s.error(
                Some("utc"),
                "both of utc and localtime are specified, use only one of them",
            )),
            (Some(p), None) => params.push(Param {
                key: "timekey_use_utc".into(),
                value: (!weir_config::parse_bool(&p.value).unwrap_or(true)).to_string(),
                location: p.location.clone(),
            }),
            (None, Some(p)) => params.push(Param {
                key: "timekey_use_utc".into(),
                value: weir_config::parse_bool(&p.value)
                    .unwrap_or(true)
                    .to_string(),
                location: p.location.clone(),
            }),
            (None, None) => {}
        }
    } else {
        params.push(Param {
            key: "timekey".into(),
            value: DEFAULT_TIMEKEY_SECS.to_string(),
            location: e.location.clone(),
        });
    }
    Some(Element {
        name: "buffer".into(),
        arg: "time".into(),
        params,
        elements: Vec::new(),
        location: e.location.clone(),
    })
}

impl FileOutputConfig {
    /// Reads a `<match> @type file` section.
    ///
    /// * `<buffer>` is read by `weir_store` with out_file's defaults: a **file** buffer, chunk
    ///   key `time`, `timekey 1d`, and the buffer `path` defaulting to the output's `path`.
    /// * Without a `<buffer>` section, the v0.12 flat parameters (`buffer_type`, `buffer_path`,
    ///   `flush_interval`, `time_slice_format`, `time_slice_wait`, `timezone`, `utc`,
    ///   `localtime`, `num_threads`, `retry_limit`, …) become one, as Fluentd's
    ///   `compat_parameters` builds it. With a `<buffer>` section they are not copied: Fluentd
    ///   then ignores `time_slice_wait` (and the server reports it as not used), while
    ///   `time_slice_format` is still appended to the file name when `time` is a chunk key, and
    ///   a `flush_interval` outside `<buffer>` only switches the default flush mode to
    ///   `interval` (keeping the buffer's own interval, 60 s by default).
    /// * `<format>` (default `out_file`) and `<inject>`, or their flat parameters, are read by
    ///   `weir_format`.
    /// * The file-name template is checked against the chunk keys with Fluentd's messages
    ///   (`Parameter 'path: …' doesn't have tag placeholder`, …).
    ///
    /// Every problem is returned, each with its file and line.
    pub fn from_section(s: &mut Section<'_>) -> Result<(Self, BufferConfig), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let path = match s.string("path") {
            Some(p) => p,
            None => {
                errors.push(s.error(None, "'path' parameter is required"));
                String::new()
            }
        };
        let add_path_suffix = collect(&mut errors, s.boolean("add_path_suffix"))
            .flatten()
            .unwrap_or(true);
        let path_suffix = s.string_or("path_suffix", ".log");
        let append = collect(&mut errors, s.boolean("append"))
            .flatten()
            .unwrap_or(false);
        let compress = collect(
            &mut errors,
            s.enumeration("compress", &["text", "gz", "gzip"]),
        )
        .flatten();
        let gzip = matches!(compress.as_deref(), Some("gz" | "gzip"));
        // weir always formats and then compresses, so recompress changes nothing.
        let _ = collect(&mut errors, s.boolean("recompress"));
        let symlink_path = s.string("symlink_path");
        let symlink_relative = collect(&mut errors, s.boolean("symlink_path_use_relative"))
            .flatten()
            .unwrap_or(false);
        let mut file_perm = 0o644;
        let mut dir_perm = 0o755;
        for (key, slot) in [("file_perm", &mut file_perm), ("dir_perm", &mut dir_perm)] {
            if let Some(v) = s.string(key) {
                match parse_mode(&v) {
                    Some(m) => *slot = m,
                    None => errors.push(s.error(
                        Some(key),
                        format!("'{v}' is not an octal permission such as 0644"),
                    )),
                }
            }
        }
        let time_slice_format = s.string("time_slice_format");
        // Fluentd's Output#configure reads `conf.has_key?('flush_interval')`, which marks it as
        // used even when a <buffer> section means it is not copied anywhere.
        let outer_flush_interval = s.element().param("flush_interval").is_some();
        let _ = s.string("flush_interval");
        if s.element().param("utc").is_some() || s.element().param("localtime").is_some() {
            let name = if s.element().param("utc").is_some() {
                "utc"
            } else {
                "localtime"
            };
            tracing::warn!(
                "{}: '{name}' is deprecated for output plugin. This parameter is used for formatter plugin in compatibility layer. If you want to use same feature, use timekey_use_utc parameter in <buffer> directive instead",
                s.context()
            );
        }

        // <buffer>, or the one compat_parameters builds, or out_file's default <buffer time>.
        let compat = compat_buffer(s, &mut errors);
        let defaults = BufferDefaults {
            chunk_keys: "time".into(),
            timekey: Some(std::time::Duration::from_secs(DEFAULT_TIMEKEY_SECS)),
            memory: false,
            // Fluentd's placeholder when `path` is missing, so that only out_file reports it.
            path: Some(if path.is_empty() {
                "/tmp/dummy_path".to_string()
            } else {
                path.clone()
            }),
        };
        let empty = Element {
            name: "buffer".into(),
            arg: String::new(),
            params: Vec::new(),
            elements: Vec::new(),
            location: s.location().clone(),
        };
        let buffer = match (&compat, collect(&mut errors, s.section("buffer")).flatten()) {
            (_, Some(mut b)) => {
                let explicit_mode = b
                    .element()
                    .get("flush_mode")
                    .is_some_and(|m| m.trim() != "default");
                BufferConfig::from_section(&mut b, defaults).map(|c| (c, explicit_mode))
            }
            (Some(c), None) => {
                let mut b = Section::new(c, format!("{} <buffer>", s.context()));
                BufferConfig::from_section(&mut b, defaults).map(|c| (c, false))
            }
            (None, None) => {
                let mut b = Section::new(&empty, format!("{} <buffer>", s.context()));
                BufferConfig::from_section(&mut b, defaults).map(|c| (c, false))
            }
        };
        let mut buffer = match buffer {
            Ok((mut c, explicit_mode)) => {
                if outer_flush_interval && !explicit_mode && c.flush_mode != FlushMode::Interval {
                    tracing::info!(
                        "{}: 'flush_interval' is configured at out side of <buffer>. 'flush_mode' is set to 'interval' to keep existing behaviour",
                        s.context()
                    );
                    c.flush_mode = FlushMode::Interval;
                }
                Some(c)
            }
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };

        let formatter: Option<Arc<dyn Formatter>> = match formatter_from_section(s, "out_file") {
            Ok(f) => Some(Arc::from(f)),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        let inject = match Inject::from_section(s) {
            Ok(i) => i,
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };

        // When the lines carry the tag and `tag` is not a chunk key, the buffer keeps each
        // event's tag, so that one chunk (one file) holds every tag of its time slice as in
        // Fluentd.
        let keep_tags = match (buffer.as_ref(), formatter.as_ref()) {
            (Some(b), Some(f)) => !b.keys.tag && writes_tag(f.as_ref(), inject.as_ref()),
            _ => false,
        };

        let mut template = None;
        let mut symlink = None;
        // Checked only once everything else is valid: Fluentd stops at the first error, and a
        // template check on a half-read buffer would only add noise.
        if let (Some(b), true) = (buffer.as_mut(), errors.is_empty()) {
            let keys = &b.keys;
            let chunk_keys = ChunkKeys {
                tag: keys.tag,
                timekey: keys.timekey.map(|t| t as u64),
                keys: keys.record_keys.iter().map(|k| k.name.clone()).collect(),
            };
            let zone = match keys.zone {
                TimekeyZone::Fixed(o) => TimeZoneSpec::Fixed(o as i32),
                TimekeyZone::Named(tz) => TimeZoneSpec::Named(tz),
            };
            let suffix = if add_path_suffix {
                path_suffix.as_str()
            } else {
                ""
            };
            if !path.is_empty() {
                match generate_path_template(
                    &path,
                    chunk_keys.timekey,
                    append,
                    gzip,
                    suffix,
                    time_slice_format.as_deref(),
                ) {
                    Ok(source) => {
                        let tpl = Template::parse(&source, &RubyStrftime);
                        match tpl.validate("path", &chunk_keys) {
                            Ok(()) => {
                                template = Some(PathTemplate {
                                    source,
                                    zone: zone.clone(),
                                    time: chunk_keys.timekey.is_some(),
                                    tag: chunk_keys.tag,
                                    keys: !chunk_keys.keys.is_empty(),
                                })
                            }
                            Err(e) => errors.push(s.error(Some("path"), e.to_string())),
                        }
                    }
                    Err(m) => errors.push(s.error(Some("path"), m)),
                }
            }
            if let Some(sp) = symlink_path {
                // Fluentd validates only the non-time placeholders here, and only warns.
                let tpl = Template::parse(&sp, &RubyStrftime);
                let relaxed = ChunkKeys {
                    timekey: if tpl.has_time() {
                        chunk_keys.timekey
                    } else {
                        None
                    },
                    ..chunk_keys.clone()
                };
                if let Err(e) = tpl.validate("symlink_path", &relaxed) {
                    tracing::warn!(
                        "{}: {e}. This means multiple chunks are competing for a single symlink_path, so some logs may not be taken from the symlink.",
                        s.context()
                    );
                }
                symlink = Some(PathTemplate {
                    source: sp,
                    zone,
                    time: chunk_keys.timekey.is_some(),
                    tag: chunk_keys.tag,
                    keys: !chunk_keys.keys.is_empty(),
                });
            }
        }

        if let Some(b) = buffer.as_mut() {
            b.keep_tags = keep_tags;
        }

        match (errors.is_empty(), template, buffer, formatter) {
            (true, Some(template), Some(buffer), Some(formatter)) => Ok((
                FileOutputConfig {
                    path,
                    template,
                    append,
                    gzip,
                    symlink_path: symlink,
                    symlink_relative,
                    file_perm,
                    dir_perm,
                    formatter,
                    inject,
                },
                buffer,
            )),
            _ => {
                if errors.is_empty() {
                    errors.push(s.error(Some("path"), "'path' parameter is required"));
                }
                // The buffer, formatter and inject readers may each report the same problem.
                let mut unique: Vec<ConfigError> = Vec::with_capacity(errors.len());
                for e in errors {
                    if !unique.contains(&e) {
                        unique.push(e);
                    }
                }
                Err(unique)
            }
        }
    }
}
