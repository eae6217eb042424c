//! `proxy_protocol` on the forward input: the test sends PROXY protocol v1 and v2 headers itself,
//! byte for byte as an AWS Network Load Balancer (or HAProxy's `send-proxy`) writes them, then
//! forward-protocol requests with acks, and checks what weir makes of the real client address
//! and the VPC endpoint id: in the records, in `<client>` allow-lists, in the logs; and that a
//! bad header costs only its own connection.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use weir_e2e::{
    python, record, run_with_timeout, self_signed_cert, weir_bin, with_chunk, RawClient, Scratch,
    Weir,
};
use weir_proto::{encode_ack, encode_message, key_digest, EventTime, Helo, Ping, Pong};

const T: EventTime = EventTime {
    sec: 1_700_000_000,
    nsec: 0,
};
const WAIT: Duration = Duration::from_secs(10);
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

fn config(source_extra: &str) -> String {
    format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {{port}}
  {source_extra}
</source>
<match **>
  @type stdout
</match>
"#
    )
}

const PROXY_KEYS: &str = "proxy_protocol true
  source_address_key src
  source_vpce_id_key vpce";

/// A v2 PROXY header exactly as an NLB sends it through PrivateLink: TCP over IPv4 from
/// 172.31.7.113:51442 to 172.31.10.31:80, a CRC32C TLV, the AWS TLV with the endpoint id, and
/// NOOP padding to 84 bytes.
fn nlb_privatelink() -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x54]);
    h.extend_from_slice(&[172, 31, 7, 113, 172, 31, 10, 31, 0xc8, 0xf2, 0x00, 0x50]);
    h.extend_from_slice(&[0x03, 0x00, 0x04, 0xe8, 0xd6, 0x89, 0x2d]);
    h.extend_from_slice(&[0xea, 0x00, 0x17, 0x01]);
    h.extend_from_slice(b"vpce-08d2bf15fac5001c9");
    h.extend_from_slice(&[0x04, 0x00, 0x24]);
    h.resize(16 + 84, 0);
    h
}

/// A v2 PROXY header for TCP over IPv4 with no TLV (an NLB outside PrivateLink).
fn v2_tcp4(src: [u8; 4], src_port: u16) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&24224u16.to_be_bytes());
    h
}

/// The LOCAL command an NLB health check sends: TCP4 family, an address block of zeros.
fn nlb_health_check() -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20, 0x11, 0x00, 0x54]);
    h.resize(16 + 84, 0);
    h
}

/// The records printed so far, as JSON, in the order they were printed.
fn records(weir: &Weir, n: usize) -> Vec<serde_json::Value> {
    let lines = weir.wait_stdout(n, WAIT);
    assert_eq!(lines.len(), n, "stdout: {lines:?}");
    lines
        .iter()
        .map(|l| {
            let (_, json) = l.split_once(": ").expect("time and tag, then the record");
            serde_json::from_str(json).expect("a JSON record")
        })
        .collect()
}

/// Sends a header and one acked request on a new connection; returns the client, the ack
/// checked.
fn send_after(weir: &Weir, header: &[u8], body: &str, chunk: &str) -> RawClient {
    let mut c = RawClient::connect(weir);
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&encode_message("app", T, &record(body), &with_chunk(chunk)));
    c.send(&bytes);
    assert_eq!(
        c.ack().as_deref(),
        Some(chunk.as_bytes()),
        "log:\n{}",
        weir.stderr_lines().join("\n")
    );
    c
}

