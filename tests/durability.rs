//! Ack means durable, checked with the real process: forwarders send events with acks over
//! several connections, weir is killed with SIGKILL at random moments, restarted, and in the
//! end every event that was acknowledged is in the output files. Events whose requests were
//! never acknowledged may or may not be there (the forwarder would send them again).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir_e2e::{record, with_chunk, RawClient, Weir};
use weir_proto::{encode_forward, EventTime};

const CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match crash.**>
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

/// One forwarder connection: sends batches of 20 events with acks until told to stop or the
/// connection breaks, and records the ids of every event whose batch was acked.
fn forwarder(
    weir_port: u16,
    conn: usize,
    round: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<String>>>,
) {
    let Some(mut c) = RawClient::connect_port(weir_port) else {
        return;
    };
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..20)
            .map(|i| format!("r{round}c{conn}s{}", seq + i))
            .collect();
        let records: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| record(&format!(r#"{{"id":"{id}"}}"#)))
            .collect();
        let entries: Vec<(EventTime, &[u8])> = records
            .iter()
            .map(|r| (EventTime::new(1_700_000_000, 0), r.as_slice()))
            .collect();
        let chunk = format!("r{round}c{conn}b{seq}");
        if !c.try_send(&encode_forward("crash.test", &entries, &with_chunk(&chunk))) {
            return;
        }
        match c.try_ack() {
            Some(a) if a == chunk.as_bytes() => {
                acked.lock().unwrap().extend(ids);
            }
            _ => return,
        }
        seq += 20;
    }
}

#[test]
fn acked_events_survive_kill_9_and_restarts() {
    let mut weir = Weir::start("crash", CONFIG);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    // A fixed sequence of kill delays stands in for randomness, so a failure can be replayed.
    for (round, delay_ms) in [350u64, 120, 600, 240].into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|conn| {
                let (stop, acked, port) = (Arc::clone(&stop), Arc::clone(&acked), weir.port);
                std::thread::spawn(move || forwarder(port, conn, round, stop, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(delay_ms));
        weir.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        weir.respawn();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the test should ack a fair number of events: {}",
        acked.len()
    );

    // Deliver everything: SIGTERM flushes the buffers at shutdown.
    weir.signal("TERM");
    assert!(weir
        .wait_exit(Duration::from_secs(60))
        .is_some_and(|s| s.success()));
    let out = std::fs::read_to_string(weir.dir.path().join("out/crash.test.log"))
        .expect("the output file exists");
    let delivered: HashSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !delivered.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked events were lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

const NULL_CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match keep.**>
  @type null
  never_flush true
  <buffer>
    @type file
    path {dir}/null-buffer
    flush_mode immediate
    retry_wait 30s
  </buffer>
</match>
"#;

/// Chunk data files in a buffer directory.
fn chunk_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .count()
        })
        .unwrap_or(0)
}

/// Fluentd's out_null with a `<buffer>`: events go through the buffer; `never_flush` keeps
/// every chunk (delivery fails and is retried), the chunks survive SIGKILL, and once
/// `never_flush` is gone the recovered chunks are delivered (discarded) and removed.
#[test]
fn buffered_null_output_with_never_flush_keeps_chunks_until_it_is_lifted() {
    let mut weir = Weir::start("null-never-flush", NULL_CONFIG);
    let records = ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"];
    assert_eq!(
        weir_e2e::send_json_acked(&weir, "keep.a", "c1", &records).expect("an ack"),
        "c1"
    );
    assert!(
        weir.wait_log("never_flush is set", Duration::from_secs(20))
            .is_some(),
        "no failed delivery logged:\n{}",
        weir.stderr_lines().join("\n")
    );
    let buffer = weir.dir.path().join("null-buffer");
    assert_eq!(chunk_files(&buffer), 1);
    weir.kill9();
    let config = NULL_CONFIG
        .replace("never_flush true", "never_flush false")
        .replace("{port}", &weir.port.to_string())
        .replace("{dir}", &weir.dir.path().display().to_string());
    weir.dir.write("weir.conf", config);
    weir.respawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while chunk_files(&buffer) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        chunk_files(&buffer),
        0,
        "recovered chunk not delivered:\n{}",
        weir.stderr_lines().join("\n")
    );
}

/// The scheduling policy of the thread of `pid` named `name` (from `/proc`: 0 normal, 1
/// `SCHED_FIFO`), if there is one.
fn thread_policy(pid: u32, name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        // Fields after the command name (in parentheses), from field 3 on; the policy is 41.
        let rest = &stat[stat.rfind(')')? + 1..];
        return rest.split_whitespace().nth(41 - 3)?.parse().ok();
    }
    None
}

#[test]
fn commit_threads_run_real_time_where_the_system_allows_it() {
    // Whether this test may use real-time scheduling (root, CAP_SYS_NICE or RLIMIT_RTPRIO),
    // asked of the system itself.
    let allowed = std::process::Command::new("chrt")
        .args(["-f", "1", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    for (setting, real_time) in [("", allowed), ("commit_priority normal", false)] {
        let config = CONFIG.replace(
            "flush_interval 1h",
            &format!("flush_interval 1h\n    {setting}"),
        );
        let weir = Weir::start("commit-priority", &config);
        // An acked request has been through the commit thread, which sets its scheduling
        // before it takes its first commit.
        assert!(
            weir_e2e::send_json_acked(&weir, "crash.prio", "c1", &[r#"{"n":1}"#]).is_some(),
            "no ack"
        );
        let policy = thread_policy(weir.pid(), "weir-commit-0").expect("a commit thread");
        assert_eq!(
            policy,
            u32::from(real_time),
            "setting {setting:?}, real-time scheduling allowed: {allowed}"
        );
        let said = weir
            .stderr_lines()
            .iter()
            .any(|l| l.contains("commit threads run at normal priority"));
        assert_eq!(
            said,
            setting.is_empty() && !allowed,
            "{:?}",
            weir.stderr_lines()
        );
    }
}
