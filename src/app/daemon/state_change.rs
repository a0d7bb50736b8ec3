//! What the daemon says when an instance changes state: one log line per change, with the
//! reason, and an audit event for the moves an operator has to act on (`crash-loop`,
//! `error`), so the dashboard and `events` show them too.

use crate::domain::instance::state::InstanceState;
use crate::infra::store::{Store, StoreError};

/// The state an instance was in before a pass recorded a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    pub state: InstanceState,
    pub detail: Option<String>,
}

/// A change worth a line: the state moved, or an instance stayed in `error` for another
/// reason (fixing one problem can uncover the next).
pub fn is_change(before: &Before, state: InstanceState, detail: Option<&str>) -> bool {
    before.state != state || (state == InstanceState::Error && before.detail.as_deref() != detail)
}

/// The event kind recorded for a move into `state`, if it is one to act on.
pub fn event_kind(state: InstanceState) -> Option<&'static str> {
    match state {
        InstanceState::CrashLoop => Some("instance.crash-loop"),
        InstanceState::Error => Some("instance.error"),
        _ => None,
    }
}

/// Logs the change (a warning for `crash-loop` and `error`) and records the event for those;
/// nothing when [`is_change`] says it is none.
pub fn announce(
    store: &mut Store,
    actor: &str,
    instance: &str,
    before: &Before,
    state: InstanceState,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    if !is_change(before, state, detail) {
        return Ok(());
    }
    let reason = detail.unwrap_or("-");
    let from = before.state.as_str();
    let kind = event_kind(state);
    let state = state.as_str();
    match kind {
        Some(kind) => {
            tracing::warn!(instance = %instance, from = %from, to = %state, reason = %reason, "instance state changed");
            let detail = serde_json::json!({ "from": from, "reason": detail });
            store.record_event(Some(instance), actor, kind, Some(&detail))?;
        }
        None => {
            tracing::info!(instance = %instance, from = %from, to = %state, reason = %reason, "instance state changed")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState::{CrashLoop, Error, Running, Stopped};

    fn before(state: InstanceState, detail: Option<&str>) -> Before {
        Before {
            state,
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn a_change_of_state_or_of_the_reason_for_an_error() {
        assert!(is_change(&before(Running, None), CrashLoop, Some("x")));
        assert!(!is_change(&before(Running, None), Running, None));
        // The detail of a running instance (a kept config, a closed port) is not a change.
        assert!(!is_change(&before(Running, None), Running, Some("note")));
        assert!(is_change(&before(Error, Some("a")), Error, Some("b")));
        assert!(!is_change(&before(Error, Some("a")), Error, Some("a")));
        assert_eq!(event_kind(CrashLoop), Some("instance.crash-loop"));
        assert_eq!(event_kind(Error), Some("instance.error"));
        assert_eq!(event_kind(Stopped), None);
    }
}
