//! The running instance across config reloads, and what the admin endpoint asks of it.
//!
//! A [`Supervisor`] runs one config at a time. A reload (SIGHUP, `POST /api/config.reload`)
//! reads the config file again; if it has errors, every error is logged with its file and line
//! and the old config keeps running. Otherwise the new config's sources are bound first (a
//! port that stays the same keeps its listening socket, so forwarders see no refused
//! connection; a new port that cannot be bound fails the reload before anything stops), then
//! the old config drains (its sources stop accepting, each connection finishes its request and
//! gets its acks), its outputs stop (file buffers stay on disk, memory buffers flush as
//! `flush_at_shutdown` says), and the new outputs start, recovering those file buffers. If a new
//! output cannot start, the previous config is started again on the same sockets.
//!
//! The admin endpoint and anything created outside a config (the live tail's hub) stay up
//! across reloads; only the plan behind them changes.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_config::Element;

use crate::app::{clone_handover, plan, Handover, Plan, Prepared, Running, StartError, View};
use crate::monitor::{self, ProcessMetrics};
use crate::pipeline::Pipeline;

/// The config that runs now.
struct Current {
    root: Element,
    token: CancellationToken,
    reloading: Arc<std::sync::atomic::AtomicBool>,
    sockets: Handover,
    task: JoinHandle<()>,
}

/// Runs one config at a time and reloads it on request.
pub struct Supervisor {
    config_path: PathBuf,
    drain: Duration,
    shutdown: CancellationToken,
    reload_lock: tokio::sync::Mutex<()>,
    current: Mutex<Option<Current>>,
    view: RwLock<Arc<View>>,
    process: ProcessMetrics,
    tail: Option<Arc<weir_tail::Hub>>,
    /// The admin endpoints of the config weir started with (they are not reloaded).
    admin: Vec<weir_admin::EndpointConfig>,
    /// Told the log levels of each config that starts by a reload.
    log_levels_hook: Mutex<Option<LogLevelsHook>>,
}

/// What [`Supervisor::on_log_levels`] takes.
pub type LogLevelsHook = Arc<dyn Fn(&crate::log_level::LogLevels) + Send + Sync>;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads and checks a config file; every error is returned as `file:line: message` text, and
/// warnings are logged.
pub fn load_config(path: &Path) -> Result<(Element, Plan), Vec<String>> {
    let root = weir_config::parse_file(path)
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let plan = plan(&root).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<String>>()
    })?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    Ok((root, plan))
}

impl Supervisor {
    /// Starts `plan` (read from `root`, from the file at `config_path`): binds its sources,
    /// starts its outputs, and serves until `shutdown` fires or a reload replaces it. Every
    /// config it runs shows its sources' requests to the live tail's `tail` hub, if given.
    pub async fn start(
        config_path: PathBuf,
        root: Element,
        plan: Plan,
        drain: Duration,
        shutdown: CancellationToken,
        tail: Option<Arc<weir_tail::Hub>>,
    ) -> Result<Arc<Supervisor>, StartError> {
        let token = shutdown.child_token();
        let admin = plan.admin.clone();
        let prepared =
            Prepared::bind(plan, token.clone(), &mut Handover::new(), tail.as_ref()).await?;
        let running = prepared.start().await?;
        let process = ProcessMetrics::default();
        process.started.store(unix_now(), Ordering::Relaxed);
        process
            .last_config_load
            .store(unix_now(), Ordering::Relaxed);
        let sup = Arc::new(Supervisor {
            config_path,
            drain,
            shutdown,
            reload_lock: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            view: RwLock::new(running.view()),
            process,
            tail,
            admin,
            log_levels_hook: Mutex::new(None),
        });
        sup.install(root, token, running);
        Ok(sup)
    }

    fn install(&self, root: Element, token: CancellationToken, running: Running) {
        if let Ok(mut v) = self.view.write() {
            *v = running.view();
        }
        let sockets = running.sockets();
        let reloading = running.reload_flag();
        let drain = self.drain;
        let task = tokio::spawn(running.serve(drain));
        let current = Current {
            root,
            token,
            reloading,
            sockets,
            task,
        };
        if let Ok(mut c) = self.current.lock() {
            *c = Some(current);
        }
    }

