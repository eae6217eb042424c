//! Formatter outputs. Cases named `fluentd_*` reproduce fluent/fluentd's
//! `test/plugin/test_formatter_*.rb`; the others cover odd values per formatter.

mod common;
use common::*;
use rmpv::Value as V;
use weir_proto::EventTime;

fn awesome() -> Vec<u8> {
    map(&[
        ("message", V::from("awesome")),
        ("greeting", V::from("hello")),
    ])
}

fn odd_record() -> Vec<u8> {
    pack(&V::Map(vec![
        (V::from("nil"), V::Nil),
        (V::from("t"), V::Boolean(true)),
        (V::from("f"), V::Boolean(false)),
        (V::from("i"), V::from(-5)),
        (V::from("u"), V::from(u64::MAX)),
        (V::from("fl"), V::F64(1.5)),
        (V::from("big"), V::F64(1e20)),
        (V::from("f32"), V::F32(0.1)),
        (V::from("nan"), V::F64(f64::NAN)),
        (V::from("inf"), V::F64(f64::NEG_INFINITY)),
        (
            V::from("h"),
            V::Map(vec![
                (V::from("a"), V::from(1)),
                (V::from("s"), V::from("x\"y\\z\t#{q}")),
            ]),
        ),
        (
            V::from("arr"),
            V::Array(vec![V::from(1), V::from("x"), V::Nil, V::F64(2.0)]),
        ),
        (V::from("bin"), V::Binary(vec![0xff, b'a', 0x00])),
        (V::from("nl"), V::from("line1\nline2")),
        (
            V::from("ext"),
            V::Ext(0, vec![0x65, 0xE0, 0x80, 0x05, 0, 0, 0, 1]),
        ),
        (V::from(7), V::from("int key")),
    ]))
}

// ---- ltsv -------------------------------------------------------------------------------

#[test]
fn fluentd_ltsv_test_format() {
    let f = formatter("format ltsv", "ltsv");
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "message:awesome\tgreeting:hello\n"
    );
}

#[test]
fn fluentd_ltsv_test_format_without_newline() {
    let f = formatter("<format>\n@type ltsv\nadd_newline false\n</format>", "ltsv");
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "message:awesome\tgreeting:hello"
    );
}

#[test]
fn fluentd_ltsv_test_format_with_customized_delimiters() {
    let f = formatter(
        "<format>\n@type ltsv\ndelimiter ,\nlabel_delimiter =\n</format>",
        "ltsv",
    );
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "message=awesome,greeting=hello\n"
    );
}

#[test]
fn fluentd_ltsv_replaces_delimiter_in_values() {
    // fluent/fluentd#3288 (1.12.2): tabs inside values become the replacement; labels stay.
    let rec = map(&[("k\tey", V::from("a\tb\t")), ("x", V::from("c,d"))]);
    let f = formatter("format ltsv", "ltsv");
    assert_eq!(fmt(&*f, "tag", T, &rec), "k\tey:a b \tx:c,d\n");
    let f = formatter(
        "<format>\n@type ltsv\ndelimiter ,\nreplacement _\n</format>",
        "ltsv",
    );
    assert_eq!(fmt(&*f, "tag", T, &rec), "k\tey:a\tb\t,x:c_d\n");
}

#[test]
fn ltsv_odd_values() {
    let f = formatter("format ltsv", "ltsv");
    let got = fmt(&*f, "tag", T, &odd_record());
    let want = concat!(
        "nil:\tt:true\tf:false\ti:-5\tu:18446744073709551615\tfl:1.5\tbig:1.0e+20\t",
        "f32:0.10000000149011612\tnan:NaN\tinf:-Infinity\t",
        "h:{\"a\" => 1, \"s\" => \"x\\\"y\\\\z\\t\\#{q}\"}\t",
        "arr:[1, \"x\", nil, 2.0]\tbin:\u{fffd}a\0\tnl:line1\nline2\text:1709211653\t7:int key\n"
    );
    // The binary value is written as raw bytes; compare it separately.
    let raw = fmt_bytes(&*f, &odd_record());
    assert!(raw.windows(6).any(|w| w == b"bin:\xffa"));
    assert_eq!(got, want);
}

