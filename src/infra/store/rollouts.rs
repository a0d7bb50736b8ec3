//! Roll-outs of a newly activated runtime: the `rollout` column of `runtime_activations` and
//! the `rollout_steps` table. The daemon moves one instance at a time and records each step
//! here, so a restarted daemon carries on where the last one stopped.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{events, now_ms, Result, Store};

/// Who records roll-out steps and roll-backs.
pub const ACTOR: &str = "rollout";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    /// The activation this roll-out carries out.
    pub activation_id: i64,
    /// The runtime instances move to.
    pub runtime_id: String,
    /// The runtime they move from, and go back to if the roll-out fails.
    pub previous_id: String,
    /// `rolling`, `done` or `failed`.
    pub state: String,
    pub activated_at: i64,
    /// Why it failed.
    pub detail: Option<String>,
    /// Steps in the order they were taken.
    pub steps: Vec<RolloutStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutStep {
    pub instance: String,
    /// `moving` (recreated, waiting for its agent), `ready` or `reverted`.
    pub state: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub detail: Option<String>,
}

impl Rollout {
    pub fn step(&self, instance: &str) -> Option<&RolloutStep> {
        self.steps.iter().find(|s| s.instance == instance)
    }

    pub fn moving(&self) -> Option<&RolloutStep> {
        self.steps.iter().find(|s| s.state == "moving")
    }
}

const SELECT: &str = "SELECT id, runtime_id, previous_id, rollout, activated_at, detail
     FROM runtime_activations WHERE rollout IS NOT NULL";

impl Store {
    /// The roll-out the daemon is carrying out now, if any.
    pub fn current_rollout(&self) -> Result<Option<Rollout>> {
        self.rollout_where("AND status = 'active' AND rollout = 'rolling'")
    }

    /// The most recent roll-out, whatever its state (for `runtime rollout`).
    pub fn latest_rollout(&self) -> Result<Option<Rollout>> {
        self.rollout_where("")
    }

    /// The roll-out of one activation.
    pub fn rollout(&self, activation_id: i64) -> Result<Option<Rollout>> {
        self.rollout_where(&format!("AND id = {activation_id}"))
    }

