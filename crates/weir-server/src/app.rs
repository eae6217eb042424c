//! From a parsed config to a running weir: which sources listen, which labels, filters and
//! outputs the directives make, and the lifecycle that ties them to the shutdown signal.
//!
//! Every problem in the config is collected and reported at once, each with its file, line,
//! directive and parameter, before anything binds a port. What weir does not implement is an
//! error, never silently ignored; a parameter that no plugin reads is a warning, as in Fluentd.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_config::{ConfigError, Element, Section};
use weir_route::PatternSet;
use weir_store::ChunkSink;

use crate::forward::{BoundForward, ForwardConfig, ForwardListener, ForwardStats, ListenError};
use crate::monitor::{Metered, MeteredFilter, PluginMeta, SourceMetrics};
use crate::outputs::{
    BufferedOutput, CopyOutput, CopyStore, NullOutput, RelabelOutput, RewriteTagOutput,
    SinkStarter, Sinks, StdoutOutput,
};
use crate::pipeline::{Label, LabelId, Output, Pipeline, Step};

pub mod compat {
    //! Fluentd v0.12 parameter spellings that its compat layer (`compat_parameters`) turns into
    //! sections, so weir can read and report them the same way.

    /// v0.12 buffer parameters written directly in an output's section, with the `<buffer>`
    /// parameter each becomes (`None`: it sets the chunk keys or the timekey).
    pub const BUFFER_PARAMS: &[(&str, Option<&str>)] = &[
        ("buffer_type", Some("@type")),
        ("buffer_path", Some("path")),
        ("num_threads", Some("flush_thread_count")),
        ("flush_interval", Some("flush_interval")),
        ("try_flush_interval", Some("flush_thread_interval")),
        (
            "queued_chunk_flush_interval",
            Some("flush_thread_burst_interval"),
        ),
        ("disable_retry_limit", Some("retry_forever")),
        ("retry_limit", Some("retry_max_times")),
        ("max_retry_wait", Some("retry_max_interval")),
        ("buffer_chunk_limit", Some("chunk_limit_size")),
        ("buffer_queue_limit", Some("queue_limit_length")),
        ("buffer_queue_full_action", Some("overflow_action")),
        ("flush_at_shutdown", Some("flush_at_shutdown")),
        ("time_slice_format", None),
        ("time_slice_wait", Some("timekey_wait")),
        ("timezone", Some("timekey_zone")),
    ];
}

/// A checked config, ready to start.
pub struct Plan {
    /// The forward sources, in file order.
    pub sources: Vec<ForwardConfig>,
    /// The label each source's events enter (its `@label`, or the root).
    pub source_labels: Vec<LabelId>,
    /// The labels: index 0 is the root (`@ROOT`).
    labels: Vec<Label>,
    /// The `@ERROR` label, when defined.
    error_label: Option<LabelId>,
    /// Every output, for flushing.
    outputs: Vec<Arc<dyn Output>>,
    /// Things Fluentd would only warn about (unused parameters).
    pub warnings: Vec<ConfigError>,
    description: String,
    /// The admin endpoints: each `<source> @type monitor_agent`, and `<system> rpc_endpoint`.
    pub admin: Vec<weir_admin::EndpointConfig>,
    /// The monitor_agent sources with a `tag`: their plugin records are emitted as events.
    pub monitor_emits: Vec<MonitorEmit>,
    /// Every input plugin (forward sources, then monitor_agent sources), for the admin API.
    inputs: Vec<PluginMeta>,
    /// Every filter, for the admin API.
    filters: Vec<Arc<MeteredFilter>>,
    /// `<system> log_level` and each plugin's `@log_level`.
    pub log_levels: crate::log_level::LogLevels,
}

/// A monitor_agent source with a `tag`: every `emit_interval` it emits one event per plugin
/// (monitor_agent's fields without `config` and `retry`) under `tag`.
#[derive(Debug, Clone)]
pub struct MonitorEmit {
    /// The tag of the events.
    pub tag: String,
    /// How often.
    pub interval: Duration,
    /// The label the events enter (the source's `@label`, or the root).
    pub label: LabelId,
}

impl Plan {
    /// A readable routing plan, for `weir check`: each source and the label it feeds, then each
    /// label's filters and outputs in the order events meet them.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// Splits the plan into its pipeline (entered at the root) and its sources, each with a
    /// pipeline handle entering at the source's label.
    pub fn into_parts(self) -> (Pipeline, Vec<(ForwardConfig, Pipeline)>) {
        let pipeline = Pipeline::with_labels(self.labels, self.error_label, self.outputs);
        let sources = self
            .sources
            .into_iter()
            .zip(self.source_labels)
            .map(|(s, l)| (s, pipeline.entering_at(l)))
            .collect();
        (pipeline, sources)
    }
}

/// The output types weir supports.
const OUTPUT_TYPES: &str = "file, s3, webhook, stdout, null, copy, relabel, rewrite_tag_filter";

/// Collects errors, warnings, labels and outputs while the config is read.
struct Builder {
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    label_ids: HashMap<String, LabelId>,
    labels: Vec<(String, Vec<(PatternSet, Step)>)>,
    outputs: Vec<Arc<dyn Output>>,
    description: String,
    next_id: usize,
    filters: Vec<Arc<MeteredFilter>>,
    log_levels: crate::log_level::LogLevels,
}

impl Builder {
    fn gen_id(&mut self, type_name: &str) -> String {
        let id = format!("{type_name}#{}", self.next_id);
        self.next_id += 1;
        id
    }

