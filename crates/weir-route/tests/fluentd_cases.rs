//! The match/no-match cases of Fluentd's `test/test_match.rb` and the examples of the
//! "Config File Syntax" documentation page, each with the outcome Fluentd gives.

use weir_route::{Pattern, PatternError, PatternSet};

#[track_caller]
fn yes(pattern: &str, tag: &str) {
    let p = Pattern::parse(pattern).unwrap();
    assert!(p.matches(tag), "{pattern:?} should match {tag:?}");
    // Fluentd's tests also check the same pattern through the rule (the <match> argument).
    let set = PatternSet::parse(pattern).unwrap();
    assert!(set.matches(tag), "set {pattern:?} should match {tag:?}");
}

#[track_caller]
fn no(pattern: &str, tag: &str) {
    let p = Pattern::parse(pattern).unwrap();
    assert!(!p.matches(tag), "{pattern:?} should not match {tag:?}");
    let set = PatternSet::parse(pattern).unwrap();
    assert!(
        !set.matches(tag),
        "set {pattern:?} should not match {tag:?}"
    );
}

#[track_caller]
fn set_yes(arg: &str, tag: &str) {
    assert!(
        PatternSet::parse(arg).unwrap().matches(tag),
        "{arg:?} should match {tag:?}"
    );
}

#[track_caller]
fn set_no(arg: &str, tag: &str) {
    assert!(
        !PatternSet::parse(arg).unwrap().matches(tag),
        "{arg:?} should not match {tag:?}"
    );
}

// ---- test/test_match.rb ----

#[test]
fn test_match_simple() {
    yes("a", "a");
    yes("a.b", "a.b");
    no("a", "b");
    no("a.b", "aab");
}

#[test]
fn test_match_wildcard() {
    yes("a*", "a");
    yes("a*", "ab");
    yes("a*", "abc");

    yes("*a", "a");
    yes("*a", "ba");
    yes("*a", "cba");

    yes("*a*", "a");
    yes("*a*", "ba");
    yes("*a*", "ac");
    yes("*a*", "bac");

    no("a*", "a.b");
    no("a*", "ab.c");
    no("a*", "ba");
    no("*a", "ab");

    yes("a.*", "a.b");
    yes("a.*", "a.c");
    no("a.*", "ab");

    yes("a.*.c", "a.b.c");
    yes("a.*.c", "a.c.c");
    no("a.*.c", "a.c");
}

#[test]
fn test_match_recursive_wildcard() {
    yes("a.**", "a");
    no("a.**", "ab");
    no("a.**", "abc");
    yes("a.**", "a.b");
    no("a.**", "ab.c");
    no("a.**", "ab.d.e");

    yes("a**", "a");
    yes("a**", "ab");
    yes("a**", "abc");
    yes("a**", "a.b");
    yes("a**", "ab.c");
    yes("a**", "ab.d.e");

    yes("**.a", "a");
    no("**.a", "ba");
    no("**.a", "c.ba");
    yes("**.a", "b.a");
    yes("**.a", "cb.a");
    yes("**.a", "d.e.a");

    yes("**a", "a");
    yes("**a", "ba");
    yes("**a", "c.ba");
    yes("**a", "b.a");
    yes("**a", "cb.a");
    yes("**a", "d.e.a");
}

#[test]
fn test_match_or() {
    yes("a.{b,c}", "a.b");
    yes("a.{b,c}", "a.c");
    no("a.{b,c}", "a.d");

    yes("a.{b,c}.**", "a.b");
    yes("a.{b,c}.**", "a.c");
    no("a.{b,c}.**", "a.d");
    no("a.{b,c}.**", "a.cd");

    yes("a.{b.**,c}", "a.b");
    yes("a.{b.**,c}", "a.b.c");
    yes("a.{b.**,c}", "a.c");
    no("a.{b.**,c}", "a.c.d");
}

