//! RouteTable: first match wins, the cache agrees with uncached lookups, the bound holds.

use std::sync::Arc;

use proptest::prelude::*;
use weir_route::{PatternSet, RouteTable, DEFAULT_CACHE_CAPACITY, MAX_CACHED_TAG_LEN};

fn table(entries: &[(&str, &'static str)]) -> RouteTable<&'static str> {
    RouteTable::new(
        entries
            .iter()
            .map(|(arg, value)| (PatternSet::parse(arg).unwrap(), *value))
            .collect(),
    )
}

#[test]
fn first_match_wins_in_configuration_order() {
    // The documentation's "Note on Match Order": a `**` placed first swallows everything.
    let bad = table(&[("**", "blackhole"), ("myapp.access", "file")]);
    assert_eq!(bad.lookup("myapp.access"), Some("blackhole"));
    let good = table(&[("myapp.access", "file"), ("**", "blackhole")]);
    assert_eq!(good.lookup("myapp.access"), Some("file"));
    assert_eq!(good.lookup("other"), Some("blackhole"));
    // Two identical patterns: the second is never chosen.
    let twice = table(&[("a.*", "first"), ("a.*", "second")]);
    assert_eq!(twice.lookup("a.b"), Some("first"));
    assert_eq!(twice.lookup_all("a.b"), vec!["first", "second"]);
}

#[test]
fn no_match_is_none() {
    let t = table(&[("a.**", "a"), ("b", "b")]);
    assert_eq!(t.lookup("c"), None);
    assert!(t.lookup_all("c").is_empty());
    let empty: RouteTable<u8> = RouteTable::new(Vec::new());
    assert_eq!(empty.lookup("a"), None);
}

#[test]
fn lookup_all_returns_every_match_in_order() {
    let t = table(&[
        ("app.**", "f1"),
        ("other", "f2"),
        ("*.access", "f3"),
        ("", "catch-all"),
    ]);
    assert_eq!(t.lookup_all("app.access"), vec!["f1", "f3", "catch-all"]);
    assert_eq!(t.lookup_all("app.access"), vec!["f1", "f3", "catch-all"]);
    assert_eq!(t.lookup_all("zzz"), vec!["catch-all"]);
    assert_eq!(t.lookup("app.access"), Some("f1"));
}

#[test]
fn cache_bound_holds_and_evicts_oldest_first() {
    let t = RouteTable::with_cache_capacity(vec![(PatternSet::parse("a.*").unwrap(), 1u32)], 3);
    assert_eq!(t.cache_capacity(), 3);
    for i in 0..10 {
        let tag = format!("a.{i}");
        assert_eq!(t.lookup(&tag), Some(1));
        assert!(t.cached_tags() <= 3);
    }
    assert_eq!(t.cached_tags(), 3);
    // Lookups of cached and evicted tags both still give the right answer.
    assert_eq!(t.lookup("a.0"), Some(1));
    assert_eq!(t.lookup("a.9"), Some(1));
    assert_eq!(t.lookup("b"), None);
    assert_eq!(t.cached_tags(), 3);

    let big = table(&[("**", "x")]);
    assert_eq!(big.cache_capacity(), DEFAULT_CACHE_CAPACITY);
    for i in 0..DEFAULT_CACHE_CAPACITY + 500 {
        big.lookup(&i.to_string());
    }
    assert_eq!(big.cached_tags(), DEFAULT_CACHE_CAPACITY);
}

#[test]
fn zero_capacity_and_long_tags_are_not_cached() {
    let t = RouteTable::with_cache_capacity(vec![(PatternSet::parse("**").unwrap(), 1u8)], 0);
    assert_eq!(t.lookup("a"), Some(1));
    assert_eq!(t.cached_tags(), 0);
    let t = table(&[("a.**", "a")]);
    let long = format!("a.{}", "b".repeat(MAX_CACHED_TAG_LEN));
    assert_eq!(t.lookup(&long), Some("a"));
    assert_eq!(t.cached_tags(), 0);
}

#[test]
fn shared_between_threads() {
    let t = Arc::new(table(&[("a.*", "a"), ("b.**", "b"), ("**", "rest")]));
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for i in 0..2000 {
                    let tag = format!("{}.{}", ["a", "b", "c"][(i + n) % 3], i % 50);
                    let got = t.lookup(&tag);
                    assert_eq!(got, t.lookup_uncached(&tag));
                    assert_eq!(t.lookup_all(&tag), t.lookup_all_uncached(&tag));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(t.cached_tags() <= DEFAULT_CACHE_CAPACITY);
}

fn pattern_arg() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("."),
            Just("*"),
            Just("**"),
            Just(" "),
            Just("{a,b}")
        ],
        0..6,
    )
    .prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn cached_lookups_equal_uncached(
        args in proptest::collection::vec(pattern_arg(), 0..6),
        tags in proptest::collection::vec("[ab.]{0,6}", 1..40),
        capacity in 0usize..5,
    ) {
        let entries: Vec<(PatternSet, usize)> = args
            .iter()
            .enumerate()
            .filter_map(|(i, a)| PatternSet::parse(a).ok().map(|s| (s, i)))
            .collect();
        let t = RouteTable::with_cache_capacity(entries, capacity);
        // Look every tag up twice so both cache misses and hits are compared.
        for tag in tags.iter().chain(tags.iter()) {
            prop_assert_eq!(t.lookup(tag), t.lookup_uncached(tag));
            prop_assert_eq!(t.lookup_all(tag), t.lookup_all_uncached(tag));
            prop_assert!(t.cached_tags() <= capacity);
        }
    }
}