    fn id_for(&mut self, s: &mut Section<'_>, type_name: &str) -> String {
        match s.string("@id") {
            Some(id) => id,
            None => self.gen_id(type_name),
        }
    }

    /// The label a `@label` value names.
    fn label(&mut self, s: &Section<'_>, name: &str) -> Option<LabelId> {
        match self.label_ids.get(name) {
            Some(&id) => Some(id),
            None => {
                self.errors
                    .push(s.error(Some("@label"), format!("{name} label not found")));
                None
            }
        }
    }

    /// A buffered output: reads its `<secondary>` (which may add to the buffer's chunk keys),
    /// describes it into `desc` as `what`, and starts the primary sink with `start`, then the
    /// secondary, when weir starts.
    #[allow(clippy::too_many_arguments)]
    fn buffered<F, Fut>(
        &mut self,
        s: &mut Section<'_>,
        id: String,
        type_name: &str,
        mut buffer: weir_store::BufferConfig,
        format: weir_out_file::PrimaryFormat,
        what: &str,
        line: &str,
        desc: &mut String,
        start: F,
    ) -> Arc<dyn Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Arc<dyn ChunkSink>, String>> + Send + 'static,
    {
        use crate::outputs::secondary::{describe_secondary, read_secondary, start_secondary};
        let secondary = read_secondary(
            s,
            type_name,
            format,
            &mut buffer,
            &mut self.errors,
            &mut self.warnings,
        );
        let _ = writeln!(
            desc,
            "{id} ({what}){} [{line}]",
            describe_secondary(&secondary)
        );
        let starter: SinkStarter = Box::new(move || {
            Box::pin(async move {
                Ok(Sinks {
                    primary: start().await?,
                    secondary: start_secondary(secondary).await?,
                })
            })
        });
        Arc::new(BufferedOutput::new(id, buffer, starter))
    }

    /// Reads a plugin's `@log_level`.
    fn log_level(&mut self, s: &mut Section<'_>, id: &str) {
        if let Some(level) = crate::log_level::read_level(s, "@log_level", &mut self.errors) {
            self.log_levels.plugins.push((id.to_string(), level));
        }
    }

    fn unused(&mut self, s: &Section<'_>) {
        weir_filter::warn_unused(s, &mut self.warnings);
    }

    /// The v0.12 buffer parameters of an output that weir runs unbuffered: each is an error when
    /// it would make Fluentd buffer the output, and left unread (so "not used") when a
    /// `<buffer>` section makes it moot, as in Fluentd.
    fn no_buffer(&mut self, s: &mut Section<'_>, type_name: &str) {
        let has_buffer = s.element().children("buffer").next().is_some();
        for sub in s.sections("buffer") {
            self.errors.push(sub.error(
                None,
                format!("<buffer> in @type {type_name} is not supported by weir yet (weir runs {type_name} unbuffered)"),
            ));
        }
        if has_buffer {
            return;
        }
        for (old, new) in compat::BUFFER_PARAMS {
            if s.element().param(old).is_some() {
                let _ = s.string(old);
                let target =
                    new.map_or_else(|| "the timekey".to_string(), |n| format!("<buffer> {n}"));
                let instead = if type_name == "null" {
                    "weir reads a buffered null from a <buffer> section only: write the parameter there".to_string()
                } else {
                    format!("buffered {type_name} is not supported by weir yet")
                };
                self.errors.push(s.error(
                    Some(old),
                    format!("v0.12 parameter '{old}' (Fluentd reads it as {target}) makes @type {type_name} buffered; {instead}"),
                ));
            }
        }
    }

