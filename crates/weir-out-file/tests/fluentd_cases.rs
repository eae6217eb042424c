//! Differential cases: for each configuration and input, the file names and contents Fluentd's
//! out_file produces. Cases marked `test_out_file.rb` reproduce tests of that name in Fluentd's
//! `test/plugin/test_out_file.rb`; the others are derived from `lib/fluent/plugin/out_file.rb`
//! (`generate_path_template`, `find_filepath_available`, `write`) and
//! `lib/fluent/plugin_helper/compat_parameters.rb`.

mod common;

use common::*;
use serde_json::json;
use weir_out_file::FileOutput;
use weir_store::{FlushMode, TimekeyZone};

/// Fluentd's `CONFIG` in test_out_file.rb.
fn config(dir: &std::path::Path) -> String {
    format!(
        "path {}/out_file_test\ncompress gz\nutc\n<buffer>\ntimekey_use_utc true\n</buffer>",
        dir.display()
    )
}

fn two_events() -> Vec<(u32, Vec<u8>)> {
    vec![
        (T_2011, rec(json!({"a": 1}))),
        (T_2011, rec(json!({"a": 2}))),
    ]
}

const TWO_LINES: &str =
    "2011-01-02T13:14:15Z\ttest\t{\"a\":1}\n2011-01-02T13:14:15Z\ttest\t{\"a\":2}\n";

// test_out_file.rb: sub_test_case 'write', test 'basic case'.
#[test]
fn write_basic_case() {
    let d = temp_dir("basic");
    let written = run_once(&config(&d), "test", &two_events());
    assert_eq!(written, vec![d.join("out_file_test.20110102_0.log.gz")]);
    assert_eq!(read(&written[0]), TWO_LINES);
    // The buffer path defaulted to the output path (a directory of that name), and nothing
    // but the output file was left in the target directory.
    assert_eq!(files(&d), vec!["out_file_test.20110102_0.log.gz"]);
}

// test_out_file.rb: test 'path with index number'.
#[test]
fn path_with_index_number() {
    let d = temp_dir("index");
    for i in 0..3 {
        let written = run_once(&config(&d), "test", &two_events());
        assert_eq!(
            written,
            vec![d.join(format!("out_file_test.20110102_{i}.log.gz"))]
        );
        assert_eq!(read(&written[0]), TWO_LINES);
        assert_eq!(files(&d).len(), i + 1);
    }
}

// test_out_file.rb: test 'append' (with and without compression).
#[test]
fn append_with_and_without_compression() {
    for gz in [false, true] {
        let d = temp_dir("append");
        let mut body = format!(
            "path {}/out_file_test\nutc\nappend true\n<buffer>\ntimekey_use_utc true\n</buffer>",
            d.display()
        );
        if gz {
            body.push_str("\ncompress gz");
        }
        let name = if gz {
            "out_file_test.20110102.log.gz"
        } else {
            "out_file_test.20110102.log"
        };
        for i in 1..=3 {
            let written = run_once(&body, "test", &two_events());
            assert_eq!(written, vec![d.join(name)]);
            assert_eq!(read(&written[0]), TWO_LINES.repeat(i));
        }
        assert_eq!(
            files(&d),
            vec![name.to_string()],
            "no markers or temporary files left"
        );
    }
}

