//! Disk limits that are soft (`[disk] enforce = "soft"`, as on a host where the supervisor is
//! not root): the daemon measures each instance's volume and stops one that is past its
//! `limits.disk` until it is back under it. Hard limits (a disk image each) are tried from
//! inside a container in tests/boundary.rs.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, Daemon, ReadyHome};

const LONG: Duration = Duration::from_secs(60);

/// A home whose disk limits are soft, with alice limited to 64m.
fn soft_home() -> ReadyHome {
    let h = ReadyHome::new();
    let path = h.home.path("supervisor.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(toml.contains("# enforce = \"auto\""), "{toml}");
    std::fs::write(
        &path,
        toml.replace("# enforce = \"auto\"", "enforce = \"soft\""),
    )
    .unwrap();
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |c| c["limits"]["disk"] = serde_json::json!("64m"));
    h
}

#[test]
fn a_soft_limit_stops_an_instance_past_it_and_lets_it_run_again_under_it() {
    let h = soft_home();
    assert!(
        !h.home.path("instances/alice/volume.img").exists(),
        "a soft limit makes no image"
    );
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let status = h.home.run(&["status", "--json"]).ok().json();
    assert_eq!(status["isolation"]["disk_limits"], "soft", "{status}");
    assert!(
        status["isolation"]["disk_why_not_hard"]
            .as_str()
            .unwrap()
            .contains("enforce = \"soft\""),
        "{status}"
    );

    // 80 MiB in a 64m workspace: nothing stops the write, the daemon's next measure stops
    // the instance (a daemon measures when it starts, then every minute).
    let big = h.home.workspace("alice").join("big");
    std::fs::write(&big, vec![1u8; 80 << 20]).unwrap();
    daemon.terminate();
    let mut daemon = Daemon::start(&h.home);
    assert!(
        wait_until(LONG, || {
            let r = h.record("alice");
            r.state == "error"
                && r.state_detail
                    .as_deref()
                    .is_some_and(|d| d.contains("over its soft disk limit 64m"))
        }),
        "alice was not stopped: {:?}\n{}",
        h.record("alice"),
        daemon.log_text()
    );
    assert!(
        wait_until(LONG, || !h.container_of("alice").is_some_and(|c| c.running)),
        "alice's container still runs"
    );
    // alice is in `error`: status exits 3, the report printed all the same.
    let run = h.home.run(&["status", "--json"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let shown = run.json();
    let alice = &shown["instances"][0];
    assert!(alice["disk_bytes"].as_u64().unwrap() > 80 << 20, "{alice}");
    assert_eq!(alice["disk_limit_bytes"], 64 << 20);

    // Back under it: the next measure lets it run again.
    std::fs::remove_file(&big).unwrap();
    daemon.terminate();
    let _daemon = Daemon::start(&h.home);
    assert!(
        wait_until(LONG, || h.record("alice").state == "running"),
        "alice did not run again: {:?}",
        h.record("alice")
    );
    let answer = h
        .home
        .run(&["send", "alice", "room again", "--wait", "--timeout", "60"])
        .ok();
    assert_eq!(answer.stdout.trim(), "echo: [local] room again");
}
