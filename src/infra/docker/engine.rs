//! The host's one seam to a container engine: the operations the daemon uses, as a trait.
//! [`DockerEngine`] is the real one (today's bollard calls in this module's siblings); the
//! in-memory [`super::fake::FakeEngine`] stands in for it in unit tests, so logic that drives
//! containers (the reconcile pass) is tested without an engine.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};

use super::container::{
    self, ContainerEvent, ContainerState, LogChunk, LogsRequest, OwnedContainer,
};
use super::hardening::{self, Inspected};
use super::stats::{self, RawStats};
use super::{Client, DockerError};
use crate::infra::container_spec::ContainerSpec;

/// What an engine call returns.
pub type EngineResult<'a, T> = BoxFuture<'a, Result<T, DockerError>>;

/// A container engine as the host uses it. Every container call is about containers the
/// caller owns; "gone" is an answer (`None`, or success for stop/remove), not an error.
pub trait Engine: Send + Sync {
    /// Checks the engine answers.
    fn ping(&self) -> EngineResult<'_, ()>;
    /// Whether the image `tag` exists.
    fn image_exists<'a>(&'a self, tag: &'a str) -> EngineResult<'a, bool>;
    /// Every container (running or not) labelled as this home's.
    fn list<'a>(&'a self, home_id: &'a str) -> EngineResult<'a, Vec<OwnedContainer>>;
    /// Creates the container of `spec` (not started); returns its id.
    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> EngineResult<'a, String>;
    fn start<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()>;
    /// Stops gracefully: SIGTERM, then SIGKILL after `timeout_secs`.
    fn stop<'a>(&'a self, id: &'a str, timeout_secs: i32) -> EngineResult<'a, ()>;
    fn remove<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()>;
    /// The container's run state; `None` when it no longer exists.
    fn inspect<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<ContainerState>>;
    /// The container as a hardening audit sees it; `None` when it no longer exists.
    fn inspect_hardening<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<Inspected>>;
    /// What [`Engine::inspect_hardening`] must find for a container of `spec`.
    fn expected_hardening(&self, spec: &ContainerSpec) -> hardening::Hardening {
        hardening::Hardening::expected(spec)
    }
    /// The container's output as `request` asks.
    fn logs<'a>(
        &'a self,
        id: &'a str,
        request: LogsRequest,
    ) -> BoxStream<'a, Result<LogChunk, DockerError>>;
    /// Lifecycle events of this home's containers, as they happen.
    fn events<'a>(&'a self, home_id: &'a str)
        -> BoxStream<'a, Result<ContainerEvent, DockerError>>;
    /// One reading of the container's resource counters.
    fn stats<'a>(&'a self, id: &'a str) -> EngineResult<'a, RawStats>;
    /// The engine and container id to run a command in (`exec`): on a swarm, the task's
    /// container on its node; None when that node's engine cannot be reached from here.
    fn exec_target<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<(Client, String)>>;
}

/// When a running container started (Unix ms); None when it is gone, has not started or the
/// engine does not say.
pub async fn started_at(engine: &dyn Engine, id: &str) -> Option<i64> {
    let s = engine.inspect(id).await.ok()??;
    s.running
        .then(|| s.started_at.as_deref().and_then(container::parse_time))
        .flatten()
}

/// The Docker Engine, through bollard.
#[derive(Clone)]
pub struct DockerEngine(Client);

impl DockerEngine {
    pub fn new(client: Client) -> Self {
        Self(client)
    }

    /// The bollard client, for the calls outside the seam (images, exec, probes).
    pub fn client(&self) -> &Client {
        &self.0
    }
}

impl Engine for DockerEngine {
    fn ping(&self) -> EngineResult<'_, ()> {
        super::ping(&self.0).boxed()
    }

    fn image_exists<'a>(&'a self, tag: &'a str) -> EngineResult<'a, bool> {
        async move { Ok(super::image::inspect(&self.0, tag).await?.is_some()) }.boxed()
    }

    fn list<'a>(&'a self, home_id: &'a str) -> EngineResult<'a, Vec<OwnedContainer>> {
        container::list_owned(&self.0, home_id).boxed()
    }

    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> EngineResult<'a, String> {
        container::create(&self.0, spec).boxed()
    }

    fn start<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()> {
        container::start(&self.0, id).boxed()
    }

    fn stop<'a>(&'a self, id: &'a str, timeout_secs: i32) -> EngineResult<'a, ()> {
        container::stop(&self.0, id, timeout_secs).boxed()
    }

    fn remove<'a>(&'a self, id: &'a str) -> EngineResult<'a, ()> {
        container::remove(&self.0, id).boxed()
    }

    fn inspect<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<ContainerState>> {
        container::state(&self.0, id).boxed()
    }

    fn inspect_hardening<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<Inspected>> {
        hardening::inspect_hardening(&self.0, id).boxed()
    }

    fn logs<'a>(
        &'a self,
        id: &'a str,
        request: LogsRequest,
    ) -> BoxStream<'a, Result<LogChunk, DockerError>> {
        container::logs_with(&self.0, id, request).boxed()
    }

    fn events<'a>(
        &'a self,
        home_id: &'a str,
    ) -> BoxStream<'a, Result<ContainerEvent, DockerError>> {
        container::events(&self.0, home_id).boxed()
    }

    fn stats<'a>(&'a self, id: &'a str) -> EngineResult<'a, RawStats> {
        stats::sample(&self.0, id).boxed()
    }

    fn exec_target<'a>(&'a self, id: &'a str) -> EngineResult<'a, Option<(Client, String)>> {
        async move { Ok(Some((self.0.clone(), id.to_string()))) }.boxed()
    }
}
