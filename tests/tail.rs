//! The live tail end to end: real weir processes with `<source> @type monitor_agent`, events
//! sent by the real Python and Node clients (and hand-made acked requests), read by the real
//! `weir tail` client.
//!
//! * Two instances at once, filtered on the servers by tag and `--grep`: `weir tail` prints
//!   exactly the matching events of both and stops at `--limit`.
//! * A subscriber that reads nothing for a while loses events and is told how many, while the
//!   sender still gets every ack: what it printed plus what it was told it lost (dropped for a
//!   slow reader, or skipped unexamined when the server's idle CPU did not suffice) is
//!   everything sent.
//! * A config reload (SIGHUP) keeps the subscribers; on SIGTERM the stream ends cleanly (the
//!   chunked response is terminated, weir exits), and `weir tail` connects again once the
//!   instance is back.
//! * The access token: without it, `weir tail` stops with the server's 401.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use weir_e2e::{node, python, record, run_with_timeout, weir_bin, with_chunk, RawClient, Weir};
use weir_proto::{encode_forward, EventTime};

const TOKEN: &str = "tail-test-token";

/// A forward source, the admin endpoint on `{port:admin}` with a token, and every event dropped.
const CONFIG: &str = r#"
<source>
  @type forward
  @id in_fwd
  bind 127.0.0.1
  port {port}
</source>
<source>
  @type monitor_agent
  @id monitor
  bind 127.0.0.1
  port {port:admin}
  token tail-test-token
</source>
<match **>
  @type null
</match>
"#;

/// A weir instance and the port of its admin endpoint.
fn start(name: &str) -> (Weir, u16) {
    let weir = Weir::start(name, CONFIG);
    let admin = weir.named_port("admin");
    (weir, admin)
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Lines read from a pipe by a thread.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<String>>>);

