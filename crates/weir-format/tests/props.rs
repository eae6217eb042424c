//! Property tests: no panics on arbitrary format strings or records; strftime round-trips
//! through chrono's parser.

mod common;
use common::*;
use proptest::prelude::*;
use weir_format::{strftime, Formatter, TimeZoneSpec};
use weir_proto::EventTime;

fn zones() -> impl Strategy<Value = TimeZoneSpec> {
    prop_oneof![
        Just(TimeZoneSpec::Utc),
        Just(TimeZoneSpec::Local),
        (-86_399i32..86_400).prop_map(TimeZoneSpec::Fixed),
        Just(TimeZoneSpec::parse("America/New_York").unwrap()),
        Just(TimeZoneSpec::parse("Australia/Lord_Howe").unwrap()),
    ]
}

fn all_formatters() -> Vec<Box<dyn Formatter>> {
    [
        "format ltsv",
        "format json",
        "format msgpack",
        "format single_value",
        "format hash",
        "format csv\nfields a,b,$.c.d\nforce_quotes false",
        "format out_file\ntime_as_epoch true",
        "<format>\n@type tsv\nkeys a,b\n</format>",
        "<format>\n@type ltsv\ndelimiter \"\"\n</format>",
    ]
    .iter()
    .map(|c| formatter(c, "json"))
    .collect()
}

fn value() -> impl Strategy<Value = rmpv::Value> {
    use rmpv::Value as V;
    let leaf = prop_oneof![
        Just(V::Nil),
        any::<bool>().prop_map(V::Boolean),
        any::<i64>().prop_map(V::from),
        any::<u64>().prop_map(V::from),
        any::<f64>().prop_map(V::F64),
        any::<f32>().prop_map(V::F32),
        ".{0,12}".prop_map(V::from),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(V::Binary),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..10))
            .prop_map(|(t, d)| V::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(V::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(V::Map),
        ]
    })
}

proptest! {
    #[test]
    fn strftime_never_panics(fmt in "(%[-_0^#:]{0,3}[0-9]{0,3}[a-zA-Z%+:]|.){0,24}", sec in any::<u32>(), nsec in 0u32..1_000_000_000, tz in zones()) {
        let _ = strftime(&fmt, EventTime::new(sec, nsec), &tz);
    }

    #[test]
    fn strftime_any_string_never_panics(fmt in ".{0,40}", sec in any::<u32>()) {
        let s = strftime(&fmt, EventTime::new(sec, 0), &TimeZoneSpec::Utc);
        // Text without `%` is copied as it is.
        if !fmt.contains('%') {
            prop_assert_eq!(s, fmt);
        }
    }

    #[test]
    fn strftime_round_trips_through_chrono(sec in any::<u32>(), off in -86_399i32..86_400) {
        let t = EventTime::new(sec, 0);
        let s = strftime("%Y%m%d%H%M%S", t, &TimeZoneSpec::Utc);
        let parsed = chrono::NaiveDateTime::parse_from_str(&s, "%Y%m%d%H%M%S").unwrap();
        prop_assert_eq!(parsed.and_utc().timestamp(), i64::from(sec));
        let s = strftime("%Y%m%d%H%M%S%z", t, &TimeZoneSpec::Fixed(off - off % 60));
        let parsed = chrono::DateTime::parse_from_str(&s, "%Y%m%d%H%M%S%z").unwrap();
        prop_assert_eq!(parsed.timestamp(), i64::from(sec));
    }

    #[test]
    fn formatters_never_panic_on_records(v in value()) {
        let rec = pack(&rmpv::Value::Map(vec![(rmpv::Value::from("a"), v.clone()), (v, rmpv::Value::Nil)]));
        for f in all_formatters() {
            let mut out = Vec::new();
            let _ = f.format("tag", T, &rec, &mut out);
        }
    }

    #[test]
    fn formatters_never_panic_on_bytes(rec in proptest::collection::vec(any::<u8>(), 0..64)) {
        for f in all_formatters() {
            let mut out = Vec::new();
            let _ = f.format("tag", T, &rec, &mut out);
        }
    }

    #[test]
    fn format_leaves_out_as_it_was_on_error(rec in proptest::collection::vec(any::<u8>(), 0..64), ok in value()) {
        // Arbitrary bytes, and a good record with bytes after it (formatters that write as
        // they read have already written the record when they find the trailing bytes).
        let mut trailing = pack(&rmpv::Value::Map(vec![(rmpv::Value::from("a"), ok)]));
        trailing.push(0xc0);
        for rec in [rec, trailing] {
            for f in all_formatters() {
                let mut out = b"before".to_vec();
                if f.format("tag", T, &rec, &mut out).is_err() {
                    prop_assert_eq!(&out[..], b"before");
                }
            }
        }
    }

    #[test]
    fn msgpack_output_is_the_same_value(v in value()) {
        let rec = pack(&rmpv::Value::Map(vec![(rmpv::Value::from("k"), v)]));
        let f = formatter("format msgpack", "json");
        let mut out = Vec::new();
        f.format("tag", T, &rec, &mut out).unwrap();
        let back = rmpv::decode::read_value(&mut &out[..]).unwrap();
        let orig = rmpv::decode::read_value(&mut &rec[..]).unwrap();
        // f32 values widen to f64; compare through the formatter's own JSON of both.
        let j = formatter("format json", "json");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        j.format("t", T, &pack(&back), &mut a).unwrap();
        j.format("t", T, &pack(&orig), &mut b).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn inject_output_is_a_map_with_the_keys(keys in proptest::collection::vec("[a-c]{1,2}", 0..6)) {
        let rec = pack(&rmpv::Value::Map(keys.iter().map(|k| (rmpv::Value::from(k.as_str()), rmpv::Value::from(1))).collect()));
        let i = inject("<inject>\ntag_key a\ntime_key b\ntime_type unixtime\n</inject>").unwrap();
        let mut out = Vec::new();
        i.apply("tg", T, &rec, &mut out).unwrap();
        let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
        let m = v.as_map().unwrap();
        prop_assert_eq!(m.iter().filter(|(k, _)| k.as_str() == Some("a")).count(), 1);
        prop_assert_eq!(m.iter().filter(|(k, _)| k.as_str() == Some("b")).count(), 1);
    }
}
