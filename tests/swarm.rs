//! The swarm engine (`[engine] kind = "swarm"`) on a real three-node swarm built on this
//! machine (tests/common/swarm.rs, scripts/swarm-lab), with real containers: two instances
//! placed on the workers answer; their task containers are as hardened as on one host, seen
//! through the workers' engines and from inside; a drained node's instance comes back on the
//! other worker; a node lost with a turn in flight loses and repeats nothing; and the lab's
//! teardown leaves this machine's engine as it found it. This machine's engine can be in one
//! swarm only, so the scenarios are the steps of one test, on one lab. Runs as root.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{finals, send_wait_in_background, wait_until, Daemon, ReadyHome};
use common::fake_llm::FakeLlm;
use common::swarm::{docker, docker_at, Lab, MANAGER_ADDR};
use serde_json::{json, Value};

/// Liveness deadlines, never performance thresholds.
const LONG: Duration = Duration::from_secs(120);
const BUSYBOX: &str = "/opt/runtime/toolbox/busybox";
const INSTANCES: [&str; 2] = ["alice", "bob"];

struct Swarm<'a> {
    h: &'a ReadyHome,
    lab: &'a Lab,
}

impl Swarm<'_> {
    fn status(&self) -> Value {
        self.h.home.run(&["status", "--json"]).ok().json()
    }

    fn row(&self, instance: &str) -> Value {
        let status = self.status();
        status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == instance)
            .cloned()
            .unwrap_or_else(|| panic!("{instance} is not in status: {status}"))
    }

    /// The worker `instance` runs on, once it runs and is ready on one (other than `not`).
    fn running_on(&self, step: &str, instance: &str, not: Option<&str>) -> String {
        let mut last = Value::Null;
        let ok = wait_until(LONG, || {
            last = self.row(instance);
            last["state"] == "running"
                && last["health"] == "ready"
                && last["node"]
                    .as_str()
                    .is_some_and(|n| self.lab.workers().contains(&n) && Some(n) != not)
        });
        assert!(
            ok,
            "{step}: {instance} does not run ready on a worker (other than {not:?}): {last}"
        );
        last["node"].as_str().unwrap().to_string()
    }

    /// `send INSTANCE TEXT --wait`: the answer.
    fn ask(&self, step: &str, instance: &str, text: &str) -> String {
        let run = self
            .h
            .home
            .run(&["send", instance, text, "--wait", "--timeout", "120"]);
        assert_eq!(
            run.code, 0,
            "{step}: {instance} did not answer {text:?}: {}{}",
            run.stdout, run.stderr
        );
        run.stdout.trim().to_string()
    }

    /// The id of `instance`'s running task container, on the worker `node`.
    fn task_container(&self, step: &str, instance: &str, node: &str) -> String {
        let host = self.lab.host_of(node);
        let mut id = String::new();
        let ok = wait_until(LONG, || {
            id = docker_at(
                &host,
                &[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=supervisor.home={}", self.h.home_id),
                    "--filter",
                    &format!("label=supervisor.instance={instance}"),
                ],
            )
            .unwrap_or_default()
            .trim()
            .to_string();
            !id.is_empty() && !id.contains('\n')
        });
        assert!(
            ok,
            "{step}: no one running container of {instance} on {node}: {id:?}"
        );
        id
    }

    /// Runs `script` with the toolbox's shell in `instance`'s task container, as its agent's
    /// user: (success, output).
    fn sh(&self, step: &str, instance: &str, node: &str, script: &str) -> (bool, String) {
        let id = self.task_container(step, instance, node);
        let out = std::process::Command::new("docker")
            .args([
                "-H",
                &self.lab.host_of(node),
                "exec",
                &id,
                BUSYBOX,
                "sh",
                "-c",
            ])
            .arg(script)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn use_model(h: &ReadyHome, instance: &str, model: &str, fake: &FakeLlm) {
    h.edit_config(instance, |c| {
        c["model"] = json!({"provider": "openai", "name": model, "base_url": fake.base_url,
                            "api_key_env": null});
    });
}

/// Step 1: both instances answer on the workers, and status and nodes say where.
fn placed_on_workers(s: &Swarm) {
    let step = "1 (placed on workers)";
    s.h.home.run(&["start", "--all", "--wait"]).ok();
    for name in INSTANCES {
        s.running_on(step, name, None);
    }
    assert_eq!(s.ask(step, "alice", "hello alice"), "fast answer");
    assert_eq!(s.ask(step, "bob", "hello bob"), "echo: [local] hello bob");
    let nodes = s.h.home.run(&["nodes", "--json"]).ok().json();
    let nodes = nodes["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3, "{step}: three nodes: {nodes:?}");
    for name in INSTANCES {
        let on = s.running_on(step, name, None);
        let holders: Vec<&str> = nodes
            .iter()
            .filter(|n| n["instances"].as_array().unwrap().contains(&json!(name)))
            .map(|n| n["hostname"].as_str().unwrap())
            .collect();
        assert_eq!(
            holders,
            [on.as_str()],
            "{step}: {name} listed by nodes: {nodes:?}"
        );
    }
    println!("step {step}: alice and bob answer on the workers");
}

/// Step 2: the task containers are hardened, seen through the workers' engines and from the
/// inside, and doctor agrees.
fn hardened(s: &Swarm) {
    let step = "2 (hardening)";
    for name in INSTANCES {
        let node = s.running_on(step, name, None);
        let host = s.lab.host_of(&node);
        let id = s.task_container(step, name, &node);
        let raw = docker_at(&host, &["inspect", &id]).unwrap();
        let i = &serde_json::from_str::<Value>(&raw).unwrap()[0];
        let hc = &i["HostConfig"];
        let what = format!("{step}: {name}'s task container on {node}");
        assert_eq!(hc["ReadonlyRootfs"], true, "{what}: read-only root: {hc}");
        assert_eq!(hc["CapDrop"], json!(["ALL"]), "{what}: cap-drop ALL: {hc}");
        assert!(
            hc["CapAdd"].is_null() || hc["CapAdd"] == json!([]),
            "{what}: no cap-add: {hc}"
        );
        assert_eq!(hc["Privileged"], false, "{what}: not privileged");
        assert_eq!(hc["Init"], true, "{what}: init");
        assert!(
            hc["PidsLimit"].as_i64().unwrap_or(0) > 0,
            "{what}: pids limit: {hc}"
        );
        assert!(
            hc["Memory"].as_i64().unwrap_or(0) > 0,
            "{what}: memory limit: {hc}"
        );
        let uid = s.h.record(name).uid;
        assert_ne!(uid, 0, "{what}: a uid of its own");
        assert_eq!(
            i["Config"]["User"].as_str().unwrap_or(""),
            format!("{uid}:{uid}"),
            "{what}: runs as the instance's uid"
        );
        let tmp_tmpfs = hc["Tmpfs"].get("/tmp").is_some()
            || i["Mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(hc["Mounts"].as_array().into_iter().flatten())
                .any(|m| {
                    m["Type"] == "tmpfs" && (m["Destination"] == "/tmp" || m["Target"] == "/tmp")
                });
        assert!(tmp_tmpfs, "{what}: /tmp is a tmpfs: {i}");
        assert_eq!(hc["LogConfig"]["Type"], "json-file", "{what}: log driver");
        assert!(
            hc["LogConfig"]["Config"]["max-size"].is_string(),
            "{what}: log rotation: {hc}"
        );
        let networks: Vec<String> = i["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let own = format!("sv-{}-{name}", &s.h.home_id[..8]);
        assert_eq!(
            networks,
            std::slice::from_ref(&own),
            "{what}: its own network only"
        );
        let net = docker(&["network", "inspect", &own, "-f", "{{.Internal}}"]).unwrap();
        assert_eq!(net.trim(), "true", "{what}: its network is internal");

        // From the inside.
        let (ok, out) = s.sh(step, name, &node, "id -u");
        assert!(ok && out.trim() == uid.to_string(), "{what}: id -u: {out}");
        let (_, route) = s.sh(step, name, &node, "cat /proc/net/route");
        let default = route
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000"));
        assert!(!default, "{what}: no default route: {route}");
        for (target, port) in [(MANAGER_ADDR, "2377"), (MANAGER_ADDR, "5443")] {
            let (ok, out) = s.sh(
                step,
                name,
                &node,
                &format!("nc -w 3 {target} {port} </dev/null"),
            );
            assert!(!ok, "{what}: {target}:{port} is reachable: {out}");
        }
        let (ok, out) = s.sh(step, name, &node, "touch /opt/runtime/x");
        assert!(!ok, "{what}: /opt/runtime is writable: {out}");
        let (ok, out) = s.sh(step, name, &node, "touch /x");
        assert!(!ok, "{what}: / is writable: {out}");
    }
    let doctor = s.h.home.run(&["doctor", "--json"]);
    let report = doctor.json();
    let checks = report["checks"].as_array().unwrap();
    for name in INSTANCES {
        assert!(
            checks.iter().any(|c| c["name"] == "hardening"
                && c["status"] == "ok"
                && c["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&format!("{name} "))),
            "{step}: doctor's hardening row for {name} is not ok: {report}"
        );
    }
    let failed: Vec<&Value> = checks.iter().filter(|c| c["status"] == "fail").collect();
    assert!(failed.is_empty(), "{step}: doctor failures: {failed:?}");
    println!("step {step}: both task containers hardened; doctor agrees");
}

/// Step 3: the node alice runs on is drained: she comes back on the other and answers.
fn drained(s: &Swarm) {
    let step = "3 (drain)";
    let from = s.running_on(step, "alice", None);
    let t = Instant::now();
    s.lab.set_availability(&from, "drain");
    let to = s.running_on(step, "alice", Some(&from));
    let moved = t.elapsed();
    assert_eq!(s.ask(step, "alice", "after the drain"), "fast answer");
    // Her uptime is her new task's, not the drained one's (a service keeps its id).
    let mut row = Value::Null;
    let fresh = wait_until(LONG, || {
        row = s.row("alice");
        row["uptime_secs"]
            .as_i64()
            .is_some_and(|u| u <= t.elapsed().as_secs() as i64)
    });
    assert!(
        fresh,
        "{step}: alice's uptime counts from before the drain: {row}"
    );
    s.lab.set_availability(&from, "active");
    println!("step {step}: alice moved from {from} to {to} in {moved:.1?} and answers");
}

/// Step 4: the worker alice runs on is lost while her turn waits for the model: she comes
/// back on the other worker and the message is answered exactly once.
fn node_lost_mid_turn(s: &Swarm, fake: &FakeLlm) {
    let step = "4 (node lost mid-turn)";
    let from = s.running_on(step, "alice", None);
    let text = "please stall while your node is lost";
    let calls = fake.calls();
    let waiter = send_wait_in_background(s.h, "alice", text);
    assert!(
        wait_until(LONG, || fake.calls() > calls),
        "{step}: the model call never came"
    );
    let t = Instant::now();
    s.lab.kill(Lab::number(&from));
    let to = s.running_on(step, "alice", Some(&from));
    let moved = t.elapsed();
    let out = waiter.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{step}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{step}: send --wait: {v}");
    assert_eq!(v["reply"], "answered after stalling", "{step}: {v}");
    let answers: Vec<Value> = finals(&s.h.home, "alice")
        .into_iter()
        .filter(|m| m["body"] == "answered after stalling")
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "{step}: answered exactly once: {answers:?}"
    );
    exactly_once(step, s.h);
    // The lost node comes back, and bob (wherever he went) still answers.
    s.lab.revive(Lab::number(&from));
    s.running_on(step, "bob", None);
    assert_eq!(
        s.ask(step, "bob", "still there?"),
        "echo: [local] still there?"
    );
    println!(
        "step {step}: alice moved from {from} to {to} in {moved:.1?}; the waiting message \
         was answered once ({} model calls)",
        fake.calls() - calls
    );
}

/// Every inbound message answered, exactly one final answer per turn.
fn exactly_once(step: &str, h: &ReadyHome) {
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let open: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE direction = 'in' AND state != 'answered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0, "{step}: every inbound message is answered");
    let odd: i64 = db
        .query_row(
            "SELECT count(*) FROM (SELECT DISTINCT turn_id FROM messages WHERE direction = 'in') t
             WHERE (SELECT count(*) FROM messages f WHERE f.turn_id = t.turn_id
                    AND f.direction = 'out' AND f.state = 'final') != 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(odd, 0, "{step}: turns without exactly one final answer");
}

/// Step 5: a removed instance leaves nothing of its own on the swarm: no service, no
/// network, no volume on any node.
fn removed(s: &Swarm) {
    let step = "5 (removal)";
    s.h.home.run(&["remove", "bob", "--purge"]).ok();
    let name = format!("sv-{}-bob", &s.h.home_id[..8]);
    let gone = wait_until(LONG, || {
        let services = docker(&["service", "ls", "-q", "--filter", &format!("name={name}")]);
        let networks = docker(&["network", "ls", "-q", "--filter", &format!("name={name}")]);
        let volumes: Vec<String> = s
            .lab
            .workers()
            .iter()
            .map(|w| {
                // By name, not by label: the volumes a task mounted are named after its service.
                docker_at(&s.lab.host_of(w), &["volume", "ls", "-q"])
                    .unwrap_or_else(|e| e)
                    .lines()
                    .filter(|v| v.starts_with(&format!("{name}-")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        services.is_ok_and(|o| o.trim().is_empty())
            && networks.is_ok_and(|o| o.trim().is_empty())
            && volumes.iter().all(|v| v.trim().is_empty())
    });
    assert!(gone, "{step}: bob's service, network or volumes are left");
    // alice's own are untouched.
    s.running_on(step, "alice", None);
}

#[test]
fn instances_on_a_real_swarm_answer_stay_hardened_and_survive_drain_and_node_loss() {
    let started = Instant::now();
    // Dropped last: the lab goes before the home, whose disk images its workers mount.
    let h = ReadyHome::new();
    let mut lab = Lab::new();
    lab.label_workers("pool=agents");
    std::fs::write(
        h.home.path("supervisor.toml"),
        lab.engine_toml(&h.home.root),
    )
    .unwrap();
    let fake = FakeLlm::start();
    h.home.run(&["create-instance", "alice"]).ok();
    h.home
        .run(&["create-instance", "bob", "--model", "echo"])
        .ok();
    use_model(&h, "alice", "stall", &fake);
    for name in INSTANCES {
        h.edit_config(name, |c| c["placement"] = json!({"pool": "agents"}));
    }
    h.home.run(&["config", "check"]).ok();
    let mut daemon = Daemon::start(&h.home);
    let s = Swarm { h: &h, lab: &lab };

    placed_on_workers(&s);
    hardened(&s);
    drained(&s);
    node_lost_mid_turn(&s, &fake);
    removed(&s);

    // Step 6: the daemon stops, the lab goes, and this machine's engine is as found.
    daemon.terminate();
    let log = daemon.log_text();
    lab.forget_home(&h.home_id);
    lab.down()
        .unwrap_or_else(|e| panic!("6 (teardown): {e}\ndaemon log tail: {}", tail(&log)));
    println!("swarm test done in {:.1?}", started.elapsed());
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
