//! Making values from the network safe to put in a file path or an object key.
//!
//! Tags and record values come from senders, and a placeholder such as `${tag}` or `${host}`
//! copies them into a path. Fluentd copies them as they are, so a tag `../../etc` writes outside
//! the configured directory. weir **escapes** instead of refusing: the event is still delivered,
//! to a name that stays inside the configured directory (or key prefix), and no sender can make
//! two different values land on the same name.
//!
//! The rule, applied to every value a placeholder inserts (the whole tag, a tag part, a record
//! key's value) and never to the configured text around it:
//!
//! 1. These bytes become `%` and two upper-case hex digits: `/`, `\`, `%` itself, NUL and the
//!    other C0 control characters (0x00–0x1F), DEL (0x7F), and the C1 control characters
//!    U+0080–U+009F (each of their UTF-8 bytes). Everything else, including other non-ASCII
//!    text, is kept.
//! 2. A value that starts with `.` has that first dot written `%2E`, so a value can never be
//!    `.` or `..`, nor start a hidden file name.
//! 3. A value longer than [`MAX_VALUE_BYTES`] after steps 1–2 is cut to
//!    [`KEEP_BYTES`] bytes (at a character boundary) and ends with `~` and the 16 hex digits
//!    of the 64-bit FNV-1a hash of the original value, so long values stay distinct and every
//!    path component stays under the 255-byte limit of common file systems. When several
//!    values share one path component and still pass 255 bytes together, the file output
//!    renders the path again with smaller limits (100, 50, then 33 bytes per value,
//!    [`value_within`]).
//!
//! Values that need none of this (ordinary tags such as `blog.access.123456789012.vpc-0abc`)
//! are left byte for byte as Fluentd writes them. Escaping `%` keeps the mapping one-to-one
//! (a literal tag `a%2Fb` does not collide with `a/b`); it is the one ordinary character whose
//! names differ from Fluentd's.
//!
//! As a second line of defence, [`check_rendered`] checks a whole rendered path: no NUL, no
//! `..` component beyond those in the configured template, no component over 255 bytes, and
//! no more than 4095 bytes in all. The file output refuses a chunk whose path fails it (the chunk
//! goes to `failed/` with an error line; nothing is written).
//!
//! The S3 output should apply the same [`value`] function to its object keys (it is public
//! for that; it does not call it yet).

use std::borrow::Cow;

/// Longest value (in bytes, after escaping) kept whole.
pub const MAX_VALUE_BYTES: usize = 200;
/// How many bytes of an over-long value are kept before `~` and the hash.
pub const KEEP_BYTES: usize = 180;
/// Longest path component a rendered path may have (Linux `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest rendered path (Linux `PATH_MAX` less the terminating NUL).
pub const MAX_PATH_BYTES: usize = 4095;

fn needs_escape(c: char) -> bool {
    matches!(c, '/' | '\\' | '%' | '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// The 64-bit FNV-1a hash of `bytes` (stable across versions and platforms).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Escapes one placeholder value with the rule above. Returns the value unchanged (borrowed)
/// when nothing needed escaping.
pub fn value(v: &str) -> Cow<'_, str> {
    value_within(v, MAX_VALUE_BYTES)
}

/// [`value`] with another length limit (at least 33 bytes: the hash needs 17). Used when
/// several values share one path component and together would pass 255 bytes.
pub fn value_within(v: &str, max: usize) -> Cow<'_, str> {
    let max = max.max(33);
    let keep = max - 17 - (max - 17).min(3);
    let clean = !v.starts_with('.') && v.len() <= max && !v.chars().any(needs_escape);
    if clean {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 8);
    for (i, c) in v.chars().enumerate() {
        if i == 0 && c == '.' {
            out.push_str("%2E");
        } else if needs_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push('%');
                out.push(hex_digit(b >> 4));
                out.push(hex_digit(b & 0xf));
            }
        } else {
            out.push(c);
        }
    }
    if out.len() > max {
        let mut cut = if max == MAX_VALUE_BYTES {
            KEEP_BYTES
        } else {
            keep
        };
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&format!("{:016x}", fnv1a64(v.as_bytes())));
    }
    Cow::Owned(out)
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

/// Why a rendered path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// The path holds a NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
    /// The path has more `..` components than the configured template.
    #[error("the path climbs out of the configured directory ('..')")]
    ParentDir,
    /// A component is longer than [`MAX_COMPONENT_BYTES`].
    #[error("a path component is {0} bytes long (the limit is 255)")]
    ComponentTooLong(usize),
    /// The whole path is longer than [`MAX_PATH_BYTES`].
    #[error("the path is {0} bytes long (the limit is 4095)")]
    TooLong(usize),
}

/// Checks a rendered path against its template: the second line of defence after [`value`].
pub fn check_rendered(template: &str, rendered: &str) -> Result<(), UnsafePath> {
    if rendered.contains('\0') {
        return Err(UnsafePath::Nul);
    }
    let dots = |s: &str| s.split('/').filter(|c| *c == "..").count();
    if dots(rendered) > dots(template) {
        return Err(UnsafePath::ParentDir);
    }
    if let Some(long) = rendered
        .split('/')
        .map(str::len)
        .find(|n| *n > MAX_COMPONENT_BYTES)
    {
        return Err(UnsafePath::ComponentTooLong(long));
    }
    if rendered.len() > MAX_PATH_BYTES {
        return Err(UnsafePath::TooLong(rendered.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_values_are_untouched() {
        for v in [
            "blog",
            "access",
            "123456789012",
            "vpc-0abc",
            "a.b.c",
            "ünïcode",
            "",
        ] {
            assert!(matches!(value(v), Cow::Borrowed(_)), "{v}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(value(".."), "%2E.");
        assert_eq!(value("."), "%2E");
        assert_eq!(value("../../etc/passwd"), "%2E.%2F..%2Fetc%2Fpasswd");
        assert_eq!(value("a/b"), "a%2Fb");
        assert_eq!(value("a%2Fb"), "a%252Fb");
        assert_eq!(value("a\0b"), "a%00b");
        assert_eq!(value("a\nb\tc\u{7f}"), "a%0Ab%09c%7F");
        assert_eq!(value("a\\b"), "a%5Cb");
        assert_eq!(value("x\u{85}y"), "x%C2%85y");
    }

    #[test]
    fn long_values_are_cut_and_hashed() {
        let a = "a".repeat(10_000);
        let b = format!("{}b", "a".repeat(9_999));
        let (va, vb) = (value(&a), value(&b));
        assert_eq!(va.len(), KEEP_BYTES + 17);
        assert_ne!(va, vb);
        assert!(va.starts_with(&"a".repeat(KEEP_BYTES)));
        // A multi-byte character is never split.
        let c = "é".repeat(200);
        assert!(value(&c).len() <= KEEP_BYTES + 17);
    }

    #[test]
    fn rendered_check() {
        assert!(check_rendered("/d/${tag}", "/d/a").is_ok());
        assert!(check_rendered("/d/../e/${tag}", "/d/../e/a").is_ok());
        assert_eq!(
            check_rendered("/d/${a}../x", "/d/../x"),
            Err(UnsafePath::ParentDir)
        );
        assert_eq!(check_rendered("/d/${a}", "/d/a\0"), Err(UnsafePath::Nul));
        let long = format!("/d/{}", "x".repeat(256));
        assert_eq!(
            check_rendered("/d/${a}", &long),
            Err(UnsafePath::ComponentTooLong(256))
        );
    }
}
