//! From a parsed config to a running weir: which sources listen, which outputs the `<match>`
//! directives feed, and the lifecycle that ties them to the shutdown signal.
//!
//! Every problem in the config is collected and reported at once, each with its file, line,
//! directive and parameter, before anything binds a port. What weir does not implement is an
//! error, never silently ignored; a parameter that no plugin reads is a warning, as in Fluentd.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_config::{ConfigError, Element, Section};
use weir_route::PatternSet;

use crate::forward::{BoundForward, ForwardConfig, ForwardListener, ListenError};
use crate::outputs::{NullOutput, StdoutOutput};
use crate::pipeline::{Output, Pipeline};

/// A checked config, ready to start.
pub struct Plan {
    /// The forward sources, in file order.
    pub sources: Vec<ForwardConfig>,
    /// The `<match>` directives, in file order.
    pub matches: Vec<MatchPlan>,
    /// Things Fluentd would only warn about (unused parameters).
    pub warnings: Vec<ConfigError>,
}

/// One `<match>` directive.
pub struct MatchPlan {
    /// The directive's argument as written.
    pub pattern_text: String,
    /// The compiled patterns.
    pub patterns: PatternSet,
    /// The output plugin's type.
    pub output_type: String,
    /// The output.
    pub output: Arc<dyn Output>,
}

impl Plan {
    /// A readable routing plan, for `weir check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            let mut extras = Vec::new();
            if s.tls.is_some() {
                extras.push("tls");
            }
            if s.security.is_some() {
                extras.push("shared key");
            }
            out.push_str(&format!(
                "source {} (forward) on {}:{}{}\n",
                s.id,
                s.bind,
                s.port,
                if extras.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", extras.join(", "))
                }
            ));
        }
        for m in &self.matches {
            out.push_str(&format!(
                "match {} -> {} ({})\n",
                m.pattern_text,
                m.output.id(),
                m.output_type
            ));
        }
        out
    }
}

/// Checks a config and builds its plan. Returns every error found.
pub fn plan(root: &Element) -> Result<Plan, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut sources = Vec::new();
    let mut matches = Vec::new();
    let root_section = Section::new(root, "the top level");
    for (index, el) in root.elements.iter().enumerate() {
        let context = directive_label(el);
        let mut s = Section::new(el, context.clone());
        match el.name.as_str() {
            "source" => match s.type_name() {
                Some("forward") => {
                    let _ = s.string("@type");
                    let _ = s.string("@log_level");
                    match ForwardConfig::from_section(&mut s) {
                        Ok(mut c) => {
                            if el.params.iter().all(|p| p.key != "@id") {
                                c.id = format!("forward#{index}");
                            }
                            sources.push(c);
                        }
                        Err(mut e) => errors.append(&mut e),
                    }
                    collect_unused(&s, &context, &mut warnings);
                }
                Some(other) => errors.push(s.error(
                    Some("@type"),
                    format!("input plugin '{other}' is not supported by weir (supported: forward)"),
                )),
                None => errors.push(s.error(None, "missing @type")),
            },
            "match" => {
                let patterns = match PatternSet::parse(&el.arg) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(s.error(None, format!("invalid match pattern: {e}")));
                        continue;
                    }
                };
                let id = s
                    .string("@id")
                    .unwrap_or_else(|| format!("{}#{index}", s.type_name().unwrap_or("match")));
                let _ = s.string("@log_level");
                let output: Option<Arc<dyn Output>> = match s.type_name() {
                    Some("stdout") => {
                        let _ = s.string("@type");
                        reject_sections(&mut s, &["format", "inject", "buffer"], &mut errors);
                        Some(Arc::new(StdoutOutput::new(id)))
                    }
                    Some("null") => {
                        let _ = s.string("@type");
                        reject_sections(&mut s, &["buffer"], &mut errors);
                        Some(Arc::new(NullOutput::new(id)))
                    }
                    Some(other) => {
                        errors.push(s.error(
                            Some("@type"),
                            format!("output plugin '{other}' is not supported by weir yet (supported: stdout, null)"),
                        ));
                        None
                    }
                    None => {
                        errors.push(s.error(None, "missing @type"));
                        None
                    }
                };
                if let Some(output) = output {
                    if let Some(label) = s.string("@label") {
                        errors.push(s.error(
                            Some("@label"),
                            format!("@label {label} on <match> is not supported yet"),
                        ));
                    }
                    collect_unused(&s, &context, &mut warnings);
                    matches.push(MatchPlan {
                        pattern_text: el.arg.clone(),
                        patterns,
                        output_type: el
                            .params
                            .iter()
                            .find(|p| p.key == "@type")
                            .map(|p| p.value.clone())
                            .unwrap_or_default(),
                        output,
                    });
                }
            }
            "system" => {
                let _ = s.string("log_level");
                for p in s.unused() {
                    errors.push(s.error(
                        Some(&p.key),
                        format!(
                            "<system> parameter '{}' is not supported by weir yet",
                            p.key
                        ),
                    ));
                }
            }
            "filter" | "label" | "worker" => {
                errors.push(s.error(None, format!("<{}> is not supported by weir yet", el.name)))
            }
            other => errors.push(s.error(None, format!("unknown directive <{other}>"))),
        }
    }
    for p in root_section.unused() {
        errors.push(root_section.error(
            Some(&p.key),
            format!("parameter '{}' outside any directive", p.key),
        ));
    }
    if errors.is_empty() {
        Ok(Plan {
            sources,
            matches,
            warnings,
        })
    } else {
        Err(errors)
    }
}

