//! The daemon's memory of each instance's last valid config. A config.json edited into
//! something invalid while the daemon runs does not take the instance down: the daemon keeps
//! working with the last config that validated, and reports the bad edit once.
//!
//! The last valid config is also kept on disk, beside the file ([`LAST_VALID_FILE`]), so that
//! every reader honours it the same way: the daemon after a restart, and the CLI when no
//! daemon runs (a message is judged by the same config the daemon would use).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::domain::instance::config::{ConfigError, InstanceConfig};
use crate::infra::fsutil;

/// The copy of an instance's last valid config, in its directory beside `config.json`.
pub const LAST_VALID_FILE: &str = "config.last-valid.json";

/// Where the last valid copy of the config at `path` is kept.
fn last_valid_path(path: &Path) -> std::path::PathBuf {
    path.with_file_name(LAST_VALID_FILE)
}

/// Keeps `config` as the last valid one, unless the copy on disk already says the same. A
/// copy that cannot be written is logged: the config in memory still holds.
fn keep(path: &Path, config: &InstanceConfig) {
    let copy = last_valid_path(path);
    let text = config.to_json_pretty();
    if std::fs::read(&copy).is_ok_and(|old| old == text.as_bytes()) {
        return;
    }
    if let Err(e) = fsutil::write_atomic(&copy, text.as_bytes()) {
        tracing::warn!(file = %copy.display(), error = %e, "cannot keep the last valid config");
    }
}

/// The last valid config kept on disk for the file at `path`, if any (validated again).
fn kept(path: &Path) -> Option<InstanceConfig> {
    InstanceConfig::load(&last_valid_path(path)).ok()
}

/// A config as the daemon should use it.
#[derive(Debug)]
pub enum Loaded {
    /// The file is valid.
    Current(InstanceConfig),
    /// The file is invalid; this is the last valid one. `new_problem` is true the first time
    /// this particular error is seen, so it is reported once, not on every read.
    Kept {
        config: InstanceConfig,
        error: ConfigError,
        new_problem: bool,
    },
}

impl Loaded {
    pub fn config(&self) -> &InstanceConfig {
        match self {
            Loaded::Current(c) | Loaded::Kept { config: c, .. } => c,
        }
    }

    pub fn into_config(self) -> InstanceConfig {
        match self {
            Loaded::Current(c) | Loaded::Kept { config: c, .. } => c,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    config: InstanceConfig,
    /// The error last reported for the file, cleared when it validates again.
    reported: Option<String>,
}

/// Shared by the daemon's reconciler, message actors and API; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LastGoodConfigs(Arc<Mutex<HashMap<String, Entry>>>);

impl LastGoodConfigs {
    /// Reads `path` for instance `name`. An invalid file falls back to the last valid config
    /// read (by this process, or kept on disk by any reader); with none, the error is
    /// returned.
    ///
    /// A chat group (`<instance>_<key>`) reads its instance's file and gets it as a group runs
    /// with ([`InstanceConfig::for_group`]).
    pub fn load(&self, name: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let loaded = self.load_file(name, path)?;
        let is_group =
            crate::domain::instance::InstanceName::parse(name).is_ok_and(|n| n.is_group());
        if !is_group {
            return Ok(loaded);
        }
        Ok(match loaded {
            Loaded::Current(c) => Loaded::Current(c.for_group()),
            Loaded::Kept {
                config,
                error,
                new_problem,
            } => Loaded::Kept {
                config: config.for_group(),
                error,
                new_problem,
            },
        })
    }

    fn load_file(&self, name: &str, path: &Path) -> Result<Loaded, ConfigError> {
        // Files are read and written with the cache unlocked: one instance's config never
        // waits on another's disk.
        let read = InstanceConfig::load(path);
        match read {
            Ok(config) => {
                let changed = self
                    .0
                    .lock()
                    .expect("config cache")
                    .insert(
                        name.to_string(),
                        Entry {
                            config: config.clone(),
                            reported: None,
                        },
                    )
                    .is_none_or(|e| e.config != config);
                if changed {
                    keep(path, &config);
                }
                Ok(Loaded::Current(config))
            }
            Err(error) => {
                let known = self.0.lock().expect("config cache").contains_key(name);
                let from_disk = if known { None } else { kept(path) };
                let mut map = self.0.lock().expect("config cache");
                if let Some(config) = from_disk {
                    map.entry(name.to_string()).or_insert(Entry {
                        config,
                        reported: None,
                    });
                }
                match map.get_mut(name) {
                    Some(entry) => {
                        let text = error.to_string();
                        let new_problem = entry.reported.as_deref() != Some(text.as_str());
                        entry.reported = Some(text);
                        Ok(Loaded::Kept {
                            config: entry.config.clone(),
                            error,
                            new_problem,
                        })
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// The `port` of the config last read for `name` (None: no port, or never read).
    pub fn port_of(&self, name: &str) -> Option<u16> {
        self.0
            .lock()
            .expect("config cache")
            .get(name)
            .and_then(|e| e.config.port)
    }

    /// Forgets instances that no longer exist.
    pub fn retain(&self, live: &[String]) {
        self.0
            .lock()
            .expect("config cache")
            .retain(|name, _| live.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_edit_keeps_the_last_good_config_and_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let cache = LastGoodConfigs::default();
        std::fs::write(&path, "{\"version\": 1}").unwrap();
        std::fs::write(&path, "{nope").unwrap();
        assert!(cache.load("alice", &path).is_err(), "nothing good seen yet");

        let mut good = InstanceConfig::default();
        good.limits.pids = 100;
        std::fs::write(&path, good.to_json_pretty()).unwrap();
        assert!(matches!(
            cache.load("alice", &path).unwrap(),
            Loaded::Current(_)
        ));

        std::fs::write(&path, "{\"version\": 1, \"limits\": 3}").unwrap();
        let first = cache.load("alice", &path).unwrap();
        let Loaded::Kept {
            config,
            error,
            new_problem,
        } = first
        else {
            panic!()
        };
        assert_eq!(config.limits.pids, 100);
        assert!(error.to_string().contains("limits"), "{error}");
        assert!(new_problem);
        let again = cache.load("alice", &path).unwrap();
        assert!(matches!(
            again,
            Loaded::Kept {
                new_problem: false,
                ..
            }
        ));

        // Fixed, then broken again: reported again.
        std::fs::write(&path, good.to_json_pretty()).unwrap();
        cache.load("alice", &path).unwrap();
        std::fs::write(&path, "{\"version\": 1, \"limits\": 3}").unwrap();
        assert!(matches!(
            cache.load("alice", &path).unwrap(),
            Loaded::Kept {
                new_problem: true,
                ..
            }
        ));
        // Forgotten here, but kept on disk: another reader honours it the same way.
        cache.retain(&[]);
        assert_eq!(
            cache.load("alice", &path).unwrap().config().limits.pids,
            100
        );
        let elsewhere = LastGoodConfigs::default();
        assert_eq!(
            elsewhere.load("alice", &path).unwrap().config().limits.pids,
            100
        );
        std::fs::remove_file(dir.path().join(LAST_VALID_FILE)).unwrap();
        assert!(LastGoodConfigs::default().load("alice", &path).is_err());
    }
}
