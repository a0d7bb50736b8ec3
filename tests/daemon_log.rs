//! The daemon's log at its default level, as an operator reads it: every change of an
//! instance's state on one line with the reason, no Rust debug forms, no line split in two,
//! and nothing alarming about an ordinary `remove`.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, Daemon, ReadyHome};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn state_changes_are_logged_once_with_the_reason_in_plain_words() {
    let h = ReadyHome::new();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
    }
    // alice cannot start: her agent exits at once without a persona.
    std::fs::remove_file(h.home.workspace("alice").join("SOUL.md")).unwrap();
    let daemon = Daemon::start_with_env(&h.home, &[("RUST_LOG", "info")]);
    h.home.run(&["start", "bob", "--wait"]).ok();
    h.home.run(&["start", "alice"]).ok();
    assert!(
        wait_until(LONG, || h.record("alice").state == "crash-loop"),
        "{:?}",
        h.record("alice")
    );

    // A broken host config while it runs, and a removal.
    std::fs::write(
        h.home.path("supervisor.toml"),
        "[daemon]\nmax_running = \"many\"\n",
    )
    .unwrap();
    assert!(
        wait_until(LONG, || daemon
            .log_text()
            .contains("supervisor.toml is invalid")),
        "{}",
        daemon.log_text()
    );
    std::fs::write(h.home.path("supervisor.toml"), "").unwrap();
    h.home.run(&["remove", "bob"]).ok();
    // The pass after the removal has run once its container is gone.
    assert!(
        wait_until(LONG, || h.container_of("bob").is_none()),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));

    let log = daemon.log_text();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("instance state changed"))
        .collect();
    let into = |name: &str, state: &str| {
        changes
            .iter()
            .filter(|l| {
                l.contains(&format!("instance={name}")) && l.contains(&format!("to={state}"))
            })
            .count()
    };
    assert_eq!(into("bob", "running"), 1, "{log}");
    assert_eq!(into("alice", "crash-loop"), 1, "{log}");
    let crash = changes
        .iter()
        .find(|l| l.contains("to=crash-loop"))
        .unwrap();
    assert!(crash.contains("WARN"), "{crash}");
    assert!(crash.contains("SOUL.md is missing"), "the reason: {crash}");
    assert!(crash.contains("from=running"), "{crash}");

    // Every line is one event: it starts with its timestamp.
    for line in log.lines() {
        assert!(line.starts_with("20"), "a line split off: {line:?}\n{log}");
    }
    let invalid = log
        .lines()
        .find(|l| l.contains("supervisor.toml is invalid"))
        .unwrap();
    assert!(invalid.contains("daemon.max_running"), "{invalid}");
    for debug_form in ["Some(", "Create {", "Start {", "Stop {", "instance: \""] {
        assert!(!log.contains(debug_form), "{debug_form} in\n{log}");
    }
    for noise in [
        "unable to remove watch descriptor",
        "messaging step failed",
        "messaging cannot open the IPC queues",
    ] {
        assert!(!log.contains(noise), "{noise:?} in\n{log}");
    }

    // The move into crash-loop is in the audit log too, with its reason.
    let show = h.home.run(&["show", "alice", "--json"]).ok().json();
    let events = show["recent_events"]
        .as_array()
        .unwrap_or_else(|| panic!("{show}"));
    let event = events
        .iter()
        .find(|e| e["kind"] == "instance.crash-loop")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(event["detail"]["from"], "running");
    assert!(event["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("SOUL.md is missing"));
}
