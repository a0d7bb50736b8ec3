//! The swarm engine against this host's engine: start-to-ready (`supervisor start` issued
//! until the daemon has heard the agent announce readiness) and a message's round trip
//! (`send --wait`), for an instance whose task runs on a swarm worker, beside the same for an
//! instance on this host's Docker, in the same run. Builds its own lab (scripts/swarm-lab;
//! root), or uses the one `SVLAB_REUSE=DIR` names. Opt-in: `SECTIONS=swarm`. REPS=N
//! repetitions (default 5); a first, unmeasured start pushes and pulls the image.

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};

use crate::common::{self, sv};
use crate::stats::{ms, summary};
use crate::swarm_lab::Lab;
use supervisor::infra::home::Home;

fn reps() -> usize {
    std::env::var("REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// Starts-to-ready and round trips of instance `b0` of the home at `root`, `reps` each.
fn measure(root: &Path, reps: usize) -> (Vec<f64>, Vec<f64>) {
    let home = Home::new(root).unwrap();
    let name = "b0".to_string();
    // Warm: the image is pushed to the registry and pulled by the node.
    sv(root, &["start", &name, "--wait"]);
    crate::cold_start::wait_ready(&home, std::slice::from_ref(&name));
    let (mut ready, mut trips) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        sv(root, &["stop", &name, "--wait"]);
        let t = Instant::now();
        sv(root, &["start", &name, "--wait"]);
        crate::cold_start::wait_ready(&home, std::slice::from_ref(&name));
        ready.push(ms(t.elapsed()));
    }
    for i in 0..reps {
        let text = format!("ping {i}");
        let t = Instant::now();
        let out = sv(root, &["send", &name, &text, "--wait", "--timeout", "120"]);
        trips.push(ms(t.elapsed()));
        assert_eq!(out.trim(), format!("echo: [local] {text}"));
    }
    common::lost_and_duplicated(root);
    (ready, trips)
}

pub fn run() -> Value {
    let reps = reps();
    let tmp = tempfile::tempdir().unwrap();

    // The local engine first: the lab's own engines do not run yet (or are idle).
    let local = tmp.path().join("local");
    common::prepared_home(&local, "b", 1);
    let daemon = common::start_daemon(&local);
    let (mut local_ready, mut local_trip) = measure(&local, reps);
    common::tear_down(&local, daemon);

    let lab = Lab::new();
    lab.label_workers("pool=agents");
    let root = tmp.path().join("swarm");
    common::prepared_home(&root, "b", 1);
    std::fs::write(root.join("supervisor.toml"), lab.engine_toml(&root)).unwrap();
    let config = root.join("instances/b0/config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["placement"] = json!({"pool": "agents"});
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let daemon = common::start_daemon(&root);
    let (mut swarm_ready, mut swarm_trip) = measure(&root, reps);
    let status: Value = serde_json::from_str(&sv(&root, &["status", "--json"])).unwrap();
    let node = status["instances"][0]["node"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        lab.workers().contains(&node.as_str()),
        "the measured instance ran on {node:?}, not on a worker"
    );
    sv(&root, &["stop", "b0", "--wait"]);
    let home_id = supervisor::infra::store::Store::open(&root.join("supervisor.db"))
        .unwrap()
        .home_id()
        .unwrap();
    lab.forget_home(&home_id);
    common::tear_down(&root, daemon);

    println!("swarm engine vs this host's engine, {reps} repetitions each, same run (instance on {node}):");
    let sr = summary("swarm worker: start → agent ready", &mut swarm_ready);
    let lr = summary("local engine: start → agent ready", &mut local_ready);
    let st = summary("swarm worker: send --wait round trip", &mut swarm_trip);
    let lt = summary("local engine: send --wait round trip", &mut local_trip);
    let ratio = |a: &Value, b: &Value, k: &str| a[k].as_f64().unwrap() / b[k].as_f64().unwrap();
    println!();
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "measure", "worker p50", "worker p99", "local p50", "local p99", "ratio p50", "ratio p99"
    );
    let mut rows = serde_json::Map::new();
    for (label, key, w, l) in [
        ("start → ready (ms)", "start_ready", &sr, &lr),
        ("message round trip (ms)", "round_trip", &st, &lt),
    ] {
        let (r50, r99) = (ratio(w, l, "median_ms"), ratio(w, l, "p99_ms"));
        println!(
            "{label:<24} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {r50:>10.2} {r99:>10.2}",
            w["median_ms"].as_f64().unwrap(),
            w["p99_ms"].as_f64().unwrap(),
            l["median_ms"].as_f64().unwrap(),
            l["p99_ms"].as_f64().unwrap(),
        );
        rows.insert(
            key.to_string(),
            json!({"worker": w, "local": l, "ratio_p50": r50, "ratio_p99": r99}),
        );
    }
    // The lab goes (and this machine's engine is checked to be as found) once the figures
    // are printed.
    drop(lab);
    json!({"reps": reps, "node": node, "figures": rows})
}
