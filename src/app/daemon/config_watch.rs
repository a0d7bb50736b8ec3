//! Hot reload: file events on instances' config.json and on supervisor.toml wake the daemon,
//! which validates and applies them in its next pass. Without file events (some network and
//! FUSE file systems deliver none) the 30 s safety tick still picks edits up.
//!
//! Exactly the directories that hold those files are watched, each on its own and never
//! recursively: the home (supervisor.toml) and each live instance's own directory
//! (config.json), which no agent can write. A workspace is never watched, so nothing an
//! agent makes there (links to host trees, thousands of directories) costs the host a watch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::api::Wake;
use crate::infra::home::Home;

/// The file name of an instance's config.
const INSTANCE_CONFIG: &str = "config.json";

/// Keeps the watcher alive; dropping it stops the events.
pub struct ConfigWatcher {
    watcher: Option<notify::RecommendedWatcher>,
    instances: PathBuf,
    /// Instance directories watched now.
    watched: BTreeSet<String>,
}

/// Whether `path` is a config the daemon reads: `<home>/supervisor.toml` or
/// `<home>/instances/<name>/config.json`.
pub fn is_config_path(home: &Path, path: &Path) -> bool {
    let host_config = home.join(crate::infra::home::CONFIG_FILE);
    if path == host_config {
        return true;
    }
    path.file_name().is_some_and(|n| n == INSTANCE_CONFIG)
        && path
            .parent()
            .and_then(Path::parent)
            .is_some_and(|p| p == home.join("instances"))
}

impl ConfigWatcher {
    pub fn start(home: &Home, wake: UnboundedSender<Wake>) -> Self {
        let root: PathBuf = home.root().to_path_buf();
        let filter_root = root.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else { return };
            // Reads (access events) change nothing; everything else might have.
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            if event.paths.iter().any(|p| is_config_path(&filter_root, p)) {
                let _ = wake.send(Wake::Config);
            }
        });
        let watcher = match watcher {
            Ok(mut w) => match w.watch(&root, RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch config files; edits are picked up within 30 s");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "file events unavailable; config edits are picked up within 30 s");
                None
            }
        };
        Self {
            watcher,
            instances: home.instances_dir(),
            watched: BTreeSet::new(),
        }
    }

    /// Watches the directories of the instances in `live`, and no others.
    pub fn sync(&mut self, live: &[String]) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let wanted: BTreeSet<String> = live.iter().cloned().collect();
        for gone in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = w.unwatch(&self.instances.join(&gone));
            self.watched.remove(&gone);
        }
        for name in wanted.difference(&self.watched.clone()) {
            let dir = self.instances.join(name);
            // A real directory only (not that anything but the supervisor writes instances/).
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(name.clone());
                }
                Err(e) => {
                    tracing::warn!(instance = %name, error = %e, "cannot watch config.json; its edits are picked up within 30 s")
                }
            }
        }
    }

    /// How many directories are watched (the home and the instances).
    pub fn watch_count(&self) -> usize {
        self.watcher.as_ref().map_or(0, |_| 1 + self.watched.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_config_files_count() {
        let home = Path::new("/h");
        assert!(is_config_path(home, Path::new("/h/supervisor.toml")));
        assert!(is_config_path(
            home,
            Path::new("/h/instances/alice/config.json")
        ));
        assert!(!is_config_path(
            home,
            Path::new("/h/instances/alice/volume/workspace/config.json")
        ));
        assert!(!is_config_path(
            home,
            Path::new("/h/instances/alice/volume/ipc/out/x.json")
        ));
        assert!(!is_config_path(home, Path::new("/h/supervisor.db-wal")));
    }

    #[tokio::test]
    async fn watches_each_instance_directory_and_never_a_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        let ws = home.instances_dir().join("alice/volume/workspace");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(home.instances_dir().join("bob")).unwrap();
        // A link to a big tree and many directories in the workspace cost nothing.
        std::os::unix::fs::symlink("/usr", ws.join("usr")).unwrap();
        for i in 0..200 {
            std::fs::create_dir(ws.join(format!("d{i}"))).unwrap();
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut w = ConfigWatcher::start(&home, tx);
        w.sync(&["alice".into(), "bob".into(), "ghost".into()]);
        assert_eq!(w.watch_count(), 3, "the home, alice and bob");
        std::fs::write(home.instances_dir().join("alice/config.json"), "{}").unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
        assert!(matches!(got, Ok(Some(Wake::Config))));
        w.sync(&["bob".into()]);
        assert_eq!(w.watch_count(), 2);
    }
}