#[test]
fn ltsv_invalid_utf8_and_nested_escapes() {
    let rec = [
        vec![0x82],
        pack(&V::from("raw")),
        vec![0xa3, 0xe3, 0x81, b'x'],
        pack(&V::from("nested")),
        vec![0x86],
        pack(&V::from("jp")),
        pack(&V::from("日本\u{1}\u{7f}\u{85}\u{2028}")),
        pack(&V::from("bad")),
        vec![0xa2, b'a', 0xff],
        pack(&V::from("b")),
        pack(&V::Binary(vec![0xe6, b'#', b'{', 0x1b])),
        pack(&V::from("ctl")),
        pack(&V::from("\u{7}\u{8}\u{b}\u{c}\r\u{1b}")),
        pack(&V::from("e")),
        pack(&V::Map(vec![])),
        pack(&V::from("x")),
        pack(&V::Ext(5, vec![1, 2])),
    ]
    .concat();
    let f = formatter("format ltsv", "ltsv");
    let out = fmt_bytes(&*f, &rec);
    let mut want = b"raw:\xe3\x81x\tnested:{".to_vec();
    want.extend_from_slice(
        "\"jp\" => \"日本\\u0001\\u007F\\u0085\\u2028\", \"bad\" => \"a\\xFF\", \
         \"b\" => \"\\xE6\\#{\\e\", \"ctl\" => \"\\a\\b\\v\\f\\r\\e\", \"e\" => {}, \
         \"x\" => #<struct MessagePack::ExtensionValue type=5, payload=\"\\x01\\x02\">}\n"
            .as_bytes(),
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(out, want);
}

#[test]
fn ltsv_rejects_non_maps_and_garbage() {
    let f = formatter("format ltsv", "ltsv");
    let mut out = Vec::new();
    assert!(f.format("t", T, &pack(&V::from(1)), &mut out).is_err());
    assert!(f.format("t", T, &[0x81, 0xa1], &mut out).is_err());
    assert!(f.format("t", T, &[0x80, 0x80], &mut out).is_err());
    assert!(out.is_empty());
}

// ---- json -------------------------------------------------------------------------------

#[test]
fn fluentd_json_test_format() {
    let f = formatter("format json", "json");
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "{\"message\":\"awesome\",\"greeting\":\"hello\"}\n"
    );
    let f = formatter("<format>\n@type json\nadd_newline false\n</format>", "json");
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "{\"message\":\"awesome\",\"greeting\":\"hello\"}"
    );
}

#[test]
fn json_odd_values() {
    let f = formatter("format json", "json");
    let got = fmt(
        &*f,
        "tag",
        T,
        &map(&[("nl", V::from("a\tb")), ("n", V::Nil)]),
    );
    assert_eq!(got, "{\"nl\":\"a\\tb\",\"n\":null}\n");
}

// ---- msgpack ----------------------------------------------------------------------------

#[test]
fn fluentd_msgpack_test_format() {
    let f = formatter("format msgpack", "json");
    let rec = awesome();
    assert_eq!(fmt_bytes(&*f, &rec), rec);
}

#[test]
fn msgpack_repacks_like_msgpack_ruby() {
    // uint32 holding 1, str16 holding "a", float 32, map16 of one pair: all shrink; f32 widens.
    let rec = [
        0xde, 0x00, 0x02, 0xda, 0x00, 0x01, b'a', 0xce, 0, 0, 0, 1, 0xa1, b'f', 0xca, 0x3f, 0xc0,
        0, 0,
    ];
    let f = formatter("format msgpack", "json");
    let mut want = vec![0x82, 0xa1, b'a', 0x01, 0xa1, b'f', 0xcb];
    want.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
    assert_eq!(fmt_bytes(&*f, &rec), want);
}

// ---- single_value -------------------------------------------------------------------------

#[test]
fn fluentd_single_value_cases() {
    let f = formatter("format single_value", "json");
    assert_eq!(
        fmt(&*f, "tag", T, &map(&[("message", V::from("awesome"))])),
        "awesome\n"
    );
    let f = formatter(
        "<format>\n@type single_value\nadd_newline false\n</format>",
        "json",
    );
    assert_eq!(
        fmt(&*f, "tag", T, &map(&[("message", V::from("awesome"))])),
        "awesome"
    );
    let f = formatter(
        "<format>\n@type single_value\nmessage_key foobar\n</format>",
        "json",
    );
    assert_eq!(
        fmt(&*f, "tag", T, &map(&[("foobar", V::from("foo"))])),
        "foo\n"
    );
}

