//! What only the running daemon knows, kept in memory for `status` and the API: when it
//! started, whether the Docker engine answers, which agents announced readiness, and recent
//! resource samples of every running container. Sampling in the background means a status
//! call never waits for the engine's stats.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};

pub use crate::app::wire::{ActorHealth, LiveSnapshot, ResourceSample};
use crate::infra::docker::stats::{self, RawStats};
use crate::infra::docker::{container, Engine};
use crate::infra::store::now_ms;

/// How often running containers are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Shared between the daemon's tasks; cheap to clone.
#[derive(Clone)]
pub struct Live {
    state: Arc<RwLock<LiveSnapshot>>,
    /// Signalled when an agent announces readiness (a roll-out waits on it).
    ready_signal: Arc<Notify>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            state: Arc::new(RwLock::new(LiveSnapshot {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").into(),
                started_at: now_ms(),
                ..Default::default()
            })),
            ready_signal: Arc::new(Notify::new()),
        }
    }
}

impl Live {
    pub fn snapshot(&self) -> LiveSnapshot {
        self.state.read().expect("live status").clone()
    }

    pub fn set_docker(&self, reachable: bool, version: Option<String>) {
        let mut s = self.state.write().expect("live status");
        s.docker_reachable = reachable;
        if version.is_some() || !reachable {
            s.docker_version = version;
        }
    }

    /// Called just before a container is started: its agent is not ready until it says so.
    pub fn container_starting(&self, instance: &str) {
        let mut s = self.state.write().expect("live status");
        s.started.insert(instance.to_string(), now_ms());
    }

    /// Records (Some) or clears (None) why an instance's files are left alone; returns
    /// whether that changed.
    pub fn set_boundary_problem(&self, instance: &str, problem: Option<String>) -> bool {
        let mut s = self.state.write().expect("live status");
        match problem {
            Some(p) => s.boundary.insert(instance.to_string(), p.clone()).as_ref() != Some(&p),
            None => s.boundary.remove(instance).is_some(),
        }
    }

    pub fn set_isolation(&self, isolation: crate::app::status::Isolation) {
        self.state.write().expect("live status").isolation = Some(isolation);
    }

    pub fn set_disk(&self, disk: HashMap<String, super::disk_usage::DiskSample>) {
        self.state.write().expect("live status").disk = disk;
    }

    /// An instance's messaging actor died and is started again (`restarts` so far).
    pub fn actor_failed(&self, instance: &str, restarts: u32, reason: &str) {
        let health = ActorHealth {
            restarts,
            last_failure: reason.to_string(),
            last_failure_at: now_ms(),
        };
        let mut s = self.state.write().expect("live status");
        s.actors.insert(instance.to_string(), health);
    }

    /// An instance's messaging actor was stopped (the instance is gone): nothing to show.
    pub fn actor_stopped(&self, instance: &str) {
        self.state
            .write()
            .expect("live status")
            .actors
            .remove(instance);
    }

    /// Replaces every instance's node with what `containers` (a listing of this home's
    /// containers or services) says: each instance's newest one's node.
    pub fn set_nodes_from(&self, containers: &[container::OwnedContainer]) {
        let nodes = nodes_of(containers);
        self.state.write().expect("live status").nodes = nodes;
    }

    pub fn set_converged(&self, converged: bool) {
        self.state.write().expect("live status").converged = converged;
    }

    pub fn agent_ready(&self, instance: &str) {
        let mut s = self.state.write().expect("live status");
        s.ready.insert(instance.to_string(), now_ms());
        self.ready_signal.notify_one();
    }

    /// Resolves when an agent announces readiness (at once if one did since the last call).
    pub async fn agent_ready_signal(&self) {
        self.ready_signal.notified().await
    }

