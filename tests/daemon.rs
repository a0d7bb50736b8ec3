//! The daemon on the real Docker engine: lifecycle commands, hardening, drift, restarts with
//! backoff, crash loops, adoption after SIGKILL, two homes side by side, shutdown policy.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, with_docker, Daemon, ReadyHome};
use supervisor::infra::docker::container;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn without_a_daemon_changes_are_saved_and_the_user_is_told() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let out = h.home.run(&["start", "alice"]).ok();
    assert!(
        out.stderr.contains("no supervisor daemon is running"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("run`"),
        "says what to run: {}",
        out.stderr
    );
    assert_eq!(h.record("alice").desired_state, "running");
    h.home
        .run(&["start", "alice", "--wait"])
        .fails(1, "no daemon is running");
    h.home
        .run(&["start", "nobody"])
        .fails(1, "no instance named \"nobody\"");
    assert!(h.containers().is_empty());
}

#[test]
fn start_stop_restart_and_every_hardening_setting() {
    let h = ReadyHome::new();
    h.home
        .run(&[
            "create-instance",
            "alice",
            "--memory",
            "256m",
            "--cpus",
            "0.5",
            "--pids",
            "100",
        ])
        .ok();
    let daemon = Daemon::start(&h.home);
    let second = h.home.run(&["run"]);
    assert_eq!(second.code, 1);
    assert!(
        second
            .stderr
            .contains("another supervisor daemon is already running"),
        "{}",
        second.stderr
    );

    h.home.run(&["start", "alice", "--wait"]).ok();
    let c = h.container_of("alice").expect("a container");
    assert!(c.running);
    let rec = h.record("alice");
    assert_eq!(
        (rec.state.as_str(), rec.container_id.as_deref()),
        ("running", Some(c.id.as_str()))
    );

    let id = c.id.clone();
    let inspect = with_docker(async move |d| container::inspect_raw(&d, &id).await.unwrap());
    let hc = inspect.host_config.clone().unwrap();
    assert_eq!(hc.readonly_rootfs, Some(true));
    assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(hc.cap_add.unwrap_or_default().is_empty());
    assert_eq!(hc.privileged, Some(false));
    assert!(hc
        .security_opt
        .unwrap()
        .iter()
        .any(|o| o == "no-new-privileges"));
    assert_eq!(hc.init, Some(true));
    assert_eq!(hc.pids_limit, Some(100));
    assert_eq!(hc.memory, Some(256 << 20));
    assert_eq!(hc.memory_swap, Some(256 << 20));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    let tmp = &hc.tmpfs.unwrap()["/tmp"];
    assert!(
        tmp.contains(&format!("size={}", 64 << 20)) && tmp.contains("noexec"),
        "{tmp}"
    );
    let log = hc.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(log.config.unwrap()["max-size"], "10m");
    assert!(hc.binds.unwrap_or_default().is_empty());
    let config = inspect.config.clone().unwrap();
    let uid = nix::unistd::geteuid();
    let user = config.user.unwrap();
    if uid.is_root() {
        // The instance's own uid, the one its files belong to.
        let own = h.record("alice").uid;
        assert_eq!(user, format!("{own}:{own}"));
        assert!(own >= 1 << 24, "{own}");
    } else {
        assert_eq!(user, format!("{}:{}", uid, nix::unistd::getegid()));
    }
    assert_ne!(user.split(':').next(), Some("0"), "never root");
    let labels = config.labels.unwrap();
    assert_eq!(labels["supervisor.home"], h.home_id);
    assert_eq!(labels["supervisor.instance"], "alice");
    assert!(
        labels.contains_key("supervisor.spec-hash") && labels.contains_key("supervisor.runtime")
    );
    // Exactly the runtime (read-only), the workspace and the IPC directory: nothing else.
    let mut mounts: Vec<(String, String, bool)> = inspect
        .mounts
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                m.destination.unwrap(),
                m.source.unwrap_or_default(),
                m.rw.unwrap(),
            )
        })
        .collect();
    mounts.sort();
    let runtime = labels["supervisor.runtime"].clone();
    let inst = h.home.path("instances/alice");
    let path = |p: std::path::PathBuf| p.display().to_string();
    assert_eq!(
        mounts,
        [
            (
                "/ipc/in".to_string(),
                path(inst.join("volume/ipc/in")),
                true
            ),
            (
                "/ipc/out".to_string(),
                path(inst.join("volume/ipc/out")),
                true
            ),
            (
                "/opt/runtime".to_string(),
                path(h.home.path("runtime").join(&runtime)),
                false
            ),
            (
                "/workspace".to_string(),
                path(inst.join("volume/workspace")),
                true
            ),
        ]
    );
    // The agent came up and announced itself through its IPC directory (the daemon reads it).
    assert!(
        wait_until(LONG, || daemon
            .log_text()
            .contains("agent ready instance=alice")),
        "no ready envelope: {}",
        daemon.log_text()
    );

    h.home.run(&["stop", "alice", "--wait"]).ok();
    assert!(!h.container_of("alice").unwrap().running);
    assert_eq!(h.record("alice").state, "stopped");

    h.home.run(&["start", "alice", "--wait"]).ok();
    let rec = h.record("alice");
    assert_eq!(
        (rec.state.as_str(), rec.restart_count),
        ("running", 0),
        "a stop we asked for is no crash"
    );
    let before = started_at(&h, "alice");
    h.home.run(&["restart", "alice", "--wait"]).ok();
    let after = started_at(&h, "alice");
    assert!(
        after > before,
        "restart started the container again ({before} → {after})"
    );
    assert_eq!(
        h.container_of("alice").unwrap().id,
        c.id,
        "restart keeps the container"
    );
    // The agent reports on its stderr; `logs` prints both streams on stdout.
    let logs = h.home.run(&["logs", "alice", "--tail", "5"]).ok();
    assert!(
        logs.stdout.contains("ready (protocol 1)"),
        "{}",
        logs.stdout
    );
    drop(daemon);
}