    /// Builds one output from a `<match>` or `<store>` section. `label` is the label the
    /// section sits in (where re-emitted events go by default). Describes it into `desc`.
    fn output(
        &mut self,
        s: &mut Section<'_>,
        label: LabelId,
        indent: &str,
        desc: &mut String,
    ) -> Option<Arc<dyn Output>> {
        let Some(type_name) = s.type_name() else {
            self.errors.push(s.error(None, "missing @type"));
            return None;
        };
        let id = self.id_for(s, type_name);
        self.log_level(s, &id);
        let line = s.location().to_string();
        let meta = PluginMeta::new(id.clone(), "output", type_name, s.element());
        let out: Arc<dyn Output> = match type_name {
            "stdout" => {
                for name in ["format", "inject"] {
                    for sub in s.sections(name) {
                        self.errors.push(sub.error(
                            None,
                            format!("<{name}> in @type stdout is not supported by weir yet"),
                        ));
                    }
                }
                if let Some(t) = s.string("output_type") {
                    if t != "json" {
                        self.errors.push(s.error(
                            Some("output_type"),
                            format!(
                                "output_type {t} is not supported by weir yet (supported: json)"
                            ),
                        ));
                    }
                }
                self.no_buffer(s, "stdout");
                let _ = writeln!(desc, "{id} (stdout) [{line}]");
                Arc::new(StdoutOutput::new(id))
            }
            "file" => {
                let (config, buffer) = match weir_out_file::FileOutputConfig::from_section(s) {
                    Ok(c) => c,
                    Err(mut e) => {
                        self.errors.append(&mut e);
                        return None;
                    }
                };
                let format = weir_out_file::PrimaryFormat {
                    formatter: Some(Arc::clone(&config.formatter)),
                    inject: config.inject.clone().map(Arc::new),
                };
                let what = format!("file {}", config.path);
                let sink: Arc<dyn ChunkSink> = Arc::new(weir_out_file::FileOutput::new(config));
                self.buffered(
                    s,
                    id,
                    "file",
                    buffer,
                    format,
                    &what,
                    &line,
                    desc,
                    move || std::future::ready(Ok(sink)),
                )
            }
            "s3" => {
                let (config, buffer) = match weir_out_s3::S3OutputConfig::from_section(s) {
                    Ok(c) => c,
                    Err(mut e) => {
                        self.errors.append(&mut e);
                        return None;
                    }
                };
                let format = weir_out_file::PrimaryFormat {
                    formatter: Some(Arc::clone(&config.formatter)),
                    inject: config.inject.clone(),
                };
                let what = format!("s3 bucket {}", config.s3_bucket);
                // Credentials and the bucket are checked when weir starts, not by weir check.
                self.buffered(
                    s,
                    id,
                    "s3",
                    buffer,
                    format,
                    &what,
                    &line,
                    desc,
                    move || async move {
                        let out = weir_out_s3::S3Output::start(config)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(Arc::new(out) as Arc<dyn ChunkSink>)
                    },
                )
            }
            "webhook" => {
                let (config, buffer) = match weir_out_webhook::WebhookConfig::from_section(s) {
                    Ok(c) => c,
                    Err(mut e) => {
                        self.errors.append(&mut e);
                        return None;
                    }
                };
                // The URL is a secret: the plan shows its scheme and host only.
                let what = format!("webhook {}", config.redacted_url());
                // No formatter: a secondary_file gets msgpack, as for Fluentd's forward.
                let format = weir_out_file::PrimaryFormat::default();
                self.buffered(
                    s,
                    id,
                    "webhook",
                    buffer,
                    format,
                    &what,
                    &line,
                    desc,
                    move || async move {
                        let out = weir_out_webhook::WebhookOutput::new(config)
                            .map_err(|e| e.to_string())?;
                        Ok(Arc::new(out) as Arc<dyn ChunkSink>)
                    },
                )
            }
            "secondary_file" => {
                self.errors.push(s.error(
                    Some("@type"),
                    "secondary_file: this plugin can only be used in the <secondary> section",
                ));
                return None;
            }
            "null" => {
                let never_flush = match s.boolean("never_flush") {
                    Ok(v) => v.unwrap_or(false),
                    Err(e) => {
                        self.errors.push(e);
                        false
                    }
                };
                let has_buffer = s.element().children("buffer").next().is_some();
                if !has_buffer {
                    self.no_buffer(s, "null");
                    if never_flush {
                        self.warnings.push(s.error(
                            Some("never_flush"),
                            "never_flush has no effect without a <buffer> section (unbuffered null drops events at once)",
                        ));
                    }
                    let _ = writeln!(desc, "{id} (null) [{line}]");
                    Arc::new(NullOutput::new(id))
                } else {
                    let section = match s.section("buffer") {
                        Ok(b) => b,
                        Err(e) => {
                            self.errors.push(e);
                            return None;
                        }
                    };
                    let explicit_size = section
                        .as_ref()
                        .is_some_and(|b| b.element().param("chunk_limit_size").is_some());
                    // Fluentd's out_null: chunks per tag, in memory, of 10 KiB unless told otherwise.
                    let defaults = weir_store::BufferDefaults {
                        chunk_keys: "tag".to_string(),
                        ..weir_store::BufferDefaults::default()
                    };
                    let mut buffer =
                        match weir_store::BufferConfig::from_output(section, s, defaults) {
                            Ok(b) => b,
                            Err(mut e) => {
                                self.errors.append(&mut e);
                                return None;
                            }
                        };
                    if !explicit_size {
                        buffer.chunk_limit_size = 10 * 1024;
                    }
                    let what = if never_flush {
                        "null, never_flush"
                    } else {
                        "null, buffered"
                    };
                    self.buffered(
                        s,
                        id,
                        "null",
                        buffer,
                        weir_out_file::PrimaryFormat::default(),
                        what,
                        &line,
                        desc,
                        move || async move {
                            Ok(Arc::new(crate::outputs::null::NullSink::new(never_flush))
                                as Arc<dyn ChunkSink>)
                        },
                    )
                }
            }
            "relabel" => {
                let Some(name) = s.string("@label") else {
                    self.errors
                        .push(s.error(None, "@type relabel needs @label"));
                    return None;
                };
                let target = self.label(s, &name)?;
                let _ = writeln!(desc, "{id} (relabel) -> {name} [{line}]");
                Arc::new(RelabelOutput::new(id, target))
            }
            "rewrite_tag_filter" => {
                let (target, target_name) = match s.string("@label") {
                    Some(name) => (self.label(s, &name)?, name),
                    None => (
                        label,
                        self.labels
                            .get(label)
                            .map(|l| l.0.clone())
                            .unwrap_or_default(),
                    ),
                };
                self.no_buffer(s, "rewrite_tag_filter");
                let config =
                    match weir_filter::RewriteTagConfig::from_section(s, &mut self.warnings) {
                        Ok(c) => c,
                        Err(mut e) => {
                            self.errors.append(&mut e);
                            return None;
                        }
                    };
                let _ = writeln!(
                    desc,
                    "{id} (rewrite_tag_filter) -> re-emits into {target_name} [{line}]"
                );
                Arc::new(RewriteTagOutput::new(id, config.rules, target))
            }
            "copy" => {
                if let Some(m) = s.string("copy_mode") {
                    if !matches!(m.as_str(), "no_copy" | "shallow" | "deep" | "marshal") {
                        self.errors.push(s.error(
                            Some("copy_mode"),
                            format!("valid options are no_copy,shallow,deep,marshal but got '{m}'"),
                        ));
                    }
                }
                if let Err(e) = s.boolean("deep_copy") {
                    self.errors.push(e);
                }
                self.no_buffer(s, "copy");
                let _ = writeln!(desc, "{id} (copy) [{line}]");
                let mut stores = Vec::new();
                let inner = format!("{indent}    ");
                for mut store in s.sections("store") {
                    let mut ignore_error = false;
                    for word in store.arg().split_whitespace() {
                        match word {
                            "ignore_error" => ignore_error = true,
                            "ignore_if_prev_success" => self.errors.push(store.error(
                                None,
                                "<store ignore_if_prev_success> is not supported by weir yet",
                            )),
                            other => self.errors.push(
                                store.error(None, format!("unknown <store> argument '{other}'")),
                            ),
                        }
                    }
                    let _ = write!(
                        desc,
                        "{inner}store{} -> ",
                        if ignore_error { " (ignore_error)" } else { "" }
                    );
                    if let Some(o) = self.output(&mut store, label, &inner, desc) {
                        stores.push(CopyStore {
                            output: o,
                            ignore_error,
                        });
                    } else {
                        desc.push('\n');
                    }
                    self.unused(&store);
                }
                if stores.is_empty() && s.element().children("store").next().is_none() {
                    self.errors
                        .push(s.error(None, "@type copy needs at least one <store>"));
                }
                Arc::new(CopyOutput::new(id, stores))
            }
            other => {
                self.errors.push(s.error(
                    Some("@type"),
                    format!("output plugin '{other}' is not supported by weir yet (supported: {OUTPUT_TYPES})"),
                ));
                return None;
            }
        };
        // Every output is counted (emit_count, emit_records) and named for the admin API.
        let out: Arc<dyn Output> = Arc::new(Metered::new(meta, out));
        self.outputs.push(Arc::clone(&out));
        Some(out)
    }

