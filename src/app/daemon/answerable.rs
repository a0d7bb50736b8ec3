//! Whether an instance can answer a message now, and if not, why and what to do. Waiting for
//! an answer that cannot come (the instance is stopped, in `error`, crash-looping, or its
//! container cannot be started) would only run out the clock: `send --wait`, `chat` and the
//! API's `"wait": true` say this at once instead. The message itself is kept either way.

use crate::domain::instance::state::{DesiredState, InstanceState};
use crate::infra::store::instances::InstanceRecord;

/// Why `rec` cannot answer a message while nothing changes, as a sentence with the fix; None
/// when an answer can come (it runs, starts, restarts, waits for a slot or is on demand).
/// `docker_reachable` is whether the daemon reaches the Docker engine.
pub fn why_no_answer(rec: &InstanceRecord, docker_reachable: bool) -> Option<String> {
    let name = &rec.name;
    if rec.desired_state == DesiredState::Stopped {
        return Some(format!(
            "{name} is stopped, so nothing answers it: start it with `supervisor start {name}`"
        ));
    }
    if rec.state.is_failing() {
        // The detail says what went wrong and, where there is one, the fix (as `start --wait`
        // shows it).
        let detail = rec
            .state_detail
            .as_deref()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or("see `supervisor show` for the reason");
        return Some(format!("{name} is in state {}: {detail}", rec.state));
    }
    if !docker_reachable && rec.state != InstanceState::Running {
        return Some(format!(
            "the daemon cannot reach the Docker engine, so it cannot start {name}: check the \
             engine (`supervisor doctor`)"
        ));
    }
    None
}

/// The whole refusal for a message that was stored but will not be answered soon.
pub fn stored_but_unanswered(why: &str, message_id: &str, instance: &str) -> String {
    format!("{why}; message {message_id} is stored and will be answered once {instance} runs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(desired: &str, state: &str, detail: Option<&str>) -> InstanceRecord {
        InstanceRecord {
            desired_state: desired.parse().expect("a desired state"),
            state_detail: detail.map(str::to_string),
            ..crate::infra::store::instances::test_record("alice", state)
        }
    }

    #[test]
    fn only_dead_ends_are_refused() {
        for (desired, state) in [
            ("running", "running"),
            ("running", "starting"),
            ("running", "restarting"),
            ("running", "idle"),
            ("running", "queued"),
            ("running", "stopped"),
        ] {
            assert_eq!(
                why_no_answer(&rec(desired, state, None), true),
                None,
                "{state}"
            );
        }
        let stopped = why_no_answer(&rec("stopped", "stopped", None), true).unwrap();
        assert!(stopped.contains("`supervisor start alice`"), "{stopped}");
        let error = why_no_answer(
            &rec("running", "error", Some("no active runtime: run `x`")),
            true,
        )
        .unwrap();
        assert_eq!(error, "alice is in state error: no active runtime: run `x`");
        let looping = why_no_answer(&rec("running", "crash-loop", None), true).unwrap();
        assert!(looping.contains("state crash-loop"), "{looping}");
        assert!(why_no_answer(&rec("running", "idle", None), false)
            .unwrap()
            .contains("Docker engine"));
        // A running container answers over its files even while the engine is away.
        assert_eq!(why_no_answer(&rec("running", "running", None), false), None);
    }
}
