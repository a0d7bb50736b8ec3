//! The SQLite store: the single source of truth. All SQL in the product lives under here.

pub mod activity;
pub mod backup;
pub mod events;
pub mod instances;
pub mod messages;
pub mod meta;
mod migrations;
pub mod prune;
pub mod runtimes;
pub mod tasks;
pub mod usage;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use migrations::latest_version;

/// How long a writer waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {} has schema version {found}, newer than this supervisor knows ({known}): upgrade supervisor",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database migration to version {version} failed: {source}")]
    Migrate {
        version: i64,
        source: rusqlite::Error,
    },
    #[error("an instance named {0:?} already exists")]
    InstanceExists(String),
    #[error("no turn {0:?} of this instance")]
    UnknownTurn(String),
    #[error("no task {0} (see `supervisor task list`)")]
    NoSuchTask(i64),
    #[error("task {0} was just started; try again in a moment")]
    RunExists(i64),
    #[error("no instance named {0:?}")]
    NoSuchInstance(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL lets the CLI read while the daemon writes; NORMAL sync is durable in WAL mode
        // except for the last transactions on power loss, never corrupting.
        set_wal(&conn).map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = latest_version();
        loop {
            // Read the version inside an IMMEDIATE transaction so two processes opening a new
            // database at once cannot both apply the same migration.
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if found > known {
                return Err(StoreError::NewerSchema {
                    path: self.path.clone(),
                    found,
                    known,
                });
            }
            if found == known {
                return Ok(());
            }
            let version = found + 1;
            let step = |tx: &rusqlite::Transaction| -> rusqlite::Result<()> {
                tx.execute_batch(migrations::MIGRATIONS[found as usize])?;
                tx.pragma_update(None, "user_version", version)?;
                Ok(())
            };
            step(&tx).map_err(|source| StoreError::Migrate { version, source })?;
            tx.commit()
                .map_err(|source| StoreError::Migrate { version, source })?;
        }
    }

    /// Runs `f` in an IMMEDIATE transaction (takes the write lock up front, so concurrent
    /// writers queue on busy_timeout instead of failing mid-transaction).
    pub fn write<T>(&mut self, f: impl FnOnce(&rusqlite::Transaction) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Like [`Store::write`], but the caller decides when to commit: used where a filesystem
    /// step must happen between the row change and the commit (all-or-nothing operations).
    pub fn begin(&mut self) -> Result<rusqlite::Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// `PRAGMA integrity_check`: "ok" or the first problems found.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// Switches to WAL. Two processes creating the same new database at once can see
/// SQLITE_BUSY here without the busy handler being consulted, so retry for a while.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Milliseconds since the Unix epoch: the one time format stored in the database.
/// A fresh store in a temporary directory with the named instances, for unit tests.
#[cfg(test)]
pub(crate) fn test_store(instances: &[&str]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("s.db")).unwrap();
    for name in instances {
        s.write(|tx| instances::insert(tx, name, "expert").map(drop))
            .unwrap();
    }
    (dir, s)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_new_database_to_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_version());
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn reopening_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), latest_version());
    }

    #[test]
    fn every_migration_applies_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        for (i, sql) in migrations::MIGRATIONS.iter().enumerate() {
            conn.execute_batch(sql)
                .unwrap_or_else(|e| panic!("migration {} failed: {e}", i + 1));
        }
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).unwrap();
            store
                .conn
                .pragma_update(None, "user_version", latest_version() + 1)
                .unwrap();
        }
        match Store::open(&path) {
            Err(StoreError::NewerSchema { found, known, .. }) => {
                assert_eq!((found, known), (latest_version() + 1, latest_version()))
            }
            other => panic!("expected NewerSchema, got {:?}", other.err()),
        }
    }

    #[test]
    fn concurrent_openers_migrate_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Store::open(&path).map(|s| s.schema_version().unwrap()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), latest_version());
        }
    }
}