// test_out_file.rb: sub_test_case 'path', tests 'normal', 'normal with append', '*',
// '* with append' (v0.12 time_slice_format without <buffer>).
#[test]
fn path_time_slice_format_and_star() {
    let ev = vec![(T_2011, rec(json!({"a": 1})))];
    for (path, extra, expect) in [
        ("out_file_test", "", "out_file_test.2011-01-02-13_0.log"),
        (
            "out_file_test",
            "append true",
            "out_file_test.2011-01-02-13.log",
        ),
        (
            "out_file_test.*.txt",
            "",
            "out_file_test.2011-01-02-13_0.txt",
        ),
        (
            "out_file_test.*.txt",
            "append true",
            "out_file_test.2011-01-02-13.txt",
        ),
    ] {
        let d = temp_dir("tsf");
        let body = format!(
            "path {}/{path}\ntime_slice_format %Y-%m-%d-%H\nutc true\n{extra}",
            d.display()
        );
        let (cfg, buf) = configure(&body).expect("configures");
        // compat_parameters: time_slice_format with %H gives timekey 3600; utc gives
        // timekey_use_utc.
        assert_eq!(buf.keys.timekey, Some(3600));
        assert_eq!(buf.keys.zone, TimekeyZone::Fixed(0));
        let out = FileOutput::new(cfg);
        let written = write_all(&out, &chunks(&buf, "test", &ev));
        assert_eq!(written, vec![d.join(expect)]);
        assert_eq!(read(&written[0]), "2011-01-02T13:14:15Z\ttest\t{\"a\":1}\n");
    }
}

// test_out_file.rb: test '${chunk_id}'.
#[test]
fn chunk_id_in_path() {
    let d = temp_dir("chunkid");
    let body = format!(
        "path {}/out_file_chunk_id_${{chunk_id}}\nutc\nappend true\n<buffer>\ntimekey_use_utc true\n</buffer>",
        d.display()
    );
    let (cfg, buf) = configure(&body).expect("configures");
    let cs = chunks(&buf, "test", &two_events());
    let written = write_all(&FileOutput::new(cfg), &cs);
    assert_eq!(
        written,
        vec![d.join(format!("out_file_chunk_id_{}.20110102.log", cs[0].id))]
    );
    assert_eq!(cs[0].id.len(), 32);
}

// test_out_file.rb: sub_test_case 'format specified': json, ltsv, single_value with the flat
// v0.12 parameters.
#[test]
fn format_specified_flat() {
    for (extra, expect) in [
        (
            "format json\ninclude_time_key true\ntime_as_epoch",
            "{\"a\":1,\"time\":1293974055}\n{\"a\":2,\"time\":1293974055}\n",
        ),
        (
            "format ltsv\ninclude_time_key true",
            "a:1\ttime:2011-01-02T13:14:15Z\na:2\ttime:2011-01-02T13:14:15Z\n",
        ),
        ("format single_value\nmessage_key a", "1\n2\n"),
    ] {
        let d = temp_dir("fmt");
        let written = run_once(&format!("{}\n{extra}", config(&d)), "test", &two_events());
        assert_eq!(written, vec![d.join("out_file_test.20110102_0.log.gz")]);
        assert_eq!(read(&written[0]), expect, "{extra}");
    }
}

// test_out_file.rb: sub_test_case 'format', 'time formatted with specified timezone, using
// offset'. `timezone` also becomes the buffer's timekey_zone (compat_parameters).
#[test]
fn timezone_offset() {
    let d = temp_dir("tz");
    let body = format!("path {}/out_file_test\ntimezone -03:30", d.display());
    let (cfg, buf) = configure(&body).expect("configures");
    assert_eq!(buf.keys.zone, TimekeyZone::Fixed(-(3 * 3600 + 1800)));
    let written = write_all(
        &FileOutput::new(cfg),
        &chunks(&buf, "test", &[(T_2011, rec(json!({"a": 1})))]),
    );
    assert_eq!(written, vec![d.join("out_file_test.20110102_0.log")]);
    assert_eq!(
        read(&written[0]),
        "2011-01-02T09:44:15-03:30\ttest\t{\"a\":1}\n"
    );
}

