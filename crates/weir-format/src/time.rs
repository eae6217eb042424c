//! Ruby-compatible `Time#strftime`, time zones as Fluentd names them, and Fluentd's time
//! formatter (`time_type`, `time_format`, `localtime`/`utc`/`timezone`).
//!
//! What Fluentd does, and so what this module does:
//!
//! * `Fluent::TimeFormatter` with a `time_format` formats with Ruby's `Time#strftime` (or, for
//!   formats made only of `%Y %m %d %H %M %S %L %N %y %z` and text, with the `strptime` gem's
//!   `Strftime`, whose output is the same for every time an `EventTime` can hold, 1970 to 2106).
//! * Without a `time_format` it writes `Time#iso8601`: `2016-10-03T23:58:09Z` in UTC,
//!   `2016-10-03T23:58:09+09:00` otherwise (also `+00:00` for local time in a UTC process).
//! * `timezone` wins over `utc`, which wins over `localtime` (default true). A timezone is
//!   `[+-]HH:MM`, `[+-]HHMM`, `[+-]HH` or an IANA name with a slash (`Asia/Tokyo`); Fluentd turns
//!   a named zone into the fixed offset in force at that instant, so `%Z` prints nothing for
//!   both kinds, as Ruby does for a `Time` with a numeric offset.
//! * Local time is the process time zone, read through the C library as Ruby does, so `%Z`
//!   prints its abbreviation (`JST`, `UTC`, `CET`).

use chrono::Datelike;
use weir_proto::EventTime;

use crate::error::FormatError;

/// A time zone as Fluentd's `localtime`, `utc` and `timezone` parameters choose it.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeZoneSpec {
    /// UTC: `%z` is `+0000`, `%Z` is `UTC`, ISO 8601 ends in `Z`.
    Utc,
    /// The process time zone, as the C library's `localtime_r` sees it.
    Local,
    /// A fixed offset east of UTC, in seconds (`+0900` is 32400).
    Fixed(i32),
    /// An IANA zone; each instant uses the offset in force then.
    Named(chrono_tz::Tz),
}

impl TimeZoneSpec {
    /// Parses a `timezone` value with Fluentd's rules (`Fluent::Timezone.validate`):
    /// `[+-]HH:MM`, `[+-]HHMM`, `[+-]HH`, or `Region/Zone[/Zone]` known to the tz database.
    /// Abbreviations such as `JST` and bare `UTC` are refused, as Fluentd refuses them.
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        if let Some(off) = parse_numeric_offset(s) {
            // Ruby's Time#localtime refuses offsets of a day or more.
            if off.abs() >= 86_400 {
                return Err(FormatError::Timezone(s.to_string()));
            }
            return Ok(TimeZoneSpec::Fixed(off));
        }
        let parts: Vec<&str> = s.split('/').collect();
        if (parts.len() == 2 || parts.len() == 3) && parts.iter().all(|p| !p.is_empty()) {
            if let Ok(tz) = s.parse::<chrono_tz::Tz>() {
                return Ok(TimeZoneSpec::Named(tz));
            }
        }
        Err(FormatError::Timezone(s.to_string()))
    }

    /// Chooses the zone from Fluentd's three parameters: `timezone` if set, else UTC when
    /// `utc` is true or `localtime` is false, else local time.
    pub fn from_params(
        localtime: bool,
        utc: bool,
        timezone: Option<&str>,
    ) -> Result<Self, FormatError> {
        match timezone {
            Some(tz) => Self::parse(tz),
            None if utc || !localtime => Ok(TimeZoneSpec::Utc),
            None => Ok(TimeZoneSpec::Local),
        }
    }
}

/// `[+-]HH:MM`, `[+-]HHMM` or `[+-]HH` as seconds.
fn parse_numeric_offset(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digit = |i: usize| -> Option<i32> {
        b.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i32::from(c - b'0'))
    };
    let hh = digit(1)? * 10 + digit(2)?;
    let mm = match b.len() {
        3 => 0,
        5 => digit(3)? * 10 + digit(4)?,
        6 if b.get(3) == Some(&b':') => digit(4)? * 10 + digit(5)?,
        _ => return None,
    };
    Some(sign * (hh * 3600 + mm * 60))
}

