//! The `tasks` and `task_runs` tables: scheduled tasks and their runs.
//!
//! Exactly once: a run is claimed by inserting its row (UNIQUE on task and occurrence) in the
//! same transaction that queues the run's message and moves the task to its next occurrence.
//! A crash either loses the whole claim (the occurrence is still due and is claimed again)
//! or keeps all of it (the message is delivered after the restart like any other), so an
//! occurrence never runs twice and is never lost.
//!
//! Run states: `claimed` (message queued), `running` (its turn was delivered), then `ok`,
//! `error`, or `silent` (the agent had nothing to say).

use rusqlite::{params, OptionalExtension, Row, Transaction};
use serde::Serialize;

use super::{now_ms, Result, Store, StoreError};

/// Longest result excerpt kept on a run.
pub const RESULT_EXCERPT_CHARS: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    pub id: i64,
    pub instance: String,
    /// `user`, `agent` or `heartbeat`.
    pub kind: String,
    pub schedule_kind: String,
    pub schedule: String,
    pub tz: Option<String>,
    pub prompt: String,
    pub context_mode: String,
    /// `active`, `paused` or `done` (a one-shot that has run).
    pub status: String,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The latest run's status and result excerpt, if it has run.
    pub last_status: Option<String>,
    pub last_result: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub task_id: i64,
    pub scheduled_for: i64,
    pub claimed_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub status: String,
    pub result: Option<String>,
    pub error: Option<String>,
    /// `schedule` or `manual` (run-now).
    pub trigger: String,
    /// Missed occurrences this run stands for: after downtime, and those that fell due while
    /// it waited to be answered.
    pub skipped: i64,
}

/// A task to insert; its first run time is computed by the caller from the schedule.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub instance: &'a str,
    pub kind: &'a str,
    pub schedule_kind: &'a str,
    pub schedule: &'a str,
    pub tz: Option<&'a str>,
    pub prompt: &'a str,
    pub context_mode: &'a str,
    pub next_run_at: i64,
    pub created_by: &'a str,
}

/// What [`Store::claim_run`] did with an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The run was inserted and its message queued.
    Claimed(i64),
    /// An earlier run of the task still waits: it stands for this occurrence (and the
    /// `skipped` missed ones before it) too, and nothing was queued.
    Skipped { run: i64, skipped: u64 },
    /// Already claimed, or the task changed since the caller looked: nothing was done.
    Unchanged,
}

/// A claim of one occurrence: the task moves on to `next` (None: it is done).
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub task_id: i64,
    pub scheduled_for: i64,
    pub skipped: u64,
    pub next: Option<i64>,
}

const TASK_COLUMNS: &str = "t.id, i.name, t.kind, t.schedule_kind, t.schedule, t.tz, t.prompt, \
     t.context_mode, t.status, t.next_run_at, t.last_run_at, t.created_by, t.created_at, \
     t.updated_at, r.status, r.result";

/// Tasks of live instances, each with its latest run.
const TASK_FROM: &str =
    "FROM tasks t JOIN instances i ON i.id = t.instance_id AND i.removed_at IS NULL
     LEFT JOIN task_runs r ON r.id = (SELECT max(id) FROM task_runs WHERE task_id = t.id)";

fn task_from_row(r: &Row) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        instance: r.get(1)?,
        kind: r.get(2)?,
        schedule_kind: r.get(3)?,
        schedule: r.get(4)?,
        tz: r.get(5)?,
        prompt: r.get(6)?,
        context_mode: r.get(7)?,
        status: r.get(8)?,
        next_run_at: r.get(9)?,
        last_run_at: r.get(10)?,
        created_by: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
        last_status: r.get(14)?,
        last_result: r.get(15)?,
    })
}

const RUN_COLUMNS: &str = "id, task_id, scheduled_for, claimed_at, started_at, finished_at, \
     status, result, error, trigger, skipped";

fn run_from_row(r: &Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        task_id: r.get(1)?,
        scheduled_for: r.get(2)?,
        claimed_at: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        status: r.get(6)?,
        result: r.get(7)?,
        error: r.get(8)?,
        trigger: r.get(9)?,
        skipped: r.get(10)?,
    })
}

