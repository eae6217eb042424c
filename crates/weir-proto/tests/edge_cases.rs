//! Section 10 of forward-protocol.md, items 1–16, as far as they concern the codec. Item 13
//! (tag sanitising) belongs to the outputs: the codec keeps tags as given. Items 15 and 16 are
//! server policy; the codec's share is checked (the chunk is a stable, verbatim key).

use bytes::{Bytes, BytesMut};
use weir_proto::msgpack::{write_array_len, write_map_len, write_str};
use weir_proto::*;

fn opts(skip: bool) -> ParseOptions {
    ParseOptions {
        skip_invalid_event: skip,
        decompression_size_limit: 1 << 20,
        now: EventTime::new(1_234, 5),
    }
}

fn parse(frame: &[u8], skip: bool) -> Result<EventRequest, RequestError> {
    match parse_request(Bytes::copy_from_slice(frame), &opts(skip))? {
        Request::Events(e) => Ok(e),
        Request::KeepAlive => panic!("keep-alive"),
    }
}

fn rec(k: &str, v: &str) -> Vec<u8> {
    let mut r = Vec::new();
    write_map_len(&mut r, 1);
    write_str(&mut r, k.as_bytes());
    write_str(&mut r, v.as_bytes());
    r
}

fn limits(chunk: usize) -> FrameLimits {
    FrameLimits {
        chunk_size_limit: chunk,
        max_depth: 16,
    }
}

const T: EventTime = EventTime {
    sec: 1_700_000_000,
    nsec: 7,
};

fn sample_requests() -> Vec<Vec<u8>> {
    let r1 = rec("a", "b");
    let r2 = rec("message", "hello world");
    let o = EncodeOptions {
        chunk: Some(Bytes::from_static(b"abc\n")),
        size: true,
        ..Default::default()
    };
    vec![
        encode_message("t.a", T, &r1, &EncodeOptions::default()),
        vec![0xC0],
        encode_forward("t.b", &[(T, &r1[..]), (T, &r2[..])], &o),
        encode_packed("t.c", &[(T, &r2[..]), (T, &r1[..])], Compression::Text, &o),
        encode_packed("t.d", &[(T, &r1[..])], Compression::Gzip, &o),
    ]
}

fn drain(d: &mut FrameDecoder, buf: &mut BytesMut, out: &mut Vec<Bytes>) {
    while let Some(f) = d.next_frame(buf).unwrap() {
        out.push(f);
    }
}

#[test]
fn edge_01_split_at_every_byte_and_many_per_read() {
    let reqs = sample_requests();
    let stream: Vec<u8> = reqs.concat();
    // All requests in one read.
    let mut d = FrameDecoder::new(limits(1 << 20));
    let mut buf = BytesMut::from(&stream[..]);
    let mut frames = Vec::new();
    drain(&mut d, &mut buf, &mut frames);
    assert_eq!(frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>(), reqs);
    assert!(buf.is_empty());
    // Split into two reads at every position.
    for cut in 0..=stream.len() {
        let mut d = FrameDecoder::new(limits(1 << 20));
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        buf.extend_from_slice(&stream[..cut]);
        drain(&mut d, &mut buf, &mut frames);
        buf.extend_from_slice(&stream[cut..]);
        drain(&mut d, &mut buf, &mut frames);
        assert_eq!(frames.iter().map(|f| f.to_vec()).collect::<Vec<_>>(), reqs);
    }
    // One byte at a time.
    let mut d = FrameDecoder::new(limits(1 << 20));
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for b in &stream {
        buf.extend_from_slice(&[*b]);
        drain(&mut d, &mut buf, &mut frames);
    }
    assert_eq!(frames.len(), reqs.len());
    for f in frames {
        parse_request(f, &opts(false)).unwrap();
    }
}

