//! The daemon's API on its unix socket (`run/supervisor.sock`, mode 0600): only this user
//! can connect, so no token is needed here.

use std::path::Path;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::fsutil;

pub const SOCKET_FILE: &str = "supervisor.sock";

/// Why the reconciler was woken.
#[derive(Debug)]
pub enum Wake {
    /// The CLI or API changed something in the store; the sender hears when a pass that
    /// started after the request has finished.
    Api(Option<oneshot::Sender<PassReport>>),
    /// A Docker event for one of our containers.
    Docker,
    /// The Docker event stream ended: the engine went away.
    DockerLost,
}

/// What a reconcile request hears back.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PassReport {
    pub actions: usize,
    pub converged: bool,
    /// False when the Docker engine was unreachable (nothing could be applied).
    pub docker: bool,
}

/// How long a reconcile request waits for its pass.
const PASS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub pid: u32,
    pub version: String,
    pub home_id: String,
}

#[derive(Clone)]
struct AppState {
    wake: mpsc::UnboundedSender<Wake>,
    health: Health,
}

/// Binds the socket (replacing a stale one: the caller holds the daemon lock, so no live
/// daemon owns it) and serves until `shutdown` resolves.
pub async fn serve(
    run_dir: &Path,
    home_id: String,
    wake: mpsc::UnboundedSender<Wake>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = run_dir.join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    fsutil::set_mode(&path, 0o600)?;
    let state = AppState {
        wake,
        health: Health {
            status: "ok".into(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            home_id,
        },
    };
    let app = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/reconcile", post(reconcile))
        .with_state(state);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "API server stopped");
        }
    }))
}

async fn health(State(s): State<AppState>) -> Json<Health> {
    Json(s.health)
}

async fn reconcile(State(s): State<AppState>) -> Json<serde_json::Value> {
    let (tx, rx) = oneshot::channel();
    let _ = s.wake.send(Wake::Api(Some(tx)));
    match tokio::time::timeout(PASS_WAIT, rx).await {
        Ok(Ok(report)) => Json(serde_json::json!({ "ok": true, "pass": report })),
        _ => Json(serde_json::json!({ "ok": true, "pass": null })),
    }
}
