//! Health-gated roll-out of a newly activated runtime, as pure decisions: which instance
//! moves next, whether the one moving is ready, has failed or is still within its time, and
//! which runtime each instance's container should run meanwhile. The reconciler records
//! the decisions in the store and carries them out.

use super::live::LiveSnapshot;
use crate::domain::instance::state::{DesiredState, InstanceState};
use crate::infra::store::instances::InstanceRecord;
use crate::infra::store::rollouts::Rollout;

/// What to do next with a roll-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Move this instance: recreate its container on the new runtime.
    Begin(String),
    /// The moving instance's agent is ready on the new runtime, `took_ms` after its step began.
    Ready { instance: String, took_ms: i64 },
    /// The moving instance did not become ready: put everything back and stop.
    Fail { instance: String, reason: String },
    /// Waiting for the moving instance until this deadline (unix ms).
    Wait { deadline: i64 },
    /// Nothing is left to move.
    Done,
}

/// States in which a container has shown it cannot run (set by the reconciler after an exit
/// or a failed create).
const FAILED_STATES: &[InstanceState] = &[
    InstanceState::Restarting,
    InstanceState::CrashLoop,
    InstanceState::Error,
];

/// Decides the roll-out's next move from the instances as last observed and the agents'
/// readiness. `timeout_ms` is how long a moved instance's agent has to become ready.
pub fn next(
    rollout: &Rollout,
    records: &[InstanceRecord],
    live: &LiveSnapshot,
    now: i64,
    timeout_ms: i64,
) -> Next {
    if let Some(step) = rollout.moving() {
        let name = step.instance.as_str();
        let record = records.iter().find(|r| r.name == name);
        let Some(record) = record else {
            // Removed while moving: nothing to wait for.
            return Next::Ready {
                instance: name.to_string(),
                took_ms: now - step.started_at,
            };
        };
        let ready = match (live.started.get(name), live.ready.get(name)) {
            (Some(started), Some(ready)) => *started >= step.started_at && ready >= started,
            (Some(_), None) => false,
            // Started by an earlier daemon, which saw it ready before it stopped.
            (None, _) => {
                record.state == InstanceState::Running
                    && record.runtime_id.as_deref() == Some(&rollout.runtime_id)
            }
        };
        if ready {
            return Next::Ready {
                instance: name.to_string(),
                took_ms: now - step.started_at,
            };
        }
        let failed_since_step = FAILED_STATES.contains(&record.state)
            && record.state_changed_at.unwrap_or(0) >= step.started_at;
        if failed_since_step {
            let detail = record.state_detail.as_deref().unwrap_or("no detail");
            return Next::Fail {
                instance: name.to_string(),
                reason: format!(
                    "{} on runtime {}: {detail}",
                    record.state, rollout.runtime_id
                ),
            };
        }
        if record.desired_state != DesiredState::Running {
            // Stopped on request while moving: nothing to wait for.
            return Next::Ready {
                instance: name.to_string(),
                took_ms: now - step.started_at,
            };
        }
        let deadline = step.started_at + timeout_ms;
        if now >= deadline {
            return Next::Fail {
                instance: name.to_string(),
                reason: format!(
                    "its agent did not become ready within {} on runtime {}",
                    humantime::format_duration(std::time::Duration::from_millis(timeout_ms as u64)),
                    rollout.runtime_id
                ),
            };
        }
        return Next::Wait { deadline };
    }
    // Instances move in name order; only running ones are gated (others start on the new
    // runtime when the roll-out is done).
    let mut candidates: Vec<&InstanceRecord> = records
        .iter()
        .filter(|r| r.state == InstanceState::Running && r.desired_state == DesiredState::Running)
        .filter(|r| r.runtime_id.as_deref() != Some(&rollout.runtime_id))
        .filter(|r| rollout.step(&r.name).is_none())
        .collect();
    candidates.sort_by(|a, b| a.name.cmp(&b.name));
    match candidates.first() {
        Some(r) => Next::Begin(r.name.clone()),
        None => Next::Done,
    }
}

