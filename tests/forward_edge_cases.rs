//! The forward input against hand-made bytes on raw sockets: every way a request can be bad,
//! acks in order, heartbeats, time-outs, limits and graceful shutdown. Each test runs its own
//! weir process.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir_e2e::{record, with_chunk, RawClient, Weir};
use weir_proto::{
    encode_forward, encode_message, encode_packed, encode_packed_blob, key_digest, Compression,
    EncodeOptions, EventTime, Helo, Ping, Pong, TimeFormat,
};

fn config(extra: &str) -> String {
    format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{port}}
  {extra}
</source>
<match **>
  @type stdout
</match>
"#
    )
}

const T: EventTime = EventTime {
    sec: 1_700_000_000,
    nsec: 123_456_789,
};

#[test]
fn malformed_request_closes_only_that_connection() {
    let weir = Weir::start("malformed", &config(""));
    let mut good = RawClient::connect(&weir);
    let rec = record(r#"{"k":"v"}"#);
    good.send(&encode_message("app.a", T, &rec, &with_chunk("one")));
    assert_eq!(good.ack().unwrap(), "one");

    let mut bad = RawClient::connect(&weir);
    bad.send(&[0x93, 0xa3, b'a', b'p', b'p', 0xc1, 0x00]);
    assert!(bad.closed_within(Duration::from_secs(5)));
    let line = weir
        .wait_log("malformed request", Duration::from_secs(5))
        .expect("a log line for the malformed request");
    assert!(
        line.contains("127.0.0.1"),
        "the log line names the peer: {line}"
    );

    good.send(&encode_message("app.a", T, &rec, &with_chunk("two")));
    assert_eq!(good.ack().unwrap(), "two");
    assert_eq!(weir.wait_stdout(2, Duration::from_secs(5)).len(), 2);
}

#[test]
fn oversized_declared_length_is_refused_before_buffering() {
    let weir = Weir::start("oversized", &config("chunk_size_limit 1k"));
    let mut c = RawClient::connect(&weir);
    // [tag, bin32 declaring 100 MB ...]: only the header is sent.
    let mut head = vec![0x93, 0xa3, b'a', b'p', b'p', 0xc6];
    head.extend_from_slice(&100_000_000u32.to_be_bytes());
    c.send(&head);
    assert!(c.closed_within(Duration::from_secs(5)));
    let line = weir.wait_log("chunk_size_limit", Duration::from_secs(5));
    assert!(line.is_some(), "log:\n{}", weir.stderr_lines().join("\n"));

    // A request under the limit still goes through on a new connection.
    let mut ok = RawClient::connect(&weir);
    ok.send(&encode_message(
        "app",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("c"),
    ));
    assert_eq!(ok.ack().unwrap(), "c");
}

#[test]
fn decompression_bomb_is_refused_without_ack() {
    let weir = Weir::start("bomb", &config("decompression_size_limit 1m"));
    // 4 MiB of entries compressed to a few kilobytes.
    let rec = record(&format!(r#"{{"pad":"{}"}}"#, "0".repeat(4000)));
    let entries: Vec<(EventTime, &[u8])> = (0..1000).map(|_| (T, rec.as_slice())).collect();
    let mut c = RawClient::connect(&weir);
    c.send(&encode_packed(
        "app",
        &entries,
        Compression::Gzip,
        &with_chunk("bomb"),
    ));
    assert!(c.next_message().is_none(), "no ack for a refused request");
    assert!(weir
        .wait_log("decompress", Duration::from_secs(5))
        .is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert!(weir.stdout_lines().is_empty());
}

#[test]
fn gzip_with_several_members_is_accepted() {
    use flate2::write::GzEncoder;
    let weir = Weir::start("gzip-members", &config(""));
    let a = record(r#"{"n":1}"#);
    let b = record(r#"{"n":2}"#);
    let mut blob = Vec::new();
    for r in [&a, &b] {
        let mut entry = Vec::new();
        weir_proto::encode_entry(&mut entry, T, r, TimeFormat::EventTime);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&entry).unwrap();
        blob.extend_from_slice(&gz.finish().unwrap());
    }
    let mut c = RawClient::connect(&weir);
    c.send(&encode_packed_blob(
        "app",
        &blob,
        Compression::Gzip,
        2,
        &with_chunk("gz"),
    ));
    assert_eq!(c.ack().unwrap(), "gz");
    let lines = weir.wait_stdout(2, Duration::from_secs(5));
    assert_eq!(
        lines,
        vec![
            "2023-11-14 22:13:20.123456789 +0000 app: {\"n\":1}",
            "2023-11-14 22:13:20.123456789 +0000 app: {\"n\":2}"
        ]
    );
}

/// A Forward request whose second entry has a string for a time.
fn forward_with_invalid_entry() -> Vec<u8> {
    let good = record(r#"{"ok":true}"#);
    let mut out = vec![0x93, 0xa3, b'a', b'p', b'p', 0x93];
    for (i, time) in [Some(T), None, Some(T)].iter().enumerate() {
        out.push(0x92);
        match time {
            Some(t) => weir_proto::write_event_time(&mut out, *t, TimeFormat::EventTime),
            None => out.extend_from_slice(&[0xa3, b'b', b'a', b'd']),
        }
        let _ = i;
        out.extend_from_slice(&good);
    }
    // options: {"chunk": "inv"}
    out.extend_from_slice(&[
        0x81, 0xa5, b'c', b'h', b'u', b'n', b'k', 0xa3, b'i', b'n', b'v',
    ]);
    out
}

#[test]
fn invalid_events_are_skipped_and_the_rest_acked() {
    let weir = Weir::start("skip-invalid", &config(""));
    let mut c = RawClient::connect(&weir);
    c.send(&forward_with_invalid_entry());
    assert_eq!(c.ack().unwrap(), "inv");
    assert_eq!(weir.wait_stdout(2, Duration::from_secs(5)).len(), 2);
    assert!(weir
        .wait_log("skipped invalid events", Duration::from_secs(5))
        .is_some());
}

#[test]
fn invalid_events_refuse_the_request_when_skipping_is_off() {
    let weir = Weir::start("no-skip-invalid", &config("skip_invalid_event false"));
    let mut c = RawClient::connect(&weir);
    c.send(&forward_with_invalid_entry());
    assert!(
        c.next_message().is_none(),
        "no ack when the request is refused"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(weir.stdout_lines().is_empty());
}

#[test]
fn json_requests_are_refused_with_a_reason() {
    let weir = Weir::start("json", &config(""));
    let mut c = RawClient::connect(&weir);
    c.send(br#"["app", 1700000000, {"a": 1}]"#);
    assert!(c.closed_within(Duration::from_secs(5)));
    assert!(weir.wait_log("JSON", Duration::from_secs(5)).is_some());
}

#[test]
fn udp_heartbeat_is_answered_with_a_zero_byte() {
    let weir = Weir::start("udp", &config(""));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for payload in [&[0u8][..], b"anything at all"] {
        sock.send_to(payload, weir.addr()).unwrap();
        let mut buf = [0xffu8; 8];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!((n, buf[0]), (1, 0));
        assert_eq!(from.port(), weir.port);
    }
}

#[test]
fn tcp_heartbeats_and_health_checks_are_not_errors() {
    let weir = Weir::start("tcp-heartbeat", &config(""));
    for _ in 0..20 {
        drop(TcpStream::connect(weir.addr()).unwrap());
    }
    // A keep-alive nil on a live connection is ignored.
    let mut c = RawClient::connect(&weir);
    c.send(&[0xc0]);
    c.send(&encode_message(
        "app",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("x"),
    ));
    assert_eq!(c.ack().unwrap(), "x");
    std::thread::sleep(Duration::from_millis(300));
    let noisy = weir.warnings();
    assert!(
        noisy.is_empty(),
        "heartbeats were logged as problems: {noisy:?}"
    );
}

#[test]
fn stalled_request_is_closed_after_read_timeout() {
    let weir = Weir::start("read-timeout", &config("read_timeout 1s"));
    let mut c = RawClient::connect(&weir);
    let full = encode_message("app", T, &record(r#"{"a":1}"#), &with_chunk("x"));
    c.send(&full[..full.len() / 2]);
    let started = Instant::now();
    assert!(c.closed_within(Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(weir
        .wait_log("in the middle of a request", Duration::from_secs(5))
        .is_some());
}

#[test]
fn acks_echo_every_token_form_in_request_order() {
    let weir = Weir::start("ack-order", &config(""));
    let mut c = RawClient::connect(&weir);
    let rec = record(r#"{"a":1}"#);
    // Fluentd (Base64 + newline), Fluent Bit < 5.0.9 (32 hex), Fluent Bit >= 5.0.9 (Base64).
    let tokens: Vec<String> = (0..60)
        .map(|i| match i % 3 {
            0 => format!("p8n9gmxTQVC8/nh2wlK{i:03}==\n"),
            1 => format!("{i:032x}"),
            _ => format!("p8n9gmxTQVC8/nh2wl{i:04}=="),
        })
        .collect();
    let mut all = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let entries = [(T, rec.as_slice())];
        let bytes = match i % 4 {
            0 => encode_message("app", T, &rec, &with_chunk(t)),
            1 => encode_forward("app", &entries, &with_chunk(t)),
            2 => encode_packed("app", &entries, Compression::Text, &with_chunk(t)),
            _ => encode_packed("app", &entries, Compression::Gzip, &with_chunk(t)),
        };
        all.extend_from_slice(&bytes);
    }
    // Everything in one write; weir splits it into 60 requests.
    c.send(&all);
    for t in &tokens {
        assert_eq!(c.ack().unwrap(), t.as_bytes());
    }
    assert_eq!(weir.wait_stdout(60, Duration::from_secs(5)).len(), 60);
}

#[test]
fn requests_split_at_every_byte_are_reassembled() {
    let weir = Weir::start("split", &config(""));
    let mut c = RawClient::connect(&weir);
    c.s.set_nodelay(true).unwrap();
    let rec = record(r#"{"msg":"split me"}"#);
    let bytes = encode_packed(
        "app",
        &[(T, rec.as_slice()); 3],
        Compression::Text,
        &with_chunk("s"),
    );
    for b in &bytes {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.ack().unwrap(), "s");
    assert_eq!(weir.wait_stdout(3, Duration::from_secs(5)).len(), 3);
}

#[test]
fn metrics_and_traces_are_acked_and_dropped() {
    let weir = Weir::start("signals", &config(""));
    let mut c = RawClient::connect(&weir);
    // [tag, bin(opaque), {"fluent_signal": 1, "chunk": "m"}]
    let mut req = vec![0x93, 0xa3, b'm', b'e', b't', 0xc4, 0x03, 1, 2, 3, 0x82];
    req.extend_from_slice(&[0xad]);
    req.extend_from_slice(b"fluent_signal");
    req.push(0x01);
    req.extend_from_slice(&[0xa5, b'c', b'h', b'u', b'n', b'k', 0xa1, b'm']);
    c.send(&req);
    assert_eq!(c.ack().unwrap(), "m");
    c.send(&encode_message(
        "log",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("l"),
    ));
    assert_eq!(c.ack().unwrap(), "l");
    let lines = weir.wait_stdout(1, Duration::from_secs(5));
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains(" log: "));
}

#[test]
fn fluent_bit_metadata_wrapped_entries() {
    let weir = Weir::start("fluent-bit", &config(""));
    let mut c = RawClient::connect(&weir);
    let rec = record(r#"{"k":"v"}"#);
    let opts = EncodeOptions {
        chunk: Some(Bytes::from_static(b"0123456789abcdef0123456789abcdef")),
        time_format: TimeFormat::FluentBitWrapped,
        ..EncodeOptions::default()
    };
    c.send(&encode_forward("fb", &[(T, rec.as_slice())], &opts));
    assert_eq!(c.ack().unwrap(), "0123456789abcdef0123456789abcdef");
    assert_eq!(
        weir.wait_stdout(1, Duration::from_secs(5)),
        vec!["2023-11-14 22:13:20.123456789 +0000 fb: {\"k\":\"v\"}"]
    );
}

#[test]
fn time_zero_becomes_the_receive_time() {
    let weir = Weir::start("time-zero", &config(""));
    let mut c = RawClient::connect(&weir);
    let before = chrono::Utc::now().timestamp();
    c.send(&encode_message(
        "app",
        EventTime::new(0, 0),
        &record(r#"{"a":1}"#),
        &with_chunk("z"),
    ));
    assert_eq!(c.ack().unwrap(), "z");
    let line = &weir.wait_stdout(1, Duration::from_secs(5))[0];
    let t = chrono::NaiveDateTime::parse_from_str(&line[..29], "%Y-%m-%d %H:%M:%S%.9f").unwrap();
    assert!((t.and_utc().timestamp() - before).abs() <= 5, "{line}");
}

#[test]
fn tag_rewrites_and_source_address() {
    let weir = Weir::start(
        "tag-prefix",
        &config("add_tag_prefix edge\n  source_address_key client_ip"),
    );
    let mut c = RawClient::connect(&weir);
    c.send(&encode_message(
        "app.x",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("p"),
    ));
    assert_eq!(c.ack().unwrap(), "p");
    assert_eq!(
        weir.wait_stdout(1, Duration::from_secs(5)),
        vec![
            "2023-11-14 22:13:20.123456789 +0000 edge.app.x: {\"a\":1,\"client_ip\":\"127.0.0.1\"}"
        ]
    );
}

#[test]
fn connection_cap_holds_extra_connections_in_the_queue() {
    let weir = Weir::start("max-conn", &config("max_connections 2"));
    let first = RawClient::connect(&weir);
    let _second = RawClient::connect(&weir);
    std::thread::sleep(Duration::from_millis(200));
    let mut third = RawClient::connect(&weir);
    third.send(&encode_message(
        "app",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("q"),
    ));
    third
        .s
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        third.s.read(&mut b).is_err(),
        "the third connection must wait while two are open"
    );
    drop(first);
    third
        .s
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(third.ack().unwrap(), "q");
}

const SECURE: &str =
    "<security>\n    self_hostname aggregator.example\n    shared_key secret\n  </security>";

#[test]
fn handshake_with_fluent_bit_style_binary_salt() {
    let weir = Weir::start("fb-salt", &config(SECURE));
    let mut c = RawClient::connect(&weir);
    let helo = Helo::parse(&c.next_message().unwrap()).unwrap();
    assert_eq!(helo.nonce.len(), 16);
    let salt: Vec<u8> = (0xf0..=0xff).collect();
    let ping = Ping {
        hostname: Bytes::from_static(b"fb-node"),
        salt: Bytes::from(salt.clone()),
        key_digest: Bytes::from(key_digest(&salt, b"fb-node", &helo.nonce, b"secret")),
        username: Bytes::new(),
        password_digest: Bytes::new(),
    };
    c.send(&ping.encode());
    match Pong::parse(&c.next_message().unwrap()).unwrap() {
        Pong::Accepted {
            server_hostname,
            digest,
        } => {
            assert_eq!(server_hostname, "aggregator.example");
            let want = key_digest(&salt, b"aggregator.example", &helo.nonce, b"secret");
            assert_eq!(digest, want.as_bytes());
        }
        Pong::Rejected { reason } => panic!("rejected: {reason}"),
    }
    c.send(&encode_message(
        "app",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("h"),
    ));
    assert_eq!(c.ack().unwrap(), "h");
}

#[test]
fn handshake_failures_are_answered_and_closed() {
    let weir = Weir::start("bad-ping", &config(SECURE));
    // Data instead of a PING.
    let mut c = RawClient::connect(&weir);
    let _helo = c.next_message().unwrap();
    c.send(&encode_message(
        "app",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("h"),
    ));
    match Pong::parse(&c.next_message().unwrap()).unwrap() {
        Pong::Rejected { .. } => {}
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(c.next_message().is_none());
    // A heartbeat: HELO, then the client hangs up. Not an error.
    let mut hb = RawClient::connect(&weir);
    let _ = hb.next_message().unwrap();
    drop(hb);
    std::thread::sleep(Duration::from_millis(300));
    let warns = weir.warnings();
    assert_eq!(
        warns.len(),
        1,
        "only the bad PING is worth a warning: {warns:?}"
    );
    assert!(weir.stdout_lines().is_empty());
}

#[test]
fn sigterm_finishes_requests_in_progress_and_sends_their_acks() {
    let mut weir = Weir::start("sigterm", &config(""));
    let mut c = RawClient::connect(&weir);
    let rec = record(r#"{"a":1}"#);
    c.send(&encode_message("app", T, &rec, &with_chunk("before")));
    assert_eq!(c.ack().unwrap(), "before");
    // Half a request, then SIGTERM, then the rest: it is finished and acked.
    let req = encode_message("app", T, &rec, &with_chunk("during"));
    c.send(&req[..5]);
    std::thread::sleep(Duration::from_millis(100));
    weir.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    c.send(&req[5..]);
    assert_eq!(c.ack().unwrap(), "during");
    assert!(c.next_message().is_none(), "then the connection closes");
    let status = weir.wait_exit(Duration::from_secs(15)).expect("weir exits");
    assert!(status.success());
    assert_eq!(weir.stdout_lines().len(), 2);
    // New connections are refused once it has stopped.
    assert!(TcpStream::connect(weir.addr()).is_err());
}

#[test]
fn client_that_sends_and_hangs_up_at_once_is_served_quietly() {
    let weir = Weir::start("send-and-close", &config(""));
    for i in 0..10 {
        let mut c = RawClient::connect(&weir);
        c.send(&encode_message(
            "app",
            T,
            &record(&format!(r#"{{"i":{i}}}"#)),
            &with_chunk("gone"),
        ));
        drop(c);
    }
    assert_eq!(weir.wait_stdout(10, Duration::from_secs(5)).len(), 10);
    std::thread::sleep(Duration::from_millis(200));
    let warns = weir.warnings();
    assert!(warns.is_empty(), "{warns:?}");
}

/// Reads weir's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A client that never reads its acks: the acks wait in the kernel's socket buffer (bounded by
/// the kernel), then weir's ack writer blocks, the ack queue fills (`max_pending_acks`), and
/// weir stops reading from that connection. weir's own memory stays small throughout, and
/// other connections are served as usual.
#[test]
fn client_that_never_reads_its_acks_costs_bounded_memory() {
    let weir = Weir::start("no-ack-reader", &config("max_pending_acks 8"));
    let rec = record(r#"{"m":"x"}"#);
    let entries: Vec<(EventTime, &[u8])> = (0..50).map(|_| (T, rec.as_slice())).collect();
    let request = encode_forward("app", &entries, &with_chunk("p8n9gmxTQVC8/nh2wlKKeQ==\n"));
    let mut writer = TcpStream::connect(weir.addr()).unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        if writer.write_all(&request).is_err() {
            break;
        }
        sent += 1;
    }
    let rss = rss_kib(weir.pid());
    assert!(
        rss < 100 * 1024,
        "weir holds {rss} KiB for a client that does not read its acks"
    );
    let mut other = RawClient::connect(&weir);
    other.send(&encode_message(
        "other",
        T,
        &record(r#"{"a":1}"#),
        &with_chunk("o"),
    ));
    assert_eq!(other.ack().unwrap(), "o");
    assert!(sent > 8);
}
