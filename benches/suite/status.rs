//! `status --json` with 20 and 50 running instances against `docker stats --no-stream` for
//! the same containers, in the same run, and the daemon's resident memory with them.
//! REPS=N repetitions (default 10).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, sv};
use crate::stats::{mib, ms, ratio, rss_kib, summary};

const SIZES: &[usize] = &[20, 50];

fn container_names(root: &std::path::Path) -> Vec<String> {
    let v: Value = serde_json::from_str(&sv(root, &["list", "--json"])).unwrap();
    let home_id = supervisor::infra::store::Store::open(&root.join("supervisor.db"))
        .unwrap()
        .home_id()
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            supervisor::infra::container_spec::container_name(&home_id, i["name"].as_str().unwrap())
        })
        .collect()
}

/// How many instances `status --json` shows running with a resource sample.
pub fn running_and_sampled(root: &std::path::Path) -> usize {
    let v: Value = serde_json::from_str(&sv(root, &["status", "--json"])).unwrap();
    v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "running" && i["memory_bytes"].is_u64())
        .count()
}

/// Times `status --json` (checking every instance is running and sampled) and returns it.
pub fn time_status(root: &std::path::Path, reps: usize, expect_running: usize) -> Vec<f64> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            let out = sv(root, &["status", "--json"]);
            let took = ms(t.elapsed());
            let v: Value = serde_json::from_str(&out).unwrap();
            let sampled = v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["state"] == "running" && i["memory_bytes"].is_u64())
                .count();
            assert_eq!(
                sampled, expect_running,
                "every instance running and sampled"
            );
            took
        })
        .collect()
}

pub fn run() -> Value {
    let reps = crate::cold_start::reps();
    let mut out = Vec::new();
    for &n in SIZES {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("home");
        common::prepared_home(&root, "st-", n);
        let daemon = common::start_daemon(&root);
        sv(&root, &["start", "--all", "--wait"]);
        // Two rounds of the daemon's sampler, so CPU figures exist too.
        std::thread::sleep(Duration::from_secs(11));
        let names = container_names(&root);
        let mut status = time_status(&root, reps, n);
        let mut stats = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let o = Command::new("docker")
                .args([
                    "stats",
                    "--no-stream",
                    "--format",
                    "{{.Name}} {{.CPUPerc}} {{.MemUsage}}",
                ])
                .args(&names)
                .output()
                .expect("docker stats");
            stats.push(ms(t.elapsed()));
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let rss = rss_kib(daemon.id());
        println!("{n} running instances, {reps} repetitions each:");
        let s = summary("supervisor status --json", &mut status);
        let d = summary("docker stats --no-stream (same containers)", &mut stats);
        let r = ratio("ratio (status / docker stats)", &s, &d);
        println!("daemon RSS with {n} running: {:.1} MiB", mib(rss));
        out.push(json!({
            "instances": n,
            "status_json": s,
            "docker_stats_no_stream": d,
            "ratio": r,
            "daemon_rss_mib": mib(rss),
        }));
        common::tear_down(&root, daemon);
    }
    json!(out)
}
