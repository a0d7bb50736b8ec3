//! Runtime upgrades on the real engine: `runtime activate` moves running instances onto the
//! new runtime one at a time, each waiting for its agent's readiness; a runtime whose agent
//! never becomes ready, or crashes, is put back after the first instance, and the instances
//! not yet moved are never touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{require_agent_bin, wait_until, Daemon, ReadyHome};

const LONG: Duration = Duration::from_secs(90);

/// A byte-different copy of the real agent (bytes after the ELF's end change nothing when it
/// runs): a second good runtime with its own id.
fn agent_copy(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(require_agent_bin()).unwrap();
    bytes.extend_from_slice(b"\0second build\0");
    let path = dir.join("agent-copy");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A static program that passes as an agent (`version --json` answers with the right
/// protocol) but, when run as one, never announces readiness: it waits (`Hang`) or exits 3
/// at once (`Crash`).
#[derive(Clone, Copy)]
enum Broken {
    Hang,
    Crash,
}

fn broken_agent(dir: &Path, how: Broken) -> PathBuf {
    let behaviour = match how {
        Broken::Hang => "std::thread::sleep(std::time::Duration::from_secs(600));",
        Broken::Crash => "eprintln!(\"broken agent: giving up\"); std::process::exit(3);",
    };
    let name = match how {
        Broken::Hang => "agent-hang",
        Broken::Crash => "agent-crash",
    };
    let source = format!(
        r#"fn main() {{
    if std::env::args().nth(1).as_deref() == Some("version") {{
        println!("{{{{\"agent_version\":\"0.0.0-{name}\",\"protocol\":{protocol}}}}}");
        return;
    }}
    {behaviour}
}}
"#,
        protocol = supervisor_agent::protocol::PROTOCOL_VERSION,
    );
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let status = Command::new("rustc")
        .args([
            "--edition",
            "2021",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("rustc");
    assert!(status.success(), "cannot build the broken agent");
    out
}

/// Builds a runtime from `agent` (not activated) and returns its id.
fn build_runtime(h: &ReadyHome, agent: &Path) -> String {
    let out = h
        .home
        .run(&["runtime", "build", "--agent-bin", agent.to_str().unwrap()])
        .ok();
    out.stdout
        .split_whitespace()
        .nth(1)
        .expect("runtime <id> ...")
        .to_string()
}

fn active_runtime(h: &ReadyHome) -> String {
    let store = supervisor::infra::store::Store::open(&h.home.path("supervisor.db")).unwrap();
    store.active_runtime().unwrap().unwrap().runtime_id
}

fn start(h: &ReadyHome, names: &[&str]) {
    for name in names {
        h.home.run(&["create-instance", name]).ok();
    }
    let mut args = vec!["start", "--wait"];
    args.extend_from_slice(names);
    h.home.run(&args).ok();
}

fn answers(h: &ReadyHome, name: &str) {
    let out = h.home.run(&["send", name, "ping", "--wait"]).ok();
    assert_eq!(out.stdout.trim(), "echo: [local] ping", "{name}");
}

#[test]
fn a_new_runtime_rolls_out_one_instance_at_a_time() {
    let h = ReadyHome::new();
    let old = active_runtime(&h);
    let daemon = Daemon::start(&h.home);
    start(&h, &["ann", "bob", "cat"]);

    // Built and activated in one go: the command follows the roll-out as `activate` does.
    let agent = agent_copy(h.home.scratch());
    let out = h
        .home
        .run(&[
            "runtime",
            "build",
            "--activate",
            "--agent-bin",
            agent.to_str().unwrap(),
        ])
        .ok();
    let new = out.stdout.split_whitespace().nth(1).unwrap().to_string();
    assert_ne!(old, new);
    assert!(
        out.stdout
            .contains("roll-out done: 3 running instance(s) moved"),
        "{}\n{}",
        out.stdout,
        daemon.log_text()
    );

    let rollout = h.home.run(&["runtime", "rollout", "--json"]).ok().json();
    assert_eq!(rollout["state"], "done");
    assert_eq!(rollout["runtime_id"], new.as_str());
    assert_eq!(rollout["previous_id"], old.as_str());
    let steps = rollout["steps"].as_array().unwrap();
    let order: Vec<&str> = steps
        .iter()
        .map(|s| s["instance"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["ann", "bob", "cat"]);
    // One at a time: each step began only after the one before it was ready.
    for pair in steps.windows(2) {
        assert_eq!(pair[0]["state"], "ready");
        let ready_at = pair[0]["finished_at"].as_i64().unwrap();
        assert!(
            pair[1]["started_at"].as_i64().unwrap() >= ready_at,
            "overlapping steps: {pair:?}"
        );
    }
    for name in ["ann", "bob", "cat"] {
        let c = h.container_of(name).unwrap();
        assert_eq!(c.labels["supervisor.runtime"], new, "{name}");
        assert_eq!(h.record(name).runtime_id.as_deref(), Some(new.as_str()));
        answers(&h, name);
    }

    // Rollback is the same gated roll-out, back to the runtime replaced.
    let out = h.home.run(&["runtime", "rollback"]).ok();
    assert!(
        out.stdout
            .contains(&format!("rolling back from runtime {new} to {old}"))
            && out.stdout.contains(&format!(
                "roll-out done: 3 running instance(s) moved to {old}"
            )),
        "{}\n{}",
        out.stdout,
        daemon.log_text()
    );
    let rollout = h.home.run(&["runtime", "rollout", "--json"]).ok().json();
    assert_eq!(rollout["state"], "done");
    assert_eq!(rollout["runtime_id"], old.as_str());
    assert_eq!(rollout["previous_id"], new.as_str());
    assert_eq!(rollout["steps"].as_array().unwrap().len(), 3);
    for name in ["ann", "bob", "cat"] {
        let c = h.container_of(name).unwrap();
        assert_eq!(c.labels["supervisor.runtime"], old, "{name}");
        answers(&h, name);
    }
}

#[test]
fn a_runtime_that_never_gets_ready_or_crashes_is_rolled_back_after_one_instance() {
    let h = ReadyHome::new();
    std::fs::write(
        h.home.path("supervisor.toml"),
        "[daemon]\nrollout_ready_timeout = \"5s\"\nstop_timeout = \"1s\"\n",
    )
    .unwrap();
    let good = active_runtime(&h);
    let hang = build_runtime(&h, &broken_agent(h.home.scratch(), Broken::Hang));
    let crash = build_runtime(&h, &broken_agent(h.home.scratch(), Broken::Crash));
    let daemon = Daemon::start(&h.home);
    start(&h, &["ann", "bob", "cat"]);
    let untouched: Vec<String> = ["bob", "cat"]
        .iter()
        .map(|n| h.container_of(n).unwrap().id)
        .collect();

    for (bad, why) in [
        (&hang, "did not become ready within 5s"),
        (&crash, "exited with code 3"),
    ] {
        let out = h
            .home
            .run(&["runtime", "activate", bad])
            .fails(1, "stopped: ann: ");
        assert!(
            out.stderr.contains(why) && out.stderr.contains(&format!("{good} is active again")),
            "{}\n{}",
            out.stderr,
            daemon.log_text()
        );
        assert!(out.stdout.contains("ann"), "the moving step is shown");
        assert_eq!(active_runtime(&h), good);
        let rollout = h.home.run(&["runtime", "rollout", "--json"]).ok().json();
        assert_eq!(rollout["state"], "failed");
        assert_eq!(rollout["steps"].as_array().unwrap().len(), 1);
        assert_eq!(rollout["steps"][0]["state"], "reverted");

        // ann is put back on the good runtime and answers; bob and cat never moved.
        assert!(
            wait_until(LONG, || h.record("ann").state == "running"
                && h.container_of("ann")
                    .is_some_and(|c| c.labels["supervisor.runtime"] == good)),
            "{}",
            daemon.log_text()
        );
        answers(&h, "ann");
        let ids: Vec<String> = ["bob", "cat"]
            .iter()
            .map(|n| h.container_of(n).unwrap().id)
            .collect();
        assert_eq!(ids, untouched);
    }
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let failed: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'rollout.failed' AND instance = 'ann'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 2);
    for name in ["bob", "cat"] {
        answers(&h, name);
    }
}
