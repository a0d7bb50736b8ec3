//! The API's connections to the store, opened once and reused: a request borrows one for its
//! blocking work and gives it back, so no request pays for opening the database (and checking
//! its migrations) again. A pool rather than one shared connection, because some requests
//! hold theirs for long (`start --wait` watches the store until the instance runs) and must
//! not keep a message waiting.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::infra::store::{Store, StoreError};

/// How many idle connections are kept; more are opened when more requests run at once, and
/// closed when they are given back to a full pool.
const MAX_IDLE: usize = 8;

pub(super) struct StorePool {
    path: PathBuf,
    idle: Mutex<Vec<Store>>,
}

impl StorePool {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle connection, or a new one when none is idle. Blocks (opening one does I/O).
    pub(super) fn take(&self) -> Result<Store, StoreError> {
        let idle = self.lock().pop();
        match idle {
            Some(store) => Ok(store),
            None => Store::open(&self.path),
        }
    }

    /// Gives a connection back. One whose work panicked is never given back: it is dropped,
    /// and its transaction with it.
    pub(super) fn give(&self, store: Store) {
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(store);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Store>> {
        // A list of connections cannot be left half-changed by a panic.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_reused_and_at_most_a_few_kept() {
        let dir = tempfile::tempdir().unwrap();
        let pool = StorePool::new(dir.path().join("s.db"));
        let first = pool.take().unwrap();
        pool.give(first);
        assert_eq!(pool.idle(), 1);
        let again = pool.take().unwrap();
        assert_eq!(
            pool.idle(),
            0,
            "the idle one was taken, not a new one opened"
        );
        pool.give(again);

        let many: Vec<Store> = (0..MAX_IDLE + 3).map(|_| pool.take().unwrap()).collect();
        for s in many {
            pool.give(s);
        }
        assert_eq!(pool.idle(), MAX_IDLE);
    }
}
