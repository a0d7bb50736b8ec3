//! `supervisor backup`: one archive of a home, taken while the daemon runs.
//!
//! Order matters: the database is copied first (one consistent snapshot), and its list of
//! live instances decides which instance directories are collected, so the archive never
//! holds files of an instance its database does not know. Everything is staged in a private
//! directory beside the destination and removed when done, whatever happens.

use std::fs;
use std::path::{Path, PathBuf};

use super::archive;
use super::collect::{self, Stager};
use super::manifest::{DatabaseCounts, Manifest, Skipped, FORMAT};
use super::BackupError;
use crate::infra::fsutil;
use crate::infra::home::{Home, DB_FILE};
use crate::infra::store::backup::inspect_copy;

/// What a backup wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    /// The archive's size in bytes.
    pub bytes: u64,
    pub home_id: String,
    pub schema_version: i64,
    pub database: DatabaseCounts,
    pub instances: Vec<String>,
    pub files: usize,
    pub directories: usize,
    pub skipped: Vec<Skipped>,
    /// Files that kept changing while they were copied.
    pub unsettled: Vec<String>,
}

pub fn backup(home: &Home, out: Option<&Path>) -> Result<BackupReport, BackupError> {
    let store = home.open()?;
    let now = chrono::Utc::now();
    let out = destination(home, out, &now)?;
    let out_dir = out
        .parent()
        .expect("destination has a parent")
        .to_path_buf();

    // Removed on drop, on success and on every error alike.
    let staging = tempfile::Builder::new()
        .prefix(".backup-staging-")
        .tempdir_in(&out_dir)
        .map_err(BackupError::io("create a staging directory in", &out_dir))?;
    let files = staging.path().join("files");
    fsutil::create_private_dir(&files).map_err(BackupError::io("create", &files))?;

    store.backup_to(&files.join(DB_FILE))?;
    drop(store);
    let db = inspect_copy(&files.join(DB_FILE))?;
    if db.integrity != "ok" {
        return Err(BackupError::Integrity(db.integrity));
    }
    let home_id = db.home_id.clone().ok_or(BackupError::NoHomeId)?;

    let mut stager = Stager::new(&files);
    stager.staged_file(DB_FILE, fsutil::FILE_MODE)?;
    collect::collect(home, &db.live_instances, &mut stager)?;

    let database = DatabaseCounts {
        instances: db.live_instances.len() as u64,
        messages: db.messages,
        tasks: db.tasks,
    };
    let manifest = Manifest {
        format: FORMAT,
        supervisor_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        home_id: home_id.clone(),
        schema_version: db.schema_version,
        database,
        entries: stager.entries.clone(),
        skipped: stager.skipped.clone(),
    };
    let mtime = now.timestamp().max(0) as u64;
    let bytes = archive::write(&out, &stager, &manifest, mtime)?;
    let count = |kind| manifest.entries.iter().filter(|e| e.kind == kind).count();
    Ok(BackupReport {
        path: out,
        bytes,
        home_id,
        schema_version: db.schema_version,
        database,
        instances: db.live_instances,
        files: count(super::manifest::Kind::File),
        directories: count(super::manifest::Kind::Dir),
        skipped: manifest.skipped,
        unsettled: stager.unsettled,
    })
}

/// The archive's path: `--out`, or a new name in `<home>/backups/`. Refuses a path inside what
/// is backed up (the archive would hold itself, or a staged copy of it) and an existing file.
fn destination(
    home: &Home,
    out: Option<&Path>,
    now: &chrono::DateTime<chrono::Utc>,
) -> Result<PathBuf, BackupError> {
    let out = match out {
        Some(p) => std::path::absolute(p).map_err(BackupError::io("resolve", p))?,
        None => {
            let dir = home.backups_dir();
            fsutil::create_private_dir(&dir).map_err(BackupError::io("create", &dir))?;
            let stamp = now.format("%Y%m%dT%H%M%SZ");
            unique(&dir, &format!("supervisor-{stamp}"), ".tar.gz")
        }
    };
    let refuse = |why: &str| BackupError::BadOut {
        path: out.clone(),
        why: why.to_string(),
    };
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return Err(refuse("not a file path"));
    };
    let parent = fs::canonicalize(parent).map_err(BackupError::io("open directory", parent))?;
    let resolved = parent.join(name);
    if fs::symlink_metadata(&resolved).is_ok() {
        return Err(refuse("it already exists"));
    }
    let root = fs::canonicalize(home.root()).map_err(BackupError::io("open", home.root()))?;
    if parent.starts_with(root.join("instances")) {
        return Err(refuse(
            "it is inside the instances directory, which is backed up: choose a path outside it",
        ));
    }
    let file_name = name.to_string_lossy();
    let home_file = file_name.starts_with(DB_FILE) || file_name == crate::infra::home::CONFIG_FILE;
    if parent == root && home_file {
        return Err(refuse("it would replace a file of the home"));
    }
    Ok(resolved)
}

/// `<dir>/<base><ext>`, or `<base>-2<ext>`, … when taken (two backups in one second).
fn unique(dir: &Path, base: &str, ext: &str) -> PathBuf {
    let mut candidate = dir.join(format!("{base}{ext}"));
    let mut n = 1;
    while fs::symlink_metadata(&candidate).is_ok() {
        n += 1;
        candidate = dir.join(format!("{base}-{n}{ext}"));
    }
    candidate
}