impl Collected {
    fn read_from(pipe: impl Read + Send + 'static) -> Collected {
        let c = Collected::default();
        let lines = Arc::clone(&c.0);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            }
        });
        c
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits up to `timeout` for `done` to hold; returns the lines either way.
    fn wait(&self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.snapshot();
            if done(&lines) || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `weir tail`, killed when dropped.
struct Tail {
    child: Child,
    stdout: Option<Collected>,
    stderr: Collected,
}

impl Tail {
    /// Starts `weir tail` with `args`. With `read_stdout` false, nothing reads its standard
    /// output until [`Tail::read_stdout`]: the pipe fills and the tail becomes a slow reader.
    fn start(args: &[String], read_stdout: bool) -> Tail {
        let mut child = Command::new(weir_bin())
            .arg("tail")
            .args(args)
            .env_remove("WEIR_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weir tail");
        let stderr = Collected::read_from(child.stderr.take().expect("stderr"));
        let mut tail = Tail {
            child,
            stdout: None,
            stderr,
        };
        if read_stdout {
            tail.read_stdout();
        }
        tail
    }

    fn read_stdout(&mut self) -> Collected {
        if self.stdout.is_none() {
            if let Some(out) = self.child.stdout.take() {
                self.stdout = Some(Collected::read_from(out));
            }
        }
        self.stdout.clone().unwrap_or_default()
    }

    /// Waits until the tail has said `streaming` for `n` connections in all.
    fn wait_streaming(&self, n: usize) {
        let lines = self.stderr.wait(Duration::from_secs(30), |l| {
            l.iter().filter(|x| x.ends_with(": streaming")).count() >= n
        });
        assert!(
            lines.iter().filter(|x| x.ends_with(": streaming")).count() >= n,
            "weir tail did not connect {n} time(s):\n{}",
            lines.join("\n")
        );
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Events for the clients' specs: `n` events labelled `label`, every third at level error.
fn events(instance: &str, label: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let level = if i % 3 == 0 { "error" } else { "info" };
            json!({"label": label, "sec": 1_700_000_000u32 + i as u32, "nsec": 5,
                   "record": {"id": format!("{instance}-{label}-{i}"), "level": level,
                              "msg": format!("event {i}")}})
        })
        .collect()
}

fn python_send(weir: &Weir, tag_prefix: &str, events: &[Value]) {
    let spec = json!({"host": "127.0.0.1", "port": weir.port, "tag_prefix": tag_prefix,
                      "nanosecond": true, "events": events});
    let script = weir_e2e::root().join("tests/clients/py_send.py");
    let (ok, out, err) = run_with_timeout(
        Command::new(python()).arg(script).arg(spec.to_string()),
        Duration::from_secs(60),
    );
    assert!(ok, "python client failed:\n{out}\n{err}");
}

fn node_send(weir: &Weir, tag_prefix: &str, events: &[Value]) {
    let spec = json!({"library": "@fluent-org/logger", "host": "127.0.0.1", "port": weir.port,
                      "mode": "PackedForward", "ack": true, "tls": null, "security": null,
                      "tagPrefix": tag_prefix, "events": events});
    let script = weir_e2e::root().join("tests/clients/node_send.js");
    let (ok, out, err) = run_with_timeout(
        Command::new(node()).arg(script).arg(spec.to_string()),
        Duration::from_secs(60),
    );
    assert!(ok, "node client failed:\n{out}\n{err}");
}

/// The ids of the events in `sent` that `--tag 'blog.**' --grep level=error` keeps.
fn expected_ids(tag_prefix: &str, sent: &[Value]) -> Vec<String> {
    if tag_prefix != "blog" {
        return Vec::new();
    }
    sent.iter()
        .filter(|e| e["record"]["level"] == "error")
        .map(|e| e["record"]["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn tail_two_instances_filtered_on_the_servers() {
    let (a, admin_a) = start("tail-two-a");
    let (b, admin_b) = start("tail-two-b");
    let a_blog = events("a", "web", 12);
    let a_app = events("a", "web", 6);
    let b_blog = events("b", "api.v1", 9);
    let b_app = events("b", "db", 6);
    let mut expected: Vec<String> = expected_ids("blog", &a_blog);
    expected.extend(expected_ids("blog", &b_blog));
    expected.sort();
    assert_eq!(expected.len(), 7);

    // Instance A is named `localhost`: every address the name resolves to is tried (an IPv6
    // one, if any, is refused and retried; 127.0.0.1 streams).
    let mut tail = Tail::start(
        &[
            "--addr".into(),
            format!("localhost:{admin_a}"),
            "--addr".into(),
            format!("127.0.0.1:{admin_b}"),
            "--grep".into(),
            "level=error".into(),
            "--tag".into(),
            "blog.**".into(),
            "--format".into(),
            "json".into(),
            "--limit".into(),
            expected.len().to_string(),
            "--token".into(),
            TOKEN.into(),
        ],
        true,
    );
    tail.wait_streaming(2);

    python_send(&a, "app", &a_app);
    python_send(&a, "blog", &a_blog);
    node_send(&b, "app", &b_app);
    node_send(&b, "blog", &b_blog);

    let status = tail.wait_exit(Duration::from_secs(60));
    let stderr = tail.stderr.snapshot().join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "weir tail did not stop at its limit ({status:?}):\n{stderr}"
    );
    let lines = tail
        .read_stdout()
        .wait(Duration::from_secs(10), |l| l.len() >= expected.len());
    let mut got = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stderr}"));
        assert_eq!(v["level"], "error", "{line}");
        let tag = v["tag"].as_str().unwrap_or_default();
        assert!(tag == "blog.web" || tag == "blog.api.v1", "{line}");
        assert!(
            v["time"]
                .as_str()
                .is_some_and(|t| t.starts_with("2023-11-")),
            "{line}"
        );
        got.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    got.sort();
    assert_eq!(got, expected, "weir tail's stderr:\n{stderr}");
}

/// Sends `requests` Forward requests of `per` events (about 1 KiB each) under `tag`, each
/// asking for an ack; returns how many were acked.
fn send_acked(weir: &Weir, tag: &str, requests: usize, per: usize) -> usize {
    let pad = "x".repeat(1000);
    let mut client = RawClient::connect(weir);
    let mut acked = 0;
    for r in 0..requests {
        let records: Vec<Vec<u8>> = (0..per)
            .map(|i| record(&format!(r#"{{"id":"{r}-{i}","pad":"{pad}"}}"#)))
            .collect();
        let entries: Vec<(EventTime, &[u8])> = records
            .iter()
            .map(|rec| (EventTime::new(1_700_000_000, 0), rec.as_slice()))
            .collect();
        let chunk = format!("chunk-{r}");
        client.send(&encode_forward(tag, &entries, &with_chunk(&chunk)));
        if client.ack().is_some_and(|a| a == chunk.as_bytes()) {
            acked += 1;
        }
        // Leave the filter thread (which runs only on idle CPU) time to keep up, so that
        // the reader's own queue is what overflows, most of the time.
        std::thread::sleep(Duration::from_millis(5));
    }
    acked
}

/// The events `weir tail` said it lost: dropped for a slow reader, or skipped unexamined
/// while the server was too busy.
fn lost(stderr: &[String]) -> u64 {
    stderr
        .iter()
        .filter(|l| l.ends_with(" (slow reader)") || l.ends_with(" (server busy)"))
        .filter_map(|l| {
            l.rsplit_once(" events ")
                .and_then(|(head, _)| head.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

#[test]
fn a_slow_subscriber_loses_events_and_is_told_while_ingest_gets_every_ack() {
    let (weir, admin) = start("tail-slow");
    // Nothing reads this tail's output for now: the pipe, the sockets and its queue on the
    // server fill up.
    let mut tail = Tail::start(
        &[
            "--addr".into(),
            format!("127.0.0.1:{admin}"),
            "--tag".into(),
            "load".into(),
            "--format".into(),
            "out_file".into(),
            "--token".into(),
            TOKEN.into(),
        ],
        false,
    );
    tail.wait_streaming(1);
    // 100 000 events of about 1 KiB: far more than the 8 MiB queue and every buffer on the way.
    let (requests, per) = (200, 500);
    let acked = send_acked(&weir, "load", requests, per);
    assert_eq!(
        acked, requests,
        "every request is acked while the tail lags"
    );

    // Now read: what arrives plus what the tail was told it lost is everything sent.
    let total = (requests * per) as u64;
    let stdout = tail.read_stdout();
    let done = || stdout.snapshot().len() as u64 + lost(&tail.stderr.snapshot()) >= total;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = stdout.snapshot();
    let stderr = tail.stderr.snapshot();
    let lost = lost(&stderr);
    assert!(
        lost > 0,
        "a reader that lagged this far must lose events:\n{}",
        stderr.join("\n")
    );
    assert_eq!(
        lines.len() as u64 + lost,
        total,
        "printed {} + lost {lost} != sent {total}; weir tail's stderr:\n{}",
        lines.len(),
        stderr.join("\n")
    );
    for line in lines.iter().take(3) {
        let parts: Vec<&str> = line.splitn(3, '\t').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[0], "2023-11-14T22:13:20+00:00", "{line}");
        assert_eq!(parts[1], "load", "{line}");
        assert!(parts[2].starts_with(r#"{"id":""#), "{line}");
    }
    // The server says so too, in its log and in its metrics.
    assert!(
        weir.wait_log("tail subscriber attached", Duration::from_secs(1))
            .is_some(),
        "{}",
        weir.stderr_lines().join("\n")
    );
    let metrics = get_metrics(admin);
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{metrics}")) as u64
    };
    assert_eq!(
        metric("weir_tail_dropped_events_total ") + metric("weir_tail_skipped_events_total "),
        lost,
        "{metrics}"
    );
    assert_eq!(metric("weir_tail_sent_events_total "), lines.len() as u64);
    assert_eq!(metric("weir_tail_subscribers "), 1);
}

/// The admin endpoint's `/metrics` page.
fn get_metrics(admin: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_to_close(&mut s)
}

/// Reads a raw HTTP response until the connection closes.
fn read_to_close(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn the_stream_ends_cleanly_on_shutdown_and_the_tail_comes_back() {
    let (mut weir, admin) = start("tail-shutdown");
    let mut tail = Tail::start(
        &[
            "--addr".into(),
            format!("127.0.0.1:{admin}"),
            "--token".into(),
            TOKEN.into(),
        ],
        true,
    );
    tail.wait_streaming(1);
    // A plain HTTP/1.1 client beside it, to see the end of the chunked response itself.
    let mut raw = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    write!(
        raw,
        "GET /api/tail?tag=** HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    assert!(weir
        .wait_log("tail subscriber attached", Duration::from_secs(10))
        .is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    while weir
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("tail subscriber attached"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the raw subscriber did not attach"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A config reload keeps the subscribers: the tail goes on without reconnecting.
    weir.signal("HUP");
    assert!(
        weir.wait_log("config reloaded", Duration::from_secs(30))
            .is_some(),
        "{}",
        weir.stderr_lines().join("\n")
    );
    python_send(&weir, "reloaded", &events("r", "x", 1));
    let lines = tail
        .read_stdout()
        .wait(Duration::from_secs(30), |l| !l.is_empty());
    assert!(
        lines.len() == 1 && lines[0].contains("id:r-x-0"),
        "{lines:?}\n{}",
        tail.stderr.snapshot().join("\n")
    );

    weir.signal("TERM");
    let response = read_to_close(&mut raw);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("# weir: end (server shutting down)\n")
            && response.ends_with("\r\n0\r\n\r\n"),
        "the chunked response ends with its last chunk:\n{response}"
    );
    let status = weir.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "weir exits: {status:?}"
    );
    let said = tail.stderr.wait(Duration::from_secs(10), |l| {
        l.iter()
            .any(|x| x.contains("server shutting down; reconnecting"))
    });
    assert!(
        said.iter()
            .any(|x| x.contains("server shutting down; reconnecting")),
        "{}",
        said.join("\n")
    );

    // Back on the same ports: the tail connects again and shows new events.
    weir.respawn();
    wait_for_port(admin);
    tail.wait_streaming(2);
    python_send(&weir, "again", &events("c", "x", 2));
    let lines = tail
        .read_stdout()
        .wait(Duration::from_secs(30), |l| l.len() >= 3);
    assert_eq!(lines.len(), 3, "{}", tail.stderr.snapshot().join("\n"));
    assert!(
        lines[1].contains("id:c-x-0") && lines[1].contains("tag:again.x"),
        "{lines:?}"
    );
}

#[test]
fn without_the_token_the_tail_stops_with_the_servers_answer() {
    let (_weir, admin) = start("tail-token");
    let mut tail = Tail::start(&["--addr".into(), format!("127.0.0.1:{admin}")], true);
    let status = tail.wait_exit(Duration::from_secs(30));
    let stderr = tail.stderr.snapshot().join("\n");
    assert!(status.is_some_and(|s| !s.success()), "{status:?}\n{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
}
