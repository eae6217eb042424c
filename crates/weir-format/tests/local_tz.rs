//! Local time follows the process time zone as the C library reads `TZ`, as Ruby does.
//! One test in its own binary, because it sets `TZ`.

mod common;
use common::*;
use rmpv::Value as V;
use weir_format::{strftime, TimeZoneSpec};
use weir_proto::EventTime;

extern "C" {
    fn tzset();
}

#[test]
#[allow(unsafe_code)]
fn fluentd_out_file_test_configured_with_utc_or_localtime() {
    // Fluentd's test sets TZ=UTC+07 (seven hours west).
    std::env::set_var("TZ", "UTC+07");
    // SAFETY: no other thread of this test binary reads the environment or the zone.
    unsafe { tzset() };
    let t = EventTime::new(1_469_592_510, 0);
    let rec = map(&[("message", V::from("awesome"))]);
    let cases = [
        ("localtime true", "2016-07-26T21:08:30-07:00"),
        ("utc false", "2016-07-26T21:08:30-07:00"),
        ("localtime false", "2016-07-27T04:08:30Z"),
        ("utc true", "2016-07-27T04:08:30Z"),
    ];
    for (conf, want) in cases {
        let f = formatter(
            &format!("<format>\n@type out_file\n{conf}\n</format>"),
            "json",
        );
        assert_eq!(
            fmt(&*f, "test", t, &rec),
            format!("{want}\ttest\t{{\"message\":\"awesome\"}}\n"),
            "{conf}"
        );
    }
    assert_eq!(strftime("%Z %z", t, &TimeZoneSpec::Local), "UTC -0700");

    std::env::set_var("TZ", "Asia/Tokyo");
    unsafe { tzset() };
    assert_eq!(
        strftime("%F %T %Z %z", t, &TimeZoneSpec::Local),
        "2016-07-27 13:08:30 JST +0900"
    );
    // EventTime inside a nested value prints in local time (Fluent::EventTime#inspect).
    let f = formatter("format hash", "json");
    let rec = pack(&V::Map(vec![(
        V::from("t"),
        V::Ext(0, vec![0x57, 0x98, 0x33, 0xbe, 0, 0, 0, 7]),
    )]));
    assert_eq!(
        fmt(&*f, "tag", t, &rec),
        "{\"t\" => 2016-07-27 13:08:30.000000007 +0900}\n"
    );
}
