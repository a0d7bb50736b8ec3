//! `status` against a real daemon, real containers and the real store, then with the daemon
//! gone.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, Daemon, ReadyHome};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn status(h: &ReadyHome) -> Value {
    h.home.run(&["status", "--json"]).ok().json()
}

fn alice(v: &Value) -> Value {
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "alice")
        .cloned()
        .unwrap()
}

#[test]
fn status_shows_the_daemon_the_engine_and_each_instance_and_survives_the_daemon() {
    let h = ReadyHome::new();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
    }
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    h.home.run(&["send", "alice", "hello", "--wait"]).ok();
    h.home
        .run(&["task", "add", "alice", "--every", "1h", "--prompt", "later"])
        .ok();

    // Readiness comes from the agent; CPU needs two samples of the daemon's sampler.
    assert!(
        wait_until(LONG, || {
            let a = alice(&status(&h));
            a["health"] == "ready" && a["cpu_percent"].is_number()
        }),
        "{}",
        status(&h)
    );
    let v = status(&h);
    assert_eq!(v["daemon"]["running"], true);
    assert!(v["daemon"]["pid"].is_u64());
    assert_eq!(v["docker"]["reachable"], true);
    assert_eq!(v["docker"]["source"], "daemon");
    assert!(v["docker"]["version"].is_string());
    assert!(v["runtime"].is_string());
    assert!(v["database"]["bytes"].as_u64().unwrap() > 0);
    let a = alice(&v);
    assert_eq!(a["state"], "running");
    assert!(a["uptime_secs"].is_i64());
    assert!(a["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(a["memory_limit_bytes"], 512 * 1024 * 1024);
    assert_eq!(a["queued"], 0);
    assert!(
        a["tokens_today"].as_i64().unwrap() > 0,
        "the echo turn's tokens"
    );
    assert!(a["next_task"].is_string());
    assert!(a["last_activity"].is_string());
    let bob = &v["instances"][1];
    assert_eq!(
        (bob["state"].as_str(), bob["health"].as_str()),
        (Some("stopped"), Some("-"))
    );

    // Piped: a plain table, no colour codes.
    let text = h.home.run(&["status"]).ok().stdout;
    assert!(text.starts_with("daemon    up, pid "), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("alice") && text.contains("ready"), "{text}");

    // With the daemon up, the command asks it and needs no engine of its own.
    let nowhere = h.home.scratch().join("no-docker-here.sock");
    let out = common::bin()
        .arg("--home")
        .arg(&h.home.root)
        .args(["status", "--json"])
        .env("DOCKER_HOST", format!("unix://{}", nowhere.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["docker"]["source"], &v["docker"]["reachable"]),
        (&Value::from("daemon"), &Value::from(true))
    );
    let a = alice(&v);
    assert_eq!(
        (&a["state"], &a["health"]),
        (&Value::from("running"), &Value::from("ready"))
    );

    // The daemon dies; its containers keep running and status says so, from Docker.
    daemon.kill9();
    let v = status(&h);
    assert_eq!(v["daemon"]["running"], false);
    assert_eq!(v["docker"]["source"], "direct");
    assert_eq!(v["docker"]["reachable"], true);
    let a = alice(&v);
    assert_eq!(a["state"], "running");
    assert_eq!(a["health"], "-");
    assert!(a["cpu_percent"].is_null());
    let text = h.home.run(&["status"]).ok().stdout;
    assert!(text.starts_with("daemon    DOWN"), "{text}");
}

#[test]
fn uptime_is_the_containers_figures_are_current_and_reasons_and_errors_show() {
    let h = ReadyHome::new();
    for name in ["alice", "bob"] {
        h.home.run(&["create-instance", name]).ok();
    }
    // bob is to run with a config no daemon has ever seen valid: he is in `error`.
    h.home.run(&["start", "bob"]).ok();
    std::fs::write(h.home.path("instances/bob/config.json"), "{").unwrap();
    // `status` exits 3 all along (bob), so read it without asking for 0.
    let status = |h: &ReadyHome| h.home.run(&["status", "--json"]).json();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    // Sampled twice (a CPU figure), so its start time is Docker's.
    assert!(
        wait_until(LONG, || {
            let a = alice(&status(&h));
            a["cpu_percent"].is_number() && a["uptime_secs"].as_i64().is_some_and(|s| s >= 2)
        }),
        "{}",
        status(&h)
    );
    let before = alice(&status(&h))["uptime_secs"].as_i64().unwrap();
    // A new state detail (an invalid edit, kept out) is not a new start of the container.
    let config = h.home.path("instances/alice/config.json");
    let valid = std::fs::read(&config).unwrap();
    std::fs::write(&config, "{").unwrap();
    assert!(
        wait_until(LONG, || alice(&status(&h))["detail"]
            .as_str()
            .is_some_and(|d| d.contains("last valid"))),
        "{}",
        status(&h)
    );
    let after = alice(&status(&h))["uptime_secs"].as_i64().unwrap();
    assert!(after >= before, "uptime went from {before} to {after}");
    std::fs::write(&config, valid).unwrap();

    // Memory in the config's units while it runs; nothing once it is stopped.
    assert!(wait_until(LONG, || alice(&status(&h))["memory_bytes"].is_u64()));
    let text = h.home.run(&["status"]).stdout;
    assert!(text.contains(" / 512m"), "{text}");
    h.home.run(&["stop", "alice", "--wait"]).ok();
    let a = alice(&status(&h));
    assert_eq!(a["state"], "stopped");
    assert!(
        a["memory_bytes"].is_null() && a["cpu_percent"].is_null(),
        "{a}"
    );
    assert!(a["uptime_secs"].is_null(), "{a}");

    // bob cannot run: `status` says why under the table, and exits 3.
    // Exit 3 with --json too, the report printed all the same.
    assert!(
        wait_until(LONG, || {
            let run = h.home.run(&["status", "--json"]);
            run.code == 3 && run.json()["instances"][1]["state"] == "error"
        }),
        "{}",
        h.home.run(&["status"]).stdout
    );
    let run = h.home.run(&["status"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    let details = run
        .stdout
        .split("\ndetails\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let line = details
        .lines()
        .find(|l| l.contains("bob (error)"))
        .unwrap_or_else(|| panic!("{details}"));
    assert!(line.contains("config.json"), "{line}");

    // With the daemon down, the way to start it for this home.
    daemon.kill9();
    let run = h.home.run(&["status"]);
    let hint = format!(
        "start it with `supervisor --home {} run`",
        h.home.root.display()
    );
    assert!(run.stdout.contains(&hint), "{}", run.stdout);
}

/// Without Docker or a daemon: an instance's channels are listed, in the JSON and the text,
/// and with no daemon nothing receives or sends, so the channel is `not running`.
#[test]
fn an_instance_with_a_webhook_channel_shows_it() {
    let h = common::TestHome::new();
    h.run(&["init"]).ok();
    for name in ["alice", "bob"] {
        h.run(&["create-instance", name]).ok();
    }
    std::fs::write(
        h.path("supervisor.toml"),
        "[docker]\nhost = \"unix:///nonexistent/docker.sock\"\n",
    )
    .unwrap();
    let config = h.path("instances/alice/config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["channels"] = serde_json::json!({"webhook": {"secret_env": "ALICE_WEBHOOK_SECRET"}});
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();

    let v = h.run(&["status", "--json"]).ok().json();
    assert_eq!(
        alice(&v)["channels"],
        serde_json::json!([
            {"channel": "webhook", "state": "not running", "backlog": 0, "detail": null}
        ])
    );
    let bob = &v["instances"][1];
    assert_eq!(bob["channels"], serde_json::json!([]), "{bob}");
    let text = h.run(&["status"]).ok().stdout;
    let section = text
        .split("\nchannels\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        section.starts_with("  alice webhook: not running\n"),
        "{text}"
    );
    assert!(!text.contains("bob webhook"), "{text}");
}
