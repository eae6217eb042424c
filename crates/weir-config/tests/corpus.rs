//! Runs every `tests/corpus/*.conf` and compares the outcome with the `.expected` file beside it:
//! the canonical dump and warnings for a valid file, or `ERROR` and the exact error text.
//! Set `WEIR_CONFIG_BLESS=1` to rewrite the expected files from the current output.

use std::path::Path;

fn outcome(path: &Path) -> String {
    match weir_config::parse_file_with_warnings(path) {
        Ok(parsed) => {
            let mut out = parsed.root.dump();
            for w in &parsed.warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
            out
        }
        Err(errors) => format!("ERROR\n{errors}\n"),
    }
}

#[test]
fn corpus() {
    let dir = Path::new("tests/corpus");
    let mut cases: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "corpus has only {} cases", cases.len());
    let bless = std::env::var_os("WEIR_CONFIG_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let got = outcome(case);
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} has no .expected file", case.display()));
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_cases_round_trip() {
    // Every valid corpus file, rendered back to text and parsed again, gives the same tree.
    for name in [
        "aggregator.conf",
        "forwarder-td-agent.conf",
        "full-pipeline.conf",
        "json-values.conf",
        "quoting.conf",
        "includes.conf",
    ] {
        let path = Path::new("tests/corpus").join(name);
        let tree = weir_config::parse_file(&path).unwrap();
        let text = tree.to_config_text();
        let again =
            weir_config::parse_str(&text, "rendered.conf", Path::new("/nonexistent")).unwrap();
        assert_eq!(strip(&again), strip(&tree), "{name}:\n{text}");
    }
}

/// The tree without locations.
fn strip(e: &weir_config::Element) -> String {
    fn go(e: &weir_config::Element, out: &mut String) {
        out.push_str(&format!("<{} {:?}>", e.name, e.arg));
        for p in &e.params {
            out.push_str(&format!("{:?}={:?};", p.key, p.value));
        }
        for c in &e.elements {
            go(c, out);
        }
        out.push_str("</>");
    }
    let mut out = String::new();
    go(e, &mut out);
    out
}
