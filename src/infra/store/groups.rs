//! Chat groups in the `instances` table: a group is an instance row with a `parent_id` (its
//! instance) and a `chat` (the conversation it serves). Everything keyed by instance (its
//! container, uid, messages, tasks, usage) then covers groups unchanged; what stays the
//! instance's own (its channels, their outbox and pairings) is looked up by [`root_id`].

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::instances::{find_live, instance_id, next_uid, InstanceRecord, COLUMNS};
use super::{events, now_ms, Result, Store, StoreError};

/// The row id of the instance that `id` is, or whose group `id` is.
pub(super) fn root_id(conn: &Connection, id: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(parent_id, id) FROM instances WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

/// The live group of `parent` that serves `chat`, inside the caller's transaction.
pub fn find_group(conn: &Connection, parent: &str, chat: &str) -> Result<Option<InstanceRecord>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM instances
                 WHERE parent_id = (SELECT id FROM instances WHERE name = ?1 AND removed_at IS NULL)
                   AND chat = ?2 AND removed_at IS NULL"
            ),
            params![parent, chat],
            super::instances::from_row,
        )
        .optional()?)
}

/// A new group row, inside the caller's transaction (which also stages its files): its own
/// uid, wanting to run (it is started on demand, when work waits), and the context its chat
/// had before it existed (waiting on the instance) moved into it, so its first turn sees it.
pub fn insert_group(
    conn: &Connection,
    parent: &InstanceRecord,
    name: &str,
    chat: &str,
    title: Option<&str>,
) -> Result<InstanceRecord> {
    if find_live(conn, name)?.is_some() {
        return Err(StoreError::InstanceExists(name.to_string()));
    }
    let uid = next_uid(conn)?;
    let now = now_ms();
    let res = conn.execute(
        "INSERT INTO instances (name, soul, created_at, uid, parent_id, chat, title, desired_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')",
        params![name, parent.soul, now, uid, parent.id, chat, title],
    );
    match res {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(StoreError::InstanceExists(name.to_string()));
        }
        Err(e) => return Err(e.into()),
    }
    let id = conn.last_insert_rowid();
    let moved = conn.execute(
        "UPDATE messages SET instance_id = ?1
         WHERE instance_id = ?2 AND chat = ?3 AND direction = 'in' AND state = 'context'",
        params![id, parent.id, chat],
    )?;
    let detail = serde_json::json!({"group": name, "chat": chat, "title": title, "uid": uid,
        "context_moved": moved});
    events::record(
        conn,
        Some(&parent.name),
        "daemon",
        "group.created",
        Some(&detail),
    )?;
    find_live(conn, name)?.ok_or_else(|| StoreError::NoSuchInstance(name.to_string()))
}

/// One group as `groups` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRow {
    #[serde(flatten)]
    pub record: InstanceRecord,
    /// Inbound and outbound messages it holds.
    pub messages: i64,
    /// Model tokens it used since midnight UTC.
    pub tokens_today: i64,
}

impl Store {
    /// Live instances that are not groups, by name: what has channels, ports and heartbeats.
    pub fn roots(&self) -> Result<Vec<InstanceRecord>> {
        Ok(self
            .instances()?
            .into_iter()
            .filter(|r| r.group.is_none())
            .collect())
    }

