//! The webhook output end to end: a real weir process posts alerts to a local HTTP server
//! that records every request. A grep filter selects the error records, as an operator would;
//! the tests check the Slack payload, retries after 500 and 429 (with Retry-After), and the
//! rate limit that keeps the excess in the buffer, across restarts, without repeating a message.

mod hook_server;

use std::time::Duration;

use hook_server::{Answer, HookServer};
use weir_e2e::{send_json_acked, Weir};

/// Sends `records` (JSON) under `tag` in one forward request and waits for the ack.
fn send(weir: &Weir, tag: &str, records: &[&str]) {
    assert_eq!(
        send_json_acked(weir, tag, "c1", records).expect("an ack"),
        "c1",
        "weir's log:\n{}",
        weir.stderr_lines().join("\n")
    );
}

fn config(hook: &HookServer, extra: &str, buffer: &str) -> String {
    format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{port}}
</source>
<filter app.**>
  @type grep
  <regexp>
    key level
    pattern /^(error|fatal)$/
  </regexp>
</filter>
<match app.**>
  @type webhook
  webhook_url {url}
  {extra}
  <buffer>
    {buffer}
  </buffer>
</match>
"#,
        url = hook.url()
    )
}

fn log(weir: &Weir) -> String {
    weir.stderr_lines().join("\n")
}

#[test]
fn error_records_reach_the_webhook_as_one_slack_message() {
    let hook = HookServer::start();
    let weir = Weir::start(
        "webhook-deliver",
        &config(
            &hook,
            "channel alerts\n  username weir\n  icon_emoji :rotating_light:\n  message '*${tag}* ${record[\"host\"]}: ${message}'",
            "flush_interval 1s",
        ),
    );
    send(
        &weir,
        "app.web",
        &[
            r#"{"level":"info","host":"web1","message":"started"}"#,
            r#"{"level":"error","host":"web1","message":"disk full <100MB> & falling"}"#,
            r#"{"level":"warn","host":"web1","message":"slow"}"#,
            r#"{"level":"fatal","host":"web2","message":"out of memory"}"#,
        ],
    );
    let reqs = hook.wait_for(1, Duration::from_secs(30));
    assert_eq!(reqs.len(), 1, "weir's log:\n{}", log(&weir));
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/services/T0001/B0001/SeCrEtToKeN");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({
            "channel": "#alerts",
            "username": "weir",
            "icon_emoji": ":rotating_light:",
            "text": "*app.web* web1: disk full &lt;100MB&gt; &amp; falling\n*app.web* web2: out of memory",
            "mrkdwn": true
        })
    );
    // Nothing more: the info and warn records were filtered out, the chunk was delivered once.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.requests().len(), 1);
    assert!(
        !log(&weir).contains("SeCrEtToKeN"),
        "the webhook URL is a secret:\n{}",
        log(&weir)
    );
}

#[test]
fn fluent_plugin_slack_message_keys_and_color() {
    let hook = HookServer::start();
    let weir = Weir::start(
        "webhook-slack-keys",
        &config(
            &hook,
            "message %s [%s] %s\n  message_keys tag,level,message\n  color danger\n  max_records_per_message 1",
            "flush_interval 1s",
        ),
    );
    send(
        &weir,
        "app.db",
        &[
            r#"{"level":"error","message":"deadlock"}"#,
            r#"{"level":"error","message":"timeout"}"#,
        ],
    );
    let reqs = hook.wait_for(2, Duration::from_secs(30));
    assert_eq!(reqs.len(), 2, "weir's log:\n{}", log(&weir));
    let texts: Vec<serde_json::Value> = reqs.iter().map(|r| r.json()).collect();
    assert_eq!(
        texts[0],
        serde_json::json!({"attachments": [{"fallback": "app.db [error] deadlock", "text": "app.db [error] deadlock", "color": "danger", "mrkdwn_in": ["text"]}], "mrkdwn": true})
    );
    assert_eq!(texts[1]["attachments"][0]["text"], "app.db [error] timeout");
}