    /// Replaces the samples with readings of the containers running now, and their start
    /// times; a container that is gone loses both.
    fn record(&self, readings: Vec<(String, RawStats)>, running_since: HashMap<String, i64>) {
        let now = now_ms();
        let mut s = self.state.write().expect("live status");
        s.running_since = running_since;
        let mut next = HashMap::new();
        for (instance, raw) in readings {
            let cpu = s
                .samples
                .get(&instance)
                .and_then(|prev| prev.raw.as_ref())
                .and_then(|prev| stats::cpu_percent(prev, &raw));
            next.insert(
                instance,
                ResourceSample {
                    cpu_percent: cpu,
                    memory_bytes: raw.mem_used,
                    memory_limit_bytes: raw.mem_limit,
                    sampled_at: now,
                    raw: Some(raw),
                },
            );
        }
        s.samples = next;
    }
}

/// Instance → the node its newest container (service task) runs on, for those that have one.
pub fn nodes_of(containers: &[container::OwnedContainer]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for c in containers {
        if out.contains_key(&c.instance) {
            continue;
        }
        if let Some(node) = container::newest(containers, &c.instance).and_then(|n| n.node.clone())
        {
            out.insert(c.instance.clone(), node);
        }
    }
    out
}

/// Samples every running container of this home every [`SAMPLE_EVERY`] while the daemon
/// has an engine connection (`docker` holds the current client, None while it is away).
pub async fn sample_forever(
    live: Live,
    home_id: String,
    mut docker: watch::Receiver<Option<std::sync::Arc<dyn Engine>>>,
) {
    // Container id and node → when it started: a start time does not change, so each
    // container is inspected once. On a swarm the id is its service's, which a move to
    // another node (a drain) keeps: the node tells the new task from the old.
    let mut started: HashMap<(String, Option<String>), i64> = HashMap::new();
    loop {
        let engine = docker.borrow().clone();
        if let Some(engine) = engine {
            if let Ok(owned) = engine.list(&home_id).await {
                let running: Vec<_> = owned.into_iter().filter(|c| c.running).collect();
                let reads = running.iter().map(|c| engine.stats(&c.id));
                let results = futures_util::future::join_all(reads).await;
                let readings = running
                    .iter()
                    .zip(results)
                    .filter_map(|(c, r)| r.ok().map(|raw| (c.instance.clone(), raw)))
                    .collect();
                let key = |c: &container::OwnedContainer| (c.id.clone(), c.node.clone());
                started.retain(|k, _| running.iter().any(|c| &key(c) == k));
                let mut since = HashMap::new();
                for c in &running {
                    if let std::collections::hash_map::Entry::Vacant(slot) = started.entry(key(c)) {
                        if let Some(t) =
                            crate::infra::docker::engine::started_at(engine.as_ref(), &c.id).await
                        {
                            slot.insert(t);
                        }
                    }
                    if let Some(t) = started.get(&key(c)) {
                        since.insert(c.instance.clone(), *t);
                    }
                }
                live.record(readings, since);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            changed = docker.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(
        id: &str,
        instance: &str,
        created: i64,
        node: Option<&str>,
    ) -> container::OwnedContainer {
        container::OwnedContainer {
            id: id.into(),
            name: format!("sv-{instance}"),
            instance: instance.into(),
            spec_hash: String::new(),
            running: node.is_some(),
            created,
            labels: HashMap::new(),
            node: node.map(str::to_string),
        }
    }

    #[test]
    fn each_instance_is_on_its_newest_tasks_node() {
        let live = Live::default();
        live.set_nodes_from(&[
            owned("a1", "alice", 1, Some("old-node")),
            owned("a2", "alice", 2, Some("worker-1")),
            owned("b1", "bob", 1, None),
            owned("c2", "carol", 2, None),
            owned("c1", "carol", 1, Some("worker-2")),
        ]);
        let nodes = live.snapshot().nodes;
        assert_eq!(
            nodes,
            HashMap::from([("alice".to_string(), "worker-1".to_string())]),
            "bob has no task; carol's newest has none"
        );
        // The local engine: nothing, and what was there is gone.
        live.set_nodes_from(&[owned("a3", "alice", 3, None)]);
        assert!(live.snapshot().nodes.is_empty());
        let json = serde_json::to_value(live.snapshot()).unwrap();
        assert!(json.get("nodes").is_none(), "left out when empty: {json}");
    }
}
