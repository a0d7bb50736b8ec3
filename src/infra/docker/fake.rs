//! An in-memory container engine for unit tests: containers are rows that the test can make
//! exit, and every call that changes something is written down so a test can say what was
//! done. It keeps no processes and no time of its own beyond [`FakeEngine::set_now`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, BoxStream};
use futures_util::{FutureExt, StreamExt};

use super::container::{ContainerEvent, ContainerState, LogChunk, LogsRequest, OwnedContainer};
use super::engine::{Engine, EngineResult};
use super::hardening::{Hardening, Inspected};
use super::stats::RawStats;
use super::DockerError;
use crate::infra::container_spec::{ContainerSpec, LABEL_INSTANCE, LABEL_SPEC_HASH};

/// A call that changed the fake engine, in the order made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Created a container for this instance; its id.
    Create {
        instance: String,
        id: String,
    },
    Start {
        id: String,
    },
    Stop {
        id: String,
    },
    Remove {
        id: String,
    },
}

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    /// What it was created from, so an audit sees the hardening the spec asks for.
    pub spec: Option<ContainerSpec>,
    pub running: bool,
    /// Creation order (Docker's `created`, in seconds, only has to order them).
    pub created: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub output: Vec<String>,
}

impl FakeContainer {
    fn instance(&self) -> &str {
        self.labels.get(LABEL_INSTANCE).map_or("", String::as_str)
    }
}

#[derive(Default)]
struct State {
    containers: BTreeMap<String, FakeContainer>,
    images: BTreeSet<String>,
    calls: Vec<Call>,
    next_id: u64,
    /// Unix ms the engine stamps on starts and exits; the real clock when unset.
    now: Option<i64>,
}

impl State {
    fn now(&self) -> i64 {
        self.now.unwrap_or_else(crate::infra::store::now_ms)
    }

    fn get(&mut self, id: &str) -> Result<&mut FakeContainer, DockerError> {
        self.containers.get_mut(id).ok_or_else(|| not_found(id))
    }
}

/// The fake engine; clones share one set of containers.
#[derive(Clone, Default)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
}

/// What the engine says of a container that does not exist (an HTTP 404).
fn not_found(id: &str) -> DockerError {
    DockerError::StartContainer {
        id: id.to_string(),
        source: bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: format!("No such container: {id}"),
        },
    }
}

/// Docker's time format, as `inspect` gives it.
fn docker_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl FakeEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake engine")
    }

    /// Makes the image `tag` exist.
    pub fn add_image(&self, tag: &str) {
        self.state().images.insert(tag.to_string());
    }

    /// The time stamped on starts and exits from now on (unix ms).
    pub fn set_now(&self, ms: i64) {
        self.state().now = Some(ms);
    }

    /// Adds a container as if made outside this engine's `create` (another daemon, an old
    /// version, by hand); returns its id.
    pub fn add_container(&self, labels: &[(&str, &str)], running: bool) -> String {
        let mut s = self.state();
        s.next_id += 1;
        let id = format!("{:064x}", s.next_id);
        let now = s.now();
        let c = FakeContainer {
            id: id.clone(),
            name: format!("fake-{}", s.next_id),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            spec: None,
            running,
            created: s.next_id as i64,
            started_at: running.then_some(now),
            finished_at: None,
            exit_code: None,
            output: Vec::new(),
        };
        s.containers.insert(id.clone(), c);
        id
    }

    /// The container's process ends by itself with `code`, after printing `output`.
    pub fn exit(&self, id: &str, code: i64, output: &str) {
        let mut s = self.state();
        let now = s.now();
        let c = s.get(id).expect("a container of the fake engine");
        c.running = false;
        c.finished_at = Some(now);
        c.exit_code = Some(code);
        c.output.extend(output.lines().map(str::to_string));
    }

    pub fn container(&self, id: &str) -> Option<FakeContainer> {
        self.state().containers.get(id).cloned()
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.state().containers.values().cloned().collect()
    }

    /// The running container of `instance`, if one runs.
    pub fn running_of(&self, instance: &str) -> Option<FakeContainer> {
        self.state()
            .containers
            .values()
            .find(|c| c.running && c.instance() == instance)
            .cloned()
    }

    /// The calls made so far, and forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }
}