// test_out_file.rb: sub_test_case 'fully configured output', 'can format/write data
// correctly': <inject>, <format out_file> with COMMA, <buffer time,tag,type> with 15m
// timekey, append, gzip, add_path_suffix false.
#[test]
fn fully_configured_output() {
    let d = temp_dir("full");
    let body = format!(
        r#"
path {d}/${{tag}}/${{type}}/full.%Y%m%d.%H%M.log
add_path_suffix false
append true
symlink_path {d}/full.current.log
compress gzip
recompress true
<inject>
  hostname_key hostname
  hostname testing.local
  tag_key tag
  time_key time
  time_type string
  time_format %Y/%m/%d %H:%M:%S %z
  timezone +0900
</inject>
<format>
  @type out_file
  delimiter COMMA
  time_type string
  time_format %Y-%m-%d %H:%M:%S %z
  utc true
</format>
<buffer time,tag,type>
  @type file
  timekey 15m
  timekey_wait 5s
  timekey_zone +0000
  path {d}/buf_full
  chunk_limit_size 50m
  total_limit_size 1g
  compress gzip
</buffer>
"#,
        d = d.display()
    );
    let (cfg, buf) = configure(&body).expect("configures");
    assert_eq!(buf.chunk_limit_size, 50 * 1024 * 1024);
    assert_eq!(buf.total_limit_size, 1024 * 1024 * 1024);
    let out = FileOutput::new(cfg);
    let r = |m: &str| rec(json!({"type": "a", "message": m}));
    let mut cs = chunks(
        &buf,
        "my.data",
        &[
            (1_475_539_089, r("data raw content")),
            (1_475_539_173, r("data raw content")),
            (1_475_539_217, r("data raw content")),
        ],
    );
    cs.extend(chunks(
        &buf,
        "your.data",
        &[
            (1_475_539_197, r("data raw content")),
            (1_475_539_319, r("data raw content")),
        ],
    ));
    write_all(&out, &cs);
    let line = |t: &str, tag: &str, jst: &str| {
        format!("{t} +0000,{tag},{{\"type\":\"a\",\"message\":\"data raw content\",\"hostname\":\"testing.local\",\"tag\":\"{tag}\",\"time\":\"{jst} +0900\"}}\n")
    };
    let r1 = line("2016-10-03 23:58:09", "my.data", "2016/10/04 08:58:09");
    let r2 = line("2016-10-03 23:59:33", "my.data", "2016/10/04 08:59:33");
    let r3 = line("2016-10-03 23:59:57", "your.data", "2016/10/04 08:59:57");
    let r4 = line("2016-10-04 00:00:17", "my.data", "2016/10/04 09:00:17");
    let r5 = line("2016-10-04 00:01:59", "your.data", "2016/10/04 09:01:59");
    assert_eq!(
        read(&d.join("my.data/a/full.20161003.2345.log.gz")),
        r1 + &r2
    );
    assert_eq!(read(&d.join("your.data/a/full.20161003.2345.log.gz")), r3);
    assert_eq!(read(&d.join("my.data/a/full.20161004.0000.log.gz")), r4);
    assert_eq!(read(&d.join("your.data/a/full.20161004.0000.log.gz")), r5);
    // symlink_path follows the newest time slice (weir: the newest output file).
    let link = std::fs::read_link(d.join("full.current.log")).expect("symlink");
    assert_eq!(link, d.join("your.data/a/full.20161004.0000.log.gz"));
}

// test_out_file.rb: sub_test_case 'symlink', 'symlink with placeholders'.
#[test]
fn symlink_with_placeholders() {
    let d = temp_dir("symlink");
    let body = format!(
        "path {d}/${{tag}}/out_file_test\nsymlink_path {d}/current/foo/${{tag}}\n<buffer tag,time>\ntimekey_use_utc true\n</buffer>",
        d = d.display()
    );
    let (cfg, buf) = configure(&body).expect("configures");
    let out = FileOutput::new(cfg);
    write_all(
        &out,
        &chunks(&buf, "tag", &[(T_2011, rec(json!({"a": 1})))]),
    );
    let link = d.join("current/foo/tag");
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        d.join("tag/out_file_test.20110102_0.log")
    );
    write_all(
        &out,
        &chunks(&buf, "tag", &[(1_294_064_116, rec(json!({"a": 2})))]),
    );
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        d.join("tag/out_file_test.20110103_0.log")
    );
    assert!(link.exists(), "the link's target exists");
    // An older slice written later does not move the link back.
    write_all(
        &out,
        &chunks(&buf, "tag", &[(T_2011, rec(json!({"a": 3})))]),
    );
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        d.join("tag/out_file_test.20110103_0.log")
    );
}