/// A broken-down time: what `strftime` directives read.
#[derive(Clone, Copy, Debug)]
struct Tm {
    year: i64,
    /// 1..=12
    mon: u32,
    /// 1..=31
    mday: u32,
    hour: u32,
    min: u32,
    sec: u32,
    /// 0 = Sunday
    wday: u32,
    /// 1..=366
    yday: u32,
    nsec: u32,
    /// Seconds east of UTC.
    off: i32,
    /// Seconds since the epoch (not shifted).
    epoch: i64,
    utc: bool,
    zone: ZoneName,
}

/// A zone abbreviation kept inline (no allocation).
#[derive(Clone, Copy, Debug)]
struct ZoneName {
    buf: [u8; 16],
    len: u8,
}

impl ZoneName {
    const EMPTY: ZoneName = ZoneName {
        buf: [0; 16],
        len: 0,
    };

    fn from_bytes(b: &[u8]) -> Self {
        let mut z = ZoneName::EMPTY;
        let n = b.len().min(16);
        if let (Some(dst), Some(src)) = (z.buf.get_mut(..n), b.get(..n)) {
            dst.copy_from_slice(src);
        }
        z.len = n as u8;
        z
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn yday_of(y: i64, m: u32, d: u32) -> u32 {
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let base = CUM
        .get((m as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0);
    base + d + u32::from(m > 2 && is_leap(y))
}

impl Tm {
    fn from_offset(epoch: i64, nsec: u32, off: i32, utc: bool, zone: ZoneName) -> Tm {
        let local = epoch + i64::from(off);
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, mon, mday) = civil_from_days(days);
        Tm {
            year,
            mon,
            mday,
            hour: (secs / 3600) as u32,
            min: (secs % 3600 / 60) as u32,
            sec: (secs % 60) as u32,
            wday: (days + 4).rem_euclid(7) as u32,
            yday: yday_of(year, mon, mday),
            nsec,
            off,
            epoch,
            utc,
            zone,
        }
    }

    fn new(time: EventTime, tz: &TimeZoneSpec) -> Tm {
        let epoch = i64::from(time.sec);
        let nsec = time.nsec.min(999_999_999);
        match tz {
            TimeZoneSpec::Utc => {
                Tm::from_offset(epoch, nsec, 0, true, ZoneName::from_bytes(b"UTC"))
            }
            TimeZoneSpec::Fixed(off) => Tm::from_offset(epoch, nsec, *off, false, ZoneName::EMPTY),
            TimeZoneSpec::Named(tz) => {
                use chrono::Offset;
                use chrono::TimeZone;
                let off = tz
                    .offset_from_utc_datetime(
                        &chrono::DateTime::from_timestamp(epoch, 0)
                            .unwrap_or_default()
                            .naive_utc(),
                    )
                    .fix()
                    .local_minus_utc();
                Tm::from_offset(epoch, nsec, off, false, ZoneName::EMPTY)
            }
            TimeZoneSpec::Local => {
                let (off, zone) = local_offset(epoch);
                Tm::from_offset(epoch, nsec, off, false, zone)
            }
        }
    }
}

/// The process time zone's offset and abbreviation at `epoch`, from `localtime_r`.
#[allow(unsafe_code, irrefutable_let_patterns)]
fn local_offset(epoch: i64) -> (i32, ZoneName) {
    let Ok(t) = libc::time_t::try_from(epoch) else {
        return (0, ZoneName::from_bytes(b"UTC"));
    };
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // call. localtime_r is thread-safe.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return (0, ZoneName::from_bytes(b"UTC"));
    }
    let zone = if tm.tm_zone.is_null() {
        ZoneName::EMPTY
    } else {
        // SAFETY: glibc and musl point tm_zone at a NUL-terminated string with static storage.
        let name = unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) };
        ZoneName::from_bytes(name.to_bytes())
    };
    (i32::try_from(tm.tm_gmtoff).unwrap_or(0), zone)
}

