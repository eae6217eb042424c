//! `weir tail`: streams the events entering one or several aggregators, filtered on the
//! servers, to standard output.
//!
//! Each `--addr` is a `HOST:PORT` of an admin endpoint (`<source> @type monitor_agent`); a
//! host name is resolved and every address it resolves to is streamed from, so a DNS name that
//! lists a whole tier reaches all of it. The name is resolved again every 30 seconds and new
//! addresses join. Lines from every instance are merged as they arrive, whole lines only.
//!
//! An instance that cannot be reached, answers 503 or ends its stream (it is shutting down) is
//! tried again after a backoff: 0.5 s, doubling up to 15 s, with a quarter of random jitter,
//! back to 0.5 s once a stream has been open. An instance whose address left the DNS answer
//! is not tried again. A stream silent for longer than `--idle-timeout` (the servers send an
//! empty line every 10 s) is taken as dead and reopened. A refused request (400: a bad filter;
//! 401: a missing or wrong token; 404: no live tail there) stops `weir tail` with the server's
//! message, since trying again would not help.
//!
//! Control lines (`# weir: ...`) go to standard error, prefixed with the instance; events
//! lost for this reader (dropped because it was slow, or skipped because the server was too
//! busy to examine them) are also summed up per instance at the end.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use weir_tail::{FieldMatch, LineFormat, TailFilter, TailRequest, CONTROL_PREFIX, TAIL_PATH};

/// Arguments of `weir tail`.
#[derive(Args)]
pub struct TailArgs {
    /// An admin endpoint (monitor_agent) to stream from, as HOST:PORT. Repeat for several
    /// instances; a host name that resolves to several addresses streams from each.
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:24220"
    )]
    addrs: Vec<String>,
    /// Only events whose tag matches this pattern (Fluentd <match> syntax: `*`, `**`,
    /// `{a,b}`; several patterns separated by spaces).
    #[arg(long, value_name = "PATTERN")]
    tag: Option<String>,
    /// Only events whose record value at KEY matches REGEX (Ruby to_s of the value; KEY may be
    /// nested, `$.a.b`). Repeat: every one must match.
    #[arg(long = "grep", value_name = "KEY=REGEX")]
    grep: Vec<String>,
    /// Drop events whose record value at KEY matches REGEX. Repeat: any one drops the event.
    #[arg(long = "exclude", value_name = "KEY=REGEX")]
    exclude: Vec<String>,
    /// Only events that entered through the source with this @id.
    #[arg(long, value_name = "ID")]
    source: Option<String>,
    /// How each event is written: as the file output's ltsv, json or out_file formatter
    /// writes it (ltsv and json with `tag` and `time` keys added).
    #[arg(long, value_enum, default_value_t = Format::Ltsv)]
    format: Format,
    /// Stop after this many events in total.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// The admin endpoint's access token (sent as `Authorization: Bearer TOKEN`).
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Reopen a stream that sent nothing (not even a heartbeat) for this long.
    #[arg(long, value_name = "SECONDS", default_value_t = 35)]
    idle_timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Ltsv,
    Json,
    #[value(name = "out_file")]
    OutFile,
}

impl From<Format> for LineFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Ltsv => LineFormat::Ltsv,
            Format::Json => LineFormat::Json,
            Format::OutFile => LineFormat::OutFile,
        }
    }
}

/// Builds the request every instance gets, checking the filters here first.
fn request(args: &TailArgs) -> anyhow::Result<TailRequest> {
    let mut filter = TailFilter::default();
    if let Some(t) = &args.tag {
        filter = filter.tag(t).context("--tag")?;
    }
    if let Some(s) = &args.source {
        filter = filter.source(s.clone());
    }
    for g in &args.grep {
        filter = filter.grep(FieldMatch::parse(g).context("--grep")?);
    }
    for x in &args.exclude {
        filter = filter.exclude(FieldMatch::parse(x).context("--exclude")?);
    }
    if args.limit == Some(0) {
        bail!("--limit must be above 0");
    }
    Ok(TailRequest {
        filter,
        format: args.format.into(),
        limit: args.limit,
    })
}