// out_file.rb `symlink_path_use_relative`: the link holds a path relative to its directory.
#[test]
fn relative_symlink() {
    let d = temp_dir("symlink-rel");
    let body = format!(
        "path {d}/${{tag}}/out_file_test\nsymlink_path {d}/current/${{tag}}\nsymlink_path_use_relative true\n<buffer tag,time>\ntimekey_use_utc true\n</buffer>",
        d = d.display()
    );
    let (cfg, buf) = configure(&body).expect("configures");
    let out = FileOutput::new(cfg);
    write_all(
        &out,
        &chunks(&buf, "tag", &[(T_2011, rec(json!({"a": 1})))]),
    );
    let link = d.join("current/tag");
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        std::path::PathBuf::from("../tag/out_file_test.20110102_0.log")
    );
    assert!(link.exists(), "the relative link resolves");
}

// out_file.rb `generate_path_template`: path_suffix, add_path_suffix, placeholders in the path,
// a path that already has the strftime fields, no time key.
#[test]
fn path_combinations() {
    let ev = vec![(T_2011, rec(json!({"a": 1, "host": "web1"})))];
    for (path, extra, buffer, expect) in [
        ("p/file", "path_suffix .txt", "", "p/file.20110102_0.txt"),
        ("p/file", "add_path_suffix false", "", "p/file.20110102_0"),
        ("p/file.%Y-%m-%d", "", "", "p/file.2011-01-02_0.log"),
        (
            "p/%Y/%m/%d/file",
            "append true",
            "",
            "p/2011/01/02/file.log",
        ),
        (
            "p/${tag}/file",
            "",
            "<buffer tag,time>\ntimekey 1h\ntimekey_use_utc true\n</buffer>",
            "p/test/file.2011010213_0.log",
        ),
        (
            "p/${tag[0]}/${host}/f",
            "",
            "<buffer tag,host,time>\ntimekey 1m\ntimekey_use_utc true\n</buffer>",
            "p/test/web1/f.201101021314_0.log",
        ),
        ("p/${tag}", "", "<buffer tag>\n</buffer>", "p/test_0.log"),
        (
            "p/${tag}",
            "append true\ncompress gzip",
            "<buffer tag>\n</buffer>",
            "p/test.log.gz",
        ),
        (
            "p/x.*",
            "",
            "<buffer time>\ntimekey 30\ntimekey_use_utc true\n</buffer>",
            "p/x.20110102131400_0",
        ),
    ] {
        let d = temp_dir("combo");
        let buffer = if buffer.is_empty() {
            "<buffer>\ntimekey_use_utc true\n</buffer>".to_string()
        } else {
            buffer.to_string()
        };
        let body = format!("path {}/{path}\nutc\n{extra}\n{buffer}", d.display());
        let written = run_once(&body, "test", &ev);
        assert_eq!(written, vec![d.join(expect)], "{path} {extra}");
    }
}

// out_file.rb: chunk keys are what <buffer> says (here `time`) and `format` runs per event
// with the event's tag, so with `path /x/log` every tag of a time slice goes into one chunk and
// one file, each line with its own tag. weir's buffer stores each event's tag for that
// (keep_tags) instead of splitting chunks by tag.
#[test]
fn several_tags_in_one_time_slice_share_one_file() {
    let d = temp_dir("tags-one-file");
    let body = format!(
        "path {}/log\nutc\n<buffer time>\ntimekey_use_utc true\n</buffer>",
        d.display()
    );
    let buf = run_buffered(
        &body,
        &[
            ("app.a", vec![(T_2011, rec(json!({"a": 1})))]),
            ("app.b", vec![(T_2011, rec(json!({"a": 2})))]),
            ("app.a", vec![(T_2011 + 1, rec(json!({"a": 3})))]),
        ],
    );
    assert!(buf.keep_tags && !buf.keys.tag);
    let written: Vec<String> = files(&d)
        .into_iter()
        .filter(|f| f.starts_with("log."))
        .collect();
    assert_eq!(written, vec!["log.20110102_0.log"]);
    assert_eq!(
        read(&d.join("log.20110102_0.log")),
        "2011-01-02T13:14:15Z\tapp.a\t{\"a\":1}\n\
         2011-01-02T13:14:15Z\tapp.b\t{\"a\":2}\n\
         2011-01-02T13:14:16Z\tapp.a\t{\"a\":3}\n"
    );
}

