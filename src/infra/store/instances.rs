//! The `instances` table.

use super::{events, now_ms, Result, Store, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::domain::instance::state::{DesiredState, InstanceState};

/// An instance as the store knows it (its config lives in its config.json).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRecord {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    pub soul: String,
    pub created_at: i64,
    pub desired_state: DesiredState,
    pub state: InstanceState,
    pub state_detail: Option<String>,
    pub state_changed_at: Option<i64>,
    pub container_id: Option<String>,
    pub runtime_id: Option<String>,
    pub restart_count: i64,
    pub last_exit_code: Option<i64>,
    pub last_activity_at: Option<i64>,
    /// A `restart` the daemon has not carried out yet.
    pub restart_pending: bool,
    /// The uid (and gid) its container runs as and its files belong to; its own.
    pub uid: u32,
    /// A chat group's instance and conversation; None for an instance.
    pub group: Option<GroupOf>,
}

/// What makes a record a chat group (`"isolation": "chat"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupOf {
    /// The instance it belongs to.
    pub parent: String,
    /// The conversation it serves (`<channel>:<chat>[/<topic>]`).
    pub chat: String,
    /// The chat's title as the channel last told it, if any.
    pub title: Option<String>,
}

pub(super) const COLUMNS: &str = "id, name, soul, created_at, desired_state, state, state_detail, \
     state_changed_at, container_id, runtime_id, restart_count, last_exit_code, last_activity_at, \
     restart_requested_at IS NOT NULL, uid, \
     (SELECT p.name FROM instances p WHERE p.id = instances.parent_id), chat, title";

pub(super) fn from_row(r: &Row) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        soul: r.get(2)?,
        created_at: r.get(3)?,
        desired_state: word(r, 4)?,
        state: word(r, 5)?,
        state_detail: r.get(6)?,
        state_changed_at: r.get(7)?,
        container_id: r.get(8)?,
        runtime_id: r.get(9)?,
        restart_count: r.get(10)?,
        last_exit_code: r.get(11)?,
        last_activity_at: r.get(12)?,
        restart_pending: r.get(13)?,
        uid: r.get(14)?,
        group: match r.get::<_, Option<String>>(15)? {
            Some(parent) => Some(GroupOf {
                parent,
                chat: r.get::<_, Option<String>>(16)?.unwrap_or_default(),
                title: r.get(17)?,
            }),
            None => None,
        },
    })
}

/// A state column as its enum; a word this build does not know is a corrupt row.
fn word<T: std::str::FromStr>(r: &Row, i: usize) -> rusqlite::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(i)?;
    text.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A new live instance's row id and uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub id: i64,
    pub uid: u32,
}

/// Inserts a new live instance with the next uid of the home's block; refuses a name a live
/// instance already has.
pub fn insert(conn: &Connection, name: &str, soul: &str) -> Result<Inserted> {
    if find_live(conn, name)?.is_some() {
        return Err(StoreError::InstanceExists(name.to_string()));
    }
    let uid = next_uid(conn)?;
    let res = conn.execute(
        "INSERT INTO instances (name, soul, created_at, uid) VALUES (?1, ?2, ?3, ?4)",
        params![name, soul, now_ms(), uid],
    );
    match res {
        Ok(_) => Ok(Inserted {
            id: conn.last_insert_rowid(),
            uid,
        }),
        // The partial unique index is the final word if another process raced us.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::InstanceExists(name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// How many uids a home's block holds.
const UID_BLOCK: i64 = 65_536;

/// Takes the next uid of the home's block (inside the caller's transaction).
pub(super) fn next_uid(conn: &Connection) -> Result<u32> {
    let get = |key: &str| -> Result<i64> {
        let v: String =
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?;
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("meta {key} is not a number: {v:?}")))
    };
    let (base, next) = (get("uid_base")?, get("uid_next")?);
    if next >= UID_BLOCK {
        return Err(StoreError::Corrupt(
            "this home has used all of its 65,536 instance uids".into(),
        ));
    }
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'uid_next'",
        [(next + 1).to_string()],
    )?;
    u32::try_from(base + next)
        .map_err(|_| StoreError::Corrupt(format!("uid {} is out of range", base + next)))
}

pub fn find_live(conn: &Connection, name: &str) -> Result<Option<InstanceRecord>> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM instances WHERE name = ?1 AND removed_at IS NULL"),
            [name],
            from_row,
        )
        .optional()?)
}