#[test]
fn single_value_odd_values() {
    let f = formatter("format single_value", "json");
    assert_eq!(fmt(&*f, "tag", T, &map(&[("other", V::from(1))])), "\n");
    assert_eq!(fmt(&*f, "tag", T, &map(&[("message", V::Nil)])), "\n");
    assert_eq!(fmt(&*f, "tag", T, &map(&[("message", V::from(3))])), "3\n");
    assert_eq!(
        fmt(
            &*f,
            "tag",
            T,
            &map(&[("message", V::Array(vec![V::from(true)]))])
        ),
        "[true]\n"
    );
    // Duplicate keys: Ruby's Hash keeps the last value.
    let dup = map(&[("message", V::from("first")), ("message", V::from("last"))]);
    assert_eq!(fmt(&*f, "tag", T, &dup), "last\n");
}

// ---- csv --------------------------------------------------------------------------------

#[test]
fn fluentd_csv_test_format() {
    let rec = map(&[
        ("message", V::from("awesome")),
        ("message2", V::from("awesome2")),
    ]);
    let f = formatter("format csv\nfields message,message2", "json");
    assert_eq!(fmt(&*f, "tag", T, &rec), "\"awesome\",\"awesome2\"\n");
    let f = formatter(
        "format csv\nfields message,message2\nadd_newline false",
        "json",
    );
    assert_eq!(fmt(&*f, "tag", T, &rec), "\"awesome\",\"awesome2\"");
    let f = formatter(
        "format csv\nfields message,message2\ndelimiter \"\\t\"",
        "json",
    );
    assert_eq!(fmt(&*f, "tag", T, &rec), "\"awesome\"\t\"awesome2\"\n");
    let f = formatter("format csv\nfields message,message2\ndelimiter TAB", "json");
    assert_eq!(fmt(&*f, "tag", T, &rec), "\"awesome\"\t\"awesome2\"\n");
    let f = formatter(
        "format csv\nfields message,message2\nforce_quotes false",
        "json",
    );
    assert_eq!(fmt(&*f, "tag", T, &rec), "awesome,awesome2\n");
}

#[test]
fn fluentd_csv_test_format_with_empty_fields() {
    let f = formatter("format csv\nfields message,message2,message3", "json");
    for middle in [V::Nil, V::from("")] {
        let rec = map(&[
            ("message", V::from("awesome")),
            ("message2", middle),
            ("message3", V::from("awesome3")),
        ]);
        assert_eq!(fmt(&*f, "tag", T, &rec), "\"awesome\",\"\",\"awesome3\"\n");
    }
}

#[test]
fn fluentd_csv_test_config_params_with_fields() {
    let rec = map(&[
        ("one", V::from(1)),
        ("two", V::from(2)),
        ("three", V::from(3)),
    ]);
    for fields in ["one,two,three", "one , two , three", "one,,two,three"] {
        let f = formatter(
            &format!("format csv\nfields {fields}\nforce_quotes false"),
            "json",
        );
        assert_eq!(fmt(&*f, "tag", T, &rec), "1,2,3\n");
    }
}

#[test]
fn fluentd_csv_test_empty_fields_is_an_error() {
    assert!(formatter_err("format csv\nfields ,", "json").contains("empty value"));
    assert!(formatter_err("format csv", "json").contains("fields"));
}

