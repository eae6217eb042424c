//! Routing end to end: real forward requests into weir with filters, labels, copy, relabel and
//! rewrite_tag_filter, asserting the exact records weir prints and that acks wait for them.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use weir_e2e::{python, run_with_timeout, send_json_acked, Weir};

/// Sends one Forward-mode request with an ack and waits for the ack.
fn send(weir: &Weir, tag: &str, records: &[&str]) {
    let ack = send_json_acked(weir, tag, "c1", records);
    assert_eq!(
        ack.expect("weir closed the connection without an ack"),
        "c1"
    );
}

const TIME: &str = "2023-11-14 22:13:20.000000000 +0000";

/// One stream carrying access, error and application logs, split by `rewrite_tag_filter` into
/// three tags; error and application logs also go to an alert pipeline through `copy` and
/// `@label`, where only errors pass and get an alert tag.
const SPLIT_CONFIG: &str = r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<filter blog.**>
  @type grep
  <exclude>
    key path
    pattern ^/health$
  </exclude>
</filter>
<match blog.**>
  @type rewrite_tag_filter
  <rule>
    key kind
    pattern ^(access|error|app)$
    tag $1.${tag_parts[1]}
  </rule>
</match>
<match access.**>
  @type stdout
</match>
<match {error,app}.**>
  @type copy
  <store>
    @type stdout
  </store>
  <store>
    @type relabel
    @label @ALERT
  </store>
</match>
<label @ALERT>
  <filter **>
    @type grep
    <regexp>
      key level
      pattern /^(error|fatal)$/i
    </regexp>
  </filter>
  <filter **>
    @type record_transformer
    remove_keys kind
    <record>
      alert_tag ${tag}
      source ${tag_parts[-1]}
    </record>
  </filter>
  <match **>
    @type stdout
  </match>
</label>
"#;

/// What the split config receives under the tag `blog.web`.
const SPLIT_RECORDS: &[&str] = &[
    r#"{"kind":"access","path":"/index"}"#,
    r#"{"kind":"access","path":"/health"}"#,
    r#"{"kind":"error","level":"ERROR","msg":"boom"}"#,
    r#"{"kind":"app","level":"info","msg":"started"}"#,
    r#"{"kind":"debug","msg":"dropped: no rule"}"#,
];

/// What weir prints for [`SPLIT_RECORDS`], sorted.
fn split_expected() -> Vec<String> {
    let mut expected = vec![
        format!(r#"{TIME} access.web: {{"kind":"access","path":"/index"}}"#),
        format!(r#"{TIME} error.web: {{"kind":"error","level":"ERROR","msg":"boom"}}"#),
        format!(r#"{TIME} app.web: {{"kind":"app","level":"info","msg":"started"}}"#),
        format!(
            r#"{TIME} error.web: {{"level":"ERROR","msg":"boom","alert_tag":"error.web","source":"web"}}"#
        ),
    ];
    expected.sort();
    expected
}

#[test]
fn split_by_rewrite_tag_filter_and_alert_through_copy_and_label() {
    let weir = Weir::start("routing_split", SPLIT_CONFIG);
    send(&weir, "blog.web", SPLIT_RECORDS);
    // The ack came after every output accepted, so the lines are already printed.
    let mut lines = weir.wait_stdout(4, Duration::from_secs(10));
    lines.sort();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(weir.stdout_lines().len(), 4, "{:?}", weir.stdout_lines());
    assert_eq!(lines, split_expected());
}

#[test]
fn split_and_alert_with_the_python_fluent_logger() {
    let weir = Weir::start("routing_split_py", SPLIT_CONFIG);
    let events: Vec<serde_json::Value> = SPLIT_RECORDS
        .iter()
        .map(|r| {
            json!({"label": "web", "sec": 1_700_000_000u64, "nsec": 0,
                   "record": serde_json::from_str::<serde_json::Value>(r).unwrap()})
        })
        .collect();
    let spec = json!({"host": "127.0.0.1", "port": weir.port, "tag_prefix": "blog", "nanosecond": true, "events": events});
    let (ok, out, err) = run_with_timeout(
        Command::new(python())
            .arg(weir_e2e::root().join("tests/clients/py_send.py"))
            .arg(spec.to_string()),
        Duration::from_secs(30),
    );
    assert!(ok, "python client failed:\n{out}\n{err}");
    let mut lines = weir.wait_stdout(4, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(weir.stdout_lines().len(), 4, "{:?}", weir.stdout_lines());
    lines.sort();
    assert_eq!(lines, split_expected());
}

#[test]
fn parser_errors_go_to_error_label_and_unmatched_tags_warn_once() {
    let weir = Weir::start(
        "routing_error_label",
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
  @label @IN
</source>
<label @IN>
  <filter raw.**>
    @type parser
    key_name log
    reserve_time true
    <parse>
      @type ltsv
    </parse>
  </filter>
  <match raw.**>
    @type stdout
  </match>
</label>
<label @ERROR>
  <match **>
    @type stdout
  </match>
</label>
"#,
    );
    send(
        &weir,
        "raw.app",
        &[r#"{"log":"a:1\tb:2"}"#, r#"{"nolog":1}"#],
    );
    send(&weir, "other", &[r#"{"x":1}"#]);
    send(&weir, "other", &[r#"{"x":2}"#]);
    let lines = weir.wait_stdout(2, Duration::from_secs(10));
    assert_eq!(
        lines,
        vec![
            format!(r#"{TIME} raw.app: {{"nolog":1}}"#),
            format!(r#"{TIME} raw.app: {{"a":"1","b":"2"}}"#),
        ]
    );
    assert!(weir
        .wait_log("no patterns matched", Duration::from_secs(5))
        .is_some());
    let warned = weir
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("no patterns matched"))
        .count();
    assert_eq!(warned, 1);
}

#[test]
fn a_rewrite_loop_is_cut_and_still_acked() {
    let weir = Weir::start(
        "routing_loop",
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {port}
</source>
<match a b>
  @type rewrite_tag_filter
  <rule>
    key k
    pattern .
    tag ${tag}x
  </rule>
</match>
<match **>
  @type rewrite_tag_filter
  <rule>
    key k
    pattern .
    tag a
  </rule>
</match>
"#,
    );
    send(&weir, "a", &[r#"{"k":"v"}"#]);
    assert!(weir
        .wait_log("re-emitted too many times", Duration::from_secs(5))
        .is_some());
}
