//! The audit log: who did what, when.

use super::{now_ms, Result, Store};
use rusqlite::{params, Connection};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub instance: Option<String>,
    pub actor: String,
    pub kind: String,
    pub detail: Option<serde_json::Value>,
}

/// Records an event inside the caller's transaction (so the event commits with the change).
pub fn record(
    conn: &Connection,
    instance: Option<&str>,
    actor: &str,
    kind: &str,
    detail: Option<&serde_json::Value>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO events (at, instance, actor, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            now_ms(),
            instance,
            actor,
            kind,
            detail.map(|d| d.to_string())
        ],
    )?;
    Ok(())
}

impl Store {
    /// The most recent events for an instance (or for all when `instance` is None), newest first.
    pub fn recent_events(&self, instance: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, at, instance, actor, kind, detail FROM events
             WHERE (?1 IS NULL OR instance = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![instance, limit], |r| {
            let detail: Option<String> = r.get(5)?;
            Ok(Event {
                id: r.get(0)?,
                at: r.get(1)?,
                instance: r.get(2)?,
                actor: r.get(3)?,
                kind: r.get(4)?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
