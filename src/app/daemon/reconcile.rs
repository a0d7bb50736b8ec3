//! One reconcile pass: read what should run (store + configs), see what runs (Docker),
//! account for exits, plan, apply, and record what was observed.
//!
//! Errors about one instance (bad config, a failed create) are recorded on that instance and
//! the pass carries on; only losing the Docker engine ends a pass early.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::StreamExt;

use super::api::listen::{self, TokenProblem};
use super::disk_usage;
use super::live::Live;
use super::plan::{self, Action, Actual, Desired};
use super::restart::{RestartTracker, CRASH_LOOP_AFTER, CRASH_LOOP_RETRY_MS, QUICK_FAILURE_MS};
use super::rollout::{self, Next};
use super::state_change::{self, Before};
use crate::app::instances::last_good::{LastGoodConfigs, Loaded};
use crate::domain::host_config::HostConfig;
use crate::domain::instance::config::LifecycleMode;
use crate::domain::instance::{InstanceConfig, InstanceName};
use crate::infra::agent_image;
use crate::infra::container_spec::{ContainerSpec, SpecInputs, LABEL_RUNTIME};
use crate::infra::container_user::ContainerUser;
use crate::infra::disk::Enforcement;
use crate::infra::docker::container::{self, LogChunk, OwnedContainer};
use crate::infra::docker::hardening::{self, Hardening};
use crate::infra::docker::{Client, DockerError};
use crate::infra::home::Home;
use crate::infra::store::instances::{InstanceRecord, Observed};
use crate::infra::store::rollouts::Rollout;
use crate::infra::store::{now_ms, Store, StoreError};
use crate::infra::volume::{self, VolumeError};

pub const ACTOR: &str = "daemon";

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why one action on one instance failed: the engine, or the instance's own files.
#[derive(Debug, thiserror::Error)]
enum ActionError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
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
    tracker: RestartTracker,
    /// Desired state seen last pass, to notice a fresh start (which forgets past failures).
    last_desired: HashMap<String, String>,
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

/// One instance's inputs for this pass.
struct Prepared {
    record: InstanceRecord,
    config: InstanceConfig,
    spec: Option<ContainerSpec>,
    run: bool,
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
            tracker: RestartTracker::default(),
            last_desired: HashMap::new(),
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

