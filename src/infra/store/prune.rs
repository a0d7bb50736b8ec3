//! `supervisor db prune`: deletes history older than a cutoff, never anything still in use.
//!
//! - **messages**: whole finished turns whose final answer is older than the cutoff (the
//!   turn's inbound `answered` messages, its `extra` messages and the `final` answer), and
//!   `refused` inbound messages older than the cutoff. A message that waits (`queued`,
//!   `context`) or is in a turn (`delivered`) is never touched, and a turn is never split:
//!   when its answer is newer than the cutoff, its older questions stay with it.
//! - **task_runs**: runs that finished before the cutoff (their tasks stay).
//! - **events**: audit events older than the cutoff.
//! - **model_usage**: rows older than the cutoff, and never from the current UTC day, which
//!   the daily token budget adds up.
//!
//! Rows that point at deleted ones (`reply_to`, `task_run_id`) get NULL there, as the
//! schema's `ON DELETE SET NULL` says (see [`Store::prune`] for how).

use rusqlite::{params_from_iter, Connection};
use serde::Serialize;

use super::{events, Result, Store, StoreError};

/// The shortest age that may be pruned: the current day's rows are always kept.
pub const MIN_AGE_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(
        "--older-than must be at least 1 day (got {given}): the last day of history is always kept"
    )]
    TooRecent { given: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is old enough to go, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cutoff {
    /// Rows older than this go (messages, task runs, events).
    pub before: i64,
    /// Usage rows older than this go: the cutoff, or the start of the current UTC day if
    /// that is earlier.
    pub usage_before: i64,
}

impl Cutoff {
    /// The cutoff `age_ms` before `now`; `given` is how the age was written, for the error.
    pub fn new(now: i64, age_ms: i64, given: &str) -> std::result::Result<Self, PruneError> {
        if age_ms < MIN_AGE_MS {
            return Err(PruneError::TooRecent {
                given: given.to_string(),
            });
        }
        let before = now.saturating_sub(age_ms);
        let today = crate::infra::llm::budget::day_start(now);
        Ok(Self {
            before,
            usage_before: before.min(today),
        })
    }
}

/// Rows deleted (or, in a dry run, that would be) per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneCounts {
    pub messages: u64,
    pub task_runs: u64,
    pub events: u64,
    pub model_usage: u64,
    pub web_requests: u64,
}

/// The state of the WAL after `wal_checkpoint(TRUNCATE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// A reader or writer kept the checkpoint from finishing; the WAL shrinks later.
    pub busy: bool,
}

// Each table's rows to prune, as the WHERE clause of both the count and the delete, so a dry
// run counts exactly what a real run deletes. ?1 is the cutoff, ?2 the usage cutoff.
//
// The newest message and the newest event always stay: SQLite gives a new row the largest
// row id plus one, so deleting the largest would hand its id (or a smaller one) to the next
// row, and `history -f`, `events -f` and `GET /v1/events`, which follow by id, would miss it.
const MESSAGES: &str = "((direction = 'in' AND state = 'refused' AND created_at < ?1)
    OR (((direction = 'in' AND state = 'answered') OR (direction = 'out' AND state IN ('final', 'extra')))
        AND turn_id IN (SELECT turn_id FROM messages
                        WHERE direction = 'out' AND state = 'final' AND created_at < ?1)))
    AND rowid < (SELECT MAX(rowid) FROM messages)";
const TASK_RUNS: &str = "finished_at IS NOT NULL AND finished_at < ?1";
const EVENTS: &str = "at < ?1 AND id < (SELECT MAX(id) FROM events)";
const MODEL_USAGE: &str = "at < ?2";
// The day's web requests count against the day's cap: kept like the day's model usage.
const WEB_REQUESTS: &str = "at < ?2";

const MESSAGES_TABLE: &str = "messages";
const TASK_RUNS_TABLE: &str = "task_runs";

const TABLES: [(&str, &str); 5] = [
    (MESSAGES_TABLE, MESSAGES),
    (TASK_RUNS_TABLE, TASK_RUNS),
    ("events", EVENTS),
    ("model_usage", MODEL_USAGE),
    ("web_requests", WEB_REQUESTS),
];

