use super::*;
use crate::app::daemon::restart::backoff_ms;
use crate::domain::instance::state::InstanceState as S;

const NOW: i64 = 1_800_000_000_000;
const STARTED: i64 = NOW - 3_600_000;
const IDLE_MS: i64 = 600_000;

fn record(name: &str, desired: DesiredState) -> InstanceRecord {
    InstanceRecord {
        desired_state: desired,
        last_activity_at: Some(NOW - 1_000),
        ..crate::infra::store::instances::test_record(name, "stopped")
    }
}

fn ready(name: &str) -> InstanceFacts {
    InstanceFacts {
        record: record(name, DesiredState::Running),
        input: Input::Ready(Ready {
            spec_hash: Some("h1".into()),
            ..Ready::default()
        }),
    }
}

fn on_demand(name: &str, last_activity_at: i64) -> InstanceFacts {
    let mut i = ready(name);
    i.record.last_activity_at = Some(last_activity_at);
    if let Input::Ready(r) = &mut i.input {
        r.idle_timeout_ms = Some(IDLE_MS);
    }
    i
}

#[test]
fn an_on_demand_instance_with_work_waiting_runs_however_long_the_work_waited() {
    let now = 10 * IDLE_MS;
    let mut waited = on_demand("waited", now - 2 * IDLE_MS);
    if let Input::Ready(r) = &mut waited.input {
        r.work_waiting = true;
    }
    let facts = Facts {
        now,
        daemon_started_at: 0,
        max_running: None,
        missing_image: None,
        instances: vec![waited, on_demand("idle", now - 2 * IDLE_MS)],
        containers: vec![],
        restart_requests: vec![],
    };
    let intents = intents(&facts);
    assert!(
        matches!(intents["waited"], Intent::Plan { run: true, .. }),
        "{intents:?}"
    );
    assert!(
        matches!(intents["idle"], Intent::Plan { run: false, .. }),
        "{intents:?}"
    );
}

fn broken(name: &str, desired: DesiredState) -> InstanceFacts {
    InstanceFacts {
        record: record(name, desired),
        input: Input::Broken("config.json: expected value at line 1".into()),
    }
}

fn container(id: &str, instance: &str, hash: &str, running: bool) -> OwnedContainer {
    OwnedContainer {
        id: id.into(),
        name: format!("sv-{instance}"),
        instance: instance.into(),
        spec_hash: hash.into(),
        running,
        created: 1,
        labels: [(LABEL_RUNTIME.to_string(), "rt1".to_string())].into(),
        node: None,
    }
}

fn facts(instances: Vec<InstanceFacts>, containers: Vec<OwnedContainer>) -> Facts {
    Facts {
        now: NOW,
        daemon_started_at: STARTED,
        max_running: None,
        missing_image: None,
        instances,
        containers,
        restart_requests: Vec::new(),
    }
}

fn docker_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A stopped container that ran from `started` to `finished`, with `code`.
fn exited(id: &str, started: i64, finished: i64, code: i64) -> Exited {
    Exited {
        id: id.into(),
        state: ContainerState {
            running: false,
            exit_code: Some(code),
            oom_killed: false,
            started_at: Some(docker_time(started)),
            finished_at: Some(docker_time(finished)),
        },
    }
}

/// One pass, every action succeeding: the decision and what each instance is recorded as.
fn pass(facts: &Facts, exits: &[(&str, Exited)], memory: &mut Memory) -> (Decision, Observations) {
    let intents = intents(facts);
    let exits: HashMap<String, Exited> = exits
        .iter()
        .map(|(n, e)| (n.to_string(), e.clone()))
        .collect();
    let decision = decide(facts, &intents, &exits, memory);
    let mut applied = Applied::from(&decision);
    for action in &decision.plan.actions {
        match action {
            Action::Create { instance } | Action::Recreate { instance, .. } => {
                let id = format!("new-{instance}");
                applied
                    .running
                    .insert(instance.clone(), (id, Some("rt1".into())));
            }
            Action::Start { instance, id } => {
                applied
                    .running
                    .insert(instance.clone(), (id.clone(), Some("rt1".into())));
            }
            Action::Stop { instance, .. } => {
                applied.running.remove(instance);
                memory.tracker.reset(instance);
            }
            Action::Remove { .. } => {}
        }
    }
    let output: HashMap<String, String> = decision
        .backing_off
        .iter()
        .map(|n| (n.clone(), "boom".to_string()))
        .collect();
    let seen = observe(
        facts,
        &intents,
        &decision,
        &applied,
        &output,
        &memory.tracker,
    );
    (decision, seen)
}

