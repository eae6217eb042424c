//! Everything in `deploy/` checked with the real tools: cfn-lint on the CloudFormation
//! templates, shellcheck on the scripts and the launch template's user data, `systemd-analyze
//! verify` on the units, `weir check` on every weir config, hadolint (or a real build, where a
//! Docker engine runs) on the Dockerfile, and the release artifact against what the launch
//! template installs from it. The forwarder configs (td-agent, Fluent Bit, FireLens) are
//! checked for the settings the tier depends on.
//!
//! The linters come from the test venv (`make test-deps`, tests/requirements.txt). When
//! `systemd-analyze` is missing the test fails, unless WEIR_SKIP_SYSTEMD_VERIFY=1 says to skip
//! it (which prints a SKIP line).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weir_e2e::{python, root, run_with_timeout, weir_bin, Scratch, Weir};

const TEMPLATES: [&str; 2] = [
    "deploy/cloudformation/weir-aggregator.yaml",
    "deploy/cloudformation/weir-consumer-endpoint.yaml",
];

/// Prints a line on the real standard error, past the test harness's capture, so that a
/// skipped or replaced check is visible in every run, passing or not.
fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {msg} ***\n");
}

/// A tool installed in the test venv next to its Python.
fn venv_tool(name: &str) -> PathBuf {
    let p = python().with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run `make test-deps` (tests/requirements.txt installs it)",
        p.display()
    );
    p
}

/// Runs a command in the repository root; returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    run_with_timeout(cmd.current_dir(root()), Duration::from_secs(120))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Every file under `dir` (relative to the root) whose name ends with `suffix`, sorted.
fn files_under(dir: &str, suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, suffix, out);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), suffix, &mut out);
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn cloudformation_templates_pass_cfn_lint() {
    let cfn_lint = venv_tool("cfn-lint");
    let (ok, out, err) = run(Command::new(&cfn_lint).args(TEMPLATES));
    assert!(ok, "cfn-lint found problems:\n{out}\n{err}");

    // The linter is real: a template with a property CloudFormation does not have fails.
    let scratch = Scratch::new("deploy-cfn-lint");
    let broken = read(TEMPLATES[1]).replace(
        "      PrivateDnsEnabled: false",
        "      PrivateDnsEnabled: false\n      NoSuchProperty: true",
    );
    let path = scratch.write("broken.yaml", broken);
    let (ok, out, _) = run(Command::new(&cfn_lint).arg(&path));
    assert!(
        !ok && out.contains("NoSuchProperty"),
        "cfn-lint accepted a broken template:\n{out}"
    );
}

