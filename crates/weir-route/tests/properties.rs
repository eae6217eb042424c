//! Property tests: nothing panics, and the automaton agrees with a naive recursive matcher.

use proptest::prelude::*;
use weir_route::{Pattern, PatternSet};

/// A glob piece, parsed independently of the crate, following Fluentd's `match.rb` rules.
#[derive(Debug, Clone)]
enum N {
    Lit(char),
    /// `*`
    Star,
    /// `**` without a following `.`
    Any,
    /// A `.` held back before `**`: end of tag or a `.` must follow.
    DotOrEnd,
    /// `**.`: start of tag, or any run (no line feed) ending in `.`.
    AnyDot,
    Alt(Vec<Vec<N>>),
}

/// Returns None when the braces are unbalanced (weir rejects those patterns).
fn reference_parse(pattern: &str) -> Option<Vec<N>> {
    fn seq(chars: &[char], i: &mut usize, in_brace: bool) -> Option<(Vec<N>, bool)> {
        // Returns the sequence and whether it stopped at a `,` (true) or `}`/end (false).
        let mut out = Vec::new();
        let mut dot = false;
        while *i < chars.len() {
            let c = chars[*i];
            if c == '*' && chars.get(*i + 1) == Some(&'*') {
                if dot {
                    out.push(N::DotOrEnd);
                    dot = false;
                }
                if chars.get(*i + 2) == Some(&'.') {
                    out.push(N::AnyDot);
                    *i += 3;
                } else {
                    out.push(N::Any);
                    *i += 2;
                }
                continue;
            }
            if dot {
                out.push(N::Lit('.'));
                dot = false;
            }
            *i += 1;
            match c {
                '\\' => {
                    if let Some(&e) = chars.get(*i) {
                        out.push(N::Lit(e));
                        *i += 1;
                    }
                }
                '.' => dot = true,
                '*' => out.push(N::Star),
                '{' => {
                    let mut alts = Vec::new();
                    loop {
                        let (alt, more) = seq(chars, i, true)?;
                        alts.push(alt);
                        if !more {
                            break;
                        }
                    }
                    out.push(N::Alt(alts));
                }
                '}' if in_brace => return Some((out, false)),
                '}' => return None,
                ',' if in_brace => return Some((out, true)),
                other => out.push(N::Lit(other)),
            }
        }
        if in_brace {
            None
        } else {
            Some((out, false))
        }
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    seq(&chars, &mut i, false).map(|(s, _)| s)
}

/// Naive backtracking matcher with continuations: exponential, fine for tiny inputs.
fn m(nodes: &[N], tag: &[char], p: usize, k: &dyn Fn(usize) -> bool) -> bool {
    let Some((first, rest)) = nodes.split_first() else {
        return k(p);
    };
    let next = |q: usize| m(rest, tag, q, k);
    match first {
        N::Lit(c) => tag.get(p) == Some(c) && next(p + 1),
        N::Star => (p..=tag.len()).any(|q| !tag[p..q].contains(&'.') && next(q)),
        N::Any => (p..=tag.len()).any(|q| !tag[p..q].contains(&'\n') && next(q)),
        N::DotOrEnd => (p == tag.len() || tag[p] == '.') && next(p),
        N::AnyDot => {
            (p == 0 && next(p))
                || (p + 1..=tag.len())
                    .any(|q| tag[q - 1] == '.' && !tag[p..q].contains(&'\n') && next(q))
        }
        N::Alt(alts) => alts.iter().any(|alt| m(alt, tag, p, &next)),
    }
}

fn reference_matches(pattern: &str, tag: &str) -> Option<bool> {
    if pattern == "**" {
        return Some(true);
    }
    let nodes = reference_parse(pattern)?;
    let tag: Vec<char> = tag.chars().collect();
    let len = tag.len();
    Some(m(&nodes, &tag, 0, &|q| {
        q == len || (q + 1 == len && tag[q] == '\n')
    }))
}

fn small_pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just("a"), 2 => Just("b"), 4 => Just("."), 3 => Just("*"), 2 => Just("**"),
            2 => Just("{"), 2 => Just("}"), 2 => Just(","), 1 => Just("\\"), 1 => Just("\n"),
        ],
        0..10,
    )
    .prop_map(|parts| parts.concat())
}

fn small_tag() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![4 => Just('a'), 3 => Just('b'), 4 => Just('.'), 1 => Just('\n'), 1 => Just(',')],
        0..9,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn automaton_agrees_with_naive_reference(pattern in small_pattern(), tag in small_tag()) {
        let ours = Pattern::parse(&pattern);
        match reference_matches(&pattern, &tag) {
            None => prop_assert!(ours.is_err(), "{:?} should be rejected", pattern),
            Some(expected) => {
                let ours = ours.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(ours.matches(&tag), expected, "pattern {:?} tag {:?}", pattern, tag);
            }
        }
    }

    #[test]
    fn any_pattern_and_tag_never_panic(pattern in any::<String>(), tag in any::<String>()) {
        if let Ok(p) = Pattern::parse(&pattern) {
            let _ = p.matches(&tag);
            let _ = p.as_str();
        }
        if let Ok(set) = PatternSet::parse(&pattern) {
            let _ = set.matches(&tag);
        }
    }

    #[test]
    fn regex_shaped_inputs_never_panic(body in "[a-z.()?!=|\\\\\\[\\]*+{},^$]{0,12}", tag in "[a-z.\n]{0,10}") {
        if let Ok(p) = Pattern::parse(&format!("/{body}/")) {
            let _ = p.matches(&tag);
        }
    }

    #[test]
    fn globs_from_the_glob_alphabet_never_panic(pattern in "[a-z.*{},\\\\]{0,20}", tag in "[a-z.]{0,30}") {
        if let Ok(p) = Pattern::parse(&pattern) {
            let _ = p.matches(&tag);
        }
    }
}
