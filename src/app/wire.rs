//! What the daemon's socket and HTTP API carry: the requests and answers that the daemon (the
//! server) and `app::client` (the CLI's side) both use. Plain data; the logic that fills them
//! lives with the daemon.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::infra::docker::stats::RawStats;

pub const SOCKET_FILE: &str = "supervisor.sock";

/// What a reconcile request hears back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PassReport {
    pub actions: usize,
    pub converged: bool,
    /// False when the Docker engine was unreachable (nothing could be applied).
    pub docker: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub pid: u32,
    pub version: String,
    pub home_id: String,
}

/// What `GET /v1/daemon` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DaemonInfo {
    pub pid: u32,
    pub version: String,
    pub home: String,
    pub home_id: String,
    /// The TCP listener's address, or null.
    pub listen: Option<String>,
    /// [`fingerprint`] of the token it accepts, or null when it has none.
    pub token_fingerprint: Option<String>,
}

/// A message for an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequest {
    pub text: String,
    /// Who wrote it; checked against the instance's allow-list. Default: `local` on the
    /// socket, [`TCP_SENDER`] over TCP (see [`origin`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Where it came from. Default: `cli` on the socket, `api` over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Answer only once the turn that carries it has its final answer.
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The message's id, chosen by the sender so that sending again (after a lost response)
    /// is safe: the same id and text are stored once. Default: a fresh id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What a send returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResponse {
    pub id: String,
    pub instance: String,
    /// `queued`, `context`, `refused`, or `answered` when waited for.
    pub state: String,
    pub reply: Option<String>,
    pub failed: bool,
    pub latency_ms: Option<u64>,
}

/// A container's latest resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    /// Percent of one CPU since the previous sample; None for the first one.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// Unix ms.
    pub sampled_at: i64,
    /// The engine's reading behind it, kept by the daemon for the next CPU delta; never sent.
    #[serde(skip)]
    pub(crate) raw: Option<RawStats>,
}

impl ResourceSample {
    /// A sample as read elsewhere (another daemon's answer, a test).
    pub fn measured(
        cpu_percent: Option<f64>,
        memory_bytes: u64,
        memory_limit_bytes: u64,
        sampled_at: i64,
    ) -> Self {
        Self {
            cpu_percent,
            memory_bytes,
            memory_limit_bytes,
            sampled_at,
            raw: None,
        }
    }
}

/// The daemon's view, as `GET /v1/status` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    pub pid: u32,
    pub version: String,
    /// Unix ms.
    pub started_at: i64,
    pub docker_reachable: bool,
    pub docker_version: Option<String>,
    /// Whether the last reconcile pass left nothing to do.
    pub converged: bool,
    /// Instance → when its agent last announced readiness (Unix ms).
    pub ready: HashMap<String, i64>,
    /// Instance → when this daemon last started its container (Unix ms). Containers adopted
    /// from an earlier daemon have no entry.
    pub started: HashMap<String, i64>,
    pub samples: HashMap<String, ResourceSample>,
    /// Instance → why the host will not touch its files now (an IPC queue is not the
    /// directory the supervisor made). Such an instance is held in `error`.
    #[serde(default)]
    pub boundary: HashMap<String, String>,
    /// Instance → its disk, as last measured.
    #[serde(default)]
    pub disk: HashMap<String, DiskSample>,
    /// How this daemon keeps instances apart.
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// Instance → when its running container started, as Docker says (Unix ms): the
    /// container's own running time, whoever started it.
    #[serde(default)]
    pub running_since: HashMap<String, i64>,
    /// Instance → how its messaging actor has fared, once it has died at least once.
    #[serde(default)]
    pub actors: HashMap<String, ActorHealth>,
    /// Instance → the swarm node (hostname) its task runs on, as the last reconcile pass saw
    /// it; empty on the local engine.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub nodes: HashMap<String, String>,
}

/// A supervised actor that died: how often it was started again, and why it last died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorHealth {
    pub restarts: u32,
    pub last_failure: String,
    /// Unix ms.
    pub last_failure_at: i64,
}

impl LiveSnapshot {
    /// Whether an instance's agent has announced readiness since its container was last
    /// started. A container this daemon adopted (it did not start it) counts as ready once
    /// running: its agent announced readiness to the daemon before.
    pub fn is_ready(&self, instance: &str) -> bool {
        match (self.started.get(instance), self.ready.get(instance)) {
            (Some(started), Some(ready)) => ready >= started,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }
}

/// One instance's disk, as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSample {
    pub used_bytes: u64,
    pub used_inodes: u64,
    /// On its own disk image: the limit is the kernel's to enforce.
    pub image: bool,
    /// False when a soft volume was too large to walk whole: it holds at least this much.
    pub complete: bool,
    /// `limits.disk` when it was measured (None: its config.json is invalid).
    pub limit_bytes: Option<u64>,
    /// Unix ms.
    pub sampled_at: i64,
}

/// How instances are kept apart on this host: the daemon's own view when it runs, else what
/// this command would do.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Isolation {
    /// Every container runs as the instance's own uid (false: as the supervisor's, which is
    /// not root).
    pub uid_per_instance: bool,
    /// `hard` (a disk image per instance), `soft` (measured; stopped past it) or
    /// `unavailable` (hard required, not possible here: instances do not run).
    pub disk_limits: String,
    /// Why disk limits are not hard, when they are not.
    pub disk_why_not_hard: Option<String>,
}