fn state<'a>(seen: &'a Observations, name: &str) -> &'a Observed {
    &seen
        .observed
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} observed"))
        .1
}

#[test]
fn an_instance_that_should_run_is_created_and_then_left_running() {
    let mut memory = Memory::default();
    let (d, seen) = pass(&facts(vec![ready("alice")], vec![]), &[], &mut memory);
    assert_eq!(
        d.plan.actions,
        [Action::Create {
            instance: "alice".into()
        }]
    );
    let alice = state(&seen, "alice");
    assert_eq!(alice.state, S::Running);
    assert_eq!(alice.container_id.as_deref(), Some("new-alice"));
    assert_eq!(alice.runtime_id.as_deref(), Some("rt1"));
    assert!(!seen.converged, "it acted");

    let f = facts(
        vec![ready("alice")],
        vec![container("c1", "alice", "h1", true)],
    );
    let (d, seen) = pass(&f, &[], &mut memory);
    assert!(d.plan.actions.is_empty());
    assert_eq!(state(&seen, "alice").state, S::Running);
    assert_eq!(state(&seen, "alice").container_id.as_deref(), Some("c1"));
    assert!(seen.converged);
    assert_eq!(
        seen.next_wake, None,
        "a persistent instance has no idle timeout"
    );
}

#[test]
fn an_on_demand_instance_runs_while_busy_and_is_stopped_and_idle_after_its_timeout() {
    let mut memory = Memory::default();
    let busy_at = NOW - 1_000;
    let f = facts(
        vec![on_demand("bob", busy_at)],
        vec![container("c1", "bob", "h1", true)],
    );
    let (d, seen) = pass(&f, &[], &mut memory);
    assert!(d.plan.actions.is_empty());
    assert_eq!(state(&seen, "bob").state, S::Running);
    assert_eq!(
        seen.next_wake,
        Some(busy_at + IDLE_MS),
        "look again when it goes idle"
    );

    let f = facts(
        vec![on_demand("bob", NOW - IDLE_MS)],
        vec![container("c1", "bob", "h1", true)],
    );
    let (d, seen) = pass(&f, &[], &mut memory);
    assert_eq!(
        d.plan.actions,
        [Action::Stop {
            instance: "bob".into(),
            id: "c1".into()
        }]
    );
    let bob = state(&seen, "bob");
    assert_eq!(bob.state, S::Idle);
    assert_eq!(
        bob.detail.as_deref(),
        Some("on-demand: starts when work arrives")
    );

    // Never active since it was made: idle, nothing created.
    let mut never = on_demand("carol", 0);
    never.record.last_activity_at = None;
    let (d, seen) = pass(&facts(vec![never], vec![]), &[], &mut memory);
    assert!(d.plan.actions.is_empty());
    assert_eq!(state(&seen, "carol").state, S::Idle);
}

#[test]
fn a_broken_config_leaves_the_container_alone_and_is_an_error_until_stopped() {
    let mut memory = Memory::default();
    let f = facts(
        vec![broken("alice", DesiredState::Running)],
        vec![container("c1", "alice", "h1", true)],
    );
    let (d, seen) = pass(&f, &[], &mut memory);
    assert!(d.plan.actions.is_empty(), "its container keeps running");
    let alice = state(&seen, "alice");
    assert_eq!(alice.state, S::Error);
    assert_eq!(
        alice.detail.as_deref(),
        Some("config.json: expected value at line 1")
    );
    assert!(!seen.converged, "an instance in error is not converged");

    // Asked to stop, it is stopped (no config is needed for that), and says what to fix.
    let f = facts(
        vec![broken("alice", DesiredState::Stopped)],
        vec![container("c1", "alice", "h1", true)],
    );
    let (d, seen) = pass(&f, &[], &mut memory);
    assert_eq!(
        d.plan.actions,
        [Action::Stop {
            instance: "alice".into(),
            id: "c1".into()
        }]
    );
    let alice = state(&seen, "alice");
    assert_eq!(alice.state, S::Stopped);
    assert_eq!(
        alice.detail.as_deref(),
        Some("config.json: expected value at line 1")
    );
}

