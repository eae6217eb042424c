//! Hostile tags and record values never put a file outside the configured directory.

mod common;

use std::path::{Component, Path};

use common::*;
use serde_json::json;
use weir_out_file::{FileOutput, FileOutputError};

const HOSTILE: &[&str] = &[
    "..",
    ".",
    "../../../../etc/passwd",
    "a/../../b",
    "/abs/path",
    "..\\..\\win",
    "a\0b",
    "nul\0",
    "ctl\n\r\t\x1b[31m\x7f",
    "c1\u{85}\u{9b}",
    ".hidden",
    "a.....b",
    "%2E%2E%2F",
    "x_**",
    "${chunk_id}${tag}",
];

fn long_tags() -> Vec<String> {
    vec![
        "a".repeat(10 * 1024),
        format!("blog.{}.x", "b".repeat(10 * 1024)),
        "a.".repeat(5 * 1024),
        "/..".repeat(3000),
        "é".repeat(4000),
    ]
}

/// Every file and link under `root`, checked to be inside `allowed`, with short components.
fn assert_contained(root: &Path, allowed: &Path, written: &[std::path::PathBuf]) {
    for p in written {
        assert!(
            !p.components().any(|c| c == Component::ParentDir),
            "{}",
            p.display()
        );
        assert!(
            p.starts_with(allowed),
            "{} outside {}",
            p.display(),
            allowed.display()
        );
        for c in p.components() {
            assert!(
                c.as_os_str().len() <= 255,
                "component too long in {}",
                p.display()
            );
        }
        let canon = p.canonicalize().expect("exists");
        assert!(canon.starts_with(allowed.canonicalize().expect("dir")));
    }
    for f in files(root) {
        assert!(
            root.join(&f).starts_with(allowed),
            "{f} was created outside {}",
            allowed.display()
        );
    }
}

#[test]
fn hostile_tags_stay_inside() {
    let root = temp_dir("hostile");
    let out_dir = root.join("out");
    for path in ["${tag}/f", "p-${tag[0]}-${tag[1]}-${tag[-1]}", "${tag}"] {
        for append in [false, true] {
            let body = format!(
                "path {}/{path}\nappend {append}\nsymlink_path {}/link-${{tag}}\n<buffer tag,time>\ntimekey_use_utc true\n</buffer>",
                out_dir.display(),
                out_dir.display()
            );
            let (cfg, buf) = configure(&body).expect("configures");
            let out = FileOutput::new(cfg);
            let mut tags: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
            tags.extend(long_tags());
            let mut written = Vec::new();
            for tag in &tags {
                for c in chunks(&buf, tag, &[(T_2011, rec(json!({"a": 1})))]) {
                    match out.write_chunk(&c) {
                        Ok(p) => written.push(p),
                        Err(e @ FileOutputError::UnsafePath { .. }) => {
                            panic!("{tag:?} with {path}: escaping should have made it safe: {e}")
                        }
                        Err(e) => panic!("{tag:?} with {path}: {e}"),
                    }
                }
            }
            assert_contained(&root, &out_dir, &written);
        }
    }
    // Ordinary tags are untouched, as Fluentd names them.
    let body = format!(
        "path {}/${{tag}}/f\n<buffer tag,time>\ntimekey_use_utc true\n</buffer>",
        out_dir.display()
    );
    let p = run_once(
        &body,
        "blog.access.123456789012.vpc-0abc",
        &[(T_2011, rec(json!({"a": 1})))],
    );
    assert_eq!(
        p,
        vec![out_dir.join("blog.access.123456789012.vpc-0abc/f.20110102_0.log")]
    );
    let p = run_once(&body, "../x", &[(T_2011, rec(json!({"a": 1})))]);
    assert_eq!(p, vec![out_dir.join("%2E.%2Fx/f.20110102_0.log")]);
}

#[test]
fn hostile_record_values_stay_inside() {
    let root = temp_dir("hostile-rec");
    let out_dir = root.join("out");
    let body = format!(
        "path {}/${{host}}/${{$.k8s.ns}}/f\n<buffer host,$.k8s.ns>\n</buffer>",
        out_dir.display()
    );
    let (cfg, buf) = configure(&body).expect("configures");
    let out = FileOutput::new(cfg);
    let mut written = Vec::new();
    let mut values: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    values.extend(long_tags());
    for v in &values {
        let r = rec(json!({"host": v, "k8s": {"ns": v}}));
        for c in chunks(&buf, "t", &[(T_2011, r)]) {
            written.push(out.write_chunk(&c).expect("written"));
        }
    }
    // Non-string values: maps become JSON text, which still has to be escaped.
    let r = rec(json!({"host": {"a": "../../x"}, "k8s": {"ns": ["/", ".."]}}));
    for c in chunks(&buf, "t", &[(T_2011, r)]) {
        written.push(out.write_chunk(&c).expect("written"));
    }
    assert_contained(&root, &out_dir, &written);
}

/// The second line of defence: an empty value next to configured dots could still form `..`;
/// such a chunk is refused as unrecoverable (it goes to failed/), and nothing is written.
#[test]
fn rendered_parent_dir_is_refused() {
    let root = temp_dir("hostile-dots");
    let out_dir = root.join("out");
    let body = format!(
        "path {}/${{tag[1]}}../f\n<buffer tag>\n</buffer>",
        out_dir.display()
    );
    let (cfg, buf) = configure(&body).expect("configures");
    let out = FileOutput::new(cfg);
    let c = chunks(&buf, "a..b", &[(T_2011, rec(json!({"a": 1})))]).remove(0);
    let e = out.write_chunk(&c).expect_err("refused");
    assert!(e.is_unrecoverable(), "{e}");
    assert!(files(&root).is_empty());
}