    /// Reads the `<filter>` and `<match>` directives of one label's body.
    fn label_body(&mut self, el: &Element, label: LabelId) {
        for child in &el.elements {
            let context = child.head();
            let mut s = Section::new(child, context.clone());
            match child.name.as_str() {
                "match" | "filter" => {
                    let patterns = match PatternSet::parse(&child.arg) {
                        Ok(p) => p,
                        Err(e) => {
                            self.errors
                                .push(s.error(None, format!("invalid pattern: {e}")));
                            continue;
                        }
                    };
                    let shown = if child.arg.trim().is_empty() {
                        "**"
                    } else {
                        child.arg.as_str()
                    };
                    if child.name == "match" {
                        let mut desc = format!("  match {shown} -> ");
                        if let Some(o) = self.output(&mut s, label, "  ", &mut desc) {
                            self.description.push_str(&desc);
                            if let Some(l) = self.labels.get_mut(label) {
                                l.1.push((patterns, Step::Match(o)));
                            }
                        }
                    } else {
                        let Some(type_name) = s.type_name() else {
                            self.errors.push(s.error(None, "missing @type"));
                            continue;
                        };
                        let id = self.id_for(&mut s, type_name);
                        self.log_level(&mut s, &id);
                        let line = s.location().to_string();
                        match weir_filter::build_filter(type_name, &mut s, id.clone(), &mut self.warnings) {
                            Some(Ok(f)) => {
                                let _ = writeln!(self.description, "  filter {shown} -> {id} ({type_name}) [{line}]");
                                let meta = PluginMeta::new(id.clone(), "filter", type_name, child);
                                let metered = Arc::new(MeteredFilter::new(meta, f));
                                self.filters.push(Arc::clone(&metered));
                                if let Some(l) = self.labels.get_mut(label) {
                                    l.1.push((patterns, Step::Filter(metered)));
                                }
                            }
                            Some(Err(mut e)) => self.errors.append(&mut e),
                            None => self.errors.push(s.error(
                                Some("@type"),
                                format!(
                                    "filter plugin '{type_name}' is not supported by weir yet (supported: {})",
                                    weir_filter::FILTER_TYPES.join(", ")
                                ),
                            )),
                        }
                    }
                    self.unused(&s);
                }
                "label" if label != 0 => self
                    .errors
                    .push(s.error(None, "<label> cannot be nested in another <label>")),
                "source" if label != 0 => self.errors.push(s.error(
                    None,
                    "<source> must be at the top level, not inside <label>",
                )),
                _ if label != 0 => self.errors.push(s.error(
                    None,
                    format!("unknown directive <{}> inside <label>", child.name),
                )),
                _ => {}
            }
        }
    }
}

