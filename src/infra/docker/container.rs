//! Instance containers: create (hardened), start, stop, remove, list by owner, inspect,
//! logs and the event stream.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, HostConfig, HostConfigLogConfig, Mount,
    MountType, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use super::{is_not_found, DockerError};
use crate::infra::container_spec::{ContainerSpec, LABEL_HOME, LABEL_INSTANCE, LABEL_SPEC_HASH};

/// A container this home owns, as Docker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedContainer {
    pub id: String,
    pub name: String,
    pub instance: String,
    pub spec_hash: String,
    pub running: bool,
    pub created: i64,
    pub labels: HashMap<String, String>,
    /// The swarm node its task runs on (its hostname); None on the local engine.
    pub node: Option<String>,
}

/// An instance's newest container among `owned`: the one whose output is its logs and
/// whose exit counts, since an older one left behind is only waiting to be removed.
pub fn newest<'a>(
    owned: impl IntoIterator<Item = &'a OwnedContainer>,
    instance: &str,
) -> Option<&'a OwnedContainer> {
    owned
        .into_iter()
        .filter(|c| c.instance == instance)
        .max_by_key(|c| c.created)
}

/// The parts of `inspect` the supervisor acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// The hardened host config every agent container gets (also used by the probe).
pub fn host_config(spec: &ContainerSpec) -> HostConfig {
    let mounts = spec
        .mounts
        .iter()
        .map(|m| Mount {
            typ: Some(MountType::BIND),
            source: Some(m.source.to_string_lossy().into_owned()),
            target: Some(m.target.clone()),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    HostConfig {
        mounts: Some(mounts),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            format!("rw,nosuid,nodev,noexec,size={},mode=1777", spec.tmp_bytes),
        )])),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        network_mode: Some(spec.network.clone()),
        init: Some(true),
        pids_limit: Some(spec.pids_limit),
        memory: Some(spec.memory_bytes),
        // Equal to memory: no swap on top of the limit.
        memory_swap: Some(spec.memory_bytes),
        nano_cpus: Some(spec.nano_cpus),
        // The supervisor restarts containers itself (with backoff and crash-loop detection).
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_string()),
            config: Some(HashMap::from([
                ("max-size".to_string(), spec.log_max_size.clone()),
                ("max-file".to_string(), spec.log_max_files.clone()),
            ])),
        }),
        ..Default::default()
    }
}

pub fn create_body(
    spec: &ContainerSpec,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        user: Some(spec.user.clone()),
        entrypoint,
        cmd,
        labels: Some(spec.labels.clone().into_iter().collect()),
        network_disabled: Some(spec.network == "none"),
        host_config: Some(host_config(spec)),
        ..Default::default()
    }
}

/// Creates the instance's container (not started). Returns its id.
pub async fn create(docker: &Docker, spec: &ContainerSpec) -> Result<String, DockerError> {
    let options = CreateContainerOptionsBuilder::default()
        .name(&spec.name)
        .build();
    docker
        .create_container(Some(options), create_body(spec, None, None))
        .await
        .map(|r| r.id)
        .map_err(|source| DockerError::CreateContainer {
            image: spec.image.clone(),
            source,
        })
}

pub async fn start(docker: &Docker, id: &str) -> Result<(), DockerError> {
    docker
        .start_container(id, None)
        .await
        .map_err(|source| DockerError::StartContainer {
            id: id.to_string(),
            source,
        })
}

/// Stops gracefully (SIGTERM, then SIGKILL after `timeout_secs`). Gone already is fine.
pub async fn stop(docker: &Docker, id: &str, timeout_secs: i32) -> Result<(), DockerError> {
    let options = StopContainerOptionsBuilder::default()
        .t(timeout_secs)
        .build();
    match docker.stop_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(source) => Err(DockerError::StopContainer {
            id: id.to_string(),
            source,
        }),
    }
}

/// Sends SIGKILL (used to simulate crashes in tests and by operators' tools).
pub async fn kill(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = KillContainerOptionsBuilder::default()
        .signal("KILL")
        .build();
    docker
        .kill_container(id, Some(options))
        .await
        .map_err(|source| DockerError::StopContainer {
            id: id.to_string(),
            source,
        })
}

/// Removes a container (forcefully, with its anonymous volumes). Gone already is fine.
pub async fn remove(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(source) => Err(DockerError::RemoveContainer {
            id: id.to_string(),
            source,
        }),
    }
}

/// Every container (running or not) whose labels say this home owns it. Nothing else is
/// ever listed, so nothing else is ever touched.
pub async fn list_owned(
    docker: &Docker,
    home_id: &str,
) -> Result<Vec<OwnedContainer>, DockerError> {
    let all = list_labelled(docker, format!("{LABEL_HOME}={home_id}")).await?;
    // Belt and braces: the engine filtered, but never trust a filter with ownership.
    Ok(all
        .into_iter()
        .filter(|c| c.labels.get(LABEL_HOME).map(String::as_str) == Some(home_id))
        .collect())
}

/// Every container any supervisor home made (labelled with a home), this one's included:
/// for looking, never for touching.
pub async fn list_supervised(docker: &Docker) -> Result<Vec<OwnedContainer>, DockerError> {
    let all = list_labelled(docker, LABEL_HOME.to_string()).await?;
    Ok(all
        .into_iter()
        .filter(|c| c.labels.contains_key(LABEL_HOME))
        .collect())
}

