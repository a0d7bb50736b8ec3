//! Instances as services of a Docker Swarm (`[engine] kind = "swarm"`): the [`Engine`] the
//! reconciler drives, over services and tasks instead of containers.
//!
//! An instance's "container" is its service (one replica, or none while stopped), and its
//! id is the service's. Starting a stopped service asks for its replica; starting one whose
//! task ended (or was lost with its node) forces a new task, which the swarm places on a
//! ready node. The swarm itself never restarts a task (restart condition "none"): restarts,
//! backoff and crash loops stay the reconciler's, exactly as on one host.

mod events;
pub mod logs;
pub mod nodes;
mod objects;
mod push;
pub mod spec;
pub mod tasks;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{Service, Task};
use bollard::query_parameters::{
    InspectServiceOptions, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    UpdateServiceOptionsBuilder,
};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};

use super::container::{
    parse_time, ContainerEvent, ContainerState, LogChunk, LogsRequest, OwnedContainer,
};
use super::engine::{Engine, EngineResult};
use super::hardening::{self, Hardening, Inspected};
use super::stats::{self, RawStats};
use super::{is_not_found, Client, DockerError};
use crate::domain::engine_config::SwarmConfig;
use crate::infra::container_spec::{ContainerSpec, LABEL_HOME, LABEL_INSTANCE, LABEL_SPEC_HASH};
use tasks::{NodeSeen, TaskView};

/// What the swarm engine needs besides the manager's client.
#[derive(Debug, Clone)]
pub struct Settings {
    pub swarm: SwarmConfig,
    /// The agent image's repository (`docker.image`), pushed as `<registry>/<repository>`.
    pub repository: String,
    /// The supervisor's home: what the shared storage's `device` names.
    pub home: PathBuf,
    pub stop_grace_secs: i32,
}

impl Settings {
    /// The swarm engine's settings, when supervisor.toml chooses it.
    pub fn of(
        host: &crate::domain::host_config::HostConfig,
        home: &std::path::Path,
    ) -> Option<Self> {
        host.engine.swarm().map(|swarm| Self {
            swarm: swarm.clone(),
            repository: host.docker.image.clone(),
            home: home.to_path_buf(),
            stop_grace_secs: host.daemon.stop_timeout_secs(),
        })
    }
}

/// The swarm, through its manager (this host's engine).
#[derive(Clone)]
pub struct SwarmEngine {
    client: Client,
    settings: Arc<Settings>,
    /// This engine's own node id: its tasks' containers are reached through `client`.
    own_node: String,
    /// Local image tag to the pushed image's reference by digest.
    pushed: Arc<Mutex<HashMap<String, String>>>,
    /// Whether the manager's API carries no-new-privileges for services (1.44 and later).
    no_new_privileges: bool,
    /// Node engines by endpoint, connected once.
    node_clients: Arc<tokio::sync::Mutex<HashMap<String, Client>>>,
}

fn swarm_err(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    move |source| DockerError::Swarm { action, source }
}

