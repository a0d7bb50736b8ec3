//! The daemon's logs through the real binary: formats, levels and redaction. No Docker engine
//! is needed: the home points Docker at a socket that does not exist, so the daemon logs a
//! warning at once and keeps running.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, TestHome};

const KEY: &str = "sk-test-0123456789abcdef";

/// An initialised home at `root` whose Docker endpoint cannot answer.
fn home_without_docker(root: &Path) {
    let out = bin().arg("--home").arg(root).arg("init").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(
        root.join("supervisor.toml"),
        "[docker]\nhost = \"unix:///nonexistent.sock\"\n",
    )
    .unwrap();
}

/// `supervisor --home root run <args>` with `env`, for about 2 s and at least until it has
/// logged the Docker failure; then SIGTERM. Returns its stderr, after checking it exited 0.
fn run_daemon(root: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let log = root
        .parent()
        .unwrap()
        .join(format!("daemon-{}.log", uuid::Uuid::new_v4().simple()));
    let mut cmd: Command = bin();
    cmd.arg("--home").arg(root).arg("run").args(args);
    // Whatever the environment running the tests holds, these decide the format and levels.
    for var in ["RUST_LOG", "SUPERVISOR_LOG_FORMAT", "JOURNAL_STREAM"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20)
        && (started.elapsed() < Duration::from_secs(2) || !read().contains("nonexistent.sock"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let text = read();
    assert!(status.success(), "{status}: {text}");
    text
}

fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n{stderr}"));
            assert!(v["level"].is_string(), "no level: {line}");
            assert!(v["timestamp"].is_string(), "no timestamp: {line}");
            assert!(v["target"].is_string(), "no target: {line}");
            assert!(
                v["fields"]["message"].is_string(),
                "no fields.message: {line}"
            );
            v
        })
        .collect()
}

fn names_docker_failure(v: &serde_json::Value) -> bool {
    v["level"] == "WARN"
        && v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Docker engine unreachable"))
        && v["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("nonexistent.sock"))
}

#[test]
fn json_logs_are_one_object_per_line_and_never_show_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    // The home's path holds the key, so the daemon's first line ("starting", with the home)
    // would print it: redaction, not luck, keeps it out.
    let root: PathBuf = tmp.path().join(format!("home-{KEY}"));
    home_without_docker(&root);
    let stderr = run_daemon(
        &root,
        &["--log-format", "json"],
        &[("OPENAI_API_KEY", KEY), ("RUST_LOG", "supervisor=debug")],
    );
    let lines = json_lines(&stderr);
    assert!(lines.len() >= 3, "{stderr}");
    assert!(lines.iter().any(names_docker_failure), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
    assert!(!stderr.contains("0123456789abcdef"), "{stderr}");
    let starting = lines
        .iter()
        .find(|v| v["fields"]["message"] == "supervisor daemon starting")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        starting["fields"]["home"]
            .as_str()
            .unwrap()
            .ends_with("home-[REDACTED]"),
        "{stderr}"
    );
}

#[test]
fn a_secret_with_quotes_and_backslashes_is_redacted_as_json_prints_it() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = r#"pa"ss\word-2718281828"#;
    let root = tmp.path().join(secret);
    home_without_docker(&root);
    // Named like a secret, so the daemon knows its value from the start.
    let stderr = run_daemon(
        &root,
        &["--log-format", "json"],
        &[("LOGGING_TEST_PASSWORD", secret)],
    );
    let lines = json_lines(&stderr);
    assert!(!stderr.contains("2718281828"), "{stderr}");
    let starting = lines
        .iter()
        .find(|v| v["fields"]["message"] == "supervisor daemon starting")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        starting["fields"]["home"]
            .as_str()
            .unwrap()
            .ends_with("/[REDACTED]"),
        "{stderr}"
    );
}

#[test]
fn text_logs_by_default_with_the_key_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join(format!("home-{KEY}"));
    home_without_docker(&root);
    let stderr = run_daemon(&root, &[], &[("OPENAI_API_KEY", KEY)]);
    assert!(serde_json::from_str::<serde_json::Value>(stderr.lines().next().unwrap()).is_err());
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("Docker engine unreachable")),
        "{stderr}"
    );
    assert!(stderr.contains("home-[REDACTED]"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
}

#[test]
fn log_level_wins_over_rust_log() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    home_without_docker(&root);
    let stderr = run_daemon(
        &root,
        &["--log-format", "json", "--log-level", "warn"],
        &[("RUST_LOG", "debug")],
    );
    let lines = json_lines(&stderr);
    assert!(lines.iter().any(names_docker_failure), "{stderr}");
    assert!(
        lines
            .iter()
            .all(|v| v["level"] == "WARN" || v["level"] == "ERROR"),
        "{stderr}"
    );
}

#[test]
fn rust_log_applies_without_log_level_and_the_format_comes_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    home_without_docker(&root);
    let stderr = run_daemon(
        &root,
        &[],
        &[("RUST_LOG", "warn"), ("SUPERVISOR_LOG_FORMAT", "json")],
    );
    let lines = json_lines(&stderr);
    assert!(lines.iter().any(names_docker_failure), "{stderr}");
    assert!(lines.iter().all(|v| v["level"] == "WARN"), "{stderr}");

    // Per module: one module at info, the rest at warn.
    let stderr = run_daemon(
        &root,
        &[
            "--log-format",
            "json",
            "--log-level",
            "warn,supervisor::app::daemon::run=info",
        ],
        &[],
    );
    let lines = json_lines(&stderr);
    assert!(
        lines
            .iter()
            .any(|v| v["level"] == "INFO" && v["target"] == "supervisor::app::daemon::run"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .all(|v| v["level"] != "INFO" || v["target"] == "supervisor::app::daemon::run"),
        "{stderr}"
    );
}

#[test]
fn a_bad_rust_log_falls_back_to_info_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    home_without_docker(&root);
    let stderr = run_daemon(
        &root,
        &["--log-format", "json"],
        &[("RUST_LOG", "info,supervisor=loud")],
    );
    let lines = json_lines(&stderr);
    assert!(
        lines
            .iter()
            .any(|v| v["level"] == "WARN" && v["fields"]["message"] == "RUST_LOG ignored"),
        "{stderr}"
    );
    assert!(lines.iter().any(|v| v["level"] == "INFO"), "{stderr}");
}

#[test]
fn unknown_formats_and_bad_levels_are_usage_errors() {
    let home = TestHome::new();
    home.run(&["run", "--log-format", "yaml"])
        .fails(2, "invalid value 'yaml' for '--log-format <FORMAT>'");
    home.run(&["run", "--log-level", "info,supervisor=loud"])
        .fails(2, "--log-level");
    home.run(&["run", "--log-level", ""])
        .fails(2, "--log-level");
    let out = bin()
        .arg("--home")
        .arg(&home.root)
        .arg("run")
        .env("SUPERVISOR_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Refused before the daemon did anything: the home was not even created.
    assert!(!home.root.exists());
}
