//! The admin endpoint end to end: a real weir with `<source> @type monitor_agent`, loaded by
//! real clients, read over HTTP. Metric values after a known load, the shape of
//! `/api/plugins.json` and its queries, `flushBuffers` making the file appear, the access token
//! beyond loopback, the RPC endpoint, `weir flush`, and `/healthz` turning 503 while the
//! store's disk is full and 200 again when space returns.

mod admin_client;

use std::process::Command;
use std::time::Duration;

use admin_client::{get, metrics_when, post, sample, wait_lines};
use serde_json::{json, Value};
use weir_e2e::{
    python, record, run_with_timeout, weir_bin, with_chunk, RawClient, Scratch, TmpfsMount, Weir,
};
use weir_proto::{encode_forward, EventTime};

/// Sends one Forward request of `n` events under `tag` asking for an ack; true when acked.
fn send_acked(weir: &Weir, tag: &str, chunk: &str, n: usize) -> bool {
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            record(&format!(
                r#"{{"id":"{chunk}-{i}","pad":"{}"}}"#,
                "x".repeat(100)
            ))
        })
        .collect();
    let entries: Vec<(EventTime, &[u8])> = records
        .iter()
        .map(|r| (EventTime::new(1_700_000_000, 0), r.as_slice()))
        .collect();
    let mut c = RawClient::connect(weir);
    if !c.try_send(&encode_forward(tag, &entries, &with_chunk(chunk))) {
        return false;
    }
    c.try_ack().is_some_and(|a| a == chunk.as_bytes())
}

/// Sends events with the real Python fluent-logger: `n` events under `tag_prefix.label`.
fn python_send(weir: &Weir, tag_prefix: &str, label: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            json!({"label": label, "record": {"id": format!("py{label}{i}"), "msg": "hello"},
                   "sec": 1_700_000_000u32, "nsec": 0})
        })
        .collect();
    let spec = json!({"host": "127.0.0.1", "port": weir.port, "tag_prefix": tag_prefix,
                      "nanosecond": true, "events": events});
    let script = weir_e2e::root().join("tests/clients/py_send.py");
    let (ok, out, err) = run_with_timeout(
        Command::new(python()).arg(script).arg(spec.to_string()),
        Duration::from_secs(60),
    );
    assert!(ok, "python client failed:\n{out}\n{err}");
}

const LOAD_CONFIG: &str = r#"
<source>
  @type forward
  @id in_fwd
  bind 127.0.0.1
  port {port}
</source>
<source>
  @type monitor_agent
  @id monitor
  port {port:admin}
</source>
<filter app.**>
  @type record_transformer
  @id add_host
  <record>
    host test
  </record>
</filter>
<match app.**>
  @type file
  @id out_file
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
<match other.**>
  @type null
  @id out_null
</match>
"#;