/// Checks a config and builds its plan. Returns every error found.
pub fn plan(root: &Element) -> Result<Plan, Vec<ConfigError>> {
    let mut b = Builder {
        errors: Vec::new(),
        warnings: Vec::new(),
        label_ids: HashMap::from([("@ROOT".to_string(), 0)]),
        labels: vec![("@ROOT".to_string(), Vec::new())],
        outputs: Vec::new(),
        description: String::new(),
        next_id: 0,
        log_levels: crate::log_level::LogLevels::default(),
        filters: Vec::new(),
    };
    // First every label's name, so that @label may refer to a label defined further down.
    for el in root.children("label") {
        let s = Section::new(el, el.head());
        let name = el.arg.trim().to_string();
        if name.is_empty() {
            b.errors
                .push(s.error(None, "<label> needs a name, such as <label @alerts>"));
        } else if name == "@ROOT" {
            b.errors.push(s.error(
                None,
                "@ROOT is the top level; it cannot be defined as a <label>",
            ));
        } else if name == "@FLUENT_LOG" {
            b.errors.push(s.error(None, "<label @FLUENT_LOG> is not supported by weir: weir's own log does not go through the pipeline"));
        } else if b.label_ids.contains_key(&name) {
            b.errors
                .push(s.error(None, format!("label {name} is defined more than once")));
        } else {
            b.label_ids.insert(name.clone(), b.labels.len());
            b.labels.push((name, Vec::new()));
        }
    }
    let mut sources = Vec::new();
    let mut source_labels = Vec::new();
    let mut source_desc = String::new();
    let mut inputs = Vec::new();
    let mut monitors: Vec<(PluginMeta, weir_admin::EndpointConfig, Option<MonitorEmit>)> =
        Vec::new();
    let mut rpc: Option<(weir_admin::EndpointConfig, ConfigError)> = None;
    let root_section = Section::new(root, "the top level");
    for el in &root.elements {
        let context = el.head();
        let mut s = Section::new(el, context.clone());
        match el.name.as_str() {
            "source" => match s.type_name() {
                Some("forward") => {
                    let level =
                        crate::log_level::read_level(&mut s, "@log_level", &mut b.errors);
                    let label = match s.string("@label") {
                        Some(name) => b.label(&s, &name),
                        None => Some(0),
                    };
                    let explicit_id = el.param("@id").is_some() || el.param("id").is_some();
                    match ForwardConfig::from_section(&mut s) {
                        Ok(mut c) => {
                            if !explicit_id {
                                c.id = b.gen_id("forward");
                            }
                            inputs.push(PluginMeta::new(c.id.clone(), "input", "forward", el));
                            if let Some(level) = level {
                                b.log_levels.plugins.push((c.id.clone(), level));
                            }
                            let mut extras = Vec::new();
                            if c.tls.is_some() {
                                extras.push("tls");
                            }
                            if c.security.is_some() {
                                extras.push("shared key");
                            }
                            let label = label.unwrap_or(0);
                            let _ = writeln!(
                                source_desc,
                                "source {} (forward) on {}:{}{} -> {} [{}]",
                                c.id,
                                c.bind,
                                c.port,
                                if extras.is_empty() { String::new() } else { format!(" [{}]", extras.join(", ")) },
                                b.labels.get(label).map(|l| l.0.as_str()).unwrap_or("@ROOT"),
                                el.location,
                            );
                            sources.push(c);
                            source_labels.push(label);
                        }
                        Err(mut e) => b.errors.append(&mut e),
                    }
                    b.unused(&s);
                }
                Some("monitor_agent") => {
                    if let Some(m) = monitor_agent(&mut b, &mut s, el) {
                        let _ = writeln!(
                            source_desc,
                            "source {} (monitor_agent) on {}:{} [{}]",
                            m.0.id, m.1.bind, m.1.port, el.location
                        );
                        monitors.push(m);
                    }
                    b.unused(&s);
                }
                Some(other) => b.errors.push(s.error(
                    Some("@type"),
                    format!("input plugin '{other}' is not supported by weir (supported: forward, monitor_agent)"),
                )),
                None => b.errors.push(s.error(None, "missing @type")),
            },
            "match" | "filter" => {}
            "label" => {}
            "system" => {
                b.log_levels.system =
                    crate::log_level::read_level(&mut s, "log_level", &mut b.errors);
                if let Some(ep) = s.string("rpc_endpoint") {
                    match parse_rpc_endpoint(&ep) {
                        Some((bind, port)) => {
                            let at = s.error(Some("rpc_endpoint"), "");
                            rpc = Some((
                                weir_admin::EndpointConfig {
                                    bind,
                                    port,
                                    role: weir_admin::Role::Rpc,
                                    token: None,
                                },
                                at,
                            ));
                        }
                        None => b.errors.push(s.error(
                            Some("rpc_endpoint"),
                            format!("Invalid rpc_endpoint: {ep} (expected HOST:PORT, such as 127.0.0.1:24444)"),
                        )),
                    }
                }
                match s.integer("workers") {
                    Ok(Some(n)) if n != 1 => b.errors.push(s.error(Some("workers"), "weir runs one worker process; workers must be 1 (weir uses every core in one process)")),
                    Err(e) => b.errors.push(e),
                    _ => {}
                }
                for p in s.unused() {
                    b.errors.push(s.error(
                        Some(&p.key),
                        format!("<system> parameter '{}' is not supported by weir yet", p.key),
                    ));
                }
                for e in s.unused_sections() {
                    b.errors.push(s.error(None, format!("<system> section <{}> is not supported by weir yet", e.name)));
                }
            }
            "worker" => b.errors.push(s.error(
                None,
                "<worker> is not supported: weir runs a single process (move these directives out of <worker>)",
            )),
            other => b.errors.push(s.error(None, format!("unknown directive <{other}>"))),
        }
    }
    // Then each label's directives: the root's first, then the labels in file order.
    b.description.push_str("label @ROOT\n");
    b.label_body(root, 0);
    for el in root.children("label") {
        let Some(&id) = b.label_ids.get(el.arg.trim()) else {
            continue;
        };
        if id == 0 {
            continue;
        }
        let _ = writeln!(b.description, "label {} [{}]", el.arg.trim(), el.location);
        b.label_body(el, id);
        let s = Section::new(el, el.head());
        for p in &el.params {
            b.warnings.push(s.error(
                Some(&p.key),
                format!("parameter '{}' in {} is not used.", p.key, s.context()),
            ));
        }
    }
    for p in root_section.unused() {
        b.errors.push(root_section.error(
            Some(&p.key),
            format!("parameter '{}' outside any directive", p.key),
        ));
    }
    let admin = admin_endpoints(&mut b, &monitors, rpc);
    if !b.errors.is_empty() {
        return Err(b.errors);
    }
    let error_label = b.label_ids.get("@ERROR").copied();
    let mut monitor_emits = Vec::new();
    for (meta, _, emit) in monitors {
        inputs.push(meta);
        monitor_emits.extend(emit);
    }
    Ok(Plan {
        sources,
        source_labels,
        labels: b
            .labels
            .into_iter()
            .map(|(name, steps)| Label::new(name, steps))
            .collect(),
        error_label,
        outputs: b.outputs,
        warnings: b.warnings,
        description: format!("{source_desc}{}", b.description),
        admin,
        monitor_emits,
        inputs,
        filters: b.filters,
        log_levels: b.log_levels,
    })
}