/// The launch template's user data with `${Param}` references replaced by placeholders, so
/// that shellcheck sees the script an instance runs.
fn user_data_script() -> String {
    let script = r#"
import re, sys
from cfnlint.decode import decode
tpl, errors = decode(sys.argv[1])
assert not errors, errors
ud = tpl["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
sub = ud["Fn::Base64"]["Fn::Sub"]
body = sub[0] if isinstance(sub, list) else sub
body = re.sub(r"\$\{(?!!)([A-Za-z0-9:.]+)\}", lambda m: "CFN_" + re.sub(r"\W", "_", m.group(1)), body)
sys.stdout.write(body.replace("${!", "${"))
"#;
    let (ok, out, err) = run(Command::new(python()).args(["-c", script, TEMPLATES[0]]));
    assert!(ok, "extracting the user data failed: {err}");
    assert!(out.starts_with("#!/bin/bash\n"), "user data: {out}");
    out
}

#[test]
fn scripts_and_user_data_pass_shellcheck() {
    let shellcheck = venv_tool("shellcheck");
    let scratch = Scratch::new("deploy-shellcheck");
    let user_data = scratch.write("user-data.sh", user_data_script());
    let mut files: Vec<PathBuf> = files_under("deploy", ".sh");
    assert!(files.len() >= 2, "scripts under deploy/: {files:?}");
    files.push(user_data);
    let (ok, out, err) = run(Command::new(&shellcheck).args(&files));
    assert!(ok, "shellcheck found problems:\n{out}\n{err}");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    if probe.is_err() {
        if std::env::var_os("WEIR_SKIP_SYSTEMD_VERIFY").is_some_and(|v| v == "1") {
            notice(
                "SKIP systemd_units_pass_systemd_analyze_verify: systemd-analyze is not \
                 installed and WEIR_SKIP_SYSTEMD_VERIFY=1",
            );
            return;
        }
        panic!(
            "systemd-analyze is missing: install Debian's `systemd` package (make test-deps \
             does: scripts/system-deps.sh), or set WEIR_SKIP_SYSTEMD_VERIFY=1 to skip this check"
        );
    }
    // An image of the root file system the units are installed on: systemd's own units, the
    // programs the units run (stand-ins) and the units themselves where the artifact and the
    // launch template put them. systemd-analyze checks that every Exec path exists there.
    let scratch = Scratch::new("deploy-systemd");
    let fs = scratch.path().join("root");
    let system = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("systemd's unit directory");
    let (ok, _, err) = run(Command::new("mkdir")
        .arg("-p")
        .arg(fs.join("usr/lib/systemd"))
        .arg(fs.join("etc/systemd/system"))
        .arg(fs.join("usr/local/bin"))
        .arg(fs.join("bin")));
    assert!(ok, "{err}");
    let (ok, _, err) = run(Command::new("cp")
        .arg("-r")
        .arg(system)
        .arg(fs.join("usr/lib/systemd/system")));
    assert!(ok, "copying {}: {err}", system.display());
    for program in [
        "usr/local/bin/weir",
        "usr/local/bin/weir-lifecycle",
        "bin/kill",
    ] {
        let p = fs.join(program);
        std::fs::write(&p, "#!/bin/sh\n").expect("writing a stand-in");
        let (ok, _, err) = run(Command::new("chmod").arg("755").arg(&p));
        assert!(ok, "{err}");
    }
    let units = [
        ("deploy/systemd/weir.service", "weir.service"),
        (
            "deploy/aws/weir-lifecycle.service",
            "weir-lifecycle.service",
        ),
    ];
    for (src, name) in units {
        std::fs::write(fs.join("etc/systemd/system").join(name), read(src)).expect("unit");
    }
    let verify = |names: &[&str]| {
        let mut cmd = Command::new("systemd-analyze");
        cmd.arg("verify")
            .arg(format!("--root={}", fs.display()))
            .arg("--man=no");
        for n in names {
            cmd.arg(format!("/etc/systemd/system/{n}"));
        }
        run(&mut cmd)
    };
    let (ok, out, err) = verify(&["weir.service", "weir-lifecycle.service"]);
    // systemd-analyze exits 0 on mere warnings (an unknown key, a bad value): any output fails.
    assert!(
        ok && err.trim().is_empty() && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}\n{err}"
    );

    // The check is real: a unit with a mistake in it is reported.
    std::fs::write(
        fs.join("etc/systemd/system/broken.service"),
        read("deploy/systemd/weir.service")
            .replace("ProtectSystem=strict", "ProtectSystem=stricter"),
    )
    .expect("unit");
    let (_, out, err) = verify(&["broken.service"]);
    assert!(
        format!("{out}{err}").contains("stricter"),
        "a broken unit passed:\n{out}\n{err}"
    );
}

#[test]
fn the_weir_unit_leaves_writable_what_the_aws_config_writes() {
    let unit = read("deploy/systemd/weir.service");
    for line in [
        "ProtectSystem=strict",
        "StateDirectory=weir",
        "LogsDirectory=weir",
        "NoNewPrivileges=yes",
        "KillSignal=SIGTERM",
        "User=weir",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
        "LimitRTPRIO=1",
        "RestrictRealtime=no",
    ] {
        assert!(unit.lines().any(|l| l == line), "weir.service lacks {line}");
    }
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    let drain: u64 = unit
        .split("--drain-timeout ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("--drain-timeout in ExecStart");
    assert!(
        stop >= drain + 60,
        "TimeoutStopSec={stop} leaves too little time to flush after a {drain} s drain"
    );
    // With ProtectSystem=strict only /var/lib/weir and /var/log/weir are writable: every path
    // the instance config writes must be under them, and the lifecycle watcher must watch the
    // chunk store's real root.
    let conf = read("deploy/aws/weir.conf");
    let paths: Vec<&str> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path "))
        .map(str::trim)
        .filter(|p| p.starts_with('/'))
        .collect();
    assert!(paths.len() >= 4, "paths in deploy/aws/weir.conf: {paths:?}");
    for p in &paths {
        assert!(
            p.starts_with("/var/lib/weir/") || p.starts_with("/var/log/weir/"),
            "{p} is not writable under weir.service's ProtectSystem=strict"
        );
    }
    let buffer_root = "/var/lib/weir/buffer/";
    assert!(read(TEMPLATES[0]).contains("WEIR_BUFFER_DIR=/var/lib/weir/buffer\n"));
    for block in conf.split("<buffer").skip(1) {
        let path = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("path "))
            .expect("every buffer has a path");
        assert!(
            path.trim().starts_with(buffer_root),
            "buffer path {path} is outside the lifecycle watcher's {buffer_root}"
        );
    }
}

