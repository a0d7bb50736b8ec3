//! The daemon's memory of each instance's last valid config. A config.json edited into
//! something invalid while the daemon runs does not take the instance down: the daemon keeps
//! working with the last config that validated, and reports the bad edit once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::domain::instance::config::{ConfigError, InstanceConfig};

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
    /// this daemon read; with none, the error is returned.
    pub fn load(&self, name: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let read = InstanceConfig::load(path);
        let mut map = self.0.lock().expect("config cache");
        match read {
            Ok(config) => {
                map.insert(
                    name.to_string(),
                    Entry {
                        config: config.clone(),
                        reported: None,
                    },
                );
                Ok(Loaded::Current(config))
            }
            Err(error) => match map.get_mut(name) {
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
            },
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
        cache.retain(&[]);
        assert!(cache.load("alice", &path).is_err());
    }
}
