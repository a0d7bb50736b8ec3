//! The `runtimes` and `runtime_activations` tables.

use super::{events, now_ms, Result, Store};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeRecord {
    pub id: String,
    pub built_at: i64,
    pub agent_version: String,
    pub protocol: i64,
    pub toolbox: Option<String>,
    pub size_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activation {
    pub runtime_id: String,
    pub previous_id: Option<String>,
    pub activated_at: i64,
    pub actor: String,
}

impl Store {
    /// Records a built runtime (a rebuild of the same id keeps the first record).
    pub fn register_runtime(&mut self, r: &RuntimeRecord) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO runtimes (id, built_at, agent_version, protocol, toolbox, size_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.id, r.built_at, r.agent_version, r.protocol, r.toolbox, r.size_bytes],
            )?;
            Ok(())
        })
    }

    pub fn runtimes(&self) -> Result<Vec<RuntimeRecord>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, built_at, agent_version, protocol, toolbox, size_bytes
             FROM runtimes ORDER BY built_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RuntimeRecord {
                id: r.get(0)?,
                built_at: r.get(1)?,
                agent_version: r.get(2)?,
                protocol: r.get(3)?,
                toolbox: r.get(4)?,
                size_bytes: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn runtime(&self, id: &str) -> Result<Option<RuntimeRecord>> {
        Ok(self.runtimes()?.into_iter().find(|r| r.id == id))
    }

    /// The runtime instances should run, with the one it replaced.
    pub fn active_runtime(&self) -> Result<Option<Activation>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT runtime_id, previous_id, activated_at, actor FROM runtime_activations
                 WHERE status = 'active' ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(Activation {
                        runtime_id: r.get(0)?,
                        previous_id: r.get(1)?,
                        activated_at: r.get(2)?,
                        actor: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Makes `id` the active runtime; the previous one becomes its rollback target.
    /// Returns the previous id. Activating the active runtime again changes nothing.
    pub fn activate_runtime(&mut self, id: &str, actor: &str) -> Result<Option<String>> {
        let current = self.active_runtime()?;
        if current.as_ref().map(|a| a.runtime_id.as_str()) == Some(id) {
            return Ok(current.and_then(|a| a.previous_id));
        }
        let previous = current.map(|a| a.runtime_id);
        // Replacing a runtime is rolled out one instance at a time (see `store::rollouts`);
        // the first activation has nothing to replace.
        let rollout = previous.as_ref().map(|_| "rolling");
        self.write(|tx| {
            tx.execute(
                "UPDATE runtime_activations
                 SET rollout = 'failed', detail = 'superseded by the activation of ' || ?1
                 WHERE status = 'active' AND rollout = 'rolling'",
                [id],
            )?;
            tx.execute(
                "UPDATE runtime_activations SET status = 'superseded' WHERE status = 'active'",
                [],
            )?;
            tx.execute(
                "INSERT INTO runtime_activations (runtime_id, previous_id, activated_at, actor, rollout)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, previous, now_ms(), actor, rollout],
            )?;
            let detail = serde_json::json!({ "runtime": id, "previous": previous });
            events::record(tx, None, actor, "runtime.activated", Some(&detail))?;
            Ok(())
        })?;
        Ok(previous)
    }

    /// Live instances whose container runs `id`.
    pub fn runtime_users(&self, id: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare(
            "SELECT name FROM instances WHERE runtime_id = ?1 AND removed_at IS NULL ORDER BY name",
        )?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn forget_runtime(&mut self, id: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM runtimes WHERE id = ?1", [id])?;
            let detail = serde_json::json!({ "runtime": id });
            events::record(tx, None, actor, "runtime.removed", Some(&detail))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> RuntimeRecord {
        RuntimeRecord {
            id: id.into(),
            built_at: 1,
            agent_version: "0.1.0".into(),
            protocol: 1,
            toolbox: None,
            size_bytes: 10,
        }
    }

    #[test]
    fn activation_keeps_the_previous_as_rollback_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(s.active_runtime().unwrap(), None);
        s.register_runtime(&rec("aaaa")).unwrap();
        s.register_runtime(&rec("aaaa")).unwrap();
        s.register_runtime(&rec("bbbb")).unwrap();
        assert_eq!(s.runtimes().unwrap().len(), 2);
        assert_eq!(s.activate_runtime("aaaa", "cli").unwrap(), None);
        assert_eq!(
            s.activate_runtime("bbbb", "cli").unwrap(),
            Some("aaaa".into())
        );
        assert_eq!(
            s.activate_runtime("bbbb", "cli").unwrap(),
            Some("aaaa".into())
        );
        let active = s.active_runtime().unwrap().unwrap();
        assert_eq!(
            (active.runtime_id.as_str(), active.previous_id.as_deref()),
            ("bbbb", Some("aaaa"))
        );
        let n: i64 = s
            .conn()
            .query_row(
                "SELECT count(*) FROM runtime_activations WHERE status = 'active'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}
