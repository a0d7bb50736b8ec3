//! The scheduler: sleeps until the next task is due, claims each due occurrence in the store
//! (see `store::tasks` for why that makes it exactly once) and hands the run to the
//! instance's messaging actor as a turn. It wakes early when a task is added or changed (the
//! CLI through the API, the agent through IPC) and after every reconcile pass, which is also
//! when heartbeats are brought in line with the instances' configs.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::courier::DaemonCourier;
use super::shared::MessagingHandle;
pub use super::shared::SchedulerHandle;
use super::shared::Wake;
use crate::app::accept::{self, Courier};
use crate::app::instances::last_good::{LastGoodConfigs, Loaded};
use crate::app::tasks::schedule_of;
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;
use crate::infra::store::tasks::{Claim, ClaimOutcome, HeartbeatSpec};
use crate::infra::store::{now_ms, Store, StoreError};

/// The longest single sleep. Not a polling tick: it only guards against the wall clock
/// being changed or the machine sleeping while the scheduler waits on a monotonic timer.
const MAX_SLEEP: Duration = Duration::from_secs(300);

pub struct Scheduler {
    home: Home,
    handle: SchedulerHandle,
    messaging: MessagingHandle,
    reconcile: mpsc::UnboundedSender<Wake>,
    configs: LastGoodConfigs,
}

impl Scheduler {
    pub fn new(
        home: Home,
        handle: SchedulerHandle,
        messaging: MessagingHandle,
        reconcile: mpsc::UnboundedSender<Wake>,
        configs: LastGoodConfigs,
    ) -> Self {
        Self {
            home,
            handle,
            messaging,
            reconcile,
            configs,
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut store = match Store::open(&self.home.db_path()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler cannot open the store");
                return;
            }
        };
        loop {
            let sleep = match self.step(&mut store) {
                Ok(next) => next
                    .map(|at| Duration::from_millis((at - now_ms()).max(0) as u64))
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler step failed; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = self.handle.0.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Syncs heartbeats, claims everything due, and returns when the next task is due.
    fn step(&self, store: &mut Store) -> Result<Option<i64>, StoreError> {
        self.sync_heartbeats(store)?;
        let now = now_ms();
        let courier = DaemonCourier {
            messaging: &self.messaging,
            reconcile: &self.reconcile,
        };
        let mut to_start = false;
        for task in store.due_tasks(now)? {
            let Some(next_run_at) = task.next_run_at else {
                continue;
            };
            let schedule = match schedule_of(&task) {
                Ok(s) => s,
                Err(e) => {
                    // Cannot happen for tasks this build stored; never fire garbage.
                    tracing::error!(task = task.id, error = %e, "task has an invalid schedule; pausing it");
                    store.set_task_status(task.id, "paused", task.next_run_at, "scheduler")?;
                    continue;
                }
            };
            let Some(fire) = schedule.fire(next_run_at, now) else {
                continue;
            };
            let claim = Claim {
                task_id: task.id,
                scheduled_for: fire.scheduled_for,
                skipped: fire.skipped,
                next: fire.next,
            };
            match store.claim_run(&claim)? {
                ClaimOutcome::Claimed(run) => {
                    tracing::info!(instance = %task.instance, task = task.id, run, skipped = fire.skipped, "task run claimed");
                    // A run is a message like any other: its actor is told, and the reconciler
                    // woken only when the instance's container must be started for it.
                    courier.poke(&task.instance);
                    to_start |= store
                        .instance(&task.instance)
                        .map_or(true, |rec| accept::must_start(&rec));
                }
                // Debug only: a task due every second behind a busy instance skips every second.
                ClaimOutcome::Skipped { run, skipped } => {
                    tracing::debug!(instance = %task.instance, task = task.id, waiting_run = run, skipped, "task occurrence skipped: its previous run still waits");
                }
                ClaimOutcome::Unchanged => {}
            }
        }
        if to_start {
            courier.start_instances();
        }
        store.next_task_due()
    }

    /// Brings every live instance's heartbeat task in line with its config. An instance
    /// whose config does not load keeps its heartbeat as it is (the reconciler reports why).
    fn sync_heartbeats(&self, store: &mut Store) -> Result<(), StoreError> {
        let names: Vec<String> = store.instances()?.into_iter().map(|r| r.name).collect();
        for name in names {
            let Ok(iname) = InstanceName::parse(&name) else {
                continue;
            };
            let path = self.home.instance_paths(&iname).config;
            let Ok(config) = self.configs.load(&name, &path).map(Loaded::into_config) else {
                continue;
            };
            let hb = &config.heartbeat;
            let first_run_at = crate::domain::schedule::parse_interval(&hb.every)
                .map(|d| now_ms() + d.as_millis() as i64)
                .unwrap_or(i64::MAX);
            let spec = hb.enabled.then(|| HeartbeatSpec {
                every: &hb.every,
                prompt: &hb.prompt,
                context_mode: &hb.context_mode,
                first_run_at,
            });
            if store.sync_heartbeat(&name, spec.as_ref())? {
                tracing::info!(instance = %name, enabled = hb.enabled, every = %hb.every, "heartbeat updated from config");
            }
        }
        Ok(())
    }
}
