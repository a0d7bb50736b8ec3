//! Hot reload: file events on instances' config.json and on supervisor.toml wake the daemon,
//! which validates and applies them in its next pass. Without file events (some network and
//! FUSE file systems deliver none) the 30 s safety tick still picks edits up.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::api::Wake;
use crate::home::Home;

/// The file name of an instance's config.
const INSTANCE_CONFIG: &str = "config.json";

/// Keeps the watcher alive; dropping it stops the events.
pub struct ConfigWatcher {
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Whether `path` is a config the daemon reads: `<home>/supervisor.toml` or
/// `<home>/instances/<name>/config.json`.
pub fn is_config_path(home: &Path, path: &Path) -> bool {
    let host_config = home.join(crate::home::CONFIG_FILE);
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
        let instances = home.instances_dir();
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
            Ok(mut w) => {
                // The home for supervisor.toml (not recursive: instances have busy IPC
                // directories), and each instance directory through instances/ (recursive,
                // filtered above; new instances are covered without re-arming).
                let armed = w
                    .watch(&root, RecursiveMode::NonRecursive)
                    .and_then(|()| w.watch(&instances, RecursiveMode::Recursive));
                match armed {
                    Ok(()) => Some(w),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch config files; edits are picked up within 30 s");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "file events unavailable; config edits are picked up within 30 s");
                None
            }
        };
        Self { _watcher: watcher }
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
            Path::new("/h/instances/alice/workspace/config.json")
        ));
        assert!(!is_config_path(
            home,
            Path::new("/h/instances/alice/ipc/out/x.json")
        ));
        assert!(!is_config_path(home, Path::new("/h/supervisor.db-wal")));
    }
}
