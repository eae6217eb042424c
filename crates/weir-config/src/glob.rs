//! File globbing for `@include`, following Ruby's `Dir.glob`: `*`, `?`, `[...]`, `{a,b}` and
//! `**/` (any number of directories); wildcards do not match a leading dot. Results are sorted
//! bytewise by full path, as Fluentd sorts them.

use std::path::{Path, PathBuf};

/// Most brace alternatives one pattern may expand to.
const MAX_EXPANSIONS: usize = 1024;

/// True when the pattern has glob characters.
pub(crate) fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Expands `{a,b}` alternatives (nested allowed). Unbalanced braces are taken literally.
fn expand_braces(pattern: &str, out: &mut Vec<String>) {
    if out.len() >= MAX_EXPANSIONS {
        return;
    }
    let bytes = pattern.as_bytes();
    let Some(open) = pattern.find('{') else {
        out.push(pattern.to_string());
        return;
    };
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(pattern.to_string());
        return;
    };
    let head = &pattern[..open];
    let tail = &pattern[close + 1..];
    let mut start = open + 1;
    commas.push(close);
    for c in commas {
        let alt = &pattern[start..c];
        expand_braces(&format!("{head}{alt}{tail}"), out);
        start = c + 1;
    }
}

/// Matches one path component against one pattern component (`*`, `?`, `[...]`).
fn match_component(pat: &[char], name: &[char]) -> bool {
    if name.first() == Some(&'.') && pat.first() != Some(&'.') {
        return false;
    }
    // Iterative wildcard matching with one backtrack point: linear-ish, never exponential.
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = match_class(pat, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pat.len() => {
                    if pat[p + 1] == name[n] {
                        p += 2;
                        n += 1;
                        continue;
                    }
                }
                c => {
                    if c == name[n] {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    while p < pat.len() && pat[p] == '*' {
        p += 1;
    }
    p == pat.len()
}

/// Matches `c` against the class starting at `pat[p] == '['`. Returns (matched, index after the
/// class), or `None` when the class is not closed.
fn match_class(pat: &[char], p: usize, c: char) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = matches!(pat.get(i), Some('^' | '!'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let lo = pat[i];
        if pat.get(i + 1) == Some(&'-') && pat.get(i + 2).is_some_and(|&h| h != ']') {
            let hi = pat[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

fn list_dir(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            Some((name.clone(), dir.join(name)))
        })
        .collect();
    out.sort();
    out
}

fn walk(base: PathBuf, parts: &[&str], out: &mut Vec<PathBuf>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let Some((first, rest)) = parts.split_first() else {
        if base.exists() {
            out.push(base);
        }
        return;
    };
    if *first == "**" {
        // Zero directories…
        walk(base.clone(), rest, out, budget);
        // …or one more, recursively (not following dot directories).
        for (name, path) in list_dir(&base) {
            if !name.starts_with('.') && path.is_dir() && !path.is_symlink() {
                walk(path, parts, out, budget);
            }
        }
        return;
    }
    if !has_magic(first) {
        let next = base.join(first);
        if rest.is_empty() {
            if next.exists() {
                out.push(next);
            }
        } else if next.is_dir() {
            walk(next, rest, out, budget);
        }
        return;
    }
    let pat: Vec<char> = first.chars().collect();
    for (name, path) in list_dir(&base) {
        let chars: Vec<char> = name.chars().collect();
        if match_component(&pat, &chars) {
            if rest.is_empty() {
                out.push(path);
            } else if path.is_dir() {
                walk(path, rest, out, budget);
            }
        }
    }
}

/// The files matching an absolute pattern, sorted and without duplicates.
pub(crate) fn glob(pattern: &str) -> Vec<PathBuf> {
    let mut patterns = Vec::new();
    expand_braces(pattern, &mut patterns);
    let mut out = Vec::new();
    let mut budget = 100_000usize;
    for p in patterns {
        let (root, rel) = match p.strip_prefix('/') {
            Some(rel) => (PathBuf::from("/"), rel.to_string()),
            None => (PathBuf::new(), p.clone()),
        };
        let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        walk(root, &parts, &mut out, &mut budget);
    }
    out.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        let p: Vec<char> = p.chars().collect();
        let n: Vec<char> = n.chars().collect();
        match_component(&p, &n)
    }

    #[test]
    fn components() {
        assert!(m("*.conf", "a.conf"));
        assert!(!m("*.conf", ".hidden.conf"));
        assert!(m(".*.conf", ".hidden.conf"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxx"));
        assert!(m("[x", "[x"));
    }

    #[test]
    fn braces() {
        let mut out = Vec::new();
        expand_braces("/d/{a,b{1,2}}.conf", &mut out);
        assert_eq!(out, vec!["/d/a.conf", "/d/b1.conf", "/d/b2.conf"]);
        let mut out = Vec::new();
        expand_braces("/d/{a.conf", &mut out);
        assert_eq!(out, vec!["/d/{a.conf"]);
    }
}
