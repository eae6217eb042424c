//! Event times and the time values of the forward protocol.

use crate::error::ScanError;
use crate::msgpack::{read_header, read_payload, skip_value, Header};

/// A point in time with nanosecond precision, as Fluentd's EventTime carries it: unsigned
/// seconds since the Unix epoch (so 1970 to 2106) and nanoseconds within the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Whole seconds since the Unix epoch.
    pub sec: u32,
    /// Nanoseconds within the second, below 1,000,000,000.
    pub nsec: u32,
}

impl EventTime {
    /// Makes a time from seconds and nanoseconds.
    pub fn new(sec: u32, nsec: u32) -> Self {
        EventTime { sec, nsec }
    }

    /// The current wall-clock time. Times before the epoch give zero; times past 2106 saturate.
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => EventTime {
                sec: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(_) => EventTime::default(),
        }
    }

    /// True for the time 0/0, which Fluentd treats as "unknown" and replaces with the receive time.
    pub fn is_zero(&self) -> bool {
        self.sec == 0 && self.nsec == 0
    }

    /// The time as floating-point seconds.
    pub fn as_f64(&self) -> f64 {
        f64::from(self.sec) + f64::from(self.nsec) / 1e9
    }

    /// Converts floating-point seconds. Negative, NaN, infinite or too large values give `None`.
    pub fn from_f64(v: f64) -> Option<Self> {
        if !(0.0..4_294_967_296.0).contains(&v) {
            return None;
        }
        let sec = v.floor();
        let nsec = ((v - sec) * 1e9).round().min(999_999_999.0);
        Some(EventTime {
            sec: sec as u32,
            nsec: nsec as u32,
        })
    }
}

fn checked(sec: u64, nsec: u64) -> Option<EventTime> {
    if nsec >= 1_000_000_000 {
        return None;
    }
    Some(EventTime {
        sec: u32::try_from(sec).ok()?,
        nsec: nsec as u32,
    })
}

/// Interprets an already read header (ending at `pos`) as a time value. Returns the time, or
/// `None` if the value is not a valid time, and the offset just after the value.
fn time_from_header(
    h: Header,
    buf: &[u8],
    pos: usize,
) -> Result<(Option<EventTime>, usize), ScanError> {
    Ok(match h {
        Header::Uint(v) => (checked(v, 0), pos),
        Header::Int(v) => (u64::try_from(v).ok().and_then(|v| checked(v, 0)), pos),
        Header::F32(v) => (EventTime::from_f64(f64::from(v)), pos),
        Header::F64(v) => (EventTime::from_f64(v), pos),
        Header::Ext(ty, len) => {
            let (data, end) = read_payload(buf, pos, len)?;
            (ext_time(ty, data), end)
        }
        Header::Str(n) | Header::Bin(n) => (None, read_payload(buf, pos, n)?.1),
        Header::Array(_) | Header::Map(_) => {
            // Re-skip from the header start: find it by skipping the whole value.
            (None, skip_after_header(h, buf, pos)?)
        }
        Header::Nil | Header::Bool(_) => (None, pos),
    })
}

fn skip_after_header(h: Header, buf: &[u8], mut pos: usize) -> Result<usize, ScanError> {
    let n = match h {
        Header::Array(n) => u64::from(n),
        Header::Map(n) => 2 * u64::from(n),
        _ => 0,
    };
    for _ in 0..n {
        pos = skip_value(buf, pos)?;
    }
    Ok(pos)
}

fn ext_time(ty: i8, data: &[u8]) -> Option<EventTime> {
    match (ty, data.len()) {
        (0, 8) => {
            let sec = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?);
            let nsec = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?);
            checked(u64::from(sec), u64::from(nsec))
        }
        (-1, 4) => Some(EventTime {
            sec: u32::from_be_bytes(data.try_into().ok()?),
            nsec: 0,
        }),
        (-1, 8) => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            checked(v & 0x3_ffff_ffff, v >> 34)
        }
        (-1, 12) => {
            let nsec = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?);
            let sec = i64::from_be_bytes(data.get(4..12)?.try_into().ok()?);
            checked(u64::try_from(sec).ok()?, u64::from(nsec))
        }
        _ => None,
    }
}

/// Reads the value at `pos` as a time value: any integer that fits in `0..=u32::MAX`, ext type 0
/// with exactly 8 data bytes (EventTime, whatever ext header announces it), the msgpack timestamp
/// ext type −1 (4, 8 or 12 bytes), or a float. Returns `None` for anything else, or for values out
/// of range (negative, past 2106, NaN, nanoseconds of 1e9 or more), together with the offset just
/// after the value. Errors only if the value itself is malformed or truncated.
pub fn read_time(buf: &[u8], pos: usize) -> Result<(Option<EventTime>, usize), ScanError> {
    let (h, p) = read_header(buf, pos)?;
    time_from_header(h, buf, p)
}

