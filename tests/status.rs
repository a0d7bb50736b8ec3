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