/// Marks a live instance removed, keeping its row and history; records where its files went.
/// An instance's groups go with it (their files are below its directory).
pub fn archive(conn: &Connection, name: &str, archive_path: &str) -> Result<()> {
    let id = instance_id(conn, name)?;
    conn.execute(
        "UPDATE instances SET removed_at = ?2, archive_path = ?3, desired_state = 'stopped'
         WHERE (id = ?1 OR parent_id = ?1) AND removed_at IS NULL",
        params![id, now_ms(), archive_path],
    )?;
    Ok(())
}

/// Deletes a live instance and, by cascade, its messages, tasks and usage.
pub fn purge(conn: &Connection, name: &str) -> Result<()> {
    let n = conn.execute(
        "DELETE FROM instances WHERE name = ?1 AND removed_at IS NULL",
        [name],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchInstance(name.to_string()));
    }
    Ok(())
}

/// Names of live instances, inside the caller's transaction.
pub fn live_names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT name FROM instances WHERE removed_at IS NULL ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What the daemon last observed of an instance; written only when it changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub state: InstanceState,
    pub detail: Option<String>,
    pub container_id: Option<String>,
    pub runtime_id: Option<String>,
    pub last_exit_code: Option<i64>,
}

impl Store {
    /// Sets what the operator wants ('running' or 'stopped'). Starting also counts as activity,
    /// so an on-demand instance started by hand runs until its idle timeout.
    pub fn set_desired(&mut self, name: &str, desired: DesiredState, actor: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE instances SET desired_state = ?2,
                     last_activity_at = CASE WHEN ?2 = 'running' THEN ?3 ELSE last_activity_at END
                 WHERE name = ?1 AND removed_at IS NULL",
                params![name, desired.as_str(), now_ms()],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchInstance(name.to_string()));
            }
            let kind = if desired == DesiredState::Running {
                "instance.start"
            } else {
                "instance.stop"
            };
            events::record(tx, Some(name), actor, kind, None)
        })
    }

    /// Asks for one restart of the instance's container (and for it to run).
    pub fn request_restart(&mut self, name: &str, actor: &str) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE instances SET desired_state = 'running', restart_requested_at = ?2,
                     last_activity_at = ?2
                 WHERE name = ?1 AND removed_at IS NULL",
                params![name, now_ms()],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchInstance(name.to_string()));
            }
            events::record(tx, Some(name), actor, "instance.restart", None)
        })
    }

    /// Instances with a pending restart request.
    pub fn restart_requests(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare(
            "SELECT name FROM instances WHERE restart_requested_at IS NOT NULL AND removed_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn clear_restart_request(&mut self, name: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE instances SET restart_requested_at = NULL WHERE name = ?1 AND removed_at IS NULL",
                [name],
            )?;
            Ok(())
        })
    }

    /// Records the observed state if it differs from the stored one; true if it did.
    pub fn record_observed(&mut self, name: &str, o: &Observed) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE instances SET state = ?2, state_detail = ?3, container_id = ?4,
                     runtime_id = ?5, last_exit_code = ?6, state_changed_at = ?7
                 WHERE name = ?1 AND removed_at IS NULL
                   AND (state IS NOT ?2 OR state_detail IS NOT ?3 OR container_id IS NOT ?4
                        OR runtime_id IS NOT ?5 OR last_exit_code IS NOT ?6)",
                params![
                    name,
                    o.state.as_str(),
                    o.detail,
                    o.container_id,
                    o.runtime_id,
                    o.last_exit_code,
                    now_ms()
                ],
            )?;
            Ok(n > 0)
        })
    }

    pub fn bump_restart_count(&mut self, name: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE instances SET restart_count = restart_count + 1 WHERE name = ?1 AND removed_at IS NULL",
                [name],
            )?;
            Ok(())
        })
    }

    /// Records an audit event outside any other change.
    pub fn record_event(
        &mut self,
        instance: Option<&str>,
        actor: &str,
        kind: &str,
        detail: Option<&serde_json::Value>,
    ) -> Result<()> {
        self.write(|tx| events::record(tx, instance, actor, kind, detail))
    }

    pub fn instance(&self, name: &str) -> Result<InstanceRecord> {
        find_live(self.conn(), name)?.ok_or_else(|| StoreError::NoSuchInstance(name.to_string()))
    }

    /// Live instances, by name.
    pub fn instances(&self) -> Result<Vec<InstanceRecord>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM instances WHERE removed_at IS NULL ORDER BY name"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Row counts that belong to an instance, for `show` and for tests of cascade deletes.
    pub fn instance_counts(&self, id: i64) -> Result<InstanceCounts> {
        let count =
            |sql: &str| -> Result<i64> { Ok(self.conn().query_row(sql, [id], |r| r.get(0))?) };
        Ok(InstanceCounts {
            messages: count("SELECT count(*) FROM messages WHERE instance_id = ?1")?,
            tasks: count("SELECT count(*) FROM tasks WHERE instance_id = ?1")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InstanceCounts {
    pub messages: i64,
    pub tasks: i64,
}

/// A record of a live instance that wants to run, for unit tests of logic built on records.
/// The row id of a live instance, by name.
pub(super) fn instance_id(conn: &Connection, name: &str) -> Result<i64> {
    conn.query_row(
        "SELECT id FROM instances WHERE name = ?1 AND removed_at IS NULL",
        [name],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::NoSuchInstance(name.to_string()))
}

#[cfg(test)]
pub(crate) fn test_record(name: &str, state: &str) -> InstanceRecord {
    InstanceRecord {
        id: 1,
        name: name.into(),
        soul: "expert".into(),
        created_at: 0,
        desired_state: DesiredState::Running,
        state: state.parse().expect("a state word"),
        state_detail: None,
        state_changed_at: None,
        container_id: None,
        runtime_id: None,
        restart_count: 0,
        last_exit_code: None,
        last_activity_at: None,
        restart_pending: false,
        uid: 16_777_217,
        group: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn insert_refuses_duplicates_but_allows_reuse_after_archive() {
        let (_d, mut s) = store();
        s.write(|tx| insert(tx, "alice", "expert").map(drop))
            .unwrap();
        let dup = s.write(|tx| insert(tx, "alice", "expert").map(drop));
        assert!(matches!(dup, Err(StoreError::InstanceExists(_))));
        s.write(|tx| archive(tx, "alice", "/x")).unwrap();
        assert!(s.instances().unwrap().is_empty());
        s.write(|tx| insert(tx, "alice", "creative").map(drop))
            .unwrap();
        assert_eq!(s.instance("alice").unwrap().soul, "creative");
    }

    #[test]
    fn every_instance_gets_its_own_uid_never_reused() {
        let (_d, mut s) = store();
        let a = s.write(|tx| insert(tx, "a", "expert")).unwrap();
        let b = s.write(|tx| insert(tx, "b", "expert")).unwrap();
        assert_eq!(b.uid, a.uid + 1);
        assert!(a.uid >= 1 << 24 && a.uid < 1 << 31, "{}", a.uid);
        s.write(|tx| purge(tx, "b")).unwrap();
        let c = s.write(|tx| insert(tx, "c", "expert")).unwrap();
        assert_eq!(
            c.uid,
            b.uid + 1,
            "a purged instance's uid is not given again"
        );
        assert_eq!(s.instance("c").unwrap().uid, c.uid);
        // Homes draw their blocks at random: two fresh ones almost never share.
        let (_d2, mut other) = store();
        let o = other.write(|tx| insert(tx, "a", "expert")).unwrap();
        assert_eq!(
            (o.uid - (1 << 24)) % 65_536,
            1,
            "the block's first uid after its base"
        );
    }

    #[test]
    fn purge_cascades() {
        let (_d, mut s) = store();
        let id = s.write(|tx| insert(tx, "bob", "assistant")).unwrap().id;
        s.conn()
            .execute(
                "INSERT INTO messages (id, instance_id, direction, channel, sender, body, state, created_at, updated_at)
                 VALUES ('m1', ?1, 'in', 'cli', 'local', 'hi', 'received', 0, 0)",
                [id],
            )
            .unwrap();
        assert_eq!(s.instance_counts(id).unwrap().messages, 1);
        s.write(|tx| purge(tx, "bob")).unwrap();
        assert_eq!(s.instance_counts(id).unwrap().messages, 0);
        assert!(matches!(
            s.instance("bob"),
            Err(StoreError::NoSuchInstance(_))
        ));
    }
}
