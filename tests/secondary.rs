//! `<secondary>` end to end: a primary that always fails hands its chunk to the secondary
//! once `retry_secondary_threshold` of its retry time has passed; `secondary_file` writes it
//! as the primary would have (its format, or msgpack for a primary without one); when the
//! secondary fails too, the chunk ends in the buffer's `failed/` when retries run out. And
//! Fluentd's configuration rules for `<secondary>`, through `weir check`.

mod hook_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hook_server::{Answer, HookServer};
use weir_e2e::{root, send_json_acked, weir_bin, Scratch, Weir};

const T: u32 = 1_700_000_000;

fn send(weir: &Weir, tag: &str, records: &[&str]) {
    assert_eq!(
        send_json_acked(weir, tag, "s1", records).expect("an ack"),
        "s1"
    );
}

fn log(weir: &Weir) -> String {
    weir.stderr_lines().join("\n")
}

/// Waits (up to 60 s) until `path` exists and is not empty.
fn wait_file(path: &Path, weir: &Weir) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(b) = std::fs::read(path) {
            if !b.is_empty() {
                return b;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} was not written; weir's log:\n{}",
        path.display(),
        log(weir)
    );
}

/// The files directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

const RETRIES: &str = "flush_interval 1s
    retry_wait 1s
    retry_randomize false
    retry_timeout 6s
    retry_secondary_threshold 0.5";

#[test]
fn a_failing_webhook_hands_its_chunk_to_secondary_file_as_msgpack() {
    let hook = HookServer::start();
    hook.always(Answer::status(500));
    let config = format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{port}}
</source>
<match app.**>
  @type webhook
  webhook_url {url}
  message "${{tag}}: ${{message}}"
  <buffer>
    @type file
    path {{dir}}/buffer
    {RETRIES}
  </buffer>
  <secondary>
    @type secondary_file
    directory {{dir}}/dump
    basename ${{tag}}.bin
  </secondary>
</match>
"#,
        url = hook.url()
    );
    let weir = Weir::start("secondary-webhook", &config);
    send(
        &weir,
        "app.web",
        &[r#"{"message":"one","n":1}"#, r#"{"message":"two","n":2}"#],
    );
    let dump = weir.dir.path().join("dump/app.web.bin.0");
    let bytes = wait_file(&dump, &weir);
    // A msgpack stream of [EventTime, record] entries.
    let mut rd = &bytes[..];
    let mut got = Vec::new();
    while !rd.is_empty() {
        let v = rmpv::decode::read_value(&mut rd).expect("msgpack");
        let arr = v.as_array().expect("an entry").clone();
        assert_eq!(arr.len(), 2);
        match &arr[0] {
            rmpv::Value::Ext(0, data) => assert_eq!(&data[..4], &T.to_be_bytes()),
            other => panic!("time is {other:?}"),
        }
        got.push(arr[1].to_string());
    }
    assert_eq!(
        got,
        [
            r#"{"message": "one", "n": 1}"#,
            r#"{"message": "two", "n": 2}"#
        ]
    );
    assert!(
        !hook.requests().is_empty(),
        "the primary was tried first:\n{}",
        log(&weir)
    );
    assert!(weir
        .wait_log(
            "chunk written to the secondary file",
            Duration::from_secs(5)
        )
        .is_some());
    assert!(
        !log(&weir).contains("Use different plugin"),
        "secondary_file needs no warning"
    );
    assert!(files_in(&weir.dir.path().join("buffer/failed")).is_empty());
}

