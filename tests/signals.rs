//! The signals an operator (or Auto Scaling) sends a running weir, with the real process:
//! SIGUSR1 writes every buffer out now (like Fluentd), `weir flush --pid-file` does it by
//! signal, and SIGTERM stops accepting, flushes the buffers that say `flush_at_shutdown`, exits,
//! and keeps on disk what it did not deliver.
//!
//! The buffers here flush only once an hour, so anything that reaches the output files came
//! from the signal. How fast a flush is belongs to `make bench`, not to these tests.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_e2e::{run_with_timeout, send_json_acked, weir_bin, Weir};

/// Two buffered outputs (one per tag), both flushing once an hour.
const CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match sig.a>
  @type file
  path {dir}/out/a
  append true
  <format>
    @type ltsv
  </format>
  <buffer>
    @type file
    path {dir}/buffer-a
    flush_mode interval
    flush_interval 1h
    flush_at_shutdown FLUSH_AT_SHUTDOWN
  </buffer>
</match>
<match sig.b>
  @type file
  path {dir}/out/b
  append true
  <format>
    @type ltsv
  </format>
  <buffer>
    @type file
    path {dir}/buffer-b
    flush_mode interval
    flush_interval 1h
    flush_at_shutdown FLUSH_AT_SHUTDOWN
  </buffer>
</match>
"#;

const WAIT: Duration = Duration::from_secs(20);

/// Sends `n` events with ids `{prefix}{i}` to `tag` in one acked request.
fn send_acked(weir: &Weir, tag: &str, prefix: &str, n: usize) {
    let records: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":"{prefix}{i}"}}"#))
        .collect();
    let chunk = format!("{tag}-{prefix}");
    let ack = send_json_acked(weir, tag, &chunk, &records);
    assert_eq!(ack.as_deref(), Some(chunk.as_bytes()), "ack for {tag}");
}

/// The ids in the LTSV files whose names start with `stem` in `dir`.
fn ids_written(dir: &Path, stem: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return ids;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(stem) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("id:").map(str::to_string)),
        );
    }
    ids.sort();
    ids
}

fn expected(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    v.sort();
    v
}

/// Waits until `f` holds or `WAIT` passes.
fn eventually(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Chunk data files left in a buffer directory (each chunk also has a `.meta` sidecar;
/// `failed/` and `corrupt/` are directories).
fn chunks_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".meta"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigusr1_writes_every_buffer_out_now() {
    let weir = Weir::start("sig-usr1", &CONFIG.replace("FLUSH_AT_SHUTDOWN", "true"));
    let out = weir.dir.path().join("out");
    send_acked(&weir, "sig.a", "a", 50);
    send_acked(&weir, "sig.b", "b", 30);
    // Nothing is due for an hour.
    std::thread::sleep(Duration::from_millis(500));
    assert!(ids_written(&out, "a").is_empty() && ids_written(&out, "b").is_empty());

    weir.signal("USR1");
    assert!(
        eventually(|| ids_written(&out, "a") == expected("a", 50)
            && ids_written(&out, "b") == expected("b", 30)),
        "after SIGUSR1: a={:?} b={:?}",
        ids_written(&out, "a").len(),
        ids_written(&out, "b").len()
    );
    assert!(weir.wait_log("SIGUSR1", WAIT).is_some());

    // weir flush --pid-file sends the same signal.
    let pid_file = weir.dir.write("weir.pid", format!("{}\n", weir.pid()));
    send_acked(&weir, "sig.a", "c", 20);
    let (ok, _, err) = run_with_timeout(
        Command::new(weir_bin())
            .args(["flush", "--pid-file"])
            .arg(&pid_file),
        WAIT,
    );
    assert!(ok, "weir flush --pid-file: {err}");
    let mut want = expected("a", 50);
    want.extend(expected("c", 20));
    want.sort();
    assert!(
        eventually(|| ids_written(&out, "a") == want),
        "after weir flush --pid-file"
    );
}

#[test]
fn sigterm_flushes_what_flush_at_shutdown_asks_and_keeps_the_rest() {
    // flush_at_shutdown true: SIGTERM writes everything out, then weir exits 0.
    let mut weir = Weir::start(
        "sig-term-flush",
        &CONFIG.replace("FLUSH_AT_SHUTDOWN", "true"),
    );
    let out = weir.dir.path().join("out");
    send_acked(&weir, "sig.a", "a", 40);
    send_acked(&weir, "sig.b", "b", 10);
    weir.signal("TERM");
    let status = weir.wait_exit(WAIT).expect("weir exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_eq!(ids_written(&out, "a"), expected("a", 40));
    assert_eq!(ids_written(&out, "b"), expected("b", 10));

    // flush_at_shutdown false: SIGTERM keeps the events in the buffer; the next start
    // recovers them and SIGUSR1 delivers them.
    let mut weir = Weir::start(
        "sig-term-keep",
        &CONFIG.replace("FLUSH_AT_SHUTDOWN", "false"),
    );
    let out = weir.dir.path().join("out");
    send_acked(&weir, "sig.a", "k", 25);
    weir.signal("TERM");
    let status = weir.wait_exit(WAIT).expect("weir exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(ids_written(&out, "a").is_empty(), "nothing flushed");
    assert!(
        chunks_in(&weir.dir.path().join("buffer-a")) > 0,
        "the chunk stays on disk"
    );
    weir.respawn();
    weir.signal("USR1");
    assert!(
        eventually(|| ids_written(&out, "a") == expected("k", 25)),
        "recovered and delivered: {:?}",
        ids_written(&out, "a").len()
    );
}
