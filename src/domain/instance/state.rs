//! An instance's states: the one its operator asks for ([`DesiredState`]) and the one the
//! daemon last observed ([`InstanceState`]). Their words (`"running"`, `"crash-loop"`, …) are
//! what the store's columns, the JSON API and the tables show; everywhere else the code
//! speaks of the enums, so a misspelt state cannot compile.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What the operator wants of an instance (`start` / `stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DesiredState {
    Running,
    #[default]
    Stopped,
}

/// What the daemon last observed of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Its container is being started.
    Starting,
    /// Its container runs.
    Running,
    /// Its container exited and is started again after a backoff.
    Restarting,
    /// It exited quickly again and again: retried slowly.
    CrashLoop,
    /// It waits for a free slot under `daemon.max_running`.
    Queued,
    /// On demand, with no recent work: starts when work arrives.
    Idle,
    #[default]
    Stopped,
    /// Something the operator has to fix keeps it from running (the detail says what).
    Error,
}

/// A state word the store or a peer sent that this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown instance state {0:?}")]
pub struct UnknownState(pub String);

impl DesiredState {
    pub const ALL: [DesiredState; 2] = [DesiredState::Running, DesiredState::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

impl InstanceState {
    pub const ALL: [InstanceState; 8] = [
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Restarting,
        InstanceState::CrashLoop,
        InstanceState::Queued,
        InstanceState::Idle,
        InstanceState::Stopped,
        InstanceState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Restarting => "restarting",
            InstanceState::CrashLoop => "crash-loop",
            InstanceState::Queued => "queued",
            InstanceState::Idle => "idle",
            InstanceState::Stopped => "stopped",
            InstanceState::Error => "error",
        }
    }

    /// A state an operator has to look at: it will not get better on its own soon.
    pub fn is_failing(self) -> bool {
        matches!(self, InstanceState::CrashLoop | InstanceState::Error)
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DesiredState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl FromStr for InstanceState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// A state equals its word: for code that holds the word from the edge (the store's rows
/// read back by tests, JSON from a peer), so it need not parse it first.
macro_rules! equals_its_word {
    ($t:ty) => {
        impl PartialEq<str> for $t {
            fn eq(&self, word: &str) -> bool {
                self.as_str() == word
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, word: &&str) -> bool {
                self.as_str() == *word
            }
        }
    };
}

equals_its_word!(DesiredState);
equals_its_word!(InstanceState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_are_those_the_store_and_the_api_always_used() {
        let words: Vec<&str> = InstanceState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            [
                "starting",
                "running",
                "restarting",
                "crash-loop",
                "queued",
                "idle",
                "stopped",
                "error"
            ]
        );
        for s in InstanceState::ALL {
            assert_eq!(s.as_str().parse::<InstanceState>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        for d in DesiredState::ALL {
            assert_eq!(d.to_string().parse::<DesiredState>(), Ok(d));
            assert_eq!(
                serde_json::to_value(d).unwrap(),
                serde_json::json!(d.as_str())
            );
        }
        assert!(InstanceState::CrashLoop == "crash-loop");
        assert!(InstanceState::CrashLoop != "crashloop");
        assert!("crashloop".parse::<InstanceState>().is_err());
        assert!("paused".parse::<DesiredState>().is_err());
    }
}