#[test]
fn test_match_multi_pattern_or() {
    set_yes("a.b a.c", "a.b");
    set_yes("a.b a.c", "a.c");
    set_no("a.b a.c", "a.d");

    set_yes("a.b.** a.c.**", "a.b");
    set_yes("a.b.** a.c.**", "a.c");
    set_no("a.b.** a.c.**", "a.d");
    set_no("a.b.** a.c.**", "a.cd");

    set_yes("a.b.** a.c", "a.b");
    set_yes("a.b.** a.c", "a.b.c");
    set_yes("a.b.** a.c", "a.c");
    set_no("a.b.** a.c", "a.c.d");
}

// ---- docs.fluentd.org, Config File Syntax, "How do the match patterns work?" ----

#[test]
fn docs_single_star_matches_one_part() {
    yes("a.*", "a.b");
    no("a.*", "a");
    no("a.*", "a.b.c");
}

#[test]
fn docs_double_star_matches_zero_or_more_parts() {
    yes("a.**", "a");
    yes("a.**", "a.b");
    yes("a.**", "a.b.c");
}

#[test]
fn docs_braces() {
    yes("{a,b}", "a");
    yes("{a,b}", "b");
    no("{a,b}", "c");
    // "This can be used in combination with * or ** patterns": a.{b,c}.* and a.{b,c.**}.
    yes("a.{b,c}.*", "a.b.x");
    yes("a.{b,c}.*", "a.c.x");
    no("a.{b,c}.*", "a.b");
    no("a.{b,c}.*", "a.d.x");
    yes("a.{b,c.**}", "a.b");
    yes("a.{b,c.**}", "a.c");
    yes("a.{b,c.**}", "a.c.d.e");
    no("a.{b,c.**}", "a.b.c");
}

#[test]
fn docs_regex_pattern() {
    // "/(?!a\.).*/ matches non-a. started tags like b.xxx"
    yes(r"/(?!a\.).*/", "b.xxx");
    no(r"/(?!a\.).*/", "a.b");
    no(r"/(?!a\.).*/", "a.");
    yes(r"/(?!a\.).*/", "a");
    yes(r"/(?!a\.).*/", "ab.c");
    yes(r"/(?!a\.).*/", "");
}

#[test]
fn docs_multiple_patterns() {
    set_yes("a b", "a");
    set_yes("a b", "b");
    set_no("a b", "c");
    set_yes("a.** b.*", "a");
    set_yes("a.** b.*", "a.b");
    set_yes("a.** b.*", "a.b.c");
    set_yes("a.** b.*", "b.d");
    set_no("a.** b.*", "b");
    set_no("a.** b.*", "b.d.e");
}

// ---- more globs, derived from Fluentd's match.rb rules ----

#[test]
fn star_never_crosses_a_dot() {
    no("*", "a.b");
    yes("*", "abc");
    yes("*", "");
    no("a.*", "a.b.c");
    yes("*.*", "a.b");
    no("*.*", "a.b.c");
}

#[test]
fn double_star_in_the_middle() {
    yes("a.**.c", "a.c");
    yes("a.**.c", "a.b.c");
    yes("a.**.c", "a.b.d.c");
    no("a.**.c", "ac");
    no("a.**.c", "a.bc");
    no("a.**.c", "ab.c");
    no("a.**.c", "a.c.d");
    yes("**.c", "c");
    yes("**.c", "a.b.c");
    no("**.c", "a.bc");
}

#[test]
fn nested_braces() {
    yes("{a,{b,c}.d}", "a");
    yes("{a,{b,c}.d}", "b.d");
    yes("{a,{b,c}.d}", "c.d");
    no("{a,{b,c}.d}", "a.d");
    no("{a,{b,c}.d}", "d");
    yes("x.{a.{b,c},d.*}.z", "x.a.b.z");
    yes("x.{a.{b,c},d.*}.z", "x.d.q.z");
    no("x.{a.{b,c},d.*}.z", "x.a.d.z");
    yes("{a,b}.c", "a.c");
    yes("{a,b}.c", "b.c");
    no("{a,b}.c", "c.c");
    yes("{,a}.b", ".b");
    yes("{,a}.b", "a.b");
    yes("{}", "");
}

#[test]
fn double_star_alone_matches_everything() {
    for tag in ["", "a", "a.b.c", "...", "a\nb", "\n", "日本.語"] {
        yes("**", tag);
    }
}