#[test]
fn quick_exits_back_off_and_then_become_a_crash_loop_retried_slowly() {
    let mut memory = Memory::default();
    let mut now = NOW;
    for n in 1..=CRASH_LOOP_AFTER {
        let mut f = facts(
            vec![ready("alice")],
            vec![container("c1", "alice", "h1", false)],
        );
        f.now = now;
        // It ran for a second and exited with 1: a quick failure, seen once.
        let exit = exited("c1", now - 2_000, now - 1_000, 1);
        let (d, seen) = pass(&f, &[("alice", exit.clone())], &mut memory);
        assert_eq!(d.counted_exits.len(), 1, "exit {n} counts once");
        assert!(d.plan.actions.is_empty(), "no start during the backoff");
        assert_eq!(d.plan.backing_off, ["alice"]);
        let alice = state(&seen, "alice");
        assert_eq!(alice.last_exit_code, Some(1));
        if n < CRASH_LOOP_AFTER {
            assert_eq!(alice.state, S::Restarting);
            assert_eq!(seen.next_wake, Some(now + backoff_ms(n)));
            assert_eq!(
                alice.detail.as_deref().unwrap(),
                format!(
                    "exited with code 1; restarting after {}s; last output: boom",
                    backoff_ms(n) / 1000
                )
            );
        } else {
            assert_eq!(alice.state, S::CrashLoop);
            assert_eq!(seen.next_wake, Some(now + CRASH_LOOP_RETRY_MS));
            assert_eq!(
                alice.detail.as_deref(),
                Some("exited 5 times in a row within 10s of starting (last exit code 1); retrying every 5m; last output: boom")
            );
        }
        // The same exit seen again is not another failure; once the backoff is over, the
        // container is started again.
        let (d, _) = pass(&f, &[("alice", exit.clone())], &mut memory);
        assert!(d.counted_exits.is_empty());
        now += if n < CRASH_LOOP_AFTER {
            backoff_ms(n)
        } else {
            CRASH_LOOP_RETRY_MS
        };
        f.now = now;
        let (d, _) = pass(&f, &[("alice", exit)], &mut memory);
        assert!(d.counted_exits.is_empty());
        assert_eq!(
            d.plan.actions,
            [Action::Start {
                instance: "alice".into(),
                id: "c1".into()
            }]
        );
    }
}

#[test]
fn an_exit_from_before_the_daemon_started_is_restarted_without_counting() {
    let mut memory = Memory::default();
    let f = facts(
        vec![ready("alice")],
        vec![container("c1", "alice", "h1", false)],
    );
    let exit = exited("c1", STARTED - 20_000, STARTED - 10_000, 137);
    let (d, seen) = pass(&f, &[("alice", exit)], &mut memory);
    assert!(d.counted_exits.is_empty());
    assert_eq!(
        d.plan.actions,
        [Action::Start {
            instance: "alice".into(),
            id: "c1".into()
        }]
    );
    assert_eq!(state(&seen, "alice").last_exit_code, Some(137));
}

#[test]
fn a_restart_request_stops_the_container_forgets_failures_and_starts_it_again() {
    let mut memory = Memory::default();
    // A failure earlier on: a backoff that would still hold it.
    memory
        .tracker
        .on_exit("alice", ("c0".into(), "t".into()), 100, NOW);
    let mut f = facts(
        vec![ready("alice")],
        vec![container("c1", "alice", "h1", true)],
    );
    f.restart_requests = vec!["alice".into()];
    let (d, seen) = pass(&f, &[], &mut memory);
    assert_eq!(d.restarts, [("alice".to_string(), "c1".to_string())]);
    assert_eq!(
        d.plan.actions,
        [Action::Start {
            instance: "alice".into(),
            id: "c1".into()
        }]
    );
    assert_eq!(memory.tracker.not_before("alice"), None);
    assert_eq!(state(&seen, "alice").state, S::Running);
}

#[test]
fn a_container_no_instance_wants_is_removed() {
    let mut memory = Memory::default();
    let f = facts(
        vec![ready("alice")],
        vec![
            container("c1", "alice", "h1", true),
            container("c9", "gone", "h1", true),
        ],
    );
    let (d, _) = pass(&f, &[], &mut memory);
    assert_eq!(d.plan.actions, [Action::Remove { id: "c9".into() }]);
}

#[test]
fn a_running_container_whose_spec_drifted_is_recreated() {
    let mut memory = Memory::default();
    let f = facts(
        vec![ready("alice")],
        vec![container("c1", "alice", "h0", true)],
    );
    let (d, seen) = pass(&f, &[], &mut memory);
    assert_eq!(
        d.plan.actions,
        [Action::Recreate {
            instance: "alice".into(),
            id: "c1".into()
        }]
    );
    assert_eq!(
        state(&seen, "alice").container_id.as_deref(),
        Some("new-alice")
    );
}

