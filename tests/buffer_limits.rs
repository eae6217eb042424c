//! What weir does when it cannot take more data, checked with the real process: a full disk
//! under the file buffer, and each `overflow_action` when an output that cannot deliver lets
//! the buffer reach `total_limit_size`.
//!
//! The promise under test: an ack leaves only once the events are stored; when weir cannot
//! store them it sends no ack (closing the connection, with a log line that says why, or for
//! `overflow_action block` holding the ack back), it keeps serving heartbeats and other
//! connections, its memory stays bounded, and every acknowledged event is delivered in the end.
//!
//! The output is made undeliverable by putting its path under a regular file: creating the
//! directory then fails with ENOTDIR, a retryable error (permissions would not do, as the tests
//! may run as root). Removing the file makes the output work again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use weir_e2e::{record, with_chunk, RawClient, Scratch, TmpfsMount, Weir};
use weir_proto::{encode_forward, parse_ack, EventTime, FrameDecoder, FrameLimits};

const TAG: &str = "limits.test";

/// Most memory weir may use while it refuses or holds back data.
const RSS_CAP_KIB: u64 = 100 * 1024;

/// One forward request: `n` events with unique ids and some padding, asking for an ack.
struct Batch {
    chunk: String,
    ids: Vec<String>,
    bytes: Vec<u8>,
}

fn batch(name: &str, n: usize, pad: usize) -> Batch {
    let ids: Vec<String> = (0..n).map(|i| format!("{name}e{i}")).collect();
    let padding = "x".repeat(pad);
    let records: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| record(&format!(r#"{{"id":"{id}","pad":"{padding}"}}"#)))
        .collect();
    let entries: Vec<(EventTime, &[u8])> = records
        .iter()
        .map(|r| (EventTime::new(1_700_000_000, 0), r.as_slice()))
        .collect();
    let chunk = format!("{name}-chunk");
    let bytes = encode_forward(TAG, &entries, &with_chunk(&chunk));
    Batch { chunk, ids, bytes }
}

/// What became of one request sent with [`send_and_wait`].
#[derive(Debug, PartialEq)]
enum Answer {
    Acked,
    /// The connection was closed (or reset) without an ack.
    Closed,
    /// Nothing came back within the read timeout, and the connection is still open.
    Silent,
}

/// Sends a batch and waits for its ack. A [`RawClient`] read that fails is either a close or
/// a timeout; a second, short read tells them apart.
fn send_and_wait(c: &mut RawClient, b: &Batch) -> Answer {
    if !c.try_send(&b.bytes) {
        return Answer::Closed;
    }
    match c.try_ack() {
        Some(a) => {
            assert_eq!(a, b.chunk.as_bytes(), "acks come in request order");
            Answer::Acked
        }
        None => {
            if c.closed_within(Duration::from_millis(500)) {
                Answer::Closed
            } else {
                Answer::Silent
            }
        }
    }
}

/// Sends a UDP heartbeat and expects the one zero byte back.
fn assert_heartbeat(weir: &Weir) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&[0u8], weir.addr()).unwrap();
    let mut buf = [0xffu8; 8];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("weir answers UDP heartbeats while it refuses data");
    assert_eq!(
        (n, buf[0]),
        (1, 0),
        "a heartbeat is answered with one zero byte"
    );
}

/// Opens a new TCP connection and sends a keep-alive (`nil`): weir must accept the connection
/// and keep it open.
fn assert_accepts_connections(weir: &Weir) {
    let mut s = TcpStream::connect_timeout(&weir.addr(), Duration::from_secs(5))
        .expect("weir accepts TCP connections while it refuses data");
    s.write_all(&[0xc0]).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("an idle connection should stay open and silent, got {other:?}"),
    }
}

