//! The only code that talks to the Docker Engine API (through bollard). Every operation has
//! its own error variant; "not found" is decided by HTTP status, never by message text.

pub mod attached;
pub mod container;
pub mod engine;
pub mod exec;
#[cfg(test)]
pub mod fake;
pub mod hardening;
pub mod hardening_diff;
pub mod image;
pub mod probe;
pub mod stats;
pub mod swarm;

use bollard::Docker;

use crate::domain::host_config::DockerConfig;

pub use bollard::Docker as Client;
pub use engine::{DockerEngine, Engine};

/// The oldest Engine API this code is written against (Docker 20.10).
pub const MIN_API: &str = "1.41";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine at {endpoint}: {source} (is the Docker daemon running? set docker.host in supervisor.toml or DOCKER_HOST)")]
    Connect {
        endpoint: String,
        source: bollard::errors::Error,
    },
    #[error("building image {tag} failed: {message}")]
    Build { tag: String, message: String },
    #[error("inspecting image {tag} failed: {source}")]
    InspectImage {
        tag: String,
        source: bollard::errors::Error,
    },
    #[error("removing image {tag} failed: {source}")]
    RemoveImage {
        tag: String,
        source: bollard::errors::Error,
    },
    #[error("image {0} does not exist: run `supervisor image build`")]
    NoImage(String),
    #[error("creating container from {image} failed: {source}")]
    CreateContainer {
        image: String,
        source: bollard::errors::Error,
    },
    #[error("starting container {id} failed: {source}")]
    StartContainer {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("waiting for container {id} failed: {source}")]
    WaitContainer {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("reading logs of container {id} failed: {source}")]
    Logs {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("stopping container {id} failed: {source}")]
    StopContainer {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("inspecting container {id} failed: {source}")]
    InspectContainer {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("listing containers failed: {0}")]
    ListContainers(bollard::errors::Error),
    #[error("the Docker event stream failed: {0}")]
    Events(bollard::errors::Error),
    #[error("removing container {id} failed: {source}")]
    RemoveContainer {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("reading stats of container {id} failed: {source}")]
    Stats {
        id: String,
        source: bollard::errors::Error,
    },
    #[error("asking the engine for its version failed: {0}")]
    Version(bollard::errors::Error),
    #[error("cannot {action} in the swarm: {source}")]
    Swarm {
        action: &'static str,
        source: bollard::errors::Error,
    },
    #[error("pushing the agent image {image} to the swarm's registry failed: {message} (every node pulls it from engine.swarm.registry: is the registry up, and trusted by this engine?)")]
    Push { image: String, message: String },
    #[error(transparent)]
    SwarmSpec(#[from] swarm::spec::SpecError),
    #[error("{id}: the engine of its swarm node is not reachable from here: add the node to [engine.swarm.nodes] in supervisor.toml, or check its endpoint there")]
    NodeUnreachable { id: String },
    #[error("listing the swarm's nodes failed: {0}")]
    Nodes(bollard::errors::Error),
    #[error("this engine is not a swarm manager: run `docker swarm init` on it (or `docker swarm join` it to a swarm and point docker.host in supervisor.toml at a manager), or set engine.kind = \"docker\" (docs/scale.md)")]
    NotSwarm,
}

/// The endpoint the config asks for: `docker.host`, else `DOCKER_HOST`, else the local socket.
pub fn endpoint(cfg: &DockerConfig) -> String {
    cfg.host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

/// Connects and agrees on an API version the engine speaks (older engines are common).
pub async fn connect(cfg: &DockerConfig) -> Result<Docker, DockerError> {
    let endpoint = endpoint(cfg);
    let err = |source| DockerError::Connect {
        endpoint: endpoint.clone(),
        source,
    };
    let docker = Docker::connect_with_host(&endpoint).map_err(err)?;
    docker.negotiate_version().await.map_err(err)
}

/// Connects to the engine `host` names and wraps it as the [`Engine`] the daemon drives:
/// this host's containers, or the swarm's services (`[engine] kind = "swarm"`). The client
/// is the one to this host's engine (the swarm's manager) for everything outside the seam.
pub async fn connect_engine(
    host: &crate::domain::host_config::HostConfig,
    home: &std::path::Path,
) -> Result<(Docker, std::sync::Arc<dyn Engine>), DockerError> {
    let client = connect(&host.docker).await?;
    let engine: std::sync::Arc<dyn Engine> = match swarm::Settings::of(host, home) {
        Some(settings) => {
            std::sync::Arc::new(swarm::SwarmEngine::connect(client.clone(), settings).await?)
        }
        None => std::sync::Arc::new(DockerEngine::new(client.clone())),
    };
    Ok((client, engine))
}

/// Checks the engine answers.
pub async fn ping(docker: &Docker) -> Result<(), DockerError> {
    docker
        .ping()
        .await
        .map(drop)
        .map_err(|source| DockerError::Connect {
            endpoint: "the engine".to_string(),
            source,
        })
}

/// True when bollard reports an HTTP 404 from the engine.
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
