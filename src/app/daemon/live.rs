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
use crate::infra::docker::{container, Client};
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

/// Samples every running container of this home every [`SAMPLE_EVERY`] while the daemon
/// has an engine connection (`docker` holds the current client, None while it is away).
pub async fn sample_forever(
    live: Live,
    home_id: String,
    mut docker: watch::Receiver<Option<Client>>,
) {
    // Container id → when it started: a start time does not change, so each container is
    // inspected once.
    let mut started: HashMap<String, i64> = HashMap::new();
    loop {
        let client = docker.borrow().clone();
        if let Some(client) = client {
            if let Ok(owned) = container::list_owned(&client, &home_id).await {
                let running: Vec<_> = owned.into_iter().filter(|c| c.running).collect();
                let reads = running.iter().map(|c| stats::sample(&client, &c.id));
                let results = futures_util::future::join_all(reads).await;
                let readings = running
                    .iter()
                    .zip(results)
                    .filter_map(|(c, r)| r.ok().map(|raw| (c.instance.clone(), raw)))
                    .collect();
                started.retain(|id, _| running.iter().any(|c| &c.id == id));
                let mut since = HashMap::new();
                for c in &running {
                    if !started.contains_key(&c.id) {
                        if let Some(t) = container::started_at(&client, &c.id).await {
                            started.insert(c.id.clone(), t);
                        }
                    }
                    if let Some(t) = started.get(&c.id) {
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