#[test]
fn beyond_max_running_instances_queue_in_the_order_they_asked() {
    let mut memory = Memory::default();
    let mut early = ready("bob");
    early.record.last_activity_at = Some(NOW - 5_000);
    let mut late = ready("alice");
    late.record.last_activity_at = Some(NOW - 1_000);
    let mut f = facts(vec![late, early], vec![]);
    f.max_running = Some(1);
    let (d, seen) = pass(&f, &[], &mut memory);
    assert_eq!(
        d.plan.actions,
        [Action::Create {
            instance: "bob".into()
        }]
    );
    assert_eq!(state(&seen, "bob").state, S::Running);
    let alice = state(&seen, "alice");
    assert_eq!(alice.state, S::Queued);
    assert_eq!(
        alice.detail.as_deref(),
        Some("waiting for a free slot (daemon.max_running = 1)")
    );
}

#[test]
fn without_an_image_or_a_runtime_nothing_is_created_and_the_fix_is_said() {
    let mut memory = Memory::default();
    let mut f = facts(
        vec![ready("alice")],
        vec![container("c1", "alice", "h0", true)],
    );
    f.missing_image = Some("supervisor-agent:1".into());
    let (d, seen) = pass(&f, &[], &mut memory);
    assert!(
        d.plan.actions.is_empty(),
        "the drifted container is left alone"
    );
    let alice = state(&seen, "alice");
    assert_eq!(alice.state, S::Error);
    assert_eq!(
        alice.detail.as_deref(),
        Some("the agent image supervisor-agent:1 is missing: run `supervisor image build`")
    );

    let mut no_runtime = ready("alice");
    no_runtime.input = Input::Ready(Ready::default());
    let (_, seen) = pass(&facts(vec![no_runtime], vec![]), &[], &mut memory);
    assert_eq!(
        state(&seen, "alice").detail.as_deref(),
        Some("no active runtime: run `supervisor runtime build --activate`")
    );
}

#[test]
fn over_its_disk_limit_an_instance_is_stopped_and_in_error() {
    let mut memory = Memory::default();
    let mut alice = ready("alice");
    if let Input::Ready(r) = &mut alice.input {
        r.over_disk = Some("uses 2 GiB of its 1 GiB".into());
    }
    let f = facts(vec![alice], vec![container("c1", "alice", "h1", true)]);
    let (d, seen) = pass(&f, &[], &mut memory);
    assert_eq!(
        d.plan.actions,
        [Action::Stop {
            instance: "alice".into(),
            id: "c1".into()
        }]
    );
    let alice = state(&seen, "alice");
    assert_eq!(alice.state, S::Error);
    assert_eq!(alice.detail.as_deref(), Some("uses 2 GiB of its 1 GiB"));
}

#[test]
fn notes_fill_the_detail_only_when_nothing_else_is_said_and_failed_actions_are_errors() {
    let mut memory = Memory::default();
    let mut alice = ready("alice");
    if let Input::Ready(r) = &mut alice.input {
        r.notes = vec!["config.json is invalid".into(), "port closed".into()];
    }
    let f = facts(vec![alice], vec![container("c1", "alice", "h1", true)]);
    let (_, seen) = pass(&f, &[], &mut memory);
    assert_eq!(
        state(&seen, "alice").detail.as_deref(),
        Some("config.json is invalid; port closed")
    );

    let f = facts(vec![ready("bob")], vec![]);
    let intents = intents(&f);
    let decision = decide(&f, &intents, &HashMap::new(), &mut memory);
    let mut applied = Applied::from(&decision);
    applied
        .failed
        .insert("bob".into(), "creating container failed".into());
    let seen = observe(
        &f,
        &intents,
        &decision,
        &applied,
        &HashMap::new(),
        &memory.tracker,
    );
    assert_eq!(state(&seen, "bob").state, S::Error);
    assert_eq!(
        state(&seen, "bob").detail.as_deref(),
        Some("creating container failed")
    );
}

#[test]
fn a_fresh_start_forgets_past_failures() {
    let mut memory = Memory::default();
    let stopped = InstanceFacts {
        record: record("alice", DesiredState::Stopped),
        ..ready("alice")
    };
    pass(&facts(vec![stopped], vec![]), &[], &mut memory);
    memory
        .tracker
        .on_exit("alice", ("c0".into(), "t".into()), 100, NOW);
    assert!(memory.tracker.not_before("alice").is_some());
    let f = facts(
        vec![ready("alice")],
        vec![container("c1", "alice", "h1", false)],
    );
    let (d, _) = pass(&f, &[], &mut memory);
    assert_eq!(memory.tracker.not_before("alice"), None);
    assert_eq!(
        d.plan.actions,
        [Action::Start {
            instance: "alice".into(),
            id: "c1".into()
        }]
    );
}
