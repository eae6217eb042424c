//! Unit tests for the syntax layer, run against a fixed environment.

use std::path::Path;

use crate::parser::{parse_text, Parsed};
use crate::ruby::tests::fake;
use crate::Element;

fn parsed(text: &str) -> Parsed {
    match parse_text(text, "t.conf", Path::new("/nonexistent-dir"), &fake(), None) {
        Ok(p) => p,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn root(text: &str) -> Element {
    parsed(text).root
}

fn err(text: &str) -> String {
    match parse_text(text, "t.conf", Path::new("/nonexistent-dir"), &fake(), None) {
        Ok(p) => panic!("expected an error, got {}", p.root.dump()),
        Err(e) => e.to_string(),
    }
}

/// The value of `key` in the root's first child (or the root when it has none).
fn value(text: &str, key: &str) -> String {
    let r = root(text);
    let e = r.elements.first().unwrap_or(&r);
    e.get(key)
        .unwrap_or_else(|| panic!("no {key} in {}", r.dump()))
        .to_string()
}

#[test]
fn nested_directives_with_args_and_lines() {
    let r = root(
        "<source>\n  @type forward\n</source>\n<match blog.** other.*>\n  <buffer tag,time>\n    <secondary>\n      @type file\n    </secondary>\n  </buffer>\n</match>\n<label @ERROR>\n</label>\n<worker 0-3>\n</worker>\n",
    );
    assert_eq!(r.name, "ROOT");
    let names: Vec<_> = r
        .elements
        .iter()
        .map(|e| (e.name.as_str(), e.arg.as_str(), e.location.line))
        .collect();
    assert_eq!(
        names,
        vec![
            ("source", "", 1),
            ("match", "blog.** other.*", 4),
            ("label", "@ERROR", 11),
            ("worker", "0-3", 13)
        ]
    );
    let buffer = &r.elements[1].elements[0];
    assert_eq!(
        (
            buffer.name.as_str(),
            buffer.arg.as_str(),
            buffer.location.to_string().as_str()
        ),
        ("buffer", "tag,time", "t.conf:5")
    );
    let secondary = &buffer.elements[0];
    assert_eq!(secondary.get("@type"), Some("file"));
    assert_eq!(secondary.params[0].location.line, 7);
}

#[test]
fn arg_blanks_and_comments() {
    let r = root("<match  a.b   c  >  # trailing comment\n</match  >\n<source># c\n</source>\n");
    assert_eq!(r.elements[0].arg, "a.b   c");
    assert_eq!(r.elements[1].arg, "");
    // '#' without a blank before it is part of the argument.
    assert_eq!(root("<match a#b>\n</match>").elements[0].arg, "a#b");
}

#[test]
fn comments_and_unquoted_values() {
    let text = "# whole line\n<source>\n  a value with spaces   \n  b value # comment\n  c value#not-comment\n  d\tvalue\t\n  e #starts-with-hash\n  f http://x/#frag\n</source>\n";
    let r = root(text);
    let s = &r.elements[0];
    assert_eq!(s.get("a"), Some("value with spaces"));
    assert_eq!(s.get("b"), Some("value"));
    assert_eq!(s.get("c"), Some("value#not-comment"));
    assert_eq!(s.get("d"), Some("value"));
    // Fluentd keeps a value that starts with '#' (its bool type then reads it as true).
    assert_eq!(s.get("e"), Some("#starts-with-hash"));
    assert_eq!(s.get("f"), Some("http://x/#frag"));
}

#[test]
fn empty_values_closed() {
    let r = root("<server>\n  standby\n  other   \n</server>\nlast");
    assert_eq!(r.elements[0].get("standby"), Some(""));
    assert_eq!(r.elements[0].get("other"), Some(""));
    assert_eq!(r.get("last"), Some(""));
}

#[test]
fn single_quoted() {
    assert_eq!(value(r"k 'a\'b\\c\n\t'", "k"), r"a'b\c\n\t");
    assert_eq!(value("k 'with # hash'  # comment", "k"), "with # hash");
    assert_eq!(value("k ''", "k"), "");
    assert_eq!(
        err("k 'abc\ndef'"),
        "t.conf:1: line break in a single-quoted string (opened on line 1); single-quoted strings cannot span lines"
    );
    assert_eq!(
        err("\nk 'abc"),
        "t.conf:2: unexpected end of file in a single-quoted string"
    );
}

#[test]
fn double_quoted_escapes() {
    assert_eq!(
        value(r##"k "a\nb\tc\rd\"e\\f\#{g}\$h\0i\fj\bk'l\'""##, "k"),
        "a\nb\tc\rd\"e\\f#{g}$h\0i\u{c}j\u{8}k'l'"
    );
    assert_eq!(
        value(r##"k "# not a comment" # a comment"##, "k"),
        "# not a comment"
    );
    assert_eq!(
        err("\n\nk \"a\\qb\""),
        "t.conf:3: unexpected back-slash escape character 'q'"
    );
    assert_eq!(
        err("k \"abc"),
        "t.conf:1: unexpected end of file in a double-quoted string"
    );
    assert_eq!(err("k \"a\" b"), "t.conf:1: expected end of line");
}

#[test]
fn double_quoted_across_lines() {
    // Fluentd drops a line break inside double quotes, and a backslash before it.
    assert_eq!(value("k \"abc\ndef\"", "k"), "abcdef");
    assert_eq!(value("k \"abc \\\n  def\"", "k"), "abc   def");
    // Two line breaks in a row: the first is dropped, the second kept.
    assert_eq!(value("k \"a\n\n\nb\"", "k"), "a\nb");
    assert!(err("k \"a\n\nb\"")
        .starts_with("t.conf:2: unexpected line break in a double-quoted string"));
}

#[test]
fn quoted_keys() {
    let r = root("\"key with space\" v1\n'single' v2\n");
    assert_eq!(r.get("key with space"), Some("v1"));
    assert_eq!(r.get("single"), Some("v2"));
}

#[test]
fn embedded_ruby() {
    assert_eq!(
        value(
            r##"k "#{ENV["X"]}-#{ENV['NOPE']}-#{ENV.fetch('NOPE', 'dflt')}""##,
            "k"
        ),
        "ex--dflt"
    );
    assert_eq!(
        value(r##"k "host=#{Socket.gethostname.split(".")[0]}""##, "k"),
        "host=agg-1"
    );
    assert_eq!(value(r##"k "#{hostname}""##, "k"), "agg-1.az-a.example");
    // Not evaluated outside double quotes.
    assert_eq!(value("k #{ENV['X']}", "k"), "#{ENV['X']}");
    assert_eq!(value("k '#{ENV[\"X\"]}'", "k"), "#{ENV[\"X\"]}");
    // All errors at once, each with its line.
    assert_eq!(
        err("a \"#{1 + 1}\"\n<source>\n  b \"x#{ENV.fetch(\"NOPE\")}\"\n  c \"#{`id`}\"\n</source>\n"),
        "t.conf:1: embedded Ruby `1 + 1` is not supported; weir evaluates only ENV[...], ENV.fetch(...) and Socket.gethostname\n\
         t.conf:3: embedded Ruby: environment variable 'NOPE' is not set (ENV.fetch without a default)\n\
         t.conf:4: embedded Ruby `` `id` `` is not supported; weir evaluates only ENV[...], ENV.fetch(...) and Socket.gethostname"
            .replace("`` `id` ``", "``id``")
    );
    assert_eq!(
        err("k \"#{ENV['X']\"\n"),
        "t.conf:1: embedded Ruby code `#{` is not closed by `}`"
    );
    // Braces inside the code's own strings do not close it.
    assert_eq!(value(r##"k "#{ENV.fetch("NOPE", "}{")}""##, "k"), "}{");
}

#[test]
fn json_values() {
    assert_eq!(
        value("k [1, \"two\" ,{\"x\": null}]", "k"),
        r##"[1,"two",{"x":null}]"##
    );
    let text = "<record>\n  list [\n    \"a\", # first\n    \"b#c\"   # second\n  ]\n  map {\n    \"k\": \"v\", # comment\n    \"n\": 1.50\n  }\n  after x\n</record>\n";
    let r = root(text);
    let e = &r.elements[0];
    assert_eq!(e.get("list"), Some(r##"["a","b#c"]"##));
    assert_eq!(e.get("map"), Some(r##"{"k":"v","n":1.5}"##));
    assert_eq!(e.get("after"), Some("x"));
    assert_eq!(e.param("map").map(|p| p.location.line), Some(6));
    assert_eq!(
        err("a 1\nk [1,\n 2\n"),
        "t.conf:2: got incomplete JSON array configuration"
    );
    assert_eq!(
        err("k {\"a\": # no\n 1}\n"),
        "t.conf:1: got incomplete JSON hash configuration"
    );
    assert_eq!(err("k [1] x\n"), "t.conf:1: expected end of line");
}

#[test]
fn tag_errors() {
    assert_eq!(
        err("<source>\n  a b\n"),
        "t.conf:3: expected end tag '</source>' but got end of file"
    );
    assert_eq!(
        err("<match x>\n  <buffer>\n  </match>\n</match>\n"),
        "t.conf:3: unmatched end tag '</match>': expected '</buffer>'"
    );
    assert_eq!(
        err("a b\n</source>\n"),
        "t.conf:2: unmatched end tag '</source>': no element is open here"
    );
    assert_eq!(
        err("<source> junk\n</source>"),
        "t.conf:1: expected end of line after tag"
    );
    assert_eq!(
        err("<source>\n</source> junk\n"),
        "t.conf:2: expected end of line after end tag"
    );
    assert_eq!(err("<source\n"), "t.conf:2: expected '>'");
    assert_eq!(
        err("<source>\n</source\n"),
        "t.conf:3: expected character in tag name"
    );
    assert_eq!(
        err("< source>\n"),
        "t.conf:1: expected an element name (letters, digits, '_') after '<'"
    );
}

#[test]
fn nesting_is_capped() {
    let ok = format!("{}{}", "<a>\n".repeat(64), "</a>\n".repeat(64));
    root(&ok);
    let deep = format!("{}{}", "<a>\n".repeat(65), "</a>\n".repeat(65));
    assert_eq!(
        err(&deep),
        "t.conf:65: elements are nested more than 64 levels deep"
    );
}

#[test]
fn reserved_prefix() {
    assert_eq!(
        err("<source>\n  @type forward\n  @foo 1\n</source>\n@bar 2\n"),
        "t.conf:3: '@' is a reserved prefix; parameter '@foo' is not allowed here\n\
         t.conf:5: '@' is a reserved prefix; parameter '@bar' is not allowed here"
    );
    let p = parsed("<match x>\n  <buffer>\n    @foo 1\n  </buffer>\n</match>\n<label @L>\n  @baz 1\n</label>\n");
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2);
    assert!(w[0].starts_with("t.conf:3: '@' is a reserved prefix; parameter '@foo' works"));
    assert!(w[1].starts_with("t.conf:7: "));
    // Reserved names are fine everywhere.
    root("@type x\n@id y\n@label @z\n@log_level warn\n");
}

#[test]
fn duplicate_keys_last_wins() {
    let p = parsed("<source>\n  port 1\n  bind x\n  port 2\n</source>\n");
    let s = &p.root.elements[0];
    assert_eq!(
        s.params
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect::<Vec<_>>(),
        vec![("port", "2"), ("bind", "x")]
    );
    assert_eq!(s.params[0].location.line, 4);
    assert_eq!(
        p.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        vec!["t.conf:4: parameter 'port' is set again (first at t.conf:2); the last value wins"]
    );
}

#[test]
fn crlf_and_bom() {
    let r = root("\u{feff}<source>\r\n  a b \r\n  c\r\n</source>\r\n");
    assert_eq!(r.elements[0].get("a"), Some("b"));
    assert_eq!(r.elements[0].get("c"), Some(""));
}

#[test]
fn include_forms() {
    assert_eq!(
        err("@include https://example.invalid/x.conf\n"),
        "t.conf:1: @include of 'https://example.invalid/x.conf': including over https is not supported by weir; copy the file and include it by path"
    );
    let p = parsed("include missing.conf\n@include missing/*.conf\n");
    let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        vec![
            "t.conf:1: 'include' is deprecated; use '@include'",
            "t.conf:1: @include 'missing.conf' matches no file (Fluentd ignores this too)",
            "t.conf:2: @include 'missing/*.conf' matches no file (Fluentd ignores this too)",
        ]
    );
    // Outside the root, a bare 'include' is an ordinary parameter.
    assert_eq!(
        root("<a>\n  include x\n</a>").elements[0].get("include"),
        Some("x")
    );
    assert_eq!(err("@include\n"), "t.conf:1: @include needs a path");
}

#[test]
fn key_alone_at_end_of_file() {
    assert_eq!(root("k").get("k"), Some(""));
    assert_eq!(root("k   ").get("k"), Some(""));
    assert_eq!(root("k v").get("k"), Some("v"));
    assert_eq!(root("").params.len(), 0);
}
