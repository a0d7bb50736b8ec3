//! Instances as `status --json` shows them, from the daemon's point of view.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;

use super::{api_error, blocking, ApiError, AppState};
use crate::app::status::{InstanceStatus, StatusReport, StoreFacts};

async fn report(s: &AppState) -> Result<StatusReport, ApiError> {
    let live = s.live.snapshot();
    let home = s.home.clone();
    blocking(s, move |store| {
        StoreFacts::read(store, &home)
            .map(|f| f.with_live(&live))
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await
}

/// The whole status report: daemon, engine, runtime, database and every instance.
pub(super) async fn list(State(s): State<AppState>) -> Result<Json<StatusReport>, ApiError> {
    report(&s).await.map(Json)
}

pub(super) async fn one(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<InstanceStatus>, ApiError> {
    crate::domain::instance::InstanceName::parse(&name)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    report(&s)
        .await?
        .instances
        .into_iter()
        .find(|i| i.name == name)
        .map(Json)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, format!("no instance named {name:?}")))
}