#[test]
fn edge_02_huge_declared_length_refused_before_buffering() {
    for header in [
        vec![0x92, 0xA1, b't', 0xC6, 0xFF, 0xFF, 0xFF, 0xFF], // bin32 4 GiB
        vec![0x92, 0xA1, b't', 0xDB, 0x40, 0x00, 0x00, 0x00], // str32 1 GiB
        vec![0x92, 0xA1, b't', 0xDD, 0x10, 0x00, 0x00, 0x00], // array32
        vec![0xDF, 0x01, 0x00, 0x00, 0x00],                   // map32
        vec![0xC9, 0x7F, 0xFF, 0xFF, 0xFF, 0x05],             // ext32
    ] {
        let mut d = FrameDecoder::new(limits(64 * 1024));
        let mut buf = BytesMut::from(&header[..]);
        assert!(
            matches!(d.next_frame(&mut buf), Err(FrameError::TooLarge { .. })),
            "{header:02x?}"
        );
    }
    // A frame that only grows past the limit is refused once it does.
    let mut d = FrameDecoder::new(limits(100));
    let mut buf = BytesMut::from(&[0xDC, 0x00, 0x50][..]);
    assert_eq!(d.next_frame(&mut buf).unwrap(), None);
    for _ in 0..100 {
        buf.extend_from_slice(&[0xA1, b'x']);
    }
    assert!(matches!(
        d.next_frame(&mut buf),
        Err(FrameError::TooLarge { .. })
    ));
    // Exactly at the limit is fine.
    let mut d = FrameDecoder::new(limits(5));
    let mut buf = BytesMut::from(&[0xC4, 0x03, 1, 2, 3][..]);
    assert!(d.next_frame(&mut buf).unwrap().is_some());
}

#[test]
fn edge_02_needed_hint_for_declared_bin() {
    let mut d = FrameDecoder::new(limits(1 << 20));
    let mut buf = BytesMut::from(&[0x92, 0xA1, b't', 0xC5, 0x10, 0x00, 0x01][..]);
    assert_eq!(d.next_frame(&mut buf).unwrap(), None);
    assert_eq!(d.needed_hint(), 6 + 0x1000 - 7);
    assert_eq!(d.pending(), 6);
}

#[test]
fn edge_02_too_deep_and_invalid_byte() {
    let mut d = FrameDecoder::new(limits(1 << 20));
    let mut buf = BytesMut::from(&[0x91; 17][..]);
    assert!(matches!(
        d.next_frame(&mut buf),
        Err(FrameError::TooDeep { max_depth: 16 })
    ));
    let mut d = FrameDecoder::new(limits(1 << 20));
    let mut buf = BytesMut::from(&[0x92, 0xA1, b't', 0xC1][..]);
    assert!(matches!(
        d.next_frame(&mut buf),
        Err(FrameError::InvalidByte { offset: 3 })
    ));
}

#[test]
fn edge_02_scanning_is_linear_one_byte_at_a_time() {
    let r = rec("message", "a fairly ordinary log line");
    let entries: Vec<(EventTime, &[u8])> = (0..20_000).map(|_| (T, &r[..])).collect();
    let mut frame = encode_forward("big", &entries, &EncodeOptions::default());
    // And a large bin payload, which is skipped, not examined.
    let packed = encode_packed_blob(
        "bin",
        &vec![0x90; 100_000],
        Compression::Text,
        0,
        &EncodeOptions::default(),
    );
    frame.extend_from_slice(&packed);
    let n = frame.len();
    let mut d = FrameDecoder::new(limits(1 << 24));
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for b in &frame {
        buf.extend_from_slice(&[*b]);
        while d.next_frame(&mut buf).unwrap().is_some() {
            frames += 1;
        }
    }
    assert_eq!(frames, 2);
    let examined = d.bytes_examined();
    assert!(
        examined <= 2 * n as u64,
        "examined {examined} for {n} bytes"
    );
}

#[test]
fn edge_03_non_utf8_str_blob_keys_values_and_bin() {
    let mut r = Vec::new();
    write_map_len(&mut r, 2);
    write_str(&mut r, b"k\xff");
    write_str(&mut r, b"\xc3\x28");
    write_str(&mut r, b"b");
    weir_proto::msgpack::write_bin(&mut r, &[0, 1, 0xFF]);
    let mut blob = Vec::new();
    encode_entry(&mut blob, T, &r, TimeFormat::EventTime);
    // A str-declared blob whose bytes are not UTF-8.
    assert!(std::str::from_utf8(&blob).is_err());
    let mut frame = vec![0x92, 0xA1, b't', 0xDB];
    frame.extend_from_slice(&(blob.len() as u32).to_be_bytes());
    frame.extend_from_slice(&blob);
    let e = parse(&frame, false).unwrap();
    assert_eq!(e.events.record(0).unwrap().as_ref(), &r[..]);
    let mut json = Vec::new();
    record_to_json(&r, &mut json).unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        "{\"k\u{FFFD}\":\"\u{FFFD}(\",\"b\":\"\\u0000\\u0001\u{FFFD}\"}"
    );
    // Tag bytes that are not UTF-8 are decoded lossily.
    let frame = [0x93, 0xA2, b'a', 0xFF, 0x01, 0x80];
    assert_eq!(parse(&frame, false).unwrap().tag, "a\u{FFFD}");
}