/// weir's resident memory, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// How many times each event id appears in the files under `dir` (ltsv lines with an `id`
/// field; the file output's hidden marker files are skipped).
fn delivered(dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            for line in text.lines() {
                if let Some(id) = line.split('\t').find_map(|f| f.strip_prefix("id:")) {
                    *counts.entry(id.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

/// Checks that every id in `acked` was delivered, exactly once unless its batch was also sent
/// and refused at some point (the forwarder's resend may then duplicate it).
fn assert_delivered(
    out: &HashMap<String, usize>,
    acked: &HashSet<String>,
    resent: &HashSet<String>,
) {
    let missing: Vec<&String> = acked.iter().filter(|id| !out.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked events were not delivered, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let doubled: Vec<(&String, &usize)> = out
        .iter()
        .filter(|(id, n)| **n > 1 && acked.contains(*id) && !resent.contains(*id))
        .collect();
    assert!(
        doubled.is_empty(),
        "events acked on their only try were delivered more than once: {:?}",
        &doubled[..doubled.len().min(5)]
    );
}

/// Sends SIGTERM (flush_at_shutdown is on by default) and waits for a clean exit.
fn stop(weir: &mut Weir) {
    weir.signal("TERM");
    let status = weir.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "weir should exit cleanly after SIGTERM: {status:?}; its warnings:\n{}",
        weir.warnings().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Disk full
// ---------------------------------------------------------------------------------------------

const DISK_FULL_CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match limits.**>
  @type file
  path {out}/${tag}
  append true
  <format>
    @type ltsv
  </format>
  <buffer tag>
    @type file
    path {tmpfs}/buf
    flush_mode interval
    flush_interval 1h
    {extra}
  </buffer>
</match>
"#;

/// One staged chunk grows until the disk is full; the output is fine.
#[test]
fn disk_full_refuses_without_ack_and_resumes_when_space_returns() {
    disk_full_case("bl-disk-full", false);
}

/// Small chunks are sealed and new ones created (sidecar, rename, directory fsync) while the
/// disk fills, and the output cannot deliver, so queued chunks stay on the tmpfs too.
#[test]
fn disk_full_with_rotating_chunks_and_a_stuck_output() {
    disk_full_case("bl-disk-full-rotate", true);
}

fn disk_full_case(name: &str, rotate: bool) {
    // Declared first, dropped last: the mount point outlives the mount, which outlives weir.
    let mount_root = Scratch::new(&format!("{name}-tmpfs"));
    let fs_dir = mount_root.path().join("fs");
    let Some(_mount) = TmpfsMount::mount_or_skip(&fs_dir, "2m") else {
        return;
    };
    // Most of the 2 MiB is taken by a filler, so the buffer runs out of space quickly.
    let filler = fs_dir.join("filler");
    std::fs::write(&filler, vec![0u8; 1536 * 1024]).unwrap();

    let blocked = Blocked::new(&format!("{name}-out"));
    if !rotate {
        blocked.unblock();
    }
    let (extra, retry) = if rotate {
        ("chunk_limit_size 32k", "retry_type periodic")
    } else {
        ("", "")
    };
    let config = DISK_FULL_CONFIG
        .replace("{tmpfs}", &fs_dir.display().to_string())
        .replace("{out}", &blocked.out().display().to_string())
        .replace("{extra}", &format!("{extra}\n    {retry}"));
    let mut weir = Weir::start(name, &config);
    let mut acked: HashSet<String> = HashSet::new();
    let mut resent: HashSet<String> = HashSet::new();

    // Acked batches until one is refused. About 500 KiB are free and a batch is about 3 KiB.
    let mut c = RawClient::connect(&weir);
    let mut refused = None;
    for i in 0..2000 {
        let b = batch(&format!("full{i}"), 20, 120);
        match send_and_wait(&mut c, &b) {
            Answer::Acked => acked.extend(b.ids.iter().cloned()),
            Answer::Closed => {
                refused = Some(b);
                break;
            }
            Answer::Silent => panic!(
                "batch {i}: no ack and no close within 10 s on a full disk; weir's log:\n{}",
                weir.stderr_lines().join("\n")
            ),
        }
    }
    let refused = refused.expect("2000 batches (6 MB) cannot fit on a 2 MiB tmpfs");
    assert!(
        acked.len() > 100,
        "some batches should be acked before the disk is full: {}",
        acked.len()
    );
    let line = weir
        .wait_log("no ack sent", Duration::from_secs(10))
        .expect("weir logs the refusal");
    eprintln!("disk full after {} acked events: {line}", acked.len());
    let lower = line.to_lowercase();
    assert!(
        lower.contains("disk full") || lower.contains("no space"),
        "the refusal should say the disk is full: {line}"
    );

    // Still alive and serving while the disk is full, and still refusing what does not fit.
    assert_heartbeat(&weir);
    assert_accepts_connections(&weir);
    let mut c = RawClient::connect(&weir);
    assert_eq!(
        send_and_wait(&mut c, &refused),
        Answer::Closed,
        "while the disk is still full the same request is refused again"
    );

    // Space returns: weir takes data again without a restart. The refused batch is sent again,
    // as a forwarder would.
    std::fs::remove_file(&filler).unwrap();
    let mut c = RawClient::connect(&weir);
    resent.extend(refused.ids.iter().cloned());
    assert_eq!(
        send_and_wait(&mut c, &refused),
        Answer::Acked,
        "the refused batch is acked once there is space"
    );
    acked.extend(refused.ids.iter().cloned());
    for i in 0..20 {
        let b = batch(&format!("after{i}"), 20, 120);
        assert_eq!(
            send_and_wait(&mut c, &b),
            Answer::Acked,
            "batch {i} after space returned; weir's warnings:\n{}",
            weir.warnings().join("\n")
        );
        acked.extend(b.ids.iter().cloned());
    }
    drop(c);

    if rotate {
        blocked.unblock();
    }
    stop(&mut weir);
    let out = delivered(&blocked.out());
    assert_delivered(&out, &acked, &resent);
}

// ---------------------------------------------------------------------------------------------
// Overflow actions
// ---------------------------------------------------------------------------------------------

/// Chunks of 16k under a 64k limit, so a few requests fill the buffer. Retries are periodic
/// (every second): SIGUSR1 does not cut a retry wait short (as in Fluentd), and an exponential
/// backoff would make the wait after the output is fixed grow with the time spent blocked.
const OVERFLOW_CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match limits.**>
  @type file
  path {blocked}/out/${tag}
  append true
  <format>
    @type ltsv
  </format>
  <buffer tag>
    @type file
    path {dir}/buf
    chunk_limit_size 16k
    total_limit_size 64k
    overflow_action {action}
    flush_mode interval
    flush_interval 1h
    retry_type periodic
    retry_wait 1s
  </buffer>
</match>
"#;

/// An output directory that cannot be created until [`Blocked::unblock`]: its parent is a
/// regular file.
struct Blocked {
    scratch: Scratch,
}

impl Blocked {
    fn new(name: &str) -> Blocked {
        let scratch = Scratch::new(name);
        scratch.write("blocked", "a file where the output wants a directory\n");
        Blocked { scratch }
    }

    /// The path the output writes under.
    fn path(&self) -> PathBuf {
        self.scratch.path().join("blocked")
    }

    /// Replaces the file with a directory, so the output can deliver.
    fn unblock(&self) {
        std::fs::remove_file(self.path()).unwrap();
        std::fs::create_dir(self.path()).unwrap();
    }

    /// Where the delivered events end up.
    fn out(&self) -> PathBuf {
        self.path().join("out")
    }
}

fn start_overflow(name: &str, action: &str, blocked: &Blocked) -> Weir {
    let config = OVERFLOW_CONFIG
        .replace("{action}", action)
        .replace("{blocked}", &blocked.path().display().to_string());
    Weir::start(name, &config)
}

/// Sends acked batches on one connection until one is not acked; returns the acked ids, that
/// batch and what happened to it.
fn fill(weir: &Weir, c: &mut RawClient, name: &str) -> (HashSet<String>, Batch, Answer) {
    let mut acked = HashSet::new();
    for i in 0..500 {
        let b = batch(&format!("{name}{i}"), 20, 120);
        match send_and_wait(c, &b) {
            Answer::Acked => acked.extend(b.ids.iter().cloned()),
            other => return (acked, b, other),
        }
    }
    panic!(
        "500 batches (1.5 MB) were all acked although total_limit_size is 64k; weir's warnings:\n{}",
        weir.warnings().join("\n")
    );
}

#[test]
fn overflow_throw_exception_refuses_and_stays_bounded() {
    let blocked = Blocked::new("bl-throw-out");
    let mut weir = start_overflow("bl-throw", "throw_exception", &blocked);

    let mut c = RawClient::connect(&weir);
    let (acked, _refused, answer) = fill(&weir, &mut c, "t");
    assert_eq!(
        answer,
        Answer::Closed,
        "a request over total_limit_size is refused: no ack, connection closed"
    );
    assert!(
        !acked.is_empty(),
        "batches are acked until the buffer is full"
    );
    let line = weir
        .wait_log("no ack sent", Duration::from_secs(10))
        .expect("weir logs the refusal");
    assert!(
        line.contains("buffer full") && line.contains("total_limit_size"),
        "the refusal should name the full buffer: {line}"
    );
    assert!(
        weir.wait_log("failed to flush the buffer", Duration::from_secs(10))
            .is_some(),
        "the output should be failing (that is why the buffer fills)"
    );
    assert_heartbeat(&weir);
    assert_accepts_connections(&weir);

    // A forwarder keeps trying for a few seconds; every try is refused and memory stays put.
    let pid = weir.pid();
    let deadline = Instant::now() + Duration::from_secs(4);
    let (mut tries, mut max_rss) = (0, rss_kib(pid));
    while Instant::now() < deadline {
        let mut c = RawClient::connect(&weir);
        let b = batch(&format!("retry{tries}"), 20, 120);
        assert_eq!(
            send_and_wait(&mut c, &b),
            Answer::Closed,
            "try {tries}: weir should keep refusing while the buffer is full"
        );
        tries += 1;
        max_rss = max_rss.max(rss_kib(pid));
    }
    eprintln!(
        "throw_exception: {} acked, {tries} refused tries, max RSS {max_rss} KiB; {line}",
        acked.len()
    );
    assert!(tries > 3, "the sender should get several tries in: {tries}");
    assert!(
        max_rss < RSS_CAP_KIB,
        "weir's RSS reached {max_rss} KiB while refusing (cap {RSS_CAP_KIB} KiB)"
    );
    assert_heartbeat(&weir);

    // Nothing acked is lost: once the output works, shutdown delivers every acked event.
    blocked.unblock();
    stop(&mut weir);
    let out = delivered(&blocked.out());
    assert_delivered(&out, &acked, &HashSet::new());
}

/// A forward connection whose requests are written without waiting for acks, so a test can
/// see writes block when weir stops reading.
struct Pipelined {
    s: TcpStream,
    buf: BytesMut,
    dec: FrameDecoder,
    /// Requests written completely, in order, not yet acked.
    sent: Vec<Batch>,
    /// Requests not yet written completely, with how many bytes of each were written.
    unsent: VecDeque<(Batch, usize)>,
}

impl Pipelined {
    fn connect(weir: &Weir) -> Pipelined {
        let s = TcpStream::connect(weir.addr()).unwrap();
        Pipelined {
            s,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(FrameLimits {
                chunk_size_limit: 1 << 20,
                max_depth: 16,
            }),
            sent: Vec::new(),
            unsent: VecDeque::new(),
        }
    }

    /// Writes `b` after whatever is still unsent. Returns false if a write timed out, leaving
    /// the rest to be written later.
    fn write(&mut self, b: Option<Batch>, timeout: Duration) -> bool {
        self.s.set_write_timeout(Some(timeout)).unwrap();
        self.unsent.extend(b.map(|b| (b, 0)));
        while let Some((b, mut off)) = self.unsent.pop_front() {
            while off < b.bytes.len() {
                match self.s.write(&b.bytes[off..]) {
                    Ok(0) => panic!("the connection was closed while writing"),
                    Ok(n) => off += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        self.unsent.push_front((b, off));
                        return false;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("writing to weir: {e} (the connection must not be reset)"),
                }
            }
            self.sent.push(b);
        }
        true
    }

    /// Waits up to `timeout` for an ack. Ok(None) on a timeout; Err on a close or reset.
    fn ack(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self
                .dec
                .next_frame(&mut self.buf)
                .map_err(|e| e.to_string())?
            {
                let chunk = parse_ack(&f).map_err(|e| format!("not an ack: {e:?}"))?;
                return Ok(Some(String::from_utf8_lossy(&chunk).into_owned()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return Err("weir closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading from weir: {e}")),
            }
        }
    }

    /// Asserts that nothing comes back for `wait` and that the connection stays open.
    fn assert_stalled(&mut self, wait: Duration, what: &str) {
        match self.ack(wait) {
            Ok(None) => {}
            Ok(Some(chunk)) => panic!("{what}: got an ack for {chunk} while the buffer is full"),
            Err(e) => panic!("{what}: the connection must stay open while blocked: {e}"),
        }
    }
}

#[test]
fn overflow_block_holds_acks_until_delivery_frees_room() {
    let blocked = Blocked::new("bl-block-out");
    let mut weir = start_overflow("bl-block", "block", &blocked);
    let pid = weir.pid();
    let mut acked: HashSet<String> = HashSet::new();

    // Acked batches one at a time until one gets no ack within 5 s.
    let mut p = Pipelined::connect(&weir);
    let mut stalled_at = None;
    for i in 0..500 {
        let b = batch(&format!("b{i}"), 20, 120);
        assert!(
            p.write(Some(b), Duration::from_secs(10)),
            "batch {i} written"
        );
        match p.ack(Duration::from_secs(5)) {
            Ok(Some(chunk)) => {
                let b = p.sent.remove(0);
                assert_eq!(chunk, b.chunk, "acks come in request order");
                acked.extend(b.ids);
            }
            Ok(None) => {
                stalled_at = Some(i);
                break;
            }
            Err(e) => panic!(
                "batch {i}: {e}; with overflow_action block the connection must stay open; \
                 weir's warnings:\n{}",
                weir.warnings().join("\n")
            ),
        }
    }
    let stalled_at = stalled_at.expect("500 batches cannot fit in total_limit_size 64k");
    assert!(
        !acked.is_empty(),
        "batches are acked until the buffer is full"
    );
    assert!(
        weir.wait_log("failed to flush the buffer", Duration::from_secs(10))
            .is_some(),
        "the output should be failing (that is why the buffer fills)"
    );

    // The sender keeps writing without waiting for acks. weir stops reading once
    // max_pending_acks requests wait, so the socket buffers fill and the writes block.
    let start = Instant::now();
    let mut max_rss = rss_kib(pid);
    let mut n = 0usize;
    let mut blocked_writes = false;
    while start.elapsed() < Duration::from_secs(30) {
        let b = batch(&format!("p{n}"), 20, 120);
        n += 1;
        if !p.write(Some(b), Duration::from_secs(1)) {
            blocked_writes = true;
            break;
        }
        max_rss = max_rss.max(rss_kib(pid));
    }
    assert!(
        blocked_writes,
        "the sender's writes should block while weir holds acks back ({n} requests written \
         in 30 s, RSS {max_rss} KiB)"
    );
    eprintln!(
        "block: stalled at batch {stalled_at}, {n} more written in {:?} before a write blocked, {} unsent, RSS {max_rss} KiB",
        start.elapsed(),
        p.unsent.len()
    );
    // Held there for a few seconds: no ack, no close, bounded memory.
    for round in 0..4 {
        p.assert_stalled(Duration::from_secs(1), &format!("stalled round {round}"));
        max_rss = max_rss.max(rss_kib(pid));
    }
    assert!(
        max_rss < RSS_CAP_KIB,
        "weir's RSS reached {max_rss} KiB while blocked (cap {RSS_CAP_KIB} KiB)"
    );
    assert_heartbeat(&weir);
    assert_accepts_connections(&weir);
    let closes: Vec<String> = weir
        .warnings()
        .into_iter()
        .filter(|l| l.contains("closing connection"))
        .collect();
    assert!(
        closes.is_empty(),
        "no connection is closed with overflow_action block: {closes:?}"
    );

    // The output works again: delivery frees room (at the next retry, within a second), the
    // held requests are committed and acked; SIGUSR1 queues the last staged chunk too.
    blocked.unblock();
    weir.signal("USR1");
    assert!(
        p.write(None, Duration::from_secs(60)),
        "the rest of the request cut off by the blocked write is taken once there is room"
    );
    let waiting = p.sent.len();
    let t = Instant::now();
    assert!(
        waiting > 1,
        "batch {stalled_at} and those behind it wait for acks"
    );
    for i in 0..waiting {
        match p.ack(Duration::from_secs(30)) {
            Ok(Some(chunk)) => {
                let b = p.sent.remove(0);
                assert_eq!(chunk, b.chunk, "acks come in request order");
                acked.extend(b.ids);
            }
            Ok(None) => panic!(
                "held request {i} of {waiting} got no ack within 30 s after the output was \
                 fixed; weir's warnings:\n{}",
                weir.warnings().join("\n")
            ),
            Err(e) => panic!("held request {i} of {waiting}: {e}"),
        }
    }
    drop(p);
    eprintln!(
        "block: {waiting} held acks arrived in {:?}; {} acked events",
        t.elapsed(),
        acked.len()
    );

    stop(&mut weir);
    let out = delivered(&blocked.out());
    eprintln!("block: delivered {}", out.len());
    assert_delivered(&out, &acked, &HashSet::new());
}

#[test]
fn overflow_drop_oldest_chunk_keeps_acking_and_warns_per_dropped_chunk() {
    let blocked = Blocked::new("bl-drop-out");
    let mut weir = start_overflow("bl-drop", "drop_oldest_chunk", &blocked);

    // Five times total_limit_size: every request is still acked.
    let mut c = RawClient::connect(&weir);
    let mut acked: HashSet<String> = HashSet::new();
    let mut last = Vec::new();
    for i in 0..120 {
        let b = batch(&format!("d{i}"), 20, 120);
        assert_eq!(
            send_and_wait(&mut c, &b),
            Answer::Acked,
            "batch {i}: drop_oldest_chunk makes room instead of refusing; weir's warnings:\n{}",
            weir.warnings().join("\n")
        );
        acked.extend(b.ids.iter().cloned());
        last = b.ids;
    }
    drop(c);

    assert!(
        weir.wait_log("failed to flush the buffer", Duration::from_secs(10))
            .is_some(),
        "the output should be failing (that is why the buffer fills)"
    );
    let drops: Vec<String> = weir
        .warnings()
        .into_iter()
        .filter(|l| l.contains("dropping oldest chunk"))
        .collect();
    assert!(!drops.is_empty(), "chunks were dropped with a warning");
    let mut dropped_records = 0u64;
    let mut dropped_ids = HashSet::new();
    for line in &drops {
        let id = field(line, "chunk_id")
            .unwrap_or_else(|| panic!("the drop warning names the chunk: {line}"));
        assert!(
            id.len() == 32 && id.chars().all(|ch| ch.is_ascii_hexdigit()),
            "a chunk id is 32 hex digits: {line}"
        );
        assert!(dropped_ids.insert(id.clone()), "chunk {id} dropped twice");
        dropped_records += field(line, "records")
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("the drop warning gives the record count: {line}"));
        // The chunk's files are gone from the buffer.
        let left: Vec<String> = std::fs::read_dir(weir.dir.path().join("buf"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&id))
            .collect();
        assert!(
            left.is_empty(),
            "dropped chunk {id} still has files: {left:?}"
        );
    }

    // Once the output works, shutdown delivers what was not dropped: the newest events, and
    // every acked event is either delivered or counted in a drop warning.
    blocked.unblock();
    stop(&mut weir);
    let out = delivered(&blocked.out());
    for id in &last {
        assert!(
            out.contains_key(id),
            "the newest batch is kept: {id} missing"
        );
    }
    eprintln!(
        "drop: {} acked, {} delivered, {dropped_records} dropped in {} chunks; e.g. {}",
        acked.len(),
        out.len(),
        drops.len(),
        drops[0]
    );
    let doubled: Vec<_> = out.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "events delivered twice: {doubled:?}");
    let unknown: Vec<_> = out.keys().filter(|id| !acked.contains(*id)).collect();
    assert!(unknown.is_empty(), "events nobody sent: {unknown:?}");
    assert_eq!(
        out.len() as u64 + dropped_records,
        acked.len() as u64,
        "every acked event is delivered or in a chunk whose drop was logged \
         ({} delivered, {dropped_records} dropped in {} chunks)",
        out.len(),
        drops.len()
    );
}

/// The value of `name=` in a log line, without quotes.
fn field(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_string())
}

/// SIGTERM while `overflow_action block` holds a request back and the output cannot deliver:
/// the held request can never be stored, so it should be refused (no ack, connection closed)
/// and weir should exit promptly, as Fluentd breaks the block at shutdown ("breaking block
/// behavior to shutdown Fluentd"). Acked events stay in the file buffer and are delivered after
/// a restart.
#[test]
fn overflow_block_sigterm_refuses_held_requests_promptly() {
    let blocked = Blocked::new("bl-block-term-out");
    let mut weir = start_overflow("bl-block-term", "block", &blocked);
    let mut acked: HashSet<String> = HashSet::new();
    let mut p = Pipelined::connect(&weir);
    let mut stalled = false;
    for i in 0..500 {
        let b = batch(&format!("s{i}"), 20, 120);
        assert!(
            p.write(Some(b), Duration::from_secs(10)),
            "batch {i} written"
        );
        match p.ack(Duration::from_secs(5)) {
            Ok(Some(chunk)) => {
                let b = p.sent.remove(0);
                assert_eq!(chunk, b.chunk, "acks come in request order");
                acked.extend(b.ids);
            }
            Ok(None) => {
                stalled = true;
                break;
            }
            Err(e) => panic!("batch {i}: {e}"),
        }
    }
    assert!(stalled, "500 batches cannot fit in total_limit_size 64k");

    let t = Instant::now();
    weir.signal("TERM");
    match p.ack(Duration::from_secs(40)) {
        Err(_) => {}
        Ok(Some(chunk)) => panic!("the held request {chunk} was acked but cannot be stored"),
        Ok(None) => panic!("the held request got no answer within 40 s of SIGTERM"),
    }
    let refused_after = t.elapsed();
    let status = weir.wait_exit(Duration::from_secs(60));
    let exited_after = t.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "weir exits cleanly: {status:?}"
    );
    assert!(
        refused_after < Duration::from_secs(10) && exited_after < Duration::from_secs(10),
        "SIGTERM should break the block within 10 s: the held request was refused after \
         {refused_after:?} and weir exited after {exited_after:?}"
    );

    // Nothing acked was lost: a restart with a working output delivers it.
    blocked.unblock();
    weir.respawn();
    stop(&mut weir);
    let out = delivered(&blocked.out());
    assert_delivered(&out, &acked, &HashSet::new());
}
