//! The reconcile pass from gathering to recording, against the in-memory engine: a real
//! home and store in a temporary directory, containers in [`FakeEngine`].

use super::*;
use crate::app::daemon::restart::{backoff_ms, CRASH_LOOP_AFTER, CRASH_LOOP_RETRY_MS};
use crate::app::instances::create::{self, NewInstance};
use crate::app::instances::soul::{BuiltinSoul, Soul};
use crate::domain::instance::state::DesiredState;
use crate::infra::container_spec::{LABEL_HOME, LABEL_INSTANCE, LABEL_SPEC_HASH};
use crate::infra::docker::container;
use crate::infra::docker::fake::{Call, FakeEngine};
use crate::infra::store::runtimes::RuntimeRecord;

#[test]
fn docker_times() {
    assert_eq!(container::parse_time("0001-01-01T00:00:00Z"), None);
    assert_eq!(
        container::parse_time("2026-11-22T05:00:00.123456789Z"),
        Some(1_795_323_600_123)
    );
    assert_eq!(container::parse_time("garbage"), None);
}

/// A home with an active runtime, the agent image in the engine, and a reconciler over it.
struct Bench {
    _dir: tempfile::TempDir,
    engine: FakeEngine,
    reconciler: Reconciler,
    home_id: String,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        std::fs::create_dir_all(home.root()).unwrap();
        // Soft limits: no disk images or mounts, whatever the host offers.
        std::fs::write(home.config_path(), "[disk]\nenforce = \"soft\"\n").unwrap();
        let mut store = home.init().unwrap();
        let home_id = store.home_id().unwrap();
        store
            .register_runtime(&RuntimeRecord {
                id: "rt1".into(),
                built_at: 0,
                agent_version: "1".into(),
                protocol: 1,
                toolbox: None,
                size_bytes: 0,
            })
            .unwrap();
        store.activate_runtime("rt1", "test").unwrap();
        let host = home.host_config().unwrap();
        let engine = FakeEngine::new();
        engine.add_image(&agent_image::current_tag(&host.docker.image));
        let reconciler =
            Reconciler::new(home, store, home_id.clone(), host, ContainerUser::detect());
        Self {
            _dir: dir,
            engine,
            reconciler,
            home_id,
        }
    }

    /// Makes an instance with `config` and asks for it to run.
    fn instance(&mut self, name: &str, config: InstanceConfig) {
        let r = &mut self.reconciler;
        let new = NewInstance {
            name: InstanceName::parse(name).unwrap(),
            soul: Soul::builtin(BuiltinSoul::Expert),
            config,
        };
        create::create(&r.home, &mut r.store, &new, "test").unwrap();
        r.store
            .set_desired(name, DesiredState::Running, "test")
            .unwrap();
    }

    async fn pass(&mut self, now: i64) -> PassOutcome {
        self.engine.set_now(now);
        self.reconciler.pass_at(&self.engine, now).await.unwrap()
    }

    fn record(&self, name: &str) -> InstanceRecord {
        self.reconciler.store.instance(name).unwrap()
    }

    fn running(&self, name: &str) -> String {
        self.engine
            .running_of(name)
            .unwrap_or_else(|| panic!("a container of {name} runs"))
            .id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_instance_asked_to_run_gets_a_container_that_is_left_running() {
    let mut b = Bench::new();
    b.instance("alice", InstanceConfig::default());
    let now = now_ms();
    let outcome = b.pass(now).await;
    assert_eq!(outcome.actions, 1);
    let id = b.running("alice");
    assert_eq!(
        b.engine.take_calls(),
        [
            Call::Create {
                instance: "alice".into(),
                id: id.clone()
            },
            Call::Start { id: id.clone() }
        ]
    );
    let rec = b.record("alice");
    assert_eq!(rec.state, InstanceState::Running);
    assert_eq!(rec.container_id.as_deref(), Some(id.as_str()));
    assert_eq!(rec.runtime_id.as_deref(), Some("rt1"));

    let outcome = b.pass(now + 1_000).await;
    assert_eq!(outcome.actions, 0);
    assert!(outcome.converged);
    assert!(b.engine.take_calls().is_empty(), "nothing to do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn repeated_quick_exits_back_off_and_end_in_a_crash_loop() {
    let mut b = Bench::new();
    b.instance("alice", InstanceConfig::default());
    let mut now = now_ms() + 1_000;
    b.pass(now).await;
    for n in 1..=CRASH_LOOP_AFTER {
        let id = b.running("alice");
        b.engine.set_now(now + 500);
        b.engine.exit(&id, 1, "boom");
        now += 1_000;
        let outcome = b.pass(now).await;
        let rec = b.record("alice");
        assert_eq!(rec.restart_count, i64::from(n));
        assert_eq!(rec.last_exit_code, Some(1));
        assert!(
            b.engine.running_of("alice").is_none(),
            "held back by the backoff"
        );
        let delay = if n < CRASH_LOOP_AFTER {
            assert_eq!(rec.state, InstanceState::Restarting, "after exit {n}");
            backoff_ms(n)
        } else {
            assert_eq!(rec.state, InstanceState::CrashLoop);
            CRASH_LOOP_RETRY_MS
        };
        assert!(
            rec.state_detail
                .as_deref()
                .unwrap()
                .ends_with("last output: boom"),
            "{:?}",
            rec.state_detail
        );
        assert!(!outcome.converged);
        assert!(outcome.next_wake.is_some_and(|w| w <= now + delay));
        // Seen again before the backoff ends: not another failure, not started.
        b.pass(now + delay - 1).await;
        assert_eq!(b.record("alice").restart_count, i64::from(n));
        assert!(b.engine.running_of("alice").is_none());
        now += delay;
        b.engine.take_calls();
        b.pass(now).await;
        assert_eq!(b.engine.take_calls(), [Call::Start { id: id.clone() }]);
    }
    let events = b
        .reconciler
        .store
        .recent_events(Some("alice"), 100)
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "instance.crash-loop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_container_of_this_home_that_no_instance_wants_is_removed() {
    let mut b = Bench::new();
    let home_id = b.home_id.clone();
    let ghost = b.engine.add_container(
        &[
            (LABEL_HOME, home_id.as_str()),
            (LABEL_INSTANCE, "ghost"),
            (LABEL_SPEC_HASH, "x"),
        ],
        true,
    );
    let other_home = b.engine.add_container(
        &[(LABEL_HOME, "another-home"), (LABEL_INSTANCE, "ghost")],
        true,
    );
    b.pass(now_ms()).await;
    assert_eq!(
        b.engine.take_calls(),
        [
            Call::Stop { id: ghost.clone() },
            Call::Remove { id: ghost.clone() }
        ]
    );
    assert!(b.engine.container(&ghost).is_none());
    assert!(
        b.engine.container(&other_home).is_some(),
        "another home's containers are never touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_restart_request_stops_and_starts_the_container_once() {
    let mut b = Bench::new();
    b.instance("alice", InstanceConfig::default());
    let now = now_ms() + 1_000;
    b.pass(now).await;
    let id = b.running("alice");
    b.engine.take_calls();
    b.reconciler.store.request_restart("alice", "test").unwrap();
    assert!(b.record("alice").restart_pending);

    b.pass(now + 1_000).await;
    assert_eq!(
        b.engine.take_calls(),
        [
            Call::Stop { id: id.clone() },
            Call::Start { id: id.clone() }
        ]
    );
    let rec = b.record("alice");
    assert!(!rec.restart_pending, "the request is carried out once");
    assert_eq!(rec.state, InstanceState::Running);
    assert_eq!(rec.restart_count, 0, "a restart asked for is no failure");

    b.pass(now + 2_000).await;
    assert!(b.engine.take_calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_on_demand_instance_is_stopped_when_idle_and_says_so() {
    let mut b = Bench::new();
    let mut config = InstanceConfig::default();
    config.lifecycle.mode = LifecycleMode::OnDemand;
    config.lifecycle.idle_timeout = "1m".into();
    b.instance("bob", config);
    // Starting it counts as activity: it runs until its idle timeout.
    let now = b.record("bob").last_activity_at.unwrap();
    let outcome = b.pass(now + 1_000).await;
    let id = b.running("bob");
    assert_eq!(b.record("bob").state, InstanceState::Running);
    assert!(outcome.next_wake.is_some_and(|w| w <= now + 60_000));
    b.engine.take_calls();

    b.pass(now + 61_000).await;
    assert_eq!(b.engine.take_calls(), [Call::Stop { id: id.clone() }]);
    assert!(b.engine.container(&id).is_some(), "stopped, kept");
    let rec = b.record("bob");
    assert_eq!(rec.state, InstanceState::Idle);
    assert_eq!(
        rec.state_detail.as_deref(),
        Some("on-demand: starts when work arrives")
    );
    assert_eq!(rec.restart_count, 0, "an idle stop is no failure");
}