fn excerpt(s: &str) -> String {
    match s.char_indices().nth(RESULT_EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Store {
    pub fn insert_task(&mut self, t: &NewTask) -> Result<TaskRow> {
        let id = self.write(|tx| {
            let iid = super::instances::instance_id(tx, t.instance)?;
            let now = now_ms();
            tx.execute(
                "INSERT INTO tasks (instance_id, kind, schedule_kind, schedule, tz, prompt, context_mode,
                                    status, next_run_at, created_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?9, ?10, ?10)",
                params![iid, t.kind, t.schedule_kind, t.schedule, t.tz, t.prompt, t.context_mode,
                        t.next_run_at, t.created_by, now],
            )?;
            let id = tx.last_insert_rowid();
            let detail = serde_json::json!({"task_id": id, "schedule_kind": t.schedule_kind, "schedule": t.schedule});
            super::events::record(tx, Some(t.instance), t.created_by, "task.created", Some(&detail))?;
            Ok(id)
        })?;
        self.task(id)
    }

    /// A task of a live instance.
    pub fn task(&self, id: i64) -> Result<TaskRow> {
        self.conn()
            .query_row(
                &format!("SELECT {TASK_COLUMNS} {TASK_FROM} WHERE t.id = ?1"),
                [id],
                task_from_row,
            )
            .optional()?
            .ok_or(StoreError::NoSuchTask(id))
    }

    /// Tasks of one instance or of all, by instance then id.
    pub fn tasks(&self, instance: Option<&str>) -> Result<Vec<TaskRow>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {TASK_COLUMNS} {TASK_FROM} WHERE ?1 IS NULL OR i.name = ?1 ORDER BY i.name, t.id"
        ))?;
        let rows = stmt.query_map([instance], task_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets a task's status and next run (pause, resume), recording who did it.
    pub fn set_task_status(
        &mut self,
        id: i64,
        status: &str,
        next_run_at: Option<i64>,
        actor: &str,
    ) -> Result<TaskRow> {
        let task = self.task(id)?;
        self.write(|tx| {
            tx.execute(
                "UPDATE tasks SET status = ?2, next_run_at = ?3, updated_at = ?4 WHERE id = ?1",
                params![id, status, next_run_at, now_ms()],
            )?;
            let detail = serde_json::json!({"task_id": id, "status": status});
            super::events::record(
                tx,
                Some(&task.instance),
                actor,
                "task.status",
                Some(&detail),
            )?;
            Ok(())
        })?;
        self.task(id)
    }

    /// Deletes a task and its runs (their messages stay in the conversation).
    pub fn remove_task(&mut self, id: i64, actor: &str) -> Result<()> {
        let task = self.task(id)?;
        self.write(|tx| {
            tx.execute("DELETE FROM tasks WHERE id = ?1", [id])?;
            let detail = serde_json::json!({"task_id": id});
            super::events::record(
                tx,
                Some(&task.instance),
                actor,
                "task.removed",
                Some(&detail),
            )?;
            Ok(())
        })
    }

    /// The earliest next run of an active task of a live instance.
    pub fn next_task_due(&self) -> Result<Option<i64>> {
        Ok(self.conn().query_row(
            "SELECT min(t.next_run_at) FROM tasks t JOIN instances i ON i.id = t.instance_id
             WHERE i.removed_at IS NULL AND t.status = 'active' AND t.next_run_at IS NOT NULL",
            [],
            |r| r.get(0),
        )?)
    }

    /// Active tasks whose next run is at or before `now`, earliest first.
    pub fn due_tasks(&self, now: i64) -> Result<Vec<TaskRow>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {TASK_COLUMNS} {TASK_FROM}
             WHERE t.status = 'active' AND t.next_run_at IS NOT NULL AND t.next_run_at <= ?1
             ORDER BY t.next_run_at, t.id"
        ))?;
        let rows = stmt.query_map([now], task_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Claims a scheduled occurrence: inserts the run, queues its message and moves the task
    /// on, all in one transaction. An occurrence that falls due while an earlier run of the
    /// task still waits (claimed or running) queues nothing: the waiting run stands for it too
    /// (its `skipped` grows), and the task moves on. Nothing is claimed when this occurrence
    /// was already claimed (the task is still moved on) or the task changed meanwhile.
    pub fn claim_run(&mut self, c: &Claim) -> Result<ClaimOutcome> {
        self.write(|tx| {
            // Only claim what the caller saw: a task paused or edited since is left alone.
            let current: Option<(Option<i64>, String)> = tx
                .query_row(
                    "SELECT next_run_at, status FROM tasks WHERE id = ?1",
                    [c.task_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match current {
                Some((Some(next), status)) if status == "active" && next <= c.scheduled_for => {}
                _ => return Ok(ClaimOutcome::Unchanged),
            }
            let now = now_ms();
            let status = if c.next.is_some() { "active" } else { "done" };
            let seen: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM task_runs WHERE task_id = ?1 AND scheduled_for = ?2)",
                params![c.task_id, c.scheduled_for],
                |r| r.get(0),
            )?;
            let waiting: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT id, claimed_at FROM task_runs
                     WHERE task_id = ?1 AND status IN ('claimed', 'running')
                     ORDER BY id DESC LIMIT 1",
                    [c.task_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let outcome = match waiting {
                Some((run, claimed_at)) if !seen => {
                    let skipped = c.skipped.saturating_add(1);
                    fold_into_waiting_run(tx, c.task_id, run, claimed_at, skipped)?;
                    tx.execute(
                        "UPDATE tasks SET next_run_at = ?2, status = ?3, updated_at = ?4 WHERE id = ?1",
                        params![c.task_id, c.next, status, now],
                    )?;
                    return Ok(ClaimOutcome::Skipped { run, skipped });
                }
                _ => match insert_run(tx, c.task_id, c.scheduled_for, "schedule", c.skipped, now)? {
                    Some(run) => ClaimOutcome::Claimed(run),
                    None => ClaimOutcome::Unchanged,
                },
            };
            tx.execute(
                "UPDATE tasks SET next_run_at = ?2, last_run_at = ?3, status = ?4, updated_at = ?3
                 WHERE id = ?1",
                params![c.task_id, c.next, now, status],
            )?;
            Ok(outcome)
        })
    }

    /// A manual run now (`task run-now`), whatever the task's status; the schedule is not
    /// touched. Returns the run id.
    pub fn run_task_now(&mut self, id: i64, actor: &str) -> Result<i64> {
        let task = self.task(id)?;
        self.write(|tx| {
            let now = now_ms();
            let run =
                insert_run(tx, id, now, "manual", 0, now)?.ok_or(StoreError::RunExists(id))?;
            tx.execute(
                "UPDATE tasks SET last_run_at = ?2, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            let detail = serde_json::json!({"task_id": id, "run_id": run});
            super::events::record(
                tx,
                Some(&task.instance),
                actor,
                "task.run_now",
                Some(&detail),
            )?;
            Ok(run)
        })
    }

    /// Runs of a task, newest first.
    pub fn task_runs(&self, task_id: i64, limit: u32) -> Result<Vec<RunRow>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM task_runs WHERE task_id = ?1
             ORDER BY scheduled_for DESC, id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![task_id, limit], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The heartbeat task of an instance, if it has one.
    pub fn heartbeat_task(&self, instance: &str) -> Result<Option<TaskRow>> {
        Ok(self
            .tasks(Some(instance))?
            .into_iter()
            .find(|t| t.kind == "heartbeat"))
    }
}

/// Inserts a run and queues its message (one inbound message of channel `task`, sender
/// `task:<id>`, scoped by the task's context mode). None when the occurrence was claimed.
fn insert_run(
    tx: &Transaction,
    task_id: i64,
    scheduled_for: i64,
    trigger: &str,
    skipped: u64,
    now: i64,
) -> Result<Option<i64>> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO task_runs (task_id, scheduled_for, claimed_at, status, trigger, skipped)
         VALUES (?1, ?2, ?3, 'claimed', ?4, ?5)",
        params![task_id, scheduled_for, now, trigger, skipped as i64],
    )?;
    if n == 0 {
        return Ok(None);
    }
    let run = tx.last_insert_rowid();
    // A group's task runs in the group and answers into its chat; an instance's, in the
    // operator's conversation.
    let (iid, instance, prompt, mode, chat): (i64, String, String, String, String) = tx.query_row(
        "SELECT t.instance_id, i.name, t.prompt, t.context_mode, COALESCE(i.chat, '') FROM tasks t
         JOIN instances i ON i.id = t.instance_id WHERE t.id = ?1",
        [task_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let scope = if mode == "continue" {
        "conversation"
    } else {
        "isolated"
    };
    let id = crate::domain::ids::new_id();
    tx.execute(
        "INSERT INTO messages (id, instance_id, direction, channel, sender, body, state, triggered,
                               task_run_id, scope, created_at, updated_at, chat)
         VALUES (?1, ?2, 'in', 'task', ?3, ?4, 'queued', 1, ?5, ?6, ?7, ?7, ?8)",
        params![
            id,
            iid,
            format!("task:{task_id}"),
            prompt,
            run,
            scope,
            now,
            chat
        ],
    )?;
    // Work is waiting: an on-demand instance's container is started for it.
    tx.execute(
        "UPDATE instances SET last_activity_at = ?2 WHERE id = ?1",
        params![iid, now],
    )?;
    if skipped > 0 {
        let detail =
            serde_json::json!({"task_id": task_id, "skipped": skipped, "ran": scheduled_for});
        super::events::record(
            tx,
            Some(&instance),
            "scheduler",
            "task.missed",
            Some(&detail),
        )?;
    }
    Ok(Some(run))
}

/// Adds `skipped` occurrences to a run that still waits, inside the caller's transaction. The
/// first time a run stands for occurrences it was not claimed for, a `task.missed` event says
/// so; later ones only raise its count, so a task due every second while its instance is busy
/// does not write an event a second.
fn fold_into_waiting_run(
    tx: &Transaction,
    task_id: i64,
    run: i64,
    claimed_at: i64,
    skipped: u64,
) -> Result<()> {
    tx.execute(
        "UPDATE task_runs SET skipped = skipped + ?2 WHERE id = ?1",
        params![run, skipped as i64],
    )?;
    let instance: String = tx.query_row(
        "SELECT i.name FROM tasks t JOIN instances i ON i.id = t.instance_id WHERE t.id = ?1",
        [task_id],
        |r| r.get(0),
    )?;
    // This run's event, if it has one, is among the instance's events since it was claimed.
    let recorded: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM events WHERE instance = ?1 AND at >= ?2
             AND kind = 'task.missed' AND json_extract(detail, '$.run_id') = ?3)",
        params![instance, claimed_at, run],
        |r| r.get(0),
    )?;
    if !recorded {
        let detail = serde_json::json!({
            "task_id": task_id, "run_id": run, "skipped": skipped,
            "reason": "the previous run has not finished",
        });
        super::events::record(
            tx,
            Some(&instance),
            "scheduler",
            "task.missed",
            Some(&detail),
        )?;
    }
    Ok(())
}