fn with_counts(mut f: impl FnMut(&str, &str) -> Result<u64>) -> Result<PruneCounts> {
    let mut n = [0u64; 5];
    for (slot, (table, filter)) in n.iter_mut().zip(TABLES) {
        *slot = f(table, filter)?;
    }
    Ok(PruneCounts {
        messages: n[0],
        task_runs: n[1],
        events: n[2],
        model_usage: n[3],
        web_requests: n[4],
    })
}

/// The parameters a filter uses: SQLite counts parameters up to the highest number used, and
/// rusqlite refuses more values than that.
fn args(filter: &str, c: &Cutoff) -> Vec<i64> {
    if filter.contains("?2") {
        vec![c.before, c.usage_before]
    } else {
        vec![c.before]
    }
}

fn count(conn: &Connection, table: &str, filter: &str, c: &Cutoff) -> Result<u64> {
    let n: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE {filter}"),
        params_from_iter(args(filter, c)),
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

impl Store {
    /// What `prune` would delete, counted in one read transaction; nothing changes.
    pub fn prune_counts(&mut self, c: &Cutoff) -> Result<PruneCounts> {
        let tx = self.conn.transaction()?;
        let counts = with_counts(|table, filter| count(&tx, table, filter, c))?;
        tx.finish()?;
        Ok(counts)
    }

    /// Deletes everything old enough in one transaction and records a `db.pruned` event.
    ///
    /// `messages.reply_to` has no index, so letting SQLite apply its `ON DELETE SET NULL`
    /// would scan the table once per deleted message (hours for a large history). Foreign
    /// keys are switched off for this connection instead, the same NULLs are set with one
    /// statement per reference, and `PRAGMA foreign_key_check` must find nothing before the
    /// transaction commits.
    pub fn prune(&mut self, c: &Cutoff, actor: &str) -> Result<PruneCounts> {
        // The pragma is a no-op inside a transaction, hence around it.
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        let pruned = self.write(|tx| {
            let detach = [
                ("reply_to", MESSAGES_TABLE, MESSAGES),
                ("task_run_id", TASK_RUNS_TABLE, TASK_RUNS),
            ];
            for (column, parent, filter) in detach {
                tx.execute(
                    &format!(
                        "UPDATE messages SET {column} = NULL
                         WHERE {column} IN (SELECT id FROM {parent} WHERE {filter})"
                    ),
                    params_from_iter(args(filter, c)),
                )?;
            }
            let counts = with_counts(|table, filter| {
                let sql = format!("DELETE FROM {table} WHERE {filter}");
                Ok(tx.execute(&sql, params_from_iter(args(filter, c)))? as u64)
            })?;
            let broken: i64 =
                tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?;
            if broken > 0 {
                // Returning an error rolls the whole prune back.
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                    Some(format!(
                        "pruning would leave {broken} dangling reference(s)"
                    )),
                )
                .into());
            }
            let detail = serde_json::json!({ "cutoff": c, "deleted": counts });
            events::record(tx, None, actor, "db.pruned", Some(&detail))?;
            Ok(counts)
        });
        let restored = self.conn.pragma_update(None, "foreign_keys", "ON");
        let counts = pruned?;
        restored?;
        Ok(counts)
    }

    /// Copies the WAL into the database and truncates it to zero bytes, if no reader holds it.
    pub fn checkpoint_truncate(&self) -> Result<Checkpoint> {
        let busy: i64 = self
            .conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(Checkpoint { busy: busy != 0 })
    }

    /// Rewrites the database file without its free pages (needs a moment with no writer).
    pub fn vacuum(&self) -> Result<()> {
        self.conn().execute_batch("VACUUM")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::messages::Inbound;
    use crate::infra::store::test_store;
    use rusqlite::params;

    const DAY: i64 = MIN_AGE_MS;

    #[test]
    fn cutoff_is_at_least_a_day_and_keeps_today_usage() {
        assert!(matches!(
            Cutoff::new(10 * DAY, DAY - 1, "23h"),
            Err(PruneError::TooRecent { .. })
        ));
        let noon = 40 * DAY + DAY / 2;
        let c = Cutoff::new(noon, DAY, "1d").unwrap();
        assert_eq!(c.before, noon - DAY);
        assert_eq!(c.usage_before, noon - DAY, "a day ago is before today");
        let c = Cutoff::new(noon, 30 * DAY, "30d").unwrap();
        assert_eq!(
            (c.before, c.usage_before),
            (noon - 30 * DAY, noon - 30 * DAY)
        );
    }

    fn accept(s: &mut Store, body: &str, state: &str) -> String {
        s.accept_message(&Inbound {
            instance: "alice",
            channel: "cli",
            sender: "local",
            body,
            state,
            chat: "",
            sender_name: None,
        })
        .unwrap()
        .id
    }

    /// Moves every timestamp of one message to `at` (tests only: rows are never back-dated).
    fn age_message(s: &Store, id: &str, at: i64) {
        s.conn()
            .execute(
                "UPDATE messages SET created_at = ?2, updated_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .unwrap();
    }

    fn ids(s: &Store) -> Vec<String> {
        let mut stmt = s
            .conn()
            .prepare("SELECT body || ':' || state FROM messages ORDER BY body")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    #[test]
    fn prunes_finished_old_rows_and_keeps_the_rest() {
        let (_dir, mut s) = test_store(&["alice"]);
        let now = crate::infra::store::now_ms();
        let old = now - 40 * DAY;

        // An old finished turn: question and answer both old.
        let q = accept(&mut s, "old-q", "queued");
        s.begin_turn("t-old", std::slice::from_ref(&q)).unwrap();
        s.record_extra(
            "alice",
            "t-old",
            "old-x",
            "old-extra",
            &crate::app::router::policy::EXTRA_LIMIT,
        )
        .unwrap();
        s.record_final("alice", "t-old", "old-a", "old-answer", None)
            .unwrap();
        for id in [&q, &"old-x".to_string(), &"old-a".to_string()] {
            age_message(&s, id, old);
        }
        // An old question whose turn ended recently: kept with its answer.
        let q2 = accept(&mut s, "split-q", "queued");
        age_message(&s, &q2, old);
        s.begin_turn("t-new", std::slice::from_ref(&q2)).unwrap();
        s.record_final("alice", "t-new", "new-a", "new-answer", None)
            .unwrap();
        // Old but unfinished: waiting, context, and in a turn with no answer.
        for (body, state) in [("wait-q", "queued"), ("ctx-q", "context")] {
            let id = accept(&mut s, body, state);
            age_message(&s, &id, old);
        }
        let open = accept(&mut s, "open-q", "queued");
        s.begin_turn("t-open", std::slice::from_ref(&open)).unwrap();
        s.record_extra(
            "alice",
            "t-open",
            "open-x",
            "open-extra",
            &crate::app::router::policy::EXTRA_LIMIT,
        )
        .unwrap();
        age_message(&s, &open, old);
        age_message(&s, "open-x", old);
        // Refused: old goes, recent stays.
        let r = accept(&mut s, "old-refused", "refused");
        age_message(&s, &r, old);
        accept(&mut s, "new-refused", "refused");

        // Usage: one old row, one from today; events: one old, one new.
        let usage = crate::infra::store::usage::UsageRecord {
            instance: "alice",
            request_id: "r",
            provider: "echo",
            model: "echo",
            prompt_tokens: 1,
            completion_tokens: 1,
            latency_ms: 1,
            status: "ok",
            error: None,
        };
        s.record_usage(&usage).unwrap();
        s.record_usage(&usage).unwrap();
        s.conn()
            .execute("UPDATE model_usage SET at = ?1 WHERE id = 1", [old])
            .unwrap();
        s.write(|tx| events::record(tx, None, "test", "old.event", None))
            .unwrap();
        s.conn()
            .execute("UPDATE events SET at = ?1 WHERE kind = 'old.event'", [old])
            .unwrap();
        s.write(|tx| events::record(tx, None, "test", "new.event", None))
            .unwrap();
        let events_before = s.recent_events(None, 1000).unwrap().len() as u64;

        // A kept message that refers to one that goes: the reference becomes NULL.
        s.conn()
            .execute(
                "UPDATE messages SET reply_to = ?1 WHERE body = 'new-refused'",
                [&q],
            )
            .unwrap();

        let cutoff = Cutoff::new(now, 30 * DAY, "30d").unwrap();
        let dry = s.prune_counts(&cutoff).unwrap();
        let want = PruneCounts {
            messages: 4,
            task_runs: 0,
            events: 1,
            model_usage: 1,
            web_requests: 0,
        };
        assert_eq!(dry, want);
        assert_eq!(
            s.prune_counts(&cutoff).unwrap(),
            want,
            "a dry run changes nothing"
        );

        assert_eq!(s.prune(&cutoff, "test").unwrap(), want);
        assert_eq!(
            ids(&s),
            vec![
                "ctx-q:context",
                "new-answer:final",
                "new-refused:refused",
                "open-extra:extra",
                "open-q:delivered",
                "split-q:answered",
                "wait-q:queued",
            ]
        );
        let reply_to: Option<String> = s
            .conn()
            .query_row(
                "SELECT reply_to FROM messages WHERE body = 'new-refused'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(reply_to, None);
        let fk: i64 = s
            .conn()
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1, "foreign keys are back on");
        let today = crate::infra::llm::budget::day_start(now);
        assert_eq!(
            s.tokens_since("alice", today).unwrap(),
            2,
            "today's usage kept"
        );
        let events = s.recent_events(None, 1000).unwrap();
        // One old event went, the db.pruned event came.
        assert_eq!(events.len() as u64, events_before);
        assert_eq!(events[0].kind, "db.pruned");
        assert_eq!(s.prune_counts(&cutoff).unwrap(), PruneCounts::default());
        assert!(!s.checkpoint_truncate().unwrap().busy);
        s.vacuum().unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn the_newest_message_and_event_stay_so_that_ids_never_go_back() {
        let (_dir, mut s) = test_store(&["alice"]);
        let now = crate::infra::store::now_ms();
        let old = now - 40 * DAY;
        for body in ["first", "last"] {
            let id = accept(&mut s, body, "refused");
            age_message(&s, &id, old);
        }
        for kind in ["old.one", "old.two"] {
            s.write(|tx| events::record(tx, None, "test", kind, None))
                .unwrap();
        }
        s.conn()
            .execute("UPDATE events SET at = ?1", [old])
            .unwrap();
        let newest_event = s.recent_events(None, 1).unwrap()[0].id;
        let (_, cursor) = s.history_after("alice", None, 10).unwrap();

        let cutoff = Cutoff::new(now, 30 * DAY, "30d").unwrap();
        let pruned = s.prune(&cutoff, "test").unwrap();
        assert_eq!(pruned.messages, 1);
        assert!(pruned.events >= 1);
        assert_eq!(s.recent_events(None, 10).unwrap()[1].kind, "old.two");
        assert_eq!(ids(&s), vec!["last:refused"]);
        // What comes next has a larger id than anything a follower saw.
        assert!(s.events_after(newest_event, None, 10).unwrap()[0].kind == "db.pruned");
        accept(&mut s, "after the prune", "refused");
        let (new, _) = s.history_after("alice", Some(cursor), 10).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].body, "after the prune");
    }

    #[test]
    fn prunes_finished_task_runs_only() {
        let (_dir, mut s) = test_store(&["alice"]);
        let now = crate::infra::store::now_ms();
        let task = s
            .insert_task(&crate::infra::store::tasks::NewTask {
                instance: "alice",
                kind: "user",
                schedule_kind: "every",
                schedule: "1h",
                tz: None,
                prompt: "p",
                context_mode: "isolated",
                next_run_at: now,
                created_by: "test",
            })
            .unwrap();
        for _ in 0..3 {
            s.run_task_now(task.id, "test").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let old = now - 40 * DAY;
        // Run 1 finished long ago, run 2 finished recently, run 3 never finished.
        s.conn()
            .execute(
                "UPDATE task_runs SET finished_at = ?1, status = 'ok' WHERE id = 1",
                [old],
            )
            .unwrap();
        s.conn()
            .execute(
                "UPDATE task_runs SET finished_at = ?1, status = 'ok' WHERE id = 2",
                [now],
            )
            .unwrap();
        s.conn()
            .execute("UPDATE task_runs SET claimed_at = ?1 WHERE id = 3", [old])
            .unwrap();
        let cutoff = Cutoff::new(now, 30 * DAY, "30d").unwrap();
        assert_eq!(s.prune(&cutoff, "test").unwrap().task_runs, 1);
        let left: Vec<i64> = s
            .task_runs(task.id, 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&1));
        assert_eq!(s.tasks(Some("alice")).unwrap().len(), 1, "the task stays");
    }
}