impl Engine for FakeEngine {
    fn ping(&self) -> EngineResult<'_, ()> {
        async { Ok(()) }.boxed()
    }

    fn image_exists<'a>(&'a self, tag: &'a str) -> EngineResult<'a, bool> {
        let found = self.state().images.contains(tag);
        async move { Ok(found) }.boxed()
    }

    fn list<'a>(&'a self, home_id: &'a str) -> EngineResult<'a, Vec<OwnedContainer>> {
        let list = self
            .state()
            .containers
            .values()
            .filter(|c| {
                c.labels
                    .get(crate::infra::container_spec::LABEL_HOME)
                    .map(String::as_str)
                    == Some(home_id)
            })
            .map(|c| OwnedContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                instance: c.instance().to_string(),
                spec_hash: c.labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default(),
                node: None,
                running: c.running,
                created: c.created,
                labels: c.labels.clone(),
            })
            .collect();
        async move { Ok(list) }.boxed()
    }

    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> EngineResult<'a, String> {
        let mut s = self.state();
        s.next_id += 1;
        let id = format!("{:064x}", s.next_id);
        let c = FakeContainer {
            id: id.clone(),
            name: spec.name.clone(),
            labels: spec
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            spec: Some(spec.clone()),
            running: false,
            created: s.next_id as i64,
            started_at: None,
            finished_at: None,
            exit_code: None,
            output: Vec::new(),
        };
        let instance = c.instance().to_string();
        s.containers.insert(id.clone(), c);
        s.calls.push(Call::Create {
            instance,
            id: id.clone(),
        });
        async move { Ok(id) }.boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()> {
        let mut s = self.state();
        let now = s.now();
        let result = s.get(id).map(|c| {
            c.running = true;
            c.started_at = Some(now);
            c.finished_at = None;
            c.exit_code = None;
        });
        if result.is_ok() {
            s.calls.push(Call::Start { id: id.to_string() });
        }
        async move { result }.boxed()
    }

    fn stop<'a>(&'a self, id: &'a str, _timeout_secs: i32) -> EngineResult<'a, ()> {
        let mut s = self.state();
        let now = s.now();
        if let Ok(c) = s.get(id) {
            if c.running {
                c.running = false;
                c.finished_at = Some(now);
                c.exit_code = Some(0);
            }
            s.calls.push(Call::Stop { id: id.to_string() });
        }
        async { Ok(()) }.boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()> {
        let mut s = self.state();
        if s.containers.remove(id).is_some() {
            s.calls.push(Call::Remove { id: id.to_string() });
        }
        async { Ok(()) }.boxed()
    }

    fn inspect<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<ContainerState>> {
        let state = self.state().containers.get(id).map(|c| ContainerState {
            running: c.running,
            exit_code: c.exit_code,
            oom_killed: false,
            started_at: c.started_at.map(docker_time),
            finished_at: c.finished_at.map(docker_time),
        });
        async move { Ok(state) }.boxed()
    }

    fn inspect_hardening<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<Inspected>> {
        let found = self.state().containers.get(id).map(|c| Inspected {
            id: c.id.clone(),
            name: c.name.clone(),
            running: c.running,
            labels: c.labels.clone(),
            // Made here from a spec: exactly as hardened as the spec asks. Made elsewhere:
            // nothing is known of it, so it matches nothing.
            hardening: c.spec.as_ref().map(Hardening::expected).unwrap_or_default(),
            from_service_spec: false,
        });
        async move { Ok(found) }.boxed()
    }

    fn logs<'a>(
        &'a self,
        id: &'a str,
        request: LogsRequest,
    ) -> BoxStream<'a, Result<LogChunk, DockerError>> {
        let lines = self
            .state()
            .containers
            .get(id)
            .map(|c| c.output.clone())
            .unwrap_or_default();
        let skip = request
            .tail
            .map_or(0, |n| lines.len().saturating_sub(n as usize));
        let chunks: Vec<_> = lines
            .into_iter()
            .skip(skip)
            .map(|l| Ok(LogChunk::Stdout(format!("{l}\n").into_bytes())))
            .collect();
        stream::iter(chunks).boxed()
    }

    fn events<'a>(
        &'a self,
        _home_id: &'a str,
    ) -> BoxStream<'a, Result<ContainerEvent, DockerError>> {
        stream::empty().boxed()
    }

    fn stats<'a>(&'a self, id: &'a str) -> EngineResult<'a, RawStats> {
        let result = match self.state().containers.get(id) {
            Some(_) => Ok(RawStats {
                cpu_total_ns: 0,
                system_ns: 0,
                online_cpus: 1,
                mem_used: 0,
                mem_limit: 0,
            }),
            None => Err(not_found(id)),
        };
        async move { result }.boxed()
    }

    fn exec_target<'a>(
        &'a self,
        _id: &'a str,
    ) -> EngineResult<'a, Option<(crate::infra::docker::Client, String)>> {
        async move { Ok(None) }.boxed()
    }
}