#[test]
fn fluentd_quirks_are_kept() {
    // A `.` at the end of a pattern is dropped by Fluentd's translation.
    yes("a.", "a");
    no("a.", "a.");
    // Ruby's \Z allows one final line feed after the tag.
    yes("a", "a\n");
    no("a", "a\n\n");
    yes("a.*", "a.b\n");
    // `**` other than the exact pattern `**` is Ruby's `.*`, which stops at a line feed.
    no("a.**", "a.b\nc");
    no("**.a", "x\ny.a");
    // Outside braces `,` is an ordinary character; `\` escapes the next one.
    yes("a,b", "a,b");
    yes(r"a\*", "a*");
    no(r"a\*", "ab");
    yes(r"\{a\}", "{a}");
    yes(r"a\.b", "a.b");
    // `?`, `[`, `-` and other punctuation are literal.
    yes("a?", "a?");
    no("a?", "ab");
    yes("a[b]-c", "a[b]-c");
    // `.**` keeps the part boundary even inside braces.
    no("{a.**}", "ab");
    // The `\A` of `**.` only matches at the very start of the tag.
    no("x{**.a,b}", "xa");
    yes("x{**.a,b}", "x.a");
    yes("x{**.a,b}", "xb");
}

#[test]
fn empty_and_unusual_tags() {
    no("a", "");
    // The empty pattern (only reachable through Pattern, since an empty set means `**`)
    // is Ruby's /\A\Z/.
    assert!(Pattern::parse("").unwrap().matches(""));
    assert!(!Pattern::parse("").unwrap().matches("a"));
    yes("a.**", "a.");
    yes("**.a", ".a");
    yes("*.*", ".");
    yes("ä.*", "ä.ö");
    no("ä.*", "a.ö");
}

#[test]
fn empty_argument_means_double_star() {
    for arg in ["", "   ", "\t\n"] {
        let set = PatternSet::parse(arg).unwrap();
        assert_eq!(set.patterns().len(), 1);
        assert_eq!(set.patterns()[0].as_str(), "**");
        assert!(set.matches("anything.at.all"));
        assert!(set.matches(""));
    }
}

#[test]
fn patterns_split_on_any_ruby_whitespace() {
    let set = PatternSet::parse(" a.b\t c.*\r\n\x0b\x0c d ").unwrap();
    let names: Vec<&str> = set.patterns().iter().map(Pattern::as_str).collect();
    assert_eq!(names, ["a.b", "c.*", "d"]);
    assert!(set.matches("c.x"));
    assert!(set.matches("d"));
    assert_eq!(set.as_str(), " a.b\t c.*\r\n\x0b\x0c d ");
}

// ---- regex patterns ----

#[test]
fn regex_patterns_are_anchored_like_fluentd() {
    yes("/a/", "a");
    no("/a/", "ab");
    no("/a/", "ba");
    yes("/a/", "a\n");
    yes(r"/a\.(b|c)/", "a.b");
    yes(r"/a\.(b|c)/", "a.c");
    no(r"/a\.(b|c)/", "a.d");
    yes(r"/[a-z]+\.log/", "app.log");
    no(r"/[a-z]+\.log/", "app1.log");
    yes(r"/(?i)APP\..*/", "app.x");
    yes("/.*/", "");
    yes("/", "");
    no("/", "a");
    // Fluentd joins `\A`, the text and `\Z` without a group, so a top-level `|` splits the
    // anchors: this matches tags that start with `a` or end with `b`.
    yes("/a|b/", "ax");
    yes("/a|b/", "xb");
    no("/a|b/", "xa");
    // Ruby's `^` and `$` are line anchors.
    // (A set would split this pattern at the line feed, so test the pattern alone.)
    assert!(Pattern::parse("/x\n^y/").unwrap().matches("x\ny"));
}

#[test]
fn leading_lookaheads() {
    yes(r"/(?=a)\w+/", "abc");
    no(r"/(?=a)\w+/", "bcd");
    yes(r"/(?!a\.)(?!b\.).*/", "c.d");
    no(r"/(?!a\.)(?!b\.).*/", "b.d");
    yes(r"/(?!(a|b)\.).*/", "c.d");
    no(r"/(?!(a|b)\.).*/", "b.d");
    yes(r"/(?![(]).*/", "a(");
    no(r"/(?![(]).*/", "(a");
}