/// The environment variable that gives the admin token when `token` is not set.
pub const ADMIN_TOKEN_ENV: &str = "WEIR_ADMIN_TOKEN";

/// Reads a `<source> @type monitor_agent`.
fn monitor_agent(
    b: &mut Builder,
    s: &mut Section<'_>,
    el: &Element,
) -> Option<(PluginMeta, weir_admin::EndpointConfig, Option<MonitorEmit>)> {
    let id = b.id_for(s, "monitor_agent");
    b.log_level(s, &id);
    let label = match s.string("@label") {
        Some(name) => b.label(s, &name)?,
        None => 0,
    };
    let bind = s.string_or("bind", "127.0.0.1");
    let port = match s.integer("port") {
        Ok(None) => 24220,
        Ok(Some(p)) => match u16::try_from(p) {
            Ok(p) => p,
            Err(_) => {
                b.errors
                    .push(s.error(Some("port"), format!("port {p} is out of range")));
                return None;
            }
        },
        Err(e) => {
            b.errors.push(e);
            return None;
        }
    };
    let mut flag = |b: &mut Builder, key: &str| match s.boolean(key) {
        Ok(v) => v.unwrap_or(true),
        Err(e) => {
            b.errors.push(e);
            true
        }
    };
    let include_config = flag(b, "include_config");
    let include_retry = flag(b, "include_retry");
    let token = s.string("token").filter(|t| !t.is_empty());
    let tag = s.string("tag");
    let interval = match s.duration("emit_interval") {
        Ok(v) => v.unwrap_or(Duration::from_secs(60)),
        Err(e) => {
            b.errors.push(e);
            return None;
        }
    };
    if interval.is_zero() {
        b.errors.push(s.error(
            Some("emit_interval"),
            "emit_interval must be greater than 0",
        ));
        return None;
    }
    if !weir_admin::is_loopback(&bind) && token.is_none() && admin_token_from_env().is_none() {
        b.errors.push(s.error(
            Some("bind"),
            format!("monitor_agent listens on {bind}, beyond this machine: set 'token' (or the {ADMIN_TOKEN_ENV} environment variable) so that requests need it"),
        ));
    }
    let emit = tag.map(|tag| MonitorEmit {
        tag,
        interval,
        label,
    });
    Some((
        PluginMeta::new(id, "input", "monitor_agent", el),
        weir_admin::EndpointConfig {
            bind,
            port,
            role: weir_admin::Role::Monitor {
                include_config,
                include_retry,
            },
            token,
        },
        emit,
    ))
}

fn admin_token_from_env() -> Option<String> {
    std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
}

/// Fluentd's `rpc_endpoint` form: `HOST:PORT` or `[V6]:PORT`.
fn parse_rpc_endpoint(v: &str) -> Option<(String, u16)> {
    let (host, port) = v.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '.'));
    if !valid || port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// The admin endpoints, with the token each needs: its own `token`, else the first
/// monitor_agent's, else [`ADMIN_TOKEN_ENV`]. An endpoint beyond loopback without a token is an
/// error.
fn admin_endpoints(
    b: &mut Builder,
    monitors: &[(PluginMeta, weir_admin::EndpointConfig, Option<MonitorEmit>)],
    rpc: Option<(weir_admin::EndpointConfig, ConfigError)>,
) -> Vec<weir_admin::EndpointConfig> {
    let shared = monitors
        .iter()
        .find_map(|m| m.1.token.clone())
        .or_else(admin_token_from_env);
    let mut out: Vec<weir_admin::EndpointConfig> = monitors
        .iter()
        .map(|m| {
            let mut ep = m.1.clone();
            if ep.token.is_none() {
                ep.token = shared.clone();
            }
            ep
        })
        .collect();
    if let Some((mut ep, at)) = rpc {
        ep.token = shared;
        if !weir_admin::is_loopback(&ep.bind) && ep.token.is_none() {
            b.errors.push(ConfigError {
                message: format!("rpc_endpoint listens on {}, beyond this machine: set 'token' in a monitor_agent source (or the {ADMIN_TOKEN_ENV} environment variable) so that requests need it", ep.bind),
                ..at
            });
        }
        // The same address as a monitor_agent source: that endpoint serves the RPC calls too.
        if !out.iter().any(|m| m.bind == ep.bind && m.port == ep.port) {
            out.push(ep);
        }
    }
    out
}