fn started_at(h: &ReadyHome, instance: &str) -> String {
    let id = h.container_of(instance).unwrap().id;
    with_docker(async move |d| {
        container::state(&d, &id)
            .await
            .unwrap()
            .unwrap()
            .started_at
            .unwrap()
    })
}

#[test]
fn spec_drift_recreates_and_no_drift_changes_nothing() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let first = h.container_of("alice").unwrap();

    // No drift: asking again (a full pass runs before the command returns) changes nothing.
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert_eq!(h.container_of("alice").unwrap().id, first.id);

    h.edit_config("alice", |v| v["limits"]["memory"] = "300m".into());
    h.home.run(&["start", "alice", "--wait"]).ok();
    let second = h.container_of("alice").unwrap();
    assert_ne!(
        second.id, first.id,
        "a changed limit recreates the container"
    );
    assert!(second.running);
    assert_ne!(second.spec_hash, first.spec_hash);
    let id = second.id.clone();
    let hc = with_docker(async move |d| {
        container::inspect_raw(&d, &id)
            .await
            .unwrap()
            .host_config
            .unwrap()
    });
    assert_eq!(hc.memory, Some(300 << 20));

    // A config edit that is not valid keeps the running container on the last valid config
    // and reports the error.
    h.edit_config("alice", |v| v["limits"]["memory"] = "lots".into());
    h.home.run(&["start", "alice"]).ok();
    assert!(wait_until(LONG, || h
        .record("alice")
        .state_detail
        .is_some_and(|d| d.contains("limits.memory"))));
    assert_eq!(h.record("alice").state, "running");
    assert_eq!(h.container_of("alice").unwrap().id, second.id);
    assert!(h.container_of("alice").unwrap().running);
    // Stopping works, and still says what to fix.
    h.home.run(&["stop", "alice", "--wait"]).ok();
    assert!(!h.container_of("alice").unwrap().running);
    assert!(h
        .record("alice")
        .state_detail
        .unwrap()
        .contains("limits.memory"));
}