const WDAY_SHORT: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const WDAY_LONG: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MON_SHORT: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MON_LONG: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Widths above this are clamped. Ruby would try to build the string (and fails only past
/// 1024 bytes per format byte); no real configuration comes near.
const MAX_WIDTH: usize = 1024;

/// Formats `time` in `tz` as Ruby's `Time#strftime(fmt)` does, for all of Ruby's directives
/// (`%a %A %b %B %c %C %d %D %e %F %g %G %h %H %I %j %k %l %L %m %M %n %N %p %P %r %R %s %S
/// %t %T %u %U %v %V %w %W %x %X %y %Y %z %Z %+ %%`), the flags `-` `_` `0` `^` `#`, widths,
/// `%3N`-style precisions, `%:z` `%::z` `%:::z`, and the `E`/`O` modifiers. Anything Ruby does
/// not recognise is copied through as written, as Ruby does.
pub fn strftime(fmt: &str, time: EventTime, tz: &TimeZoneSpec) -> String {
    let mut out = Vec::with_capacity(fmt.len() + 16);
    strftime_into(&mut out, fmt, time, tz);
    // Every byte written is either copied from `fmt` (valid UTF-8, copied in whole runs between
    // `%` signs), ASCII, or a zone name from the C library (ASCII in practice).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Like [`strftime`], appending to `out` without allocating.
pub fn strftime_into(out: &mut Vec<u8>, fmt: &str, time: EventTime, tz: &TimeZoneSpec) {
    let tm = Tm::new(time, tz);
    format_tm(out, fmt.as_bytes(), &tm);
}

#[derive(Clone, Copy, Default)]
struct Spec {
    /// `-`: no padding.
    left: bool,
    /// `0` or `_`; `None` means the directive's default.
    padding: Option<u8>,
    /// `^`
    upper: bool,
    /// `#`
    chcase: bool,
    width: usize,
    colons: u8,
}

fn format_tm(out: &mut Vec<u8>, fmt: &[u8], tm: &Tm) {
    let mut i = 0;
    while i < fmt.len() {
        let Some(&b) = fmt.get(i) else { break };
        if b != b'%' {
            let end = fmt
                .get(i..)
                .and_then(|r| r.iter().position(|&c| c == b'%'))
                .map_or(fmt.len(), |p| i + p);
            out.extend_from_slice(fmt.get(i..end).unwrap_or(&[]));
            i = end;
            continue;
        }
        let start = i;
        i += 1;
        let mut spec = Spec::default();
        loop {
            let Some(&c) = fmt.get(i) else {
                // A lone `%` (or flags) at the end: copied as written.
                out.extend_from_slice(fmt.get(start..).unwrap_or(&[]));
                return;
            };
            let known = match c {
                b'-' | b'_' | b'^' | b'#' => {
                    // Ruby refuses a flag after a width.
                    if spec.width > 0 {
                        false
                    } else {
                        match c {
                            b'-' => {
                                spec.left = true;
                                spec.padding = None;
                                spec.width = 0;
                            }
                            b'_' => spec.padding = Some(b' '),
                            b'^' => spec.upper = true,
                            _ => spec.chcase = true,
                        }
                        i += 1;
                        continue;
                    }
                }
                b'0'..=b'9' => {
                    if c == b'0' {
                        spec.padding = Some(b'0');
                    }
                    let mut w: u64 = 0;
                    while let Some(&d) = fmt.get(i).filter(|d| d.is_ascii_digit()) {
                        w = w.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                        i += 1;
                    }
                    if w > i32::MAX as u64 {
                        false
                    } else {
                        spec.width = (w as usize).min(MAX_WIDTH);
                        continue;
                    }
                }
                b':' => {
                    let mut n = 0u8;
                    while fmt.get(i + usize::from(n)) == Some(&b':') && n < 3 {
                        n += 1;
                    }
                    if fmt.get(i + usize::from(n)) == Some(&b'z') {
                        spec.colons = n;
                        i += usize::from(n);
                        continue;
                    }
                    false
                }
                b'E' => {
                    if fmt.get(i + 1).is_some_and(|n| b"cCxXyY".contains(n)) {
                        i += 1;
                        continue;
                    }
                    false
                }
                b'O' => {
                    if fmt
                        .get(i + 1)
                        .is_some_and(|n| b"deHkIlmMSuUVwWy".contains(n))
                    {
                        i += 1;
                        continue;
                    }
                    false
                }
                _ => directive(out, c, spec, tm),
            };
            if !known {
                out.extend_from_slice(fmt.get(start..=i).unwrap_or(&[]));
            }
            i += 1;
            break;
        }
    }
}

/// Writes `v` like C's `%0*ld` (zero padding) or `%*ld` (space padding) with width `w`.
fn write_int(out: &mut Vec<u8>, v: i64, w: usize, pad: u8) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut len = 0;
    loop {
        if let Some(slot) = buf.get_mut(19 - len) {
            *slot = b'0' + (n % 10) as u8;
        }
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = buf.get(20 - len..).unwrap_or(&[]);
    let body = len + usize::from(v < 0);
    let fill = w.saturating_sub(body);
    if pad == b'0' {
        if v < 0 {
            out.push(b'-');
        }
        out.extend(std::iter::repeat_n(b'0', fill));
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        if v < 0 {
            out.push(b'-');
        }
    }
    out.extend_from_slice(digits);
}

/// A numeric directive: Ruby's `FMT(def_pad, def_prec, ...)`.
fn num(out: &mut Vec<u8>, spec: Spec, def_pad: u8, def_width: usize, v: i64) {
    let width = if spec.left {
        1
    } else if spec.width == 0 {
        def_width
    } else {
        spec.width
    };
    let pad = match spec.padding {
        Some(p) => p,
        None => def_pad,
    };
    write_int(out, v, width, pad);
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    Keep,
    Upper,
    Lower,
}

/// A string directive: padded on the left to the width (spaces unless `0` was given); an
/// empty string writes nothing at all, as in Ruby.
fn text(out: &mut Vec<u8>, spec: Spec, s: &[u8], case: Case) {
    if s.is_empty() {
        return;
    }
    if !spec.left && spec.width > s.len() {
        out.extend(std::iter::repeat_n(
            spec.padding.unwrap_or(b' '),
            spec.width - s.len(),
        ));
    }
    let at = out.len();
    out.extend_from_slice(s);
    if let Some(tail) = out.get_mut(at..) {
        match case {
            Case::Keep => {}
            Case::Upper => tail.make_ascii_uppercase(),
            Case::Lower => tail.make_ascii_lowercase(),
        }
    }
}

/// A composite directive (`%F`, `%T`, ...): its expansion, padded on the left to the width.
fn composite(out: &mut Vec<u8>, spec: Spec, sub: &[u8], tm: &Tm) {
    let at = out.len();
    format_tm(out, sub, tm);
    let len = out.len() - at;
    if spec.width > len {
        let pad = spec.padding.unwrap_or(b' ');
        let fill = spec.width - len;
        out.splice(at..at, std::iter::repeat_n(pad, fill));
    }
}

fn name_case(spec: Spec) -> Case {
    if spec.upper || spec.chcase {
        Case::Upper
    } else {
        Case::Keep
    }
}

fn iso_week(tm: &Tm) -> (i64, u32) {
    let y = i32::try_from(tm.year).unwrap_or(1970);
    match chrono::NaiveDate::from_ymd_opt(y, tm.mon, tm.mday) {
        Some(d) => {
            let w = d.iso_week();
            (i64::from(w.year()), w.week())
        }
        None => (tm.year, 1),
    }
}

/// Writes one directive; false if Ruby does not know it.
fn directive(out: &mut Vec<u8>, c: u8, spec: Spec, tm: &Tm) -> bool {
    let idx = |v: u32| v as usize;
    match c {
        b'Y' => num(out, spec, b'0', if tm.year >= 0 { 4 } else { 5 }, tm.year),
        b'C' => num(out, spec, b'0', 2, tm.year.div_euclid(100)),
        b'y' => num(out, spec, b'0', 2, tm.year.rem_euclid(100)),
        b'm' => num(out, spec, b'0', 2, i64::from(tm.mon)),
        b'd' => num(out, spec, b'0', 2, i64::from(tm.mday)),
        b'e' => num(out, spec, b' ', 2, i64::from(tm.mday)),
        b'j' => num(out, spec, b'0', 3, i64::from(tm.yday)),
        b'H' => num(out, spec, b'0', 2, i64::from(tm.hour)),
        b'k' => num(out, spec, b' ', 2, i64::from(tm.hour)),
        b'I' | b'l' => {
            let h = match tm.hour % 12 {
                0 => 12,
                h => h,
            };
            num(
                out,
                spec,
                if c == b'I' { b'0' } else { b' ' },
                2,
                i64::from(h),
            );
        }
        b'M' => num(out, spec, b'0', 2, i64::from(tm.min)),
        b'S' => num(out, spec, b'0', 2, i64::from(tm.sec)),
        b's' => num(out, spec, b'0', 1, tm.epoch),
        b'u' => num(
            out,
            spec,
            b'0',
            1,
            i64::from(if tm.wday == 0 { 7 } else { tm.wday }),
        ),
        b'w' => num(out, spec, b'0', 1, i64::from(tm.wday)),
        b'U' => num(
            out,
            spec,
            b'0',
            2,
            i64::from((tm.yday - 1 + 7 - tm.wday) / 7),
        ),
        b'W' => {
            let wd = (tm.wday + 6) % 7;
            num(out, spec, b'0', 2, i64::from((tm.yday - 1 + 7 - wd) / 7));
        }
        b'G' => {
            let (y, _) = iso_week(tm);
            num(out, spec, b'0', if y >= 0 { 4 } else { 5 }, y);
        }
        b'g' => {
            let (y, _) = iso_week(tm);
            num(out, spec, b'0', 2, y.rem_euclid(100));
        }
        b'V' => {
            let (_, w) = iso_week(tm);
            num(out, spec, b'0', 2, i64::from(w));
        }
        b'L' | b'N' => {
            let default = if c == b'L' { 3 } else { 9 };
            let digits = if spec.width == 0 { default } else { spec.width };
            let mut buf = [b'0'; 9];
            let mut n = tm.nsec;
            for slot in buf.iter_mut().rev() {
                *slot = b'0' + (n % 10) as u8;
                n /= 10;
            }
            out.extend_from_slice(buf.get(..digits.min(9)).unwrap_or(&[]));
            out.extend(std::iter::repeat_n(b'0', digits.saturating_sub(9)));
        }
        b'z' => write_offset(out, spec, tm.off),
        b'Z' => {
            let case = if spec.chcase {
                Case::Lower
            } else if spec.upper {
                Case::Upper
            } else {
                Case::Keep
            };
            let zone: &[u8] = if tm.utc { b"UTC" } else { tm.zone.as_bytes() };
            text(out, spec, zone, case);
        }
        b'a' => text(
            out,
            spec,
            WDAY_SHORT.get(idx(tm.wday)).unwrap_or(&"").as_bytes(),
            name_case(spec),
        ),
        b'A' => text(
            out,
            spec,
            WDAY_LONG.get(idx(tm.wday)).unwrap_or(&"").as_bytes(),
            name_case(spec),
        ),
        b'b' | b'h' => text(
            out,
            spec,
            MON_SHORT.get(idx(tm.mon) - 1).unwrap_or(&"").as_bytes(),
            name_case(spec),
        ),
        b'B' => text(
            out,
            spec,
            MON_LONG.get(idx(tm.mon) - 1).unwrap_or(&"").as_bytes(),
            name_case(spec),
        ),
        b'p' | b'P' => {
            let lower = (c == b'p' && spec.chcase) || (c == b'P' && !spec.chcase && !spec.upper);
            let s: &[u8] = if tm.hour < 12 { b"AM" } else { b"PM" };
            text(out, spec, s, if lower { Case::Lower } else { Case::Keep });
        }
        b'n' => text(out, spec, b"\n", Case::Keep),
        b't' => text(out, spec, b"\t", Case::Keep),
        b'%' => text(out, spec, b"%", Case::Keep),
        b'c' => composite(out, spec, b"%a %b %e %H:%M:%S %Y", tm),
        b'D' | b'x' => composite(out, spec, b"%m/%d/%y", tm),
        b'F' => composite(out, spec, b"%Y-%m-%d", tm),
        b'T' | b'X' => composite(out, spec, b"%H:%M:%S", tm),
        b'R' => composite(out, spec, b"%H:%M", tm),
        b'r' => composite(out, spec, b"%I:%M:%S %p", tm),
        b'v' => composite(out, spec, b"%e-%^b-%4Y", tm),
        b'+' => composite(out, spec, b"%a %b %e %H:%M:%S %Z %Y", tm),
        _ => return false,
    }
    true
}

/// `%z` and its colon forms, as Ruby prints them.
fn write_offset(out: &mut Vec<u8>, spec: Spec, off: i32) {
    let neg = off < 0;
    let aoff = i64::from(off).abs();
    let p = spec.width;
    let colons = match spec.colons {
        3 if aoff % 3600 == 0 => 10,
        3 if aoff % 60 == 0 => 11,
        3 => 12,
        n => n,
    };
    let prec = match colons {
        0 => {
            if p <= 5 {
                2
            } else {
                p - 3
            }
        }
        1 | 11 => {
            if p <= 6 {
                2
            } else {
                p - 4
            }
        }
        10 => {
            if p <= 3 {
                2
            } else {
                p - 1
            }
        }
        _ => {
            if p <= 9 {
                2
            } else {
                p - 7
            }
        }
    };
    let hours = aoff / 3600;
    let sign = if neg { b'-' } else { b'+' };
    if spec.padding == Some(b' ') {
        // C's "%+*ld" with width prec + 1: spaces, then the sign next to the digits.
        let mut digits = 1;
        let mut h = hours;
        while h >= 10 {
            digits += 1;
            h /= 10;
        }
        out.extend(std::iter::repeat_n(
            b' ',
            (prec + 1).saturating_sub(digits + 1),
        ));
        out.push(sign);
        write_int(out, hours, 0, b'0');
    } else {
        out.push(sign);
        write_int(out, hours, prec, b'0');
    }
    let rest = aoff % 3600;
    if colons == 10 {
        return;
    }
    if matches!(colons, 1 | 2 | 11 | 12) {
        out.push(b':');
    }
    write_int(out, rest / 60, 2, b'0');
    if colons == 11 {
        return;
    }
    if matches!(colons, 2 | 12) {
        out.push(b':');
        write_int(out, rest % 60, 2, b'0');
    }
}

/// Appends `Time#iso8601` (`2016-10-03T14:58:09Z` in UTC, `...+09:00` otherwise).
pub fn iso8601_into(out: &mut Vec<u8>, time: EventTime, tz: &TimeZoneSpec) {
    let tm = Tm::new(time, tz);
    format_tm(out, b"%Y-%m-%dT%H:%M:%S", &tm);
    if tm.utc {
        out.push(b'Z');
    } else {
        format_tm(out, b"%:z", &tm);
    }
}

/// How a time is written: Fluentd's `time_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeType {
    /// Text, with `time_format` or ISO 8601.
    String,
    /// Whole seconds since the epoch.
    Unixtime,
    /// Seconds with a fraction.
    Float,
}

impl TimeType {
    /// Reads `string`, `unixtime` or `float`.
    pub fn parse(s: &str) -> Option<TimeType> {
        match s {
            "string" => Some(TimeType::String),
            "unixtime" => Some(TimeType::Unixtime),
            "float" => Some(TimeType::Float),
            _ => None,
        }
    }
}

/// Fluentd's `Fluent::TimeFormatter` and `NumericTimeFormatter`: turns an event time into the
/// text a formatter writes (the `out_file` header, for example).
#[derive(Clone, Debug)]
pub struct TimeFormatter {
    kind: TimeType,
    format: Option<String>,
    tz: TimeZoneSpec,
}

impl TimeFormatter {
    /// A formatter for `time_type` `kind`; `format` (strftime) and `tz` matter for
    /// [`TimeType::String`] only. `format` `None` gives ISO 8601.
    pub fn new(kind: TimeType, format: Option<String>, tz: TimeZoneSpec) -> Self {
        TimeFormatter { kind, format, tz }
    }

    /// Appends the formatted time.
    ///
    /// `unixtime` writes the seconds. `float` reproduces `NumericTimeFormatter#format_float`
    /// exactly, including its padding slip: nanoseconds of fewer than nine digits are not
    /// left-padded but *replaced* by `9 - digits` zeros (`1.000000005` comes out as
    /// `1.00000000`, nanoseconds 0 as `1.00000000`).
    pub fn format_into(&self, out: &mut Vec<u8>, time: EventTime) {
        match self.kind {
            TimeType::Unixtime => write_int(out, i64::from(time.sec), 0, b'0'),
            TimeType::Float => {
                write_int(out, i64::from(time.sec), 0, b'0');
                out.push(b'.');
                let mut digits = 1;
                let mut n = time.nsec;
                while n >= 10 {
                    digits += 1;
                    n /= 10;
                }
                if digits < 9 {
                    out.extend(std::iter::repeat_n(b'0', 9 - digits));
                } else {
                    write_int(out, i64::from(time.nsec), 0, b'0');
                }
            }
            TimeType::String => match &self.format {
                Some(f) => strftime_into(out, f, time, &self.tz),
                None => iso8601_into(out, time, &self.tz),
            },
        }
    }

    /// The formatted time as a `String`.
    pub fn format(&self, time: EventTime) -> String {
        let mut out = Vec::new();
        self.format_into(&mut out, time);
        String::from_utf8_lossy(&out).into_owned()
    }
}
