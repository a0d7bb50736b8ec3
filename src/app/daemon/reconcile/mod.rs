//! One reconcile pass, in three steps: gather what should run (the store, the configs) and
//! what runs (the engine's containers and their exits); derive the decisions from those
//! facts ([`derive`], pure); apply them ([`apply`]) and record what each instance is now.
//!
//! Errors about one instance (bad config, a failed create) are recorded on that instance and
//! the pass carries on; only losing the Docker engine ends a pass early.

mod apply;
mod derive;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use self::apply::{last_output, ActionError};
use self::derive::{
    Applied, CountedExit, Exited, Facts, Input, InstanceFacts, Intent, Memory, Ready,
};
use super::api::listen::{self, TokenProblem};
use super::disk_usage;
use super::live::Live;
use super::plan::Action;
use super::restart::QUICK_FAILURE_MS;
use super::rollout::{self, Next};
use super::state_change::{self, Before};
use crate::app::instances::last_good::{LastGoodConfigs, Loaded};
use crate::domain::host_config::HostConfig;
use crate::domain::instance::config::LifecycleMode;
use crate::domain::instance::state::InstanceState;
use crate::domain::instance::{InstanceConfig, InstanceName};
use crate::infra::agent_image;
use crate::infra::container_spec::{ContainerSpec, SpecInputs};
use crate::infra::container_user::ContainerUser;
use crate::infra::disk::Enforcement;
use crate::infra::docker::{DockerError, Engine};
use crate::infra::home::Home;
use crate::infra::store::instances::{InstanceRecord, Observed};
use crate::infra::store::rollouts::Rollout;
use crate::infra::store::{now_ms, Store, StoreError};
use crate::infra::volume::VolumeError;

pub const ACTOR: &str = "daemon";

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// When to plan again even if nothing wakes us (backoff end, idle timeout), unix ms.
    pub next_wake: Option<i64>,
    /// Nothing was left to do and no instance is in error.
    pub converged: bool,
    pub actions: usize,
    /// The live instances this pass saw.
    pub live: Vec<String>,
    /// A roll-out waits for an agent's readiness: plan again as soon as one reports.
    pub awaiting_ready: bool,
}

pub struct Reconciler {
    home: Home,
    store: Store,
    home_id: String,
    host: HostConfig,
    user: ContainerUser,
    /// How disk limits are enforced, from `[disk]` and what this host offers.
    disk: Enforcement,
    /// What the derivation keeps between passes (the restart policy's counts).
    memory: Memory,
    /// When this daemon started: exits from before then are not judged as failures.
    started_at: i64,
    /// A second look after starting containers (see `pass`).
    recheck_at: Option<i64>,
    /// Each instance's last valid config, shared with the rest of the daemon.
    configs: LastGoodConfigs,
    /// Told when a container is started, so readiness is judged per start.
    live: Live,
    /// Why instances' ports cannot open (no usable API token), for the daemon's life.
    ports_closed: Option<TokenProblem>,
    /// The closed ports already reported (instance → port), so each is reported once.
    closed_reported: HashMap<String, u16>,
}

/// What applying needs of a plannable instance.
struct Prepared {
    uid: u32,
    config: InstanceConfig,
    spec: Option<ContainerSpec>,
}

impl Reconciler {
    pub fn new(
        home: Home,
        store: Store,
        home_id: String,
        host: HostConfig,
        user: ContainerUser,
    ) -> Self {
        Self {
            home,
            store,
            home_id,
            disk: host.disk.enforcement(),
            host,
            user,
            memory: Memory::default(),
            started_at: now_ms(),
            recheck_at: None,
            configs: LastGoodConfigs::default(),
            live: Live::default(),
            ports_closed: None,
            closed_reported: HashMap::new(),
        }
    }

