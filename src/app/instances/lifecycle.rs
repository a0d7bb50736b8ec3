//! Starting, stopping and restarting instances, as the `start`, `stop` and `restart` commands
//! and the API's `…/start`, `…/stop` and `…/restart` do it: the desired state goes into the
//! store (the daemon's reconciler acts on it), and a wait watches the store until the daemon
//! records the state the change leads to, or a failure it recorded after the request.

use std::time::{Duration, Instant};

use crate::domain::instance::state::{DesiredState, InstanceState};
use crate::infra::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    /// What the instance is doing once asked ("starting alice").
    pub fn doing(self) -> &'static str {
        match self {
            Verb::Start => "starting",
            Verb::Stop => "stopping",
            Verb::Restart => "restarting",
        }
    }
}

/// How long a wait watches for the new state.
pub const WAIT: Duration = Duration::from_secs(60);

/// Said when the change is stored but the daemon cannot reach the Docker engine.
pub const ENGINE_AWAY: &str =
    "saved, but the daemon cannot reach the Docker engine; it applies the change when the engine is back";
/// Why a wait is refused then.
pub const ENGINE_AWAY_NO_WAIT: &str = "cannot wait: the daemon cannot reach the Docker engine";

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon recorded a failure after the request; the detail says why.
    #[error("{name} is in state {state}: {detail}")]
    Failed {
        name: String,
        state: String,
        detail: String,
    },
    #[error("timed out waiting for {}", .0.join(", "))]
    TimedOut(Vec<String>),
}

/// Checks that every instance exists, then records what `verb` asks of each: nothing
/// changes unless all the names are known.
pub fn request(
    store: &mut Store,
    names: &[String],
    verb: Verb,
    actor: &str,
) -> Result<(), StoreError> {
    for name in names {
        store.instance(name)?;
    }
    for name in names {
        match verb {
            Verb::Start => store.set_desired(name, DesiredState::Running, actor)?,
            Verb::Stop => store.set_desired(name, DesiredState::Stopped, actor)?,
            Verb::Restart => store.request_restart(name, actor)?,
        }
    }
    Ok(())
}

/// Polls the store until every instance shows the state `verb` leads to, for at most
/// `timeout`. Only what the daemon recorded after `since` (the request, in Unix ms) counts
/// as a failure.
pub fn wait_for(
    store: &Store,
    names: &[String],
    verb: Verb,
    since: i64,
    timeout: Duration,
) -> Result<(), WaitError> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&String> = names.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for name in pending {
            let rec = store.instance(name)?;
            let done = !rec.restart_pending
                && match verb {
                    Verb::Stop => rec.state == InstanceState::Stopped,
                    Verb::Start | Verb::Restart => {
                        matches!(rec.state, InstanceState::Running | InstanceState::Idle)
                    }
                };
            let fresh = rec.state_changed_at.is_some_and(|t| t >= since);
            if fresh && rec.state.is_failing() && verb != Verb::Stop {
                return Err(WaitError::Failed {
                    name: name.clone(),
                    state: rec.state.to_string(),
                    detail: rec.state_detail.unwrap_or_default(),
                });
            }
            if !done {
                still.push(name);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(WaitError::TimedOut(pending.into_iter().cloned().collect()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
