//! The local rehearsal of the deployment in `deploy/`: a forwarder with a primary and a standby
//! aggregator. Two real weir processes (forward input, durable file buffer, LTSV files) and
//! `weir cat --standby --ack` as the forwarder. The primary is killed with SIGKILL mid-stream,
//! the client moves to the standby, the primary is restarted and the client goes back to it;
//! after both flush, every acknowledged event is in the union of their files. Duplicates are
//! allowed only for the one request that was in flight, unacknowledged, when the primary died.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use weir_e2e::{refusing_port, weir_bin, Weir};

const CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match failover.**>
  @type file
  path {dir}/out/${tag}
  append true
  <format>
    @type ltsv
  </format>
  <buffer tag>
    @type file
    path {dir}/buffer
    flush_mode interval
    flush_interval 1h
  </buffer>
</match>
"#;

/// Events per request: the most that may be duplicated.
const BATCH: usize = 20;

/// A running `weir cat` whose standard error is collected line by line.
struct Cat {
    child: Child,
    stdin: Option<ChildStdin>,
    log: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Cat {
    fn start(args: &[String]) -> Cat {
        let mut child = Command::new(weir_bin())
            .arg("cat")
            .args(args)
            .env("WEIR_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting weir cat");
        let log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().expect("stderr pipe");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("WEIR_TEST_ECHO").is_some() {
                    eprintln!("[weir cat] {line}");
                }
                let (lines, changed) = &*sink;
                lines.lock().unwrap().push(line);
                changed.notify_all();
            }
        });
        let stdin = child.stdin.take();
        Cat { child, stdin, log }
    }

    /// Waits up to `timeout` for a log line containing every one of `needles`.
    fn wait_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lines, changed) = &*self.log;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    fn log_text(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// Closes standard input and waits for the exit; true on success.
    fn finish(&mut self, timeout: Duration) -> bool {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("weir cat did not exit; its log:\n{}", self.log_text());
    }
}

impl Drop for Cat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops weir with SIGTERM (which flushes every buffer) and returns the `n` of every event in
/// its output file, in file order.
fn flush_and_read(weir: &mut Weir) -> Vec<usize> {
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "weir did not stop cleanly: {status:?}\n{}",
        weir.stderr_lines().join("\n")
    );
    let path = weir.dir.path().join("out/failover.test.log");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(|l| {
            l.strip_prefix("n:")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line in {}: {l}", path.display()))
        })
        .collect()
}

/// True once weir's buffer holds a chunk with data, i.e. it has stored (and acked) a request.
fn has_buffered_data(weir: &Weir) -> bool {
    fn walk(dir: &std::path::Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                // free/ holds delivered chunk files kept for reuse, not data.
                e.file_name() != "free" && walk(&p)
            } else {
                p.extension().is_none_or(|x| x != "meta") && e.metadata().is_ok_and(|m| m.len() > 0)
            }
        })
    }
    walk(&weir.dir.path().join("buffer"))
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn primary_killed_mid_stream_standby_takes_over_and_primary_comes_back() {
    let mut primary = Weir::start("failover-primary", CONFIG);
    let mut standby = Weir::start("failover-standby", CONFIG);
    let primary_addr = format!("127.0.0.1:{}", primary.port);
    let standby_addr = format!("127.0.0.1:{}", standby.port);
    let mut cat = Cat::start(&[
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        primary.port.to_string(),
        "--standby".into(),
        standby_addr.clone(),
        "--ack".into(),
        "--batch".into(),
        BATCH.to_string(),
        "--recover-wait".into(),
        "0.5".into(),
        "--ack-timeout".into(),
        "10".into(),
        "failover.test".into(),
    ]);

    // The forwarder's input: numbered events, a few at a time, until told to stop.
    let written = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut stdin = cat.stdin.take().expect("stdin");
    let writer = {
        let (written, stop) = (Arc::clone(&written), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let mut lines = String::new();
                for _ in 0..5 {
                    lines.push_str(&format!("{{\"n\":{n}}}\n"));
                    n += 1;
                }
                if stdin.write_all(lines.as_bytes()).is_err() {
                    break;
                }
                written.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            drop(stdin);
            n
        })
    };
    let long = Duration::from_secs(30);
    let at_least = |n: usize| {
        let w = Arc::clone(&written);
        move || w.load(Ordering::SeqCst) >= n
    };

    // 1. The primary takes the stream and stores some of it.
    assert!(
        cat.wait_log(&["connected to", &primary_addr], long)
            .is_some(),
        "weir cat did not connect to the primary:\n{}",
        cat.log_text()
    );
    wait_until("the primary to store events", long, || {
        has_buffered_data(&primary)
    });
    wait_until("more input", long, at_least(300));

    // 2. kill -9 mid-stream: the client moves to the standby and resends the failed request.
    primary.kill9();
    let killed_at = written.load(Ordering::SeqCst);
    let switched = cat.wait_log(&["failed", &format!("sending to {standby_addr}")], long);
    assert!(
        switched.is_some(),
        "weir cat did not move to the standby:\n{}",
        cat.log_text()
    );
    wait_until(
        "input while on the standby",
        long,
        at_least(killed_at + 300),
    );

    // 3. The primary restarts (recovering its buffer); the client goes back to it.
    primary.respawn();
    let back = cat.wait_log(&["primary server", &primary_addr, "is back"], long);
    assert!(
        back.is_some(),
        "weir cat did not go back to the primary:\n{}",
        cat.log_text()
    );
    let back_at = written.load(Ordering::SeqCst);
    wait_until("input after the return", long, at_least(back_at + 300));

    // 4. End of input: weir cat exits 0 only when every request was acknowledged.
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().expect("the writer thread");
    assert!(
        cat.finish(Duration::from_secs(60)),
        "weir cat failed:\n{}",
        cat.log_text()
    );

    // 5. Flush both and compare.
    let from_primary = flush_and_read(&mut primary);
    let from_standby = flush_and_read(&mut standby);
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for n in from_primary.iter().chain(&from_standby) {
        *counts.entry(*n).or_default() += 1;
    }
    let missing: Vec<usize> = (0..total).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} acked events are in neither output, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        counts.keys().all(|n| *n < total),
        "an event that was never written"
    );
    let duplicated: BTreeSet<usize> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(
        duplicated.len() <= BATCH,
        "{} events were stored twice; only the request in flight at the kill (at most {BATCH} \
         events) may be: {duplicated:?}",
        duplicated.len()
    );
    assert!(
        from_primary.iter().any(|n| *n < killed_at),
        "the primary delivered nothing from before the kill (its acked buffer was lost?)"
    );
    assert!(!from_standby.is_empty(), "the standby received nothing");
    assert!(
        from_primary.iter().any(|n| *n >= back_at),
        "the primary received nothing after the client went back to it"
    );
}

