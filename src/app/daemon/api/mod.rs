//! The daemon's API. One router, served on the unix socket `run/supervisor.sock` (mode 0600:
//! only this user can connect, so no token is needed there) and, when configured, on a TCP
//! listener that demands a bearer token (`auth.rs`, `listen.rs`). Instances with a `port`
//! get their own small loopback listener (`ports.rs`), behind the same token. Only the
//! socket's callers may send as `local` (`messages.rs`). The endpoints are documented in
//! docs/api.md.

mod auth;
mod control;
mod events;
mod extract;
mod health;
pub mod info;
mod instances;
pub mod listen;
pub mod logs;
mod messages;
pub mod ports;
mod store_pool;
mod tasks;
pub mod telegram_hook;
pub mod webhook;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

pub use crate::app::accept::{EMPTY_MESSAGE, MAX_MESSAGE_BYTES};
pub use messages::{SendRequest, SendResponse, Transport, LOCAL_SENDER};

use super::live::Live;
use super::messaging::MessagingHandle;
use super::metrics::Metrics;
use super::scheduler::SchedulerHandle;
pub use super::shared::Wake;
use crate::app::instances::last_good::LastGoodConfigs;
pub use crate::app::wire::{Health, PassReport, SOCKET_FILE};
use crate::infra::fsutil;
use crate::infra::home::Home;
use crate::infra::store::Store;

/// Everything the handlers reach; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    ctx: ApiContext,
    /// The store's connections, shared by every request.
    stores: store_pool::StorePool,
}

/// What the daemon hands the API.
pub struct ApiContext {
    pub home: Home,
    pub home_id: String,
    pub messaging: MessagingHandle,
    pub scheduler: SchedulerHandle,
    pub live: Live,
    pub configs: LastGoodConfigs,
    pub metrics: Metrics,
    pub wake: mpsc::UnboundedSender<Wake>,
    /// What the daemon started with (its token's fingerprint), for `GET /v1/daemon`.
    pub started: info::Started,
    /// Turns true when the daemon stops: long-lived answers (the event stream) end then, so
    /// that shutdown does not wait for their clients.
    pub stop: watch::Receiver<bool>,
    /// The daemon's connection to the Docker engine (None while it is away), for the
    /// endpoints that read from it (`logs.rs`).
    pub docker: watch::Receiver<Option<std::sync::Arc<dyn crate::infra::docker::Engine>>>,
    /// The channels' shared parts: the Telegram webhooks open, for `telegram_hook.rs`.
    pub hub: crate::app::channels::Hub,
}

impl std::ops::Deref for AppState {
    type Target = ApiContext;
    fn deref(&self) -> &ApiContext {
        &self.0.ctx
    }
}

impl AppState {
    pub fn new(ctx: ApiContext) -> Self {
        let stores = store_pool::StorePool::new(ctx.home.db_path());
        Self(Arc::new(Shared { ctx, stores }))
    }
}

/// Every endpoint, as the unix socket serves it (TCP adds the token check in front).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health::liveness))
        .route("/v1/daemon", get(info::daemon))
        .route("/v1/ready", get(health::readiness))
        .route("/v1/status", get(health::live_status))
        .route("/metrics", get(health::metrics))
        .route("/v1/reconcile", post(health::reconcile))
        .route("/v1/scheduler/wake", post(tasks::wake_scheduler))
        .route("/v1/events", get(events::stream))
        .route("/v1/instances", get(instances::list).post(control::create))
        .route(
            "/v1/instances/{name}",
            get(instances::one).delete(control::remove),
        )
        .route("/v1/instances/{name}/start", post(control::start))
        .route("/v1/instances/{name}/stop", post(control::stop))
        .route("/v1/instances/{name}/restart", post(control::restart))
        .route("/v1/instances/{name}/logs", get(logs::stream))
        .route(
            "/v1/instances/{name}/messages",
            post(messages::send_message).get(messages::history),
        )
        .route(
            "/v1/instances/{name}/tasks",
            get(tasks::list_for).post(tasks::create),
        )
        .route("/v1/channels/webhook/{name}", post(webhook::receive))
        .route("/v1/channels/telegram/{name}", post(telegram_hook::receive))
        .route("/v1/tasks", get(tasks::list_all))
        .route("/v1/tasks/{id}", get(tasks::one).delete(tasks::remove))
        .route("/v1/tasks/{id}/{action}", post(tasks::act))
        .route("/v1/tasks/{id}/runs", get(tasks::runs))
        .fallback(extract::no_such_endpoint)
        .method_not_allowed_fallback(extract::wrong_method)
        .with_state(state)
        .layer(axum::middleware::from_fn(extract::errors_as_json))
}

/// Binds the socket (replacing a stale one: the caller holds the daemon lock, so no live
/// daemon owns it) and serves until `shutdown` resolves.
pub async fn serve_unix(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = state.home.run_dir().join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    fsutil::set_mode(&path, 0o600)?;
    let app = router(state).layer(axum::Extension(Transport::Socket));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "API server stopped");
        }
    }))
}

/// Serves the same API on TCP, every request checked against the bearer token (a plan
/// always has one: `listen::plan` refuses a listener without).
pub async fn serve_tcp(
    state: AppState,
    plan: listen::TcpPlan,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(plan.addr).await?;
    let app = router(state).layer(axum::Extension(Transport::Tcp)).layer(
        axum::middleware::from_fn_with_state(auth::Token::new(plan.token), auth::require_token),
    );
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "TCP API server stopped");
        }
    }))
}

pub use auth::Token;

pub(super) type ApiError = (StatusCode, Json<serde_json::Value>);

/// Errors are `{"error": "<one line>"}` with a fitting status.
pub(super) fn api_error(status: StatusCode, msg: impl std::fmt::Display) -> ApiError {
    (
        status,
        Json(serde_json::json!({ "error": msg.to_string() })),
    )
}

/// Runs store work off the async threads (SQLite calls block) on one of the shared
/// connections.
pub(super) async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = s.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = state
            .0
            .stores
            .take()
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let answer = f(&mut store);
        state.0.stores.give(store);
        answer
    })
    .await
    .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?
}

/// A connection of the request's own, for work that keeps it (the event stream): taken from
/// the shared ones, off the async threads, and closed when the work ends.
pub(super) async fn own_store(s: &AppState) -> Result<Store, ApiError> {
    let state = s.clone();
    tokio::task::spawn_blocking(move || state.0.stores.take())
        .await
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))
}