#[test]
fn edge_04_truncated_packed_entries_reject_whole_request() {
    let r = rec("k", "v");
    let mut blob = Vec::new();
    encode_entry(&mut blob, T, &r, TimeFormat::EventTime);
    encode_entry(&mut blob, T, &r, TimeFormat::EventTime);
    let cut = &blob[..blob.len() - 2];
    for skip in [false, true] {
        for c in [Compression::Text, Compression::Gzip, Compression::Zstd] {
            let data = match c {
                Compression::Text => cut.to_vec(),
                Compression::Gzip => gzip(cut),
                Compression::Zstd => zstd_compress(cut),
            };
            let f = encode_packed_blob("t", &data, c, 2, &EncodeOptions::default());
            assert_eq!(
                parse(&f, skip).unwrap_err(),
                RequestError::TruncatedEntries,
                "{c:?}"
            );
        }
    }
}

#[test]
fn edge_05_packed_blob_that_is_an_array_of_entries_is_rejected() {
    let r = rec("k", "v");
    for n in [1usize, 2, 3] {
        let mut blob = Vec::new();
        write_array_len(&mut blob, n);
        for _ in 0..n {
            encode_entry(&mut blob, T, &r, TimeFormat::EventTime);
        }
        let f = encode_packed_blob("t", &blob, Compression::Text, n, &EncodeOptions::default());
        assert_eq!(
            parse(&f, true).unwrap_err(),
            RequestError::BlobIsArray,
            "{n}"
        );
    }
    // The legitimate one-entry Fluent Bit form is not mistaken for it.
    let mut blob = Vec::new();
    encode_entry(&mut blob, T, &r, TimeFormat::FluentBitWrapped);
    let f = encode_packed_blob("t", &blob, Compression::Text, 1, &EncodeOptions::default());
    assert_eq!(parse(&f, false).unwrap().events.len(), 1);
}

#[test]
fn edge_06_gzip_multiple_members() {
    let r = rec("k", "v");
    let mut data = Vec::new();
    for i in 0..3u32 {
        let mut e = Vec::new();
        encode_entry(&mut e, EventTime::new(i + 1, 0), &r, TimeFormat::EventTime);
        data.extend(gzip(&e));
    }
    let f = encode_packed_blob("t", &data, Compression::Gzip, 3, &EncodeOptions::default());
    let e = parse(&f, false).unwrap();
    let times: Vec<_> = e.events.iter().map(|(t, _)| t.sec).collect();
    assert_eq!(times, vec![1, 2, 3]);
}

#[test]
fn edge_06_gzip_trailing_garbage_rejected() {
    let r = rec("k", "v");
    let mut e = Vec::new();
    encode_entry(&mut e, T, &r, TimeFormat::EventTime);
    let mut data = gzip(&e);
    data.extend_from_slice(b"garbage!");
    let f = encode_packed_blob("t", &data, Compression::Gzip, 1, &EncodeOptions::default());
    assert!(matches!(parse(&f, true), Err(RequestError::Decompress(_))));
}

#[test]
fn edge_06_decompression_bomb_capped() {
    let big = vec![0u8; 4 << 20];
    for c in [Compression::Gzip, Compression::Zstd] {
        let data = match c {
            Compression::Gzip => gzip(&big),
            _ => zstd_compress(&big),
        };
        assert!(data.len() < 64 * 1024);
        let f = encode_packed_blob("t", &data, c, 1, &EncodeOptions::default());
        assert_eq!(
            parse(&f, true).unwrap_err(),
            RequestError::DecompressedTooLarge { limit: 1 << 20 }
        );
    }
}

