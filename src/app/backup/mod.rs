//! Backups of a home and restores from them.
//!
//! A backup is one `tar.gz` archive (mode 0600):
//!
//! ```text
//! manifest.json                       first: format, versions, home id, every entry's hash
//! supervisor.db                       a copy made with SQLite's online backup API
//! supervisor.toml                     if present
//! instances/<name>/config.json        for every live instance
//! instances/<name>/workspace/...      the whole tree
//! instances/<name>/ipc/{in,out}/      the directories only
//! ```
//!
//! Not in it: `runtime/` (rebuilt with `runtime build`), `run/` (the daemon's socket and
//! lock), `archive/` (removed instances' files), `backups/`, and the IPC directories' files
//! (see [`collect`]). `restore` checks the whole archive before it creates anything.

pub mod archive;
pub mod collect;
pub mod create;
pub mod manifest;
pub mod restore;
pub mod scan;

use std::path::{Path, PathBuf};

use crate::infra::home::HomeError;
use crate::infra::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the database copy fails its integrity check: {0}")]
    Integrity(String),
    #[error("the database has no home id: run `supervisor init` on this home")]
    NoHomeId,
    #[error("refusing to write the archive to {}: {why}", path.display())]
    BadOut { path: PathBuf, why: String },
    #[error(transparent)]
    Collect(#[from] collect::CollectError),
    #[error(transparent)]
    Write(#[from] archive::WriteError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BackupError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