#[test]
fn a_primary_that_never_acks_times_out_and_the_request_goes_to_the_standby() {
    // A "server" that accepts connections and reads requests but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("binding");
    let silent_port = silent.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    {
        let accepted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for conn in silent.incoming() {
                let Ok(mut conn) = conn else { break };
                accepted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut sink = [0u8; 4096];
                    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
    }
    let mut standby = Weir::start("failover-ack-timeout", CONFIG);
    let mut cat = Cat::start(&[
        "--port".into(),
        silent_port.to_string(),
        "--standby".into(),
        format!("127.0.0.1:{}", standby.port),
        "--ack".into(),
        "--ack-timeout".into(),
        "1".into(),
        "--recover-wait".into(),
        "3600".into(),
        "failover.test".into(),
    ]);
    let input: String = (0..50).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    cat.stdin
        .as_mut()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing to weir cat");
    assert!(
        cat.finish(Duration::from_secs(60)),
        "weir cat failed:\n{}",
        cat.log_text()
    );
    assert!(
        cat.wait_log(&["no ack within"], Duration::ZERO).is_some(),
        "the switch should be caused by the ack timeout:\n{}",
        cat.log_text()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let got: BTreeSet<usize> = flush_and_read(&mut standby).into_iter().collect();
    assert_eq!(got, (0..50).collect::<BTreeSet<usize>>());
}

#[test]
fn a_primary_that_is_down_from_the_start_sends_everything_to_the_standby() {
    let mut standby = Weir::start("failover-down", CONFIG);
    let (_held, down) = refusing_port();
    let mut cat = Cat::start(&[
        "--port".into(),
        down.to_string(),
        "--standby".into(),
        format!("127.0.0.1:{}", standby.port),
        "--ack".into(),
        "failover.test".into(),
    ]);
    cat.stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"{\"n\":0}\n{\"n\":1}\n")
        .expect("writing to weir cat");
    assert!(cat.finish(Duration::from_secs(30)), "{}", cat.log_text());
    assert_eq!(flush_and_read(&mut standby), vec![0, 1]);
}

#[test]
fn when_every_server_is_down_weir_cat_fails_and_says_so() {
    let ((_held_a, a), (_held_b, b)) = (refusing_port(), refusing_port());
    let mut cat = Cat::start(&[
        "--port".into(),
        a.to_string(),
        "--standby".into(),
        format!("127.0.0.1:{b}"),
        "--ack".into(),
        "failover.test".into(),
    ]);
    assert!(!cat.finish(Duration::from_secs(30)));
    let log = cat.log_text();
    assert!(
        log.contains("every server failed in turn") && log.contains(&format!("127.0.0.1:{b}")),
        "{log}"
    );
    // Without a standby the error is the connection's own, as before.
    let mut cat = Cat::start(&["--port".into(), a.to_string(), "failover.test".into()]);
    assert!(!cat.finish(Duration::from_secs(30)));
    let log = cat.log_text();
    assert!(
        log.contains(&format!("connecting to 127.0.0.1:{a}")) && !log.contains("every server"),
        "{log}"
    );
}
