//! The daemon's API on its unix socket (`run/supervisor.sock`, mode 0600): only this user
//! can connect, so no token is needed here.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::messaging::MessagingHandle;
use crate::fsutil;
use crate::home::Home;
use crate::instance::{InstanceConfig, InstanceName};
use crate::router::policy;
use crate::store::messages::Inbound;
use crate::store::Store;
use axum::extract::Path as UrlPath;
use axum::http::StatusCode;

pub const SOCKET_FILE: &str = "supervisor.sock";

/// Why the reconciler was woken.
#[derive(Debug)]
pub enum Wake {
    /// The CLI or API changed something in the store; the sender hears when a pass that
    /// started after the request has finished.
    Api(Option<oneshot::Sender<PassReport>>),
    /// A Docker event for one of our containers.
    Docker,
    /// A container of ours exited. The engine's container list can still say "running" when
    /// the event arrives, so it is worth another look shortly after.
    DockerExit,
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
    home: Home,
    messaging: MessagingHandle,
}

/// Binds the socket (replacing a stale one: the caller holds the daemon lock, so no live
/// daemon owns it) and serves until `shutdown` resolves.
pub async fn serve(
    home: &Home,
    home_id: String,
    messaging: MessagingHandle,
    wake: mpsc::UnboundedSender<Wake>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = home.run_dir().join(SOCKET_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    fsutil::set_mode(&path, 0o600)?;
    let state = AppState {
        wake,
        home: home.clone(),
        messaging,
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
        .route("/v1/instances/{name}/messages", post(send_message))
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

/// A message for an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequest {
    pub text: String,
    /// Who wrote it; checked against the instance's allow-list.
    #[serde(default = "local")]
    pub sender: String,
    #[serde(default = "cli")]
    pub channel: String,
    /// Answer only once the turn that carries it has its final answer.
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

fn local() -> String {
    "local".into()
}
fn cli() -> String {
    "cli".into()
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

/// Most text one message may carry.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

type ApiError = (StatusCode, Json<serde_json::Value>);

fn api_error(status: StatusCode, msg: impl std::fmt::Display) -> ApiError {
    (
        status,
        Json(serde_json::json!({ "error": msg.to_string() })),
    )
}

async fn send_message(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Json(req): Json<SendRequest>,
) -> Result<Json<SendResponse>, ApiError> {
    let started = std::time::Instant::now();
    let iname = InstanceName::parse(&name).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    if req.text.len() > MAX_MESSAGE_BYTES {
        return Err(api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a message may carry at most {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let home = s.home.clone();
    let (row, disposition) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let mut store = Store::open(&home.db_path())
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        store
            .instance(iname.as_str())
            .map_err(|e| api_error(StatusCode::NOT_FOUND, e))?;
        let config = InstanceConfig::load(&home.instance_paths(&iname).config)
            .map_err(|e| api_error(StatusCode::CONFLICT, e))?;
        let disposition = policy::classify(&config, &req.sender, &req.text);
        let row = store
            .accept_message(&Inbound {
                instance: iname.as_str(),
                channel: &req.channel,
                sender: &req.sender,
                body: &req.text,
                state: disposition.state(),
            })
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok((row, disposition))
    })
    .await
    .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))??;

    let mut answers = s.messaging.subscribe();
    if disposition != policy::Disposition::Refused {
        s.messaging.poke(&name);
        // An on-demand instance's container starts for the work.
        let _ = s.wake.send(Wake::Api(None));
    }
    let mut response = SendResponse {
        id: row.id.clone(),
        instance: name.clone(),
        state: row.state.clone(),
        reply: None,
        failed: false,
        latency_ms: None,
    };
    if !req.wait || disposition != policy::Disposition::Queued {
        return Ok(Json(response));
    }
    let timeout = std::time::Duration::from_secs(req.timeout_secs.unwrap_or(120).min(3600));
    let wait = async {
        loop {
            match answers.recv().await {
                Ok(ev) if ev.message_ids.contains(&row.id) => return Some(ev),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Some(ev)) => {
            response.state = "answered".into();
            response.reply = Some(ev.body);
            response.failed = ev.failed;
            response.latency_ms = Some(started.elapsed().as_millis() as u64);
            Ok(Json(response))
        }
        _ => Err(api_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "no answer within {}s; message {} stays queued and will be answered",
                timeout.as_secs(),
                row.id
            ),
        )),
    }
}