    /// Instances' ports stay closed for want of a token: each instance with a `port` says
    /// so in its state detail, and each closed port is logged and recorded once.
    pub fn keep_ports_closed(&mut self, problem: TokenProblem) {
        self.ports_closed = Some(problem);
    }

    /// The daemon's live view, shared with the API and the message actors.
    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// The daemon's shared view of instance configs (see [`LastGoodConfigs`]).
    pub fn configs(&self) -> LastGoodConfigs {
        self.configs.clone()
    }

    /// Takes a new host config (hot reload); the next pass plans with it.
    pub fn set_host(&mut self, host: HostConfig) {
        if host.disk != self.host.disk {
            self.disk = host.disk.enforcement();
        }
        self.host = host;
    }

    /// Records a daemon-wide event (not about one instance); failures only logged.
    pub fn record_event(&mut self, kind: &str, detail: Option<&serde_json::Value>) {
        if let Err(e) = self.store.record_event(None, ACTOR, kind, detail) {
            tracing::warn!(error = %e, kind, "cannot record event");
        }
    }

    pub fn home_id(&self) -> &str {
        &self.home_id
    }

    pub fn live_instances(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .store
            .instances()?
            .into_iter()
            .map(|r| r.name)
            .collect())
    }

    /// One pass: gather what should run and what runs, derive the plan ([`derive`]), apply
    /// it, and record what each instance is now.
    pub async fn pass(&mut self, engine: &dyn Engine) -> Result<PassOutcome, PassError> {
        self.pass_at(engine, now_ms()).await
    }

    /// [`Self::pass`] as of `now` (unix ms).
    async fn pass_at(&mut self, engine: &dyn Engine, now: i64) -> Result<PassOutcome, PassError> {
        let records = self.store.instances()?;
        let live: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        self.configs.retain(&live);
        // A roll-out step may end here (and a failed one put the previous runtime back), so
        // the active runtime is read after it.
        let rollout = self.advance_rollout(&records, now)?;
        // Each instance's state before this pass, to say what changed and why.
        let before: HashMap<String, Before> = records
            .iter()
            .map(|r| {
                let b = Before {
                    state: r.state,
                    detail: r.state_detail.clone(),
                };
                (r.name.clone(), b)
            })
            .collect();

        let (mut facts, prepared) = self.gather(engine, records, rollout.as_ref(), now).await?;
        let intents = derive::intents(&facts);
        let port_notes = self.closed_port_notes(&intents, &prepared)?;
        for i in &mut facts.instances {
            if let (Input::Ready(r), Some(note)) = (&mut i.input, port_notes.get(&i.record.name)) {
                r.notes.push(note.clone());
            }
        }
        let mut exits = HashMap::new();
        for (name, id) in derive::exits_to_inspect(&facts, &intents) {
            if let Some(state) = engine.inspect(&id).await? {
                exits.insert(name, Exited { id, state });
            }
        }
        let decision = derive::decide(&facts, &intents, &exits, &mut self.memory);
        for e in &decision.counted_exits {
            self.record_exit(e)?;
        }

        let mut applied = Applied::from(&decision);
        let stop_timeout = self.host.daemon.stop_timeout_secs();
        for (name, id) in &decision.restarts {
            engine.stop(id, stop_timeout).await?;
            if let Some(code) = self.expect_exit(engine, name, id).await? {
                applied.restart_exits.insert(name.clone(), code);
            }
        }
        for name in &facts.restart_requests {
            self.store.clear_restart_request(name)?;
        }
        for action in &decision.plan.actions {
            tracing::info!(action = %action, "reconcile");
            if let Err(mut e) = self.apply(engine, action, &prepared, &mut applied).await {
                if let ActionError::Volume(VolumeError::Busy(_)) = e {
                    // Not a failure: the actor's round ends soon, and the next pass starts it.
                    tracing::info!(action = %action, "volume busy; trying again shortly");
                    self.recheck_at = Some(now + 500);
                    continue;
                }
                if let ActionError::Docker(de) = e {
                    if engine.ping().await.is_err() {
                        return Err(de.into());
                    }
                    e = ActionError::Docker(de);
                }
                tracing::warn!(error = %e, action = %action, "reconcile action failed");
                if let Some(name) = derive::action_instance(action) {
                    applied.failed.insert(name.to_string(), e.to_string());
                }
            }
        }

        // After starting anything, look again once a quick failure would have shown itself,
        // in case its exit raced this pass. Kept across passes until it has passed.
        if decision
            .plan
            .actions
            .iter()
            .any(|a| !matches!(a, Action::Stop { .. } | Action::Remove { .. }))
        {
            self.recheck_at = Some(now + QUICK_FAILURE_MS);
        }
        let mut output = HashMap::new();
        for name in &decision.backing_off {
            output.insert(
                name.clone(),
                last_output(engine, &facts.containers, name).await,
            );
        }
        let seen = derive::observe(
            &facts,
            &intents,
            &decision,
            &applied,
            &output,
            &self.memory.tracker,
        );
        for (name, observed) in &seen.observed {
            self.observe(name, before.get(name), observed)?;
        }
        let mut next_wake = seen.next_wake;
        if let Some(at) = self.recheck_at.filter(|at| *at > now) {
            next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
        }
        if let Some((_, deadline)) = &rollout {
            next_wake = Some(next_wake.map_or(*deadline, |w| w.min(*deadline)));
        }
        Ok(PassOutcome {
            next_wake,
            converged: seen.converged && rollout.is_none(),
            actions: decision.plan.actions.len(),
            live,
            awaiting_ready: rollout.is_some(),
        })
    }

    /// Reads what the pass decides from: each instance's config and container spec, the
    /// containers this home owns, the restart requests. Returns the facts and, for applying,
    /// each plannable instance's config and spec.
    async fn gather(
        &mut self,
        engine: &dyn Engine,
        records: Vec<InstanceRecord>,
        rollout: Option<&(Rollout, i64)>,
        now: i64,
    ) -> Result<(Facts, BTreeMap<String, Prepared>), PassError> {
        let active = self.store.active_runtime()?;
        let image = agent_image::current_tag(&self.host.docker.image);
        // Without the image nothing can be (re)created: leave existing containers alone.
        let missing_image = (!engine.image_exists(&image).await?).then(|| image.clone());
        let snapshot = self.live.snapshot();
        let with_work = self.store.instances_with_work()?;
        let mut instances = Vec::new();
        let mut prepared = BTreeMap::new();
        for record in records {
            let name = record.name.clone();
            let Ok(iname) = InstanceName::parse(&name) else {
                continue;
            };
            let paths = self.home.instance_paths(&iname);
            let mut notes = Vec::new();
            let config = match self.configs.load(&name, &paths.config) {
                Ok(Loaded::Current(c)) => Ok(c),
                Ok(Loaded::Kept {
                    config,
                    error,
                    new_problem,
                }) => {
                    notes.push(format!(
                        "config.json is invalid, running on the last valid one: {error}"
                    ));
                    if new_problem {
                        tracing::warn!(instance = %name, %error, "config.json is invalid; keeping the last valid config");
                        let detail = serde_json::json!({
                            "error": error.to_string(),
                            "kept": "the last valid config",
                        });
                        self.store.record_event(
                            Some(&name),
                            ACTOR,
                            "config.invalid",
                            Some(&detail),
                        )?;
                    }
                    Ok(config)
                }
                Err(e) => Err(e.to_string()),
            };
            // The messaging actor found the instance's queues not as the supervisor made
            // them: nothing of the instance is touched until that is put right.
            let config = config.and_then(|c| match snapshot.boundary.get(&name) {
                Some(problem) => Err(problem.clone()),
                None => Ok(c),
            });
            let config = match config {
                Ok(c) => c,
                Err(problem) => {
                    instances.push(InstanceFacts {
                        record,
                        input: Input::Broken(problem),
                    });
                    continue;
                }
            };
            let over_disk = snapshot.disk.get(&name).and_then(|s| {
                disk_usage::over_soft_limit(s, config.limits.disk_bytes(), &config.limits.disk)
            });
            let spec = active.as_ref().map(|a| {
                let runtime_id = match rollout {
                    Some((r, _)) => rollout::runtime_for(r, &record, |id| {
                        self.home.runtime_dir().join(id).is_dir()
                    }),
                    None => a.runtime_id.clone(),
                };
                ContainerSpec::for_instance(&SpecInputs {
                    home_id: &self.home_id,
                    instance: &name,
                    config: &config,
                    paths: &paths,
                    runtime_id: &runtime_id,
                    runtime_dir: self.home.runtime_dir().join(&runtime_id),
                    image: &image,
                    user: &self.user.spec_for(record.uid),
                })
            });
            let ready = Ready {
                idle_timeout_ms: (config.lifecycle.mode == LifecycleMode::OnDemand)
                    .then(|| config.lifecycle.idle_timeout().as_millis() as i64),
                work_waiting: with_work.contains(&name),
                spec_hash: spec.as_ref().map(|s| s.spec_hash().to_string()),
                over_disk,
                notes,
            };
            prepared.insert(
                name,
                Prepared {
                    uid: record.uid,
                    config,
                    spec,
                },
            );
            instances.push(InstanceFacts {
                record,
                input: Input::Ready(ready),
            });
        }

        let containers = engine.list(&self.home_id).await?;
        // Where each instance's task runs, for `status` (swarm only; None on the local engine).
        self.live.set_nodes_from(&containers);
        let seen: Vec<String> = containers
            .iter()
            .map(|c| {
                format!(
                    "{}:{}",
                    c.instance,
                    if c.running { "running" } else { "stopped" }
                )
            })
            .collect();
        tracing::debug!(containers = %seen.join(" "), "reconcile pass");
        let facts = Facts {
            now,
            daemon_started_at: self.started_at,
            max_running: self.host.daemon.max_running(),
            missing_image,
            instances,
            containers,
            restart_requests: self.store.restart_requests()?,
        };
        Ok((facts, prepared))
    }

    /// Records an exit counted against an instance, and says so.
    fn record_exit(&mut self, e: &CountedExit) -> Result<(), StoreError> {
        let name = e.instance.as_str();
        self.store.bump_restart_count(name)?;
        let detail = serde_json::json!({
            "exit_code": e.exit_code,
            "oom_killed": e.oom_killed,
            "ran_ms": e.ran_ms,
        });
        self.store
            .record_event(Some(name), ACTOR, "container.exited", Some(&detail))?;
        let code = e
            .exit_code
            .map_or_else(|| "unknown".to_string(), |c| c.to_string());
        tracing::warn!(instance = name, exit_code = %code, oom_killed = e.oom_killed, "container exited unexpectedly");
        Ok(())
    }

    /// Takes the current roll-out as far as it can go now (see [`rollout::next`]). Returns it
    /// with the deadline of its moving step while it goes on; None when there is none or it
    /// just finished or failed.
    fn advance_rollout(
        &mut self,
        records: &[InstanceRecord],
        now: i64,
    ) -> Result<Option<(Rollout, i64)>, StoreError> {
        let timeout = self.host.daemon.rollout_ready_timeout_ms();
        // Each round either ends or finishes one step, so this is bounded by the instances.
        for _ in 0..=records.len() {
            let Some(r) = self.store.current_rollout()? else {
                return Ok(None);
            };
            match rollout::next(&r, records, &self.live.snapshot(), now, timeout) {
                Next::Begin(instance) => {
                    tracing::info!(%instance, runtime = %r.runtime_id, "roll-out: moving");
                    self.store.begin_rollout_step(&r, &instance)?;
                    // Earlier failures were on the old runtime; do not delay the move.
                    self.memory.tracker.reset(&instance);
                    break;
                }
                Next::Ready { instance, took_ms } => {
                    tracing::info!(%instance, took_ms, runtime = %r.runtime_id, "roll-out: ready");
                    self.store.finish_rollout_step(&r, &instance, took_ms)?;
                }
                Next::Fail { instance, reason } => {
                    tracing::warn!(%instance, %reason, back_to = %r.previous_id, "roll-out stopped; previous runtime restored");
                    self.store.fail_rollout(&r, &instance, &reason)?;
                    // Its failures belong to the runtime it leaves.
                    self.memory.tracker.reset(&instance);
                    return Ok(None);
                }
                Next::Wait { deadline } => return Ok(Some((r, deadline))),
                Next::Done => {
                    tracing::info!(runtime = %r.runtime_id, moved = r.steps.len(), "roll-out done");
                    self.store.finish_rollout(&r)?;
                    return Ok(None);
                }
            }
        }
        // A step just began (or every round finished one): read the roll-out again with it.
        // Another activation may have come in between; then that one is the one to carry on.
        Ok(self.store.current_rollout()?.map(|r| (r, now + timeout)))
    }

    /// The notes for instances whose `port` stays closed (none while ports can open); a port
    /// newly closed is logged and recorded as a `port.closed` event.
    fn closed_port_notes(
        &mut self,
        intents: &BTreeMap<String, Intent>,
        prepared: &BTreeMap<String, Prepared>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let Some(problem) = self.ports_closed.clone() else {
            return Ok(BTreeMap::new());
        };
        let mut notes = BTreeMap::new();
        let mut reported = HashMap::new();
        let planned = prepared
            .iter()
            .filter(|(name, _)| matches!(intents.get(*name), Some(Intent::Plan { .. })));
        for (name, p) in planned {
            let Some(port) = p.config.port else {
                continue;
            };
            let note = listen::port_closed_note(port, &problem);
            if self.closed_reported.get(name) != Some(&port) {
                tracing::warn!(instance = %name, port, reason = %problem, "the instance's port is not opened: per-instance ports need the API token");
                let detail = serde_json::json!({ "port": port, "reason": note });
                self.store
                    .record_event(Some(name), ACTOR, "port.closed", Some(&detail))?;
            }
            reported.insert(name.clone(), port);
            notes.insert(name.clone(), note);
        }
        self.closed_reported = reported;
        Ok(notes)
    }

    /// Records what a pass observed of an instance, and says so when its state changed.
    fn observe(
        &mut self,
        name: &str,
        before: Option<&Before>,
        observed: &Observed,
    ) -> Result<(), StoreError> {
        if self.store.record_observed(name, observed)? {
            if let Some(before) = before {
                state_change::announce(
                    &mut self.store,
                    ACTOR,
                    name,
                    before,
                    observed.state,
                    observed.detail.as_deref(),
                )?;
            }
        }
        Ok(())
    }

    /// The observed fields that carry over when only the state changes.
    fn keep(&self, r: &InstanceRecord) -> Observed {
        Observed {
            state: r.state,
            detail: None,
            container_id: r.container_id.clone(),
            runtime_id: r.runtime_id.clone(),
            last_exit_code: r.last_exit_code,
        }
    }

    /// Records every instance as stopped after the daemon stopped their containers on exit.
    pub fn mark_stopped_at_shutdown(&mut self, names: &[String]) -> Result<(), StoreError> {
        for name in names {
            let record = self.store.instance(name)?;
            let observed = Observed {
                state: InstanceState::Stopped,
                detail: Some("stopped when the daemon shut down".into()),
                ..self.keep(&record)
            };
            let before = Before {
                state: record.state,
                detail: record.state_detail.clone(),
            };
            self.observe(name, Some(&before), &observed)?;
        }
        Ok(())
    }
}