/// Runs `weir check` with the environment the deployment provides.
fn weir_check(conf: &Path, strict: bool) -> (bool, String) {
    let mut cmd = Command::new(weir_bin());
    cmd.arg("check");
    if strict {
        cmd.arg("--strict");
    }
    cmd.arg("-c")
        .arg(conf)
        .env("WEIR_S3_BUCKET", "example-log-archive")
        .env("WEIR_S3_REGION", "us-east-1")
        .env("WEIR_S3_PREFIX", "weir/")
        .env("WEIR_ADMIN_TOKEN", "test-token")
        .env("WEIR_ACCOUNT_ID", "111111111111")
        .env("WEIR_VPC_ID", "vpc-0123456789abcdef0")
        .env("WEIR_SHARED_KEY", "test-key");
    let (ok, out, err) = run(&mut cmd);
    (ok, format!("{out}\n{err}"))
}

#[test]
fn every_weir_config_in_deploy_and_examples_passes_weir_check() {
    let mut checked = BTreeSet::new();
    let mut failures = Vec::new();
    for conf in files_under("examples", ".conf") {
        let (ok, out) = weir_check(&conf, false);
        if !ok {
            failures.push(format!("{}:\n{out}", rel(&conf)));
        }
        checked.insert(rel(&conf));
    }
    // deploy/aws/weir.conf includes forward.conf, which the instance gets from one of two
    // files: check it with each.
    let scratch = Scratch::new("deploy-aws-conf");
    scratch.write("weir.conf", read("deploy/aws/weir.conf"));
    for variant in ["deploy/aws/forward.conf", "deploy/aws/forward-proxy.conf"] {
        scratch.write("forward.conf", read(variant));
        let (ok, out) = weir_check(&scratch.path().join("weir.conf"), true);
        if !ok {
            failures.push(format!("deploy/aws/weir.conf with {variant}:\n{out}"));
        }
        assert!(
            out.contains("source forward_in (forward) on 0.0.0.0:24224")
                && out.contains("source admin (monitor_agent) on 0.0.0.0:24220"),
            "{out}"
        );
        checked.insert(variant.to_string());
    }
    checked.insert("deploy/aws/weir.conf".into());
    let docker = "deploy/docker/weir.conf";
    let (ok, out) = weir_check(&root().join(docker), true);
    if !ok {
        failures.push(format!("{docker}:\n{out}"));
    }
    checked.insert(docker.into());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // No weir config under deploy/ goes unchecked (the forwarder configs are another
    // program's: forwarder_configs_keep_the_settings_the_tier_needs checks them).
    let unchecked: Vec<String> = files_under("deploy", ".conf")
        .iter()
        .map(|p| rel(p))
        .filter(|p| !p.starts_with("deploy/forwarders/") && !checked.contains(p))
        .collect();
    assert!(
        unchecked.is_empty(),
        "configs under deploy/ that this test does not check: {unchecked:?}"
    );
}

/// The text of the `<match>` section that holds `@type forward` in a Fluentd config.
fn forward_match(conf: &str) -> &str {
    let start = conf
        .find("<match blog.**>")
        .expect("a <match blog.**> section");
    let body = &conf[start..];
    let end = body.find("\n</match>").expect("</match>");
    let body = &body[..end];
    assert!(body.contains("\n  @type forward\n"), "not a forward output");
    body
}

fn seconds(v: &str) -> u64 {
    let v = v.trim();
    let (n, mult) = match v.strip_suffix('s') {
        Some(n) => (n, 1),
        None => match v.strip_suffix('m') {
            Some(n) => (n, 60),
            None => (v, 1),
        },
    };
    n.parse::<u64>().expect("a duration") * mult
}

