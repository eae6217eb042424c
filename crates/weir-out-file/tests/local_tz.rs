//! Local time: the process time zone (TZ) decides the default `timekey_zone` and the
//! formatter's times. One test in its own binary, because it sets `TZ`.

mod common;

use common::*;
use serde_json::json;

/// 2011-01-02 17:14:15 +02:00.
const T: u32 = 1_293_981_255;

#[test]
fn local_time_zone_cases() {
    // POSIX "UTC-02" is two hours east of UTC.
    std::env::set_var("TZ", "UTC-02");
    let line = "2011-01-02T17:14:15+02:00\ttest\t{\"a\":1}\n";

    // test_out_file.rb: 'append when UTC-02 but timekey_zone is +0900': the day is cut at
    // midnight +09:00, so 17:14 +02:00 (00:14 +09:00 next day) is in the 2011-01-03 file.
    let d = temp_dir("tz-append");
    let body = format!(
        "path {}/out_file_test\ncompress gz\nappend true\n<buffer>\ntimekey_use_utc false\ntimekey_zone +0900\n</buffer>",
        d.display()
    );
    for i in 1..=3 {
        let p = run_once(&body, "test", &[(T, rec(json!({"a": 1})))]);
        assert_eq!(p, vec![d.join("out_file_test.20110103.log.gz")]);
        assert_eq!(read(&p[0]), line.repeat(i));
    }

    // Default timekey_zone: the local offset; `localtime` with time_slice_format keeps it
    // (compat_parameters: timekey_use_utc = !localtime).
    let d = temp_dir("tz-local");
    let body = format!(
        "path {}/f\ntime_slice_format %Y%m%d%H\nlocaltime",
        d.display()
    );
    let p = run_once(&body, "test", &[(T, rec(json!({"a": 1})))]);
    assert_eq!(p, vec![d.join("f.2011010217_0.log")]);
    assert_eq!(read(&p[0]), line);

    // `utc` instead: the slice and the line are in UTC.
    let d = temp_dir("tz-utc");
    let body = format!("path {}/f\ntime_slice_format %Y%m%d%H\nutc", d.display());
    let p = run_once(&body, "test", &[(T, rec(json!({"a": 1})))]);
    assert_eq!(p, vec![d.join("f.2011010215_0.log")]);
    assert_eq!(read(&p[0]), "2011-01-02T15:14:15Z\ttest\t{\"a\":1}\n");
}
