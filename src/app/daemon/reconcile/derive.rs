//! The reconcile pass's decisions, as pure functions of what the pass gathered: which
//! instances should run, which exits count as failures, the plan, and the state each
//! instance is recorded in. No I/O here; `super` gathers the facts and applies the plan.
//!
//! A pass runs in this order:
//! 1. [`intents`]: from the store's records, configs and container specs, what each
//!    instance wants (run or not) or why it cannot be planned for;
//! 2. the pass inspects the stopped containers of instances that should run;
//! 3. [`decide`]: exits accounted (the restart policy), restart requests, and the plan;
//! 4. the pass applies the plan;
//! 5. [`observe`]: each instance's state and detail, from the decision and what applying
//!    it did.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::app::daemon::plan::{self, Action, Actual, Desired, Plan};
use crate::app::daemon::restart::{
    RestartTracker, CRASH_LOOP_AFTER, CRASH_LOOP_RETRY_MS, QUICK_FAILURE_MS,
};
use crate::domain::instance::state::{DesiredState, InstanceState};
use crate::infra::container_spec::LABEL_RUNTIME;
use crate::infra::docker::container::{self, ContainerState, OwnedContainer};
use crate::infra::store::instances::{InstanceRecord, Observed};

/// Everything a pass read before deciding.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: i64,
    /// When this daemon started: exits from before then are not judged as failures.
    pub daemon_started_at: i64,
    /// `daemon.max_running` (None: no cap).
    pub max_running: Option<usize>,
    /// The agent image's tag when the engine does not have it.
    pub missing_image: Option<String>,
    /// Every live instance, in name order.
    pub instances: Vec<InstanceFacts>,
    /// Every container this home owns.
    pub containers: Vec<OwnedContainer>,
    /// Instances with a pending restart request.
    pub restart_requests: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct InstanceFacts {
    pub record: InstanceRecord,
    pub input: Input,
}

/// What the pass could make of an instance's own files.
#[derive(Debug, Clone)]
pub enum Input {
    /// Nothing can be planned for it (its config cannot be read, its files are not as the
    /// supervisor made them): why.
    Broken(String),
    Ready(Ready),
}

#[derive(Debug, Clone, Default)]
pub struct Ready {
    /// On demand: how long it stays up after its last activity (ms). None: persistent.
    pub idle_timeout_ms: Option<i64>,
    /// A message waits for a turn, or a turn for its answer: an on-demand container runs
    /// for it however long it waited (for a slot under `max_running`, say).
    pub work_waiting: bool,
    /// The hash of the container it should have; None while no runtime is active.
    pub spec_hash: Option<String>,
    /// Why it must not run for its disk use (past its soft limit).
    pub over_disk: Option<String>,
    /// Notes for its state detail when nothing else is to be said (a kept config, a
    /// closed port).
    pub notes: Vec<String>,
}

/// What one instance wants of this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// It is planned for: a container runs (`run`) or not, made with `spec_hash`.
    Plan {
        run: bool,
        spec_hash: String,
        /// Why it is kept from running although asked to (stopped, and in error).
        problem: Option<String>,
    },
    /// It cannot be planned for: its container is left alone, or stopped when `stop`.
    Hold { problem: String, stop: bool },
}

/// Derivation state kept from one pass to the next.
#[derive(Debug, Default)]
pub struct Memory {
    pub tracker: RestartTracker,
    /// Desired state seen last pass, to notice a fresh start (which forgets past failures).
    last_desired: HashMap<String, DesiredState>,
}

/// A stopped container of an instance that should run, as inspected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub id: String,
    pub state: ContainerState,
}

/// An exit counted against an instance: to record and log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedExit {
    pub instance: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub ran_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub plan: Plan,
    /// Restart requests: the running containers to stop before the plan (instance, id);
    /// the plan starts them again.
    pub restarts: Vec<(String, String)>,
    /// Exits that count as failures.
    pub counted_exits: Vec<CountedExit>,
    /// The exit code of each instance's last exit seen this pass.
    pub last_exit: HashMap<String, i64>,
    /// Why instances cannot run now, before applying.
    pub problems: BTreeMap<String, String>,
    /// Instances with a problem whose container is still stopped.
    pub stoppable: BTreeSet<String>,
    /// Containers running once the restarts are done: instance → (id, runtime id).
    pub running: HashMap<String, (String, Option<String>)>,
    /// Instances waiting out a restart backoff: their last output goes in their detail.
    pub backing_off: Vec<String>,
}