#[test]
fn a_500_is_retried_through_the_buffer() {
    let hook = HookServer::start();
    hook.script([Answer::status(500)]);
    let weir = Weir::start(
        "webhook-500",
        &config(
            &hook,
            "",
            "flush_interval 1s\n    retry_wait 1s\n    retry_randomize false",
        ),
    );
    send(&weir, "app.web", &[r#"{"level":"error","message":"boom"}"#]);
    let reqs = hook.wait_for(2, Duration::from_secs(30));
    assert_eq!(reqs.len(), 2, "weir's log:\n{}", log(&weir));
    assert_eq!(reqs[0].body, reqs[1].body, "the same message again");
    assert_eq!(reqs[1].json()["text"], "boom");
    assert!(
        weir.wait_log("answered 500", Duration::from_secs(5))
            .is_some(),
        "{}",
        log(&weir)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hook.requests().len(),
        2,
        "delivered once the server said 200"
    );
}

#[test]
fn a_429_waits_for_its_retry_after() {
    let hook = HookServer::start();
    hook.script([Answer {
        status: 429,
        headers: vec![("Retry-After".into(), "3".into())],
    }]);
    let weir = Weir::start(
        "webhook-429",
        &config(
            &hook,
            "",
            "flush_interval 1s\n    retry_wait 1s\n    retry_randomize false",
        ),
    );
    send(
        &weir,
        "app.web",
        &[r#"{"level":"error","message":"slow down"}"#],
    );
    let reqs = hook.wait_for(2, Duration::from_secs(30));
    assert_eq!(reqs.len(), 2, "weir's log:\n{}", log(&weir));
    // retry_wait alone would retry after 1 s; Retry-After asked for 3.
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(2900), "retried after {gap:?}");
    assert_eq!(reqs[1].json()["text"], "slow down");
    assert!(
        weir.wait_log("429 Too Many Requests", Duration::from_secs(5))
            .is_some(),
        "{}",
        log(&weir)
    );
}

#[test]
fn the_rate_limit_keeps_the_rest_in_the_buffer_across_restarts() {
    let hook = HookServer::start();
    // One message a minute, one record a message: three records make three messages. A file
    // buffer keeps the chunk, and how many of its messages were sent, across restarts.
    let mut weir = Weir::start(
        "webhook-rate",
        &config(
            &hook,
            "rate_limit_per_minute 1\n  max_records_per_message 1",
            "@type file\n    path {dir}/buffer\n    flush_interval 1s\n    retry_wait 1s\n    retry_randomize false",
        ),
    );
    send(
        &weir,
        "app.web",
        &[
            r#"{"level":"error","message":"one"}"#,
            r#"{"level":"error","message":"two"}"#,
            r#"{"level":"error","message":"three"}"#,
        ],
    );
    let texts = |hook: &HookServer| -> Vec<String> {
        hook.requests()
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(hook.wait_for(1, Duration::from_secs(30)).len(), 1);
    assert!(
        weir.wait_log("rate limit", Duration::from_secs(30))
            .is_some(),
        "{}",
        log(&weir)
    );
    assert_eq!(texts(&hook), ["one"], "the second message waits");

    // Each new process starts a new rate window: the next message goes, not the first again.
    for (round, want) in [(1, vec!["one", "two"]), (2, vec!["one", "two", "three"])] {
        weir.signal("TERM");
        assert!(
            weir.wait_exit(Duration::from_secs(60))
                .is_some_and(|s| s.success()),
            "{}",
            log(&weir)
        );
        weir.respawn();
        let n = want.len();
        assert_eq!(
            hook.wait_for(n, Duration::from_secs(30)).len(),
            n,
            "round {round}: {}",
            log(&weir)
        );
        if n < 3 {
            assert!(
                weir.wait_log("rate limit", Duration::from_secs(30))
                    .is_some(),
                "{}",
                log(&weir)
            );
        }
        assert_eq!(texts(&hook), want, "round {round}");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(texts(&hook), ["one", "two", "three"], "nothing repeated");
}
