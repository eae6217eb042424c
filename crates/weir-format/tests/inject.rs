//! `<inject>` and the v0.12 flat parameters (Fluentd `plugin_helper/inject.rb`,
//! `compat_parameters.rb`).

mod common;
use common::*;
use rmpv::Value as V;
use weir_format::{Inject, TimeType, TimeZoneSpec};

fn apply(i: &Inject, record: &[u8]) -> V {
    let mut out = Vec::new();
    i.apply("app.log", T, record, &mut out).unwrap();
    rmpv::decode::read_value(&mut &out[..]).unwrap()
}

fn pairs(v: &V) -> Vec<(String, V)> {
    match v {
        V::Map(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
            .collect(),
        _ => panic!("not a map"),
    }
}

#[test]
fn time_type_float_is_microsecond_truncated_float() {
    let i = inject("<inject>\ntime_key t\n</inject>").unwrap();
    let got = pairs(&apply(&i, &map(&[("a", V::from(1))])));
    assert_eq!(got[1], ("t".to_string(), V::F64(1_709_211_909.123456)));
}

#[test]
fn time_type_unixtime_is_an_integer() {
    let i = inject("<inject>\ntime_key t\ntime_type unixtime\n</inject>").unwrap();
    let got = pairs(&apply(&i, &map(&[])));
    assert_eq!(got, vec![("t".to_string(), V::from(1_709_211_909u64))]);
}

#[test]
fn time_type_string_formats() {
    let cases = [
        ("utc true", "2024-02-29T13:05:09Z"),
        ("localtime false", "2024-02-29T13:05:09Z"),
        ("timezone +09:00", "2024-02-29T22:05:09+09:00"),
        ("timezone Asia/Tokyo\nutc true", "2024-02-29T22:05:09+09:00"),
        (
            "time_format %Y-%m-%d %H:%M:%S.%3N %z\nutc true",
            "2024-02-29 13:05:09.123 +0000",
        ),
    ];
    for (conf, want) in cases {
        let i = inject(&format!(
            "<inject>\ntime_key t\ntime_type string\n{conf}\n</inject>"
        ))
        .unwrap();
        let got = pairs(&apply(&i, &map(&[])));
        assert_eq!(got, vec![("t".to_string(), V::from(want))], "{conf}");
    }
}

#[test]
fn keys_keep_place_or_go_last_in_fluentd_order() {
    let i = inject(
        "<inject>\nhostname_key host\nhostname web1\nworker_id_key wid\ntag_key tag\n\
         time_key time\ntime_type unixtime\n</inject>",
    )
    .unwrap();
    let rec = map(&[
        ("tag", V::from("old")),
        ("a", V::from(1)),
        ("tag", V::from("dup")),
    ]);
    let got = pairs(&apply(&i, &rec));
    assert_eq!(
        got,
        vec![
            ("tag".to_string(), V::from("app.log")),
            ("a".to_string(), V::from(1)),
            ("host".to_string(), V::from("web1")),
            ("wid".to_string(), V::from(0)),
            ("time".to_string(), V::from(1_709_211_909u64)),
        ]
    );
}

#[test]
fn same_key_twice_keeps_the_last_assignment() {
    let i = inject("<inject>\ntag_key k\ntime_key k\ntime_type unixtime\n</inject>").unwrap();
    let got = pairs(&apply(&i, &map(&[])));
    assert_eq!(got, vec![("k".to_string(), V::from(1_709_211_909u64))]);
}

#[test]
fn nothing_to_inject_is_none() {
    assert!(inject("<inject>\ntime_format %Y\n</inject>").is_none());
    assert!(inject("path /tmp/x").is_none());
    assert!(inject("localtime true").is_none());
}

#[test]
fn v012_include_time_key_and_tag_key() {
    let i = inject("include_time_key true\ninclude_tag_key true\nutc true").unwrap();
    let got = pairs(&apply(&i, &map(&[("m", V::from("x"))])));
    assert_eq!(
        got,
        vec![
            ("m".to_string(), V::from("x")),
            ("tag".to_string(), V::from("app.log")),
            ("time".to_string(), V::from("2024-02-29T13:05:09Z")),
        ]
    );
    let i = inject(
        "include_time_key true\ntime_key ts\ntime_format %Y%m%d\ntimezone -05:00\ntag_key tg",
    )
    .unwrap();
    let got = pairs(&apply(&i, &map(&[])));
    assert_eq!(
        got,
        vec![
            ("tg".to_string(), V::from("app.log")),
            ("ts".to_string(), V::from("20240229")),
        ]
    );
}

#[test]
fn v012_bare_time_key_injects_a_float_and_time_as_epoch_an_integer() {
    let i = inject("time_key t").unwrap();
    assert_eq!(
        pairs(&apply(&i, &map(&[]))),
        vec![("t".to_string(), V::F64(1_709_211_909.123456))]
    );
    let i = inject("include_time_key true\ntime_as_epoch true").unwrap();
    assert_eq!(
        pairs(&apply(&i, &map(&[]))),
        vec![("time".to_string(), V::from(1_709_211_909u64))]
    );
}

#[test]
fn v012_utc_and_localtime_together_is_an_error() {
    let e = element("include_time_key true\nutc true\nlocaltime true");
    let mut s = weir_config::Section::new(&e, "<match test>");
    assert!(Inject::from_section(&mut s).is_err());
}

#[test]
fn bad_timezone_is_an_error_with_a_line() {
    let e = element("<inject>\ntime_key t\ntime_type string\ntimezone JST\n</inject>");
    let mut s = weir_config::Section::new(&e, "<match test>");
    let errs = Inject::from_section(&mut s).unwrap_err();
    assert!(errs[0].to_string().contains("test.conf:5"), "{}", errs[0]);
}

#[test]
fn built_directly_and_refuses_non_maps() {
    let i = Inject::new(
        Some("tag".into()),
        Some((
            "t".into(),
            TimeType::String,
            Some("%s".into()),
            TimeZoneSpec::Utc,
        )),
    );
    assert_eq!(
        pairs(&apply(&i, &map(&[]))),
        vec![
            ("tag".to_string(), V::from("app.log")),
            ("t".to_string(), V::from("1709211909")),
        ]
    );
    let mut out = Vec::new();
    assert!(i.apply("t", T, &pack(&V::from(1)), &mut out).is_err());
    assert!(i.apply("t", T, &[0x81, 0xa1], &mut out).is_err());
    assert!(i.apply("t", T, &[0x80, 0x80], &mut out).is_err());
}

#[test]
fn binary_keys_match_when_ascii() {
    let i = inject("<inject>\ntag_key tag\n</inject>").unwrap();
    let rec = pack(&V::Map(vec![(V::Binary(b"tag".to_vec()), V::from(1))]));
    let mut out = Vec::new();
    i.apply("x", T, &rec, &mut out).unwrap();
    let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
    assert_eq!(v, V::Map(vec![(V::Binary(b"tag".to_vec()), V::from("x"))]));
}