/// What applying a decision did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Containers running after the actions: instance → (id, runtime id).
    pub running: HashMap<String, (String, Option<String>)>,
    /// Actions that failed, by instance: why.
    pub failed: BTreeMap<String, String>,
    /// Exit codes of the containers stopped for a restart request.
    pub restart_exits: HashMap<String, i64>,
}

impl Applied {
    /// Applying starts from the containers running after the restarts.
    pub fn from(decision: &Decision) -> Self {
        Self {
            running: decision.running.clone(),
            ..Self::default()
        }
    }
}

/// The pass's record of each instance, and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// Each instance's observed state, in name order.
    pub observed: Vec<(String, Observed)>,
    /// The earliest backoff end or idle timeout (unix ms).
    pub next_wake: Option<i64>,
    /// Nothing was left to do and no instance has a problem.
    pub converged: bool,
}

fn earliest(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |w| w.min(b)))
}

impl InstanceFacts {
    fn name(&self) -> &str {
        &self.record.name
    }

    fn wants_to_stop(&self) -> bool {
        self.record.desired_state != DesiredState::Running
    }
}

/// What each instance wants of this pass, by name.
pub fn intents(facts: &Facts) -> BTreeMap<String, Intent> {
    let now = facts.now;
    let mut out = BTreeMap::new();
    for i in &facts.instances {
        let intent = match &i.input {
            Input::Broken(problem) => Intent::Hold {
                problem: problem.clone(),
                // Stopping needs neither a config nor the instance's files.
                stop: i.wants_to_stop(),
            },
            Input::Ready(r) => {
                let wants = !i.wants_to_stop() && r.over_disk.is_none();
                let run = wants
                    && match r.idle_timeout_ms {
                        None => true,
                        Some(idle) => {
                            r.work_waiting
                                || i.record.last_activity_at.is_some_and(|t| now - t < idle)
                        }
                    };
                match (&r.spec_hash, &facts.missing_image) {
                    (None, _) if run => Intent::Hold {
                        problem: "no active runtime: run `supervisor runtime build --activate`"
                            .into(),
                        stop: false,
                    },
                    (_, Some(image)) if run => Intent::Hold {
                        problem: format!(
                            "the agent image {image} is missing: run `supervisor image build`"
                        ),
                        stop: false,
                    },
                    (hash, _) => Intent::Plan {
                        run,
                        spec_hash: hash.clone().unwrap_or_default(),
                        problem: r.over_disk.clone(),
                    },
                }
            }
        };
        out.insert(i.name().to_string(), intent);
    }
    out
}

/// The containers whose exit the pass must inspect: the newest of each instance that should
/// run, when it is stopped. (instance, container id)
pub fn exits_to_inspect(
    facts: &Facts,
    intents: &BTreeMap<String, Intent>,
) -> Vec<(String, String)> {
    intents
        .iter()
        .filter(|(_, i)| matches!(i, Intent::Plan { run: true, .. }))
        .filter_map(|(name, _)| {
            let c = container::newest(&facts.containers, name)?;
            (!c.running).then(|| (name.clone(), c.id.clone()))
        })
        .collect()
}