#[test]
fn edge_07_gzip_without_compressed_option_rejected() {
    let r = rec("k", "v");
    let mut e = Vec::new();
    encode_entry(&mut e, T, &r, TimeFormat::EventTime);
    let f = encode_packed_blob(
        "t",
        &gzip(&e),
        Compression::Text,
        1,
        &EncodeOptions::default(),
    );
    for skip in [false, true] {
        assert_eq!(parse(&f, skip).unwrap_err(), RequestError::UnexpectedGzip);
    }
}

#[test]
fn edge_07_unknown_compression_rejected() {
    let mut f = vec![0x93, 0xA1, b't', 0xC4, 0x00, 0x81];
    write_str(&mut f, b"compressed");
    write_str(&mut f, b"lz4");
    assert_eq!(
        parse(&f, true).unwrap_err(),
        RequestError::UnknownCompression("lz4".into())
    );
}

#[test]
fn edge_08_unknown_ext_in_record_preserved() {
    let mut r = Vec::new();
    write_map_len(&mut r, 1);
    write_str(&mut r, b"x");
    r.extend_from_slice(&[0xC7, 0x03, 0x42, b'a', b'b', b'c']); // ext type 0x42
    let f = encode_forward("t", &[(T, &r[..])], &EncodeOptions::default());
    let e = parse(&f, false).unwrap();
    assert_eq!(e.events.record(0).unwrap().as_ref(), &r[..]);
    let mut json = Vec::new();
    record_to_json(&r, &mut json).unwrap();
    assert_eq!(json, b"{\"x\":\"abc\"}");
}

fn mixed_forward() -> Vec<u8> {
    let good = rec("k", "v");
    let mut f = vec![0x92, 0xA1, b't', 0x96];
    encode_entry(&mut f, T, &good, TimeFormat::EventTime); // good
    f.extend_from_slice(&[0x92, 0x01, 0xA1, b'x']); // record not a map
    f.extend_from_slice(&[0x92, 0xA1, b'x']); // time not a time value
    f.extend_from_slice(&good);
    f.extend_from_slice(&[0x92, 0x01, 0xC0]); // nil record
    f.extend_from_slice(&[0x93, 0x01, 0x80, 0x80]); // entry not a 2-array
    encode_entry(&mut f, T, &good, TimeFormat::Integer); // good
    f
}

#[test]
fn edge_09_invalid_events_skipped_rest_kept() {
    let e = parse(&mixed_forward(), true).unwrap();
    assert_eq!(e.events.len(), 2);
    assert_eq!(e.invalid_events, 4);
    let times: Vec<_> = e.events.iter().map(|(t, _)| t).collect();
    assert_eq!(times, vec![T, EventTime::new(T.sec, 0)]);
}

#[test]
fn edge_09_invalid_events_rejected_without_skip() {
    assert_eq!(
        parse(&mixed_forward(), false).unwrap_err(),
        RequestError::InvalidEvent { index: 1 }
    );
    // Message whose record is not a map.
    let f = [0x93, 0xA1, b't', 0x01, 0xC0];
    assert_eq!(
        parse(&f, false).unwrap_err(),
        RequestError::InvalidEvent { index: 0 }
    );
    let e = parse(&f, true).unwrap();
    assert_eq!((e.events.len(), e.invalid_events), (0, 1));
    // Invalid packed entry, e.g. a bare integer.
    let good = rec("k", "v");
    let mut blob = vec![0x05];
    encode_entry(&mut blob, T, &good, TimeFormat::EventTime);
    let f = encode_packed_blob("t", &blob, Compression::Text, 2, &EncodeOptions::default());
    let e = parse(&f, true).unwrap();
    assert_eq!((e.events.len(), e.invalid_events), (1, 1));
    assert!(parse(&f, false).is_err());
}

