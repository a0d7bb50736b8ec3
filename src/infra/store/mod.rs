//! The SQLite store: the single source of truth. All SQL in the product lives under here.

pub mod activity;
pub mod backup;
pub mod channels;
pub mod deliveries;
pub mod events;
pub mod groups;
pub mod instances;
pub mod messages;
pub mod meta;
mod migrations;
pub mod prune;
pub mod rollouts;
pub mod runtimes;
pub mod tasks;
pub mod usage;
pub mod web_requests;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::domain::clock::now_ms;

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
    #[error("message id {0:?} is already taken by a different message")]
    MessageIdTaken(String),
    /// SQLite could not write because the file system has no room left: `SQLITE_FULL`, or an
    /// I/O error on a write, sync or resize whose system error is `ENOSPC`. `path` is the
    /// database, where the error was seen through a [`Store`] (always, but for the commit of a
    /// transaction taken with [`Store::begin`]).
    #[error(
        "the disk is full (database or its journal could not grow){}",
        path.as_deref().map(|p| format!(": {}", p.display())).unwrap_or_default()
    )]
    DiskFull {
        path: Option<PathBuf>,
        source: rusqlite::Error,
    },
    #[error("the database holds something it never should: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    /// Without the connection at hand only `SQLITE_FULL` is recognised as a full disk;
    /// [`StoreError::seen_on`] adds the database's path and the `ENOSPC` I/O errors.
    fn from(source: rusqlite::Error) -> Self {
        if is_disk_full(&source, None) {
            StoreError::DiskFull { path: None, source }
        } else {
            StoreError::Sqlite(source)
        }
    }
}

impl StoreError {
    /// Completes an error that came from `conn` (the database at `path`): a full disk names
    /// the database, and an I/O error that the connection's last system error shows to be
    /// `ENOSPC` becomes [`StoreError::DiskFull`]. Call it before running anything else on
    /// `conn`, so that system error is still this one's. Other errors are returned as they are.
    fn seen_on(self, conn: &Connection, path: &Path) -> Self {
        let source = match self {
            StoreError::DiskFull { path: None, source } => source,
            StoreError::Sqlite(source) => source,
            other => return other,
        };
        if is_disk_full(&source, Some(system_errno(conn))) {
            StoreError::DiskFull {
                path: Some(path.to_path_buf()),
                source,
            }
        } else {
            StoreError::Sqlite(source)
        }
    }
}

/// The `errno` of the I/O call behind the connection's most recent `SQLITE_IOERR` or
/// `SQLITE_CANTOPEN` (SQLite records it as it reports the error; 0 if there was none).
fn system_errno(conn: &Connection) -> i32 {
    // SAFETY: the handle is live for as long as `conn`, and sqlite3_system_errno only reads
    // a field of it.
    unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) }
}