/// Accounts exits, takes restart requests and plans.
pub fn decide(
    facts: &Facts,
    intents: &BTreeMap<String, Intent>,
    exits: &HashMap<String, Exited>,
    memory: &mut Memory,
) -> Decision {
    let now = facts.now;
    let mut d = Decision::default();
    for i in &facts.instances {
        let desired = i.record.desired_state;
        if memory.last_desired.insert(i.name().to_string(), desired) != Some(desired) {
            memory.tracker.reset(i.name());
        }
    }
    memory
        .last_desired
        .retain(|name, _| intents.contains_key(name));

    for (name, intent) in intents {
        match intent {
            Intent::Hold { problem, stop } => {
                d.problems.insert(name.clone(), problem.clone());
                if *stop {
                    d.stoppable.insert(name.clone());
                }
            }
            Intent::Plan {
                problem: Some(problem),
                ..
            } => {
                d.problems.insert(name.clone(), problem.clone());
                d.stoppable.insert(name.clone());
            }
            Intent::Plan { .. } => {}
        }
    }
    // Instances with a problem keep whatever container they have, unless they are to stop.
    let mut owned: Vec<OwnedContainer> = facts
        .containers
        .iter()
        .filter(|c| !d.problems.contains_key(&c.instance) || d.stoppable.contains(&c.instance))
        .cloned()
        .collect();

    // A restart request stops the running container; the plan starts it again, with its
    // failures forgotten.
    for name in &facts.restart_requests {
        for c in owned
            .iter_mut()
            .filter(|c| &c.instance == name && c.running)
        {
            c.running = false;
            d.restarts.push((name.clone(), c.id.clone()));
        }
        memory.tracker.reset(name);
    }

    for (name, e) in exits.iter().collect::<BTreeMap<_, _>>() {
        account_exit(facts, name, e, memory, &mut d);
    }

    let mut desired: Vec<Desired> = Vec::new();
    let mut stop_only: Vec<Desired> = Vec::new();
    for (name, intent) in intents {
        match intent {
            Intent::Plan { run, spec_hash, .. } => {
                let record = &facts
                    .instances
                    .iter()
                    .find(|i| i.name() == name)
                    .expect("an intent per instance")
                    .record;
                desired.push(Desired {
                    name: name.clone(),
                    run: *run,
                    spec_hash: spec_hash.clone(),
                    not_before: memory.tracker.not_before(name),
                    // Queued: since it was queued. Otherwise since it was asked to run.
                    waiting_since: if record.state == InstanceState::Queued {
                        record.state_changed_at.unwrap_or(now)
                    } else {
                        record.last_activity_at.unwrap_or(now)
                    },
                });
            }
            Intent::Hold { stop: true, .. } => stop_only.push(Desired {
                name: name.clone(),
                run: false,
                spec_hash: String::new(),
                not_before: None,
                waiting_since: now,
            }),
            Intent::Hold { stop: false, .. } => {}
        }
    }
    desired.extend(stop_only);
    let actual: Vec<Actual> = owned
        .iter()
        .map(|c| Actual {
            id: c.id.clone(),
            instance: c.instance.clone(),
            spec_hash: c.spec_hash.clone(),
            running: c.running,
            created: c.created,
        })
        .collect();
    d.plan = plan::plan(&desired, &actual, now, facts.max_running);
    d.running = owned
        .iter()
        .filter(|c| c.running)
        .map(|c| {
            (
                c.instance.clone(),
                (c.id.clone(), c.labels.get(LABEL_RUNTIME).cloned()),
            )
        })
        .collect();
    d.backing_off = intents
        .iter()
        .filter(|(_, i)| matches!(i, Intent::Plan { .. }))
        .map(|(name, _)| name)
        .filter(|name| memory.tracker.not_before(name).is_some_and(|t| t > now))
        .cloned()
        .collect();
    d
}

/// Counts an exited container as a failure (once per exit) and notes its code.
fn account_exit(facts: &Facts, name: &str, e: &Exited, memory: &mut Memory, d: &mut Decision) {
    let state = &e.state;
    let (Some(started), Some(finished)) = (
        state.started_at.as_deref().and_then(container::parse_time),
        state.finished_at.as_deref().and_then(container::parse_time),
    ) else {
        // Created but never started: not an exit.
        return;
    };
    if let Some(code) = state.exit_code {
        d.last_exit.insert(name.to_string(), code);
    }
    let key = (e.id.clone(), state.finished_at.clone().unwrap_or_default());
    if finished < facts.daemon_started_at {
        // It stopped while no daemon was watching (a crash, a reboot, a shutdown that
        // stopped containers): start it again, without counting it against the instance.
        memory.tracker.on_expected_exit(name, key);
        return;
    }
    let ran_ms = finished - started;
    if memory
        .tracker
        .on_exit(name, key, ran_ms, facts.now)
        .is_some()
    {
        d.counted_exits.push(CountedExit {
            instance: name.to_string(),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed,
            ran_ms,
        });
    }
}

/// The instance an action is about, if it is about one.
pub fn action_instance(action: &Action) -> Option<&str> {
    match action {
        Action::Create { instance }
        | Action::Start { instance, .. }
        | Action::Recreate { instance, .. }
        | Action::Stop { instance, .. } => Some(instance),
        Action::Remove { .. } => None,
    }
}

