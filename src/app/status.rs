//! `status`: one report from the store, the running daemon (readiness, resource samples) and,
//! when the daemon is down, the Docker engine directly. [`build`] is pure; [`gather`] does
//! the I/O.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::app::channels::health::{self as channel_health, Health};
use crate::app::client::DaemonClient;
pub use crate::app::wire::Isolation;
use crate::app::wire::{ActorHealth, LiveSnapshot};
use crate::domain::format::timestamp;
use crate::domain::instance::state::{DesiredState, InstanceState};
use crate::domain::instance::InstanceConfig;
use crate::infra::docker;
use crate::infra::home::Home;
use crate::infra::llm::budget;
use crate::infra::store::activity::Activity;
use crate::infra::store::instances::InstanceRecord;
use crate::infra::store::{now_ms, Store, StoreError};

/// How long `status` waits for the Docker engine itself when the daemon is down.
const DIRECT_DOCKER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Every state the daemon records for an instance (docs/cli.md). `starting` is not among
/// them: `status` derives it from a running container whose agent is not ready yet.
pub const STATES: [InstanceState; 7] = [
    InstanceState::Running,
    InstanceState::Stopped,
    InstanceState::Idle,
    InstanceState::Queued,
    InstanceState::Restarting,
    InstanceState::CrashLoop,
    InstanceState::Error,
];

/// The whole report; `status --json` prints it (fields documented in docs/cli.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusReport {
    pub daemon: DaemonStatus,
    pub docker: DockerStatus,
    pub runtime: Option<String>,
    pub database: DatabaseStatus,
    pub isolation: Isolation,
    pub instances: Vec<InstanceStatus>,
}