#[test]
fn regex_in_a_set() {
    set_yes(r"/(?!a\.).*/ a.b", "a.b");
    set_no(r"/(?!a\.).*/ a.b", "a.c");
    set_yes(r"/(?!a\.).*/ a.b", "b.c");
}

// ---- errors ----

#[test]
fn unbalanced_braces_are_errors() {
    let err = Pattern::parse("a.{b,c").unwrap_err();
    assert_eq!(
        err,
        PatternError::UnclosedBrace {
            pattern: "a.{b,c".into(),
            position: 2
        }
    );
    assert!(err.to_string().contains("never closed"), "{err}");
    let err = Pattern::parse("a.b}").unwrap_err();
    assert_eq!(
        err,
        PatternError::UnmatchedBrace {
            pattern: "a.b}".into(),
            position: 3
        }
    );
    assert!(err.to_string().contains("no matching"), "{err}");
    assert!(matches!(
        Pattern::parse("{a,{b}"),
        Err(PatternError::UnclosedBrace { position: 0, .. })
    ));
    // Escaped braces are fine.
    assert!(Pattern::parse(r"a\}").is_ok());
    assert!(Pattern::parse(r"\{a").is_ok());
}

#[test]
fn bad_regexes_are_errors() {
    let err = Pattern::parse("/abc").unwrap_err();
    assert_eq!(
        err,
        PatternError::UnterminatedRegex {
            pattern: "/abc".into()
        }
    );
    assert!(err.to_string().contains("/regex/"), "{err}");
    assert!(matches!(
        Pattern::parse("/a(/"),
        Err(PatternError::InvalidRegex { .. })
    ));
    assert!(matches!(
        Pattern::parse("/[a/"),
        Err(PatternError::InvalidRegex { .. })
    ));
    let err = Pattern::parse("/a(?<=b)c/").unwrap_err();
    assert!(
        matches!(err, PatternError::UnsupportedRegex { .. }),
        "{err}"
    );
    assert!(matches!(
        Pattern::parse(r"/(a)\1/"),
        Err(PatternError::UnsupportedRegex { .. })
    ));
    assert!(matches!(
        Pattern::parse(r"/(?!a)b|c/"),
        Err(PatternError::UnsupportedRegex { .. })
    ));
    // A bad pattern anywhere in a set fails the set.
    assert!(PatternSet::parse("a.** b.{c").is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "{".repeat(100_000) + &"}".repeat(100_000);
    assert!(matches!(
        Pattern::parse(&deep),
        Err(PatternError::TooDeeplyNested { .. })
    ));
    let ok =
        "{".repeat(weir_route::MAX_BRACE_DEPTH) + "a" + &"}".repeat(weir_route::MAX_BRACE_DEPTH);
    assert!(Pattern::parse(&ok).unwrap().matches("a"));
    let deep_regex = format!("/{}a{}/", "(".repeat(10_000), ")".repeat(10_000));
    assert!(Pattern::parse(&deep_regex).is_err());
}

#[test]
fn hostile_tags_are_fast() {
    let start = std::time::Instant::now();
    let long = "a.".repeat(200_000) + "b";
    for pattern in [
        "**.**.**.**.c",
        "a.**.a.**.a.**.c",
        "{*.,**.}{*.,**.}{*.,**.}c",
        "*a*a*a*a*c",
    ] {
        assert!(
            !Pattern::parse(pattern).unwrap().matches(&long),
            "{pattern}"
        );
    }
    assert!(Pattern::parse("a.**.b").unwrap().matches(&long));
    assert!(Pattern::parse("/(a\\.)*b/").unwrap().matches(&long));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn as_str_and_display_give_the_source() {
    let p = Pattern::parse("a.{b,c}.**").unwrap();
    assert_eq!(p.as_str(), "a.{b,c}.**");
    assert_eq!(p.to_string(), "a.{b,c}.**");
    let s: PatternSet = "a b".parse().unwrap();
    assert_eq!(s.to_string(), "a b");
}
