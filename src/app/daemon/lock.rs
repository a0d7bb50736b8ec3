//! One daemon per home: an exclusive flock on `run/daemon.lock`, held for the daemon's life.
//! The kernel drops the lock when the process dies, so a killed daemon never blocks the next.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::infra::fsutil;

pub const LOCK_FILE: &str = "daemon.lock";
pub const PID_FILE: &str = "daemon.pid";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another supervisor daemon is already running on this home{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Held { pid: Option<u32> },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct DaemonLock {
    _lock: Flock<File>,
    pid_file: PathBuf,
}

/// The pid a running daemon recorded, if any.
pub fn recorded_pid(run_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(run_dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

impl DaemonLock {
    pub fn acquire(run_dir: &Path) -> Result<Self, LockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        fsutil::create_private_dir(run_dir).map_err(io(run_dir))?;
        let path = run_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(LockError::Held {
                    pid: recorded_pid(run_dir),
                })
            }
            Err((_, errno)) => return Err(io(&path)(std::io::Error::from(errno))),
        };
        let pid_file = run_dir.join(PID_FILE);
        fsutil::write_atomic(&pid_file, format!("{}\n", std::process::id()).as_bytes())
            .map_err(io(&pid_file))?;
        Ok(Self {
            _lock: lock,
            pid_file,
        })
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DaemonLock::acquire(dir.path()).unwrap();
        assert_eq!(recorded_pid(dir.path()), Some(std::process::id()));
        match DaemonLock::acquire(dir.path()) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        assert_eq!(recorded_pid(dir.path()), None);
        DaemonLock::acquire(dir.path()).unwrap();
    }
}