/// One `[SECTION]` of a Fluent Bit classic config: its name and its (key, value) lines.
type Section = (String, Vec<(String, String)>);

fn fluent_bit_sections(text: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            out.push((name.to_string(), Vec::new()));
            continue;
        }
        assert!(
            line.starts_with("    "),
            "not indented under a section: {line}"
        );
        let (k, v) = t.split_once(char::is_whitespace).expect("key and value");
        out.last_mut()
            .expect("a key before any section")
            .1
            .push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    out
}

fn get<'a>(section: &'a Section, key: &str) -> Option<&'a str> {
    section
        .1
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn forwarder_configs_keep_the_settings_the_tier_needs() {
    // td-agent / Fluentd: weir parses the same syntax, so `weir check` proves the files are
    // well-formed; the only errors allowed are the forwarder-side plugins weir does not have.
    let td = files_under("deploy/forwarders/td-agent", ".conf");
    assert_eq!(td.len(), 2, "{td:?}");
    for path in &td {
        let name = rel(path);
        let (_, out) = weir_check(path, false);
        for line in out.lines().filter(|l| l.starts_with("error: ")) {
            assert!(
                line.contains("input plugin 'tail' is not supported")
                    || line.contains("output plugin 'forward' is not supported"),
                "{name}: {line}"
            );
        }
        let conf = std::fs::read_to_string(path).expect("reading");
        let fwd = forward_match(&conf);
        for want in [
            "require_ack_response true",
            "heartbeat_type transport",
            "keepalive true",
            "recover_wait",
        ] {
            assert!(fwd.contains(want), "{name} lacks `{want}`");
        }
        let keepalive = fwd
            .lines()
            .find_map(|l| l.trim().strip_prefix("keepalive_timeout "))
            .map(seconds)
            .expect("keepalive_timeout");
        assert!(
            keepalive < 350,
            "{name}: keepalive_timeout must be below the NLB's 350 s"
        );
        let servers = fwd.matches("<server>").count();
        let standby = fwd.lines().filter(|l| l.trim() == "standby").count();
        assert!(
            servers >= 2 && standby == 1,
            "{name}: {servers} servers, {standby} standby"
        );
        assert!(
            fwd.contains("<buffer tag>\n    @type file\n"),
            "{name}: no file buffer"
        );
        if name.ends_with("-tls.conf") {
            for want in [
                "transport tls",
                "tls_verify_hostname true",
                "shared_key",
                "<security>",
            ] {
                assert!(fwd.contains(want), "{name} lacks `{want}`");
            }
        }
    }

    // Fluent Bit: the output, its Upstream file, and the nodes in it.
    let dir = root().join("deploy/forwarders/fluent-bit");
    let mains: Vec<PathBuf> = files_under("deploy/forwarders/fluent-bit", ".conf")
        .into_iter()
        .filter(|p| !rel(p).contains("upstream"))
        .collect();
    assert_eq!(mains.len(), 2, "{mains:?}");
    for path in &mains {
        let name = rel(path);
        let sections = fluent_bit_sections(&std::fs::read_to_string(path).expect("reading"));
        let service = sections
            .iter()
            .find(|s| s.0 == "SERVICE")
            .expect("[SERVICE]");
        assert!(
            get(service, "storage.path").is_some(),
            "{name}: no storage.path"
        );
        let input = sections.iter().find(|s| s.0 == "INPUT").expect("[INPUT]");
        assert_eq!(get(input, "storage.type"), Some("filesystem"), "{name}");
        let tag = get(input, "tag").expect("Tag");
        assert_eq!(
            tag.split('.').count(),
            4,
            "{name}: tag {tag} is not blog.<log>.<account>.<vpc>"
        );
        let output = sections.iter().find(|s| s.0 == "OUTPUT").expect("[OUTPUT]");
        assert_eq!(get(output, "name"), Some("forward"), "{name}");
        assert_eq!(get(output, "require_ack_response"), Some("true"), "{name}");
        let idle = seconds(get(output, "net.keepalive_idle_timeout").expect("idle timeout"));
        assert!(idle < 350, "{name}: net.keepalive_idle_timeout {idle} s");
        let upstream = get(output, "upstream").expect("Upstream");
        let file = Path::new(upstream).file_name().expect("a file name");
        let up = fluent_bit_sections(
            &std::fs::read_to_string(dir.join(file))
                .unwrap_or_else(|e| panic!("{name}: its Upstream {upstream}: {e}")),
        );
        assert_eq!(up.iter().filter(|s| s.0 == "UPSTREAM").count(), 1);
        let nodes: Vec<&Section> = up.iter().filter(|s| s.0 == "NODE").collect();
        assert!(nodes.len() >= 2, "{name}: {} nodes", nodes.len());
        let hosts: BTreeSet<&str> = nodes.iter().filter_map(|n| get(n, "host")).collect();
        assert_eq!(
            hosts.len(),
            nodes.len(),
            "{name}: nodes must be different AZs' names"
        );
        for n in &nodes {
            assert_eq!(get(n, "port"), Some("24224"));
            assert_eq!(get(n, "require_ack_response"), Some("true"));
            if name.ends_with("-tls.conf") {
                assert_eq!(get(n, "tls"), Some("on"));
                assert_eq!(get(n, "tls.verify"), Some("on"));
                assert!(get(n, "shared_key").is_some() && get(n, "tls.ca_file").is_some());
            }
        }
    }

    // FireLens: the app's logs go through the Fluent Bit log router to weir with acks.
    let task: serde_json::Value =
        serde_json::from_str(&read("deploy/forwarders/firelens/task-definition.json"))
            .expect("the task definition is JSON");
    let containers = task["containerDefinitions"].as_array().expect("containers");
    let router = containers
        .iter()
        .find(|c| c["firelensConfiguration"]["type"] == "fluentbit")
        .expect("a Fluent Bit log router");
    let app = containers
        .iter()
        .find(|c| c["logConfiguration"]["logDriver"] == "awsfirelens")
        .expect("a container logging through FireLens");
    let opts = &app["logConfiguration"]["options"];
    assert_eq!(opts["Name"], "forward");
    assert_eq!(opts["Port"], "24224");
    assert_eq!(opts["Require_ack_response"], "true");
    assert!(opts["Tag"]
        .as_str()
        .is_some_and(|t| t.starts_with("blog.") && t.split('.').count() == 4));
    assert!(app["dependsOn"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["containerName"] == router["name"])));
}