// The buffer keeps each event's tag only when the lines carry it and `tag` is not a chunk key;
// `${tag}` in the path still needs `tag` as a chunk key (see configuration_errors).
#[test]
fn tags_are_kept_only_when_the_lines_need_them() {
    let keep = |body: &str| {
        let (_, buf) = configure(body).expect("configures");
        (buf.keep_tags, buf.keys.tag)
    };
    assert_eq!(keep("path /x/log"), (true, false));
    assert_eq!(
        keep("path /x/log\n<format>\n@type ltsv\n</format>"),
        (false, false)
    );
    assert_eq!(
        keep("path /x/log\n<format>\n@type out_file\noutput_tag false\n</format>"),
        (false, false)
    );
    assert_eq!(
        keep("path /x/log\n<format>\n@type ltsv\n</format>\n<inject>\ntag_key t\n</inject>"),
        (true, false)
    );
    assert_eq!(
        keep("path /x/${tag}/log\n<buffer tag,time>\n</buffer>"),
        (false, true)
    );
}

// Configuration errors with Fluentd's messages (output.rb placeholder validators, out_file.rb,
// compat_parameters.rb).
#[test]
fn configuration_errors() {
    assert_eq!(errors(""), vec!["'path' parameter is required"]);
    assert_eq!(
        errors("path /x/${tag}/file"),
        vec!["Parameter 'path: /x/${tag}/file.%Y%m%d_**.log' has tag placeholders, but chunk key 'tag' is not configured"]
    );
    assert_eq!(
        errors("path /x/file\n<buffer tag,time>\n</buffer>"),
        vec!["Parameter 'path: /x/file.%Y%m%d_**.log' doesn't have tag placeholder"]
    );
    assert_eq!(
        errors("path /x/${host}/file\n<buffer time,host,app>\n</buffer>"),
        vec!["Parameter 'path: /x/${host}/file.%Y%m%d_**.log' doesn't have enough placeholders for keys app"]
    );
    assert_eq!(
        errors("path /x/file.%Y%m%d\n<buffer>\ntimekey 1h\n</buffer>"),
        vec!["insufficient timestamp placeholders in path"]
    );
    assert_eq!(
        errors("path /x/file.%Y-%m-%d\n<buffer tag>\n</buffer>"),
        vec!["Parameter 'path: /x/file.%Y-%m-%d_**.log' has timestamp placeholders, but chunk key 'time' is not configured"]
    );
    assert_eq!(
        errors("path /x/file.*\n<buffer tag>\n</buffer>"),
        vec!["path including '*' must be used with buffer chunk key 'time'"]
    );
    assert_eq!(
        errors("path /x/file\ntime_slice_format %Y%m"),
        vec!["time_slice_format only with %Y or %m is too long"]
    );
    assert_eq!(
        errors("path /x/file\ntime_slice_format %Y%m%d\nutc\nlocaltime"),
        vec!["both of utc and localtime are specified, use only one of them"]
    );
}