#[test]
fn a_failing_file_output_hands_its_chunk_to_secondary_file_in_its_format() {
    let config = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match app.**>
  @type file
  path {dir}/blocked/out
  <format>
    @type ltsv
  </format>
  <buffer>
    @type file
    path {dir}/buffer
    flush_mode interval
    flush_interval 1s
    retry_wait 1s
    retry_randomize false
    retry_timeout 6s
    retry_secondary_threshold 0.5
  </buffer>
  <secondary>
    @type secondary_file
    directory {dir}/dump
  </secondary>
</match>
"#;
    let weir = Weir::start("secondary-file", config);
    // The primary's directory cannot be made: a regular file is in the way.
    std::fs::write(weir.dir.path().join("blocked"), "not a directory").expect("writing");
    send(&weir, "app.web", &[r#"{"level":"error","message":"boom"}"#]);
    let bytes = wait_file(&weir.dir.path().join("dump/dump.bin.0"), &weir);
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "level:error\tmessage:boom\n"
    );
    assert!(
        weir.wait_log("failed to flush", Duration::from_secs(5))
            .is_some(),
        "{}",
        log(&weir)
    );
}

#[test]
fn when_the_secondary_fails_too_the_chunk_ends_in_failed() {
    let hook = HookServer::start();
    hook.always(Answer::status(503));
    let config = format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{port}}
</source>
<match app.**>
  @type webhook
  webhook_url {url}
  <buffer>
    @type file
    path {{dir}}/buffer
    {RETRIES}
  </buffer>
  <secondary>
    @type secondary_file
    directory {{dir}}/blocked/dump
  </secondary>
</match>
"#,
        url = hook.url()
    );
    let weir = Weir::start("secondary-exhausted", &config);
    std::fs::write(weir.dir.path().join("blocked"), "not a directory").expect("writing");
    send(&weir, "app.web", &[r#"{"message":"lost?"}"#]);
    assert!(
        weir.wait_log("moved to failed/", Duration::from_secs(60))
            .is_some(),
        "{}",
        log(&weir)
    );
    let failed = files_in(&weir.dir.path().join("buffer/failed"));
    assert!(!failed.is_empty(), "the chunk is kept in failed/");
    assert!(!hook.requests().is_empty());
    assert!(!weir.dir.path().join("blocked/dump").exists());
}

/// `weir check` on a config; returns (success, stderr).
fn check(conf: &str) -> (bool, String) {
    let dir = Scratch::new("secondary-check");
    let path = dir.write(
        "weir.conf",
        conf.replace("{dir}", &dir.path().display().to_string()),
    );
    let out = Command::new(weir_bin())
        .current_dir(root())
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("running weir check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn secondary_configuration_follows_fluentds_rules() {
    // The primary writes JSON without the tag, so `tag` is a chunk key only when configured.
    let file = |buffer: &str, secondary: &str| {
        let path = if buffer.contains("tag") {
            "{dir}/${tag}/out"
        } else {
            "{dir}/out"
        };
        format!(
            "<match a.**>\n  @type file\n  path {path}\n  <format>\n    @type json\n  </format>\n  <buffer {buffer}>\n    timekey 1h\n  </buffer>\n  <secondary>\n{secondary}\n  </secondary>\n</match>\n"
        )
    };
    for (conf, want) in [
        (
            file("time", "@type secondary_file\ndirectory {dir}/d\n<buffer>\n</buffer>"),
            "<secondary> section cannot have <buffer> section",
        ),
        (
            "<match a.**>\n  @type file\n  path {dir}/out\n  <buffer>\n    retry_forever true\n  </buffer>\n  <secondary>\n    @type secondary_file\n    directory {dir}/d\n  </secondary>\n</match>\n".to_string(),
            "<secondary> section and 'retry_forever' are exclusive",
        ),
        (
            file("time", "@type secondary_file\ndirectory {dir}/d\nbasename ${tag}"),
            "incompatible placeholder ${tag}",
        ),
        (
            file("time", "@type secondary_file\ndirectory {dir}/d\nbasename ${host}"),
            "incompatible placeholder host",
        ),
        (
            file("time", "@type secondary_file\nbasename x"),
            "'directory' parameter is required",
        ),
        (
            file("time", "@type stdout"),
            "not supported as <secondary>",
        ),
        (
            "<match a.**>\n  @type secondary_file\n  directory {dir}/d\n</match>\n".to_string(),
            "can only be used in the <secondary> section",
        ),
    ] {
        let (ok, err) = check(&conf);
        assert!(!ok && err.contains(want), "{conf}\n--- stderr:\n{err}");
    }

    // Accepted: placeholders the primary's chunk keys fill; a secondary of the primary's type
    // when @type is left out (with the primary's chunk keys: %Y%m%d%H fits timekey 1h); a
    // different type, with Fluentd's warning.
    for (conf, warn) in [
        (
            file(
                "tag,time",
                "@type secondary_file\ndirectory {dir}/d/%Y%m%d\nbasename ${tag[0]}.${chunk_id}",
            ),
            false,
        ),
        (file("time", "path {dir}/failover/%Y%m%d%H"), false),
        (
            "<match a.**>\n  @type file\n  path {dir}/out\n  <secondary>\n    @type webhook\n    webhook_url https://hooks.example.invalid/x\n  </secondary>\n</match>\n".to_string(),
            true,
        ),
    ] {
        let (ok, err) = check(&conf);
        assert!(ok, "{conf}\n--- stderr:\n{err}");
        assert_eq!(
            err.contains("Use different plugin for secondary"),
            warn,
            "{conf}\n--- stderr:\n{err}"
        );
    }
}
