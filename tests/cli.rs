//! The `weir` command's client side and help: `weir cat` in every mode, with acks, a shared key
//! and TLS against a real weir; `weir bench` against a real weir; `--help` and `--version`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_e2e::{run_with_timeout, self_signed_cert, weir_bin, Scratch, Weir};

const STDOUT_CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
  {security}
</source>
<match **>
  @type stdout
</match>
"#;

/// Runs `weir cat` with `args`, feeding `input` on stdin; returns (success, stderr).
fn cat(args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(weir_bin())
        .arg("cat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting weir cat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing to weir cat");
    let out = child.wait_with_output().expect("waiting for weir cat");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn records_of(lines: &[String]) -> Vec<String> {
    // "<date> <time> <zone> <tag>: <json>" → "<tag>: <json>"
    let mut v: Vec<String> = lines
        .iter()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn cat_sends_every_mode_with_acks_keeping_key_order() {
    let weir = Weir::start("cat-modes", &STDOUT_CONFIG.replace("{security}", ""));
    let port = weir.port.to_string();
    let mut expected = Vec::new();
    for mode in ["message", "forward", "packed", "compressed", "zstd"] {
        let input = format!("{{\"z\":1,\"a\":\"{mode}\"}}\n\n{{\"m\":[1,2.5,null,true]}}\n");
        let tag = format!("cat.{mode}");
        let (ok, err) = cat(&["--port", &port, "--mode", mode, "--ack", &tag], &input);
        assert!(ok, "weir cat --mode {mode} failed: {err}");
        expected.push(format!("{tag}: {{\"z\":1,\"a\":\"{mode}\"}}"));
        expected.push(format!("{tag}: {{\"m\":[1,2.5,null,true]}}"));
    }
    expected.sort();
    let lines = weir.wait_stdout(expected.len(), Duration::from_secs(10));
    assert_eq!(records_of(&lines), expected);
}

#[test]
fn cat_reports_a_bad_line_with_its_number() {
    let weir = Weir::start("cat-bad", &STDOUT_CONFIG.replace("{security}", ""));
    let port = weir.port.to_string();
    let (ok, err) = cat(&["--port", &port, "--ack", "app"], "{\"a\":1}\nnot json\n");
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");
    let (ok, err) = cat(&["--port", &port, "app"], "[1,2]\n");
    assert!(!ok);
    assert!(err.contains("must be a JSON object"), "{err}");
}

#[test]
fn cat_with_shared_key_and_tls() {
    let certs = Scratch::new("cat-tls-certs");
    let (cert, key) = self_signed_cert(&certs);
    let security = format!(
        "<security>\n self_hostname aggregator.test\n shared_key k3y\n </security>\n <transport tls>\n cert_path {}\n private_key_path {}\n </transport>",
        cert.display(),
        key.display()
    );
    let weir = Weir::start("cat-tls", &STDOUT_CONFIG.replace("{security}", &security));
    let port = weir.port.to_string();
    let ca = cert.display().to_string();
    let base = [
        "--port",
        &port,
        "--tls",
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "localhost",
        "--ack",
    ];
    let mut args = base.to_vec();
    args.extend([
        "--shared-key",
        "k3y",
        "--self-hostname",
        "client.test",
        "secure.app",
    ]);
    let (ok, err) = cat(&args, "{\"a\":1}\n");
    assert!(ok, "{err}");
    assert_eq!(
        records_of(&weir.wait_stdout(1, Duration::from_secs(10))),
        vec!["secure.app: {\"a\":1}"]
    );

    let mut wrong = base.to_vec();
    wrong.extend([
        "--shared-key",
        "nope",
        "--self-hostname",
        "client.test",
        "secure.app",
    ]);
    let (ok, err) = cat(&wrong, "{\"a\":2}\n");
    assert!(!ok);
    assert!(err.contains("shared_key mismatch"), "{err}");

    // Without the CA the certificate is not trusted.
    let (ok, err) = cat(
        &[
            "--port",
            &port,
            "--tls",
            "--tls-ca",
            "/dev/null",
            "--shared-key",
            "k3y",
            "x",
        ],
        "{\"a\":3}\n",
    );
    assert!(!ok, "{err}");
    assert_eq!(weir.stdout_lines().len(), 1);

    // --tls-insecure takes the same certificate without a CA and under another name.
    let (ok, err) = cat(
        &[
            "--port",
            &port,
            "--tls",
            "--tls-insecure",
            "--tls-server-name",
            "elsewhere.test",
            "--ack",
            "--shared-key",
            "k3y",
            "--self-hostname",
            "client.test",
            "insecure.app",
        ],
        "{\"a\":4}\n",
    );
    assert!(ok, "{err}");
    let lines = weir.wait_stdout(2, Duration::from_secs(10));
    assert!(
        records_of(&lines).contains(&"insecure.app: {\"a\":4}".to_string()),
        "{lines:?}"
    );
}

/// Runs `weir bench` with acks on 2 connections for a second against `port`, with `extra`
/// arguments; returns (success, stdout, stderr).
fn bench_for_a_second(port: u16, extra: &[&str]) -> (bool, String, String) {
    let port = port.to_string();
    let mut args = vec![
        "bench",
        "--port",
        &port,
        "--connections",
        "2",
        "--duration",
        "1",
        "--ack",
    ];
    args.extend_from_slice(extra);
    run_with_timeout(Command::new(weir_bin()).args(args), Duration::from_secs(30))
}

#[test]
fn bench_reports_throughput_and_ack_latency() {
    let weir = Weir::start(
        "bench",
        "<source>\n @type forward\n bind 127.0.0.1\n port {port}\n</source>\n<match **>\n @type null\n</match>\n",
    );
    let (ok, out, err) = bench_for_a_second(weir.port, &["--batch", "100", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("bench prints JSON");
    assert!(v["events"].as_u64().unwrap() >= 100, "{v}");
    assert!(v["acks"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["ack_p99_ms"].as_f64().unwrap() >= v["ack_p50_ms"].as_f64().unwrap());
}

#[test]
fn bench_fails_when_the_server_closes_instead_of_acking() {
    // A server that reads each connection's first request and closes it without an ack, as
    // weir does when it cannot store a request: the bench, waiting for that ack before it
    // sends again, must report the failure rather than wait forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 64 * 1024];
            while matches!(std::io::Read::read(&mut conn, &mut buf), Ok(n) if n > 0) {}
        }
    });
    let (ok, _, err) = bench_for_a_second(port, &["--batch", "10"]);
    assert!(!ok);
    assert!(err.contains("a connection failed"), "{err}");
}

#[test]
fn help_describes_every_command_and_version_prints() {
    let (ok, out, _) = run_with_timeout(
        Command::new(weir_bin()).arg("--help"),
        Duration::from_secs(10),
    );
    assert!(ok);
    for cmd in ["run", "check", "cat", "bench"] {
        assert!(out.contains(cmd), "--help lacks {cmd}: {out}");
    }
    for (cmd, flag) in [
        ("run", "--pid-file"),
        ("check", "--strict"),
        ("cat", "--shared-key"),
        ("bench", "--connections"),
    ] {
        let (ok, out, _) = run_with_timeout(
            Command::new(weir_bin()).args([cmd, "--help"]),
            Duration::from_secs(10),
        );
        assert!(
            ok && out.contains(flag),
            "weir {cmd} --help lacks {flag}: {out}"
        );
    }
    let (ok, out, _) = run_with_timeout(
        Command::new(weir_bin()).arg("--version"),
        Duration::from_secs(10),
    );
    assert!(ok && out.starts_with("weir "), "{out}");
    // The build it came from: the commit (a hex id, or "unknown" outside a git checkout), the
    // profile, the target and the compiler.
    let commit = out
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "no commit in --version: {out}"
    );
    assert!(
        out.contains(" build for ") && out.contains("rustc "),
        "{out}"
    );
}

#[test]
fn accepted_connections_get_keepalive_probes() {
    let weir = Weir::start("keepalive", &STDOUT_CONFIG.replace("{security}", ""));
    let _conn = std::net::TcpStream::connect(weir.addr()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let filter = format!("sport = :{}", weir.port);
    let (ok, out, err) = run_with_timeout(
        Command::new("ss").args(["-tnoH", "state", "established", &filter]),
        Duration::from_secs(10),
    );
    assert!(ok, "ss failed: {err}");
    // The idle timer is the configured 60 s (ss prints the time left, e.g. "59sec").
    assert!(
        out.contains("timer:(keepalive,") && (out.contains(",59sec") || out.contains(",1min")),
        "no keepalive timer on the accepted socket: {out}"
    );
}

#[test]
fn client_certificates_are_required_with_client_cert_auth() {
    let dir = Scratch::new("mtls-pki");
    let pki = weir_e2e::test_pki(&dir);
    let transport = format!(
        "<transport tls>\n cert_path {}\n private_key_path {}\n client_cert_auth true\n ca_path {}\n </transport>",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let weir = Weir::start("mtls", &STDOUT_CONFIG.replace("{security}", &transport));
    let port = weir.port.to_string();
    let ca = pki.ca.display().to_string();
    let cert = pki.client_cert.display().to_string();
    let key = pki.client_key.display().to_string();
    let (ok, err) = cat(
        &[
            "--port",
            &port,
            "--tls",
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "localhost",
            "--tls-client-cert",
            &cert,
            "--tls-client-key",
            &key,
            "--ack",
            "mtls.app",
        ],
        "{\"a\":1}\n",
    );
    assert!(ok, "{err}");
    assert_eq!(
        records_of(&weir.wait_stdout(1, Duration::from_secs(10))),
        vec!["mtls.app: {\"a\":1}"]
    );
    let (ok, _) = cat(
        &[
            "--port",
            &port,
            "--tls",
            "--tls-ca",
            &ca,
            "--tls-server-name",
            "localhost",
            "--ack",
            "mtls.app",
        ],
        "{\"a\":2}\n",
    );
    assert!(!ok, "a client without a certificate must be refused");
    assert!(weir
        .wait_log("TLS handshake failed", Duration::from_secs(5))
        .is_some());
    assert_eq!(weir.stdout_lines().len(), 1);
}

#[test]
fn tls_port_health_checks_are_quiet() {
    let dir = Scratch::new("tls-quiet");
    let (cert, key) = self_signed_cert(&dir);
    let transport = format!(
        "<transport tls>\n cert_path {}\n private_key_path {}\n </transport>",
        cert.display(),
        key.display()
    );
    let weir = Weir::start(
        "tls-quiet",
        &STDOUT_CONFIG.replace("{security}", &transport),
    );
    for _ in 0..10 {
        drop(std::net::TcpStream::connect(weir.addr()).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    let warns = weir.warnings();
    assert!(warns.is_empty(), "{warns:?}");
}

#[test]
fn pid_file_is_written_while_running_and_removed_at_exit() {
    let dir = Scratch::new("pid-file");
    // No source: no port to pick, so no other test can take it first.
    let conf = dir.write("weir.conf", "<match **>\n @type null\n</match>\n");
    let pid_file = dir.path().join("weir.pid");
    let mut child = Command::new(weir_bin())
        .args(["run", "-c"])
        .arg(&conf)
        .arg("--pid-file")
        .arg(&pid_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting weir");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !pid_file.exists() {
        assert!(std::time::Instant::now() < deadline, "no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), child.id().to_string());
    // SIGHUP reloads the config; it does not stop weir.
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP must not stop weir"
    );
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success());
    assert!(!pid_file.exists(), "the pid file is removed at exit");
}

#[test]
fn a_forward_port_whose_udp_half_is_taken_stops_start_up_and_frees_the_tcp_half() {
    let dir = Scratch::new("udp-taken");
    // A port free for TCP, whose UDP half the test then holds: weir's heartbeat socket
    // cannot bind it. Another test can take the TCP half before weir binds it; weir then
    // fails on TCP instead, and another port is tried.
    let mut attempts = 0;
    let (port, err, _udp) = loop {
        attempts += 1;
        let port = weir_e2e::free_port();
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let conf = dir.write(
            "weir.conf",
            STDOUT_CONFIG
                .replace("{security}", "")
                .replace("{port}", &port.to_string()),
        );
        let (ok, _, err) = run_with_timeout(
            Command::new(weir_bin()).args(["run", "-c"]).arg(&conf),
            Duration::from_secs(20),
        );
        assert!(!ok, "weir must not run without its heartbeat port: {err}");
        if attempts < 5 && err.contains("(tcp): Address already in use") {
            continue;
        }
        break (port, err, udp);
    };
    // One line naming the source, the address and the protocol, with the cause said once.
    let error = format!(
        "weir: source forward#0: cannot listen on 127.0.0.1:{port} (udp): Address already in use"
    );
    assert!(err.contains(&error), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    // Nothing of weir's is left on the TCP port.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}
