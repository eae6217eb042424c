//! `weir check` over a corpus of configs in `tests/configs/`: each `NAME.conf` has a `NAME.out`
//! holding the exact exit code, routing plan (stdout) and errors or warnings (stderr).
//!
//! After an intended change, regenerate the expected files with
//! `WEIR_UPDATE_EXPECTED=1 cargo test -p weir-e2e --test config_check` and review the diff.

use std::process::Command;
use std::time::Duration;

use weir_e2e::{root, run_with_timeout, weir_bin};

fn check(args: &[&str], conf: &str) -> String {
    let mut cmd = Command::new(weir_bin());
    cmd.current_dir(root())
        .arg("check")
        .args(args)
        .args(["-c", conf]);
    let out = cmd.output().expect("running weir check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    format!(
        "exit: {}\n--- stdout\n{stdout}--- stderr\n{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn corpus_plans_and_errors_are_exact() {
    let dir = root().join("tests/configs");
    let mut confs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    confs.sort();
    assert!(confs.len() >= 4);
    let mut failures = Vec::new();
    for conf in confs {
        let name = conf.file_stem().unwrap().to_string_lossy().into_owned();
        let rel = format!("tests/configs/{name}.conf");
        let got = check(&[], &rel);
        let expected_path = dir.join(format!("{name}.out"));
        if std::env::var_os("WEIR_UPDATE_EXPECTED").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{name}:\n--- expected\n{expected}\n--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn strict_refuses_warnings_and_run_refuses_errors() {
    let got = check(&["--strict"], "tests/configs/warnings.conf");
    assert!(got.starts_with("exit: 1\n"), "{got}");
    assert!(got.contains("3 warning(s), refused by --strict"), "{got}");
    let got = check(&["--strict"], "tests/configs/labels_error.conf");
    assert!(got.starts_with("exit: 0\n"), "{got}");
    let mut cmd = Command::new(weir_bin());
    cmd.current_dir(root())
        .args(["run", "-c", "tests/configs/errors.conf"]);
    let (ok, _, stderr) = run_with_timeout(&mut cmd, Duration::from_secs(20));
    assert!(!ok);
    assert!(
        stderr.contains("16 error(s); weir did not start"),
        "{stderr}"
    );
}
