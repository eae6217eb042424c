//! Feeds arbitrary bytes, split at a point taken from the data, through the frame decoder and
//! the request parser, and into the handshake parsers.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use weir_proto::{
    parse_ack, parse_request, record_to_json, EventTime, FrameDecoder, FrameLimits, Helo,
    ParseOptions, Ping, Pong,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cut = if rest.is_empty() {
        0
    } else {
        usize::from(first) * rest.len() / 255
    };
    let opts = ParseOptions {
        skip_invalid_event: first & 1 == 1,
        decompression_size_limit: 1 << 20,
        now: EventTime::new(1, 0),
    };
    let mut decoder = FrameDecoder::new(FrameLimits {
        chunk_size_limit: 1 << 20,
        max_depth: 64,
    });
    let mut buf = BytesMut::new();
    let parts: [&[u8]; 2] = [&rest[..cut], &rest[cut..]];
    'outer: for part in parts {
        buf.extend_from_slice(part);
        loop {
            match decoder.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    let _ = parse_request(frame.clone(), &opts);
                    let _ = Ping::parse(&frame);
                    let _ = Helo::parse(&frame);
                    let _ = Pong::parse(&frame);
                    let _ = parse_ack(&frame);
                    let mut out = Vec::new();
                    let _ = record_to_json(&frame, &mut out);
                }
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    let _ = parse_request(Bytes::copy_from_slice(rest), &opts);
    let _ = Ping::parse(rest);
    let _ = Helo::parse(rest);
});
