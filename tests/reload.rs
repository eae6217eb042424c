//! Config reload end to end (SIGHUP and `POST /api/config.reload`) on a real weir: acked events
//! buffered before the reload are kept and delivered by the new config, the forward port stays
//! open through the reload (no connection is refused), a live-tail subscriber stays attached, a
//! new `<match>` takes effect, and a config with errors is refused with its file and line while
//! the old one keeps running.

mod admin_client;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use admin_client::{get, lines_under, post, wait_lines};
use serde_json::json;
use weir_e2e::{record, with_chunk, RawClient, Weir};
use weir_proto::{encode_forward, EventTime};

const V1: &str = r#"
<source>
  @type forward
  @id in_fwd
  bind 127.0.0.1
  port {port}
</source>
<source>
  @type monitor_agent
  port {port:admin}
</source>
<match app.**>
  @type file
  @id out_app
  path {dir}/{out}/${tag}
  append true
  <format>
    @type ltsv
  </format>
  <buffer tag>
    @type file
    path {dir}/buf
    flush_mode interval
    flush_interval 1h
  </buffer>
</match>
"#;

/// What V2 adds: a `<match>` for another tag, with its own buffer.
const EXTRA_MATCH: &str = r#"
<match extra.**>
  @type file
  @id out_extra
  path {dir}/extra/${tag}
  append true
  <format>
    @type ltsv
  </format>
  <buffer tag>
    @type file
    path {dir}/buf-extra
    flush_mode interval
    flush_interval 1h
  </buffer>
</match>
"#;

/// Starts weir on V1 writing to `out1`; returns it and its admin port.
fn start(name: &str) -> (Weir, u16) {
    let weir = Weir::start(name, &V1.replace("{out}", "out1"));
    let admin = weir.named_port("admin");
    (weir, admin)
}

/// Rewrites weir's config file: V1 writing to `out`, followed by `extra`, on the same ports.
fn rewrite(weir: &Weir, out: &str, extra: &str) {
    let dir = weir.dir.path().display().to_string();
    let text = weir
        .fill_ports(&format!("{V1}{extra}"))
        .replace("{out}", out)
        .replace("{dir}", &dir);
    weir.dir.write("weir.conf", text);
}

