//! The benchmark suite: every figure the README's Performance section gives, each beside its
//! floor or its alternative measured in the same run, printed as a table and written as JSON.
//!
//! Run everything with `scripts/bench/run`; `SECTIONS=cold_start,messages` picks sections
//! (cold_start, messages, throughput, status, footprint, scale, groups, ipc_floor; and swarm,
//! which only runs when asked for: it builds a swarm lab, as root) and `OUT=path` moves the
//! JSON (default target/bench/results.json). Benchmarks are not tests: they assert
//! nothing about speed, but they fail when a message is lost or answered twice.

#[path = "../common/mod.rs"]
mod common;

// The same fake of the Bot API the integration tests use (its unused parts are allowed in the
// file itself).
#[path = "../../tests/common/telegram.rs"]
mod fake_telegram;

// The swarm lab the swarm tests build (scripts/swarm-lab).
#[path = "../../tests/common/swarm.rs"]
mod swarm_lab;

mod cold_start;
mod footprint;
mod groups;
mod hops;
mod ipc_floor;
mod messages;
mod receiver;
mod scale;
mod stats;
mod status;
mod swarm;
mod throughput;

use std::path::PathBuf;

use serde_json::{json, Value};

const SECTIONS: &[&str] = &[
    "ipc_floor",
    "cold_start",
    "messages",
    "throughput",
    "status",
    "footprint",
    "scale",
    "groups",
];

/// Sections run only when `SECTIONS` names them.
const OPT_IN: &[&str] = &["swarm"];

fn main() {
    let wanted: Vec<String> = match std::env::var("SECTIONS") {
        Ok(s) if !s.trim().is_empty() => s.split(',').map(|x| x.trim().to_string()).collect(),
        _ => SECTIONS.iter().map(|s| s.to_string()).collect(),
    };
    for w in &wanted {
        assert!(
            SECTIONS.contains(&w.as_str()) || OPT_IN.contains(&w.as_str()),
            "unknown section {w:?}; known: {SECTIONS:?}, and when asked for, {OPT_IN:?}"
        );
    }
    let mut results = serde_json::Map::new();
    for section in SECTIONS
        .iter()
        .chain(OPT_IN)
        .filter(|s| wanted.iter().any(|w| w == *s))
    {
        println!("\n== {section}");
        let run = || -> Value {
            match *section {
                "ipc_floor" => ipc_floor::run(),
                "cold_start" => cold_start::run(),
                "messages" => messages::run(),
                "throughput" => throughput::run(),
                "status" => status::run(),
                "footprint" => footprint::run(),
                "scale" => scale::run(),
                "groups" => groups::run(),
                "swarm" => swarm::run(),
                _ => unreachable!(),
            }
        };
        // A failed section (a lost message, a deadline) must not leave its daemon and
        // containers running: clean up, then fail as it did.
        let value = match std::panic::catch_unwind(run) {
            Ok(value) => value,
            Err(panic) => {
                common::clean_up_after_panic();
                std::panic::resume_unwind(panic)
            }
        };
        results.insert(section.to_string(), value);
    }
    let out = std::env::var_os("OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/results.json")
        });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let doc = json!({
        "machine": stats::machine(),
        "supervisor_version": env!("CARGO_PKG_VERSION"),
        "results": results,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    println!("\nresults written to {}", out.display());
}