/// The runtime an instance's container should run while `rollout` is under way: the new one
/// once its step began; otherwise the one it runs now (when that still exists, as told by
/// `exists`), else the previous runtime.
pub fn runtime_for(
    rollout: &Rollout,
    record: &InstanceRecord,
    exists: impl Fn(&str) -> bool,
) -> String {
    match rollout.step(&record.name).map(|s| s.state.as_str()) {
        Some("moving" | "ready") => rollout.runtime_id.clone(),
        Some(_) => rollout.previous_id.clone(),
        None => match record.runtime_id.as_deref() {
            Some(current) if record.state == InstanceState::Running && exists(current) => {
                current.to_string()
            }
            _ => rollout.previous_id.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::rollouts::RolloutStep;

    const T0: i64 = 1_000_000;
    const TIMEOUT: i64 = 60_000;

    fn rec(name: &str, state: &str, runtime: &str) -> InstanceRecord {
        InstanceRecord {
            state_changed_at: Some(T0 - 10_000),
            runtime_id: Some(runtime.into()),
            ..crate::infra::store::instances::test_record(name, state)
        }
    }

    fn rollout(steps: &[(&str, &str)]) -> Rollout {
        Rollout {
            activation_id: 2,
            runtime_id: "new".into(),
            previous_id: "old".into(),
            state: "rolling".into(),
            activated_at: T0 - 1,
            detail: None,
            steps: steps
                .iter()
                .map(|(name, state)| RolloutStep {
                    instance: name.to_string(),
                    state: state.to_string(),
                    started_at: T0,
                    finished_at: None,
                    detail: None,
                })
                .collect(),
        }
    }

    fn live(started: &[(&str, i64)], ready: &[(&str, i64)]) -> LiveSnapshot {
        LiveSnapshot {
            started: started.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            ready: ready.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn running_instances_move_one_at_a_time_in_name_order() {
        let records = [
            rec("carol", "running", "old"),
            rec("alice", "running", "old"),
            rec("bob", "stopped", "old"),
        ];
        let idle = live(&[], &[]);
        assert_eq!(
            next(&rollout(&[]), &records, &idle, T0, TIMEOUT),
            Next::Begin("alice".into())
        );
        // While alice moves, nobody else begins.
        let moving = rollout(&[("alice", "moving")]);
        assert_eq!(
            next(
                &moving,
                &records,
                &live(&[("alice", T0 + 5)], &[]),
                T0 + 10,
                TIMEOUT
            ),
            Next::Wait {
                deadline: T0 + TIMEOUT
            }
        );
        // Then carol; bob is stopped and is not waited for.
        let after = rollout(&[("alice", "ready")]);
        assert_eq!(
            next(&after, &records, &idle, T0, TIMEOUT),
            Next::Begin("carol".into())
        );
        let records = [
            rec("alice", "running", "new"),
            rec("carol", "running", "new"),
        ];
        let both = rollout(&[("alice", "ready"), ("carol", "ready")]);
        assert_eq!(next(&both, &records, &idle, T0, TIMEOUT), Next::Done);
    }

    #[test]
    fn readiness_counts_only_after_the_new_container_started() {
        let records = [rec("alice", "running", "old")];
        let moving = rollout(&[("alice", "moving")]);
        // Ready from the old container, started before the step: not ready yet.
        let old = live(&[("alice", T0 - 500)], &[("alice", T0 - 400)]);
        assert!(matches!(
            next(&moving, &records, &old, T0 + 10, TIMEOUT),
            Next::Wait { .. }
        ));
        let new = live(&[("alice", T0 + 5)], &[("alice", T0 + 900)]);
        assert_eq!(
            next(&moving, &records, &new, T0 + 1000, TIMEOUT),
            Next::Ready {
                instance: "alice".into(),
                took_ms: 1000
            }
        );
    }

    #[test]
    fn a_restarted_daemon_accepts_a_moved_container_it_adopted() {
        let moving = rollout(&[("alice", "moving")]);
        let records = [rec("alice", "running", "new")];
        assert!(matches!(
            next(&moving, &records, &live(&[], &[]), T0 + 10, TIMEOUT),
            Next::Ready { .. }
        ));
        let records = [rec("alice", "running", "old")];
        assert!(matches!(
            next(&moving, &records, &live(&[], &[]), T0 + 10, TIMEOUT),
            Next::Wait { .. }
        ));
    }

    #[test]
    fn a_timeout_or_a_crash_fails_the_rollout() {
        let moving = rollout(&[("alice", "moving")]);
        let records = [rec("alice", "running", "new")];
        let starting = live(&[("alice", T0 + 5)], &[]);
        match next(&moving, &records, &starting, T0 + TIMEOUT, TIMEOUT) {
            Next::Fail { instance, reason } => {
                assert_eq!(instance, "alice");
                assert!(reason.contains("within 1m"), "{reason}");
                assert!(reason.contains("runtime new"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let mut crashed = rec("alice", "restarting", "new");
        crashed.state_changed_at = Some(T0 + 300);
        crashed.state_detail = Some("exited with code 3".into());
        match next(&moving, &[crashed], &starting, T0 + 400, TIMEOUT) {
            Next::Fail { reason, .. } => assert!(reason.contains("exited with code 3"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A failure from before the step is not this runtime's fault.
        let mut old_failure = rec("alice", "error", "old");
        old_failure.state_changed_at = Some(T0 - 1);
        assert!(matches!(
            next(&moving, &[old_failure], &starting, T0 + 400, TIMEOUT),
            Next::Wait { .. }
        ));
    }

    #[test]
    fn instances_keep_their_runtime_until_their_turn() {
        let r = rollout(&[("alice", "moving"), ("bob", "reverted")]);
        let exists = |id: &str| id != "gone";
        for (name, state, runs, want) in [
            ("alice", "running", "old", "new"),     // its step began
            ("bob", "running", "new", "old"),       // put back
            ("carol", "running", "older", "older"), // not reached: keeps what it runs
            ("dave", "running", "gone", "old"),     // its runtime is gone
            ("erin", "stopped", "older", "old"),    // not running: the previous one
        ] {
            assert_eq!(
                runtime_for(&r, &rec(name, state, runs), exists),
                want,
                "{name}"
            );
        }
    }
}