#[test]
fn csv_quoting_without_force_quotes() {
    let rec = [
        vec![0x88],
        pack(&V::from("nil")),
        pack(&V::Nil),
        pack(&V::from("empty")),
        pack(&V::from("")),
        pack(&V::from("comma")),
        pack(&V::from("a,b")),
        pack(&V::from("quote")),
        pack(&V::from("say \"hi\"")),
        pack(&V::from("nl")),
        pack(&V::from("a\nb")),
        pack(&V::from("bad")),
        vec![0xa2, b',', 0xff],
        pack(&V::from("h")),
        pack(&V::Map(vec![(V::from("a"), V::from(1))])),
        pack(&V::from("fl")),
        pack(&V::F64(2.5)),
    ]
    .concat();
    let f = formatter(
        "format csv\nfields nil,empty,comma,quote,nl,bad,h,fl,missing\nforce_quotes false",
        "json",
    );
    let out = fmt_bytes(&*f, &rec);
    let want = b",\"\",\"a,b\",\"say \"\"hi\"\"\",\"a\nb\",,\xff,\"{\"\"a\"\" => 1}\",2.5,\n";
    assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
    assert_eq!(out, want.to_vec());
    let f = formatter("format csv\nfields nil,fl,missing", "json");
    assert_eq!(fmt(&*f, "tag", T, &rec), "\"\",\"2.5\",\"\"\n");
}

#[test]
fn csv_nested_fields_use_the_record_accessor() {
    let rec = pack(&V::Map(vec![(
        V::from("a"),
        V::Map(vec![
            (V::from("b"), V::from("deep")),
            (V::from("list"), V::Array(vec![V::from(10), V::from(20)])),
        ]),
    )]));
    let f = formatter(
        "format csv\nfields [\"$.a.b\", \"$['a']['list'][1]\", \"$.a.list[-1]\", \"$.a.zz\"]",
        "json",
    );
    assert_eq!(fmt(&*f, "tag", T, &rec), "\"deep\",\"20\",\"20\",\"\"\n");
}

// ---- tsv --------------------------------------------------------------------------------

#[test]
fn fluentd_tsv_test_format() {
    let f = formatter(
        "<format>\n@type tsv\nkeys message,greeting\n</format>",
        "json",
    );
    assert_eq!(fmt(&*f, "tag", T, &awesome()), "awesome\thello\n");
}

// ---- out_file ---------------------------------------------------------------------------

#[test]
fn fluentd_out_file_test_format() {
    // 2016-07-26 21:08:30 -0700
    let t = EventTime::new(1_469_592_510, 0);
    let rec = map(&[("message", V::from("awesome"))]);
    let f = formatter("<format>\n@type out_file\nutc true\n</format>", "out_file");
    assert_eq!(
        fmt(&*f, "test", t, &rec),
        "2016-07-27T04:08:30Z\ttest\t{\"message\":\"awesome\"}\n"
    );
    let f = formatter(
        "<format>\n@type out_file\nlocaltime false\n</format>",
        "out_file",
    );
    assert_eq!(
        fmt(&*f, "test", t, &rec),
        "2016-07-27T04:08:30Z\ttest\t{\"message\":\"awesome\"}\n"
    );
    let f = formatter(
        "<format>\n@type out_file\nutc true\noutput_time false\n</format>",
        "out_file",
    );
    assert_eq!(fmt(&*f, "tag", t, &rec), "tag\t{\"message\":\"awesome\"}\n");
    let f = formatter(
        "<format>\n@type out_file\nutc true\noutput_tag false\n</format>",
        "out_file",
    );
    assert_eq!(
        fmt(&*f, "tag", t, &rec),
        "2016-07-27T04:08:30Z\t{\"message\":\"awesome\"}\n"
    );
    let f = formatter(
        "<format>\n@type out_file\nutc true\noutput_tag false\noutput_time false\n</format>",
        "out_file",
    );
    assert_eq!(fmt(&*f, "tag", t, &rec), "{\"message\":\"awesome\"}\n");
}

#[test]
fn fluentd_out_file_both_utc_and_localtime_is_an_error() {
    for v in ["true", "false"] {
        let e = formatter_err(
            &format!("<format>\n@type out_file\nutc {v}\nlocaltime {v}\n</format>"),
            "out_file",
        );
        assert!(e.contains("both of utc and localtime"), "{e}");
    }
}

