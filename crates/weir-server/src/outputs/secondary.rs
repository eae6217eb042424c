//! `<secondary>`: the output a buffered output hands a chunk to once its retries reach
//! `retry_secondary_threshold` (or at once, for a chunk the primary rejects as unrecoverable),
//! read with Fluentd's rules (`Fluent::Plugin::Output#configure`):
//!
//! * at most one `<secondary>`; it has no `<buffer>` and no `<secondary>` of its own; it
//!   cannot be combined with `retry_forever`;
//! * without `@type` it is of the primary's type;
//! * it works on the primary's chunks, so its placeholders are checked against the primary's
//!   chunk keys;
//! * a type other than the primary's (except `secondary_file`) is allowed with Fluentd's
//!   warning, "Use different plugin for secondary. Check the plugin works with primary like
//!   secondary_file".
//!
//! weir builds `secondary_file`, `file`, `s3` and `webhook` secondaries. Unlike Fluentd, whose
//! chunks hold the primary's formatted bytes, a `file`, `s3` or `webhook` secondary formats the
//! events itself with its own settings; `secondary_file` formats them as the primary would.

use std::sync::Arc;

use weir_config::{ConfigError, Element, Param, Section};
use weir_out_file::{FileOutputConfig, PrimaryFormat, SecondaryFileConfig, SecondaryFileOutput};
use weir_out_s3::S3OutputConfig;
use weir_out_webhook::WebhookConfig;
use weir_store::{BufferConfig, ChunkKeySpec, ChunkSink, TimekeyZone};

/// The secondary types weir builds.
pub const SECONDARY_TYPES: &str = "secondary_file, file, s3, webhook";

/// A checked `<secondary>`, built into a sink when its output starts.
pub enum SecondarySpec {
    /// `@type secondary_file`.
    SecondaryFile(SecondaryFileConfig),
    /// `@type file`.
    File(FileOutputConfig),
    /// `@type s3` (the bucket is checked at start).
    S3(Box<S3OutputConfig>),
    /// `@type webhook`.
    Webhook(Box<WebhookConfig>),
}

impl SecondarySpec {
    /// One line for the routing plan.
    pub fn describe(&self) -> String {
        match self {
            SecondarySpec::SecondaryFile(c) => format!("secondary_file {}", c.path),
            SecondarySpec::File(c) => format!("file {}", c.path),
            SecondarySpec::S3(c) => format!("s3 bucket {}", c.s3_bucket),
            SecondarySpec::Webhook(c) => format!("webhook {}", c.redacted_url()),
        }
    }

    /// Builds the sink (an S3 secondary checks its bucket and credentials here).
    pub async fn start(self) -> Result<Arc<dyn ChunkSink>, String> {
        Ok(match self {
            SecondarySpec::SecondaryFile(c) => Arc::new(SecondaryFileOutput::new(c)),
            SecondarySpec::File(c) => Arc::new(weir_out_file::FileOutput::new(c)),
            SecondarySpec::S3(c) => Arc::new(
                weir_out_s3::S3Output::start(*c)
                    .await
                    .map_err(|e| format!("<secondary>: {e}"))?,
            ),
            SecondarySpec::Webhook(c) => Arc::new(
                weir_out_webhook::WebhookOutput::new(*c)
                    .map_err(|e| format!("<secondary>: {e}"))?,
            ),
        })
    }
}

/// The `<buffer>` element that gives an output built as a secondary the primary's chunk keys.
fn primary_buffer_element(keys: &ChunkKeySpec, location: &weir_config::Location) -> Element {
    let mut arg = Vec::new();
    if keys.tag {
        arg.push("tag".to_string());
    }
    if keys.timekey.is_some() {
        arg.push("time".to_string());
    }
    arg.extend(keys.record_keys.iter().map(|k| k.name.clone()));
    let param = |key: &str, value: String| Param {
        key: key.to_string(),
        value,
        location: location.clone(),
    };
    let mut params = Vec::new();
    if let Some(tk) = keys.timekey {
        params.push(param("timekey", tk.to_string()));
        params.push(param("timekey_use_utc", "false".into()));
        params.push(param(
            "timekey_zone",
            match keys.zone {
                TimekeyZone::Named(tz) => tz.name().to_string(),
                TimekeyZone::Fixed(o) => {
                    let sign = if o < 0 { '-' } else { '+' };
                    format!("{sign}{:02}:{:02}", o.abs() / 3600, o.abs() % 3600 / 60)
                }
            },
        ));
    }
    Element {
        name: "buffer".into(),
        arg: arg.join(","),
        params,
        elements: Vec::new(),
        location: location.clone(),
    }
}