/// What an instance's task tells the writer.
enum Msg {
    /// Whole event lines, and how many.
    Lines(Bytes, u64),
    /// The instance lost this many events for us: the instance, the count, and the control
    /// line that said so.
    Lost(String, u64, String),
    /// A request no retry can fix.
    Fatal(String),
}

/// Runs `weir tail`.
pub fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let request = request(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(tail_async(args, request));
    // Streams still open end with the process; nothing to wait for.
    runtime.shutdown_background();
    result
}

struct Settings {
    query: String,
    token: Option<String>,
    idle: Duration,
    client: Client<HttpConnector, Empty<Bytes>>,
}

async fn tail_async(args: TailArgs, request: TailRequest) -> anyhow::Result<ExitCode> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_nodelay(true);
    let settings = Arc::new(Settings {
        query: request.to_query(),
        token: args.token.clone(),
        idle: Duration::from_secs(args.idle_timeout.max(1)),
        client: Client::builder(TokioExecutor::new()).build(connector),
    });
    // Bounded: when standard output is slow, the instances' streams stop being read, and the
    // servers drop events for us and say so, rather than this process growing.
    let (tx, mut rx) = mpsc::channel::<Msg>(64);
    for addr in &args.addrs {
        tokio::spawn(resolve_loop(
            addr.clone(),
            Arc::clone(&settings),
            tx.clone(),
        ));
    }
    drop(tx);

    let mut remaining = args.limit.unwrap_or(u64::MAX);
    let mut lost: BTreeMap<String, u64> = BTreeMap::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut code = ExitCode::SUCCESS;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Lines(lines, n) => {
                let (bytes, n) = if n > remaining {
                    (first_lines(&lines, remaining), remaining)
                } else {
                    (&lines[..], n)
                };
                if out.write_all(bytes).is_err() {
                    break; // standard output closed (`| head`): done.
                }
                remaining -= n;
                if remaining == 0 {
                    break;
                }
                if rx.is_empty() && out.flush().is_err() {
                    break;
                }
            }
            Msg::Lost(instance, n, said) => {
                let _ = out.flush();
                eprintln!("weir tail: {instance}: {said}");
                *lost.entry(instance).or_default() += n;
            }
            Msg::Fatal(message) => {
                let _ = out.flush();
                eprintln!("weir tail: {message}");
                code = ExitCode::FAILURE;
                break;
            }
        }
    }
    let _ = out.flush();
    drop(out);
    if !lost.is_empty() {
        let summary: Vec<String> = lost.iter().map(|(i, n)| format!("{i}: {n}")).collect();
        eprintln!(
            "weir tail: events lost for this reader (dropped or skipped): {}",
            summary.join(", ")
        );
    }
    Ok(code)
}

/// The first `n` lines of `lines`.
fn first_lines(lines: &[u8], n: u64) -> &[u8] {
    let mut seen = 0;
    for (i, b) in lines.iter().enumerate() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &lines[..=i];
            }
        }
    }
    lines
}

/// How long to wait before trying an instance again.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(15);

    fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The next wait, with up to a quarter of it added at random.
    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base + base.mul_f64(rand::random::<f64>() / 4.0)
    }
}