/// Whether `e` means the disk is full. `SQLITE_FULL` always does (SQLite's unix VFS turns a
/// short write with `ENOSPC` into it). A sync, resize or shared-memory sizing that fails with
/// `ENOSPC` is reported as `SQLITE_IOERR_*` instead: that counts when `system_errno`, the
/// connection's last system error, is `ENOSPC`; without it (`None`) it cannot be told apart
/// from any other I/O error.
fn is_disk_full(e: &rusqlite::Error, system_errno: Option<i32>) -> bool {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(f, _) = e else {
        return false;
    };
    match f.code {
        rusqlite::ErrorCode::DiskFull => true,
        rusqlite::ErrorCode::SystemIoFailure => {
            matches!(
                f.extended_code,
                ffi::SQLITE_IOERR_WRITE
                    | ffi::SQLITE_IOERR_FSYNC
                    | ffi::SQLITE_IOERR_DIR_FSYNC
                    | ffi::SQLITE_IOERR_TRUNCATE
                    | ffi::SQLITE_IOERR_SHMSIZE
            ) && system_errno == Some(nix::libc::ENOSPC)
        }
        _ => false,
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        // Errors name the database; a full disk says so rather than "cannot open".
        let open_err = |conn: Option<&Connection>, source| {
            let e = match conn {
                Some(c) => StoreError::from(source).seen_on(c, path),
                None => StoreError::from(source),
            };
            match e {
                StoreError::Sqlite(source) => StoreError::Open {
                    path: path.to_path_buf(),
                    source,
                },
                StoreError::DiskFull { source, .. } => StoreError::DiskFull {
                    path: Some(path.to_path_buf()),
                    source,
                },
                other => other,
            }
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(None, e))?;
        let setup = |conn: &Connection| -> rusqlite::Result<()> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // WAL lets the CLI read while the daemon writes; NORMAL sync is durable in WAL
            // mode except for the last transactions on power loss, never corrupting.
            set_wal(conn)?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")
        };
        setup(&conn).map_err(|e| open_err(Some(&conn), e))?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate().map_err(|e| store.seen(e))?;
        Ok(store)
    }

    /// `e`, an error from this store's connection, completed by [`StoreError::seen_on`].
    fn seen(&self, e: StoreError) -> StoreError {
        e.seen_on(&self.conn, &self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.seen(e.into()))
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
        let run = |conn: &mut Connection| -> Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run(&mut self.conn).map_err(|e| self.seen(e))
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
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.seen(e.into()))
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
    fn a_database_that_cannot_grow_says_the_disk_is_full_and_names_the_file() {
        let (dir, mut store) = test_store(&[]);
        // SQLITE_FULL, as from a full disk: the database may not grow by a single page.
        let pages: i64 = store
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        store
            .conn
            .pragma_update(None, "max_page_count", pages)
            .unwrap();
        let err = store
            .write(|tx| {
                tx.execute_batch(
                    "CREATE TABLE ballast(b BLOB); INSERT INTO ballast VALUES (zeroblob(100000));",
                )?;
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
        let db = dir.path().join("s.db");
        assert_eq!(
            err.to_string(),
            format!(
                "the disk is full (database or its journal could not grow): {}",
                db.display()
            )
        );
        // Nothing was half-written, and the store still works.
        assert_eq!(store.integrity_check().unwrap(), "ok");
        store
            .write(|tx| Ok(tx.execute("DELETE FROM instances", [])?))
            .unwrap();
    }

    #[test]
    fn an_io_error_from_enospc_is_a_full_disk_and_other_errors_keep_their_variant() {
        use rusqlite::ffi;
        let failure = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        let enospc = Some(nix::libc::ENOSPC);
        for code in [
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_IOERR_DIR_FSYNC,
            ffi::SQLITE_IOERR_TRUNCATE,
            ffi::SQLITE_IOERR_SHMSIZE,
        ] {
            assert!(is_disk_full(&failure(code), enospc), "{code}");
            assert!(
                !is_disk_full(&failure(code), Some(nix::libc::EIO)),
                "{code}"
            );
            assert!(!is_disk_full(&failure(code), None), "{code}");
        }
        assert!(!is_disk_full(&failure(ffi::SQLITE_IOERR_READ), enospc));
        assert!(!is_disk_full(&failure(ffi::SQLITE_BUSY), enospc));
        assert!(is_disk_full(&failure(ffi::SQLITE_FULL), None));

        // Without a connection at hand: SQLITE_FULL is a full disk, without a path...
        let full = StoreError::from(failure(ffi::SQLITE_FULL));
        assert!(matches!(full, StoreError::DiskFull { path: None, .. }));
        assert_eq!(
            full.to_string(),
            "the disk is full (database or its journal could not grow)"
        );
        // ...and everything else is the generic database error, as before.
        let io = StoreError::from(failure(ffi::SQLITE_IOERR_FSYNC));
        assert!(matches!(io, StoreError::Sqlite(_)), "{io:?}");
        let text = io.to_string();
        assert!(
            text.starts_with("database error: ") && text.contains("disk I/O error"),
            "{text}"
        );
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