impl SwarmEngine {
    /// Checks that the engine manages a swarm, and learns its node id.
    pub async fn connect(client: Client, settings: Settings) -> Result<Self, DockerError> {
        let info = client
            .info()
            .await
            .map_err(swarm_err("read the engine's swarm state"))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            return Err(DockerError::NotSwarm);
        }
        let v = client.client_version();
        let no_new_privileges = (v.major_version, v.minor_version) >= (1, 44);
        Ok(Self {
            no_new_privileges,
            client,
            settings: Arc::new(settings),
            own_node: swarm.node_id.unwrap_or_default(),
            pushed: Arc::default(),
            node_clients: Arc::default(),
        })
    }

    /// Every node, as the reconciler judges tasks by it.
    async fn nodes_seen(&self) -> Result<HashMap<String, NodeSeen>, DockerError> {
        Ok(nodes::list(&self.client)
            .await?
            .into_iter()
            .map(|n| {
                let ready = n.state == "ready";
                (
                    n.id,
                    NodeSeen {
                        hostname: n.hostname,
                        ready,
                    },
                )
            })
            .collect())
    }

    /// This home's services, each with its current task, if it has one.
    async fn placed(&self, home_id: &str) -> Result<Vec<(Service, Option<TaskView>)>, DockerError> {
        let filters =
            HashMap::from([("label".to_string(), vec![format!("{LABEL_HOME}={home_id}")])]);
        let services = self
            .client
            .list_services(Some(
                ListServicesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(swarm_err("list the home's services"))?;
        let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        let tasks = self.tasks_of(&ids).await?;
        let nodes = self.nodes_seen().await?;
        Ok(services
            .into_iter()
            .map(|s| {
                let view =
                    s.id.as_deref()
                        .and_then(|id| tasks::current(&tasks, id, &nodes));
                (s, view)
            })
            .collect())
    }

    /// Which of the home's instances run where: node id → instance names (sorted), for the
    /// tasks that run or are on their way on a node.
    pub async fn instances_by_node(
        &self,
        home_id: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, DockerError> {
        let placed = self.placed(home_id).await?;
        Ok(nodes::group(placed.into_iter().filter_map(|(s, view)| {
            let view = view.filter(|v| v.running)?;
            let instance = s.spec?.labels?.get(LABEL_INSTANCE)?.clone();
            Some((view.node_id?, instance))
        })))
    }

    async fn tasks_of(&self, service_ids: &[String]) -> Result<Vec<Task>, DockerError> {
        if service_ids.is_empty() {
            return Ok(Vec::new());
        }
        let filters = HashMap::from([("service".to_string(), service_ids.to_vec())]);
        self.client
            .list_tasks(Some(
                ListTasksOptionsBuilder::default().filters(&filters).build(),
            ))
            .await
            .map_err(swarm_err("list the services' tasks"))
    }

    async fn service(&self, id: &str) -> Result<Option<Service>, DockerError> {
        match self
            .client
            .inspect_service(id, None::<InspectServiceOptions>)
            .await
        {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(DockerError::Swarm {
                action: "inspect a service",
                source,
            }),
        }
    }

    /// The service's current task, if it has any.
    async fn current_task(&self, id: &str) -> Result<Option<TaskView>, DockerError> {
        let tasks = self.tasks_of(&[id.to_string()]).await?;
        let nodes = self.nodes_seen().await?;
        Ok(tasks::current(&tasks, id, &nodes))
    }

    /// The engine a task's container lives in: this one for the manager's own tasks, the
    /// node's configured endpoint otherwise; None when none is configured.
    async fn engine_of(&self, view: &TaskView) -> Result<Option<Client>, DockerError> {
        let Some(node_id) = &view.node_id else {
            return Ok(None);
        };
        if *node_id == self.own_node {
            return Ok(Some(self.client.clone()));
        }
        let nodes = &self.settings.swarm.nodes;
        let endpoint = nodes
            .get(node_id)
            .or_else(|| view.node.as_ref().and_then(|h| nodes.get(h)));
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        self.node_client(endpoint).await.map(Some)
    }

    /// A node's engine at `endpoint` (from `[engine.swarm.nodes]`), connected once.
    async fn node_client(&self, endpoint: &str) -> Result<Client, DockerError> {
        let mut cache = self.node_clients.lock().await;
        if let Some(c) = cache.get(endpoint) {
            return Ok(c.clone());
        }
        let cfg = crate::domain::host_config::DockerConfig {
            host: Some(endpoint.to_string()),
            ..Default::default()
        };
        let client = tokio::time::timeout(Duration::from_secs(10), super::connect(&cfg))
            .await
            .map_err(|_| DockerError::NodeUnreachable {
                id: endpoint.to_string(),
            })??;
        cache.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }

    fn inputs<'a>(&'a self, image: &'a str, spec: &'a ContainerSpec) -> spec::ServiceInputs<'a> {
        spec::ServiceInputs {
            image,
            network: &spec.name,
            storage: &self.settings.swarm.storage,
            home: &self.settings.home,
            stop_grace_secs: self.settings.stop_grace_secs,
            no_new_privileges: self.no_new_privileges,
            ipc_rescan_ms: self.settings.swarm.poll_interval().as_millis() as u64,
        }
    }

    /// Changes the service's spec with `edit`, against the version read. The manager bumps
    /// a service's version itself (its allocator does, just after a create): an update that
    /// lost that race ("update out of sequence") reads the service again and is retried.
    async fn update(
        &self,
        id: &str,
        edit: impl Fn(&mut bollard::models::ServiceSpec),
    ) -> Result<(), DockerError> {
        let mut attempt = 0;
        loop {
            let service = self.service(id).await?.ok_or_else(|| DockerError::Swarm {
                action: "update a service",
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message: format!("service {id} not found"),
                },
            })?;
            let version = service.version.and_then(|v| v.index).unwrap_or(0);
            let mut spec = service.spec.unwrap_or_default();
            edit(&mut spec);
            let result = self
                .client
                .update_service(
                    id,
                    spec,
                    UpdateServiceOptionsBuilder::default()
                        .version(version as i32)
                        .build(),
                    None,
                )
                .await;
            match result {
                Err(e) if attempt < 10 && out_of_sequence(&e) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                other => return other.map(drop).map_err(swarm_err("update a service")),
            }
        }
    }

    /// Waits until the service has no task running or on its way (its node gone counts as
    /// not running), for at most `limit`.
    async fn settle(&self, id: &str, limit: Duration) -> Result<(), DockerError> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let tasks = self.tasks_of(&[id.to_string()]).await?;
            let nodes = self.nodes_seen().await?;
            let busy = tasks
                .iter()
                .filter(|t| t.service_id.as_deref() == Some(id))
                .any(|t| tasks::alive_on_ready_node(t, &nodes));
            if !busy || tokio::time::Instant::now() >= until {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The policy a service of `spec` carries, read back from the service the engine would
    /// create (with a stand-in image: the image is not a hardening setting).
    fn expected_for(&self, spec: &ContainerSpec) -> Hardening {
        match spec::service_spec(spec, &self.inputs("image", spec)) {
            Ok(s) => Hardening::from_service(&s),
            Err(_) => Hardening::expected(spec),
        }
    }
}

