//! `weir run` and `weir check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;
use weir_server::app::{plan, Plan, Running};

/// Arguments of `weir run`.
#[derive(Args)]
pub struct RunArgs {
    /// The config file (Fluentd syntax).
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Write the process id to this file while running.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, how long to wait for open connections to finish their requests and
    /// receive their acks before exiting.
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
fn load(path: &std::path::Path) -> anyhow::Result<Result<Plan, usize>> {
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
            Ok(Ok(p))
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
        Ok(p) => {
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
    let plan = match load(&args.config)? {
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
    runtime.block_on(serve(plan, args))
}

async fn serve(plan: Plan, args: RunArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};

    let shutdown = CancellationToken::new();
    let running = Running::start(plan, shutdown.clone()).await?;
    if let Some(pid_file) = &args.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the pid file {}", pid_file.display()))?;
    }
    let pipeline = running.pipeline();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let signals = {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                    _ = usr1.recv() => { tracing::info!("SIGUSR1: flushing every output"); pipeline.flush(); }
                    _ = hup.recv() => { tracing::warn!("SIGHUP: config reload is not supported yet; still running the config loaded at start"); }
                }
            }
            shutdown.cancel();
        }
    };
    tokio::spawn(signals);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "weir started");
    running.serve(Duration::from_secs(args.drain_timeout)).await;
    if let Some(pid_file) = &args.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    tracing::info!("weir stopped");
    Ok(ExitCode::SUCCESS)
}