impl Isolation {
    /// What a process with this host config, as this user, does.
    pub fn here(disk: &crate::domain::host_config::DiskConfig) -> Self {
        let e = disk.enforcement();
        Self {
            uid_per_instance: !crate::infra::container_user::ContainerUser::detect().shared(),
            disk_limits: e.label().to_string(),
            disk_why_not_hard: e.why_not_hard().map(str::to_string),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DaemonStatus {
    pub running: bool,
    pub pid: Option<u32>,
    pub version: Option<String>,
    pub uptime_secs: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DockerStatus {
    pub reachable: bool,
    pub version: Option<String>,
    /// Where this came from: `daemon` or `direct`.
    pub source: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatabaseStatus {
    pub path: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    /// `running`, `starting` (container up, agent not ready yet), `stopped`, `idle`
    /// (on-demand, waiting for work), `queued` (waiting for a slot), `restarting`,
    /// `crash-loop` or `error`.
    pub state: InstanceState,
    pub desired: DesiredState,
    /// `ready`, `starting`, `failing` or `-` (not running / unknown).
    pub health: String,
    pub detail: Option<String>,
    pub uptime_secs: Option<i64>,
    pub restarts: i64,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub queued: i64,
    pub last_activity: Option<String>,
    pub next_task: Option<String>,
    pub tokens_today: i64,
    /// What its disk holds, as the daemon last measured it.
    pub disk_bytes: Option<u64>,
    /// Its `limits.disk`, in bytes.
    pub disk_limit_bytes: Option<u64>,
    /// How its messaging actor has fared, once the daemon had to start it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<ActorHealth>,
    /// Its channels (empty when its config has none, or does not load).
    pub channels: Vec<ChannelState>,
    /// Its chat groups ("isolation": "chat"), counted by how they stand.
    #[serde(default, skip_serializing_if = "GroupCounts::is_empty")]
    pub group_counts: GroupCounts,
    /// The swarm node (hostname) its task runs on; left out on the local engine and while
    /// no task runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its chat groups one by one (`status --watch` expands an instance into them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<InstanceStatus>,
}

/// An instance's chat groups by how they stand.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct GroupCounts {
    /// Running (or starting) containers.
    pub running: u32,
    /// Not running, and nothing wrong: on demand and waiting for work, stopped, queued.
    pub idle: u32,
    /// Restarting, crash-looping or in error.
    pub failing: u32,
}

impl GroupCounts {
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    pub fn total(&self) -> u32 {
        self.running + self.idle + self.failing
    }

    fn count(&mut self, g: &InstanceStatus) {
        match g.state {
            InstanceState::Running | InstanceState::Starting => self.running += 1,
            s if s.is_failing() => self.failing += 1,
            _ => self.idle += 1,
        }
    }
}

/// One channel of an instance, as `status` shows it (`supervisor channels` tells more).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChannelState {
    pub channel: String,
    /// `ok`, `starting`, `failing`, `error`, `receive-only` or `not running` (also whenever
    /// no daemon runs: nothing receives or sends then).
    pub state: String,
    /// Answers waiting to go out.
    pub backlog: u64,
    /// What is wrong, and the fix.
    pub detail: Option<String>,
}

impl ChannelState {
    fn of(h: &Health, daemon_running: bool) -> Self {
        let h = match daemon_running {
            true => h.clone(),
            false => h.clone().without_daemon(),
        };
        Self {
            channel: h.channel.to_string(),
            backlog: h.backlog.pending,
            detail: h.problem().map(str::to_string),
            state: h.state,
        }
    }

    /// Whether it needs attention.
    pub fn is_fault(&self) -> bool {
        crate::app::channels::health::is_fault(&self.state)
    }
}

/// What [`build`] needs.
pub struct Inputs<'a> {
    pub now: i64,
    pub records: &'a [InstanceRecord],
    pub activity: &'a HashMap<String, Activity>,
    /// The daemon's view, when it answered.
    pub live: Option<&'a LiveSnapshot>,
    /// With the daemon down: instances whose container Docker says is running (None: Docker
    /// could not be asked either).
    pub direct_running: Option<&'a HashSet<String>>,
    /// With the daemon down: when those containers started, as Docker says (Unix ms).
    pub direct_started: Option<&'a HashMap<String, i64>>,
    pub direct_docker_version: Option<String>,
    pub runtime: Option<String>,
    pub database: DatabaseStatus,
    /// This command's own view, used when the daemon is down (or gave none).
    pub isolation: Isolation,
    /// Each instance's channels, by instance (none: no channels).
    pub channels: &'a HashMap<String, Vec<Health>>,
}

pub fn build(i: &Inputs) -> StatusReport {
    let daemon = match i.live {
        Some(l) => DaemonStatus {
            running: true,
            pid: Some(l.pid),
            version: Some(l.version.clone()),
            uptime_secs: Some((i.now - l.started_at) / 1000),
        },
        None => DaemonStatus {
            running: false,
            pid: None,
            version: None,
            uptime_secs: None,
        },
    };
    let docker = match i.live {
        Some(l) => DockerStatus {
            reachable: l.docker_reachable,
            version: l.docker_version.clone(),
            source: "daemon".into(),
        },
        None => DockerStatus {
            reachable: i.direct_running.is_some(),
            version: i.direct_docker_version.clone(),
            source: "direct".into(),
        },
    };
    // Groups are shown under their instance, counted and one by one.
    let mut instances: Vec<InstanceStatus> = Vec::new();
    let mut groups: HashMap<&str, Vec<InstanceStatus>> = HashMap::new();
    for r in i.records {
        let status = instance(r, i.activity.get(&r.name), i);
        match &r.group {
            Some(g) => groups.entry(g.parent.as_str()).or_default().push(status),
            None => instances.push(status),
        }
    }
    for parent in &mut instances {
        for g in groups.remove(parent.name.as_str()).unwrap_or_default() {
            parent.group_counts.count(&g);
            parent.groups.push(g);
        }
    }
    StatusReport {
        daemon,
        docker,
        runtime: i.runtime.clone(),
        database: i.database.clone(),
        isolation: i
            .live
            .and_then(|l| l.isolation.clone())
            .unwrap_or_else(|| i.isolation.clone()),
        instances,
    }
}

fn instance(r: &InstanceRecord, a: Option<&Activity>, i: &Inputs) -> InstanceStatus {
    let a = a.cloned().unwrap_or_default();
    let sample = i.live.and_then(|l| l.samples.get(&r.name));
    let disk = i.live.and_then(|l| l.disk.get(&r.name));
    // With the daemon down, the store's state may be stale: Docker has the last word on
    // whether the container runs.
    let mut state = r.state;
    if let (None, Some(running)) = (i.live, i.direct_running) {
        let up = running.contains(&r.name);
        if up && state != InstanceState::Running {
            state = InstanceState::Running;
        } else if !up && state == InstanceState::Running {
            state = InstanceState::Stopped;
        }
    }
    // The container's own running time: from its start as Docker reports it, else (before
    // the sampler's first look at it) from when this daemon started it, else since the
    // state became `running`.
    let started = match i.live {
        Some(l) => l
            .running_since
            .get(&r.name)
            .or_else(|| l.started.get(&r.name)),
        None => i.direct_started.and_then(|d| d.get(&r.name)),
    };
    let running_since = (state == InstanceState::Running)
        .then(|| started.copied().or(r.state_changed_at))
        .flatten();
    let health = match state {
        InstanceState::Running => match i.live {
            Some(l) if l.is_ready(&r.name) => "ready",
            Some(_) => "starting",
            None => "-",
        },
        InstanceState::Restarting | InstanceState::CrashLoop | InstanceState::Error => "failing",
        _ => "-",
    };
    if state == InstanceState::Running && health == "starting" {
        state = InstanceState::Starting;
    }
    // Samples describe a running container; a stopped, idle or failing instance has none
    // now, whatever the last one said.
    let sample =
        sample.filter(|_| matches!(state, InstanceState::Running | InstanceState::Starting));
    InstanceStatus {
        name: r.name.clone(),
        desired: r.desired_state,
        health: health.into(),
        detail: r.state_detail.clone(),
        uptime_secs: running_since.map(|t| (i.now - t).max(0) / 1000),
        restarts: r.restart_count,
        cpu_percent: sample.and_then(|s| s.cpu_percent),
        memory_bytes: sample.map(|s| s.memory_bytes),
        memory_limit_bytes: sample.map(|s| s.memory_limit_bytes),
        queued: a.queued,
        last_activity: r.last_activity_at.map(timestamp),
        next_task: a.next_task_at.map(timestamp),
        tokens_today: a.tokens,
        disk_bytes: disk.map(|d| d.used_bytes),
        disk_limit_bytes: disk.and_then(|d| d.limit_bytes),
        messaging: i.live.and_then(|l| l.actors.get(&r.name).cloned()),
        channels: i
            .channels
            .get(&r.name)
            .into_iter()
            .flatten()
            .map(|h| ChannelState::of(h, i.live.is_some()))
            .collect(),
        // The daemon's word, from its last reconcile pass.
        node: i.live.and_then(|l| l.nodes.get(&r.name).cloned()),
        state,
        group_counts: GroupCounts::default(),
        groups: Vec::new(),
    }
}

/// What the store says, read in a handful of queries.
pub struct StoreFacts {
    pub now: i64,
    pub records: Vec<InstanceRecord>,
    pub activity: HashMap<String, Activity>,
    pub runtime: Option<String>,
    pub database: DatabaseStatus,
    pub channels: HashMap<String, Vec<Health>>,
}

impl StoreFacts {
    pub fn read(store: &Store, home: &Home) -> Result<Self, StoreError> {
        let db_path = &home.db_path();
        let now = now_ms();
        let records = store.instances()?;
        let mut channels = HashMap::new();
        for r in records.iter().filter(|r| r.group.is_none()) {
            // A config that does not load shows no channels; the instance's detail says why.
            let Ok(name) = crate::domain::instance::InstanceName::parse(&r.name) else {
                continue;
            };
            let Ok(config) = InstanceConfig::load(&home.instance_paths(&name).config) else {
                continue;
            };
            if !config.channels.is_empty() {
                let health = channel_health::of_instance(store, &r.name, &config.channels)?;
                channels.insert(r.name.clone(), health);
            }
        }
        let bytes = ["", "-wal"]
            .iter()
            .filter_map(|suffix| {
                std::fs::metadata(format!("{}{suffix}", db_path.display()))
                    .ok()
                    .map(|m| m.len())
            })
            .sum();
        Ok(Self {
            now,
            records,
            channels,
            activity: store.activity(budget::day_start(now))?,
            runtime: store.active_runtime()?.map(|a| a.runtime_id),
            database: DatabaseStatus {
                path: db_path.display().to_string(),
                bytes,
            },
        })
    }

    /// The report as the daemon sees it (the API's instance endpoints).
    pub fn with_live(self, live: &LiveSnapshot) -> StatusReport {
        build(&Inputs {
            now: self.now,
            records: &self.records,
            activity: &self.activity,
            live: Some(live),
            direct_running: None,
            direct_started: None,
            direct_docker_version: None,
            runtime: self.runtime,
            database: self.database,
            // A daemon always says; this is only for one that does not.
            isolation: Isolation::here(&Default::default()),
            channels: &self.channels,
        })
    }
}

/// Collects the inputs and builds the report. Works with the daemon down (then asks Docker
/// itself, without stats) and with Docker down too.
pub fn gather(home: &Home) -> anyhow::Result<StatusReport> {
    let mut store = home.open()?;
    let facts = StoreFacts::read(&store, home)?;
    let live = crate::infra::blocking::block_on(DaemonClient::for_home(home).status()).ok();
    if let Some(live) = &live {
        return Ok(facts.with_live(live));
    }
    let mut direct_running = None;
    let mut direct_started = HashMap::new();
    let mut direct_docker_version = None;
    {
        let host = home.host_config()?;
        let home_id = store.home_id()?;
        // Bounded: a status call must not hang on an engine that does not answer.
        let ask = async {
            let Ok((client, engine)) = docker::connect_engine(&host, home.root()).await else {
                return;
            };
            direct_docker_version = docker::stats::engine_version(&client).await.ok();
            let owned = engine.list(&home_id).await.ok();
            let running: Option<Vec<_>> =
                owned.map(|o| o.into_iter().filter(|c| c.running).collect());
            direct_running = running
                .as_ref()
                .map(|r| r.iter().map(|c| c.instance.clone()).collect::<HashSet<_>>());
            for c in running.iter().flatten() {
                if let Some(t) = docker::engine::started_at(engine.as_ref(), &c.id).await {
                    direct_started.insert(c.instance.clone(), t);
                }
            }
        };
        // The timer must be made inside the runtime, hence the async block around it.
        let _ = crate::infra::blocking::block_on(async {
            tokio::time::timeout(DIRECT_DOCKER_WAIT, ask).await
        });
    }
    Ok(build(&Inputs {
        now: facts.now,
        records: &facts.records,
        activity: &facts.activity,
        live: None,
        direct_running: direct_running.as_ref(),
        direct_started: Some(&direct_started),
        direct_docker_version,
        runtime: facts.runtime,
        database: facts.database,
        isolation: Isolation::here(&home.host_config()?.disk),
        channels: &facts.channels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, state: &str, changed: i64) -> InstanceRecord {
        InstanceRecord {
            state_changed_at: Some(changed),
            restart_count: 2,
            last_activity_at: Some(5_000),
            ..crate::infra::store::instances::test_record(name, state)
        }
    }

    fn no_channels() -> &'static HashMap<String, Vec<Health>> {
        static NONE: std::sync::OnceLock<HashMap<String, Vec<Health>>> = std::sync::OnceLock::new();
        NONE.get_or_init(HashMap::new)
    }

    fn inputs<'a>(
        records: &'a [InstanceRecord],
        activity: &'a HashMap<String, Activity>,
        live: Option<&'a LiveSnapshot>,
        direct: Option<&'a HashSet<String>>,
    ) -> Inputs<'a> {
        Inputs {
            now: 100_000,
            records,
            activity,
            live,
            direct_running: direct,
            direct_started: None,
            direct_docker_version: None,
            runtime: Some("rt1".into()),
            database: DatabaseStatus {
                path: "/h/supervisor.db".into(),
                bytes: 4096,
            },
            isolation: Isolation {
                uid_per_instance: true,
                disk_limits: "hard".into(),
                disk_why_not_hard: None,
            },
            channels: no_channels(),
        }
    }

    #[test]
    fn channels_show_as_recorded_and_not_running_without_a_daemon() {
        let records = [record("alice", "running", 0), record("bob", "running", 0)];
        let failing = Health {
            channel: "webhook",
            state: "failing".into(),
            detail: None,
            account: None,
            secret_env: "S".into(),
            url: Some("http://127.0.0.1:9/out".into()),
            backlog: crate::infra::store::deliveries::Backlog {
                pending: 3,
                last_sent_at: None,
                last_error: Some("connection refused".into()),
            },
        };
        let channels = HashMap::from([("alice".to_string(), vec![failing])]);
        let none = HashMap::new();
        let live = LiveSnapshot::default();
        let mut i = inputs(&records, &none, Some(&live), None);
        i.channels = &channels;
        let r = build(&i);
        assert_eq!(
            r.instances[0].channels,
            [ChannelState {
                channel: "webhook".into(),
                state: "failing".into(),
                backlog: 3,
                detail: Some("connection refused".into()),
            }]
        );
        assert!(r.instances[0].channels[0].is_fault());
        assert!(r.instances[1].channels.is_empty());
        let json = serde_json::to_value(&r.instances[1]).unwrap();
        assert_eq!(json["channels"], serde_json::json!([]), "always there");
        // No daemon: nothing receives or sends, whatever was recorded.
        let mut i = inputs(&records, &none, None, None);
        i.channels = &channels;
        let c = &build(&i).instances[0].channels[0];
        assert_eq!((c.state.as_str(), c.backlog), ("not running", 3));
        assert_eq!(c.detail.as_deref(), Some("connection refused"));
    }

    #[test]
    fn readiness_and_samples_come_from_the_daemon() {
        let records = [
            record("alice", "running", 10_000),
            record("bob", "running", 90_000),
            record("carol", "crash-loop", 0),
        ];
        let mut live = LiveSnapshot {
            pid: 7,
            version: "0.1.0".into(),
            started_at: 40_000,
            docker_reachable: true,
            ..Default::default()
        };
        live.started.insert("alice".into(), 9_000);
        live.ready.insert("alice".into(), 12_000);
        live.started.insert("bob".into(), 90_000);
        live.ready.insert("bob".into(), 12_000); // before its current start
        let activity = HashMap::from([(
            "alice".to_string(),
            Activity {
                queued: 3,
                tokens: 99,
                next_task_at: Some(200_000),
            },
        )]);
        let r = build(&inputs(&records, &activity, Some(&live), None));
        assert_eq!((r.daemon.running, r.daemon.uptime_secs), (true, Some(60)));
        let [a, b, c] = &r.instances[..] else {
            panic!()
        };
        assert_eq!((a.state.as_str(), a.health.as_str()), ("running", "ready"));
        // Uptime is the container's: from when the daemon started it (no sample from Docker
        // yet), not from the state's last change.
        assert_eq!((a.uptime_secs, a.queued, a.tokens_today), (Some(91), 3, 99));
        assert_eq!(a.next_task.as_deref(), Some("1970-01-01T00:03:20Z"));
        assert_eq!(
            (b.state.as_str(), b.health.as_str()),
            ("starting", "starting")
        );
        assert_eq!(
            (c.state.as_str(), c.health.as_str()),
            ("crash-loop", "failing")
        );
        assert_eq!(c.uptime_secs, None);
        assert_eq!(a.node, None, "the local engine: no node");
        live.nodes.insert("alice".into(), "worker-1".into());
        let r = build(&inputs(&records, &activity, Some(&live), None));
        assert_eq!(r.instances[0].node.as_deref(), Some("worker-1"));
        assert_eq!(r.instances[1].node, None);
        let json = serde_json::to_value(&r.instances[0]).unwrap();
        assert_eq!(json["node"], "worker-1");
    }

    #[test]
    fn with_the_daemon_down_docker_has_the_last_word() {
        let records = [record("alice", "running", 0), record("bob", "stopped", 0)];
        let running = HashSet::from(["bob".to_string()]);
        let none = HashMap::new();
        let r = build(&inputs(&records, &none, None, Some(&running)));
        assert!(!r.daemon.running);
        assert_eq!(
            (r.docker.reachable, r.docker.source.as_str()),
            (true, "direct")
        );
        assert_eq!(r.instances[0].state, InstanceState::Stopped);
        assert_eq!(r.instances[1].state, InstanceState::Running);
        assert_eq!(
            r.instances[1].health, "-",
            "nobody can tell without the daemon"
        );
        assert_eq!(r.instances[1].cpu_percent, None);
        // Neither daemon nor Docker: the store's word, and Docker marked unreachable.
        let r = build(&inputs(&records, &none, None, None));
        assert!(!r.docker.reachable);
        assert_eq!(r.instances[0].state, InstanceState::Running);
    }

    #[test]
    fn uptime_is_the_containers_and_samples_only_show_while_it_runs() {
        // alice's state detail changed at 90 s (a note), her container started at 10 s.
        let records = [
            record("alice", "running", 90_000),
            record("bob", "stopped", 0),
            record("carol", "crash-loop", 0),
            record("dave", "running", 70_000),
        ];
        let mut live = LiveSnapshot {
            started_at: 0,
            docker_reachable: true,
            ..Default::default()
        };
        live.running_since.insert("alice".into(), 10_000);
        let sample =
            crate::app::daemon::live::ResourceSample::measured(Some(2.0), 30 << 20, 512 << 20, 1);
        for name in ["alice", "bob", "carol"] {
            live.samples.insert(name.into(), sample.clone());
        }
        let none = HashMap::new();
        let r = build(&inputs(&records, &none, Some(&live), None));
        let [a, b, c, d] = &r.instances[..] else {
            panic!()
        };
        assert_eq!(a.uptime_secs, Some(90), "from the container's start");
        assert_eq!(d.uptime_secs, Some(30), "no start time yet: since it runs");
        assert_eq!(a.memory_limit_bytes, Some(512 << 20));
        for stale in [b, c] {
            assert_eq!(
                (stale.cpu_percent, stale.memory_bytes, stale.uptime_secs),
                (None, None, None),
                "{}",
                stale.name
            );
        }
        // With the daemon down, Docker's start time.
        let running = HashSet::from(["alice".to_string()]);
        let started = HashMap::from([("alice".to_string(), 40_000)]);
        let mut i = inputs(&records, &none, None, Some(&running));
        i.direct_started = Some(&started);
        assert_eq!(build(&i).instances[0].uptime_secs, Some(60));
    }
}