/// Where a forward source listens, as configured (`bind`, `port`): the key under which a
/// config reload hands the listening sockets on.
pub type SourceKey = (String, u16);

/// Listening sockets kept open across a config reload, by where they listen.
pub type Handover = HashMap<SourceKey, (std::net::TcpListener, std::net::UdpSocket)>;

/// Duplicates every socket of a handover, so both the old and the new owner hold them.
pub fn clone_handover(h: &Handover) -> Handover {
    h.iter()
        .filter_map(|(k, (t, u))| {
            let t = t.try_clone().ok()?;
            let u = u.try_clone().ok()?;
            Some((k.clone(), (t, u)))
        })
        .collect()
}

/// One input plugin, as the admin API sees it.
pub struct InputView {
    /// Its identity.
    pub meta: PluginMeta,
    /// For a forward source: its listener's counters and what it handed to the pipeline.
    pub forward: Option<(Arc<ForwardStats>, Arc<SourceMetrics>)>,
}

/// What the admin API reads about a running config.
pub struct View {
    /// The pipeline (entered at the root), with every output.
    pub pipeline: Arc<Pipeline>,
    /// The inputs in config order.
    pub inputs: Vec<InputView>,
    /// The filters in config order.
    pub filters: Vec<Arc<MeteredFilter>>,
}

/// A plan whose sources have their ports bound, with nothing started yet: no buffer is open
/// and no connection is accepted (connections wait in the kernel's queue).
pub struct Prepared {
    listeners: Vec<BoundForward>,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    view: Arc<View>,
    sockets: Handover,
    emits: Vec<MonitorEmit>,
}

impl Prepared {
    /// Binds every source of `plan`: a source whose `bind` and `port` are in `handover` takes
    /// those sockets (they leave the map); the others bind their ports. With `tail`, every
    /// source shows its requests to the live tail.
    pub async fn bind(
        plan: Plan,
        shutdown: CancellationToken,
        handover: &mut Handover,
        tail: Option<&Arc<weir_tail::Hub>>,
    ) -> Result<Prepared, StartError> {
        let emits = plan.monitor_emits.clone();
        let filters = plan.filters.clone();
        let mut input_metas = plan.inputs.clone().into_iter();
        let (pipeline, sources) = plan.into_parts();
        let pipeline = Arc::new(pipeline);
        let mut listeners = Vec::new();
        let mut sockets = Handover::new();
        let mut inputs = Vec::new();
        for (source, entry) in sources {
            let id = source.id.clone();
            let key: SourceKey = (source.bind.clone(), source.port);
            let metrics = Arc::new(SourceMetrics::default());
            let mut entry = entry.counting_into(Arc::clone(&metrics));
            if let Some(hub) = tail {
                entry = entry.with_tap(Arc::clone(hub), &id);
            }
            let entry = Arc::new(entry);
            let bound = match handover.remove(&key) {
                Some(socks) => ForwardListener::adopt(source, entry, shutdown.clone(), socks),
                None => ForwardListener::bind(source, entry, shutdown.clone()).await,
            }
            .map_err(|source| StartError::Listen { id, source })?;
            if let Ok(dup) = bound.try_clone_sockets() {
                sockets.insert(key, dup);
            }
            let meta = input_metas.next().unwrap_or_else(|| PluginMeta {
                id: String::new(),
                category: "input",
                type_name: "forward".into(),
                config: Vec::new(),
            });
            inputs.push(InputView {
                meta,
                forward: Some((bound.stats(), metrics)),
            });
            listeners.push(bound);
        }
        inputs.extend(input_metas.map(|meta| InputView {
            meta,
            forward: None,
        }));
        Ok(Prepared {
            listeners,
            view: Arc::new(View {
                pipeline: Arc::clone(&pipeline),
                inputs,
                filters,
            }),
            pipeline,
            shutdown,
            sockets,
            emits,
        })
    }

    /// Starts every output (a buffered output opens its buffer, recovering what was left).
    /// If one fails, those already started are stopped again as for a reload (their file
    /// buffers stay on disk) before the error is returned.
    pub async fn start(self) -> Result<Running, StartError> {
        let outputs = self.pipeline.outputs();
        for (i, output) in outputs.iter().enumerate() {
            if let Err(message) = output.start().await {
                for started in outputs.iter().take(i) {
                    started.shutdown_for_reload().await;
                }
                return Err(StartError::Output {
                    id: output.id().to_string(),
                    message,
                });
            }
        }
        Ok(Running {
            listeners: self.listeners,
            pipeline: self.pipeline,
            shutdown: self.shutdown,
            view: self.view,
            sockets: self.sockets,
            emits: self.emits,
            reloading: Arc::new(AtomicBool::new(false)),
        })
    }
}

/// A started weir: its outputs run and its sources are bound.
pub struct Running {
    listeners: Vec<BoundForward>,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    view: Arc<View>,
    sockets: Handover,
    emits: Vec<MonitorEmit>,
    reloading: Arc<AtomicBool>,
}

impl Running {
    /// Binds every source and starts every output. Nothing is accepted until
    /// [`Running::serve`].
    pub async fn start(plan: Plan, shutdown: CancellationToken) -> Result<Running, StartError> {
        Prepared::bind(plan, shutdown, &mut Handover::new(), None)
            .await?
            .start()
            .await
    }

