//! Property tests: arbitrary text never panics or hangs, and rendered trees parse back the same.

use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use weir_config::{parse_str, Element, Location, Param};

fn parse(text: &str) -> Result<Element, weir_config::ConfigErrors> {
    parse_str(text, "p.conf", Path::new("/nonexistent-weir-dir"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_like_text_never_panics(text in "[<>/a-z@# \t\n\r\"'\\\\{}\\[\\]:,.$]{0,300}") {
        let _ = parse(&text);
    }

    #[test]
    fn any_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn value_functions_never_panic(text in any::<String>()) {
        let _ = weir_config::parse_integer(&text);
        let _ = weir_config::parse_float(&text);
        let _ = weir_config::parse_size(&text);
        let _ = weir_config::parse_duration(&text);
        let _ = weir_config::parse_bool(&text);
        let _ = weir_config::parse_array(&text);
        let _ = weir_config::parse_hash(&text);
    }
}

fn loc() -> Location {
    Location::new("gen", 0)
}

fn arb_params() -> impl Strategy<Value = Vec<Param>> {
    prop::collection::btree_map("[a-z_][a-z0-9_]{0,10}", any::<String>(), 0..5).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| k != "include")
            .map(|(key, value)| Param {
                key,
                value,
                location: loc(),
            })
            .collect()
    })
}

fn arb_element() -> impl Strategy<Value = Element> {
    let leaf = (
        "[a-z_][a-z0-9_]{0,8}",
        "([a-z0-9.*_,@-]([a-z0-9.*_,@ {}-]{0,12}[a-z0-9.*_,@-])?)?",
        arb_params(),
    )
        .prop_map(|(name, arg, params)| Element {
            name,
            arg,
            params,
            elements: vec![],
            location: loc(),
        });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            "[a-z_][a-z0-9_]{0,8}",
            "([a-z0-9.*_,@-]([a-z0-9.*_,@ -]{0,12}[a-z0-9.*_,@-])?)?",
            arb_params(),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(name, arg, params, elements)| Element {
                name,
                arg,
                params,
                elements,
                location: loc(),
            })
    })
}

/// The tree without locations.
fn strip(e: &Element) -> String {
    let mut out = format!("<{} {:?}>", e.name, e.arg);
    for p in &e.params {
        out.push_str(&format!("{:?}={:?};", p.key, p.value));
    }
    for c in &e.elements {
        out.push_str(&strip(c));
    }
    out.push_str("</>");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn rendered_trees_parse_back(params in arb_params(), elements in prop::collection::vec(arb_element(), 0..4)) {
        let root = Element { name: "ROOT".into(), arg: String::new(), params, elements, location: loc() };
        let text = root.to_config_text();
        let again = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(strip(&again), strip(&root), "{}", text);
    }
}

/// Pathological inputs finish quickly: the parser is linear.
#[test]
fn large_inputs_are_linear() {
    let n = 200_000;
    let cases = [
        format!("<a{}", " ".repeat(n)),
        format!("<a {}>\n</a>\n", "b ".repeat(n / 2)),
        format!("<a {}\n", "# ".repeat(n / 2)),
        format!("k {}x\n", " ".repeat(n)),
        format!("k \"{}\"\n", "a\n".repeat(n / 2)),
        format!("k [{}\n", "[".repeat(n)),
        format!("k [{}]\n", "1,".repeat(n / 2)),
        "<a>\n".repeat(n / 4),
        "k v\n".repeat(n / 4),
        format!("k \"{}\"", "#{".repeat(n / 2)),
        "#".repeat(n),
        format!("{}\n", "a".repeat(n)),
    ];
    let distinct_keys: String = (0..n / 4).map(|i| format!("k{i} v\n")).collect();
    let distinct_sections: String = (0..n / 8).map(|i| format!("<s{i}>\n</s{i}>\n")).collect();
    for text in cases.iter().chain([&distinct_keys, &distinct_sections]) {
        let start = Instant::now();
        let _ = parse(text);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "took {took:?} on input starting {:?}",
            &text[..40.min(text.len())]
        );
    }
}
