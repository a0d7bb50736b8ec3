//! Copies of the database for `supervisor backup` and checks of a restored copy.
//!
//! The copy goes through SQLite's online backup API, never a file copy: copying
//! `supervisor.db` while the daemon writes could tear a page or miss what still sits in the
//! WAL. The whole database is copied in one step, inside one read transaction, so the copy is
//! exactly the database as of one commit; in WAL mode that read never blocks the daemon's
//! writers, and they never block it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Result, Store, StoreError, BUSY_TIMEOUT};

/// What a database copy holds, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopySummary {
    /// `ok`, or the problems `PRAGMA integrity_check` found, joined by `; `.
    pub integrity: String,
    pub schema_version: i64,
    pub home_id: Option<String>,
    /// Names of the instances that are not removed, sorted.
    pub live_instances: Vec<String>,
    pub messages: u64,
    pub tasks: u64,
}

impl Store {
    /// Writes a consistent copy of the whole database to `dest`, a new file (whatever a file
    /// already there held is replaced).
    /// The copy is a standalone file in rollback-journal mode (no `-wal` beside it), so it can
    /// be archived and read on its own; a home that opens it switches it back to WAL.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        let open_err = |source| StoreError::Open {
            path: dest.to_path_buf(),
            source,
        };
        let mut dst = Connection::open_with_flags(
            dest,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        copy_all(self.conn(), &mut dst)?;
        dst.pragma_update(None, "journal_mode", "DELETE")?;
        dst.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

/// One step copying every page: a step of `-1` holds a single read transaction for the whole
/// copy, where smaller steps would start over each time the daemon commits in between.
fn copy_all(src: &Connection, dst: &mut Connection) -> Result<()> {
    let backup = Backup::new(src, dst)?;
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            // Busy or locked: a lock the busy handler does not cover (WAL recovery, a
            // checkpoint); wait like any other reader would.
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the database stayed locked during the backup".into()),
                )
                .into())
            }
        }
    }
}

/// Reads a database copy (read-only: no journal, no migration) and says what it holds.
pub fn inspect_copy(path: &Path) -> Result<CopySummary> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: PathBuf::from(path),
        source,
    })?;
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let integrity = problems.join("; ");
    let schema_version = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let home_id = conn
        .query_row("SELECT value FROM meta WHERE key = 'home_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let live_instances = conn
        .prepare("SELECT name FROM instances WHERE removed_at IS NULL ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let count = |table: &str| -> Result<u64> {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok(CopySummary {
        integrity,
        schema_version,
        home_id,
        live_instances,
        messages: count("messages")?,
        tasks: count("tasks")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::messages::Inbound;
    use crate::infra::store::test_store;

    #[test]
    fn copy_is_consistent_standalone_and_leaves_the_source_alone() {
        let (dir, mut s) = test_store(&["alice", "bob"]);
        s.home_id().unwrap();
        for body in ["one", "two", "three"] {
            s.accept_message(&Inbound {
                instance: "alice",
                channel: "cli",
                sender: "local",
                body,
                state: "queued",
                chat: "",
                sender_name: None,
            })
            .unwrap();
        }
        let dest = dir.path().join("copy.db");
        s.backup_to(&dest).unwrap();
        assert!(
            !dir.path().join("copy.db-wal").exists(),
            "no WAL beside the copy"
        );

        let summary = inspect_copy(&dest).unwrap();
        assert_eq!(summary.integrity, "ok");
        assert_eq!(
            summary.schema_version,
            crate::infra::store::latest_version()
        );
        assert_eq!(summary.home_id, Some(s.home_id().unwrap()));
        assert_eq!(summary.live_instances, vec!["alice", "bob"]);
        assert_eq!((summary.messages, summary.tasks), (3, 0));

        let conn = Connection::open(&dest).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        // The source is still the live WAL database.
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn copy_holds_what_was_committed_while_another_connection_writes() {
        let (dir, s) = test_store(&["alice"]);
        let path = s.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            let mut w = Store::open(&path).unwrap();
            for i in 0..200 {
                w.accept_message(&Inbound {
                    instance: "alice",
                    channel: "cli",
                    sender: "local",
                    body: &format!("m{i}"),
                    state: "queued",
                    chat: "",
                    sender_name: None,
                })
                .unwrap();
            }
        });
        let dest = dir.path().join("copy.db");
        s.backup_to(&dest).unwrap();
        writer.join().unwrap();
        let summary = inspect_copy(&dest).unwrap();
        assert_eq!(summary.integrity, "ok");
        assert!(summary.messages <= 200);
    }
}
