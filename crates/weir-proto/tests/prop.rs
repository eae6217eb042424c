//! Property tests: encode → split the stream anywhere → frame → parse gives the same events back,
//! and arbitrary bytes never make the decoder panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rmpv::Value;
use weir_proto::*;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        ".{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(t, d)| Value::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((".{0,8}".prop_map(Value::from), inner), 0..6)
                .prop_map(Value::Map),
        ]
    })
}

fn record() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(("[a-z_]{0,8}", value()), 0..6).prop_map(|kv| {
        let map = Value::Map(kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect());
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map).unwrap();
        out
    })
}

fn event() -> impl Strategy<Value = (EventTime, Vec<u8>)> {
    (1u32.., 0u32..1_000_000_000, record()).prop_map(|(s, n, r)| (EventTime::new(s, n), r))
}

#[derive(Debug, Clone)]
struct Req {
    tag: String,
    mode: u8,
    fmt: TimeFormat,
    opts: EncodeOptions,
    events: Vec<(EventTime, Vec<u8>)>,
}

fn req() -> impl Strategy<Value = Req> {
    (
        ".{0,20}",
        0u8..5,
        prop_oneof![
            Just(TimeFormat::Integer),
            Just(TimeFormat::EventTime),
            Just(TimeFormat::Float),
            Just(TimeFormat::FluentBitWrapped)
        ],
        proptest::option::of("[A-Za-z0-9+/=\n]{0,30}"),
        any::<(bool, bool, bool)>(),
        proptest::collection::vec(event(), 1..6),
    )
        .prop_map(|(tag, mode, fmt, chunk, (size, text, str32), mut events)| {
            if mode == 0 {
                events.truncate(1);
            }
            Req {
                tag,
                mode,
                fmt,
                opts: EncodeOptions {
                    chunk: chunk.map(Bytes::from),
                    size,
                    compressed_text: text,
                    blob_as_str32: str32,
                    time_format: fmt,
                },
                events,
            }
        })
}

fn encode(r: &Req) -> Vec<u8> {
    let entries: Vec<(EventTime, &[u8])> = r.events.iter().map(|(t, b)| (*t, &b[..])).collect();
    match r.mode {
        0 => encode_message(&r.tag, entries[0].0, entries[0].1, &r.opts),
        1 => encode_forward(&r.tag, &entries, &r.opts),
        2 => encode_packed(&r.tag, &entries, Compression::Text, &r.opts),
        3 => encode_packed(&r.tag, &entries, Compression::Gzip, &r.opts),
        _ => encode_packed(&r.tag, &entries, Compression::Zstd, &r.opts),
    }
}

fn expected_time(t: EventTime, fmt: TimeFormat) -> EventTime {
    match fmt {
        TimeFormat::Integer => EventTime::new(t.sec, 0),
        _ => t,
    }
}

fn time_matches(got: EventTime, want: EventTime, fmt: TimeFormat) -> bool {
    if fmt == TimeFormat::Float {
        let g = i128::from(got.sec) * 1_000_000_000 + i128::from(got.nsec);
        let w = i128::from(want.sec) * 1_000_000_000 + i128::from(want.nsec);
        (g - w).abs() <= 2_000
    } else {
        got == want
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_through_split_stream(
        reqs in proptest::collection::vec(req(), 1..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let encoded: Vec<Vec<u8>> = reqs.iter().map(encode).collect();
        let stream = encoded.concat();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut d = FrameDecoder::new(FrameLimits::default());
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for w in points.windows(2) {
            buf.extend_from_slice(&stream[w[0]..w[1]]);
            while let Some(f) = d.next_frame(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frames.len(), reqs.len());
        let popts = ParseOptions { skip_invalid_event: false, ..ParseOptions::default() };
        for ((frame, r), bytes) in frames.into_iter().zip(&reqs).zip(&encoded) {
            prop_assert_eq!(&frame[..], &bytes[..]);
            let Request::Events(e) = parse_request(frame, &popts).unwrap() else {
                panic!("keep-alive");
            };
            prop_assert_eq!(&e.tag, &r.tag);
            prop_assert_eq!(e.chunk.clone(), r.opts.chunk.clone());
            prop_assert_eq!(e.invalid_events, 0);
            prop_assert_eq!(e.events.len(), r.events.len());
            let fmt = if r.mode == 0 && r.fmt == TimeFormat::FluentBitWrapped {
                TimeFormat::EventTime
            } else {
                r.fmt
            };
            for (i, ((t, rec), (wt, wrec))) in e.events.iter().zip(&r.events).enumerate() {
                prop_assert_eq!(rec, &wrec[..]);
                prop_assert!(time_matches(t, expected_time(*wt, fmt), fmt), "{:?} vs {:?}", t, wt);
                let owned = e.events.record(i).unwrap();
                prop_assert_eq!(owned.as_ref(), &wrec[..]);
                let mut json = Vec::new();
                record_to_json(rec, &mut json).unwrap();
            }
            // Entries with EventTime (never 0 here) in the Forward and PackedForward modes are
            // in chunk form: their bytes are exactly the chunk's entries.
            let in_form = r.mode != 0 && fmt == TimeFormat::EventTime;
            prop_assert_eq!(e.events.in_chunk_form(), in_form);
            if in_form {
                let entries = e.events.entries();
                let from = entries[0].start as usize - 11;
                let to = entries[entries.len() - 1].end as usize;
                let mut blob = Vec::new();
                for (t, rec) in &r.events {
                    encode_entry(&mut blob, *t, rec, TimeFormat::EventTime);
                }
                prop_assert_eq!(&e.events.buffer()[from..to], &blob[..]);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..512),
        cut in any::<prop::sample::Index>(),
        skip in any::<bool>(),
    ) {
        let cut = cut.index(data.len() + 1);
        let mut d = FrameDecoder::new(FrameLimits { chunk_size_limit: 4096, max_depth: 32 });
        let mut buf = BytesMut::new();
        let popts = ParseOptions { skip_invalid_event: skip, decompression_size_limit: 1 << 16, now: EventTime::new(1, 0) };
        let parts: [&[u8]; 2] = [&data[..cut], &data[cut..]];
        'outer: for part in parts {
            buf.extend_from_slice(part);
            loop {
                match d.next_frame(&mut buf) {
                    Ok(Some(f)) => {
                        let _ = parse_request(f.clone(), &popts);
                        let _ = Ping::parse(&f);
                        let _ = Helo::parse(&f);
                        let _ = Pong::parse(&f);
                        let _ = parse_ack(&f);
                        let mut out = Vec::new();
                        let _ = record_to_json(&f, &mut out);
                    }
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
        // The whole-buffer entry points directly, too.
        let _ = parse_request(Bytes::from(data.clone()), &popts);
        let _ = Ping::parse(&data);
        let _ = Helo::parse(&data);
        let _ = weir_proto::msgpack::skip_value(&data, 0);
        let mut out = Vec::new();
        let _ = record_to_json(&data, &mut out);
    }

    #[test]
    fn mutated_requests_never_panic(
        r in req(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&r);
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let popts = ParseOptions { skip_invalid_event: true, decompression_size_limit: 1 << 16, now: EventTime::new(1, 0) };
        let _ = parse_request(Bytes::from(bytes.clone()), &popts);
        let mut d = FrameDecoder::new(FrameLimits { chunk_size_limit: 1 << 16, max_depth: 32 });
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(f)) = d.next_frame(&mut buf) {
            let _ = parse_request(f, &popts);
        }
    }
}