/// The HEALTHCHECK command of the Dockerfile, as its JSON array.
fn docker_healthcheck(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    let json = &line[line.find("CMD [").expect("CMD in exec form") + 4..];
    serde_json::from_str(json).expect("the CMD is a JSON array")
}

#[test]
fn dockerfile_builds_or_passes_hadolint_and_its_health_check_works() {
    let dockerfile = read("deploy/docker/Dockerfile");
    for want in [
        "\nSTOPSIGNAL SIGTERM\n",
        "\nVOLUME [\"/var/lib/weir\"]\n",
        "\nUSER 10001:10001\n",
        "\nEXPOSE 24224/tcp 24224/udp 24220/tcp\n",
    ] {
        assert!(dockerfile.contains(want), "the Dockerfile lacks {want:?}");
    }
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = line.split_whitespace().nth(1).expect("a source");
        assert!(
            src == "." || root().join(src).exists(),
            "COPY source {src} is missing"
        );
    }
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target"),
        ".dockerignore must leave out target/"
    );

    let docker = Command::new("docker").arg("info").output();
    match docker {
        Ok(o) if o.status.success() => {
            notice("a Docker engine runs: building deploy/docker/Dockerfile");
            let (ok, out, err) = run_with_timeout(
                Command::new("docker")
                    .args([
                        "build",
                        "-f",
                        "deploy/docker/Dockerfile",
                        "-t",
                        "weir:e2e",
                        ".",
                    ])
                    .current_dir(root()),
                Duration::from_secs(3600),
            );
            assert!(ok, "docker build failed:\n{out}\n{err}");
        }
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("docker info failed")
                    .to_string(),
                Err(e) => format!("no docker client ({e})"),
            };
            notice(&format!(
                "NOTE deploy/docker/Dockerfile: no Docker engine here ({why}); the image is not \
                 built, the Dockerfile is checked with hadolint instead"
            ));
            let hadolint = venv_tool("hadolint");
            let (ok, out, err) = run(Command::new(&hadolint).arg("deploy/docker/Dockerfile"));
            assert!(ok, "hadolint found problems:\n{out}\n{err}");
        }
    }

    // The image's health check, run against a real weir serving /healthz.
    let mut cmd = docker_healthcheck(&dockerfile);
    assert_eq!(cmd[0], "bash");
    let config =
        "<source>\n  @type monitor_agent\n  bind 127.0.0.1\n  port {port:admin}\n</source>\n\
         <source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <match **>\n  @type null\n</match>\n";
    let weir = Weir::start("deploy-healthcheck", config);
    let admin = weir.named_port("admin");
    let script = cmd[2].replace("/24220", &format!("/{admin}"));
    assert_ne!(script, cmd[2], "the health check does not use port 24220");
    cmd[2] = script;
    let (ok, out, err) = run(Command::new(&cmd[0]).args(&cmd[1..]));
    assert!(
        ok,
        "the health check failed against a healthy weir:\n{out}\n{err}\n{}",
        weir.stderr_lines().join("\n")
    );
    drop(weir);
    let (ok, _, _) = run(Command::new(&cmd[0]).args(&cmd[1..]));
    assert!(!ok, "the health check passed with weir stopped");
}

