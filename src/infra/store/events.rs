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

const COLUMNS: &str = "id, at, instance, actor, kind, detail";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Event> {
    let detail: Option<String> = r.get(5)?;
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        instance: r.get(2)?,
        actor: r.get(3)?,
        kind: r.get(4)?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

impl Store {
    /// The most recent events for an instance (or for all when `instance` is None), newest first.
    pub fn recent_events(&self, instance: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM events
             WHERE (?1 IS NULL OR instance = ?1) ORDER BY id DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![instance, limit], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The events recorded after the one with id `after` (for an instance, or all), oldest
    /// first, at most `limit`: what a follower has not seen yet. Ids only grow, so a
    /// follower that keeps the last id it printed misses nothing and repeats nothing.
    pub fn events_after(
        &self,
        after: i64,
        instance: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM events
             WHERE id > ?1 AND (?2 IS NULL OR instance = ?2) ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![after, instance, limit], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_sees_each_later_event_once_in_order() {
        let (_dir, mut s) = crate::infra::store::test_store(&["alice", "bob"]);
        let last = s
            .recent_events(None, 1)
            .unwrap()
            .first()
            .map_or(0, |e| e.id);
        for (who, kind) in [("alice", "a.one"), ("bob", "b.one"), ("alice", "a.two")] {
            s.write(|tx| record(tx, Some(who), "test", kind, None))
                .unwrap();
        }
        let all: Vec<_> = s.events_after(last, None, 100).unwrap();
        let kinds: Vec<_> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["a.one", "b.one", "a.two"]);
        let alice: Vec<_> = s.events_after(last, Some("alice"), 100).unwrap();
        assert_eq!(alice.len(), 2);
        assert!(s.events_after(all[2].id, None, 100).unwrap().is_empty());
        assert_eq!(s.events_after(last, None, 1).unwrap()[0].kind, "a.one");
    }
}
