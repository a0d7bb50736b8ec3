//! Task operations shared by the CLI and the agent's `task_request`s: one set of rules for
//! what a valid task is and what pausing, resuming and removing mean.

use serde::Serialize;

use crate::domain::format::timestamp;
use crate::domain::schedule::{Kind, Schedule, ScheduleError};
use crate::infra::store::tasks::{NewTask, TaskRow};
use crate::infra::store::{Store, StoreError};

/// Most tasks an agent may create for its own instance (a guard against a runaway loop).
pub const MAX_AGENT_TASKS: usize = 50;
/// Longest task prompt.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// A new task as a user or an agent describes it.
#[derive(Debug, Clone)]
pub struct TaskInput<'a> {
    pub kind: Kind,
    pub schedule: &'a str,
    pub tz: Option<&'a str>,
    pub prompt: &'a str,
    /// `isolated` or `continue`.
    pub context_mode: &'a str,
}

/// Validates and stores a task; `created_by` is `cli` or `agent`.
pub fn create(
    store: &mut Store,
    instance: &str,
    input: &TaskInput,
    created_by: &str,
    now_ms: i64,
) -> Result<TaskRow, TaskError> {
    let schedule = Schedule::parse(input.kind, input.schedule, input.tz, now_ms)?;
    let prompt = input.prompt.trim();
    if prompt.is_empty() || prompt.len() > MAX_PROMPT_BYTES {
        return Err(TaskError::Invalid(format!(
            "the prompt must be 1 to {MAX_PROMPT_BYTES} bytes"
        )));
    }
    if !matches!(input.context_mode, "isolated" | "continue") {
        return Err(TaskError::Invalid(format!(
            "context mode must be isolated or continue, not {:?}",
            input.context_mode
        )));
    }
    if created_by == "agent" {
        let mine = store
            .tasks(Some(instance))?
            .iter()
            .filter(|t| t.kind == "agent")
            .count();
        if mine >= MAX_AGENT_TASKS {
            return Err(TaskError::Invalid(format!(
                "this instance already has {mine} tasks of its own (the most allowed); cancel one first"
            )));
        }
    }
    let next = schedule
        .next_after(now_ms)
        .ok_or_else(|| TaskError::Invalid("the schedule never fires".into()))?;
    let stored = schedule.stored_text();
    Ok(store.insert_task(&NewTask {
        instance,
        kind: if created_by == "agent" {
            "agent"
        } else {
            "user"
        },
        schedule_kind: schedule.kind().as_str(),
        schedule: &stored,
        tz: schedule.tz_name(),
        prompt,
        context_mode: input.context_mode,
        next_run_at: next,
        created_by,
    })?)
}

/// The parsed schedule of a stored task.
pub fn schedule_of(t: &TaskRow) -> Result<Schedule, ScheduleError> {
    Schedule::from_stored(&t.schedule_kind, &t.schedule, t.tz.as_deref())
}

pub fn pause(store: &mut Store, id: i64, actor: &str) -> Result<TaskRow, TaskError> {
    let t = store.task(id)?;
    match t.status.as_str() {
        "active" => Ok(store.set_task_status(id, "paused", t.next_run_at, actor)?),
        "paused" => Ok(t),
        other => Err(TaskError::Invalid(format!("task {id} is {other}"))),
    }
}

pub fn resume(store: &mut Store, id: i64, actor: &str, now_ms: i64) -> Result<TaskRow, TaskError> {
    let t = store.task(id)?;
    match t.status.as_str() {
        "paused" => {
            let next = schedule_of(&t)?.resume_next(t.next_run_at, now_ms);
            let status = if next.is_some() { "active" } else { "done" };
            Ok(store.set_task_status(id, status, next, actor)?)
        }
        "active" => Ok(t),
        other => Err(TaskError::Invalid(format!("task {id} is {other}"))),
    }
}

pub fn remove(store: &mut Store, id: i64, actor: &str) -> Result<(), TaskError> {
    let t = store.task(id)?;
    if t.kind == "heartbeat" {
        return Err(TaskError::Invalid(format!(
            "task {id} is {}'s heartbeat: turn it off in its config.json (heartbeat.enabled) or pause it",
            t.instance
        )));
    }
    Ok(store.remove_task(id, actor)?)
}

/// A task as `task list --json` and the agent's `list` show it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub instance: String,
    pub kind: String,
    /// E.g. `cron 0 9 * * 1-5 (Europe/Berlin)`, `every 30m`, `at 2026-12-01 09:00 (UTC)`.
    pub schedule: String,
    pub schedule_kind: String,
    pub tz: Option<String>,
    pub prompt: String,
    pub context_mode: String,
    pub status: String,
    /// RFC 3339 (UTC), or null.
    pub next_run: Option<String>,
    pub last_run: Option<String>,
    pub last_status: Option<String>,
    pub last_result: Option<String>,
    pub created_by: String,
}

pub fn view(t: &TaskRow) -> TaskView {
    TaskView {
        id: t.id,
        instance: t.instance.clone(),
        kind: t.kind.clone(),
        schedule: schedule_of(t)
            .map(|s| s.describe())
            .unwrap_or_else(|e| format!("invalid: {e}")),
        schedule_kind: t.schedule_kind.clone(),
        tz: t.tz.clone(),
        prompt: t.prompt.clone(),
        context_mode: t.context_mode.clone(),
        status: t.status.clone(),
        next_run: t.next_run_at.map(timestamp),
        last_run: t.last_run_at.map(timestamp),
        last_status: t.last_status.clone(),
        last_result: t.last_result.clone(),
        created_by: t.created_by.clone(),
    }
}