/// Marks the runs of a turn as started (called when the turn is delivered).
pub(super) fn start_runs(tx: &Transaction, turn_id: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE task_runs SET status = 'running', started_at = coalesce(started_at, ?2)
         WHERE status = 'claimed'
           AND id IN (SELECT task_run_id FROM messages WHERE turn_id = ?1 AND task_run_id IS NOT NULL)",
        params![turn_id, now],
    )?;
    Ok(())
}

/// Finishes the runs of a turn with its answer. An empty answer without an error is a silent
/// run: its messages leave the conversation. Returns whether the turn was a task run.
pub(super) fn finish_runs(
    tx: &Transaction,
    turn_id: &str,
    body: &str,
    error: Option<&str>,
    now: i64,
) -> Result<bool> {
    let silent = error.is_none() && body.trim().is_empty();
    let status = match (error, silent) {
        (Some(_), _) => "error",
        (None, true) => "silent",
        (None, false) => "ok",
    };
    let n = tx.execute(
        "UPDATE task_runs SET status = ?2, result = ?3, error = ?4, finished_at = ?5,
                              started_at = coalesce(started_at, ?5)
         WHERE id IN (SELECT task_run_id FROM messages WHERE turn_id = ?1 AND task_run_id IS NOT NULL)",
        params![turn_id, status, (!silent).then(|| excerpt(body)), error, now],
    )?;
    if n > 0 && silent {
        tx.execute(
            "UPDATE messages SET scope = 'silent' WHERE turn_id = ?1",
            [turn_id],
        )?;
    }
    Ok(n > 0)
}

