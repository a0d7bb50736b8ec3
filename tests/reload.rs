//! Hot reload: config edits reach the running daemon by themselves, valid ones are applied
//! and invalid ones are reported while the last valid config is kept.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, with_docker, Daemon, ReadyHome};
use supervisor::infra::docker::container;

const LONG: Duration = Duration::from_secs(60);

fn events(h: &ReadyHome, kind: &str) -> Vec<(Option<String>, String)> {
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT instance, coalesce(detail, '') FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([kind], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn config_edits_are_applied_or_reported_without_a_restart() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let first = h.container_of("alice").unwrap().id;

    // A valid edit of the spec, and nothing else: the daemon notices and recreates.
    h.edit_config("alice", |v| v["limits"]["memory"] = "300m".into());
    assert!(
        wait_until(LONG, || h
            .container_of("alice")
            .is_some_and(|c| c.id != first && c.running)),
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("config file changed"),
        "woken by the file event"
    );
    let id = h.container_of("alice").unwrap().id;
    let inspect_id = id.clone();
    let hc = with_docker(async move |d| {
        container::inspect_raw(&d, &inspect_id)
            .await
            .unwrap()
            .host_config
            .unwrap()
    });
    assert_eq!(hc.memory, Some(300 << 20));

    // An invalid edit: reported once, the last valid config kept, messages still answered.
    std::fs::write(
        h.home.path("instances/alice/config.json"),
        r#"{"version": 1, "limits": 3}"#,
    )
    .unwrap();
    assert!(wait_until(LONG, || h
        .record("alice")
        .state_detail
        .is_some_and(|d| d.contains("running on the last valid one"))));
    let rec = h.record("alice");
    assert_eq!(rec.state, "running");
    assert_eq!(
        h.container_of("alice").unwrap().id,
        id,
        "container untouched"
    );
    let out = h
        .home
        .run(&["send", "alice", "still there?", "--wait"])
        .ok();
    assert_eq!(out.stdout.trim(), "echo: [local] still there?");
    h.home.run(&["start", "alice", "--wait"]).ok();
    let invalid = events(&h, "config.invalid");
    assert_eq!(invalid.len(), 1, "reported once: {invalid:?}");
    assert_eq!(invalid[0].0.as_deref(), Some("alice"));
    assert!(invalid[0].1.contains("limits"), "{invalid:?}");

    // Fixed: the note goes away.
    h.edit_config("alice", |v| {
        *v = serde_json::json!({"version": 1, "limits": {"memory": "300m", "cpus": 1.0, "pids": 256, "tmp": "64m"}});
    });
    assert!(wait_until(LONG, || h
        .record("alice")
        .state_detail
        .is_none()));
    assert_eq!(
        h.container_of("alice").unwrap().id,
        id,
        "same spec as before"
    );

    // The host config: a bad edit is reported and the daemon carries on; a good one applies.
    let toml = h.home.path("supervisor.toml");
    let original = std::fs::read_to_string(&toml).unwrap_or_default();
    assert!(original.contains("\n[daemon]\n"), "{original}");
    let with = |line: &str| original.replace("\n[daemon]\n", &format!("\n[daemon]\n{line}\n"));
    std::fs::write(&toml, with("max_running = \"many\"")).unwrap();
    assert!(wait_until(LONG, || events(&h, "config.invalid")
        .iter()
        .any(|(instance, _)| instance.is_none())));
    let v = h.home.run(&["status", "--json"]).ok().json();
    assert_eq!(v["daemon"]["running"], true);
    std::fs::write(&toml, with("max_running = 7")).unwrap();
    assert!(wait_until(LONG, || !events(&h, "config.reloaded").is_empty()));
    assert!(h.container_of("alice").unwrap().running);
}