#[test]
fn the_release_artifact_holds_what_the_launch_template_installs() {
    let scratch = Scratch::new("deploy-artifact");
    // A stand-in binary keeps this fast; the layout is what is checked.
    let binary = scratch.write("weir", "#!/bin/sh\necho weir\n");
    let (ok, _, err) = run(Command::new("chmod").arg("755").arg(&binary));
    assert!(ok, "{err}");
    let out_dir = scratch.path().join("out");
    let (ok, out, err) = run(Command::new("bash")
        .arg("deploy/build-artifact.sh")
        .arg("--binary")
        .arg(&binary)
        .arg("--out")
        .arg(&out_dir));
    assert!(ok, "deploy/build-artifact.sh failed:\n{out}\n{err}");
    let tarball = out
        .lines()
        .last()
        .expect("the tarball's path")
        .trim()
        .to_string();
    let (ok, listing, err) = run(Command::new("tar").args(["-tzvf", &tarball]));
    assert!(ok, "{err}");
    // Names below the top directory (the launch template extracts with --strip-components=1).
    let entries: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|p| p.split_once('/').map(|(_, rest)| rest.to_string()))
        .filter(|p| !p.is_empty() && !p.ends_with('/'))
        .collect();
    let user_data = user_data_script();
    let wanted: BTreeSet<String> = user_data
        .split("\"$work/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|p| *p != "weir.tar.gz")
        .map(str::to_string)
        .collect();
    assert!(
        wanted.len() >= 7,
        "paths the user data installs: {wanted:?}"
    );
    let missing: Vec<&String> = wanted.difference(&entries).collect();
    assert!(
        missing.is_empty(),
        "the artifact lacks {missing:?}; it has {entries:?}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("/bin/weir")),
        "bin/weir is not executable:\n{listing}"
    );
    // The files in it are the repository's, unchanged.
    let (ok, unit, err) = run(Command::new("tar").args([
        "-xzOf",
        &tarball,
        &format!(
            "{}/share/weir/systemd/weir.service",
            Path::new(&tarball)
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".tar.gz"))
                .expect("name")
        ),
    ]));
    assert!(ok, "{err}");
    assert_eq!(
        unit.trim_end(),
        read("deploy/systemd/weir.service").trim_end()
    );
}