/// Sends `requests` acked Forward requests of 10 events each under `tag`, with ids
/// `{name}-{request}-{event}`; panics on a missing ack. Returns the ids.
fn send_acked(weir: &Weir, tag: &str, name: &str, requests: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut c = RawClient::connect(weir);
    for r in 0..requests {
        let batch: Vec<String> = (0..10).map(|i| format!("{name}-{r}-{i}")).collect();
        let records: Vec<Vec<u8>> = batch
            .iter()
            .map(|id| record(&format!(r#"{{"id":"{id}"}}"#)))
            .collect();
        let entries: Vec<(EventTime, &[u8])> = records
            .iter()
            .map(|r| (EventTime::new(1_700_000_000, 0), r.as_slice()))
            .collect();
        let chunk = format!("{name}{r}");
        c.send(&encode_forward(tag, &entries, &with_chunk(&chunk)));
        assert_eq!(
            c.ack().unwrap_or_else(|| panic!(
                "no ack for {chunk}; weir's log:\n{}",
                weir.stderr_lines().join("\n")
            )),
            chunk.as_bytes()
        );
        ids.extend(batch);
    }
    ids
}

/// How many times each id appears in the LTSV files under `dir`.
fn ids_in(lines: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for l in lines {
        if let Some(id) = l.split('\t').find_map(|f| f.strip_prefix("id:")) {
            *counts.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Connects to the forward port again and again until stopped; counts refused connections.
struct Prober {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u32, u32)>,
}

impl Prober {
    fn start(port: u16) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (mut tries, mut refused) = (0u32, 0u32);
            // Bounded: at most 20 000 connections, one every 5 ms.
            while !flag.load(Ordering::Relaxed) && tries < 20_000 {
                tries += 1;
                let addr = ([127, 0, 0, 1], port).into();
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused += 1,
                    _ => {}
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (tries, refused)
        });
        Prober { stop, handle }
    }

    /// (connections tried, connections refused).
    fn finish(self) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("prober thread")
    }
}

/// Reads from a live-tail stream into `seen` until it holds `needle`.
fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "the tail stream ended before {needle}: {}",
                String::from_utf8_lossy(seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "reading the tail stream: {e}; so far: {}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

/// Waits until weir has logged `needle` at least `n` times.
fn wait_log_count(weir: &Weir, needle: &str, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let c = weir
            .stderr_lines()
            .iter()
            .filter(|l| l.contains(needle))
            .count();
        if c >= n || std::time::Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGHUP with a changed output path and an added `<match>`: the acked events buffered before
/// the reload and those sent after it all reach the new path, once each; the new match works;
/// the forward port never refuses a connection.
#[test]
fn sighup_reload_keeps_buffered_events_and_the_port() {
    let (weir, admin) = start("reload-hup");
    let before = send_acked(&weir, "app.a", "a", 5);
    // A live-tail subscriber attached before the reload.
    let mut tail = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    tail.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    tail.write_all(
        format!("GET /api/tail?tag=app.b&format=ltsv HTTP/1.1\r\nHost: 127.0.0.1:{admin}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut seen = Vec::new();
    read_until(&mut tail, &mut seen, "200 OK");

    rewrite(&weir, "out2", EXTRA_MATCH);
    let prober = Prober::start(weir.port);
    weir.signal("HUP");
    assert_eq!(
        wait_log_count(&weir, "config reloaded", 1),
        1,
        "weir logs the reload; its log:\n{}",
        weir.stderr_lines().join("\n")
    );
    let (tries, refused) = prober.finish();
    assert!(tries > 0);
    assert_eq!(
        refused, 0,
        "the forward port stays open through the reload ({tries} connections tried)"
    );

    let after = send_acked(&weir, "app.b", "b", 5);
    read_until(&mut tail, &mut seen, "id:b-4-9");
    drop(tail);
    let extra = send_acked(&weir, "extra.x", "x", 2);
    let plugins = get(admin, "/api/plugins.json?@id=out_extra", None).json();
    assert_eq!(plugins["plugins"][0]["type"], "file", "{plugins}");

    let r = post(admin, "/api/plugins.flushBuffers", None);
    assert_eq!(r.status, 200);
    let dir = weir.dir.path();
    let out2 = ids_in(&wait_lines(&dir.join("out2"), before.len() + after.len()));
    for id in before.iter().chain(&after) {
        assert_eq!(
            out2.get(id),
            Some(&1),
            "{id} is delivered once to the new path"
        );
    }
    assert_eq!(out2.len(), before.len() + after.len());
    assert_eq!(
        ids_in(&wait_lines(&dir.join("extra"), extra.len())).len(),
        extra.len()
    );
    assert!(
        lines_under(&dir.join("out1")).is_empty(),
        "the old path gets nothing: the reload kept the buffer instead of flushing it"
    );
    let errors: Vec<String> = weir
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// `POST /api/config.reload` with errors in the file answers 500 naming the file and line, and
/// SIGHUP logs them; the old config keeps taking and delivering events. Then a good config
/// reloads over HTTP and nothing acked before is lost.
#[test]
fn config_errors_keep_the_old_config_running() {
    let (weir, admin) = start("reload-errors");
    let first = send_acked(&weir, "app.a", "a", 3);

    // An unknown output plugin: its @type is on the line after `<match bad.**>`.
    let bad = "\n<match bad.**>\n  @type nosuch_output\n</match>\n";
    rewrite(&weir, "out2", bad);
    let text = std::fs::read_to_string(weir.dir.path().join("weir.conf")).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("nosuch_output"))
        .unwrap()
        + 1;
    let at = format!("weir.conf:{line}");
    let r = post(admin, "/api/config.reload", None);
    assert_eq!(r.status, 500, "{}", r.body);
    let body = r.json();
    assert_eq!(body["ok"], json!(false));
    let errors: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&at) && e.contains("nosuch_output")),
        "the reply names {at}: {errors:?}"
    );
    assert!(
        weir.wait_log(&at, Duration::from_secs(10)).is_some(),
        "the log names {at}"
    );

    // A syntax error, by SIGHUP: logged with its place, old config still running.
    rewrite(&weir, "out2", "\n<match broken.**\n");
    weir.signal("HUP");
    assert_eq!(
        wait_log_count(&weir, "still running the previous config", 2),
        2
    );
    assert!(
        weir.stderr_lines()
            .iter()
            .any(|l| l.contains("config reload: ") && l.contains("weir.conf:")),
        "the syntax error is logged with its file and line:\n{}",
        weir.stderr_lines().join("\n")
    );
    let second = send_acked(&weir, "app.a", "s", 3);
    let metrics = get(admin, "/metrics", None).body;
    assert!(
        metrics.contains("weir_config_reload_failures_total 2\n"),
        "{metrics}"
    );

    // The old config is the one running: a flush writes to its path.
    assert_eq!(post(admin, "/api/plugins.flushBuffers", None).status, 200);
    let out1 = ids_in(&wait_lines(
        &weir.dir.path().join("out1"),
        first.len() + second.len(),
    ));
    assert_eq!(out1.len(), first.len() + second.len());

    // A good config reloads over HTTP.
    let third = send_acked(&weir, "app.a", "t", 3);
    rewrite(&weir, "out2", "");
    let r = post(admin, "/api/config.reload", None);
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    let fourth = send_acked(&weir, "app.a", "f", 3);
    assert_eq!(post(admin, "/api/plugins.flushBuffers", None).status, 200);
    let out2 = ids_in(&wait_lines(
        &weir.dir.path().join("out2"),
        third.len() + fourth.len(),
    ));
    for id in third.iter().chain(&fourth) {
        assert_eq!(out2.get(id), Some(&1), "{id}");
    }
    let metrics = get(admin, "/metrics", None).body;
    assert!(
        metrics.contains("weir_config_reloads_total 1\n"),
        "{metrics}"
    );
}
