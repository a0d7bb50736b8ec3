//! Scale: SCALE=N persistent instances (default 100) started at once on this machine: the
//! time until every agent is ready, the daemon's memory, and `status` with all of them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cold_start::wait_ready;
use crate::common::{self, sv};
use crate::stats::{mib, ms, rss_kib, summary};
use crate::status::{running_and_sampled, time_status};
use supervisor::infra::home::Home;

pub fn run() -> Value {
    let n: usize = std::env::var("SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "s", n);
    let home = Home::new(&root).unwrap();
    let daemon = common::start_daemon(&root);
    std::thread::sleep(Duration::from_millis(500));
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let t = Instant::now();
    sv(&root, &["start", "--all"]);
    wait_ready(&home, &names);
    let all_ready = t.elapsed();
    println!(
        "{n} persistent instances: all agents ready {:.1} s after `start --all`",
        all_ready.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(11));
    let rss = rss_kib(daemon.id());
    println!("daemon RSS with {n} running: {:.1} MiB", mib(rss));
    // The daemon samples every container every 5 s; with many, a round takes longer than
    // that, so status is timed once every instance has a sample.
    let t = Instant::now();
    let mut sampled = running_and_sampled(&root);
    while sampled < n && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_secs(1));
        sampled = running_and_sampled(&root);
    }
    println!(
        "{sampled} of {n} running with a resource sample, {:.1} s after that",
        t.elapsed().as_secs_f64()
    );
    let mut status = time_status(&root, 5, n);
    common::tear_down(&root, daemon);
    let s = summary(&format!("status --json with {n} running"), &mut status);
    json!({
        "instances": n,
        "all_ready_ms": ms(all_ready),
        "daemon_rss_mib": mib(rss),
        "status_json": s,
    })
}