/// Each instance's state and detail after the pass. `output` holds the last output of the
/// instances in [`Decision::backing_off`].
pub fn observe(
    facts: &Facts,
    intents: &BTreeMap<String, Intent>,
    decision: &Decision,
    applied: &Applied,
    output: &HashMap<String, String>,
    tracker: &RestartTracker,
) -> Observations {
    let now = facts.now;
    let mut problems = decision.problems.clone();
    problems.extend(applied.failed.clone());
    let queued: BTreeSet<&String> = decision.plan.queued.iter().collect();
    let mut next_wake = decision.plan.next_wake;
    let mut observed = Vec::new();
    for i in &facts.instances {
        let name = i.name();
        let record = &i.record;
        let keep = Observed {
            state: record.state,
            detail: None,
            container_id: record.container_id.clone(),
            runtime_id: record.runtime_id.clone(),
            last_exit_code: record.last_exit_code,
        };
        let last_exit = decision
            .last_exit
            .get(name)
            .or_else(|| applied.restart_exits.get(name))
            .copied()
            .or(record.last_exit_code);
        let o = match (&intents[name], &i.input) {
            (Intent::Hold { stop, .. }, _) => Observed {
                // Stopped on request even though it cannot be planned for: it is stopped,
                // and the detail says what to fix before it can run again.
                state: if *stop {
                    InstanceState::Stopped
                } else {
                    InstanceState::Error
                },
                detail: problems.get(name).cloned(),
                ..Observed::default()
            },
            (Intent::Plan { run, .. }, input) => {
                let o = if let Some(problem) = problems.get(name) {
                    Observed {
                        state: InstanceState::Error,
                        detail: Some(problem.clone()),
                        ..keep
                    }
                } else if queued.contains(&name.to_string()) {
                    Observed {
                        state: InstanceState::Queued,
                        detail: Some(format!(
                            "waiting for a free slot (daemon.max_running = {})",
                            facts.max_running.unwrap_or(0)
                        )),
                        ..keep
                    }
                } else if let Some(r) = tracker
                    .get(name)
                    .filter(|r| r.not_before.is_some_and(|t| t > now))
                {
                    // The detail stays the same for one exit (no countdown), so the state is
                    // recorded once per exit, not once per pass.
                    let code_text = last_exit.map_or("unknown".into(), |c| c.to_string());
                    let output = output.get(name).map_or("(none)", String::as_str);
                    let (state, detail) = if r.crash_loop {
                        (
                            InstanceState::CrashLoop,
                            format!(
                                "exited {} times in a row within {}s of starting (last exit code {code_text}); retrying every {}m; last output: {output}",
                                r.quick_failures.max(CRASH_LOOP_AFTER),
                                QUICK_FAILURE_MS / 1000,
                                CRASH_LOOP_RETRY_MS / 60_000,
                            ),
                        )
                    } else {
                        (
                            InstanceState::Restarting,
                            format!(
                                "exited with code {code_text}; restarting after {}s; last output: {output}",
                                r.delay_ms / 1000
                            ),
                        )
                    };
                    Observed {
                        state,
                        detail: Some(detail),
                        last_exit_code: last_exit,
                        ..keep
                    }
                } else if let Some((id, runtime)) = applied.running.get(name) {
                    if let (Input::Ready(r), Some(t)) = (input, record.last_activity_at) {
                        if let Some(idle) = r.idle_timeout_ms {
                            next_wake = earliest(next_wake, t + idle);
                        }
                    }
                    Observed {
                        state: InstanceState::Running,
                        detail: None,
                        container_id: Some(id.clone()),
                        runtime_id: runtime.clone(),
                        last_exit_code: last_exit,
                    }
                } else if record.desired_state == DesiredState::Running && !run {
                    Observed {
                        state: InstanceState::Idle,
                        detail: Some("on-demand: starts when work arrives".into()),
                        ..keep
                    }
                } else {
                    Observed {
                        state: InstanceState::Stopped,
                        ..keep
                    }
                };
                let notes = match input {
                    Input::Ready(r) => r.notes.join("; "),
                    Input::Broken(_) => String::new(),
                };
                match o.detail {
                    None if !notes.is_empty() => Observed {
                        detail: Some(notes),
                        ..o
                    },
                    _ => o,
                }
            }
        };
        observed.push((name.to_string(), o));
    }
    Observations {
        observed,
        next_wake,
        converged: decision.plan.actions.is_empty()
            && decision.plan.backing_off.is_empty()
            && problems.is_empty(),
    }
}

#[cfg(test)]
mod tests;