/// A stand-in for the EC2 instance metadata service on 127.0.0.1: IMDSv2 tokens, the instance
/// id, and an Auto Scaling target lifecycle state that turns to "Terminated" after `in_service`
/// answers.
fn fake_imds(in_service: usize) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut asked = 0usize;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/latest/api/token" if request.starts_with("PUT ") => ("200 OK", "token-1"),
                "/latest/meta-data/instance-id" => ("200 OK", "i-0123456789abcdef0"),
                "/latest/meta-data/autoscaling/target-lifecycle-state" => {
                    asked += 1;
                    (
                        "200 OK",
                        if asked > in_service {
                            "Terminated"
                        } else {
                            "InService"
                        },
                    )
                }
                _ => ("404 Not Found", ""),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn the_lifecycle_watcher_flushes_stops_weir_and_completes_the_termination() {
    use weir_e2e::{record, with_chunk, RawClient};
    use weir_proto::{encode_forward, EventTime};

    // A weir whose buffer holds acknowledged events that would otherwise wait an hour.
    let mut weir = Weir::start(
        "deploy-lifecycle",
        "<source>\n  @type forward\n  bind 127.0.0.1\n  port {port}\n</source>\n\
         <match **>\n  @type file\n  path {dir}/out/${tag}\n  append true\n  <format>\n    \
         @type ltsv\n  </format>\n  <buffer tag>\n    @type file\n    path {dir}/buffer/files\n    \
         flush_mode interval\n    flush_interval 1h\n  </buffer>\n</match>\n",
    );
    let mut client = RawClient::connect(&weir);
    let records: Vec<Vec<u8>> = (0..50)
        .map(|n| record(&format!(r#"{{"n":{n}}}"#)))
        .collect();
    let entries: Vec<(EventTime, &[u8])> = records
        .iter()
        .map(|r| (EventTime::new(1_700_000_000, 0), r.as_slice()))
        .collect();
    client.send(&encode_forward("drain.test", &entries, &with_chunk("c1")));
    assert_eq!(client.ack().as_deref(), Some(&b"c1"[..]));
    drop(client);

    // systemctl and aws stand-ins that record their calls and act on this weir process.
    let scratch = Scratch::new("deploy-lifecycle-tools");
    let calls = scratch.path().join("calls.log");
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let systemctl = r#"#!/bin/sh
echo "systemctl $*" >> "$FAKE_CALLS"
case "$1" in
  kill) kill -USR1 "$FAKE_WEIR_PID" ;;
  stop)
    kill -TERM "$FAKE_WEIR_PID"
    while [ -e "/proc/$FAKE_WEIR_PID" ] && [ "$(cut -d ' ' -f 3 "/proc/$FAKE_WEIR_PID/stat")" != Z ]; do
      sleep 0.05
    done ;;
esac
"#;
    std::fs::write(bin.join("systemctl"), systemctl).expect("systemctl");
    std::fs::write(
        bin.join("aws"),
        "#!/bin/sh\necho \"aws $*\" >> \"$FAKE_CALLS\"\n",
    )
    .expect("aws");
    let (ok, _, err) = run(Command::new("chmod")
        .arg("755")
        .arg(bin.join("systemctl"))
        .arg(bin.join("aws")));
    assert!(ok, "{err}");

    let imds = fake_imds(2);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (ok, out, err) = run(Command::new("bash")
        .arg("deploy/aws/weir-lifecycle.sh")
        .env("PATH", path)
        .env("WEIR_ASG_NAME", "weir-aggregators")
        .env("WEIR_LIFECYCLE_HOOK", "weir-drain")
        .env("WEIR_BUFFER_DIR", weir.dir.path().join("buffer"))
        .env("WEIR_DRAIN_SECONDS", "30")
        .env("WEIR_POLL_SECONDS", "0.2")
        .env("WEIR_IMDS_URL", format!("http://127.0.0.1:{imds}"))
        .env("FAKE_CALLS", &calls)
        .env("FAKE_WEIR_PID", weir.pid().to_string()));
    assert!(ok, "weir-lifecycle failed:\n{out}\n{err}");
    let log = format!("{out}\n{err}");
    let empty = log
        .find("the buffers are empty")
        .unwrap_or_else(|| panic!("SIGUSR1 did not empty the buffers before the stop:\n{log}"));
    assert!(empty < log.find("stopping weir").expect("a stop"), "{log}");

    let status = weir.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "weir did not stop cleanly: {status:?}"
    );
    let delivered = std::fs::read_to_string(weir.dir.path().join("out/drain.test.log"))
        .expect("the output file");
    assert_eq!(delivered.lines().count(), 50, "{delivered}");

    let calls = std::fs::read_to_string(&calls).expect("the calls");
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            "systemctl kill -s USR1 weir.service",
            "systemctl stop weir.service",
            "aws autoscaling complete-lifecycle-action --auto-scaling-group-name weir-aggregators \
             --lifecycle-hook-name weir-drain --instance-id i-0123456789abcdef0 \
             --lifecycle-action-result CONTINUE",
        ]
    );
}
