//! The ack reply: `{"ack": <chunk>}`.

use bytes::Bytes;

use crate::error::RequestError;
use crate::msgpack::{read_header, read_payload, skip_value, write_str, Header};

/// Encodes the ack reply for a request whose `chunk` option held `chunk`: a one-entry map
/// `{"ack": chunk}` with the chunk written as a msgpack `str` holding exactly the bytes received
/// (a trailing newline included).
pub fn encode_ack(chunk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 10);
    out.extend_from_slice(&[0x81, 0xA3, b'a', b'c', b'k']);
    write_str(&mut out, chunk);
    out
}

/// Parses an ack reply (for clients) and returns the echoed chunk bytes. Accepts the value as
/// `str` or `bin`; other keys are ignored.
pub fn parse_ack(frame: &[u8]) -> Result<Bytes, RequestError> {
    let (h, mut p) = read_header(frame, 0)?;
    let Header::Map(n) = h else {
        return Err(RequestError::NotAck);
    };
    let mut found = None;
    for _ in 0..n {
        let (kh, kp) = read_header(frame, p)?;
        let is_ack = match kh {
            Header::Str(len) => {
                let (k, e) = read_payload(frame, kp, len)?;
                p = e;
                k == b"ack"
            }
            _ => {
                p = skip_value(frame, p)?;
                false
            }
        };
        let vend = skip_value(frame, p)?;
        if is_ack {
            if let (Header::Str(len) | Header::Bin(len), vp) = read_header(frame, p)? {
                found = Some(Bytes::copy_from_slice(read_payload(frame, vp, len)?.0));
            }
        }
        p = vend;
    }
    if p != frame.len() {
        return Err(RequestError::TrailingBytes);
    }
    found.ok_or(RequestError::NotAck)
}