/// N events from the Python fluent-logger and a few acked requests: every counter says exactly
/// what was sent, plugins.json has Fluentd's shape, and flushBuffers writes the file.
#[test]
fn metrics_and_plugins_after_a_known_load_and_flush_buffers() {
    let weir = Weir::start("admin-load", LOAD_CONFIG);
    let admin = weir.named_port("admin");
    const PY: usize = 300;
    const ACKED_REQUESTS: usize = 3;
    const PER_REQUEST: usize = 10;
    python_send(&weir, "app", "web", PY);
    python_send(&weir, "other", "x", 20);
    for i in 0..ACKED_REQUESTS {
        assert!(
            send_acked(&weir, "app.api.v1", &format!("c{i}"), PER_REQUEST),
            "request {i} was not acked"
        );
    }
    let app_events = PY + ACKED_REQUESTS * PER_REQUEST;
    let app = app_events as f64;
    fn src(prefix: &str) -> [(&'static str, &str); 2] {
        [("source", "in_fwd"), ("tag_prefix", prefix)]
    }
    let text = metrics_when(admin, None, |t| {
        sample(t, "weir_source_events_total", &src("app.web")) >= Some(PY as f64)
            && sample(t, "weir_source_events_total", &src("other.x")) >= Some(20.0)
    });
    let out_file = [("plugin_id", "out_file"), ("type", "file")];
    let out_null = [("plugin_id", "out_null"), ("type", "null")];
    for (name, labels, want) in [
        ("weir_source_events_total", &src("app.web")[..], PY as f64),
        ("weir_source_events_total", &src("other.x")[..], 20.0),
        (
            "weir_source_events_total",
            &src("app.api")[..],
            (ACKED_REQUESTS * PER_REQUEST) as f64,
        ),
        ("fluentd_output_status_emit_records", &out_file[..], app),
        ("fluentd_output_status_emit_records", &out_null[..], 20.0),
        ("weir_output_emit_records_total", &out_file[..], app),
        (
            "weir_forward_acks_sent_total",
            &[("source", "in_fwd")][..],
            ACKED_REQUESTS as f64,
        ),
        (
            "weir_forward_acks_refused_total",
            &[("source", "in_fwd")][..],
            0.0,
        ),
        ("fluentd_output_status_write_count", &out_file[..], 0.0),
        ("fluentd_output_status_retry_count", &out_file[..], 0.0),
        ("weir_pipeline_unmatched_events_total", &[][..], 0.0),
        ("weir_healthy", &[][..], 1.0),
    ] {
        assert_eq!(
            sample(&text, name, labels),
            Some(want),
            "{name}{labels:?} in:\n{text}"
        );
    }
    let buffered =
        sample(&text, "fluentd_output_status_buffer_total_bytes", &out_file).unwrap_or(0.0);
    assert!(buffered > 0.0, "the buffer holds the events:\n{text}");
    let commits = sample(
        &text,
        "weir_buffer_commit_duration_seconds_count",
        &[("plugin_id", "out_file")],
    )
    .unwrap_or(0.0);
    assert!(commits >= 1.0, "every commit is timed:\n{text}");
    assert!(
        text.contains("# TYPE weir_buffer_commit_duration_seconds histogram"),
        "{text}"
    );

    // plugins.json: Fluentd's field names, inputs, filters and outputs.
    let r = get(admin, "/api/plugins.json", None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let plugins = r.json()["plugins"].as_array().cloned().unwrap_or_default();
    let by_id = |id: &str| {
        plugins
            .iter()
            .find(|p| p["plugin_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no plugin {id} in {plugins:?}"))
    };
    let fwd = by_id("in_fwd");
    assert_eq!(fwd["plugin_category"], "input");
    assert_eq!(fwd["type"], "forward");
    assert_eq!(fwd["output_plugin"], false);
    assert_eq!(fwd["retry_count"], Value::Null);
    assert_eq!(
        fwd["emit_records"],
        json!(PY + 20 + ACKED_REQUESTS * PER_REQUEST)
    );
    assert_eq!(fwd["config"]["port"], json!(weir.port.to_string()));
    assert_eq!(by_id("monitor")["type"], "monitor_agent");
    let filter = by_id("add_host");
    assert_eq!(filter["plugin_category"], "filter");
    assert_eq!(filter["emit_records"], json!(app_events));
    let out = by_id("out_file");
    for (k, v) in [
        ("plugin_category", json!("output")),
        ("type", json!("file")),
        ("output_plugin", json!(true)),
        ("buffer_queue_length", json!(0)),
        ("buffer_stage_length", json!(2)),
        ("retry_count", json!(0)),
        ("emit_records", json!(app_events)),
        ("write_count", json!(0)),
        ("rollback_count", json!(0)),
        ("retry", json!({})),
    ] {
        assert_eq!(out[k], v, "{k} in {out}");
    }
    // One emit per request: the Python client's requests (any number) and the acked ones.
    let emits = out["emit_count"].as_u64().unwrap_or(0);
    assert!(emits > ACKED_REQUESTS as u64, "emit_count {emits}");
    assert_eq!(out["buffer_timekeys"], json!([]));
    assert!(out["buffer_total_queued_size"].as_u64().unwrap_or(0) > 0);
    assert_eq!(out["buffer_available_buffer_space_ratios"], json!(100.0));
    assert_eq!(
        out["config"]["path"],
        json!(format!("{}/out/${{tag}}", weir.dir.path().display()))
    );
    // The order of plugins: inputs, filters, outputs.
    let ids: Vec<&str> = plugins
        .iter()
        .filter_map(|p| p["plugin_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["in_fwd", "monitor", "add_host", "out_file", "out_null"]
    );

    // Queries, as monitor_agent reads them.
    let ids_of = |path: &str| -> Vec<String> {
        get(admin, path, None).json()["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["plugin_id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ids_of("/api/plugins.json?@id=out_null"), ["out_null"]);
    assert_eq!(ids_of("/api/plugins.json?%40type=file"), ["out_file"]);
    assert_eq!(ids_of("/api/plugins.json?tag=app.zzz"), ["out_file"]);
    assert!(ids_of("/api/plugins.json?tag=nothing.matches").is_empty());
    let bare = get(
        admin,
        "/api/plugins.json?with_config=false&with_retry=false",
        None,
    )
    .json();
    assert!(bare["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|p| p.get("config").is_none() && p.get("retry").is_none()));
    assert_eq!(
        get(admin, "/api/plugins.json?with_config=maybe", None).status,
        400
    );
    let ltsv = get(admin, "/api/plugins", None);
    assert_eq!(ltsv.status, 200);
    let row = ltsv
        .body
        .lines()
        .find(|l| l.starts_with("plugin_id:out_file\t"))
        .unwrap_or_else(|| panic!("no out_file row in:\n{}", ltsv.body));
    assert!(row.contains("\tplugin_category:output\t"), "{row}");
    assert!(
        row.contains(&format!("\temit_records:{app_events}")),
        "{row}"
    );
    assert!(
        !row.contains("config:"),
        "objects are left out of LTSV: {row}"
    );
    let config = get(admin, "/api/config.json", None).json();
    assert_eq!(config["pid"], json!(weir.pid()));

    // flushBuffers writes the buffered events out now.
    let r = post(admin, "/api/plugins.flushBuffers", None);
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    let out_dir = weir.dir.path().join("out");
    let lines = wait_lines(&out_dir, app_events);
    assert_eq!(lines.len(), app_events, "every app event is written once");
    assert!(lines.iter().all(|l| l.contains("host:test")));
    let text = metrics_when(admin, None, |t| {
        sample(t, "fluentd_output_status_buffer_total_bytes", &out_file) == Some(0.0)
    });
    let writes = sample(&text, "fluentd_output_status_write_count", &out_file).unwrap_or(0.0);
    assert!(writes >= 1.0, "{text}");
    assert_eq!(
        sample(&text, "weir_output_write_duration_seconds_count", &out_file),
        Some(writes)
    );
    assert_eq!(
        sample(&text, "weir_output_write_errors_total", &out_file),
        Some(0.0)
    );

    let h = get(admin, "/healthz", None);
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
}

/// Runs `weir check` on `config` with extra environment variables; returns (ok, stderr).
fn check(dir: &Scratch, config: &str, env: &[(&str, &str)]) -> (bool, String) {
    let path = dir.write("check.conf", config);
    let mut cmd = Command::new(weir_bin());
    cmd.arg("check")
        .arg("-c")
        .arg(&path)
        .env_remove("WEIR_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (ok, _, err) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    (ok, err)
}

/// Beyond loopback the endpoint needs a token: start-up refuses a config without one (naming
/// the file, line and parameter), and every request but /healthz must carry it.
#[test]
fn token_required_beyond_loopback() {
    let dir = Scratch::new("admin-token-check");
    let open = "<source>\n  @type monitor_agent\n  bind 0.0.0.0\n  port 24220\n</source>\n";
    let (ok, err) = check(&dir, open, &[]);
    assert!(!ok, "a monitor_agent on 0.0.0.0 without a token is refused");
    assert!(
        err.contains("check.conf:3") && err.contains("bind") && err.contains("token"),
        "the error names the file, line and parameter: {err}"
    );
    let (ok, err) = check(&dir, open, &[("WEIR_ADMIN_TOKEN", "from-env")]);
    assert!(ok, "WEIR_ADMIN_TOKEN gives the token: {err}");
    let rpc = "<system>\n  rpc_endpoint 0.0.0.0:24444\n</system>\n";
    let (ok, err) = check(&dir, rpc, &[]);
    assert!(
        !ok && err.contains("check.conf:2") && err.contains("rpc_endpoint"),
        "{err}"
    );
    let (ok, err) = check(&dir, "<system>\n  rpc_endpoint no-port\n</system>\n", &[]);
    assert!(!ok && err.contains("Invalid rpc_endpoint"), "{err}");

    let config = r#"
<system>
  rpc_endpoint 127.0.0.1:{port:rpc}
</system>
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<source>
  @type monitor_agent
  bind 0.0.0.0
  port {port:admin}
  token s3cret
</source>
<match **>
  @type null
</match>
"#;
    let weir = Weir::start("admin-token", config);
    let (admin, rpc) = (weir.named_port("admin"), weir.named_port("rpc"));
    for path in [
        "/api/plugins.json",
        "/api/plugins",
        "/metrics",
        "/api/config.json",
    ] {
        let r = get(admin, path, None);
        assert_eq!(r.status, 401, "{path} without the token: {}", r.body);
        assert_eq!(
            r.headers.get("www-authenticate").map(String::as_str),
            Some("Bearer")
        );
        assert_eq!(get(admin, path, Some("wrong")).status, 401, "{path}");
        assert_eq!(get(admin, path, Some("s3cret")).status, 200, "{path}");
    }
    assert_eq!(post(admin, "/api/plugins.flushBuffers", None).status, 401);
    assert_eq!(
        get(admin, "/api/tail", None).status,
        401,
        "the live tail too"
    );
    assert_eq!(
        get(admin, "/healthz", None).status,
        200,
        "health stays open"
    );

    // The RPC endpoint takes the same token, and serves only the calls.
    assert_eq!(post(rpc, "/api/plugins.flushBuffers", None).status, 401);
    let r = post(rpc, "/api/plugins.flushBuffers", Some("s3cret"));
    assert_eq!((r.status, r.json()), (200, json!({"ok": true})));
    assert_eq!(get(rpc, "/api/plugins.json", Some("s3cret")).status, 404);

    // weir flush calls the endpoint with the token.
    let flush = |token: Option<&str>| {
        let mut cmd = Command::new(weir_bin());
        cmd.args(["flush", "--addr", &format!("127.0.0.1:{admin}")])
            .env_remove("WEIR_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("WEIR_ADMIN_TOKEN", t);
        }
        run_with_timeout(&mut cmd, Duration::from_secs(30))
    };
    let (ok, out, err) = flush(Some("s3cret"));
    assert!(ok && out.contains(r#"{"ok":true}"#), "{out}\n{err}");
    let (ok, _, err) = flush(None);
    assert!(!ok && err.contains("401"), "{err}");
    assert!(weir.warnings().is_empty(), "{:?}", weir.warnings());
}

// ---------------------------------------------------------------------------------------------
// Health while the store's disk is full
// ---------------------------------------------------------------------------------------------

/// `/healthz` answers 503 (naming the full disk) once the file buffer's disk is full, and 200
/// again when space returns, without any new event arriving.
#[test]
fn healthz_is_503_while_the_store_is_full_and_200_when_space_returns() {
    let mount_root = Scratch::new("admin-health-tmpfs");
    let fs_dir = mount_root.path().join("fs");
    let Some(_mount) = TmpfsMount::mount_or_skip(&fs_dir, "2m") else {
        return;
    };
    let filler = fs_dir.join("filler");
    std::fs::write(&filler, vec![0u8; 1536 * 1024]).unwrap();
    let config = LOAD_CONFIG.replace(
        "path {dir}/buffer",
        &format!("path {}/buf", fs_dir.display()),
    );
    let weir = Weir::start("admin-health", &config);
    let admin = weir.named_port("admin");
    assert_eq!(get(admin, "/healthz", None).status, 200);

    let mut refused = false;
    for i in 0..2000 {
        if !send_acked(&weir, "app.fill", &format!("f{i}"), 20) {
            refused = true;
            break;
        }
    }
    assert!(refused, "2000 requests (5 MB) cannot fit on a 2 MiB tmpfs");
    let h = get(admin, "/healthz", None);
    assert_eq!(h.status, 503, "health while the disk is full: {}", h.body);
    let lower = h.body.to_lowercase();
    assert!(
        lower.contains("out_file") && (lower.contains("disk full") || lower.contains("no space")),
        "the reason names the output and the full disk: {}",
        h.body
    );
    let text = get(admin, "/metrics", None).body;
    assert_eq!(sample(&text, "weir_healthy", &[]), Some(0.0), "{text}");
    assert!(
        sample(
            &text,
            "weir_forward_acks_refused_total",
            &[("source", "in_fwd")]
        ) >= Some(1.0),
        "{text}"
    );
    // Still 503 on a second look: nothing has changed.
    assert_eq!(get(admin, "/healthz", None).status, 503);

    // Space returns: health recovers with no event sent.
    std::fs::remove_file(&filler).unwrap();
    let h = get(admin, "/healthz", None);
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    assert!(
        send_acked(&weir, "app.after", "after", 5),
        "takes data again"
    );
}

/// From the moment shutdown begins, `/healthz` answers 503 while connections drain, so a load
/// balancer stops sending; the request in progress still gets its ack.
#[test]
fn healthz_is_503_while_shutting_down() {
    let config = r#"
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
<match **>
  @type null
</match>
"#;
    let mut weir = Weir::start("admin-shutdown", config);
    let admin = weir.named_port("admin");
    let r = record(r#"{"a":1}"#);
    let request = |chunk: &str| {
        encode_forward(
            "t",
            &[(EventTime::new(1_700_000_000, 0), r.as_slice())],
            &with_chunk(chunk),
        )
    };
    // A whole request first, so the connection's reader is running; then half of another,
    // which shutdown must wait for.
    let mut c = RawClient::connect(&weir);
    c.send(&request("whole"));
    assert_eq!(c.ack().as_deref(), Some(&b"whole"[..]));
    let bytes = request("half");
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    c.send(first);
    // Weir::start's probe connection may still be closing: wait for it to be gone.
    let open =
        |t: &str| sample(t, "weir_forward_connections_open", &[("source", "in_fwd")]) == Some(1.0);
    let text = metrics_when(admin, None, open);
    assert_eq!(
        sample(
            &text,
            "weir_forward_connections_open",
            &[("source", "in_fwd")]
        ),
        Some(1.0)
    );
    assert_eq!(get(admin, "/healthz", None).status, 200);
    weir.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let h = loop {
        let h = get(admin, "/healthz", None);
        if h.status != 200 || std::time::Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        (h.status, h.body.as_str()),
        (503, "unavailable: shutting down\n")
    );
    // The half-sent request is finished and acknowledged; then weir exits.
    c.send(rest);
    assert_eq!(c.ack().as_deref(), Some(&b"half"[..]));
    let status = weir.wait_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

/// monitor_agent's `tag`: its records arrive in the pipeline as events, one per plugin.
#[test]
fn monitor_agent_tag_emits_plugin_records() {
    let config = r#"
<source>
  @type forward
  @id in_fwd
  bind 127.0.0.1
  port {port}
</source>
<source>
  @type monitor_agent
  @id monitor
  port {port:admin}
  tag weir.monitor
  emit_interval 1s
</source>
<match weir.monitor>
  @type stdout
  @id out_stdout
</match>
"#;
    let weir = Weir::start("admin-emit", config);
    let lines = weir.wait_stdout(3, Duration::from_secs(60));
    let first: Vec<&String> = lines.iter().take(3).collect();
    for (line, id) in first.iter().zip(["in_fwd", "monitor", "out_stdout"]) {
        assert!(
            line.contains("weir.monitor: ") && line.contains(&format!("\"plugin_id\":\"{id}\"")),
            "{line}"
        );
        assert!(
            !line.contains("\"config\""),
            "records leave config out: {line}"
        );
    }
}
