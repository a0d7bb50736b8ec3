//! Liveness, readiness, the daemon's live view, metrics, and reconcile requests.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use tokio::sync::oneshot;

use super::{api_error, blocking, ApiError, AppState, Health, Wake};
use crate::app::daemon::live::LiveSnapshot;
use crate::infra::llm::budget;
use crate::infra::store::now_ms;

/// How long a reconcile request waits for its pass.
const PASS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Liveness: the daemon answers.
pub(super) async fn liveness(State(s): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        home_id: s.home_id.clone(),
    })
}

#[derive(Debug, Serialize)]
pub(super) struct Readiness {
    ready: bool,
    store: bool,
    docker: bool,
    converged: bool,
    /// What is not ready, one line each.
    problems: Vec<String>,
}

/// Readiness: the store opens, the Docker engine answers and the last reconcile pass left
/// nothing to do. 200 when ready, 503 with the reasons otherwise.
pub(super) async fn readiness(State(s): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let store = blocking(&s, |store| {
        store
            .schema_version()
            .map_err(|e| api_error(StatusCode::SERVICE_UNAVAILABLE, e))
    })
    .await;
    let live = s.live.snapshot();
    let mut problems = Vec::new();
    if let Err((_, Json(e))) = &store {
        problems.push(format!(
            "store: {}",
            e["error"].as_str().unwrap_or("unavailable")
        ));
    }
    if !live.docker_reachable {
        problems.push("docker: the engine does not answer".into());
    }
    if !live.converged {
        problems
            .push("reconciler: the last pass did not converge (see `supervisor status`)".into());
    }
    let r = Readiness {
        ready: problems.is_empty(),
        store: store.is_ok(),
        docker: live.docker_reachable,
        converged: live.converged,
        problems,
    };
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r))
}

/// What only the daemon knows (readiness, resource samples); `status` adds the store's view.
pub(super) async fn live_status(State(s): State<AppState>) -> Json<LiveSnapshot> {
    Json(s.live.snapshot())
}

/// Prometheus text exposition.
pub(super) async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let live = s.live.snapshot();
    let metrics = s.metrics.clone();
    let text = blocking(&s, move |store| {
        let records = store
            .instances()
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        let activity = store
            .activity(budget::day_start(now_ms()))
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        Ok(metrics.render(&records, &activity, &live))
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// Asks for a reconcile pass now; answers once a pass that started after the request ends.
pub(super) async fn reconcile(State(s): State<AppState>) -> Json<serde_json::Value> {
    let (tx, rx) = oneshot::channel();
    let _ = s.wake.send(Wake::Api(Some(tx)));
    match tokio::time::timeout(PASS_WAIT, rx).await {
        Ok(Ok(report)) => Json(serde_json::json!({ "ok": true, "pass": report })),
        _ => Json(serde_json::json!({ "ok": true, "pass": null })),
    }
}