#[test]
fn edge_10_time_forms_and_zero_time() {
    let r = rec("k", "v");
    let mut f = vec![0x92, 0xA1, b't', 0x96];
    // float
    f.push(0x92);
    f.push(0xCB);
    f.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
    f.extend_from_slice(&r);
    // ext8 header
    f.extend_from_slice(&[0x92, 0xC7, 0x08, 0x00, 0, 0, 0, 9, 0, 0, 0, 3]);
    f.extend_from_slice(&r);
    // [time, {}]
    f.extend_from_slice(&[0x92, 0x92, 0x0A, 0x80]);
    f.extend_from_slice(&r);
    // [time, {meta...}]
    f.extend_from_slice(&[0x92, 0x92, 0x0B]);
    f.extend_from_slice(&rec("host", "h1"));
    f.extend_from_slice(&r);
    // time 0 (integer) and EventTime 0/0
    f.extend_from_slice(&[0x92, 0x00]);
    f.extend_from_slice(&r);
    f.extend_from_slice(&[0x92, 0xD7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&r);
    let e = parse(&f, false).unwrap();
    let now = opts(false).now;
    let times: Vec<_> = e.events.iter().map(|(t, _)| t).collect();
    assert_eq!(
        times,
        vec![
            EventTime::new(1, 500_000_000),
            EventTime::new(9, 3),
            EventTime::new(10, 0),
            EventTime::new(11, 0),
            now,
            now
        ]
    );
    for (_, rb) in e.events.iter() {
        assert_eq!(rb, &r[..]);
    }
    // Message mode: time 0 too.
    let m = encode_message("t", EventTime::default(), &r, &EncodeOptions::default());
    assert_eq!(parse(&m, false).unwrap().events.time(0), Some(now));
}

#[test]
fn edge_10_only_eventtime_entries_as_sent_are_in_chunk_form() {
    let r = rec("k", "v");
    let forward = |entries: &[&[u8]]| {
        let mut f = vec![0x92, 0xA1, b't', 0x90 | entries.len() as u8];
        for e in entries {
            f.extend_from_slice(e);
            f.extend_from_slice(&r);
        }
        f
    };
    let event_time: &[u8] = &[0x92, 0xD7, 0x00, 0, 0, 0, 9, 0, 0, 0, 3];
    let event_time_zero: &[u8] = &[0x92, 0xD7, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    let ext8: &[u8] = &[0x92, 0xC7, 0x08, 0x00, 0, 0, 0, 9, 0, 0, 0, 3];
    let integer: &[u8] = &[0x92, 0x0A];
    let array16: &[u8] = &[0xDC, 0x00, 0x02, 0xD7, 0x00, 0, 0, 0, 9, 0, 0, 0, 3];
    // The msgpack timestamp 64 (ext -1 in a fixext 8): the same size, another form.
    let timestamp64: &[u8] = &[0x92, 0xD7, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9];
    let e = parse(&forward(&[event_time, event_time]), false).unwrap();
    assert!(e.events.in_chunk_form());
    let first = e.events.entries()[0].start as usize - 11;
    assert_eq!(&e.events.buffer()[first..first + 11], event_time);
    // One entry in another form, or with its time replaced, and the batch is not.
    for other in [event_time_zero, ext8, integer, array16, timestamp64] {
        let e = parse(&forward(&[event_time, other]), false).unwrap();
        assert_eq!(e.events.len(), 2);
        assert!(!e.events.in_chunk_form(), "{other:02x?}");
    }
    // An invalid entry skipped breaks the run of entries.
    let e = parse(&forward(&[event_time, &[0x92, 0xC0], event_time]), true).unwrap();
    assert_eq!((e.events.len(), e.invalid_events), (2, 1));
    assert!(!e.events.in_chunk_form());
    // Message mode never is (the entry is not an array of its own).
    let m = encode_message("t", EventTime::new(9, 3), &r, &EncodeOptions::default());
    assert!(!parse(&m, false).unwrap().events.in_chunk_form());
}

#[test]
fn edge_11_option_map_nil_missing_nonstring_keys_wrong_size() {
    let r = rec("k", "v");
    let mut base = vec![0x93, 0xA1, b't', 0x91];
    encode_entry(&mut base, T, &r, TimeFormat::EventTime);
    // nil option
    let mut f = base.clone();
    f.push(0xC0);
    let e = parse(&f, false).unwrap();
    assert_eq!((e.chunk, e.size_hint, e.events.len()), (None, None, 1));
    // missing option
    let mut f = base.clone();
    f[0] = 0x92;
    assert_eq!(parse(&f, false).unwrap().events.len(), 1);
    // non-string keys, unknown keys, size that disagrees
    let mut f = base.clone();
    f.push(0x84);
    f.extend_from_slice(&[0x01, 0x02]); // int key
    f.extend_from_slice(&[0x91, 0xC0, 0x80]); // array key
    write_str(&mut f, b"size");
    f.extend_from_slice(&[0xCE, 0xFF, 0xFF, 0xFF, 0xFF]);
    write_str(&mut f, b"chunk");
    write_str(&mut f, b"id");
    let e = parse(&f, false).unwrap();
    assert_eq!(e.size_hint, Some(0xFFFF_FFFF));
    assert_eq!(e.chunk.as_deref(), Some(&b"id"[..]));
    assert_eq!(e.events.len(), 1);
}

#[test]
fn edge_12_fluent_signal_payload_is_not_log_entries() {
    let payload = b"\x85not entries at all\xc1".to_vec();
    let mut f = vec![0x93, 0xA1, b't'];
    weir_proto::msgpack::write_bin(&mut f, &payload);
    f.push(0x82);
    write_str(&mut f, b"fluent_signal");
    f.push(0x02);
    write_str(&mut f, b"chunk");
    write_str(&mut f, b"c1");
    let e = parse(&f, false).unwrap();
    assert_eq!(e.fluent_signal, 2);
    assert!(e.events.is_empty());
    assert_eq!(e.signal_bytes, payload.len());
    assert_eq!(e.chunk.as_deref(), Some(&b"c1"[..]));
}

#[test]
fn edge_13_tags_kept_as_given() {
    let r = rec("k", "v");
    for tag in ["", "../../etc/passwd", "a/b\0c", &"x".repeat(70_000)] {
        let f = encode_message(tag, T, &r, &EncodeOptions::default());
        assert_eq!(parse(&f, false).unwrap().tag, tag);
    }
}

#[test]
fn edge_14_chunk_echoed_verbatim_with_newline() {
    let chunk = b"p8n9gmxTQVC8/nh2wlKKeQ==\n";
    let r = rec("k", "v");
    let o = EncodeOptions {
        chunk: Some(Bytes::from_static(chunk)),
        ..Default::default()
    };
    for f in [
        encode_message("t", T, &r, &o),
        encode_forward("t", &[(T, &r[..])], &o),
        encode_packed("t", &[(T, &r[..])], Compression::Text, &o),
        encode_packed("t", &[(T, &r[..])], Compression::Gzip, &o),
        encode_packed("t", &[(T, &r[..])], Compression::Zstd, &o),
    ] {
        let e = parse(&f, false).unwrap();
        let c = e.chunk.unwrap();
        assert_eq!(c.as_ref(), chunk);
        assert_eq!(parse_ack(&encode_ack(&c)).unwrap().as_ref(), chunk);
    }
    // A non-UTF-8 chunk is echoed byte for byte too.
    let raw = b"\xff\xfe";
    assert_eq!(parse_ack(&encode_ack(raw)).unwrap().as_ref(), raw);
}

#[test]
fn edge_16_same_chunk_twice_parses_identically() {
    let r = rec("k", "v");
    let o = EncodeOptions {
        chunk: Some(Bytes::from_static(b"dup")),
        ..Default::default()
    };
    let f = encode_forward("t", &[(T, &r[..])], &o);
    let a = parse(&f, false).unwrap();
    let b = parse(&f, false).unwrap();
    assert_eq!(a.chunk, b.chunk);
    assert_eq!(a.events.record(0), b.events.record(0));
}

#[test]
fn request_shape_errors() {
    assert_eq!(parse(&[0x01], false).unwrap_err(), RequestError::NotArray);
    assert_eq!(parse(&[0x90], false).unwrap_err(), RequestError::EmptyArray);
    assert_eq!(
        parse(&[0x92, 0x01, 0x90], false).unwrap_err(),
        RequestError::TagNotString
    );
    assert!(matches!(
        parse(&[0x91, 0xA1, b't'], false),
        Err(RequestError::BadLength { .. })
    ));
    assert!(matches!(
        parse(&[0x95, 0xA1, b't', 0x01, 0x80, 0xC0, 0xC0], false),
        Err(RequestError::BadLength { .. })
    ));
    assert_eq!(
        parse(&[0x92, 0xA1, b't', 0x90, 0x00], false).unwrap_err(),
        RequestError::TrailingBytes
    );
}