/// Reads the time slot of an entry: a time value, or Fluent Bit's `[time, metadata]` wrapper
/// (metadata dropped). Returns the time (if valid), whether the slot was an array, and the offset
/// just after the slot.
pub(crate) fn read_time_slot(
    buf: &[u8],
    pos: usize,
) -> Result<(Option<EventTime>, bool, usize), ScanError> {
    let (h, p) = read_header(buf, pos)?;
    match h {
        Header::Array(2) => {
            let (t, e) = read_time(buf, p)?;
            let e = skip_value(buf, e)?;
            Ok((t, true, e))
        }
        Header::Array(_) => Ok((None, true, skip_value(buf, pos)?)),
        _ => {
            let (t, e) = time_from_header(h, buf, p)?;
            Ok((t, false, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: EventTime = EventTime {
        sec: 1_700_000_000,
        nsec: 123_456_789,
    };

    #[test]
    fn fixext8_event_time() {
        let b = [0xD7, 0x00, 0x65, 0x53, 0xF1, 0x00, 0x07, 0x5B, 0xCD, 0x15];
        assert_eq!(read_time(&b, 0).unwrap(), (Some(T), 10));
    }

    #[test]
    fn ext8_event_time() {
        let b = [
            0xC7, 0x08, 0x00, 0x65, 0x53, 0xF1, 0x00, 0x07, 0x5B, 0xCD, 0x15,
        ];
        assert_eq!(read_time(&b, 0).unwrap(), (Some(T), 11));
    }

    #[test]
    fn integer_times() {
        assert_eq!(
            read_time(&[0xCE, 0x65, 0x53, 0xF1, 0x00], 0).unwrap(),
            (Some(EventTime::new(1_700_000_000, 0)), 5)
        );
        assert_eq!(read_time(&[0x05], 0).unwrap().0, Some(EventTime::new(5, 0)));
        assert_eq!(
            read_time(&[0xD0, 0x05], 0).unwrap().0,
            Some(EventTime::new(5, 0))
        );
        // Negative and too large.
        assert_eq!(read_time(&[0xFF], 0).unwrap(), (None, 1));
        let mut big = vec![0xCF];
        big.extend_from_slice(&(1u64 << 32).to_be_bytes());
        assert_eq!(read_time(&big, 0).unwrap(), (None, 9));
    }

    #[test]
    fn ext_type_other_than_zero_is_not_a_time() {
        let b = [0xD7, 0x01, 0x65, 0x53, 0xF1, 0x00, 0x07, 0x5B, 0xCD, 0x15];
        assert_eq!(read_time(&b, 0).unwrap(), (None, 10));
        // Type 0 with 4 bytes.
        assert_eq!(read_time(&[0xD6, 0x00, 1, 2, 3, 4], 0).unwrap(), (None, 6));
    }

    #[test]
    fn nsec_out_of_range_is_invalid() {
        let mut b = vec![0xD7, 0x00, 0, 0, 0, 1];
        b.extend_from_slice(&1_000_000_000u32.to_be_bytes());
        assert_eq!(read_time(&b, 0).unwrap(), (None, 10));
    }

    #[test]
    fn msgpack_timestamp_ext() {
        let mut b = vec![0xD6, 0xFF];
        b.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        assert_eq!(
            read_time(&b, 0).unwrap().0,
            Some(EventTime::new(1_700_000_000, 0))
        );
        let v: u64 = (123_456_789u64 << 34) | 1_700_000_000;
        let mut b = vec![0xD7, 0xFF];
        b.extend_from_slice(&v.to_be_bytes());
        assert_eq!(read_time(&b, 0).unwrap().0, Some(T));
        let mut b = vec![0xC7, 12, 0xFF];
        b.extend_from_slice(&123_456_789u32.to_be_bytes());
        b.extend_from_slice(&1_700_000_000i64.to_be_bytes());
        assert_eq!(read_time(&b, 0).unwrap().0, Some(T));
        let mut b = vec![0xC7, 12, 0xFF, 0, 0, 0, 0];
        b.extend_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(read_time(&b, 0).unwrap().0, None);
    }

    #[test]
    fn float_times() {
        let mut b = vec![0xCB];
        b.extend_from_slice(&1_700_000_000.5f64.to_bits().to_be_bytes());
        assert_eq!(
            read_time(&b, 0).unwrap().0,
            Some(EventTime::new(1_700_000_000, 500_000_000))
        );
        let mut b = vec![0xCA];
        b.extend_from_slice(&2.25f32.to_bits().to_be_bytes());
        assert_eq!(
            read_time(&b, 0).unwrap().0,
            Some(EventTime::new(2, 250_000_000))
        );
        for bad in [-1.0f64, f64::NAN, f64::INFINITY, 5e9] {
            let mut b = vec![0xCB];
            b.extend_from_slice(&bad.to_bits().to_be_bytes());
            assert_eq!(read_time(&b, 0).unwrap(), (None, 9));
        }
    }

    #[test]
    fn fluent_bit_wrapper_slot() {
        let b = [
            0x92, 0xD7, 0x00, 0x65, 0x53, 0xF1, 0x00, 0x07, 0x5B, 0xCD, 0x15, 0x80,
        ];
        assert_eq!(read_time_slot(&b, 0).unwrap(), (Some(T), true, 12));
    }

    #[test]
    fn now_is_not_zero() {
        assert!(!EventTime::now().is_zero());
        assert!(EventTime::default().is_zero());
    }
}
