//! Learning that an instance's `out/` has new files: inotify through `notify`, with a polling
//! fallback where the file system delivers no events. Each watched directory carries the
//! instance's own wake-up ([`Wake`]), called straight from the notify callback: it must only
//! send on an unbounded channel, so it never blocks the watcher thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

/// How often directories are scanned when events are not available.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Tells an instance that its `out/` changed; returns false once nobody listens any more.
pub type Wake = Arc<dyn Fn() -> bool + Send + Sync>;

/// Whether an event can have put a complete file in `out/`: a name that appeared (created, or
/// renamed into place) and is not a file still being written. Removals (the host's own, once
/// it has read a file), writes into a temporary file and metadata changes wake nobody: each
/// would cost the actor a round over its queues for nothing. Nothing is lost by skipping them:
/// the file an agent renames into place brings its own event, and the actor still looks at
/// its queues on every safety pass.
fn may_bring_a_file(kind: &notify::EventKind, path: &Path) -> bool {
    use notify::event::{ModifyKind, RenameMode};
    use notify::EventKind;
    let appeared = match kind {
        EventKind::Create(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Name(mode)) => !matches!(mode, RenameMode::From),
        EventKind::Modify(ModifyKind::Any) => true,
        _ => false,
    };
    let temp = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(supervisor_agent::protocol::is_temp_name);
    appeared && !temp
}

/// A watched directory: whose it is, and how to wake its reader.
struct Watched {
    instance: String,
    wake: Wake,
}

type Dirs = Arc<Mutex<HashMap<PathBuf, Watched>>>;

/// Watches `out/` directories and wakes the instance whose directory changed.
pub struct OutWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    dirs: Dirs,
    /// Whether the poller runs (it polls every directory, so one is enough).
    polling: bool,
    every: Duration,
}

impl OutWatcher {
    pub fn new() -> Self {
        let dirs: Dirs = Arc::default();
        let map = dirs.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            let map = map.lock().expect("watch map");
            for path in event
                .paths
                .iter()
                .filter(|p| may_bring_a_file(&event.kind, p))
            {
                if let Some(watched) = path.parent().and_then(|d| map.get(d)) {
                    (watched.wake)();
                }
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file events unavailable; polling IPC directories");
                None
            }
        };
        let mut poller = Self {
            watcher,
            dirs,
            polling: false,
            every: POLL_INTERVAL,
        };
        if poller.watcher.is_none() {
            poller.spawn_poller();
        }
        poller
    }

    /// Looks at every directory each `every`, without file events: where no event ever
    /// comes (tests; storage that has none).
    pub fn polling(every: Duration) -> Self {
        let mut poller = Self {
            watcher: None,
            dirs: Arc::default(),
            polling: false,
            every,
        };
        poller.spawn_poller();
        poller
    }

    /// File events where they arrive, and a look at every directory each `every` besides:
    /// for IPC directories on network storage, where an agent's writes on another machine
    /// raise an event here only when this machine serves the storage.
    pub fn with_polling(every: Duration) -> Self {
        let mut watcher = Self::new();
        watcher.every = every;
        watcher.spawn_poller();
        watcher
    }

    /// Starts watching `dir` for `instance`, calling `wake` when it changes (idempotent).
    pub fn watch(&mut self, instance: &str, dir: &Path, wake: Wake) {
        let mut map = self.dirs.lock().expect("watch map");
        if map.contains_key(dir) {
            return;
        }
        let watched = Watched {
            instance: instance.to_string(),
            wake,
        };
        map.insert(dir.to_path_buf(), watched);
        drop(map);
        if let Some(w) = self.watcher.as_mut() {
            if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(instance, error = %e, "cannot watch IPC directory; it is polled instead");
                self.spawn_poller();
            }
        }
    }

    /// Watches `dir` for `instance` again: after a remount the old watch is gone with the
    /// file system it was on.
    pub fn rewatch(&mut self, instance: &str, dir: &Path, wake: Wake) {
        if let Some(w) = self.watcher.as_mut() {
            let _ = w.unwatch(dir);
        }
        self.dirs.lock().expect("watch map").remove(dir);
        self.watch(instance, dir, wake);
    }

    /// Stops watching the directories of instances not in `live`.
    pub fn retain(&mut self, live: &[String]) {
        // The map lock is released before `unwatch`: unwatching waits for notify's event
        // thread, and that thread may itself be waiting for the map in the event callback.
        let gone: Vec<PathBuf> = {
            let mut map = self.dirs.lock().expect("watch map");
            let gone: Vec<PathBuf> = map
                .iter()
                .filter(|(_, w)| !live.contains(&w.instance))
                .map(|(d, _)| d.clone())
                .collect();
            for dir in &gone {
                map.remove(dir);
            }
            gone
        };
        if let Some(w) = self.watcher.as_mut() {
            for dir in gone {
                let _ = w.unwatch(&dir);
            }
        }
    }

    fn spawn_poller(&mut self) {
        if std::mem::replace(&mut self.polling, true) {
            return;
        }
        // Only a weak hold on the map: the poller ends with the watcher.
        let dirs = Arc::downgrade(&self.dirs);
        let every = self.every;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                let Some(dirs) = dirs.upgrade() else { return };
                let wakes: Vec<Wake> = dirs
                    .lock()
                    .expect("watch map")
                    .values()
                    .map(|w| w.wake.clone())
                    .collect();
                for wake in wakes {
                    wake();
                }
            }
        });
    }
}