#[test]
fn records_carry_the_client_address_and_the_vpc_endpoint_id() {
    let weir = Weir::start("proxy-records", &config(PROXY_KEYS));
    send_after(&weir, &nlb_privatelink(), r#"{"n":1}"#, "privatelink");
    send_after(
        &weir,
        &v2_tcp4([198, 51, 100, 7], 54321),
        r#"{"n":2}"#,
        "v2",
    );
    send_after(
        &weir,
        b"PROXY TCP4 203.0.113.44 10.0.0.1 40001 24224\r\n",
        r#"{"n":3}"#,
        "v1-4",
    );
    send_after(
        &weir,
        b"PROXY TCP6 2001:db8::44 2001:db8::1 40002 24224\r\n",
        r#"{"n":4}"#,
        "v1-6",
    );
    // UNKNOWN: the sender knows no address; the socket's peer applies.
    send_after(&weir, b"PROXY UNKNOWN\r\n", r#"{"n":5}"#, "v1-unknown");
    let got = records(&weir, 5);
    let expected = [
        r#"{"n":1,"src":"172.31.7.113","vpce":"vpce-08d2bf15fac5001c9"}"#,
        r#"{"n":2,"src":"198.51.100.7"}"#,
        r#"{"n":3,"src":"203.0.113.44"}"#,
        r#"{"n":4,"src":"2001:db8::44"}"#,
        r#"{"n":5,"src":"127.0.0.1"}"#,
    ];
    for (got, want) in got.iter().zip(expected) {
        let want: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(got, &want);
    }
    assert!(weir.warnings().is_empty(), "{:?}", weir.warnings());
}

#[test]
fn many_requests_and_a_header_split_over_writes() {
    let weir = Weir::start("proxy-split", &config(PROXY_KEYS));
    let mut c = RawClient::connect(&weir);
    let header = nlb_privatelink();
    // The header arrives in pieces, the first request right behind its last piece.
    c.send(&header[..7]);
    std::thread::sleep(Duration::from_millis(50));
    c.send(&header[7..40]);
    std::thread::sleep(Duration::from_millis(50));
    let mut rest = header[40..].to_vec();
    rest.extend_from_slice(&encode_message(
        "app",
        T,
        &record(r#"{"i":0}"#),
        &with_chunk("c0"),
    ));
    c.send(&rest);
    assert_eq!(c.ack().unwrap(), "c0");
    for i in 1..5 {
        c.send(&encode_message(
            "app",
            T,
            &record(&format!(r#"{{"i":{i}}}"#)),
            &with_chunk(&format!("c{i}")),
        ));
        assert_eq!(c.ack().unwrap(), format!("c{i}").as_str());
    }
    for r in records(&weir, 5) {
        assert_eq!(r["src"], "172.31.7.113");
        assert_eq!(r["vpce"], "vpce-08d2bf15fac5001c9");
    }
}

#[test]
fn health_check_local_command_uses_the_socket_peer() {
    let weir = Weir::start("proxy-local", &config(PROXY_KEYS));
    // An NLB health check: LOCAL, then the load balancer hangs up. Not an error.
    let mut hc = RawClient::connect(&weir);
    hc.send(&nlb_health_check());
    drop(hc);
    // A plain TCP check that sends nothing at all is not an error either.
    drop(RawClient::connect(&weir));
    // A LOCAL connection that carries data is served as if it had no header.
    send_after(&weir, &nlb_health_check(), r#"{"local":true}"#, "local");
    let got = records(&weir, 1);
    assert_eq!(got[0]["src"], "127.0.0.1");
    assert!(got[0].get("vpce").is_none(), "{:?}", got[0]);
    // UDP heartbeats carry no header and are answered as always.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(WAIT)).unwrap();
    udp.send_to(b"", weir.addr()).unwrap();
    let mut b = [9u8; 8];
    assert_eq!(udp.recv(&mut b).unwrap(), 1);
    assert_eq!(b[0], 0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(weir.warnings().is_empty(), "{:?}", weir.warnings());
}

#[test]
fn a_bad_header_closes_only_its_connection() {
    let weir = Weir::start(
        "proxy-bad",
        &config("proxy_protocol true\n  source_address_key src\n  handshake_timeout 2s"),
    );
    let mut good = send_after(&weir, &v2_tcp4([198, 51, 100, 7], 1000), r#"{"g":1}"#, "g1");

    let mut bad_crc = nlb_privatelink();
    bad_crc[45] ^= 0x20; // inside the endpoint id: the CRC32C no longer matches
    let mut bad_sig = nlb_privatelink();
    bad_sig[8] = b'X';
    let cases: [(&[u8], &str); 6] = [
        (&bad_crc, "checksum mismatch"),
        (&bad_sig, "bad PROXY protocol v2 signature"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n", "bad PROXY v1 line"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad IPv4 address"),
        // Forward-protocol bytes with no header at all.
        (
            &[0x93, 0xa3, b'a', b'p', b'p'],
            "does not start with a PROXY",
        ),
        // A second header behind the first: a client in front of the NLB sent its own.
        (
            &[
                &v2_tcp4([198, 51, 100, 7], 1000)[..],
                &b"PROXY TCP4 6.6.6.6 10.0.0.1 1 2\r\n"[..],
            ]
            .concat(),
            "a second PROXY protocol header",
        ),
    ];
    for (bytes, reason) in cases {
        let mut bad = RawClient::connect(&weir);
        bad.send(bytes);
        assert!(bad.closed_within(WAIT), "{reason}: not closed");
        let line = weir
            .wait_log(reason, WAIT)
            .unwrap_or_else(|| panic!("no log line with {reason:?}:\n{:?}", weir.stderr_lines()));
        assert!(line.contains("127.0.0.1"), "names the peer: {line}");
        assert!(line.contains("WARN"), "{line}");
    }
    // A header that never completes: closed after handshake_timeout.
    let mut slow = RawClient::connect(&weir);
    slow.send(&SIGNATURE[..6]);
    assert!(slow.closed_within(WAIT));
    assert!(weir
        .wait_log("no complete PROXY protocol header", WAIT)
        .is_some());

    // The good connection never noticed.
    good.send(&encode_message(
        "app",
        T,
        &record(r#"{"g":2}"#),
        &with_chunk("g2"),
    ));
    assert_eq!(good.ack().unwrap(), "g2");
    let got = records(&weir, 2);
    assert!(got.iter().all(|r| r["src"] == "198.51.100.7"), "{got:?}");
    assert_eq!(weir.stdout_lines().len(), 2);
}

#[test]
fn client_allow_lists_match_the_proxy_address() {
    let weir = Weir::start(
        "proxy-clients",
        &config(
            r#"proxy_protocol true
  source_address_key src
  <security>
    self_hostname aggregator.example
    shared_key global-key
    allow_anonymous_source false
    <client>
      network 198.51.100.0/24
      shared_key lb-clients-key
    </client>
  </security>"#,
        ),
    );
    let handshake = |header: &[u8], key: &[u8]| {
        let mut c = RawClient::connect(&weir);
        c.send(header);
        let helo = Helo::parse(&c.next_message().expect("HELO")).unwrap();
        let salt = b"0123456789abcdef";
        let ping = Ping {
            hostname: Bytes::from_static(b"client.test"),
            salt: Bytes::from_static(salt),
            key_digest: Bytes::from(key_digest(salt, b"client.test", &helo.nonce, key)),
            username: Bytes::new(),
            password_digest: Bytes::new(),
        };
        c.send(&ping.encode());
        let pong = Pong::parse(&c.next_message().expect("PONG")).unwrap();
        (c, pong)
    };
    // From 198.51.100.7 (the socket peer is 127.0.0.1, which no <client> names): its
    // <client> entry applies, with that entry's key.
    let (mut c, pong) = handshake(&v2_tcp4([198, 51, 100, 7], 2000), b"lb-clients-key");
    assert!(matches!(pong, Pong::Accepted { .. }), "{pong:?}");
    c.send(&encode_message(
        "app",
        T,
        &record(r#"{"ok":1}"#),
        &with_chunk("ok"),
    ));
    assert_eq!(c.ack().unwrap(), "ok");
    assert_eq!(records(&weir, 1)[0]["src"], "198.51.100.7");

    // The global key is wrong for that client.
    let (_, pong) = handshake(&v2_tcp4([198, 51, 100, 7], 2001), b"global-key");
    assert!(
        matches!(&pong, Pong::Rejected { reason } if reason == "shared_key mismatch"),
        "{pong:?}"
    );
    // From 203.0.113.5, which no <client> names: an anonymous source, refused, whatever the key.
    let (_, pong) = handshake(&v2_tcp4([203, 0, 113, 5], 2002), b"global-key");
    assert!(
        matches!(&pong, Pong::Rejected { reason } if reason == "anonymous source host denied"),
        "{pong:?}"
    );
    let line = weir
        .wait_log("anonymous source host denied", WAIT)
        .expect("a log line for the denied client");
    assert!(
        line.contains("203.0.113.5:2002 via 127.0.0.1:"),
        "the log names the client and the load balancer: {line}"
    );
}

#[test]
fn without_proxy_protocol_a_header_is_refused() {
    let weir = Weir::start("proxy-off", &config("source_address_key src"));
    for (i, header) in [
        nlb_privatelink(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = RawClient::connect(&weir);
        let port = c.s.local_addr().unwrap().port();
        c.send(&header);
        assert!(c.closed_within(WAIT), "header {i}");
        let line = weir
            .wait_log(&format!("127.0.0.1:{port} "), WAIT)
            .unwrap_or_else(|| panic!("no log line for header {i}"));
        assert!(
            line.contains("WARN")
                && line.contains(
                    "starts with a PROXY protocol header, but this source does not expect one"
                ),
            "{line}"
        );
    }
    // Plain forward traffic is served as before, from the socket's peer.
    send_after(&weir, b"", r#"{"plain":1}"#, "plain");
    assert_eq!(records(&weir, 1)[0]["src"], "127.0.0.1");
}

#[test]
fn the_header_comes_before_tls() {
    let certs = Scratch::new("proxy-tls-certs");
    let (cert, key) = self_signed_cert(&certs);
    let weir = Weir::start(
        "proxy-tls",
        &config(&format!(
            "{PROXY_KEYS}\n  <transport tls>\n    cert_path {}\n    private_key_path {}\n  </transport>",
            cert.display(),
            key.display()
        )),
    );
    // Python's ssl module plays the client behind the NLB: the header goes out in the clear,
    // then the TLS handshake, then the request.
    let script = r#"
import socket, ssl, sys
port, ca, header, request, want = sys.argv[1:6]
s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
s.sendall(bytes.fromhex(header))
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(s, server_hostname="localhost")
t.sendall(bytes.fromhex(request))
got = b""
while len(got) < int(want):
    chunk = t.recv(4096)
    if not chunk:
        break
    got += chunk
print(got.hex())
"#;
    let request = encode_message("app", T, &record(r#"{"tls":1}"#), &with_chunk("tls-1"));
    let ack = encode_ack(b"tls-1");
    let (ok, out, err) = run_with_timeout(
        Command::new(python()).args([
            "-c",
            script,
            &weir.port.to_string(),
            &cert.display().to_string(),
            &hex(&nlb_privatelink()),
            &hex(&request),
            &ack.len().to_string(),
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "python TLS client failed:\n{err}");
    assert_eq!(out.trim(), hex(&ack), "the ack, over TLS");
    let got = records(&weir, 1);
    assert_eq!(got[0]["src"], "172.31.7.113");
    assert_eq!(got[0]["vpce"], "vpce-08d2bf15fac5001c9");

    // TLS bytes with no header in front are refused before the TLS handshake.
    let mut s = TcpStream::connect(weir.addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
    assert!(weir
        .wait_log("does not start with a PROXY protocol header", WAIT)
        .is_some());
}

#[test]
fn source_vpce_id_key_without_proxy_protocol_is_a_config_error() {
    let dir = Scratch::new("proxy-config");
    let conf = dir.write(
        "weir.conf",
        "<source>\n  @type forward\n  source_vpce_id_key vpce\n</source>\n<match **>\n  @type null\n</match>\n",
    );
    let (ok, out, err) = run_with_timeout(
        Command::new(weir_bin()).args(["check", "-c", &conf.display().to_string()]),
        Duration::from_secs(30),
    );
    assert!(!ok, "weir check accepted it:\n{out}{err}");
    let text = format!("{out}{err}");
    assert!(text.contains("weir.conf:3"), "{text}");
    assert!(
        text.contains("source_vpce_id_key needs proxy_protocol true"),
        "{text}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