fn directive_label(el: &Element) -> String {
    if el.arg.is_empty() {
        format!("<{}>", el.name)
    } else {
        format!("<{} {}>", el.name, el.arg)
    }
}

fn reject_sections(s: &mut Section<'_>, names: &[&str], errors: &mut Vec<ConfigError>) {
    for name in names {
        for sub in s.sections(name) {
            errors.push(sub.error(
                None,
                format!("<{name}> in this output is not supported by weir yet"),
            ));
        }
    }
}

fn collect_unused(s: &Section<'_>, context: &str, warnings: &mut Vec<ConfigError>) {
    for p in s.unused() {
        warnings.push(s.error(
            Some(&p.key),
            format!("parameter '{}' in {context} is not used.", p.key),
        ));
    }
    for e in s.unused_sections() {
        warnings.push(s.error(
            None,
            format!("section <{}> in {context} is not used.", e.name),
        ));
    }
}

/// A started weir: its sources are listening.
pub struct Running {
    listeners: Vec<BoundForward>,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
}

impl Running {
    /// Binds every source. Nothing is served until [`Running::serve`].
    pub async fn start(plan: Plan, shutdown: CancellationToken) -> Result<Running, StartError> {
        let pipeline = Arc::new(Pipeline::new(
            plan.matches
                .into_iter()
                .map(|m| (m.patterns, m.output))
                .collect(),
        ));
        let mut listeners = Vec::new();
        for source in plan.sources {
            let id = source.id.clone();
            let bound = ForwardListener::bind(source, Arc::clone(&pipeline), shutdown.clone())
                .await
                .map_err(|source| StartError::Listen { id, source })?;
            listeners.push(bound);
        }
        Ok(Running {
            listeners,
            pipeline,
            shutdown,
        })
    }

    /// The addresses the sources listen on, in config order.
    pub fn local_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.listeners.iter().map(|l| l.local_addr()).collect()
    }

    /// The pipeline, for flushing.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        Arc::clone(&self.pipeline)
    }

    /// Serves until the shutdown token fires, then drains connections (at most `drain`) and
    /// flushes the outputs.
    pub async fn serve(self, drain: Duration) {
        let mut tasks = Vec::new();
        for l in self.listeners {
            tasks.push(tokio::spawn(l.run(drain)));
        }
        for t in tasks {
            let _ = t.await;
        }
        self.pipeline.flush();
    }

    /// The token that stops this instance.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
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
}