#[test]
fn a_killed_container_is_restarted_with_backoff() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let id = h.container_of("alice").unwrap().id;
    let kill_id = id.clone();
    with_docker(async move |d| container::kill(&d, &kill_id).await.unwrap());
    assert!(
        wait_until(LONG, || h.record("alice").restart_count >= 1
            && h.container_of("alice").is_some_and(|c| c.running)),
        "not restarted: {:?}",
        h.record("alice")
    );
    let rec = h.record("alice");
    assert_eq!(rec.state, "running");
    assert_eq!(rec.last_exit_code, Some(137));
    let store = supervisor::infra::store::Store::open(&h.home.path("supervisor.db")).unwrap();
    let exited = store
        .recent_events(Some("alice"), 20)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "container.exited")
        .unwrap();
    assert_eq!(exited.detail.unwrap()["exit_code"], 137);
}

#[test]
fn a_container_that_always_fails_ends_in_crash_loop() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    std::fs::remove_file(h.home.workspace("alice").join("SOUL.md")).unwrap();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice"]).ok();
    assert!(
        wait_until(Duration::from_secs(90), || h.record("alice").state
            == "crash-loop"),
        "no crash loop: {:?}",
        h.record("alice")
    );
    let rec = h.record("alice");
    assert_eq!(rec.last_exit_code, Some(1));
    assert!(rec.restart_count >= 5);
    let detail = rec.state_detail.unwrap();
    assert!(
        detail.contains("SOUL.md is missing"),
        "last log lines shown: {detail}"
    );
    let show = h.home.run(&["show", "alice"]).ok().stdout;
    assert!(show.contains("crash-loop"), "{show}");
    assert!(h.home.run(&["list"]).ok().stdout.contains("crash-loop"));

    // Fixed and restarted by the operator: it runs again.
    std::fs::write(h.home.workspace("alice").join("SOUL.md"), "# Soul\nBack.\n").unwrap();
    h.home.run(&["restart", "alice", "--wait"]).ok();
    assert!(wait_until(LONG, || h.record("alice").state == "running"));
}

#[test]
fn after_sigkill_the_next_daemon_adopts_running_containers() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    h.home.run(&["create-instance", "bob"]).ok();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "--all", "--wait"]).ok();
    let before: Vec<_> = h
        .containers()
        .into_iter()
        .map(|c| (c.instance, c.id))
        .collect();
    assert_eq!(before.len(), 2);
    daemon.kill9();

    let _again = Daemon::start(&h.home);
    h.home.run(&["start", "--all", "--wait"]).ok();
    let mut after: Vec<_> = h
        .containers()
        .into_iter()
        .map(|c| (c.instance, c.id))
        .collect();
    let mut before = before;
    before.sort();
    after.sort();
    assert_eq!(after, before, "adopted, not recreated or duplicated");
    assert!(h.containers().iter().all(|c| c.running));
    let store = supervisor::infra::store::Store::open(&h.home.path("supervisor.db")).unwrap();
    assert!(!store
        .recent_events(None, 50)
        .unwrap()
        .iter()
        .any(|e| e.kind == "container.recreated"));
}

#[test]
fn two_homes_on_one_engine_never_touch_each_other() {
    let a = ReadyHome::new();
    let b = ReadyHome::new();
    for h in [&a, &b] {
        h.home.run(&["create-instance", "alice"]).ok();
    }
    let _da = Daemon::start(&a.home);
    let _db = Daemon::start(&b.home);
    a.home.run(&["start", "alice", "--wait"]).ok();
    b.home.run(&["start", "alice", "--wait"]).ok();
    let b_id = b.container_of("alice").unwrap().id;
    assert_ne!(a.container_of("alice").unwrap().id, b_id);

    a.home.run(&["stop", "alice", "--wait"]).ok();
    assert!(
        b.container_of("alice").unwrap().running,
        "B's alice kept running"
    );
    a.home.run(&["remove", "alice"]).ok();
    assert!(
        wait_until(LONG, || a.container_of("alice").is_none()),
        "A's container removed"
    );
    let b_now = b.container_of("alice").unwrap();
    assert_eq!(b_now.id, b_id);
    assert!(b_now.running);
    assert!(a
        .containers()
        .iter()
        .all(|c| c.labels["supervisor.home"] == a.home_id));
}

