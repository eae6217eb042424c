//! Helpers for weir's end-to-end tests: start the real `weir` binary on a config, collect what
//! it prints, find the Python and Node clients that `make test` installs, make scratch
//! directories and TLS certificates.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use weir_proto::{json_to_msgpack, parse_ack, EncodeOptions, FrameDecoder, FrameLimits};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `weir` binary under test: `$WEIR_BIN`, or the debug build `make test` makes first.
pub fn weir_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let bin = target.join("debug").join("weir");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p weir` first (make test does)",
        bin.display()
    );
    bin
}

/// A program of the test venv (`make test-deps` creates it and installs the Python clients
/// and moto there).
pub fn venv_bin(name: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run `make test-deps`",
        p.display()
    );
    p
}

/// The Python interpreter of the test venv.
pub fn python() -> PathBuf {
    venv_bin("python")
}

/// Checks that the Node clients are installed and returns the `node` program.
pub fn node() -> PathBuf {
    let modules = root().join("tests/node/node_modules");
    assert!(
        modules.join("fluent-logger").exists() && modules.join("@fluent-org/logger").exists(),
        "{} is incomplete: run `make test-deps`",
        modules.display()
    );
    PathBuf::from("node")
}

/// A fresh scratch directory under `target/e2e`, removed when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Makes a new, empty directory.
    pub fn new(name: &str) -> Scratch {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = root()
            .join("target/e2e")
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a scratch directory");
        Scratch { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a file in it and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("writing a scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The distinct NAMEs of the `{port:NAME}` placeholders in `config`, in order of first use.
fn port_names(config: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for piece in config.split("{port:").skip(1) {
        if let Some((name, _)) = piece.split_once('}') {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// `text` with `{port}` replaced by `port` and each `{port:NAME}` by its port in `named`.
fn fill_ports(text: &str, port: u16, named: &[(String, u16)]) -> String {
    let mut text = text.replace("{port}", &port.to_string());
    for (n, p) in named {
        text = text.replace(&format!("{{port:{n}}}"), &p.to_string());
    }
    text
}

/// The forward port followed by the named ones.
fn all_ports(port: u16, named: &[(String, u16)]) -> Vec<u16> {
    std::iter::once(port)
        .chain(named.iter().map(|(_, p)| *p))
        .collect()
}

/// A port of 127.0.0.1 where connections are refused, held for as long as the returned socket
/// lives: the socket is bound to it but never listens, so no other test's server can take the
/// port meanwhile (a port merely free when picked could be taken and start answering).
pub fn refusing_port() -> (socket2::Socket, u16) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("creating a socket");
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&any.into()).expect("binding port 0");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("the bound address");
    (socket, port)
}

/// A port that was free a moment ago, for TCP and UDP. A test that needs weir to listen on
/// more than its forward port uses `{port:NAME}` placeholders ([`Weir::start`]) instead: a
/// port picked here can be taken by a parallel test before weir binds it.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding port 0");
        let port = l.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    /// Set when the pipe reached its end (the process and everything it started closed it).
    closed: AtomicBool,
    changed: Condvar,
}

impl Lines {
    fn collect(
        self: &Arc<Self>,
        pipe: impl std::io::Read + Send + 'static,
        echo: Option<&'static str>,
    ) {
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(prefix) = echo {
                    eprintln!("[{prefix}] {line}");
                }
                let mut lines = me.lines.lock().unwrap_or_else(|e| e.into_inner());
                lines.push(line);
                me.changed.notify_all();
            }
            let _lines = me.lines.lock().unwrap_or_else(|e| e.into_inner());
            me.closed.store(true, Ordering::SeqCst);
            me.changed.notify_all();
        });
    }

    /// Waits (up to `timeout`) until the pipe has been read to its end.
    fn wait_closed(&self, timeout: Duration) {
        self.wait_until(timeout, |_| self.closed.load(Ordering::SeqCst));
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done(&lines) {
                return lines.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return lines.clone();
            }
            lines = self
                .changed
                .wait_timeout(lines, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

type Spawned = (Child, Arc<Lines>, Arc<Lines>);

/// Starts `weir run` on the `weir.conf` in `dir`, collecting its stdout and stderr. With
/// `log_level` false, weir gets no `WEIR_LOG`, so the config's `<system> log_level` applies.
fn spawn(dir: &Scratch, log_level: bool) -> Spawned {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["run", "-c"]).arg(dir.path().join("weir.conf"));
    if log_level {
        cmd.env(
            "WEIR_LOG",
            std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
    } else {
        cmd.env_remove("WEIR_LOG");
    }
    let mut child = cmd
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting weir");
    let stdout = Arc::new(Lines::default());
    let stderr = Arc::new(Lines::default());
    let echo = std::env::var_os("WEIR_TEST_ECHO").is_some();
    stdout.collect(
        child.stdout.take().expect("stdout pipe"),
        echo.then_some("weir stdout"),
    );
    stderr.collect(
        child.stderr.take().expect("stderr pipe"),
        echo.then_some("weir"),
    );
    (child, stdout, stderr)
}

/// A running `weir run` process, killed when dropped.
pub struct Weir {
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    /// The forward port it listens on.
    pub port: u16,
    /// The ports picked for the config's `{port:NAME}` placeholders, by name.
    named: Vec<(String, u16)>,
    /// Its scratch directory (the config lives there).
    pub dir: Scratch,
}

impl Weir {
    /// Starts weir on `config`, in which `{port}` and `{dir}` are replaced by a free port and
    /// the scratch directory, and each `{port:NAME}` (another port weir listens on over TCP:
    /// an admin endpoint, a second source) by a free port of its own, and waits until weir
    /// listens on all of them. [`Weir::named_port`] tells the ports picked for the names.
    pub fn start(name: &str, config: &str) -> Weir {
        Weir::start_logging(name, config, true)
    }

    /// Like [`Weir::start`], without setting weir's log level from the environment: the
    /// config's `<system> log_level` decides.
    pub fn start_at_config_log_level(name: &str, config: &str) -> Weir {
        Weir::start_logging(name, config, false)
    }

    fn start_logging(name: &str, config: &str, log_level: bool) -> Weir {
        let dir = Scratch::new(name);
        // A port is free when picked but not held until weir binds it, so a parallel test can
        // take it first; weir then exits on the bind error and other ports are tried.
        let names = port_names(config);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let named: Vec<(String, u16)> =
                names.iter().map(|n| (n.clone(), free_port())).collect();
            let text = fill_ports(config, port, &named)
                .replace("{dir}", &dir.path().display().to_string());
            dir.write("weir.conf", &text);
            let (mut child, stdout, stderr) = spawn(&dir, log_level);
            let ports = all_ports(port, &named);
            match wait_listening(&mut child, &ports, WEIR_START) {
                Ok(()) => {
                    return Weir {
                        child,
                        stdout,
                        stderr,
                        port,
                        named,
                        dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    stderr.wait_closed(Duration::from_secs(5));
                    let log = stderr.snapshot().join("\n");
                    if attempts < 5 && log.contains("Address already in use") {
                        continue;
                    }
                    panic!(
                        "weir did not start listening on ports {ports:?}: {why}; its log:\n{log}"
                    );
                }
            }
        }
    }

    /// Kills the process with SIGKILL (no chance to flush or clean up) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts weir again on the same config, port and directory (after [`Weir::kill9`] or an
    /// exit), with fresh output collectors.
    pub fn respawn(&mut self) {
        let (child, stdout, stderr) = spawn(&self.dir, true);
        self.child = child;
        self.stdout = stdout;
        self.stderr = stderr;
        let ports = all_ports(self.port, &self.named);
        if let Err(why) = wait_listening(&mut self.child, &ports, WEIR_START) {
            // Its log follows, printed when the panic drops this Weir.
            panic!("weir did not start listening on ports {ports:?} again: {why}");
        }
    }

    /// The port picked for the config's `{port:NAME}` placeholder.
    pub fn named_port(&self, name: &str) -> u16 {
        match self.named.iter().find(|(n, _)| n == name) {
            Some((_, p)) => *p,
            None => panic!("the config has no {{port:{name}}} placeholder"),
        }
    }

    /// `text` with `{port}` and every `{port:NAME}` replaced by this weir's ports (for a
    /// config sent in a reload).
    pub fn fill_ports(&self, text: &str) -> String {
        fill_ports(text, self.port, &self.named)
    }

    /// The forward address.
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Lines weir printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    /// Lines weir logged on stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.snapshot()
    }

    /// Log lines at WARN or ERROR level so far.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr_lines()
            .into_iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect()
    }

    /// Waits (up to `timeout`) for at least `n` stdout lines and returns them.
    pub fn wait_stdout(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.stdout.wait_until(timeout, |l| l.len() >= n)
    }

    /// Waits (up to `timeout`) for a log line containing `needle` and returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.stderr
            .wait_until(timeout, |l| l.iter().any(|x| x.contains(needle)))
            .into_iter()
            .find(|x| x.contains(needle))
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// How long weir has to start listening.
const WEIR_START: Duration = Duration::from_secs(20);

/// Waits (up to `timeout`) until `child` itself listens on every TCP port of `ports`, or says
/// why not: it exited, or the time ran out. Asking the kernel which process holds the
/// listening socket, rather than connecting, keeps a test from talking to another test's
/// server that took the port.
fn wait_listening(child: &mut Child, ports: &[u16], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        if ports.iter().all(|p| listens_on(child.id(), *p)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "it was not listening after {} s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when process `pid` holds a TCP socket listening on `port` (IPv4 or IPv6).
fn listens_on(pid: u32, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // Columns: slot, local address, remote address, state (0A is LISTEN), ..., inode.
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[1].ends_with(&wanted) && cols[3] == "0A" {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let status = self.child.wait();
        // A failing test shows what weir logged, so a failure in CI can be read without a rerun.
        if std::thread::panicking() {
            eprintln!(
                "weir on port {} ({status:?}) logged:\n{}",
                self.port,
                self.stderr_lines().join("\n")
            );
        }
    }
}

/// Runs a command to completion with a time limit; returns (success, stdout, stderr).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let out = Arc::new(Lines::default());
    let err = Arc::new(Lines::default());
    out.collect(child.stdout.take().expect("stdout"), None);
    err.collect(child.stderr.take().expect("stderr"), None);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Everything the command printed is read before it is returned. A process it left behind
    // could hold the pipes open, hence the time limit.
    out.wait_closed(Duration::from_secs(5));
    err.wait_closed(Duration::from_secs(5));
    (
        status.is_some_and(|s| s.success()),
        out.snapshot().join("\n"),
        err.snapshot().join("\n"),
    )
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files in `dir`:
/// (cert path, key path).
pub fn self_signed_cert(dir: &Scratch) -> (PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generating a certificate");
    let cert_path = dir.write("server.crt", cert.cert.pem());
    let key_path = dir.write("server.key", cert.key_pair.serialize_pem());
    (cert_path, key_path)
}

/// A CA, a server certificate for `localhost` signed by it, and a client certificate signed by
/// it, as PEM files.
pub struct TestPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

/// Makes a [`TestPki`] in `dir`.
pub fn test_pki(dir: &Scratch) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["localhost".into()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let client_key = KeyPair::generate().expect("client key");
    let client = CertificateParams::new(vec!["client.test".into()])
        .expect("client params")
        .signed_by(&client_key, &ca, &ca_key)
        .expect("client certificate");
    TestPki {
        ca: dir.write("ca.crt", ca.pem()),
        server_cert: dir.write("server.crt", server.pem()),
        server_key: dir.write("server.key", server_key.serialize_pem()),
        client_cert: dir.write("client.crt", client.pem()),
        client_key: dir.write("client.key", client_key.serialize_pem()),
    }
}

/// A record as msgpack, from JSON text.
pub fn record(json: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = Vec::new();
    json_to_msgpack(&v, &mut out);
    out
}

/// The event time the tests' requests carry: 2023-11-14T22:13:20Z.
pub const TEST_TIME: u32 = 1_700_000_000;

/// Sends the JSON `records` under `tag` as one Forward-mode request (every event at
/// [`TEST_TIME`]) asking for an ack with id `chunk`, on a new connection, and waits for the
/// ack. Returns the ack's id, or `None` when weir closed the connection without one.
pub fn send_json_acked<S: AsRef<str>>(
    weir: &Weir,
    tag: &str,
    chunk: &str,
    records: &[S],
) -> Option<Bytes> {
    let recs: Vec<Vec<u8>> = records.iter().map(|r| record(r.as_ref())).collect();
    let entries: Vec<(weir_proto::EventTime, &[u8])> = recs
        .iter()
        .map(|r| (weir_proto::EventTime::new(TEST_TIME, 0), r.as_slice()))
        .collect();
    let mut c = RawClient::connect(weir);
    c.send(&weir_proto::encode_forward(
        tag,
        &entries,
        &with_chunk(chunk),
    ));
    c.ack()
}

/// Encoding options that ask for an ack with this chunk id.
pub fn with_chunk(chunk: &str) -> EncodeOptions {
    EncodeOptions {
        chunk: Some(Bytes::copy_from_slice(chunk.as_bytes())),
        ..EncodeOptions::default()
    }
}

/// A forward connection over a plain socket, for tests that send hand-made bytes.
pub struct RawClient {
    /// The socket.
    pub s: TcpStream,
    buf: BytesMut,
    dec: FrameDecoder,
}

impl RawClient {
    /// Connects to `weir`.
    pub fn connect(weir: &Weir) -> RawClient {
        let s = TcpStream::connect(weir.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        RawClient {
            s,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(FrameLimits {
                chunk_size_limit: 1 << 20,
                max_depth: 16,
            }),
        }
    }

    /// Connects to a port on 127.0.0.1; None if nothing listens.
    pub fn connect_port(port: u16) -> Option<RawClient> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        Some(RawClient {
            s,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(FrameLimits {
                chunk_size_limit: 1 << 20,
                max_depth: 16,
            }),
        })
    }

    /// Writes bytes; false if the connection is broken.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    /// The next ack's chunk id; None when the connection closed or broke.
    pub fn try_ack(&mut self) -> Option<Bytes> {
        loop {
            if let Ok(Some(f)) = self.dec.next_frame(&mut self.buf) {
                return parse_ack(&f).ok();
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Writes bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next msgpack value from the server, or None when it closed the connection.
    pub fn next_message(&mut self) -> Option<Bytes> {
        loop {
            if let Some(f) = self.dec.next_frame(&mut self.buf).unwrap() {
                return Some(f);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from weir: {e}"),
            }
        }
    }

    /// The next ack's chunk id, or None when the server closed the connection.
    pub fn ack(&mut self) -> Option<Bytes> {
        self.next_message().map(|f| parse_ack(&f).unwrap())
    }

    /// True when the server closes the connection within `timeout` without sending anything.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.s.set_read_timeout(Some(timeout)).unwrap();
        let mut b = [0u8; 64];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(n) => panic!("expected a close, got {n} bytes: {:02x?}", &b[..n]),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A tmpfs mounted for a test, unmounted when dropped (also when the test panics).
pub struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (`2m`) at `dir`, or says why it cannot (it needs root).
    pub fn mount(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
        let euid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_default();
        if euid != "0" {
            return Err(format!("not running as root (effective uid {euid:?})"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TmpfsMount {
            dir: dir.to_path_buf(),
        })
    }

    /// Mounts a tmpfs, or, when that is impossible and `WEIR_SKIP_TMPFS=1` is set, says why on
    /// standard error and returns `None` (the test is skipped). Panics otherwise.
    pub fn mount_or_skip(dir: &Path, size: &str) -> Option<TmpfsMount> {
        match TmpfsMount::mount(dir, size) {
            Ok(m) => Some(m),
            Err(why) => {
                if std::env::var("WEIR_SKIP_TMPFS").as_deref() == Ok("1") {
                    // Straight to the process's stderr, so the test harness does not hide it.
                    let _ = writeln!(std::io::stderr(), "skipped: cannot mount tmpfs: {why}");
                    return None;
                }
                panic!(
                    "cannot mount tmpfs: {why} (this test needs root; set WEIR_SKIP_TMPFS=1 to skip it)"
                );
            }
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open there: detach it lazily rather than leak it.
            let lazy = Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !lazy {
                eprintln!("could not unmount the tmpfs at {}", self.dir.display());
            }
        }
    }
}

/// True when something on 127.0.0.1:`port` answers an HTTP request.
pub fn answers_http(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 7];
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read_exact(&mut b).is_ok()
        && &b == b"HTTP/1."
}

/// A moto S3 server (installed into `.venv` by `make test-deps`) on 127.0.0.1, in memory,
/// stopped when dropped; its log is printed if a test fails.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: Scratch,
}

impl Moto {
    /// Starts moto on a free port and waits until it listens there itself; on another port if
    /// another test takes that one before moto binds it.
    pub fn start() -> Moto {
        let bin = venv_bin("moto_server");
        let dir = Scratch::new("moto");
        let log = dir.path().join("moto.log");
        for _ in 0..5 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("moto's log");
            let err = out.try_clone().expect("moto's log");
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("starting moto");
            // Python takes a while to import moto on a busy machine.
            match wait_listening(&mut child, &[port], Duration::from_secs(60)) {
                Ok(()) => return Moto { child, port, dir },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("Address already in use") {
                        eprintln!("moto found port {port} taken; trying another");
                        continue;
                    }
                    panic!("moto did not start listening on port {port}: {why}; its log:\n{text}");
                }
            }
        }
        panic!("moto found its port taken five times");
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default();
            eprintln!("moto's log:\n{log}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::port_names;

    #[test]
    fn port_names_are_the_distinct_names_in_order() {
        let config =
            "port {port}\nport {port:admin}\nrpc 127.0.0.1:{port:rpc}\nagain {port:admin}\n";
        assert_eq!(port_names(config), ["admin", "rpc"]);
        assert!(port_names("port {port}\n").is_empty());
    }

    #[test]
    fn a_refusing_port_refuses_and_cannot_be_taken() {
        let (_held, port) = super::refusing_port();
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.kind());
        assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
    }
}
