//! Crashes and full disks, with real processes: the test binary re-runs itself in a child
//! mode (an ignored test selected by name, steered by environment variables).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use weir_store::{Buffer, BufferConfig};

fn child(test: &str, envs: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut c = Command::new(exe);
    c.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in envs {
        c.env(k, v);
    }
    c
}

/// Child: appends from several tasks and prints every committed sequence number.
#[test]
#[ignore = "child process of kill9_loses_no_committed_event"]
fn crash_child() {
    let Ok(dir) = std::env::var("WEIR_CRASH_DIR") else {
        return;
    };
    let base: u64 = std::env::var("WEIR_CRASH_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut cfg = BufferConfig::file(&dir);
        cfg.chunk_limit_size = 64 * 1024; // many chunks, so seals happen during the crash too
        let (buf, _) = Buffer::open(cfg, "crash").expect("open");
        let next = Arc::new(AtomicU64::new(base));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (buf, next) = (buf.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = 1 + next.load(Ordering::Relaxed) % 4;
                    let first = next.fetch_add(n, Ordering::SeqCst);
                    let seqs: Vec<u64> = (first..first + n).collect();
                    if buf
                        .append("crash", &batch(seqs.clone(), 1_700_000_000))
                        .await
                        .is_ok()
                    {
                        let line: String =
                            seqs.iter().map(|s| format!("COMMITTED {s}\n")).collect();
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(line.as_bytes());
                        let _ = out.flush();
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn kill9_loses_no_committed_event() {
    let dir = temp_dir("crash");
    let mut committed = Vec::new();
    for round in 0..5u64 {
        let mut c = child(
            "crash_child",
            &[
                ("WEIR_CRASH_DIR", dir.display().to_string()),
                ("WEIR_CRASH_BASE", (round * 10_000_000).to_string()),
            ],
        );
        let mut proc = c.stdout(Stdio::piped()).spawn().expect("spawn child");
        let stdout = proc.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("COMMITTED ") {
                    if let Ok(n) = n.trim().parse::<u64>() {
                        seen.push(n);
                    }
                }
            }
            seen
        });
        // Let it run a random while (and at least until it has committed something).
        let ms = 150 + rand::random::<u64>() % 400;
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let pid = proc.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0);
        let _ = proc.wait();
        let seen = reader.join().expect("reader");
        println!(
            "round {round}: killed after {ms} ms, {} events committed",
            seen.len()
        );
        committed.extend(seen);
    }
    assert!(!committed.is_empty(), "the child committed nothing");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (got, report) = rt.block_on(async {
        let (buf, report) = Buffer::open(BufferConfig::file(&dir), "check").expect("open");
        (drain(&buf).await.seqs(), report)
    });
    println!("recovery after the last kill: {report:?}");
    let got: std::collections::HashSet<u64> = got.into_iter().collect();
    let missing: Vec<u64> = committed
        .iter()
        .copied()
        .filter(|s| !got.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "{} committed events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Appends until the store refuses; returns committed sequence numbers and the first error.
async fn fill_until_error(buf: &Buffer, start: u64) -> (Vec<u64>, weir_store::StoreError) {
    let mut ok = Vec::new();
    let mut seq = start;
    loop {
        let seqs: Vec<u64> = (seq..seq + 20).collect();
        seq += 20;
        match buf
            .append("full", &batch(seqs.clone(), 1_700_000_000))
            .await
        {
            Ok(()) => ok.extend(seqs),
            Err(e) => return (ok, e),
        }
        assert!(seq < start + 10_000_000, "never ran out of space");
    }
}

/// The disk-full scenario itself; `free` makes room again.
async fn disk_full_scenario(dir: &std::path::Path, free: impl FnOnce()) {
    let (buf, _) = Buffer::open(BufferConfig::file(dir), "full").expect("open");
    let (committed, err) = fill_until_error(&buf, 0).await;
    println!("disk full after {} events: {err}", committed.len());
    assert!(err.is_no_space(), "unexpected error {err:?}");
    assert!(!committed.is_empty());
    // Still full: a large batch is still refused, and nothing breaks.
    let big = buf
        .append("full", &batch(9_000_000..9_002_000, 1_700_000_000))
        .await;
    assert!(big.is_err_and(|e| e.is_no_space()));
    free();
    let later: Vec<u64> = (5_000_000..5_000_100).collect();
    for chunk in later.chunks(20) {
        buf.append("full", &batch(chunk.to_vec(), 1_700_000_000))
            .await
            .expect("append after space returned");
    }
    drop(buf);
    let (buf, report) = Buffer::open(BufferConfig::file(dir), "full").expect("reopen");
    assert!(report.corrupt.is_empty(), "{report:?}");
    let got = drain(&buf).await.seqs();
    let mut want = committed;
    want.extend(later);
    want.sort_unstable();
    assert_eq!(got, want, "exactly the committed events survive");
}

#[tokio::test]
async fn disk_full_on_a_small_tmpfs() {
    let dir = temp_dir("tmpfs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        println!(
            "skipped: cannot mount tmpfs (disk_full_with_file_size_limit covers ENOSPC with EFBIG)"
        );
        return;
    }
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 256 * 1024]).expect("filler");
    let store = dir.join("store");
    disk_full_scenario(&store, || {
        std::fs::remove_file(&filler).expect("free space");
    })
    .await;
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Child: runs the disk-full scenario under RLIMIT_FSIZE, where writes past the limit fail
/// with EFBIG (a stand-in for ENOSPC); raising the limit makes room again.
#[test]
#[ignore = "child process of disk_full_with_file_size_limit"]
fn fsize_child() {
    let Ok(dir) = std::env::var("WEIR_FSIZE_DIR") else {
        return;
    };
    // SAFETY: setting a signal disposition and a resource limit for this process only.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(disk_full_scenario(std::path::Path::new(&dir), || {
        // SAFETY: as above.
        unsafe {
            let lim = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
    }));
    println!("FSIZE SCENARIO PASSED");
}

#[test]
fn disk_full_with_file_size_limit() {
    let dir = temp_dir("fsize");
    let out = child(
        "fsize_child",
        &[("WEIR_FSIZE_DIR", dir.display().to_string())],
    )
    .output()
    .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("FSIZE SCENARIO PASSED"));
    let _ = std::fs::remove_dir_all(&dir);
}
