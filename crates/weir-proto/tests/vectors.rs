//! The byte examples of forward-protocol.md (sections 2, 3, 6 and 7) as test vectors.

use bytes::{Bytes, BytesMut};
use weir_proto::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn opts() -> ParseOptions {
    ParseOptions {
        skip_invalid_event: false,
        decompression_size_limit: 1 << 20,
        now: EventTime::new(42, 0),
    }
}

fn events(frame: &[u8]) -> EventRequest {
    match parse_request(Bytes::copy_from_slice(frame), &opts()).unwrap() {
        Request::Events(e) => e,
        Request::KeepAlive => panic!("keep-alive"),
    }
}

const T: EventTime = EventTime {
    sec: 1_700_000_000,
    nsec: 123_456_789,
};
const T_INT: EventTime = EventTime {
    sec: 1_700_000_000,
    nsec: 0,
};
const MSG_HI: &str = "81 A3 6D 73 67 A2 68 69";
const CHUNK: &[u8] = b"p8n9gmxTQVC8/nh2wlKKeQ==";
const CHUNK_NL: &[u8] = b"p8n9gmxTQVC8/nh2wlKKeQ==\n";

#[test]
fn sec2_event_time_fixext8_and_ext8() {
    assert_eq!(
        read_time(&hex("D7 00 65 53 F1 00 07 5B CD 15"), 0).unwrap(),
        (Some(T), 10)
    );
    assert_eq!(
        read_time(&hex("C7 08 00 65 53 F1 00 07 5B CD 15"), 0).unwrap(),
        (Some(T), 11)
    );
    let mut out = Vec::new();
    write_event_time(&mut out, T, TimeFormat::EventTime);
    assert_eq!(out, hex("D7 00 65 53 F1 00 07 5B CD 15"));
}

#[test]
fn sec2_metadata_wrapped_entry() {
    let entry = hex("92 92 D7 00 65 53 F1 00 07 5B CD 15 80 81 A1 6B A1 76");
    let mut out = Vec::new();
    encode_entry(
        &mut out,
        T,
        &hex("81 A1 6B A1 76"),
        TimeFormat::FluentBitWrapped,
    );
    assert_eq!(out, entry);
    let mut frame = hex("92 A3 61 70 70 91");
    frame.extend_from_slice(&entry);
    let e = events(&frame);
    assert_eq!(e.mode, Mode::Forward);
    let got: Vec<_> = e.events.iter().map(|(t, r)| (t, r.to_vec())).collect();
    assert_eq!(got, vec![(T, hex("81 A1 6B A1 76"))]);
}

#[test]
fn sec3_1_message_integer_time() {
    let frame = hex(&format!(
        "93 AA 61 70 70 2E 61 63 63 65 73 73 CE 65 53 F1 00 {MSG_HI}"
    ));
    let e = events(&frame);
    assert_eq!(e.tag, "app.access");
    assert_eq!(e.mode, Mode::Message);
    assert_eq!(e.chunk, None);
    assert_eq!(e.events.len(), 1);
    assert_eq!(e.events.record(0).unwrap().as_ref(), &hex(MSG_HI)[..]);
    assert_eq!(e.events.time(0), Some(T_INT));
    let o = EncodeOptions {
        time_format: TimeFormat::Integer,
        ..Default::default()
    };
    assert_eq!(encode_message("app.access", T_INT, &hex(MSG_HI), &o), frame);
}

#[test]
fn sec3_1_message_event_time_with_chunk() {
    let frame = hex(&format!(
        "94 AA 61 70 70 2E 61 63 63 65 73 73 D7 00 65 53 F1 00 07 5B CD 15 {MSG_HI}
         81 A5 63 68 75 6E 6B B8 70 38 6E 39 67 6D 78 54 51 56 43 38 2F 6E 68 32 77 6C 4B 4B 65 51 3D 3D"
    ));
    let e = events(&frame);
    assert_eq!(e.chunk.as_deref(), Some(CHUNK));
    assert_eq!(e.events.time(0), Some(T));
    let o = EncodeOptions {
        chunk: Some(Bytes::from_static(CHUNK)),
        ..Default::default()
    };
    assert_eq!(encode_message("app.access", T, &hex(MSG_HI), &o), frame);
}

