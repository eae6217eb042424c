//! `weir run` and `weir check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use weir_config::Element;
use weir_server::app::{plan, Plan};
use weir_server::supervisor::{AdminControl, Supervisor};

/// Arguments of `weir run`.
#[derive(Args)]
pub struct RunArgs {
    /// The config file (Fluentd syntax).
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Write the process id to this file while running.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT (and for the old config on a reload), how long to wait for open
    /// connections to finish their requests and receive their acks.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    drain_timeout: u64,
}

/// Arguments of `weir check`.
#[derive(Args)]
pub struct CheckArgs {
    /// The config file (Fluentd syntax).
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Treat warnings (such as unused parameters) as errors.
    #[arg(long)]
    strict: bool,
}

/// Loads and checks a config; prints every error and warning with its location.
fn load(path: &std::path::Path) -> anyhow::Result<Result<(Element, Plan), usize>> {
    let root = match weir_config::parse_file(path) {
        Ok(root) => root,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            return Ok(Err(errors.0.len()));
        }
    };
    match plan(&root) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("warning: {w}");
            }
            Ok(Ok((root, p)))
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            Ok(Err(errors.len()))
        }
    }
}

/// `weir check`: exits 0 when the config would run.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    match load(&args.config)? {
        Ok((_, p)) => {
            print!("{}", p.describe());
            if args.strict && !p.warnings.is_empty() {
                eprintln!(
                    "{}: {} warning(s), refused by --strict",
                    args.config.display(),
                    p.warnings.len()
                );
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("{}: configuration is valid", args.config.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(n) => {
            eprintln!("{}: {n} error(s)", args.config.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `weir run`: serves until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (root, plan) = match load(&args.config)? {
        Ok(p) => p,
        Err(n) => {
            eprintln!(
                "{}: {n} error(s); weir did not start",
                args.config.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(root, plan, args))
}

async fn serve(root: Element, plan: Plan, args: RunArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};

    // The handlers go in before any port is bound: a signal that arrives while weir starts
    // (once a client can see the port) waits for the loop below instead of killing the
    // process with the default action.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let shutdown = CancellationToken::new();
    // The admin endpoints bind first: a port in use stops start-up before any buffer opens.
    let mut admin = Vec::new();
    for ep in plan.admin.clone() {
        admin.push(weir_admin::bind(ep).await.context("admin endpoint")?);
    }
    crate::logging::apply(&plan.log_levels);
    let drain = Duration::from_secs(args.drain_timeout);
    // The live tail's hub lives as long as the process: subscribers stay attached across
    // config reloads.
    let hub = Arc::new(weir_tail::Hub::new(weir_tail::HubConfig::default()));
    let sup = Supervisor::start(
        args.config.clone(),
        root,
        plan,
        drain,
        shutdown.clone(),
        Some(Arc::clone(&hub)),
    )
    .await?;
    sup.on_log_levels(Arc::new(crate::logging::apply));
    if let Some(pid_file) = &args.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the pid file {}", pid_file.display()))?;
    }
    // The admin endpoints serve across reloads; they stop once the last config has stopped.
    let admin_stop = CancellationToken::new();
    let control: Arc<dyn weir_admin::Control> = Arc::new(AdminControl(Arc::clone(&sup)));
    let mut admin_tasks = Vec::new();
    for a in admin {
        // The live tail is served where the plugins are (monitor_agent), not on the RPC
        // endpoint.
        let extra = a
            .serves_monitor()
            .then(|| weir_tail::routes(Arc::clone(&hub)));
        admin_tasks.push(tokio::spawn(a.serve(
            Arc::clone(&control),
            extra,
            admin_stop.clone(),
        )));
    }
    let signals = {
        let sup = Arc::clone(&sup);
        let stopped = sup.shutdown_token();
        async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                    _ = usr1.recv() => { tracing::info!("SIGUSR1: flushing every output"); sup.flush(); }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading the config");
                        let sup = Arc::clone(&sup);
                        // Errors are logged by the reload itself, each with its file and line.
                        tokio::spawn(async move { let _ = sup.reload().await; });
                    }
                    _ = stopped.cancelled() => break,
                }
            }
            sup.shutdown_token().cancel();
        }
    };
    tokio::spawn(signals);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "weir started");
    // Once shutdown begins, live-tail streams end, so their HTTP connections can close.
    {
        let hub = Arc::clone(&hub);
        let stopping = sup.shutdown_token();
        tokio::spawn(async move {
            stopping.cancelled().await;
            hub.close();
        });
    }
    sup.wait().await;
    // Live-tail streams end (again, if they already have), and the admin endpoints finish
    // the responses they are sending (the end of each stream), for a few seconds at most.
    hub.close();
    admin_stop.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for t in admin_tasks {
        let _ = tokio::time::timeout_at(deadline, t).await;
    }
    if let Some(pid_file) = &args.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    tracing::info!("weir stopped");
    Ok(ExitCode::SUCCESS)
}