    /// The addresses the sources listen on, in config order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners.iter().map(|l| l.local_addr()).collect()
    }

    /// The pipeline, for flushing.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        Arc::clone(&self.pipeline)
    }

    /// What the admin API reads.
    pub fn view(&self) -> Arc<View> {
        Arc::clone(&self.view)
    }

    /// Duplicates of the listening sockets, for the config that replaces this one.
    pub fn sockets(&self) -> Handover {
        clone_handover(&self.sockets)
    }

    /// Set before the shutdown token fires to stop for a reload: outputs then keep file
    /// buffers on disk instead of flushing them.
    pub fn reload_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reloading)
    }

    /// Serves until the shutdown token fires, then drains connections (at most `drain`) and
    /// stops the outputs: for a shutdown they flush as `flush_at_shutdown` says; for a reload
    /// (see [`Running::reload_flag`]) file buffers keep their chunks for the next config.
    pub async fn serve(self, drain: Duration) {
        // The moment shutdown begins, outputs stop holding requests back, so that connections
        // waiting on a full buffer are answered and the drain below can finish.
        let pipeline = Arc::clone(&self.pipeline);
        let token = self.shutdown.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            for output in pipeline.outputs() {
                output.begin_shutdown();
            }
        });
        for emit in self.emits {
            tokio::spawn(emit_monitor_records(
                emit,
                Arc::clone(&self.view),
                self.shutdown.clone(),
            ));
        }
        let mut tasks = Vec::new();
        for l in self.listeners {
            tasks.push(tokio::spawn(l.run(drain)));
        }
        for t in tasks {
            let _ = t.await;
        }
        // Every source has stopped and every ack owed has been sent: stop the outputs.
        let reload = self.reloading.load(Ordering::SeqCst);
        for output in self.pipeline.outputs() {
            if reload {
                output.shutdown_for_reload().await;
            } else {
                output.shutdown().await;
            }
        }
    }

    /// The token that stops this instance.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// monitor_agent's `tag`: every `interval`, one event per plugin into the pipeline.
async fn emit_monitor_records(emit: MonitorEmit, view: Arc<View>, stop: CancellationToken) {
    let entry = view.pipeline.entering_at(emit.label);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(emit.interval) => {}
        }
        let mut batch = weir_filter::BatchBuilder::default();
        let now = weir_proto::EventTime::now();
        let mut record = Vec::new();
        for mut p in crate::monitor::plugins(&view) {
            p.remove("config");
            p.remove("retry");
            record.clear();
            weir_proto::json_to_msgpack(&serde_json::Value::Object(p), &mut record);
            batch.push(now, &record);
        }
        if let Err(e) = entry.emit(&emit.tag, &batch.finish()).wait().await {
            tracing::warn!(tag = %emit.tag, "monitor_agent could not emit its records: {e}");
        }
    }
}

/// Why weir could not start after its config was accepted.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A source could not bind its port or load its TLS files.
    #[error("source {id}: {source}")]
    Listen {
        /// The source's id.
        id: String,
        /// What went wrong.
        source: ListenError,
    },
    /// An output could not start (its buffer could not be opened, its bucket is missing).
    #[error("output {id}: {message}")]
    Output {
        /// The output's id.
        id: String,
        /// What went wrong.
        message: String,
    },
}

#[cfg(test)]
mod admin_tests {
    use super::*;
    use proptest::prelude::*;

    fn plan_of(text: &str) -> Result<Plan, Vec<ConfigError>> {
        let root =
            weir_config::parse_str(text, "t.conf", std::path::Path::new(".")).map_err(|e| e.0)?;
        plan(&root)
    }

    #[test]
    fn monitor_agent_defaults_and_parameters() {
        let p = plan_of("<source>\n  @type monitor_agent\n</source>\n").unwrap();
        assert_eq!(
            p.admin,
            vec![weir_admin::EndpointConfig {
                bind: "127.0.0.1".into(),
                port: 24220,
                role: weir_admin::Role::Monitor {
                    include_config: true,
                    include_retry: true,
                },
                token: None,
            }]
        );
        let p = plan_of(
            "<source>\n  @type monitor_agent\n  port 9\n  include_config false\n  tag mon\n  emit_interval 5s\n  token t\n</source>\n<system>\n  rpc_endpoint 127.0.0.1:24444\n</system>\n",
        )
        .unwrap();
        assert_eq!(p.admin.len(), 2);
        assert_eq!(p.admin[1].role, weir_admin::Role::Rpc);
        assert_eq!(
            p.admin[1].token.as_deref(),
            Some("t"),
            "the RPC endpoint shares the token"
        );
        assert_eq!(p.monitor_emits.len(), 1);
        assert_eq!(p.monitor_emits[0].interval, Duration::from_secs(5));
        let errs = plan_of("<source>\n  @type monitor_agent\n  port 70000\n</source>\n")
            .err()
            .unwrap();
        assert!(errs[0].to_string().contains("t.conf:3"), "{}", errs[0]);
    }

    proptest! {
        #[test]
        fn rpc_endpoints_round_trip(a in 0u8..=255, b in 0u8..=255, port in any::<u16>()) {
            let v4 = format!("10.{a}.{b}.1:{port}");
            prop_assert_eq!(parse_rpc_endpoint(&v4), Some((format!("10.{a}.{b}.1"), port)));
            let v6 = format!("[::{a:x}]:{port}");
            prop_assert_eq!(parse_rpc_endpoint(&v6), Some((format!("::{a:x}"), port)));
        }

        #[test]
        fn rpc_endpoint_never_panics(s in "\\PC{0,40}") {
            if let Some((host, _)) = parse_rpc_endpoint(&s) {
                prop_assert!(!host.is_empty());
            }
        }
    }
}