// compat_parameters.rb `compat_parameters_buffer`: flat buffer parameters without <buffer>.
#[test]
fn v012_buffer_parameters() {
    let (r, unused) = configure_unused(
        "path /tmp/weir-x/f\nbuffer_type memory\nflush_interval 10s\ntime_slice_format %Y%m%d%H\ntime_slice_wait 5m\nbuffer_chunk_limit 1m\nretry_limit 3\nnum_threads 2\nbuffer_queue_full_action exception",
    );
    let (_, buf) = r.expect("configures");
    assert!(!buf.persistent(), "buffer_type memory");
    assert_eq!(buf.keys.timekey, Some(3600));
    assert_eq!(buf.timekey_wait.as_secs(), 300);
    assert_eq!(buf.flush_interval.as_secs(), 10);
    // flush_interval outside <buffer> turns the default (lazy, time key) into interval.
    assert_eq!(buf.flush_mode, FlushMode::Interval);
    assert_eq!(buf.chunk_limit_size, 1024 * 1024);
    assert_eq!(buf.retry.max_steps, Some(3));
    assert_eq!(buf.flush_thread_count, 2);
    assert!(unused.is_empty(), "{unused:?}");
}

// With a <buffer> section, compat_parameters copies nothing: time_slice_wait stays unused
// (Fluentd warns that it is not used); flush_interval is marked used by Output#configure's
// has_key? and only switches the flush mode.
#[test]
fn v012_parameters_beside_a_buffer_section() {
    let (r, unused) = configure_unused(
        "path /tmp/weir-x/f\nflush_interval 10s\ntime_slice_wait 10m\n<buffer time>\ntimekey 1h\n</buffer>",
    );
    let (_, buf) = r.expect("configures");
    assert_eq!(buf.flush_mode, FlushMode::Interval);
    assert_eq!(buf.flush_interval.as_secs(), 60, "the buffer's own default");
    assert_eq!(
        buf.timekey_wait.as_secs(),
        600,
        "time_slice_wait is not copied"
    );
    assert_eq!(unused, vec!["time_slice_wait"]);
}

// LTSV with odd values: a tab in a value becomes a space (formatter_ltsv's replacement),
// newlines stay, nested maps are Ruby's Hash#inspect, bytes that are not UTF-8 are written
// as they are.
#[test]
fn ltsv_odd_values() {
    let d = temp_dir("ltsv");
    let body = format!(
        "path {}/l\nappend true\n<format>\n@type ltsv\n</format>\n<buffer>\ntimekey_use_utc true\n</buffer>",
        d.display()
    );
    let mut raw = Vec::new();
    {
        use weir_proto::msgpack::{write_bin, write_map_len, write_str};
        write_map_len(&mut raw, 2);
        write_str(&mut raw, b"bin");
        write_bin(&mut raw, b"\xff\xfe ok");
        write_str(&mut raw, b"s");
        write_str(&mut raw, b"caf\xc3\xa9");
    }
    let written = run_once(
        &body,
        "test",
        &[
            (
                T_2011,
                rec(json!({"msg": "a\tb", "multi": "l1\nl2", "n": null, "b": true})),
            ),
            (T_2011, rec(json!({"nested": {"k": [1, "x"]}, "f": 1.5}))),
            (T_2011, raw),
        ],
    );
    let bytes = std::fs::read(&written[0]).expect("file");
    let mut expect =
        b"msg:a b\tmulti:l1\nl2\tn:\tb:true\nnested:{\"k\" => [1, \"x\"]}\tf:1.5\nbin:".to_vec();
    expect.extend_from_slice(b"\xff\xfe ok\ts:caf\xc3\xa9\n");
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&expect)
    );
    assert_eq!(bytes, expect);
}

// file_perm / dir_perm (Fluentd: <system> file_permission / dir_permission).
#[test]
fn permissions() {
    use std::os::unix::fs::PermissionsExt;
    let d = temp_dir("perm");
    let body = format!(
        "path {}/sub/dir/f\nfile_perm 0620\ndir_perm 0750\n<buffer>\ntimekey_use_utc true\n</buffer>",
        d.display()
    );
    let written = run_once(&body, "test", &two_events());
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    // umask may clear bits, never add them.
    assert_eq!(mode(&written[0]) & !0o620, 0);
    assert_eq!(mode(&d.join("sub")) & !0o750, 0);
    assert_eq!(mode(&d.join("sub/dir")) & !0o750, 0);
}