#[test]
fn shutdown_leaves_containers_by_default_and_stops_them_when_configured() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert!(daemon.terminate().success());
    assert!(
        h.container_of("alice").unwrap().running,
        "policy leave: still running"
    );
    assert!(!h.home.path("run/daemon.pid").exists());

    std::fs::write(
        h.home.path("supervisor.toml"),
        "[daemon]\non_shutdown = \"stop\"\n",
    )
    .unwrap();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert!(daemon.terminate().success());
    assert!(
        !h.container_of("alice").unwrap().running,
        "policy stop: stopped"
    );
    assert!(
        daemon.log_text().contains("shutting down"),
        "{}",
        daemon.log_text()
    );
    let rec = h.record("alice");
    assert_eq!(
        (rec.state.as_str(), rec.desired_state.as_str()),
        ("stopped", "running")
    );
    assert!(
        !h.home.path("run/supervisor.sock").exists(),
        "socket removed on exit"
    );

    // The next daemon starts it again at once: a stop at shutdown is not a crash.
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let rec = h.record("alice");
    assert_eq!((rec.state.as_str(), rec.restart_count), ("running", 0));
}

#[test]
fn the_daemon_survives_losing_the_engine_and_reconverges() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let mut proxy = common::proxy::DockerProxy::start(&h.home.scratch().join("docker.sock"));
    std::fs::write(
        h.home.path("supervisor.toml"),
        format!("[docker]\nhost = \"{}\"\n", proxy.uri()),
    )
    .unwrap();
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();

    proxy.cut();
    let out = h.home.run(&["stop", "alice"]).ok();
    assert!(
        out.stderr.contains("cannot reach the Docker engine"),
        "{}",
        out.stderr
    );
    assert!(
        h.container_of("alice").unwrap().running,
        "nothing could be applied"
    );
    assert!(
        daemon.log_text().contains("Docker engine"),
        "{}",
        daemon.log_text()
    );

    proxy.resume();
    assert!(
        wait_until(LONG, || !h.container_of("alice").unwrap().running),
        "did not reconverge: {}",
        daemon.log_text()
    );
    assert!(wait_until(LONG, || h.record("alice").state == "stopped"));
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert!(h.container_of("alice").unwrap().running);
}

#[test]
fn on_demand_instances_stop_when_idle() {
    let h = ReadyHome::new();
    h.home
        .run(&["create-instance", "bob", "--lifecycle", "on-demand"])
        .ok();
    h.edit_config("bob", |v| v["lifecycle"]["idle_timeout"] = "10s".into());
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "bob", "--wait"]).ok();
    assert!(h.container_of("bob").unwrap().running);
    assert!(
        wait_until(LONG, || h.record("bob").state == "idle"),
        "still {:?}",
        h.record("bob")
    );
    assert!(!h.container_of("bob").unwrap().running);
    assert_eq!(
        h.record("bob").desired_state,
        "running",
        "idle is not stopped: work starts it"
    );
}

#[test]
fn the_running_cap_queues_the_rest_fairly() {
    let h = ReadyHome::new();
    std::fs::write(
        h.home.path("supervisor.toml"),
        "[daemon]\nmax_running = 1\n",
    )
    .unwrap();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
    }
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    h.home.run(&["start", "bob"]).ok();
    let bob = h.record("bob");
    assert_eq!(bob.state, "queued");
    assert!(bob.state_detail.unwrap().contains("max_running = 1"));
    assert!(h.container_of("bob").is_none());

    h.home.run(&["stop", "alice", "--wait"]).ok();
    assert!(wait_until(LONG, || h
        .container_of("bob")
        .is_some_and(|c| c.running)));
    assert_eq!(h.record("bob").state, "running");
}

#[test]
fn a_missing_image_is_reported_and_running_containers_are_left_alone() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let id = h.container_of("alice").unwrap().id;
    daemon.terminate();

    // A new image name changes the spec, and no such image exists.
    std::fs::write(
        h.home.path("supervisor.toml"),
        "[docker]\nimage = \"supervisor-agent-never-built\"\n",
    )
    .unwrap();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice"]).ok();
    let rec = h.record("alice");
    assert_eq!(rec.state, "error");
    assert!(rec
        .state_detail
        .unwrap()
        .contains("run `supervisor image build`"));
    let c = h.container_of("alice").unwrap();
    assert_eq!(
        c.id, id,
        "the old container is not removed for a new one that cannot be made"
    );
    assert!(c.running);
}
