//! Tasks over the API: the same rules as the `task` commands (`crate::app::tasks`).

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::extract::{ApiJson, InstanceParam, TaskId};
use super::{api_error, blocking, ApiError, AppState};
use crate::app::accept::{self, Courier};
use crate::app::daemon::courier::DaemonCourier;
use crate::app::tasks::{self, TaskError, TaskInput, TaskView};
use crate::domain::schedule::Kind;
use crate::infra::store::tasks::RunRow;
use crate::infra::store::{now_ms, StoreError};

fn task_error(e: TaskError) -> ApiError {
    match e {
        TaskError::Store(StoreError::NoSuchTask(_) | StoreError::NoSuchInstance(_)) => {
            api_error(StatusCode::NOT_FOUND, e)
        }
        TaskError::Store(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
        _ => api_error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

fn store_error(e: StoreError) -> ApiError {
    task_error(TaskError::Store(e))
}

/// The CLI changed a task in the store: the scheduler looks again at once.
pub(super) async fn wake_scheduler(State(s): State<AppState>) -> Json<serde_json::Value> {
    s.scheduler.wake();
    Json(serde_json::json!({ "ok": true }))
}

pub(super) async fn list_all(State(s): State<AppState>) -> Result<Json<Vec<TaskView>>, ApiError> {
    blocking(&s, |store| {
        Ok(store
            .tasks(None)
            .map_err(store_error)?
            .iter()
            .map(tasks::view)
            .collect())
    })
    .await
    .map(Json)
}

pub(super) async fn list_for(
    State(s): State<AppState>,
    InstanceParam(name): InstanceParam,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let name = name.to_string();
    blocking(&s, move |store| {
        store.instance(&name).map_err(store_error)?;
        Ok(store
            .tasks(Some(&name))
            .map_err(store_error)?
            .iter()
            .map(tasks::view)
            .collect())
    })
    .await
    .map(Json)
}

/// A new task: exactly one of `cron`, `every` and `at`, as `task add` takes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTaskRequest {
    cron: Option<String>,
    every: Option<String>,
    at: Option<String>,
    tz: Option<String>,
    prompt: String,
    #[serde(default = "isolated")]
    context: String,
}

fn isolated() -> String {
    "isolated".into()
}

pub(super) async fn create(
    State(s): State<AppState>,
    InstanceParam(iname): InstanceParam,
    ApiJson(req): ApiJson<NewTaskRequest>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let (kind, text) = match (req.cron, req.every, req.at) {
        (Some(c), None, None) => (Kind::Cron, c),
        (None, Some(e), None) => (Kind::Every, e),
        (None, None, Some(a)) => (Kind::At, a),
        _ => {
            return Err(api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give exactly one of cron, every and at",
            ))
        }
    };
    let view = blocking(&s, move |store| {
        store.instance(iname.as_str()).map_err(store_error)?;
        let input = TaskInput {
            kind,
            schedule: &text,
            tz: req.tz.as_deref(),
            prompt: &req.prompt,
            context_mode: &req.context,
        };
        tasks::create(store, iname.as_str(), &input, "api", now_ms())
            .map(|t| tasks::view(&t))
            .map_err(task_error)
    })
    .await?;
    s.scheduler.wake();
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn one(
    State(s): State<AppState>,
    TaskId(id): TaskId,
) -> Result<Json<TaskView>, ApiError> {
    blocking(&s, move |store| {
        store.task(id).map(|t| tasks::view(&t)).map_err(store_error)
    })
    .await
    .map(Json)
}

pub(super) async fn remove(
    State(s): State<AppState>,
    TaskId(id): TaskId,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(&s, move |store| {
        tasks::remove(store, id, "api").map_err(task_error)
    })
    .await?;
    s.scheduler.wake();
    Ok(Json(serde_json::json!({ "id": id, "removed": true })))
}

/// `pause`, `resume` or `run-now`.
pub(super) async fn act(
    State(s): State<AppState>,
    TaskId(id): TaskId,
    UrlPath((_, action)): UrlPath<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let answer = blocking(&s, move |store| {
        // For run-now: the run's instance, and whether its container must be started for it.
        let mut run_for = None;
        let answer = match action.as_str() {
            "pause" => tasks::pause(store, id, "api")
                .map(|t| serde_json::to_value(tasks::view(&t)).unwrap_or_default())
                .map_err(task_error),
            "resume" => tasks::resume(store, id, "api", now_ms())
                .map(|t| serde_json::to_value(tasks::view(&t)).unwrap_or_default())
                .map_err(task_error),
            "run-now" => {
                let run = store.run_task_now(id, "api").map_err(store_error)?;
                let instance = store.task(id).map_err(store_error)?.instance;
                let must_start = store
                    .instance(&instance)
                    .map_or(true, |rec| accept::must_start(&rec));
                run_for = Some((instance, must_start));
                Ok(serde_json::json!({ "id": id, "run_id": run }))
            }
            other => Err(api_error(
                StatusCode::NOT_FOUND,
                format!("unknown task action {other:?} (expected pause, resume or run-now)"),
            )),
        };
        answer.map(|a| (a, run_for))
    })
    .await;
    let (answer, run_for) = answer?;
    s.scheduler.wake();
    // A run-now message is a message like any other: its actor is told, and the reconciler
    // woken only when the container must be started for it.
    if let Some((instance, must_start)) = run_for {
        let courier = DaemonCourier {
            messaging: &s.messaging,
            reconcile: &s.wake,
        };
        courier.poke(&instance);
        if must_start {
            courier.start_instances();
        }
    }
    Ok(Json(answer))
}

pub(super) async fn runs(
    State(s): State<AppState>,
    TaskId(id): TaskId,
) -> Result<Json<Vec<RunRow>>, ApiError> {
    blocking(&s, move |store| {
        store.task(id).map_err(store_error)?;
        store.task_runs(id, 100).map_err(store_error)
    })
    .await
    .map(Json)
}
