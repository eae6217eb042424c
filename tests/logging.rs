//! weir's own log levels: `<system> log_level` for the process, `@log_level` for one plugin,
//! `--log-level` / `WEIR_LOG` over the config, and a reload applying the new config's levels.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use weir_e2e::*;

const WAIT: Duration = Duration::from_secs(10);

/// Opens a connection to `port` and closes it without sending anything: the source logs the
/// closed connection at debug level, naming itself.
fn touch(port: u16) {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    drop(s);
}

/// Two forward sources, `quiet` on `{port}` and `chatty` on `{port:second}`.
fn config(system_level: &str, chatty_level: &str) -> String {
    format!(
        "<system>\n  log_level {system_level}\n</system>\n\
         <source>\n  @type forward\n  @id quiet\n  bind 127.0.0.1\n  port {{port}}\n</source>\n\
         <source>\n  @type forward\n  @id chatty\n  @log_level {chatty_level}\n  bind 127.0.0.1\n  port {{port:second}}\n</source>\n\
         <match **>\n  @type null\n</match>\n"
    )
}

/// Debug lines about the source `id`.
fn debug_lines_of(weir: &Weir, id: &str) -> Vec<String> {
    weir.stderr_lines()
        .into_iter()
        .filter(|l| l.contains("DEBUG") && l.contains(&format!("source={id}")))
        .collect()
}

#[test]
fn a_plugin_log_level_applies_to_the_lines_about_that_plugin_only() {
    let weir = Weir::start_at_config_log_level("log-plugin", &config("info", "debug"));
    let second = weir.named_port("second");
    touch(weir.port);
    touch(second);
    assert!(
        weir.wait_log("connection closed", WAIT).is_some(),
        "the chatty source's debug line is missing: {:#?}",
        weir.stderr_lines()
    );
    // The quiet source closed its connection first; its debug line would be there by now.
    touch(weir.port);
    touch(second);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        debug_lines_of(&weir, "quiet").is_empty(),
        "{:#?}",
        weir.stderr_lines()
    );
    assert!(!debug_lines_of(&weir, "chatty").is_empty());
    // The process level (info) still applies elsewhere.
    assert!(weir.wait_log("weir started", WAIT).is_some());
}

#[test]
fn system_log_level_sets_the_process_level_unless_the_command_line_does() {
    // <system> log_level warn: weir's info lines are gone.
    let mut weir = Weir::start_at_config_log_level("log-system", &config("warn", "warn"));
    touch(weir.port);
    weir.signal("TERM");
    assert!(weir.wait_exit(WAIT).is_some());
    let lines = weir.stderr_lines();
    assert!(
        !lines.iter().any(|l| l.contains("INFO")),
        "info lines at log_level warn: {lines:#?}"
    );

    // <system> log_level debug: debug lines of every source.
    let weir = Weir::start_at_config_log_level("log-system-debug", &config("debug", "debug"));
    touch(weir.port);
    assert!(
        weir.wait_log("connection closed", WAIT).is_some(),
        "{:#?}",
        weir.stderr_lines()
    );

    // WEIR_LOG (here: info, as every other test runs weir) wins over <system> log_level debug.
    let weir = Weir::start("log-system-env", &config("debug", "info"));
    touch(weir.port);
    assert!(weir.wait_log("weir started", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        debug_lines_of(&weir, "quiet").is_empty(),
        "{:#?}",
        weir.stderr_lines()
    );
}

#[test]
fn a_reload_applies_the_new_levels() {
    let weir = Weir::start_at_config_log_level("log-reload", &config("info", "info"));
    let second = weir.named_port("second");
    touch(second);
    std::thread::sleep(Duration::from_millis(300));
    assert!(debug_lines_of(&weir, "chatty").is_empty());
    let text = weir.fill_ports(&config("info", "debug"));
    weir.dir.write("weir.conf", text);
    weir.signal("HUP");
    assert!(
        weir.wait_log("config reloaded", WAIT).is_some(),
        "{:#?}",
        weir.stderr_lines()
    );
    touch(second);
    assert!(
        weir.wait_log("connection closed", WAIT).is_some(),
        "{:#?}",
        weir.stderr_lines()
    );
}

#[test]
fn an_unknown_level_is_a_config_error_with_its_line() {
    let dir = Scratch::new("log-bad-level");
    let conf = dir.write(
        "weir.conf",
        "<source>\n  @type forward\n  @log_level loud\n</source>\n<match **>\n  @type null\n  @log_level debug\n</match>\n",
    );
    let (ok, _, err) = run_with_timeout(
        Command::new(weir_bin()).arg("check").arg("-c").arg(&conf),
        WAIT,
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("weir.conf:3") && err.contains("@log_level") && err.contains("loud"),
        "{err}"
    );
}