/// What a heartbeat config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSpec<'a> {
    pub every: &'a str,
    pub prompt: &'a str,
    pub context_mode: &'a str,
    /// When the first run would be if the heartbeat is new or its interval changed.
    pub first_run_at: i64,
}

impl Store {
    /// Makes an instance's heartbeat task match its config: created, updated (a new interval
    /// starts counting now; a pause by the operator is kept) or removed. Returns whether
    /// anything changed.
    pub fn sync_heartbeat(&mut self, instance: &str, spec: Option<&HeartbeatSpec>) -> Result<bool> {
        let existing = self.heartbeat_task(instance)?;
        match (existing, spec) {
            (None, None) => Ok(false),
            (Some(t), None) => {
                self.remove_task(t.id, "config")?;
                Ok(true)
            }
            (None, Some(s)) => {
                self.insert_task(&NewTask {
                    instance,
                    kind: "heartbeat",
                    schedule_kind: "every",
                    schedule: s.every,
                    tz: None,
                    prompt: s.prompt,
                    context_mode: s.context_mode,
                    next_run_at: s.first_run_at,
                    created_by: "config",
                })?;
                Ok(true)
            }
            (Some(t), Some(s)) => {
                if t.schedule == s.every && t.prompt == s.prompt && t.context_mode == s.context_mode
                {
                    return Ok(false);
                }
                let next = if t.schedule == s.every {
                    t.next_run_at
                } else {
                    Some(s.first_run_at)
                };
                self.write(|tx| {
                    tx.execute(
                        "UPDATE tasks SET schedule = ?2, prompt = ?3, context_mode = ?4,
                                          next_run_at = ?5, updated_at = ?6 WHERE id = ?1",
                        params![t.id, s.every, s.prompt, s.context_mode, next, now_ms()],
                    )?;
                    let detail = serde_json::json!({"task_id": t.id, "schedule": s.every});
                    super::events::record(
                        tx,
                        Some(instance),
                        "config",
                        "task.updated",
                        Some(&detail),
                    )?;
                    Ok(())
                })?;
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        crate::infra::store::test_store(&["alice"])
    }

    fn every(s: &mut Store, mode: &str, next: i64) -> TaskRow {
        s.insert_task(&NewTask {
            instance: "alice",
            kind: "user",
            schedule_kind: "every",
            schedule: "1m",
            tz: None,
            prompt: "check",
            context_mode: mode,
            next_run_at: next,
            created_by: "cli",
        })
        .unwrap()
    }

    #[test]
    fn an_occurrence_is_claimed_once_with_its_message() {
        let (_d, mut s) = store();
        let t = every(&mut s, "isolated", 1_000);
        assert_eq!(s.next_task_due().unwrap(), Some(1_000));
        assert_eq!(s.due_tasks(999).unwrap().len(), 0);
        assert_eq!(s.due_tasks(1_000).unwrap().len(), 1);
        let claim = Claim {
            task_id: t.id,
            scheduled_for: 1_000,
            skipped: 0,
            next: Some(61_000),
        };
        let ClaimOutcome::Claimed(run) = s.claim_run(&claim).unwrap() else {
            panic!("not claimed")
        };
        // The same occurrence again (a second scheduler, a replayed wake-up): nothing.
        assert_eq!(s.claim_run(&claim).unwrap(), ClaimOutcome::Unchanged);
        let waiting = s.waiting_messages("alice").unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            (waiting[0].channel.as_str(), waiting[0].sender.as_str()),
            ("task", format!("task:{}", t.id).as_str())
        );
        assert_eq!(waiting[0].scope, "isolated");
        let t = s.task(t.id).unwrap();
        assert_eq!((t.next_run_at, t.status.as_str()), (Some(61_000), "active"));
        assert_eq!(s.task_runs(t.id, 10).unwrap()[0].id, run);
        assert_eq!(s.task_runs(t.id, 10).unwrap()[0].status, "claimed");
    }

    #[test]
    fn a_claim_of_a_paused_or_moved_task_is_refused() {
        let (_d, mut s) = store();
        let t = every(&mut s, "isolated", 1_000);
        s.set_task_status(t.id, "paused", Some(1_000), "cli")
            .unwrap();
        let claim = Claim {
            task_id: t.id,
            scheduled_for: 1_000,
            skipped: 0,
            next: Some(61_000),
        };
        assert_eq!(s.claim_run(&claim).unwrap(), ClaimOutcome::Unchanged);
        assert!(s.due_tasks(5_000).unwrap().is_empty());
        s.set_task_status(t.id, "active", Some(2_000), "cli")
            .unwrap();
        assert_eq!(
            s.claim_run(&claim).unwrap(),
            ClaimOutcome::Unchanged,
            "its next run moved on"
        );
        assert!(s.waiting_messages("alice").unwrap().is_empty());
    }

    fn claim_at(s: &mut Store, task: i64, at: i64, skipped: u64) -> ClaimOutcome {
        s.claim_run(&Claim {
            task_id: task,
            scheduled_for: at,
            skipped,
            next: Some(at + 60_000),
        })
        .unwrap()
    }

    fn missed_events(s: &Store) -> Vec<serde_json::Value> {
        s.recent_events(Some("alice"), 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "task.missed")
            .map(|e| e.detail.unwrap())
            .collect()
    }

    #[test]
    fn an_occurrence_due_while_the_previous_run_waits_queues_nothing() {
        let (_d, mut s) = store();
        let t = every(&mut s, "isolated", 1_000);
        let ClaimOutcome::Claimed(first) = claim_at(&mut s, t.id, 1_000, 0) else {
            panic!("not claimed")
        };
        // Still claimed (queued, not delivered): the next occurrences are skipped, one of
        // them after downtime that missed two more.
        assert_eq!(
            claim_at(&mut s, t.id, 61_000, 0),
            ClaimOutcome::Skipped {
                run: first,
                skipped: 1
            }
        );
        assert_eq!(
            claim_at(&mut s, t.id, 241_000, 2),
            ClaimOutcome::Skipped {
                run: first,
                skipped: 3
            }
        );
        assert_eq!(
            s.waiting_messages("alice").unwrap().len(),
            1,
            "one run waits"
        );
        assert_eq!(s.task_runs(t.id, 10).unwrap().len(), 1);
        assert_eq!(s.task_runs(t.id, 10).unwrap()[0].skipped, 4);
        let task = s.task(t.id).unwrap();
        assert_eq!(task.next_run_at, Some(301_000), "the schedule moves on");
        // One event for the waiting run, however many occurrences it stands for.
        let events = missed_events(&s);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0]["run_id"].as_i64(), events[0]["skipped"].as_u64()),
            (Some(first), Some(1))
        );

        // Running (delivered) still counts as waiting.
        let ids: Vec<String> = s
            .waiting_messages("alice")
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        s.begin_turn("t1", &ids).unwrap();
        assert!(matches!(
            claim_at(&mut s, t.id, 301_000, 0),
            ClaimOutcome::Skipped { run, .. } if run == first
        ));
        // Answered: the next occurrence is a run of its own again.
        s.record_final("alice", "t1", "r1", "done", None).unwrap();
        let ClaimOutcome::Claimed(second) = claim_at(&mut s, t.id, 361_000, 0) else {
            panic!("not claimed after the answer")
        };
        assert_ne!(second, first);
        let runs = s.task_runs(t.id, 10).unwrap();
        assert_eq!(
            runs.iter().map(|r| (r.id, r.skipped)).collect::<Vec<_>>(),
            [(second, 0), (first, 5)]
        );
        assert_eq!(s.waiting_messages("alice").unwrap().len(), 1);
        // A second waiting run gets an event of its own.
        claim_at(&mut s, t.id, 421_000, 0);
        let events = missed_events(&s);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["run_id"].as_i64(), Some(second));
    }

    #[test]
    fn a_waiting_manual_run_stands_for_a_scheduled_occurrence() {
        let (_d, mut s) = store();
        let t = every(&mut s, "isolated", 1_000);
        let manual = s.run_task_now(t.id, "cli").unwrap();
        assert_eq!(
            claim_at(&mut s, t.id, 1_000, 0),
            ClaimOutcome::Skipped {
                run: manual,
                skipped: 1
            }
        );
        assert_eq!(s.waiting_messages("alice").unwrap().len(), 1);
    }

    #[test]
    fn a_run_follows_its_turn_and_silence_leaves_the_conversation() {
        let (_d, mut s) = store();
        let t = every(&mut s, "continue", 1_000);
        for (turn, body, want) in [("t1", "all good", "ok"), ("t2", "  ", "silent")] {
            let run = s.run_task_now(t.id, "cli").unwrap();
            let ids: Vec<String> = s
                .waiting_messages("alice")
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect();
            assert_eq!(ids.len(), 1);
            assert_eq!(s.message(&ids[0]).unwrap().scope, "conversation");
            s.begin_turn(turn, &ids).unwrap();
            assert_eq!(s.task_runs(t.id, 1).unwrap()[0].status, "running");
            s.record_final("alice", turn, &format!("r-{turn}"), body, None)
                .unwrap();
            let r = &s.task_runs(t.id, 1).unwrap()[0];
            assert_eq!(
                (r.id, r.status.as_str(), r.trigger.as_str()),
                (run, want, "manual")
            );
            assert!(r.started_at.is_some() && r.finished_at.is_some());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let scopes: Vec<String> = s
            .history("alice", 10)
            .unwrap()
            .into_iter()
            .map(|m| m.scope)
            .collect();
        assert_eq!(scopes, ["conversation", "conversation", "silent", "silent"]);
        let t = s.task(t.id).unwrap();
        assert_eq!(t.last_status.as_deref(), Some("silent"));
    }

    #[test]
    fn heartbeat_follows_the_config() {
        let (_d, mut s) = store();
        let spec = HeartbeatSpec {
            every: "30m",
            prompt: "beat",
            context_mode: "isolated",
            first_run_at: 5_000,
        };
        assert!(s.sync_heartbeat("alice", Some(&spec)).unwrap());
        assert!(!s.sync_heartbeat("alice", Some(&spec)).unwrap());
        let hb = s.heartbeat_task("alice").unwrap().unwrap();
        assert_eq!(
            (hb.kind.as_str(), hb.next_run_at),
            ("heartbeat", Some(5_000))
        );
        // A paused heartbeat stays paused when only its prompt changes.
        s.set_task_status(hb.id, "paused", hb.next_run_at, "cli")
            .unwrap();
        let changed = HeartbeatSpec {
            prompt: "beat harder",
            first_run_at: 9_000,
            ..spec.clone()
        };
        assert!(s.sync_heartbeat("alice", Some(&changed)).unwrap());
        let hb = s.heartbeat_task("alice").unwrap().unwrap();
        assert_eq!(
            (hb.status.as_str(), hb.prompt.as_str(), hb.next_run_at),
            ("paused", "beat harder", Some(5_000))
        );
        assert!(s.sync_heartbeat("alice", None).unwrap());
        assert!(s.heartbeat_task("alice").unwrap().is_none());
    }
}