#[test]
fn out_file_time_types_and_formats() {
    let rec = map(&[("a", V::from(1))]);
    let cases = [
        ("time_type unixtime", "1709211909"),
        ("time_type float", "1709211909.123456789"),
        (
            "time_format %Y%m%d %H:%M:%S.%L\ntimezone +09:00",
            "20240229 22:05:09.123",
        ),
        ("timezone Asia/Tokyo", "2024-02-29T22:05:09+09:00"),
        (
            "delimiter SPACE\nutc true",
            "2024-02-29T13:05:09Z tag {\"a\":1}",
        ),
        (
            "delimiter comma\nutc true",
            "2024-02-29T13:05:09Z,tag,{\"a\":1}",
        ),
        (
            "delimiter ;\nutc true",
            "2024-02-29T13:05:09Z\ttag\t{\"a\":1}",
        ),
    ];
    for (conf, want) in cases {
        let f = formatter(
            &format!("<format>\n@type out_file\n{conf}\n</format>"),
            "json",
        );
        let got = fmt(&*f, "tag", T, &rec);
        assert!(got.starts_with(want), "{conf}: {got}");
    }
}

#[test]
fn out_file_float_time_reproduces_fluentd_padding_slip() {
    // NumericTimeFormatter#format_float replaces short nanoseconds with zeros.
    let rec = map(&[("a", V::from(1))]);
    let f = formatter(
        "<format>\n@type out_file\ntime_type float\noutput_tag false\n</format>",
        "json",
    );
    assert_eq!(
        fmt(&*f, "t", EventTime::new(5, 5), &rec),
        "5.00000000\t{\"a\":1}\n"
    );
    assert_eq!(
        fmt(&*f, "t", EventTime::new(5, 0), &rec),
        "5.00000000\t{\"a\":1}\n"
    );
    assert_eq!(
        fmt(&*f, "t", EventTime::new(5, 100_000_000), &rec),
        "5.100000000\t{\"a\":1}\n"
    );
}

#[test]
fn out_file_flat_v012_parameters() {
    // compat_parameters: time_format does not reach the formatter; time_as_epoch does.
    let rec = map(&[("a", V::from(1))]);
    let f = formatter("utc true\ntime_format %Y", "out_file");
    assert_eq!(
        fmt(&*f, "tag", T, &rec),
        "2024-02-29T13:05:09Z\ttag\t{\"a\":1}\n"
    );
    let f = formatter("format out_file\ntime_as_epoch true\nutc true", "json");
    assert_eq!(fmt(&*f, "tag", T, &rec), "1709211909\ttag\t{\"a\":1}\n");
}

// ---- hash -------------------------------------------------------------------------------

#[test]
fn fluentd_hash_test_format() {
    let f = formatter("format hash", "json");
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "{\"message\" => \"awesome\", \"greeting\" => \"hello\"}\n"
    );
    let f = formatter("<format>\n@type hash\nadd_newline false\n</format>", "json");
    assert_eq!(
        fmt(&*f, "tag", T, &awesome()),
        "{\"message\" => \"awesome\", \"greeting\" => \"hello\"}"
    );
}

#[test]
fn hash_odd_values() {
    let f = formatter("format hash", "json");
    let got = fmt(
        &*f,
        "tag",
        T,
        &map(&[("n", V::Nil), ("t", V::Boolean(true)), ("f", V::F64(1.0))]),
    );
    assert_eq!(got, "{\"n\" => nil, \"t\" => true, \"f\" => 1.0}\n");
}

// ---- configuration ----------------------------------------------------------------------

#[test]
fn newline_crlf_and_unknown_type() {
    let f = formatter("<format>\n@type ltsv\nnewline crlf\n</format>", "json");
    assert_eq!(fmt(&*f, "tag", T, &map(&[("a", V::from(1))])), "a:1\r\n");
    let e = formatter_err("<format>\n@type nope\n</format>", "json");
    assert!(e.contains("test.conf:3") && e.contains("nope"), "{e}");
    let f = formatter("", "ltsv");
    assert_eq!(fmt(&*f, "tag", T, &map(&[("a", V::from(1))])), "a:1\n");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut rec = vec![0x81, 0xa1, b'k'];
    rec.extend(std::iter::repeat_n(0x91, 10_000));
    rec.push(0xc0);
    for ty in ["ltsv", "hash", "msgpack", "json", "single_value"] {
        let f = formatter(&format!("format {ty}"), "json");
        let mut out = Vec::new();
        let _ = f.format("t", T, &rec, &mut out);
    }
}