#[test]
fn sec3_2_forward_two_entries() {
    let frame = hex("92 A3 61 70 70 92
         92 CE 65 53 F1 00 81 A1 6B A1 76
         92 D7 00 65 53 F1 00 07 5B CD 15 81 A1 6B A1 77");
    let e = events(&frame);
    assert_eq!(e.mode, Mode::Forward);
    assert_eq!(e.tag, "app");
    let got: Vec<_> = e.events.iter().map(|(t, r)| (t, r.to_vec())).collect();
    assert_eq!(
        got,
        vec![(T_INT, hex("81 A1 6B A1 76")), (T, hex("81 A1 6B A1 77"))]
    );
    assert_eq!(e.events.byte_len(), 10);
}

const ENTRY1: &str = "92 D7 00 65 53 F1 00 07 5B CD 15 81 A1 6B A1 76";
const ENTRY2: &str = "92 CE 65 53 F1 01 81 A1 6B A1 77";

fn blob() -> Vec<u8> {
    hex(&format!("{ENTRY1} {ENTRY2}"))
}

fn check_packed_events(e: &EventRequest) {
    let got: Vec<_> = e.events.iter().map(|(t, r)| (t, r.to_vec())).collect();
    assert_eq!(
        got,
        vec![
            (T, hex("81 A1 6B A1 76")),
            (EventTime::new(1_700_000_001, 0), hex("81 A1 6B A1 77"))
        ]
    );
}

#[test]
fn sec3_3_packed_forward_bin8_with_size() {
    assert_eq!(blob().len(), 27);
    let frame = hex(&format!(
        "93 A3 61 70 70 C4 1B {ENTRY1} {ENTRY2} 81 A4 73 69 7A 65 02"
    ));
    let e = events(&frame);
    assert_eq!(e.mode, Mode::PackedForward);
    assert_eq!(e.size_hint, Some(2));
    check_packed_events(&e);
    let o = EncodeOptions {
        size: true,
        ..Default::default()
    };
    assert_eq!(
        encode_packed_blob("app", &blob(), Compression::Text, 2, &o),
        frame
    );
}

#[test]
fn sec3_3_packed_forward_fluentd_str32_form() {
    let mut frame = hex(&format!("93 A3 61 70 70 DB 00 00 00 1B {ENTRY1} {ENTRY2}"));
    frame.extend(hex(
        "83 A4 73 69 7A 65 02 AA 63 6F 6D 70 72 65 73 73 65 64 A4 74 65 78 74 A5 63 68 75 6E 6B B9",
    ));
    frame.extend_from_slice(CHUNK_NL);
    let e = events(&frame);
    assert_eq!(e.mode, Mode::PackedForward);
    assert_eq!(e.chunk.as_deref(), Some(CHUNK_NL));
    check_packed_events(&e);
    let o = EncodeOptions {
        chunk: Some(Bytes::from_static(CHUNK_NL)),
        size: true,
        compressed_text: true,
        blob_as_str32: true,
        time_format: TimeFormat::EventTime,
    };
    assert_eq!(
        encode_packed_blob("app", &blob(), Compression::Text, 2, &o),
        frame
    );
}

#[test]
fn sec3_4_compressed_two_gzip_members() {
    let mut gz = gzip(&hex(ENTRY1));
    gz.extend(gzip(&hex(ENTRY2)));
    let o = EncodeOptions {
        size: true,
        ..Default::default()
    };
    let frame = encode_packed_blob("app", &gz, Compression::Gzip, 2, &o);
    assert_eq!(&frame[..5], &hex("93 A3 61 70 70")[..]);
    assert!(frame.ends_with(&hex(
        "82 A4 73 69 7A 65 02 AA 63 6F 6D 70 72 65 73 73 65 64 A4 67 7A 69 70"
    )));
    let e = events(&frame);
    assert_eq!(e.mode, Mode::CompressedPackedForward);
    check_packed_events(&e);
}

#[test]
fn sec3_4_zstd() {
    let frame = encode_packed_blob(
        "app",
        &zstd_compress(&blob()),
        Compression::Zstd,
        2,
        &EncodeOptions::default(),
    );
    let e = events(&frame);
    assert_eq!(e.mode, Mode::CompressedPackedForward);
    check_packed_events(&e);
}

#[test]
fn sec6_ack_bytes() {
    let want = hex(
        "81 A3 61 63 6B B8 70 38 6E 39 67 6D 78 54 51 56 43 38 2F 6E 68 32 77 6C 4B 4B 65 51 3D 3D",
    );
    assert_eq!(encode_ack(CHUNK), want);
    assert_eq!(parse_ack(&want).unwrap().as_ref(), CHUNK);
    let mut want_nl = hex("81 A3 61 63 6B B9");
    want_nl.extend_from_slice(CHUNK_NL);
    assert_eq!(encode_ack(CHUNK_NL), want_nl);
    assert_eq!(parse_ack(&want_nl).unwrap().as_ref(), CHUNK_NL);
}

fn nonce() -> Vec<u8> {
    (0x00..=0x0F).collect()
}

fn auth_salt() -> Vec<u8> {
    (0xA0..=0xAF).collect()
}

#[test]
fn sec7_2_helo_bytes() {
    let want = hex("92 A4 48 45 4C 4F
         83 A5 6E 6F 6E 63 65 C4 10 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F
         A4 61 75 74 68 C4 10 A0 A1 A2 A3 A4 A5 A6 A7 A8 A9 AA AB AC AD AE AF
         A9 6B 65 65 70 61 6C 69 76 65 C3");
    let helo = Helo {
        nonce: Bytes::from(nonce()),
        auth: Bytes::from(auth_salt()),
        keepalive: true,
    };
    assert_eq!(helo.encode(), want);
    assert_eq!(Helo::parse(&want).unwrap(), helo);
}

#[test]
fn sec7_2_helo_str_fields_fluent_bit_style() {
    // nonce as str with non-UTF-8 bytes, no keepalive key.
    let mut b = hex("92 A4 48 45 4C 4F 82 A5 6E 6F 6E 63 65 B0");
    b.extend((0xF0..=0xFF).collect::<Vec<u8>>());
    b.extend(hex("A4 61 75 74 68 A0"));
    let h = Helo::parse(&b).unwrap();
    assert_eq!(h.nonce.as_ref(), &(0xF0..=0xFFu8).collect::<Vec<_>>()[..]);
    assert!(h.auth.is_empty());
    assert!(h.keepalive);
}

const KEY_DIGEST: &str = "3a680037d3979b4f789647cd22e7e55f2197791eb498799823c424e2213124ed63938d1c422f50e08ec02957ef44df338e46c77e8ea164b0dde6d64e171b30df";
const PW_DIGEST: &str = "e17d3503308e370841fdd00a90e5b8b425f8c13dd57f658db09abc3030c0f4d6aaa422929699b18b3113f1ae09280556e45d298f5d838d25f7841815efb90c40";
const SERVER_DIGEST: &str = "166115942d5b8f16e0a407429f91f1930a61614f9ef827ce50facc386797464f29141bf2cbb8c94df699a770b3be1fb9832c1fdc3267ca31590533aa24bdc995";
const SALT: &[u8] = b"0123456789abcdef0123456789abcdef";

#[test]
fn sec7_5_digests() {
    assert_eq!(
        key_digest(SALT, b"client.example", &nonce(), b"secret"),
        KEY_DIGEST
    );
    assert_eq!(password_digest(&auth_salt(), b"alice", b"pw"), PW_DIGEST);
    assert_eq!(
        key_digest(SALT, b"aggregator.example", &nonce(), b"secret"),
        SERVER_DIGEST
    );
    assert!(digest_eq(KEY_DIGEST.as_bytes(), KEY_DIGEST.as_bytes()));
    assert!(!digest_eq(KEY_DIGEST.as_bytes(), PW_DIGEST.as_bytes()));
    assert!(!digest_eq(
        KEY_DIGEST.as_bytes(),
        &KEY_DIGEST.as_bytes()[1..]
    ));
}

#[test]
fn sec7_5_ping_wire_form() {
    let ping = Ping {
        hostname: Bytes::from_static(b"client.example"),
        salt: Bytes::from_static(SALT),
        key_digest: Bytes::from_static(KEY_DIGEST.as_bytes()),
        username: Bytes::from_static(b"alice"),
        password_digest: Bytes::from_static(PW_DIGEST.as_bytes()),
    };
    let b = ping.encode();
    assert_eq!(b.len(), 321);
    let head = hex("96 A4 50 49 4E 47 AE 63 6C 69 65 6E 74 2E 65 78 61 6D 70 6C 65 D9 20 30 31");
    assert_eq!(&b[..head.len()], &head[..]);
    let at = head.len() - 2 + 32;
    assert_eq!(&b[at - 1..at + 3], &hex("66 D9 80 33")[..]);
    assert_eq!(Ping::parse(&b).unwrap(), ping);
}

#[test]
fn sec7_5_fluent_bit_non_utf8_salt() {
    let salt: Vec<u8> = (0xF0..=0xFF).collect();
    let digest = key_digest(&salt, b"fb-node", &nonce(), b"secret");
    assert_eq!(digest, "b6af8d348cc57723f4b4179597edf72c360e03d95d721dde1b5d824b374c4892abeebce857e7fdf2baeb1b85c96cb77396ef2b3c5af4605e6a6a8e2117525a5c");
    let mut b = hex("96 A4 50 49 4E 47 A7 66 62 2D 6E 6F 64 65 B0");
    b.extend_from_slice(&salt);
    b.extend(hex("D9 80"));
    b.extend_from_slice(digest.as_bytes());
    b.extend(hex("A0 A0"));
    let p = Ping::parse(&b).unwrap();
    assert_eq!(p.salt.as_ref(), &salt[..]);
    assert_eq!(p.hostname.as_ref(), b"fb-node");
    assert!(digest_eq(
        &p.key_digest,
        key_digest(&p.salt, &p.hostname, &nonce(), b"secret").as_bytes()
    ));
    assert_eq!(p.encode(), b);
}

#[test]
fn sec7_5_failure_pong_bytes() {
    let want = hex(
        "95 A4 50 4F 4E 47 C2 B3 73 68 61 72 65 64 5F 6B 65 79 20 6D 69 73 6D 61 74 63 68 A0 A0",
    );
    let pong = Pong::Rejected {
        reason: "shared_key mismatch".into(),
    };
    assert_eq!(pong.encode(), want);
    assert_eq!(Pong::parse(&want).unwrap(), pong);
}

#[test]
fn sec7_4_success_pong_round_trip() {
    let pong = Pong::Accepted {
        server_hostname: Bytes::from_static(b"aggregator.example"),
        digest: Bytes::from_static(SERVER_DIGEST.as_bytes()),
    };
    let b = pong.encode();
    assert_eq!(&b[..7], &hex("95 A4 50 4F 4E 47 C3")[..]);
    assert_eq!(Pong::parse(&b).unwrap(), pong);
}

#[test]
fn ping_with_wrong_arity_is_refused() {
    let mut b = hex("95 A4 50 49 4E 47");
    b.extend_from_slice(&[0xA0; 4]);
    assert!(matches!(
        Ping::parse(&b),
        Err(HandshakeError::BadLength { len: 5, .. })
    ));
    // Event data instead of PING.
    let msg = hex(&format!("93 A3 61 70 70 01 {MSG_HI}"));
    assert!(Ping::parse(&msg).is_err());
    assert!(Ping::parse(&[0xC0]).is_err());
}

#[test]
fn frames_of_all_examples_come_out_whole() {
    let mut stream = BytesMut::new();
    let a = hex(&format!(
        "93 AA 61 70 70 2E 61 63 63 65 73 73 CE 65 53 F1 00 {MSG_HI}"
    ));
    let b = hex(&format!(
        "93 A3 61 70 70 C4 1B {ENTRY1} {ENTRY2} 81 A4 73 69 7A 65 02"
    ));
    stream.extend_from_slice(&a);
    stream.extend_from_slice(&[0xC0]);
    stream.extend_from_slice(&b);
    let mut d = FrameDecoder::new(FrameLimits::default());
    assert_eq!(d.next_frame(&mut stream).unwrap().unwrap(), a);
    assert_eq!(
        d.next_frame(&mut stream).unwrap().unwrap().as_ref(),
        &[0xC0]
    );
    assert_eq!(d.next_frame(&mut stream).unwrap().unwrap(), b);
    assert_eq!(d.next_frame(&mut stream).unwrap(), None);
    assert!(matches!(
        parse_request(Bytes::from_static(&[0xC0]), &opts()).unwrap(),
        Request::KeepAlive
    ));
}

/// The npm fluent-logger client sends `nil` as the user name (and a digest over an empty user)
/// when the server's HELO carries an auth salt and the client has no user configured.
#[test]
fn ping_with_nil_username_reads_as_empty() {
    let mut buf = vec![0x96, 0xA4, b'P', b'I', b'N', b'G'];
    for field in [&b"client"[..], b"salt", b"digest"] {
        weir_proto::msgpack::write_str(&mut buf, field);
    }
    buf.push(0xc0);
    weir_proto::msgpack::write_str(&mut buf, b"pwdigest");
    let ping = weir_proto::Ping::parse(&buf).unwrap();
    assert!(ping.username.is_empty());
    assert_eq!(ping.password_digest, "pwdigest");
    // A nil anywhere else is still refused.
    let mut bad = vec![0x96, 0xA4, b'P', b'I', b'N', b'G', 0xc0];
    for field in [&b"salt"[..], b"digest", b"", b""] {
        weir_proto::msgpack::write_str(&mut bad, field);
    }
    assert!(weir_proto::Ping::parse(&bad).is_err());
}