    /// Calls `hook` with the log levels (`<system> log_level`, `@log_level`) of every config a
    /// reload starts, so the process's log filter follows the config.
    pub fn on_log_levels(&self, hook: LogLevelsHook) {
        if let Ok(mut h) = self.log_levels_hook.lock() {
            *h = Some(hook);
        }
    }

    /// What the admin API reads about the running config.
    pub fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(v) => Arc::clone(&v),
            Err(e) => Arc::clone(&e.into_inner()),
        }
    }

    /// The pipeline of the running config.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        Arc::clone(&self.view().pipeline)
    }

    /// Counters that outlive a config.
    pub fn process_metrics(&self) -> &ProcessMetrics {
        &self.process
    }

    /// The process shutdown token.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Asks every output of the running config to write out what it holds.
    pub fn flush(&self) {
        self.pipeline().flush();
    }

    /// Waits until the shutdown token fires and the running config has drained and stopped
    /// (waiting out a reload in progress first).
    pub async fn wait(&self) {
        self.shutdown.cancelled().await;
        let _guard = self.reload_lock.lock().await;
        let current = self.current.lock().ok().and_then(|mut c| c.take());
        if let Some(c) = current {
            let _ = c.task.await;
        }
    }

    /// `Ok` while the running config can accept and store data; otherwise why not.
    pub fn health(&self) -> Result<(), Vec<String>> {
        if self.shutdown.is_cancelled() {
            return Err(vec!["shutting down".to_string()]);
        }
        let view = self.view();
        let reasons: Vec<String> = view
            .pipeline
            .outputs()
            .iter()
            .filter_map(|o| o.buffered().and_then(|b| b.health().err()))
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Reloads the config file (see the module documentation). Returns every error when the
    /// previous config keeps running.
    pub async fn reload(&self) -> Result<(), Vec<String>> {
        let r = self.reload_inner().await;
        match &r {
            Ok(()) => {
                self.process.reloads_ok.inc();
                self.process
                    .last_config_load
                    .store(unix_now(), Ordering::Relaxed);
            }
            Err(errors) => {
                self.process.reloads_failed.inc();
                for e in errors {
                    tracing::error!("config reload: {e}");
                }
                tracing::error!(
                    config = %self.config_path.display(),
                    "the config was not reloaded; still running the previous config"
                );
            }
        }
        r
    }

    async fn reload_inner(&self) -> Result<(), Vec<String>> {
        let _guard = self.reload_lock.lock().await;
        if self.shutdown.is_cancelled() {
            return Err(vec!["weir is shutting down".to_string()]);
        }
        tracing::info!(config = %self.config_path.display(), "reloading the config");
        let (root, plan) = load_config(&self.config_path)?;
        let levels = plan.log_levels.clone();
        if plan.admin != self.admin {
            tracing::warn!("the admin endpoints (monitor_agent, rpc_endpoint, token) changed; they stay as they are until weir restarts");
        }
        let mut handover = self.sockets_of_current();
        let token = self.shutdown.child_token();
        let prepared = Prepared::bind(plan, token.clone(), &mut handover, self.tail.as_ref())
            .await
            .map_err(|e| vec![e.to_string()])?;
        // The new sources are bound: stop the old config.
        let Some(old) = self.current.lock().ok().and_then(|mut c| c.take()) else {
            return Err(vec!["no config is running".to_string()]);
        };
        old.reloading.store(true, Ordering::SeqCst);
        old.token.cancel();
        let _ = old.task.await;
        if self.shutdown.is_cancelled() {
            return Err(vec!["weir is shutting down".to_string()]);
        }
        match prepared.start().await {
            Ok(running) => {
                tracing::info!(config = %self.config_path.display(), "config reloaded");
                self.install(root, token, running);
                let hook = self.log_levels_hook.lock().ok().and_then(|h| h.clone());
                if let Some(hook) = hook {
                    hook(&levels);
                }
                Ok(())
            }
            Err(e) => {
                let first = e.to_string();
                tracing::error!("config reload: {first}; starting the previous config again");
                match self.restart_old(old.root, old.sockets).await {
                    Ok(()) => Err(vec![first]),
                    Err(again) => {
                        tracing::error!(
                            "the previous config could not start again either: {again}; stopping"
                        );
                        self.shutdown.cancel();
                        Err(vec![
                            first,
                            format!("the previous config could not start again: {again}"),
                        ])
                    }
                }
            }
        }
    }

    async fn restart_old(&self, root: Element, mut sockets: Handover) -> Result<(), String> {
        let plan = plan(&root).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let token = self.shutdown.child_token();
        let prepared = Prepared::bind(plan, token.clone(), &mut sockets, self.tail.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let running = prepared.start().await.map_err(|e| e.to_string())?;
        self.install(root, token, running);
        Ok(())
    }

    fn sockets_of_current(&self) -> Handover {
        self.current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| clone_handover(&c.sockets)))
            .unwrap_or_default()
    }
}