    pub async fn pass(&mut self, docker: &Client) -> Result<PassOutcome, PassError> {
        let now = now_ms();
        let records = self.store.instances()?;
        let live: Vec<String> = records.iter().map(|r| r.name.clone()).collect();
        self.configs.retain(&live);
        // A roll-out step may end here (and a failed one put the previous runtime back), so
        // the active runtime is read after it.
        let rollout = self.advance_rollout(&records, now)?;
        let active = self.store.active_runtime()?;
        let image = agent_image::current_tag(&self.host.docker.image);
        // Without the image nothing can be (re)created: leave existing containers alone.
        let image_missing = crate::infra::docker::image::inspect(docker, &image)
            .await?
            .is_none();
        let mut problems: BTreeMap<String, String> = BTreeMap::new();
        // Invalid edits of instances that run on their last valid config.
        let mut kept: BTreeMap<String, String> = BTreeMap::new();
        let mut prepared: BTreeMap<String, Prepared> = BTreeMap::new();
        // Instances whose config cannot be read but that should stop: stopping needs no config.
        let mut stop_only: Vec<Desired> = Vec::new();
        // Instances past their soft disk limit: stopped, and in error until back under it.
        let mut over_disk: BTreeMap<String, String> = BTreeMap::new();
        let snapshot = self.live.snapshot();
        // Each instance's state before this pass, to say what changed and why.
        let before: HashMap<String, Before> = records
            .iter()
            .map(|r| {
                let b = Before {
                    state: r.state.clone(),
                    detail: r.state_detail.clone(),
                };
                (r.name.clone(), b)
            })
            .collect();

        for record in records {
            let name = record.name.clone();
            if self
                .last_desired
                .insert(name.clone(), record.desired_state.clone())
                .as_deref()
                != Some(record.desired_state.as_str())
            {
                self.tracker.reset(&name);
            }
            let Ok(iname) = InstanceName::parse(&name) else {
                continue;
            };
            let paths = self.home.instance_paths(&iname);
            let config = match self.configs.load(&name, &paths.config) {
                Ok(Loaded::Current(c)) => c,
                Ok(Loaded::Kept {
                    config,
                    error,
                    new_problem,
                }) => {
                    kept.insert(
                        name.clone(),
                        format!("config.json is invalid, running on the last valid one: {error}"),
                    );
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
                    config
                }
                Err(e) => {
                    stop_if_asked(&record, now, &mut stop_only);
                    problems.insert(name, e.to_string());
                    continue;
                }
            };
            // The messaging actor found the instance's queues not as the supervisor made them:
            // nothing of the instance is touched until that is put right.
            if let Some(problem) = snapshot.boundary.get(&name) {
                stop_if_asked(&record, now, &mut stop_only);
                problems.insert(name, problem.clone());
                continue;
            }
            let over = snapshot.disk.get(&name).and_then(|s| {
                disk_usage::over_soft_limit(s, config.limits.disk_bytes(), &config.limits.disk)
            });
            let wants = record.desired_state == "running" && over.is_none();
            if let Some(why) = over {
                over_disk.insert(name.clone(), why);
            }
            let run = wants
                && match config.lifecycle.mode {
                    LifecycleMode::Persistent => true,
                    LifecycleMode::OnDemand => {
                        let idle = config.lifecycle.idle_timeout().as_millis() as i64;
                        record.last_activity_at.is_some_and(|t| now - t < idle)
                    }
                };
            let spec = active.as_ref().map(|a| {
                let runtime_id = match &rollout {
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
            if run && spec.is_none() {
                problems.insert(
                    name,
                    "no active runtime: run `supervisor runtime build --activate`".into(),
                );
                continue;
            }
            if run && image_missing {
                problems.insert(
                    name,
                    format!("the agent image {image} is missing: run `supervisor image build`"),
                );
                continue;
            }
            prepared.insert(
                name,
                Prepared {
                    record,
                    config,
                    spec,
                    run,
                },
            );
        }

        let port_notes = self.closed_port_notes(&prepared)?;

        let mut owned = container::list_owned(docker, &self.home_id).await?;
        let seen: Vec<String> = owned
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
        // Instances we cannot plan for keep whatever container they have, unless they are
        // to stop.
        let mut stoppable: BTreeSet<String> = stop_only.iter().map(|d| d.name.clone()).collect();
        for (name, why) in over_disk {
            problems.insert(name.clone(), why);
            stoppable.insert(name);
        }
        owned.retain(|c| !problems.contains_key(&c.instance) || stoppable.contains(&c.instance));

        // A restart request stops the running container; the plan below starts it again.
        for name in self.store.restart_requests()? {
            for c in owned.iter_mut().filter(|c| c.instance == name && c.running) {
                container::stop(docker, &c.id, self.host.daemon.stop_timeout_secs()).await?;
                c.running = false;
                self.expect_exit(docker, &name, &c.id).await?;
            }
            self.tracker.reset(&name);
            self.store.clear_restart_request(&name)?;
        }

        let mut last_exit: HashMap<String, i64> = HashMap::new();
        for (name, p) in &prepared {
            if p.run {
                if let Some(code) = self.account_exits(docker, &owned, name, now).await? {
                    last_exit.insert(name.clone(), code);
                }
            }
        }

        let desired: Vec<Desired> = prepared
            .iter()
            .map(|(name, p)| Desired {
                name: name.clone(),
                run: p.run,
                spec_hash: p
                    .spec
                    .as_ref()
                    .map(|s| s.spec_hash().to_string())
                    .unwrap_or_default(),
                not_before: self.tracker.not_before(name),
                // Queued: since it was queued. Otherwise since it was asked to run.
                waiting_since: if p.record.state == "queued" {
                    p.record.state_changed_at.unwrap_or(now)
                } else {
                    p.record.last_activity_at.unwrap_or(now)
                },
            })
            .chain(stop_only)
            .collect();
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
        let plan = plan::plan(&desired, &actual, now, self.host.daemon.max_running());

        // Containers running after the actions: instance → (container id, runtime id).
        let mut running: HashMap<String, (String, Option<String>)> = owned
            .iter()
            .filter(|c| c.running)
            .map(|c| {
                (
                    c.instance.clone(),
                    (c.id.clone(), c.labels.get(LABEL_RUNTIME).cloned()),
                )
            })
            .collect();
        for action in &plan.actions {
            tracing::info!(action = %action, "reconcile");
            if let Err(mut e) = self.apply(docker, action, &prepared, &mut running).await {
                if let ActionError::Volume(VolumeError::Busy(_)) = e {
                    // Not a failure: the actor's round ends soon, and the next pass starts it.
                    tracing::info!(action = %action, "volume busy; trying again shortly");
                    self.recheck_at = Some(now + 500);
                    continue;
                }
                if let ActionError::Docker(de) = e {
                    if crate::infra::docker::ping(docker).await.is_err() {
                        return Err(de.into());
                    }
                    e = ActionError::Docker(de);
                }
                let who = match action {
                    Action::Create { instance }
                    | Action::Start { instance, .. }
                    | Action::Recreate { instance, .. }
                    | Action::Stop { instance, .. } => Some(instance.clone()),
                    Action::Remove { .. } => None,
                };
                tracing::warn!(error = %e, action = %action, "reconcile action failed");
                if let Some(name) = who {
                    problems.insert(name, e.to_string());
                }
            }
        }

        let queued: BTreeSet<&String> = plan.queued.iter().collect();
        let mut next_wake = plan.next_wake;
        // After starting anything, look again once a quick failure would have shown itself,
        // in case its exit raced this pass. Kept across passes until it has passed.
        if plan
            .actions
            .iter()
            .any(|a| !matches!(a, Action::Stop { .. } | Action::Remove { .. }))
        {
            self.recheck_at = Some(now + QUICK_FAILURE_MS);
        }
        if let Some(at) = self.recheck_at.filter(|at| *at > now) {
            next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
        }
        if let Some((_, deadline)) = &rollout {
            next_wake = Some(next_wake.map_or(*deadline, |w| w.min(*deadline)));
        }
        for (name, p) in &prepared {
            let observed = if let Some(problem) = problems.get(name) {
                Observed {
                    state: "error".into(),
                    detail: Some(problem.clone()),
                    ..self.keep(&p.record)
                }
            } else if queued.contains(name) {
                Observed {
                    state: "queued".into(),
                    detail: Some(format!(
                        "waiting for a free slot (daemon.max_running = {})",
                        self.host.daemon.max_running
                    )),
                    ..self.keep(&p.record)
                }
            } else if let Some(r) = self
                .tracker
                .get(name)
                .filter(|r| r.not_before.is_some_and(|t| t > now))
            {
                // The detail stays the same for one exit (no countdown), so the state is
                // recorded once per exit, not once per pass.
                let code = last_exit.get(name).copied().or(p.record.last_exit_code);
                let code_text = code.map_or("unknown".into(), |c| c.to_string());
                let output = self.last_output(docker, &owned, name).await;
                let (state, detail) = if r.crash_loop {
                    (
                        "crash-loop",
                        format!(
                            "exited {} times in a row within {}s of starting (last exit code {code_text}); retrying every {}m; last output: {output}",
                            r.quick_failures.max(CRASH_LOOP_AFTER),
                            QUICK_FAILURE_MS / 1000,
                            CRASH_LOOP_RETRY_MS / 60_000,
                        ),
                    )
                } else {
                    (
                        "restarting",
                        format!(
                            "exited with code {code_text}; restarting after {}s; last output: {output}",
                            r.delay_ms / 1000
                        ),
                    )
                };
                Observed {
                    state: state.into(),
                    detail: Some(detail),
                    last_exit_code: code,
                    ..self.keep(&p.record)
                }
            } else if let Some((id, runtime)) = running.get(name) {
                if p.config.lifecycle.mode == LifecycleMode::OnDemand {
                    let idle = p.config.lifecycle.idle_timeout().as_millis() as i64;
                    if let Some(t) = p.record.last_activity_at {
                        let at = t + idle;
                        next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
                    }
                }
                Observed {
                    state: "running".into(),
                    detail: None,
                    container_id: Some(id.clone()),
                    runtime_id: runtime.clone(),
                    last_exit_code: last_exit.get(name).copied().or(p.record.last_exit_code),
                }
            } else if p.record.desired_state == "running" && !p.run {
                Observed {
                    state: "idle".into(),
                    detail: Some("on-demand: starts when work arrives".into()),
                    ..self.keep(&p.record)
                }
            } else {
                Observed {
                    state: "stopped".into(),
                    detail: None,
                    ..self.keep(&p.record)
                }
            };
            let notes: Vec<&str> = [kept.get(name), port_notes.get(name)]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let observed = match observed.detail {
                None if !notes.is_empty() => Observed {
                    detail: Some(notes.join("; ")),
                    ..observed
                },
                _ => observed,
            };
            self.observe(name, before.get(name), &observed)?;
        }
        for (name, problem) in &problems {
            if !prepared.contains_key(name) {
                // Stopped on request even though its config is broken: it is stopped, and
                // the detail says what to fix before it can run again.
                let state = if stoppable.contains(name) {
                    "stopped"
                } else {
                    "error"
                };
                let observed = Observed {
                    state: state.into(),
                    detail: Some(problem.clone()),
                    ..Observed::default()
                };
                self.observe(name, before.get(name), &observed)?;
            }
        }
        Ok(PassOutcome {
            next_wake,
            converged: plan.actions.is_empty()
                && plan.backing_off.is_empty()
                && problems.is_empty()
                && rollout.is_none(),
            actions: plan.actions.len(),
            live,
            awaiting_ready: rollout.is_some(),
        })
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
                    self.tracker.reset(&instance);
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
                    self.tracker.reset(&instance);
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
        prepared: &BTreeMap<String, Prepared>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let Some(problem) = self.ports_closed.clone() else {
            return Ok(BTreeMap::new());
        };
        let mut notes = BTreeMap::new();
        let mut reported = HashMap::new();
        for (name, p) in prepared {
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
                    &observed.state,
                    observed.detail.as_deref(),
                )?;
            }
        }
        Ok(())
    }

    /// The observed fields that carry over when only the state changes.
    fn keep(&self, r: &InstanceRecord) -> Observed {
        Observed {
            state: r.state.clone(),
            detail: None,
            container_id: r.container_id.clone(),
            runtime_id: r.runtime_id.clone(),
            last_exit_code: r.last_exit_code,
        }
    }

    async fn apply(
        &mut self,
        docker: &Client,
        action: &Action,
        prepared: &BTreeMap<String, Prepared>,
        running: &mut HashMap<String, (String, Option<String>)>,
    ) -> Result<(), ActionError> {
        let stop_timeout = self.host.daemon.stop_timeout_secs();
        match action {
            Action::Create { instance } => {
                self.create_and_start(docker, instance, prepared, running)
                    .await?;
            }
            Action::Recreate { instance, id } => {
                container::stop(docker, id, stop_timeout).await?;
                container::remove(docker, id).await?;
                running.remove(instance);
                self.create_and_start(docker, instance, prepared, running)
                    .await?;
                self.store
                    .record_event(Some(instance), ACTOR, "container.recreated", None)
                    .ok();
            }
            Action::Start { instance, id } => {
                // A stopped container may have been weakened behind the daemon's back
                // (`docker update`, or one made by hand with the right labels) while its spec
                // hash still matches: never start one that fails the hardening audit.
                let spec = prepared.get(instance).and_then(|p| p.spec.as_ref());
                if let Some(spec) = spec {
                    let differences = match hardening::inspect_hardening(docker, id).await? {
                        Some(found) => crate::infra::docker::hardening_diff::compare(
                            &Hardening::expected(spec),
                            &found.hardening,
                        ),
                        None => vec!["the container is gone".to_string()],
                    };
                    if !differences.is_empty() {
                        let differences_text = differences.join("; ");
                        tracing::warn!(%instance, differences = %differences_text, "container fails the hardening audit: replacing it");
                        container::remove(docker, id).await?;
                        self.create_and_start(docker, instance, prepared, running)
                            .await?;
                        let detail = serde_json::json!({ "differences": differences });
                        self.store
                            .record_event(
                                Some(instance),
                                ACTOR,
                                "container.replaced",
                                Some(&detail),
                            )
                            .ok();
                        return Ok(());
                    }
                }
                self.prepare_volume(instance, prepared)?;
                self.live.container_starting(instance);
                container::start(docker, id).await?;
                let runtime = spec.map(|s| s.labels[LABEL_RUNTIME].clone());
                running.insert(instance.clone(), (id.clone(), runtime));
            }
            Action::Stop { instance, id } => {
                container::stop(docker, id, stop_timeout).await?;
                self.expect_exit(docker, instance, id).await?;
                running.remove(instance);
                self.tracker.reset(instance);
            }
            Action::Remove { id } => {
                container::stop(docker, id, stop_timeout).await?;
                container::remove(docker, id).await?;
            }
        }
        Ok(())
    }

    async fn create_and_start(
        &mut self,
        docker: &Client,
        instance: &str,
        prepared: &BTreeMap<String, Prepared>,
        running: &mut HashMap<String, (String, Option<String>)>,
    ) -> Result<(), ActionError> {
        let p = &prepared[instance];
        let spec = p.spec.as_ref().expect("a runnable instance has a spec");
        self.prepare_volume(instance, prepared)?;
        let id = container::create(docker, spec).await?;
        self.live.container_starting(instance);
        container::start(docker, &id).await?;
        running.insert(
            instance.to_string(),
            (id, Some(spec.labels[LABEL_RUNTIME].clone())),
        );
        Ok(())
    }

    /// Gets the instance's volume ready for its container (no container of it runs now):
    /// its disk image made, grown, mounted, its directories its own (`volume::prepare`).
    fn prepare_volume(
        &mut self,
        instance: &str,
        prepared: &BTreeMap<String, Prepared>,
    ) -> Result<(), VolumeError> {
        let p = &prepared[instance];
        let paths = self
            .home
            .instance_paths(&InstanceName::parse(instance).expect("stored names are valid"));
        let owner = self.user.owner_for(p.record.uid);
        let limit = p.config.limits.disk_bytes();
        let (_, done) =
            tokio::task::block_in_place(|| volume::prepare(&paths, &self.disk, limit, owner))?;
        if done.converted || done.resized.is_some() || done.chowned > 0 {
            let resized = done.resized.map(|r| format!("{r:?}").to_lowercase());
            tracing::info!(
                instance,
                converted = done.converted,
                resized = resized.as_deref().unwrap_or("no"),
                chowned = done.chowned,
                "volume prepared"
            );
            let detail = serde_json::json!({
                "converted_to_image": done.converted,
                "resized": resized,
                "owner_changed": done.chowned,
                "limit": p.config.limits.disk,
            });
            self.store
                .record_event(Some(instance), ACTOR, "volume.prepared", Some(&detail))
                .ok();
        }
        if let Some(pending) = done.pending {
            tracing::warn!(instance, %pending, "disk limit not applied yet");
        }
        Ok(())
    }

    /// Counts an exited container of `name` as a failure (once per exit). Returns its code.
    async fn account_exits(
        &mut self,
        docker: &Client,
        owned: &[OwnedContainer],
        name: &str,
        now: i64,
    ) -> Result<Option<i64>, PassError> {
        let Some(c) = container::newest(owned, name) else {
            return Ok(None);
        };
        if c.running {
            return Ok(None);
        }
        let Some(state) = container::state(docker, &c.id).await? else {
            return Ok(None);
        };
        let (Some(started), Some(finished)) = (
            state.started_at.as_deref().and_then(container::parse_time),
            state.finished_at.as_deref().and_then(container::parse_time),
        ) else {
            // Created but never started: not an exit.
            return Ok(None);
        };
        let key = (c.id.clone(), state.finished_at.clone().unwrap_or_default());
        if finished < self.started_at {
            // It stopped while no daemon was watching (a crash, a reboot, a shutdown that
            // stopped containers): start it again, without counting it against the instance.
            self.tracker.on_expected_exit(name, key);
            return Ok(state.exit_code);
        }
        let counted = self
            .tracker
            .on_exit(name, key, finished - started, now)
            .is_some();
        if counted {
            self.store.bump_restart_count(name)?;
            let detail = serde_json::json!({
                "exit_code": state.exit_code,
                "oom_killed": state.oom_killed,
                "ran_ms": finished - started,
            });
            self.store
                .record_event(Some(name), ACTOR, "container.exited", Some(&detail))?;
            let code = state
                .exit_code
                .map_or_else(|| "unknown".to_string(), |c| c.to_string());
            tracing::warn!(instance = name, exit_code = %code, oom_killed = state.oom_killed, "container exited unexpectedly");
        }
        Ok(state.exit_code)
    }

    /// Records that a container the daemon itself just stopped exited on purpose.
    async fn expect_exit(
        &mut self,
        docker: &Client,
        name: &str,
        id: &str,
    ) -> Result<(), DockerError> {
        if let Some(state) = container::state(docker, id).await? {
            let key = (id.to_string(), state.finished_at.unwrap_or_default());
            self.tracker.on_expected_exit(name, key);
        }
        Ok(())
    }

    /// Records every instance as stopped after the daemon stopped their containers on exit.
    pub fn mark_stopped_at_shutdown(&mut self, names: &[String]) -> Result<(), StoreError> {
        for name in names {
            let record = self.store.instance(name)?;
            let observed = Observed {
                state: "stopped".into(),
                detail: Some("stopped when the daemon shut down".into()),
                ..self.keep(&record)
            };
            let before = Before {
                state: record.state.clone(),
                detail: record.state_detail.clone(),
            };
            self.observe(name, Some(&before), &observed)?;
        }
        Ok(())
    }

    /// The last few lines a container printed, on one line, for state details.
    async fn last_output(&self, docker: &Client, owned: &[OwnedContainer], name: &str) -> String {
        let Some(c) = container::newest(owned, name) else {
            return "(none)".into();
        };
        let mut text = Vec::new();
        let mut logs = std::pin::pin!(container::logs(docker, &c.id, Some(3), false));
        while let Some(Ok(chunk)) = logs.next().await {
            let (LogChunk::Stdout(b) | LogChunk::Stderr(b)) = chunk;
            text.extend(b);
        }
        let text = String::from_utf8_lossy(&text);
        let mut lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.dedup();
        let line = lines.join(" | ");
        if line.is_empty() {
            "(none)".into()
        } else {
            line.chars().take(300).collect()
        }
    }
}

/// An instance that cannot be planned for (its config cannot be read, its files are not as
/// made) is still stopped when it is asked to be: stopping needs neither.
fn stop_if_asked(record: &InstanceRecord, now: i64, stop_only: &mut Vec<Desired>) {
    if record.desired_state != "running" {
        stop_only.push(Desired {
            name: record.name.clone(),
            run: false,
            spec_hash: String::new(),
            not_before: None,
            waiting_since: now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times() {
        assert_eq!(container::parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            container::parse_time("2026-11-22T05:00:00.123456789Z"),
            Some(1_795_323_600_123)
        );
        assert_eq!(container::parse_time("garbage"), None);
    }
}