    /// The live groups of `parent`, by name.
    pub fn groups_of(&self, parent: &str) -> Result<Vec<InstanceRecord>> {
        let parent_id = instance_id(self.conn(), parent)?;
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM instances
             WHERE parent_id = ?1 AND removed_at IS NULL ORDER BY name"
        ))?;
        let rows = stmt.query_map([parent_id], super::instances::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The live group of `parent` that serves `chat`.
    pub fn group(&self, parent: &str, chat: &str) -> Result<Option<InstanceRecord>> {
        find_group(self.conn(), parent, chat)
    }

    /// `parent`'s live groups with their message counts and today's tokens (since `day_start`).
    pub fn group_rows(&self, parent: &str, day_start: i64) -> Result<Vec<GroupRow>> {
        let mut out = Vec::new();
        for record in self.groups_of(parent)? {
            let (messages, tokens_today) = self.conn().query_row(
                "SELECT (SELECT count(*) FROM messages WHERE instance_id = ?1),
                        (SELECT COALESCE(sum(prompt_tokens + completion_tokens), 0)
                         FROM model_usage WHERE instance_id = ?1 AND at >= ?2)",
                params![record.id, day_start],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            out.push(GroupRow {
                record,
                messages,
                tokens_today,
            });
        }
        Ok(out)
    }

    /// Records the chat's title as its channel last told it, when it changed.
    pub fn set_group_title(&mut self, name: &str, title: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE instances SET title = ?2
                 WHERE name = ?1 AND removed_at IS NULL AND parent_id IS NOT NULL
                   AND title IS NOT ?2",
                params![name, title],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::instances::insert;
    use crate::infra::store::messages::Inbound;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store.write(|tx| insert(tx, "alice", "expert")).unwrap();
        store.write(|tx| insert(tx, "bob", "expert")).unwrap();
        (dir, store)
    }

    fn inbound<'a>(instance: &'a str, chat: &'a str, state: &'a str) -> Inbound<'a> {
        Inbound {
            instance,
            channel: "telegram",
            sender: "telegram:7",
            body: "hi",
            state,
            chat,
            sender_name: None,
        }
    }

    #[test]
    fn a_group_is_an_instance_row_of_its_own_tied_to_its_instance_and_chat() {
        let (_d, mut s) = store();
        let alice = s.instance("alice").unwrap();
        // Context said in the chat before its group existed waits on the instance.
        s.accept_message_once("c1", &inbound("alice", "telegram:-5", "context"))
            .unwrap();
        s.accept_message_once("c2", &inbound("alice", "telegram:-6", "context"))
            .unwrap();
        let g = s
            .write(|tx| insert_group(tx, &alice, "alice_0000000a", "telegram:-5", Some("Team")))
            .unwrap();
        assert_ne!(g.uid, alice.uid);
        let group = g.group.clone().unwrap();
        assert_eq!(
            (
                group.parent.as_str(),
                group.chat.as_str(),
                group.title.as_deref()
            ),
            ("alice", "telegram:-5", Some("Team"))
        );
        assert_eq!(
            s.message("c1").unwrap().instance,
            "alice_0000000a",
            "moved in"
        );
        assert_eq!(
            s.message("c2").unwrap().instance,
            "alice",
            "another chat's stays"
        );
        assert_eq!(s.group("alice", "telegram:-5").unwrap(), Some(g.clone()));
        assert_eq!(s.group("alice", "telegram:-6").unwrap(), None);
        assert_eq!(s.group("bob", "telegram:-5").unwrap(), None);

        // One live group per (instance, chat).
        let again = s.write(|tx| insert_group(tx, &alice, "alice_0000000b", "telegram:-5", None));
        assert!(
            matches!(again, Err(StoreError::InstanceExists(_))),
            "{again:?}"
        );

        let roots: Vec<_> = s.roots().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(roots, ["alice", "bob"]);
        assert_eq!(
            s.instances().unwrap().len(),
            3,
            "a group is a live instance"
        );
        assert_eq!(s.groups_of("alice").unwrap(), vec![g]);
        s.set_group_title("alice_0000000a", "Team 2").unwrap();
        let rows = s.group_rows("alice", 0).unwrap();
        assert_eq!(
            rows[0].record.group.as_ref().unwrap().title.as_deref(),
            Some("Team 2")
        );
        assert_eq!(rows[0].messages, 1);
    }

    #[test]
    fn purging_an_instance_purges_its_groups() {
        let (_d, mut s) = store();
        let alice = s.instance("alice").unwrap();
        s.write(|tx| insert_group(tx, &alice, "alice_0000000a", "telegram:-5", None))
            .unwrap();
        s.write(|tx| super::super::instances::purge(tx, "alice"))
            .unwrap();
        let names: Vec<_> = s.instances().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["bob"]);
    }
}
