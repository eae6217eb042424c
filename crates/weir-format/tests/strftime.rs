//! strftime against Ruby's outputs, worked out by hand from Ruby's `strftime.c` rules.

mod common;
use common::T;
use weir_format::{strftime, TimeZoneSpec};
use weir_proto::EventTime;

fn utc(f: &str) -> String {
    strftime(f, T, &TimeZoneSpec::Utc)
}

#[test]
fn ruby_table_utc() {
    let table: &[(&str, &str)] = &[
        ("%Y%m%d%H", "2024022913"),
        ("%Y%m%d%H%M%S", "20240229130509"),
        ("%Y-%m-%dT%H:%M:%S.%L%z", "2024-02-29T13:05:09.123+0000"),
        ("%N", "123456789"),
        ("%L", "123"),
        ("%3N", "123"),
        ("%6N", "123456"),
        ("%9N", "123456789"),
        ("%12N", "123456789000"),
        ("%-N", "123456789"),
        ("%z", "+0000"),
        ("%:z", "+00:00"),
        ("%::z", "+00:00:00"),
        ("%:::z", "+00"),
        ("%Z", "UTC"),
        ("%#Z", "utc"),
        ("%s", "1709211909"),
        ("%j", "060"),
        ("%a %A %b %B %h", "Thu Thursday Feb February Feb"),
        ("%^a %^B", "THU FEBRUARY"),
        ("%#b %#A", "FEB THURSDAY"),
        ("%e", "29"),
        ("%d", "29"),
        ("%I", "01"),
        ("%l", " 1"),
        ("%k", "13"),
        ("%p %P %#p %^P", "PM pm pm PM"),
        ("%y %C", "24 20"),
        ("%F %T %D", "2024-02-29 13:05:09 02/29/24"),
        ("%R|%r", "13:05|01:05:09 PM"),
        ("%c", "Thu Feb 29 13:05:09 2024"),
        ("%x %X", "02/29/24 13:05:09"),
        ("%v", "29-FEB-2024"),
        ("%+", "Thu Feb 29 13:05:09 UTC 2024"),
        ("%%", "%"),
        ("%n%t", "\n\t"),
        ("%-m/%-d", "2/29"),
        ("%_m", " 2"),
        ("%05d", "00029"),
        ("%_5d", "   29"),
        ("%-y", "24"),
        ("%10A", "  Thursday"),
        ("%-10A", "Thursday"),
        ("%010A", "00Thursday"),
        ("%12F", "  2024-02-29"),
        ("%u %w %U %W %G %V %g", "4 4 08 09 2024 09 24"),
        ("%Ey %Od %EY", "24 29 2024"),
        ("%10z", "+000000000"),
        // What Ruby copies through as written.
        ("%Q", "%Q"),
        ("%", "%"),
        ("abc%", "abc%"),
        ("%-5Q", "%-5Q"),
        ("%5-d", "%5-d"),
        ("%:y", "%:y"),
        ("%Ez", "%Ez"),
        ("%Oy%Oq", "24%Oq"),
        ("plain text", "plain text"),
        ("日本%Y語", "日本2024語"),
    ];
    for (f, want) in table {
        assert_eq!(utc(f), *want, "format {f:?}");
    }
}

#[test]
fn week_numbers_at_year_start() {
    // 2021-01-03 is a Sunday: ISO week 53 of 2020.
    let t = EventTime::new(1_609_632_000, 0);
    assert_eq!(
        strftime("%U %W %G %V %g %j %u %w", t, &TimeZoneSpec::Utc),
        "01 00 2020 53 20 003 7 0"
    );
}

#[test]
fn fixed_offsets_dst_free() {
    let tokyo = TimeZoneSpec::parse("+0900").unwrap();
    assert_eq!(tokyo, TimeZoneSpec::Fixed(32_400));
    assert_eq!(
        strftime("%Y-%m-%d %H:%M:%S %z|%:z|%Z|%I%p", T, &tokyo),
        "2024-02-29 22:05:09 +0900|+09:00||10PM"
    );
    let india = TimeZoneSpec::parse("-05:30").unwrap();
    assert_eq!(
        strftime("%H:%M %z %:z %::z %:::z", T, &india),
        "07:35 -0530 -05:30 -05:30:00 -05:30"
    );
    let half = TimeZoneSpec::parse("-00:30").unwrap();
    assert_eq!(strftime("%z %:z", T, &half), "-0030 -00:30");
    let nine = TimeZoneSpec::parse("+09").unwrap();
    assert_eq!(strftime("%:::z %z", T, &nine), "+09 +0900");
    // Day boundary: 23:00 UTC on Feb 28 is Feb 29 in Tokyo, and a leap day.
    let t = EventTime::new(1_709_161_200, 0);
    assert_eq!(strftime("%F %T %j", t, &tokyo), "2024-02-29 08:00:00 060");
}

#[test]
fn named_zones_follow_dst_and_print_no_abbreviation() {
    let ny = TimeZoneSpec::parse("America/New_York").unwrap();
    // 2024-07-01 12:00:00 UTC and 2024-01-15 12:00:00 UTC.
    assert_eq!(
        strftime("%H %z %Z|", EventTime::new(1_719_835_200, 0), &ny),
        "08 -0400 |"
    );
    assert_eq!(
        strftime("%H %z", EventTime::new(1_705_320_000, 0), &ny),
        "07 -0500"
    );
    assert!(TimeZoneSpec::parse("America/Argentina/Buenos_Aires").is_ok());
}

#[test]
fn timezone_values_fluentd_refuses() {
    for bad in [
        "JST",
        "UTC",
        "Nowhere/Place",
        "+9",
        "+09:0",
        "0900",
        "+2400",
        "a/b/c/d",
        "",
    ] {
        assert!(TimeZoneSpec::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn zone_precedence() {
    assert_eq!(
        TimeZoneSpec::from_params(true, false, Some("+01:00")).unwrap(),
        TimeZoneSpec::Fixed(3600)
    );
    assert_eq!(
        TimeZoneSpec::from_params(true, true, None).unwrap(),
        TimeZoneSpec::Utc
    );
    assert_eq!(
        TimeZoneSpec::from_params(false, false, None).unwrap(),
        TimeZoneSpec::Utc
    );
    assert_eq!(
        TimeZoneSpec::from_params(true, false, None).unwrap(),
        TimeZoneSpec::Local
    );
}

#[test]
fn iso8601_forms() {
    let mut out = Vec::new();
    weir_format::iso8601_into(&mut out, T, &TimeZoneSpec::Utc);
    out.push(b' ');
    weir_format::iso8601_into(&mut out, T, &TimeZoneSpec::Fixed(32_400));
    out.push(b' ');
    weir_format::iso8601_into(&mut out, T, &TimeZoneSpec::Fixed(0));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "2024-02-29T13:05:09Z 2024-02-29T22:05:09+09:00 2024-02-29T13:05:09+00:00"
    );
}

#[test]
fn epoch_and_last_second() {
    assert_eq!(
        strftime("%F %T %a %j", EventTime::new(0, 0), &TimeZoneSpec::Utc),
        "1970-01-01 00:00:00 Thu 001"
    );
    assert_eq!(
        strftime(
            "%F %T",
            EventTime::new(u32::MAX, 999_999_999),
            &TimeZoneSpec::Utc
        ),
        "2106-02-07 06:28:15"
    );
    assert_eq!(
        strftime("%Y %z", EventTime::new(0, 0), &TimeZoneSpec::Fixed(-3600)),
        "1969 -0100"
    );
}