/// Resolves `addr` now and every 30 s, and starts streaming from every address it gives.
async fn resolve_loop(addr: String, settings: Arc<Settings>, tx: mpsc::Sender<Msg>) {
    let current: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let mut started: HashSet<SocketAddr> = HashSet::new();
    let mut backoff = Backoff::new();
    let mut failing = false;
    loop {
        let wait = match tokio::net::lookup_host(addr.as_str()).await {
            Ok(found) => {
                let found: HashSet<SocketAddr> = found.collect();
                if failing {
                    eprintln!("weir tail: {addr} resolves again");
                    failing = false;
                }
                backoff.reset();
                if let Ok(mut c) = current.lock() {
                    c.clone_from(&found);
                }
                for a in found {
                    if started.insert(a) {
                        tokio::spawn(instance_loop(
                            addr.clone(),
                            a,
                            Arc::clone(&current),
                            Arc::clone(&settings),
                            tx.clone(),
                        ));
                    }
                }
                Duration::from_secs(30)
            }
            Err(e) => {
                if !failing {
                    eprintln!("weir tail: cannot resolve {addr}: {e}; retrying");
                    failing = true;
                }
                backoff.step()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tx.closed() => return,
        }
    }
}

/// Streams from one address until `weir tail` ends, reconnecting with backoff.
async fn instance_loop(
    name: String,
    addr: SocketAddr,
    current: Arc<Mutex<HashSet<SocketAddr>>>,
    settings: Arc<Settings>,
    tx: mpsc::Sender<Msg>,
) {
    let label = if name.parse::<SocketAddr>().is_ok() {
        addr.to_string()
    } else {
        format!("{addr} ({name})")
    };
    let mut backoff = Backoff::new();
    let mut last_error = String::new();
    loop {
        match stream_once(&name, addr, &label, &settings, &tx).await {
            Ok(Ended::Done) => return,
            Ok(Ended::Reconnect(why)) => {
                eprintln!("weir tail: {label}: {why}; reconnecting");
                backoff.reset();
                last_error.clear();
            }
            Err(Failure::Fatal(message)) => {
                let _ = tx.send(Msg::Fatal(format!("{label}: {message}"))).await;
                return;
            }
            Err(Failure::Retry(message)) => {
                if message != last_error {
                    eprintln!("weir tail: {label}: {message}; retrying");
                    last_error = message;
                }
            }
        }
        if current.lock().map(|c| !c.contains(&addr)).unwrap_or(false) {
            eprintln!("weir tail: {label}: no longer in the DNS answer for {name}; stopped");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.step()) => {}
            _ = tx.closed() => return,
        }
    }
}

/// How a stream ended without an error.
enum Ended {
    /// Nothing more to do (the limit, or `weir tail` is ending).
    Done,
    /// The server ended it; try again.
    Reconnect(String),
}

enum Failure {
    Fatal(String),
    Retry(String),
}