impl Default for OutWatcher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_a_name_that_appears_wakes_the_reader() {
        use notify::event::{
            AccessKind, AccessMode, CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode,
        };
        use notify::EventKind;
        let file = Path::new("/v/ipc/out/0001-reply.json");
        let temp = Path::new("/v/ipc/out/.0001-reply.json.tmp");
        let renamed_in = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(may_bring_a_file(&renamed_in, file));
        assert!(may_bring_a_file(
            &EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            file
        ));
        assert!(may_bring_a_file(&EventKind::Create(CreateKind::File), file));
        assert!(!may_bring_a_file(
            &EventKind::Create(CreateKind::File),
            temp
        ));
        assert!(!may_bring_a_file(
            &EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            temp
        ));
        assert!(!may_bring_a_file(
            &EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            temp
        ));
        assert!(!may_bring_a_file(
            &EventKind::Access(AccessKind::Close(AccessMode::Write)),
            temp
        ));
        assert!(!may_bring_a_file(
            &EventKind::Remove(RemoveKind::File),
            file
        ));
    }
    use super::*;

    /// Unwatching while events are flowing must not wait on the map the event callback holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unwatching_while_files_arrive_does_not_deadlock() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let writer_dir = out.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_stop = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut i = 0u64;
            while !writer_stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::write(writer_dir.join(format!("f{}", i % 64)), b"x");
                i += 1;
            }
        });
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Handle::current();
        let churn = std::thread::spawn(move || {
            let _runtime = runtime.enter();
            let mut watcher = OutWatcher::new();
            let wake: Wake = Arc::new(move || tx.send(()).is_ok());
            for _ in 0..300 {
                watcher.watch("alice", &out, wake.clone());
                watcher.retain(&[]);
            }
            let _ = done_tx.send(());
        });
        // A hang detector, not a speed limit: 300 rounds take milliseconds when nothing blocks.
        let finished = done_rx.recv_timeout(Duration::from_secs(60)).is_ok();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(finished, "watch/unwatch deadlocked with the event callback");
        churn.join().unwrap();
        drain.abort();
    }

    /// Three wake-ups, with no file ever written (a hang detector's bound, not a speed limit).
    async fn woken_three_times(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("woken by the poller")
                .unwrap();
        }
    }

    /// Where file events do not cross the storage, the polling watcher still wakes the
    /// instance, with no event at all.
    #[tokio::test]
    async fn a_polling_watcher_wakes_every_watched_instance_without_events() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = OutWatcher::polling(Duration::from_millis(20));
        assert!(watcher.watcher.is_none(), "no file events are asked for");
        watcher.watch("alice", dir.path(), Arc::new(move || tx.send(()).is_ok()));
        woken_three_times(&mut rx).await;
        watcher.retain(&[]);
    }

    /// With file events as well, a directory where nothing happens is still looked at.
    #[tokio::test]
    async fn events_with_polling_still_look_at_a_quiet_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = OutWatcher::with_polling(Duration::from_millis(20));
        watcher.watch("alice", dir.path(), Arc::new(move || tx.send(()).is_ok()));
        woken_three_times(&mut rx).await;
    }

    /// A file in one instance's `out/` wakes that instance, straight through its own wake-up.
    #[tokio::test]
    async fn a_new_file_wakes_the_instance_whose_directory_it_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let mut watcher = OutWatcher::new();
        let mut outs = Vec::new();
        for name in ["alice", "bob"] {
            let out = dir.path().join(name);
            std::fs::create_dir(&out).unwrap();
            let tx = tx.clone();
            watcher.watch(name, &out, Arc::new(move || tx.send(name).is_ok()));
            outs.push(out);
        }
        std::fs::write(outs[0].join("reply.json"), b"{}").unwrap();
        // A hang detector, not a speed limit.
        let woken = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(name) = rx.recv().await {
                if name == "alice" {
                    return true;
                }
            }
            false
        });
        assert!(woken.await.unwrap_or(false), "alice was not woken");
    }
}
