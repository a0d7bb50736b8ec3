//! What the daemon says when an instance changes state: one log line per change, with the
//! reason, and an audit event for the moves an operator has to act on (`crash-loop`,
//! `error`), so the dashboard and `events` show them too.

use crate::infra::store::{Store, StoreError};

/// The state an instance was in before a pass recorded a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    pub state: String,
    pub detail: Option<String>,
}

/// A change worth a line: the state moved, or an instance stayed in `error` for another
/// reason (fixing one problem can uncover the next).
pub fn is_change(before: &Before, state: &str, detail: Option<&str>) -> bool {
    before.state != state || (state == "error" && before.detail.as_deref() != detail)
}

/// The event kind recorded for a move into `state`, if it is one to act on.
pub fn event_kind(state: &str) -> Option<&'static str> {
    match state {
        "crash-loop" => Some("instance.crash-loop"),
        "error" => Some("instance.error"),
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
    state: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    if !is_change(before, state, detail) {
        return Ok(());
    }
    let reason = detail.unwrap_or("-");
    let from = before.state.as_str();
    match event_kind(state) {
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

    fn before(state: &str, detail: Option<&str>) -> Before {
        Before {
            state: state.into(),
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn a_change_of_state_or_of_the_reason_for_an_error() {
        assert!(is_change(&before("running", None), "crash-loop", Some("x")));
        assert!(!is_change(&before("running", None), "running", None));
        // The detail of a running instance (a kept config, a closed port) is not a change.
        assert!(!is_change(
            &before("running", None),
            "running",
            Some("note")
        ));
        assert!(is_change(&before("error", Some("a")), "error", Some("b")));
        assert!(!is_change(&before("error", Some("a")), "error", Some("a")));
        assert_eq!(event_kind("crash-loop"), Some("instance.crash-loop"));
        assert_eq!(event_kind("error"), Some("instance.error"));
        assert_eq!(event_kind("stopped"), None);
    }
}
