//! `@include` against files in a temporary directory made by the test.

use std::path::{Path, PathBuf};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weir-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ports(e: &weir_config::Element) -> Vec<String> {
    e.children("source")
        .filter_map(|s| s.get("port"))
        .map(str::to_string)
        .collect()
}

#[test]
fn relative_paths_and_sorted_globs() {
    let t = TempDir::new("globs");
    t.write("conf.d/b.conf", "<source>\n  port 2\n</source>\n");
    t.write("conf.d/a.conf", "<source>\n  port 1\n</source>\n");
    t.write("conf.d/c.conf.disabled", "<source>\n  port 99\n</source>\n");
    t.write("conf.d/sub/d.conf", "@include ../../more/e.conf\n");
    t.write("more/e.conf", "<source>\n  port 5\n</source>\n");
    t.write("x/y/z.conf", "<source>\n  port 7\n</source>\n");
    t.write("A.conf", "<source>\n  port 0\n</source>\n");
    let main = t.write(
        "main.conf",
        "@include conf.d/*.conf\n@include conf.d/*/*.conf\n@include ./x/**/*.conf\n@include {A,missing}.conf\n",
    );
    let root = weir_config::parse_file(&main).unwrap();
    assert_eq!(ports(&root), vec!["1", "2", "5", "7", "0"]);
    // Locations name the included file.
    let first = &root.elements[0];
    assert!(
        first.location.file.ends_with("conf.d/a.conf"),
        "{}",
        first.location
    );
}

#[test]
fn include_inside_a_directive_and_absolute_paths() {
    let t = TempDir::new("nested");
    let part = t.write(
        "buffer.conf",
        "<buffer tag>\n  timekey 1m\n</buffer>\nflush_interval 5s\n",
    );
    let main = t.write(
        "main.conf",
        &format!(
            "<match a>\n  @type file\n  @include buffer.conf\n</match>\n<match b>\n  @include file://{}\n</match>\n",
            part.display()
        ),
    );
    let root = weir_config::parse_file(&main).unwrap();
    for m in &root.elements {
        assert_eq!(m.get("flush_interval"), Some("5s"));
        assert_eq!(m.elements[0].name, "buffer");
    }
}

#[test]
fn missing_files_warn_and_unreadable_files_fail() {
    let t = TempDir::new("missing");
    std::fs::create_dir_all(t.0.join("adir")).unwrap();
    let main = t.write("main.conf", "@include nope.conf\n@include nope/*.conf\n");
    let parsed = weir_config::parse_file_with_warnings(&main).unwrap();
    assert_eq!(parsed.warnings.len(), 2);
    assert!(parsed.warnings[0]
        .to_string()
        .ends_with("main.conf:1: @include 'nope.conf' matches no file (Fluentd ignores this too)"));

    let main = t.write("dir.conf", "\n@include adir\n");
    let err = weir_config::parse_file(&main).unwrap_err().to_string();
    assert!(err.contains("dir.conf:2: include error adir - "), "{err}");
}

#[test]
fn cycles_are_errors() {
    let t = TempDir::new("cycle");
    let main = t.write("self.conf", "<system>\n</system>\n@include self.conf\n");
    let err = weir_config::parse_file(&main).unwrap_err().to_string();
    assert!(
        err.ends_with("self.conf:3: @include cycle: ") || err.contains("@include cycle: "),
        "{err}"
    );
    assert!(err.contains("self.conf:3: "), "{err}");
}

#[test]
fn parse_str_uses_base_dir() {
    let t = TempDir::new("basedir");
    t.write("inc.conf", "k v\n");
    let root = weir_config::parse_str("@include inc.conf\n", "inline", &t.0).unwrap();
    assert_eq!(root.get("k"), Some("v"));
    let err = weir_config::parse_file(Path::new("/nonexistent/weir.conf"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent/weir.conf:0: cannot read the config file: "),
        "{err}"
    );
}