async fn stream_once(
    name: &str,
    addr: SocketAddr,
    label: &str,
    settings: &Settings,
    tx: &mpsc::Sender<Msg>,
) -> Result<Ended, Failure> {
    let uri = format!("http://{addr}{TAIL_PATH}?{}", settings.query);
    let mut req = http::Request::get(uri).header(http::header::HOST, name);
    if let Some(t) = &settings.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::Fatal(format!("cannot build the request: {e}")))?;
    let resp = tokio::time::timeout(settings.idle, settings.client.request(req))
        .await
        .map_err(|_| Failure::Retry("no answer".into()))?
        .map_err(|e| Failure::Retry(error_chain(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        let message = match status.as_u16() {
            401 | 403 => {
                format!("{status}: {body} (give the admin token with --token or WEIR_ADMIN_TOKEN)")
            }
            404 => format!(
                "{status}: no live tail here (is this the port of a <source> @type monitor_agent?)"
            ),
            400..=499 => format!("{status}: {body}"),
            _ => return Err(Failure::Retry(format!("{status}: {body}"))),
        };
        return Err(Failure::Fatal(message));
    }
    eprintln!("weir tail: {label}: streaming");
    let mut body = resp.into_body();
    let mut pending = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(settings.idle, body.frame()).await {
            Err(_) => {
                return Ok(Ended::Reconnect(format!(
                    "nothing received for {} s",
                    settings.idle.as_secs()
                )))
            }
            Ok(None) => return Ok(Ended::Reconnect("the stream ended".into())),
            Ok(Some(Err(e))) => return Ok(Ended::Reconnect(error_chain(&e))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let Some(last) = pending.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        let whole = pending.split_to(last + 1).freeze();
        if let Some(end) = deliver(label, whole, tx).await {
            return Ok(end);
        }
    }
}

/// Sends the event lines of `whole` (complete lines) to the writer and handles the control
/// lines. Returns how the stream ended, if it did.
async fn deliver(label: &str, whole: Bytes, tx: &mpsc::Sender<Msg>) -> Option<Ended> {
    let mut run_start = 0;
    let mut run_lines = 0u64;
    let mut at = 0;
    while at < whole.len() {
        let end = whole[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(whole.len(), |i| at + i + 1);
        let line = &whole[at..end];
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let control = text.is_empty() || text.starts_with(CONTROL_PREFIX.as_bytes());
        if control {
            if run_lines > 0
                && tx
                    .send(Msg::Lines(whole.slice(run_start..at), run_lines))
                    .await
                    .is_err()
            {
                return Some(Ended::Done);
            }
            run_lines = 0;
            run_start = end;
            if let Some(ended) = control_line(label, text, tx).await {
                return Some(ended);
            }
        } else {
            run_lines += 1;
        }
        at = end;
    }
    if run_lines > 0
        && tx
            .send(Msg::Lines(whole.slice(run_start..), run_lines))
            .await
            .is_err()
    {
        return Some(Ended::Done);
    }
    None
}

async fn control_line(label: &str, text: &[u8], tx: &mpsc::Sender<Msg>) -> Option<Ended> {
    let Some(rest) = text.strip_prefix(CONTROL_PREFIX.as_bytes()) else {
        return None; // heartbeat
    };
    let rest = String::from_utf8_lossy(rest);
    // `N events dropped (slow reader)`, `N events skipped unexamined (server busy)`.
    if let Some(n) = rest
        .split_once(" events ")
        .and_then(|(n, _)| n.parse::<u64>().ok())
    {
        let said = rest.to_string();
        if tx
            .send(Msg::Lost(label.to_string(), n, said))
            .await
            .is_err()
        {
            return Some(Ended::Done);
        }
        return None;
    }
    if rest.starts_with("end (limit") {
        return Some(Ended::Done);
    }
    if let Some(why) = rest.strip_prefix("end (").and_then(|r| r.strip_suffix(')')) {
        return Some(Ended::Reconnect(why.to_string()));
    }
    eprintln!("weir tail: {label}: {rest}");
    None
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_cuts_after_the_nth_newline() {
        assert_eq!(first_lines(b"a\nb\nc\n", 2), b"a\nb\n");
        assert_eq!(first_lines(b"a\nb\n", 5), b"a\nb\n");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let first = b.step();
        assert!(first >= Backoff::FIRST && first <= Backoff::FIRST.mul_f64(1.25));
        for _ in 0..10 {
            b.step();
        }
        assert!(b.step() <= Backoff::MAX.mul_f64(1.25));
        b.reset();
        assert!(b.step() <= Backoff::FIRST.mul_f64(1.25));
    }

    #[tokio::test]
    async fn control_lines_go_to_the_writer_apart_from_events() {
        let (tx, mut rx) = mpsc::channel(16);
        let chunk = Bytes::from_static(
            b"a:1\nb:2\n\n# weir: 7 events dropped (slow reader)\nc:3\n# weir: 2 events skipped unexamined (server busy)\n# weir: end (server shutting down)\nd:4\n",
        );
        let ended = deliver("x", chunk, &tx).await;
        assert!(matches!(ended, Some(Ended::Reconnect(w)) if w == "server shutting down"));
        drop(tx);
        let mut got = Vec::new();
        while let Some(m) = rx.recv().await {
            got.push(match m {
                Msg::Lines(b, n) => format!("{n}:{}", String::from_utf8_lossy(&b)),
                Msg::Lost(i, n, said) => format!("lost {i} {n}: {said}"),
                Msg::Fatal(m) => m,
            });
        }
        assert_eq!(
            got,
            [
                "2:a:1\nb:2\n",
                "lost x 7: 7 events dropped (slow reader)",
                "1:c:3\n",
                "lost x 2: 2 events skipped unexamined (server busy)"
            ]
        );
    }
}