/// The containers matching one engine label filter (`key` or `key=value`).
async fn list_labelled(
    docker: &Docker,
    filter: String,
) -> Result<Vec<OwnedContainer>, DockerError> {
    let filters = HashMap::from([("label".to_string(), vec![filter])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .map_err(DockerError::ListContainers)?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            Some(OwnedContainer {
                id: c.id?,
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                instance: labels.get(LABEL_INSTANCE).cloned().unwrap_or_default(),
                spec_hash: labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default(),
                running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                created: c.created.unwrap_or(0),
                labels,
                node: None,
            })
        })
        .collect())
}

/// Inspects a container's state; `None` if it no longer exists.
pub async fn state(docker: &Docker, id: &str) -> Result<Option<ContainerState>, DockerError> {
    match docker.inspect_container(id, None).await {
        Ok(c) => {
            let s = c.state.unwrap_or_default();
            Ok(Some(ContainerState {
                running: s.running.unwrap_or(false),
                exit_code: s.exit_code,
                oom_killed: s.oom_killed.unwrap_or(false),
                started_at: s.started_at,
                finished_at: s.finished_at,
            }))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(DockerError::InspectContainer {
            id: id.to_string(),
            source,
        }),
    }
}

/// Docker's RFC 3339 times (nanoseconds, `0001-01-01T00:00:00Z` for never) as unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let ms = t.timestamp_millis();
    (ms > 0).then_some(ms)
}

/// The full inspect document (for hardening audits and tests).
pub async fn inspect_raw(
    docker: &Docker,
    id: &str,
) -> Result<bollard::models::ContainerInspectResponse, DockerError> {
    docker
        .inspect_container(id, None)
        .await
        .map_err(|source| DockerError::InspectContainer {
            id: id.to_string(),
            source,
        })
}

/// One chunk of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogChunk {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A container's logs: the last `tail` lines (all when None), then new ones if `follow`.
pub fn logs<'a>(
    docker: &'a Docker,
    id: &'a str,
    tail: Option<u64>,
    follow: bool,
) -> impl Stream<Item = Result<LogChunk, DockerError>> + 'a {
    logs_with(
        docker,
        id,
        LogsRequest {
            tail,
            follow,
            ..LogsRequest::default()
        },
    )
}

/// Which part of a container's logs to read, and how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogsRequest {
    /// Only the last N lines (all when None).
    pub tail: Option<u64>,
    /// Then keep reading new output until the container stops.
    pub follow: bool,
    /// Only output from this time on (Unix seconds: the engine's resolution).
    pub since: Option<i64>,
    /// Each line starts with the time the engine received it (RFC 3339, nanoseconds).
    pub timestamps: bool,
}

/// The engine's log options for `request` (containers and services alike).
pub fn logs_options(request: LogsRequest) -> bollard::query_parameters::LogsOptions {
    let mut options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(request.follow)
        .timestamps(request.timestamps)
        .tail(&request.tail.map_or("all".to_string(), |n| n.to_string()));
    if let Some(since) = request.since {
        // The engine takes 32-bit seconds; a time past that is later than any output.
        options = options.since(since.clamp(1, i64::from(i32::MAX)) as i32);
    }
    options.build()
}

/// One piece of the engine's log stream as output of the agent.
pub fn log_chunk(out: bollard::container::LogOutput) -> LogChunk {
    match out {
        bollard::container::LogOutput::StdErr { message } => LogChunk::Stderr(message.to_vec()),
        other => LogChunk::Stdout(other.into_bytes().to_vec()),
    }
}

/// A container's logs as `request` asks.
pub fn logs_with<'a>(
    docker: &'a Docker,
    id: &'a str,
    request: LogsRequest,
) -> impl Stream<Item = Result<LogChunk, DockerError>> + 'a {
    docker
        .logs(id, Some(logs_options(request)))
        .map(move |item| {
            item.map(log_chunk).map_err(|source| DockerError::Logs {
                id: id.to_string(),
                source,
            })
        })
}

/// A lifecycle event of one of this home's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    pub instance: String,
    pub action: String,
}

/// Docker's event stream, narrowed to this home's containers.
pub fn events<'a>(
    docker: &'a Docker,
    home_id: &str,
) -> impl Stream<Item = Result<ContainerEvent, DockerError>> + 'a {
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![format!("{LABEL_HOME}={home_id}")]),
    ]);
    let options = EventsOptionsBuilder::default().filters(&filters).build();
    docker.events(Some(options)).filter_map(|item| async move {
        match item {
            Ok(ev) => {
                let actor = ev.actor?;
                let attrs = actor.attributes.unwrap_or_default();
                Some(Ok(ContainerEvent {
                    id: actor.id?,
                    instance: attrs.get(LABEL_INSTANCE).cloned().unwrap_or_default(),
                    action: ev.action.unwrap_or_default(),
                }))
            }
            Err(e) => Some(Err(DockerError::Events(e))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(id: &str, instance: &str, created: i64, running: bool) -> OwnedContainer {
        OwnedContainer {
            id: id.into(),
            name: format!("sv-{id}"),
            instance: instance.into(),
            spec_hash: "h".into(),
            running,
            created,
            labels: HashMap::new(),
            node: None,
        }
    }

    #[test]
    fn the_newest_container_is_the_instances_latest_created() {
        let all = [
            owned("a1", "alice", 10, true),
            owned("b1", "bob", 30, true),
            owned("a2", "alice", 20, false),
        ];
        assert_eq!(newest(&all, "alice").map(|c| c.id.as_str()), Some("a2"));
        assert_eq!(newest(&all, "bob").map(|c| c.id.as_str()), Some("b1"));
        assert_eq!(newest(&all, "carol"), None);
        // Narrowed first: the newest of those that run.
        let running = newest(all.iter().filter(|c| c.running), "alice");
        assert_eq!(running.map(|c| c.id.as_str()), Some("a1"));
    }
}
