//! The `weir` command: run an aggregator, check a config, send events, generate load.

mod bench;
mod cat;
mod client;
mod flush;
mod logging;
mod run;
mod tail;

use clap::{Parser, Subcommand};
use logging::LogFormat;

/// What `weir --version` prints: the release, then the build it came from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WEIR_BUILD_COMMIT"),
    ", ",
    env!("WEIR_BUILD_PROFILE"),
    " build for ",
    env!("WEIR_BUILD_TARGET"),
    ", ",
    env!("WEIR_BUILD_RUSTC"),
    ")"
);

/// weir: a log aggregator that speaks the Fluentd forward protocol.
#[derive(Parser)]
#[command(name = "weir", version = VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    /// How much weir logs: error, warn, info, debug or trace (or a tracing filter such as
    /// "info,weir_server=debug"). Without it, `weir run` takes the config's
    /// `<system> log_level`, else info. A plugin's `@log_level` applies to the lines about it.
    #[arg(long, global = true, env = "WEIR_LOG")]
    log_level: Option<String>,
    /// The log line format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an aggregator with a Fluentd-syntax config file.
    Run(run::RunArgs),
    /// Check a config file and print its routing plan, like `fluentd --dry-run`.
    Check(run::CheckArgs),
    /// Send JSON lines from standard input as events, like `fluent-cat`.
    Cat(cat::CatArgs),
    /// Generate forward-protocol load against an aggregator and report throughput and ack latency.
    Bench(bench::BenchArgs),
    /// Stream the events entering one or several aggregators, filtered on the servers.
    Tail(tail::TailArgs),
    /// Make a running weir write out every buffer now (its admin endpoint, or SIGUSR1).
    Flush(flush::AdminCallArgs),
    /// Make a running weir read its config file again (its admin endpoint, or SIGHUP).
    Reload(flush::AdminCallArgs),
}

/// jemalloc keeps freed request and block buffers for reuse instead of handing them back to
/// the kernel and faulting fresh pages in for the next request, which glibc's allocator does
/// with buffers of this size (page faults were a visible share of weir's CPU time under load).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level.as_deref(), cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => run::check(args),
        Command::Cat(args) => cat::cat(args),
        Command::Bench(args) => bench::bench(args),
        Command::Tail(args) => tail::tail(args),
        Command::Flush(args) => flush::call(flush::Call::Flush, args),
        Command::Reload(args) => flush::call(flush::Call::Reload, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir: {}", error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: several of weir's errors already name
/// their cause in their own message, and printing the chain as is would repeat it.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    /// An error that names its cause in its message and also returns it as its source.
    #[derive(Debug)]
    struct Bind {
        source: std::io::Error,
    }

    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot listen on 127.0.0.1:24224 (tcp): {}", self.source)
        }
    }

    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let e = anyhow::Error::new(Bind { source: io }).context("source forward#0");
        assert_eq!(
            error_text(&e),
            "source forward#0: cannot listen on 127.0.0.1:24224 (tcp): Address already in use"
        );
        let plain = anyhow::anyhow!("disk full").context("writing the pid file /run/weir.pid");
        assert_eq!(
            error_text(&plain),
            "writing the pid file /run/weir.pid: disk full"
        );
    }
}