/// Reads the `<secondary>` of an output section, if any. `primary_type` is the output's
/// `@type`, `format` how it formats events (for `secondary_file`), `buffer` its `<buffer>`:
/// `tag` is added to its chunk keys when the secondary writes the tag, as for the outputs
/// themselves. Problems go to `errors`, Fluentd's warnings to `warnings`.
pub fn read_secondary(
    s: &mut Section<'_>,
    primary_type: &str,
    format: PrimaryFormat,
    buffer: &mut BufferConfig,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<SecondarySpec> {
    let mut sections = s.sections("secondary");
    if sections.len() > 1 {
        if let Some(extra) = sections.get(1) {
            errors.push(extra.error(None, "<secondary> may appear only once in an output"));
        }
        return None;
    }
    let mut sec = sections.pop()?;
    let before = errors.len();
    for name in ["buffer", "secondary"] {
        if sec.element().children(name).next().is_some() {
            let _ = sec.sections(name);
            errors.push(sec.error(
                None,
                format!("<secondary> section cannot have <{name}> section"),
            ));
        }
    }
    if buffer.retry.forever {
        errors.push(sec.error(
            None,
            "<secondary> section and 'retry_forever' are exclusive",
        ));
    }
    let type_name = sec.type_name().unwrap_or(primary_type).to_string();
    if sec.element().param("@log_level").is_some() || sec.element().param("log_level").is_some() {
        let _ = crate::log_level::read_level(&mut sec, "@log_level", errors);
        warnings.push(sec.error(
            Some("@log_level"),
            "@log_level in <secondary> has no effect in weir: the secondary logs under its primary's id, at the primary's level",
        ));
    }
    let _ = sec.string("@id");
    if type_name != primary_type && type_name != "secondary_file" {
        warnings.push(sec.error(
            Some("@type"),
            format!("Use different plugin for secondary. Check the plugin works with primary like secondary_file (primary: {primary_type}, secondary: {type_name})"),
        ));
    }
    // Outputs other than secondary_file are built from a copy of the section that carries the
    // primary's chunk keys as its <buffer>.
    let mut with_keys = sec.element().clone();
    with_keys
        .elements
        .push(primary_buffer_element(&buffer.keys, sec.location()));
    let context = sec.context().to_string();
    let spec = match type_name.as_str() {
        "secondary_file" => {
            match SecondaryFileConfig::from_section(&mut sec, &buffer.keys, format) {
                Ok(c) => Some(SecondarySpec::SecondaryFile(c)),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            }
        }
        "file" | "s3" | "webhook" => {
            let mut copy = Section::new(&with_keys, context);
            let _ = copy.type_name();
            let _ = copy.string("@log_level");
            let _ = copy.string("@id");
            let built = match type_name.as_str() {
                "file" => FileOutputConfig::from_section(&mut copy)
                    .map(|(c, b)| (SecondarySpec::File(c), b.keys.tag, b.keep_tags)),
                "s3" => S3OutputConfig::from_section(&mut copy)
                    .map(|(c, b)| (SecondarySpec::S3(Box::new(c)), b.keys.tag, b.keep_tags)),
                _ => WebhookConfig::from_section(&mut copy)
                    .map(|(c, b)| (SecondarySpec::Webhook(Box::new(c)), b.keys.tag, b.keep_tags)),
            };
            weir_filter::warn_unused(&copy, warnings);
            // The copy read every parameter; the original section must not report them.
            for p in &sec.element().params {
                let _ = sec.string(&p.key);
            }
            for e in &sec.element().elements {
                let _ = sec.sections(&e.name);
            }
            match built {
                Ok((spec, needs_tag, keep_tags)) => {
                    if needs_tag {
                        buffer.keys.tag = true;
                    }
                    // The secondary writes each event's tag: the primary's buffer keeps them.
                    if keep_tags {
                        buffer.keep_tags = true;
                    }
                    Some(spec)
                }
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            }
        }
        other => {
            errors.push(sec.error(
                Some("@type"),
                format!("output plugin '{other}' is not supported as <secondary> by weir (supported: {SECONDARY_TYPES})"),
            ));
            None
        }
    };
    weir_filter::warn_unused(&sec, warnings);
    if errors.len() > before {
        return None;
    }
    spec
}

/// Starts the secondary, if there is one.
pub async fn start_secondary(
    spec: Option<SecondarySpec>,
) -> Result<Option<Arc<dyn ChunkSink>>, String> {
    match spec {
        Some(s) => s.start().await.map(Some),
        None => Ok(None),
    }
}

/// ` + secondary <what>` for the routing plan, or nothing.
pub fn describe_secondary(spec: &Option<SecondarySpec>) -> String {
    spec.as_ref()
        .map_or(String::new(), |s| format!(" + secondary {}", s.describe()))
}