/// The live tail's counters, for `/metrics`.
fn render_tail_metrics(hub: &weir_tail::Hub, out: &mut String) {
    use weir_metrics::{Encoder, Kind};
    let mut enc = Encoder::new(out);
    let families: [(&str, &str, Kind, f64); 4] = [
        (
            "weir_tail_subscribers",
            "Live-tail subscribers attached now.",
            Kind::Gauge,
            hub.subscribers() as f64,
        ),
        (
            "weir_tail_sent_events_total",
            "Events written to live-tail subscribers.",
            Kind::Counter,
            hub.sent_events() as f64,
        ),
        (
            "weir_tail_dropped_events_total",
            "Events a slow live-tail subscriber lost because its queue was full.",
            Kind::Counter,
            hub.dropped_events() as f64,
        ),
        (
            "weir_tail_skipped_events_total",
            "Events the live tail skipped unexamined because its filter thread was busy (counted per subscriber).",
            Kind::Counter,
            hub.skipped_events() as f64,
        ),
    ];
    for (name, help, kind, value) in families {
        enc.family(name, help, kind);
        enc.sample(name, &[], value);
    }
}

/// The admin endpoint's view of a [`Supervisor`].
pub struct AdminControl(pub Arc<Supervisor>);

impl weir_admin::Control for AdminControl {
    fn plugins(&self) -> Vec<weir_admin::PluginInfo> {
        monitor::plugins(&self.0.view())
    }

    fn plugin_for_tag(&self, tag: &str) -> Option<String> {
        self.0
            .pipeline()
            .output_for(tag)
            .map(|o| o.id().to_string())
    }

    fn process_info(&self) -> weir_admin::PluginInfo {
        let mut m = Map::new();
        m.insert("pid".into(), json!(std::process::id()));
        m.insert("ppid".into(), json!(std::os::unix::process::parent_id()));
        m.insert(
            "config_path".into(),
            Value::String(self.0.config_path().display().to_string()),
        );
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        m
    }

    fn metrics(&self, out: &mut String) {
        let healthy = self.0.health().is_ok();
        monitor::render_metrics(&self.0.view(), self.0.process_metrics(), healthy, out);
        if let Some(hub) = &self.0.tail {
            render_tail_metrics(hub, out);
        }
    }

    fn health(&self) -> Result<(), Vec<String>> {
        self.0.health()
    }

    fn flush(&self) -> Result<(), String> {
        tracing::info!("flushBuffers: flushing every output");
        self.0.flush();
        Ok(())
    }

    fn reload(&self) -> BoxFuture<'static, Result<(), Vec<String>>> {
        let sup = Arc::clone(&self.0);
        Box::pin(async move {
            // The reload runs in its own task, so a client that hangs up does not cut it short.
            match tokio::spawn(async move { sup.reload().await }).await {
                Ok(r) => r,
                Err(e) => Err(vec![format!("the reload task failed: {e}")]),
            }
        })
    }

    fn stop(&self) {
        tracing::info!("stop requested over the admin endpoint");
        self.0.shutdown.cancel();
    }
}