/// The manager's answer to an update against a version that is no longer the service's.
fn out_of_sequence(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { message, .. }
        if message.contains("update out of sequence"))
}

fn owned(service: &Service, view: Option<&TaskView>) -> Option<OwnedContainer> {
    let spec = service.spec.as_ref()?;
    let labels = spec.labels.clone().unwrap_or_default();
    Some(OwnedContainer {
        id: service.id.clone()?,
        name: spec.name.clone().unwrap_or_default(),
        instance: labels.get(LABEL_INSTANCE).cloned().unwrap_or_default(),
        spec_hash: labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default(),
        running: view.is_some_and(|v| v.running),
        created: service
            .created_at
            .as_deref()
            .and_then(parse_time)
            .map_or(0, |ms| ms / 1000),
        labels,
        node: view.filter(|v| v.running).and_then(|v| v.node.clone()),
    })
}

impl Engine for SwarmEngine {
    fn ping(&self) -> EngineResult<'_, ()> {
        super::ping(&self.client).boxed()
    }

    fn image_exists<'a>(&'a self, tag: &'a str) -> EngineResult<'a, bool> {
        async move { Ok(super::image::inspect(&self.client, tag).await?.is_some()) }.boxed()
    }

    fn list<'a>(&'a self, home_id: &'a str) -> EngineResult<'a, Vec<OwnedContainer>> {
        async move {
            let placed = self.placed(home_id).await?;
            Ok(placed
                .iter()
                .filter_map(|(s, view)| owned(s, view.as_ref()))
                .collect())
        }
        .boxed()
    }

    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> EngineResult<'a, String> {
        async move {
            let image = self.image_ref(&spec.image).await?;
            self.ensure_network(spec).await?;
            let service = spec::service_spec(spec, &self.inputs(&image, spec))
                .map_err(DockerError::SwarmSpec)?;
            let created = self
                .client
                .create_service(service, None)
                .await
                .map_err(|source| DockerError::CreateContainer {
                    image: image.clone(),
                    source,
                })?;
            created.id.ok_or_else(|| DockerError::Swarm {
                action: "create a service",
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 500,
                    message: "the engine returned no service id".to_string(),
                },
            })
        }
        .boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()> {
        async move {
            self.update(id, |spec| {
                let replicated = spec
                    .mode
                    .get_or_insert_with(Default::default)
                    .replicated
                    .get_or_insert_with(Default::default);
                if replicated.replicas.unwrap_or(0) == 0 {
                    replicated.replicas = Some(1);
                } else {
                    // Its one task ended, or went with its node: a new one, placed afresh.
                    let t = spec.task_template.get_or_insert_with(Default::default);
                    t.force_update = Some(t.force_update.unwrap_or(0) + 1);
                }
            })
            .await
            .map_err(|e| match e {
                DockerError::Swarm { source, .. } => DockerError::StartContainer {
                    id: id.to_string(),
                    source,
                },
                other => other,
            })
        }
        .boxed()
    }

    fn stop<'a>(&'a self, id: &'a str, timeout_secs: i32) -> EngineResult<'a, ()> {
        async move {
            if self.service(id).await?.is_none() {
                return Ok(());
            }
            self.update(id, |spec| {
                spec.mode.get_or_insert_with(Default::default).replicated =
                    Some(bollard::models::ServiceSpecModeReplicated { replicas: Some(0) });
            })
            .await?;
            let limit = Duration::from_secs(timeout_secs.max(0) as u64 + 20);
            self.settle(id, limit).await
        }
        .boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()> {
        async move {
            let Some(service) = self.service(id).await? else {
                return Ok(());
            };
            let spec = service.spec.unwrap_or_default();
            let name = spec.name.unwrap_or_default();
            let service_labels = spec.labels.unwrap_or_default();
            match self.client.delete_service(id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => {
                    return Err(DockerError::RemoveContainer {
                        id: id.to_string(),
                        source,
                    })
                }
            }
            self.remove_volumes(&service_labels).await;
            // The network goes once no task is attached to it any more. A task on a lost
            // node never detaches: its network is then left, and reused by the next service
            // of that name (`ensure_network`).
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                match self.client.remove_network(&name).await {
                    Ok(()) => break,
                    Err(e) if is_not_found(&e) => break,
                    Err(e) if tokio::time::Instant::now() >= until => {
                        tracing::info!(network = %name, error = %e, "an instance's network is still in use; it is kept for its next service");
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn inspect<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<ContainerState>> {
        async move {
            if self.service(id).await?.is_none() {
                return Ok(None);
            }
            Ok(Some(match self.current_task(id).await? {
                Some(view) => view.state,
                None => ContainerState {
                    running: false,
                    exit_code: None,
                    oom_killed: false,
                    started_at: None,
                    finished_at: None,
                },
            }))
        }
        .boxed()
    }

    fn inspect_hardening<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<Inspected>> {
        async move {
            let Some(service) = self.service(id).await? else {
                return Ok(None);
            };
            let view = self.current_task(id).await?;
            // The live container, where its node's engine can be asked.
            if let Some(view) = view.as_ref().filter(|v| v.running) {
                if let (Some(container), Some(engine)) =
                    (&view.container_id, self.engine_of(view).await?)
                {
                    if let Some(found) =
                        hardening::inspect_task_hardening(&engine, container).await?
                    {
                        return Ok(Some(found));
                    }
                }
            }
            // Otherwise the policy the swarm hands every node for this service (which names
            // its networks by id: they are read back as names, as a container shows them).
            let mut spec = service.spec.clone().unwrap_or_default();
            if let Some(nets) = spec
                .task_template
                .as_mut()
                .and_then(|t| t.networks.as_mut())
            {
                for n in nets.iter_mut() {
                    let Some(target) = n.target.clone() else {
                        continue;
                    };
                    if let Ok(found) = self
                        .client
                        .inspect_network(
                            &target,
                            None::<bollard::query_parameters::InspectNetworkOptions>,
                        )
                        .await
                    {
                        n.target = found.name.or(Some(target));
                    }
                }
            }
            Ok(Some(Inspected {
                id: id.to_string(),
                name: spec.name.clone().unwrap_or_default(),
                running: view.as_ref().is_some_and(|v| v.running),
                labels: spec.labels.clone().unwrap_or_default(),
                hardening: Hardening::from_service(&spec),
                from_service_spec: true,
            }))
        }
        .boxed()
    }

    fn expected_hardening(&self, spec: &ContainerSpec) -> Hardening {
        self.expected_for(spec)
    }

    fn logs<'a>(
        &'a self,
        id: &'a str,
        request: LogsRequest,
    ) -> BoxStream<'a, Result<LogChunk, DockerError>> {
        let mut demux = logs::Demux::default();
        self.client
            .service_logs(id, Some(super::container::logs_options(request)))
            .map(move |item| match item {
                Ok(out) => Ok(demux.push(&out.into_bytes())),
                Err(source) => Err(DockerError::Logs {
                    id: id.to_string(),
                    source,
                }),
            })
            .flat_map(|r| {
                futures_util::stream::iter(match r {
                    Ok(chunks) => chunks.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                })
            })
            .boxed()
    }

    fn events<'a>(
        &'a self,
        home_id: &'a str,
    ) -> BoxStream<'a, Result<ContainerEvent, DockerError>> {
        events::polled(self, home_id, self.settings.swarm.poll_interval())
    }

    fn exec_target<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<(Client, String)>> {
        async move {
            let Some(view) = self.current_task(id).await?.filter(|v| v.running) else {
                return Ok(None);
            };
            let Some(container) = view.container_id.clone() else {
                return Ok(None);
            };
            Ok(self
                .engine_of(&view)
                .await?
                .map(|engine| (engine, container)))
        }
        .boxed()
    }

    fn stats<'a>(&'a self, id: &'a str) -> EngineResult<'a, RawStats> {
        async move {
            let view = self.current_task(id).await?.filter(|v| v.running);
            let unreachable = || DockerError::NodeUnreachable { id: id.to_string() };
            let view = view.ok_or_else(unreachable)?;
            let (Some(container), Some(engine)) =
                (view.container_id.clone(), self.engine_of(&view).await?)
            else {
                return Err(unreachable());
            };
            stats::sample(&engine, &container).await
        }
        .boxed()
    }
}