    fn rollout_where(&self, filter: &str) -> Result<Option<Rollout>> {
        let head = self
            .conn()
            .query_row(
                &format!("{SELECT} {filter} ORDER BY id DESC LIMIT 1"),
                [],
                |r| {
                    Ok(Rollout {
                        activation_id: r.get(0)?,
                        runtime_id: r.get(1)?,
                        previous_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        state: r.get(3)?,
                        activated_at: r.get(4)?,
                        detail: r.get(5)?,
                        steps: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut rollout) = head else {
            return Ok(None);
        };
        let mut stmt = self.conn().prepare(
            "SELECT instance, state, started_at, finished_at, detail FROM rollout_steps
             WHERE activation_id = ?1 ORDER BY started_at, instance",
        )?;
        let steps = stmt.query_map([rollout.activation_id], |r| {
            Ok(RolloutStep {
                instance: r.get(0)?,
                state: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        rollout.steps = steps.collect::<rusqlite::Result<_>>()?;
        Ok(Some(rollout))
    }

    /// Records that `instance` is being moved onto the roll-out's runtime.
    pub fn begin_rollout_step(&mut self, r: &Rollout, instance: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO rollout_steps (activation_id, instance, state, started_at)
                 VALUES (?1, ?2, 'moving', ?3)",
                params![r.activation_id, instance, now_ms()],
            )?;
            let detail = serde_json::json!({ "runtime": r.runtime_id, "from": r.previous_id });
            events::record(tx, Some(instance), ACTOR, "rollout.moving", Some(&detail))?;
            Ok(())
        })
    }

    /// Records that the moving instance's agent is ready on the new runtime.
    pub fn finish_rollout_step(&mut self, r: &Rollout, instance: &str, took_ms: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE rollout_steps SET state = 'ready', finished_at = ?3, detail = ?4
                 WHERE activation_id = ?1 AND instance = ?2",
                params![
                    r.activation_id,
                    instance,
                    now_ms(),
                    format!("ready after {:.1}s", took_ms as f64 / 1000.0)
                ],
            )?;
            let detail = serde_json::json!({ "runtime": r.runtime_id, "took_ms": took_ms });
            events::record(tx, Some(instance), ACTOR, "rollout.ready", Some(&detail))?;
            Ok(())
        })
    }

    /// Every instance that should move has moved: the roll-out is done.
    pub fn finish_rollout(&mut self, r: &Rollout) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runtime_activations SET rollout = 'done' WHERE id = ?1",
                [r.activation_id],
            )?;
            let detail = serde_json::json!({ "runtime": r.runtime_id, "moved": r.steps.len() });
            events::record(tx, None, ACTOR, "rollout.done", Some(&detail))?;
            Ok(())
        })
    }

    /// Stops a roll-out because `instance` did not become ready: its step is reverted, the
    /// activation is marked rolled back with `reason`, and the activation it replaced is the
    /// active one again, so every instance runs the previous runtime.
    pub fn fail_rollout(&mut self, r: &Rollout, instance: &str, reason: &str) -> Result<()> {
        self.write(|tx| {
            let now = now_ms();
            tx.execute(
                "UPDATE rollout_steps SET state = 'reverted', finished_at = ?3, detail = ?4
                 WHERE activation_id = ?1 AND instance = ?2",
                params![r.activation_id, instance, now, reason],
            )?;
            tx.execute(
                "UPDATE runtime_activations SET status = 'rolled-back', rollout = 'failed',
                        detail = ?2
                 WHERE id = ?1",
                params![r.activation_id, format!("{instance}: {reason}")],
            )?;
            let replaced: Option<i64> = tx
                .query_row(
                    "SELECT id FROM runtime_activations
                     WHERE id < ?1 AND runtime_id = ?2 ORDER BY id DESC LIMIT 1",
                    params![r.activation_id, r.previous_id],
                    |row| row.get(0),
                )
                .optional()?;
            match replaced {
                Some(id) => {
                    tx.execute(
                        "UPDATE runtime_activations SET status = 'active' WHERE id = ?1",
                        [id],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO runtime_activations (runtime_id, activated_at, actor)
                         VALUES (?1, ?2, ?3)",
                        params![r.previous_id, now, ACTOR],
                    )?;
                }
            }
            let detail = serde_json::json!({
                "runtime": r.runtime_id,
                "back_to": r.previous_id,
                "reason": reason,
            });
            events::record(tx, Some(instance), ACTOR, "rollout.failed", Some(&detail))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::test_store;

    fn rolling(s: &mut Store, from: &str, to: &str) -> Rollout {
        s.activate_runtime(from, "test").unwrap();
        s.activate_runtime(to, "test").unwrap();
        s.current_rollout().unwrap().expect("a roll-out")
    }

    #[test]
    fn the_first_activation_has_nothing_to_roll_out() {
        let (_d, mut s) = test_store(&[]);
        s.activate_runtime("a", "test").unwrap();
        assert_eq!(s.current_rollout().unwrap(), None);
    }

    #[test]
    fn steps_are_recorded_and_the_rollout_finishes() {
        let (_d, mut s) = test_store(&[]);
        let r = rolling(&mut s, "a", "b");
        assert_eq!((r.runtime_id.as_str(), r.previous_id.as_str()), ("b", "a"));
        s.begin_rollout_step(&r, "alice").unwrap();
        let r = s.current_rollout().unwrap().unwrap();
        assert_eq!(r.moving().unwrap().instance, "alice");
        s.finish_rollout_step(&r, "alice", 1200).unwrap();
        let r = s.current_rollout().unwrap().unwrap();
        assert_eq!(r.moving(), None);
        assert_eq!(r.step("alice").unwrap().state, "ready");
        s.finish_rollout(&r).unwrap();
        assert_eq!(s.current_rollout().unwrap(), None);
        let last = s.latest_rollout().unwrap().unwrap();
        assert_eq!(last.state, "done");
        assert_eq!(s.active_runtime().unwrap().unwrap().runtime_id, "b");
    }

    #[test]
    fn a_failed_rollout_puts_the_previous_runtime_back() {
        let (_d, mut s) = test_store(&[]);
        let r = rolling(&mut s, "a", "b");
        s.begin_rollout_step(&r, "alice").unwrap();
        s.fail_rollout(&r, "alice", "not ready within 60s").unwrap();
        assert_eq!(s.current_rollout().unwrap(), None);
        let active = s.active_runtime().unwrap().unwrap();
        assert_eq!(active.runtime_id, "a");
        let last = s.latest_rollout().unwrap().unwrap();
        assert_eq!(last.state, "failed");
        assert_eq!(last.detail.as_deref(), Some("alice: not ready within 60s"));
        assert_eq!(last.steps[0].state, "reverted");
        // Activating the same runtime again starts a new roll-out from the restored one.
        s.activate_runtime("b", "test").unwrap();
        let again = s.current_rollout().unwrap().unwrap();
        assert_eq!(again.previous_id, "a");
        assert!(again.steps.is_empty());
    }

    #[test]
    fn a_newer_activation_stops_the_rollout_it_supersedes() {
        let (_d, mut s) = test_store(&[]);
        let first = rolling(&mut s, "a", "b");
        s.activate_runtime("c", "test").unwrap();
        let stopped = s.rollout(first.activation_id).unwrap().unwrap();
        assert_eq!(stopped.state, "failed");
        assert!(stopped.detail.unwrap().contains("superseded"));
        let now = s.current_rollout().unwrap().unwrap();
        assert_eq!(
            (now.runtime_id.as_str(), now.previous_id.as_str()),
            ("c", "b")
        );
    }
}
