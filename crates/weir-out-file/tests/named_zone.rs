//! Named time zones (`timekey_zone Asia/Tokyo`, v0.12 `timezone`): the day a file holds is the
//! zone's local day, also on the days its clocks change.

mod common;

use common::*;
use serde_json::json;

/// Unix seconds of the UTC times used below.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u32 {
    match (y, mo, d, h, mi) {
        (2024, 3, 10, 4, 59) => 1710046740,
        (2024, 3, 10, 5, 0) => 1710046800,
        (2024, 3, 10, 12, 0) => 1710072000,
        (2024, 3, 11, 3, 59) => 1710129540,
        (2024, 3, 11, 4, 0) => 1710129600,
        other => panic!("no constant for {other:?}"),
    }
}

#[test]
fn days_are_local_days_across_a_daylight_saving_change() {
    let d = temp_dir("named-dst");
    let body = format!(
        "path {}/app\nappend true\n<format>\n@type json\n</format>\n<buffer time>\ntimekey 1d\ntimekey_use_utc false\ntimekey_zone America/New_York\n</buffer>",
        d.display()
    );
    // 2024-03-10 in New York: 00:00 EST is 05:00Z; the clocks go from 02:00 EST to 03:00 EDT
    // at 07:00Z; the next midnight (EDT) is 04:00Z on the 11th.
    let events = [
        (utc(2024, 3, 10, 4, 59), rec(json!({"n": "sat-late"}))),
        (utc(2024, 3, 10, 5, 0), rec(json!({"n": "sun-first"}))),
        (utc(2024, 3, 10, 12, 0), rec(json!({"n": "sun-edt"}))),
        (utc(2024, 3, 11, 3, 59), rec(json!({"n": "sun-last"}))),
        (utc(2024, 3, 11, 4, 0), rec(json!({"n": "mon-first"}))),
    ];
    let mut written = run_once(&body, "t", &events);
    written.sort();
    assert_eq!(
        written,
        vec![
            d.join("app.20240309.log"),
            d.join("app.20240310.log"),
            d.join("app.20240311.log"),
        ]
    );
    assert_eq!(read(&written[0]), "{\"n\":\"sat-late\"}\n");
    assert_eq!(
        read(&written[1]),
        "{\"n\":\"sun-first\"}\n{\"n\":\"sun-edt\"}\n{\"n\":\"sun-last\"}\n"
    );
    assert_eq!(read(&written[2]), "{\"n\":\"mon-first\"}\n");
}

#[test]
fn v012_timezone_with_a_name_configures_slices_and_lines() {
    // Fluentd's compat layer: `timezone` becomes the buffer's timekey_zone and the
    // formatter's zone. 2011-01-02 15:14:15Z is 2011-01-03 00:14:15 in Tokyo.
    let d = temp_dir("named-v012");
    let body = format!("path {}/out_file_test\ntimezone Asia/Tokyo", d.display());
    let (_, buf) = configure(&body).expect("a named timezone configures");
    assert_eq!(
        buf.keys.zone,
        weir_store::TimekeyZone::parse("Asia/Tokyo").expect("a zone")
    );
    let p = run_once(&body, "test", &[(1_293_981_255, rec(json!({"a": 1})))]);
    assert_eq!(p, vec![d.join("out_file_test.20110103_0.log")]);
    assert_eq!(read(&p[0]), "2011-01-03T00:14:15+09:00\ttest\t{\"a\":1}\n");
}

#[test]
fn unknown_zone_names_are_refused_with_the_parameter() {
    let e =
        configure("path /tmp/x\n<buffer time>\ntimekey 1d\ntimekey_zone Mars/Olympus\n</buffer>")
            .expect_err("an unknown zone is an error");
    assert!(
        e.iter().any(|m| m.to_string().contains("timekey_zone")
            && m.to_string().contains("unknown time zone")),
        "{e:?}"
    );
}
