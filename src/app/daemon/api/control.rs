//! Creating, removing, starting, stopping and restarting instances over the API. Each does
//! what its command does, through the same code (`instance::create`, `instance::remove`,
//! `instance::lifecycle`, `instance::settings`), and records `api` as the actor in the audit
//! log. Then the daemon acts on it at once, as it does when a command asks.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::extract::{ApiJson, InstanceParam, OptionalJson};
use super::{api_error, blocking, instances, ApiError, AppState, PassReport, Wake};
use crate::app::instances::create::{self, CreateError, NewInstance};
use crate::app::instances::lifecycle::{self, Verb, WaitError};
use crate::app::instances::remove::{self, RemoveError, Removed};
use crate::app::instances::soul::{BuiltinSoul, Soul};
use crate::domain::instance::config::{FieldError, LifecycleMode};
use crate::domain::instance::settings::Settings;
use crate::domain::instance::InstanceName;
use crate::infra::store::{now_ms, StoreError};

/// Who the audit log says acted.
const API_ACTOR: &str = "api";

/// How long a request waits for the reconcile pass it asked for.
const PASS_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NoSuchInstance(_) => api_error(StatusCode::NOT_FOUND, e),
        StoreError::InstanceExists(_) => api_error(StatusCode::CONFLICT, e),
        e => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Asks for a reconcile pass and waits for it (None when none finished in time).
async fn run_pass(s: &AppState) -> Option<PassReport> {
    let (tx, rx) = oneshot::channel();
    let _ = s.wake.send(Wake::Api(Some(tx)));
    tokio::time::timeout(PASS_WAIT, rx).await.ok()?.ok()
}

/// `{"wait": true}` waits, as `--wait` does, until the daemon reports the new state.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActRequest {
    #[serde(default)]
    wait: bool,
}

pub(super) async fn start(
    s: State<AppState>,
    name: InstanceParam,
    body: OptionalJson<ActRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(s, name, Verb::Start, body).await
}

pub(super) async fn stop(
    s: State<AppState>,
    name: InstanceParam,
    body: OptionalJson<ActRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(s, name, Verb::Stop, body).await
}

pub(super) async fn restart(
    s: State<AppState>,
    name: InstanceParam,
    body: OptionalJson<ActRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    act(s, name, Verb::Restart, body).await
}

/// Records the change, runs a pass, and waits if asked; answers with the instance's entry of
/// the status report, and a note when the engine is away.
async fn act(
    State(s): State<AppState>,
    InstanceParam(name): InstanceParam,
    verb: Verb,
    OptionalJson(req): OptionalJson<ActRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let since = now_ms();
    let names = vec![name.to_string()];
    let asked = names.clone();
    blocking(&s, move |store| {
        lifecycle::request(store, &asked, verb, API_ACTOR).map_err(store_error)
    })
    .await?;
    let mut note = None;
    match run_pass(&s).await {
        Some(pass) if !pass.docker => {
            if req.wait {
                return Err(api_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    lifecycle::ENGINE_AWAY_NO_WAIT,
                ));
            }
            note = Some(lifecycle::ENGINE_AWAY);
        }
        _ if req.wait => {
            blocking(&s, move |store| {
                lifecycle::wait_for(store, &names, verb, since, lifecycle::WAIT).map_err(
                    |e| match e {
                        WaitError::Store(e) => store_error(e),
                        e @ WaitError::Failed { .. } => api_error(StatusCode::CONFLICT, e),
                        e @ WaitError::TimedOut(_) => api_error(StatusCode::GATEWAY_TIMEOUT, e),
                    },
                )
            })
            .await?;
        }
        _ => {}
    }
    let Json(entry) = instances::one(State(s), axum::extract::Path(name.to_string())).await?;
    Ok(Json(serde_json::json!({ "instance": entry, "note": note })))
}

/// A new instance: `create-instance`'s flags as keys. The persona is a built-in `soul` or
/// the text of one (`soul_text`): the daemon reads no file a caller names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    name: String,
    #[serde(default)]
    soul: Option<BuiltinSoul>,
    #[serde(default)]
    soul_text: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    lifecycle: Option<LifecycleMode>,
    #[serde(default)]
    memory: Option<String>,
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default)]
    pids: Option<u32>,
}

/// The request key that sets a config key, so errors speak the caller's language.
fn key_for(e: &FieldError) -> String {
    let key = match e.path.as_str() {
        p if p.starts_with("model") => "model",
        "limits.memory" => "memory",
        "limits.cpus" => "cpus",
        "limits.pids" => "pids",
        "port" => "port",
        "lifecycle.mode" => "lifecycle",
        other => return format!("{other} (in the config template)"),
    };
    format!("{key:?}")
}

fn create_error(e: CreateError) -> ApiError {
    match e {
        CreateError::Store(e) => store_error(e),
        e @ (CreateError::PortInUse { .. } | CreateError::Stray(_)) => {
            api_error(StatusCode::CONFLICT, e)
        }
        e => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

pub(super) async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    // Every input is checked before anything is written, as by `create-instance`.
    let name =
        InstanceName::parse_new(&req.name).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    let soul = match (req.soul, req.soul_text) {
        (Some(_), Some(_)) => {
            return Err(api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give soul or soul_text, not both",
            ))
        }
        (_, Some(text)) => Soul::from_text(text).map_err(|why| {
            api_error(StatusCode::UNPROCESSABLE_ENTITY, format!("soul_text {why}"))
        })?,
        (soul, None) => Soul::builtin(soul.unwrap_or(BuiltinSoul::Assistant)),
    };
    let settings = Settings {
        model: req.model,
        port: req.port,
        lifecycle: req.lifecycle,
        memory: req.memory,
        cpus: req.cpus,
        pids: req.pids,
    };
    let config = settings.config().map_err(|e| {
        api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{}: {}", key_for(&e), e.message),
        )
    })?;
    let new = NewInstance { name, soul, config };
    let home = s.home.clone();
    let answer = blocking(&s, move |store| {
        let paths = create::create(&home, store, &new, API_ACTOR).map_err(create_error)?;
        Ok(serde_json::json!({
            "name": new.name.as_str(),
            "soul": new.soul.label,
            "model": new.config.model.spec(),
            "dir": paths.dir,
        }))
    })
    .await?;
    // Its port, if it has one, opens at the next pass.
    let _ = s.wake.send(Wake::Api(None));
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `?purge=true` deletes the files and history instead of archiving them.
#[derive(Debug, Deserialize)]
pub(super) struct RemoveQuery {
    #[serde(default)]
    purge: Option<String>,
}

pub(super) async fn remove(
    State(s): State<AppState>,
    InstanceParam(name): InstanceParam,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let purge = match q.purge.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!("purge {other:?}: expected true or false"),
            ))
        }
    };
    let home = s.home.clone();
    let shown = name.to_string();
    let removed = blocking(&s, move |store| {
        remove::remove(&home, store, &name, purge, API_ACTOR).map_err(|e| match e {
            RemoveError::Store(e) => store_error(e),
            e => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
        })
    })
    .await?;
    // The container goes now, as after `remove`.
    run_pass(&s).await;
    let (purged, archive) = match removed {
        Removed::Archived(path) => (false, path),
        Removed::Purged => (true, None),
    };
    Ok(Json(serde_json::json!({
        "name": shown,
        "removed": true,
        "purged": purged,
        "archive": archive,
    })))
}
