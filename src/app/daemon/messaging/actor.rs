//! One instance's messaging actor: it handles its instance's turns strictly one at a time,
//! in rounds. A round opens the queues, handles everything in `out/` (answers, model, task and
//! web requests), and delivers the turn in flight or starts the next one. Rounds run on a
//! blocking thread, so the store's SQL never holds up the async workers; the actor keeps its
//! one store connection for its life.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use supervisor_agent::protocol::{file_name_for, Envelope, Payload, TurnMessage};
use tokio::sync::{broadcast, mpsc};

use super::{AnswerEvent, Control};
use crate::app::daemon::broker;
use crate::app::daemon::live::Live;
use crate::app::daemon::metrics::Metrics;
use crate::app::daemon::rate_window::{
    Notice, Notices, RateWindow, NOTICE_WINDOW, NOTICE_WINDOW_MS,
};
use crate::app::daemon::scheduler::SchedulerHandle;
use crate::app::daemon::supervise::{Ended, Mailbox};
use crate::app::daemon::task_requests;
use crate::app::daemon::web;
use crate::app::instances::last_good::LastGoodConfigs;
use crate::app::router::policy;
use crate::domain::instance::{InstanceConfig, InstanceName};
use crate::infra::home::Home;
use crate::infra::home::InstancePaths;
use crate::infra::ipc::{watch::OutWatcher, Drained, Incoming, InstanceIpc, IpcError};
use crate::infra::store::messages::{Extra, MessageRow};
use crate::infra::store::web_requests::WebRequestRecord;
use crate::infra::store::{Store, StoreError};
use crate::infra::volume::{self, Queue, VolumeError};

/// What every actor shares with the others and with its next incarnation.
#[derive(Clone)]
pub(super) struct Shared {
    pub http: reqwest::Client,
    pub home: Home,
    /// The actors watch their `out/` again after a remount.
    pub watcher: Arc<Mutex<OutWatcher>>,
    pub answers: broadcast::Sender<AnswerEvent>,
    pub scheduler: SchedulerHandle,
    pub live: Live,
    pub configs: LastGoodConfigs,
    pub metrics: Metrics,
}

/// What this daemon knows of the agent runs taking up the turn in flight, to count the
/// turn's attempts. An agent run begins with its `ready` envelope, and takes up every turn
/// whose file is in `in/`: a turn is only left there until it is answered (or parked).
struct Tries {
    turn: String,
    /// When this daemon knew the turn's file to be in `in/` (Unix ms).
    delivered_at: i64,
    /// Whether the current agent run is known to have taken the turn up: it started after the
    /// file was in `in/`, or it asked the host something for the turn.
    current_run_has_it: bool,
}

pub(super) struct Actor {
    http: reqwest::Client,
    /// What the instance's model requests have left behind (the per-minute rate limit).
    broker: broker::Broker,
    name: String,
    home: Home,
    paths: InstancePaths,
    /// The queues, open for the length of a round: between rounds the actor holds nothing of
    /// the volume, so it can be unmounted, resized or made an image.
    ipc: Option<InstanceIpc>,
    /// What the queues were last round (device, inode): another pair means a remount.
    identity: Option<[(u64, u64); 2]>,
    /// How many mounts the daemon had made when out/ was last watched: a remount of the same
    /// image can keep the device and inode, and a watch does not outlive its mount.
    watched_at_mount: u64,
    watcher: Arc<Mutex<OutWatcher>>,
    /// This actor's own wake-up, to come back to work it could not finish.
    poke: mpsc::UnboundedSender<Control>,
    /// The last failure logged, so a repeated one is logged once.
    last_failure: Option<String>,
    answers: broadcast::Sender<AnswerEvent>,
    in_flight: Option<String>,
    /// The agent runs that took up the turn in flight, as far as this daemon has seen them.
    tries: Option<Tries>,
    scheduler: SchedulerHandle,
    live: Live,
    configs: LastGoodConfigs,
    metrics: Metrics,
    /// What the agent can make happen at any rate is logged and recorded at a bounded one.
    notices: Notices,
    /// The agent's task requests this minute.
    task_requests: RateWindow,
    /// The agent's web requests this minute and today.
    web_rate: web::WebRate,
}

/// The notices of an instance the agent can set off as often as it likes.
const QUARANTINED: &str = "ipc.quarantined";
const WEB_RATE: &str = "web.rate";
const UNKNOWN_TURN: &str = "ipc.unknown_turn";
const READY: &str = "ready";

impl Actor {
    pub(super) fn new(name: &str, shared: Shared, poke: mpsc::UnboundedSender<Control>) -> Self {
        let iname = InstanceName::parse(name).expect("actors are started for valid names");
        Actor {
            name: name.to_string(),
            paths: shared.home.instance_paths(&iname),
            home: shared.home,
            ipc: None,
            identity: None,
            watched_at_mount: 0,
            watcher: shared.watcher,
            poke,
            last_failure: None,
            answers: shared.answers,
            in_flight: None,
            tries: None,
            http: shared.http,
            broker: broker::Broker::default(),
            scheduler: shared.scheduler,
            live: shared.live,
            configs: shared.configs,
            metrics: shared.metrics,
            notices: Notices::default(),
            task_requests: task_requests::PER_MINUTE,
            web_rate: web::WebRate::default(),
        }
    }

    /// Runs rounds until told to stop: one at once (after a start or restart nothing waits
    /// in the mailbox for what happened before), then one per wake-up, however many arrived
    /// since the last round. A store that cannot be opened ends it as a failure.
    pub(super) async fn run(self, mailbox: Mailbox<Control>) -> Ended {
        let mut rx = mailbox.lock().await;
        let db = self.home.db_path();
        let opened = tokio::task::spawn_blocking(move || Store::open(&db)).await;
        let mut store = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Ended::Failed(format!("cannot open the store: {e}")),
            Err(e) => return Ended::Failed(format!("cannot open the store: {e}")),
        };
        let mut actor = self;
        loop {
            let runtime = tokio::runtime::Handle::current();
            let round = tokio::task::spawn_blocking(move || {
                runtime.block_on(actor.round(&mut store));
                (actor, store)
            });
            (actor, store) = match round.await {
                Ok(done) => done,
                // A panic in the round is the actor's: its supervisor hears of it.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Ended::Failed(format!("a round did not finish: {e}")),
            };
            match rx.recv().await {
                None | Some(Control::Stop) => return Ended::Stopped,
                Some(_) => {}
            }
            while let Ok(c) = rx.try_recv() {
                if c == Control::Stop {
                    return Ended::Stopped;
                }
            }
        }
    }

    /// One round, on a blocking thread (the store's SQL and the file system's calls block).
    async fn round(&mut self, store: &mut Store) {
        // Opening the queues may mount the volume, under its exclusive lock: before the
        // round's shared one, which this actor must not hold then.
        match self.queues(store) {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => {
                self.failed("messaging cannot open the IPC queues", &e);
                self.come_back_in(Duration::from_secs(5));
                return;
            }
        }
        // The volume's shared lock for the round: a conversion or resize of the volume
        // (exclusive) never happens under it. Taken by another now: come back shortly.
        let share = match volume::try_share(&self.paths) {
            Ok(Some(share)) => share,
            Ok(None) => {
                self.ipc = None;
                self.come_back_in(Duration::from_millis(100));
                return;
            }
            Err(e) => {
                self.ipc = None;
                self.failed("messaging cannot lock the volume", &e);
                self.come_back_in(Duration::from_secs(5));
                return;
            }
        };
        match self.step(store).await {
            Ok(()) => self.last_failure = None,
            Err(e) => self.failed("messaging step failed", &e),
        }
        // Nothing of the volume stays open between rounds.
        self.ipc = None;
        drop(share);
    }

    /// Logs a failure once, not every round it repeats (a full disk, a volume that cannot be
    /// mounted), until a round succeeds.
    fn failed(&mut self, what: &str, e: &dyn std::fmt::Display) {
        // `remove` moves the instance's directory into archive/ before its removal from the
        // store is committed: a round caught in between finds its files gone. Nothing failed.
        if self.being_removed() {
            tracing::debug!(instance = %self.name, error = %e, "{what}: the instance is being removed");
            return;
        }
        let text = format!("{what}: {e}");
        if self.last_failure.as_deref() != Some(text.as_str()) {
            tracing::warn!(instance = %self.name, error = %e, "{what}");
            self.last_failure = Some(text);
        }
    }

    /// Whether the instance's directory has gone (it is being removed). The directory is the
    /// home's, not the agent's, so looking at it directly is safe.
    fn being_removed(&self) -> bool {
        std::fs::symlink_metadata(&self.paths.dir)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    }

    /// Pokes this actor again after `delay`.
    fn come_back_in(&self, delay: Duration) {
        let poke = self.poke.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = poke.send(Control::Work);
        });
    }

    /// Opens the instance's queues for this round: straight through its volume's directory
    /// when it is there, else through [`volume::open`] (which mounts an image and settles the
    /// layout). Anything that is not the directory the supervisor made leaves every file alone
    /// and holds the instance in `error` (the reconciler reads the problem from [`Live`]).
    fn queues(&mut self, store: &mut Store) -> Result<Option<&InstanceIpc>, StepError> {
        let uid = match store.instance(&self.name) {
            Ok(record) => record.uid,
            // Removed while its actor still ran: nothing to do.
            Err(StoreError::NoSuchInstance(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let owner = nix::unistd::geteuid().is_root().then_some((uid, uid));
        // Read before the queues are opened: a mount after this shows next round.
        let mounts_before = crate::infra::disk::mounts_made();
        let quick = volume::open_unlocked(&self.paths)
            .map_err(IpcError::from)
            .and_then(|v| InstanceIpc::open(&self.name, &self.paths, &v, owner));
        let opened = match quick {
            Ok(ipc) => Ok(ipc),
            // May mount an image: fine here, rounds run on a blocking thread.
            Err(_) => volume::open(&self.paths)
                .map_err(IpcError::from)
                .and_then(|v| InstanceIpc::open(&self.name, &self.paths, &v, owner)),
        };
        match opened {
            Ok(ipc) => {
                if self.live.set_boundary_problem(&self.name, None) {
                    tracing::info!(instance = %self.name, "the instance's IPC queues are in order again");
                }
                let identity = ipc.identity();
                let changed = self.identity != Some(identity);
                if changed && self.identity.is_some() {
                    // Remounted, resized or made an image since the last round: the turn in
                    // flight is delivered again (idempotent).
                    self.in_flight = None;
                    self.tries = None;
                }
                if changed || self.watched_at_mount != mounts_before {
                    self.watched_at_mount = mounts_before;
                    // First opened, anew, or maybe remounted: out/ is watched where it is now.
                    let out = self.paths.ipc.join(Queue::Out.name());
                    let poke = self.poke.clone();
                    let wake = Arc::new(move || poke.send(Control::OutChanged).is_ok());
                    self.watcher
                        .lock()
                        .expect("watcher")
                        .rewatch(&self.name, &out, wake);
                }
                self.identity = Some(identity);
                self.ipc = Some(ipc);
                Ok(self.ipc.as_ref())
            }
            Err(IpcError::Volume(e @ VolumeError::Unexpected { .. })) => {
                let problem = e.to_string();
                if self
                    .live
                    .set_boundary_problem(&self.name, Some(problem.clone()))
                {
                    tracing::error!(instance = %self.name, %problem, "the instance's files are not as the supervisor made them: nothing is touched");
                    let detail = serde_json::json!({ "problem": problem });
                    store.record_event(
                        Some(&self.name),
                        "daemon",
                        "ipc.unexpected",
                        Some(&detail),
                    )?;
                }
                Ok(None)
            }
            // Removed (its directory is gone, or going): nothing to do until its actor stops.
            Err(IpcError::Volume(VolumeError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Handles everything in `out/`, then makes sure the turn in flight is delivered, or
    /// starts the next one. Answers are read first, so a failing delivery never holds them up.
    async fn step(&mut self, store: &mut Store) -> Result<(), StepError> {
        // Changed between the opening and the lock (a conversion): open again next round.
        let in_place = volume::open_unlocked(&self.paths)
            .map_err(IpcError::from)
            .and_then(|v| self.ipc().still_in_place(&v))
            .unwrap_or(false);
        if !in_place {
            self.come_back_in(Duration::from_millis(10));
            return Ok(());
        }
        self.flush_notices(store)?;
        let drained = self.ipc.as_mut().expect("opened above").drain_out()?;
        if drained.more {
            self.come_back_in(Duration::from_millis(10));
        }
        self.record_quarantined(store, &drained)?;
        for item in drained.items {
            if let Incoming::Envelope { name, envelope } = item {
                self.handle(store, envelope).await?;
                self.ipc().consumed(&name)?;
            }
        }
        if self.in_flight.is_none() {
            // After a restart: the open turn (if any) is the one in flight; deliver it again
            // unless its file is still waiting in in/.
            if let Some(turn) = store.open_turns(&self.name)?.into_iter().next() {
                if self.deliver_or_fail(store, &turn)? {
                    self.take_in_flight(turn);
                }
            }
        }
        if self.in_flight.is_none() {
            let waiting = store.waiting_messages(&self.name)?;
            if let Some(ids) = policy::next_turn(&waiting) {
                let turn = crate::domain::ids::new_id();
                store.begin_turn(&turn, &ids)?;
                self.metrics.messages_in(&self.name, ids.len() as u64);
                // If this fails, the turn stays open in the store and the next step
                // delivers it (in_flight is only set once the file is in place).
                if self.deliver_or_fail(store, &turn)? {
                    self.take_in_flight(turn);
                }
            }
        }
        Ok(())
    }

    /// The queues opened by [`Actor::queues`] this round.
    fn ipc(&self) -> &InstanceIpc {
        self.ipc
            .as_ref()
            .expect("queues are opened at the start of each step")
    }

    /// One log line and one event for everything this round set aside, however much, and
    /// at most one of each every ten seconds: the rounds in between are counted into the next.
    fn record_quarantined(
        &mut self,
        store: &mut Store,
        drained: &Drained,
    ) -> Result<(), StepError> {
        let refused: Vec<(&String, &String)> = drained
            .items
            .iter()
            .filter_map(|i| match i {
                Incoming::Quarantined { name, reason, .. } => Some((name, reason)),
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        let now = crate::infra::store::now_ms();
        let Notice::Go { held_back, amount } =
            self.notices
                .note(QUARANTINED, NOTICE_WINDOW, refused.len() as u64, now)
        else {
            self.come_back_in(Duration::from_millis(NOTICE_WINDOW_MS as u64));
            return Ok(());
        };
        let (first, reason) = refused[0];
        tracing::warn!(
            instance = %self.name,
            count = amount,
            dropped_old = drained.dropped,
            file = %first,
            %reason,
            "refused IPC files set aside in the quarantine"
        );
        let files: Vec<serde_json::Value> = refused
            .iter()
            .take(5)
            .map(|(f, r)| serde_json::json!({ "file": f, "reason": r }))
            .collect();
        let detail = serde_json::json!({
            "count": amount,
            "rounds": held_back + 1,
            "dropped_old": drained.dropped,
            "files": files,
        });
        store.record_event(Some(&self.name), "daemon", QUARANTINED, Some(&detail))?;
        Ok(())
    }

    /// Records what was held back once its kind's window has passed, so that the events
    /// count everything in the end.
    fn flush_notices(&mut self, store: &mut Store) -> Result<(), StepError> {
        for (kind, held_back, amount) in self.notices.due(crate::infra::store::now_ms()) {
            let detail = match kind {
                QUARANTINED => {
                    serde_json::json!({ "count": amount, "rounds": held_back, "files": [] })
                }
                UNKNOWN_TURN => serde_json::json!({ "count": amount, "turn_id": null }),
                _ => continue,
            };
            tracing::warn!(instance = %self.name, kind, count = amount, "held-back notices");
            store.record_event(Some(&self.name), "daemon", kind, Some(&detail))?;
        }
        Ok(())
    }

    /// The turn whose file is now in `in/` is the one in flight.
    fn take_in_flight(&mut self, turn: String) {
        self.tries = Some(Tries {
            turn: turn.clone(),
            delivered_at: crate::infra::store::now_ms(),
            current_run_has_it: false,
        });
        self.in_flight = Some(turn);
    }

    /// An agent run asked the host something for `turn`: it has taken the turn up.
    fn working_on(&mut self, turn: &str) {
        if let Some(tries) = self.tries.as_mut().filter(|t| t.turn == turn) {
            tries.current_run_has_it = true;
        }
    }

    /// A new agent run began (its `ready`, written at `ready_ts`). If the run before it had
    /// taken up the turn in flight, that run stopped without answering: the turn is taken up
    /// again by the new run (its file is still in `in/`), which counts one more attempt, or,
    /// once it has had its attempts (`policy::should_park`), it is parked.
    fn agent_started(&mut self, store: &mut Store, ready_ts: i64) -> Result<(), StepError> {
        let Some(tries) = self.tries.as_mut() else {
            return Ok(());
        };
        let had_it =
            std::mem::replace(&mut tries.current_run_has_it, ready_ts > tries.delivered_at);
        if !had_it {
            return Ok(());
        }
        let turn = tries.turn.clone();
        let attempts = store.turn_attempts(&turn)?;
        if policy::should_park(attempts) {
            return self.park(store, &turn, attempts);
        }
        let attempt = store.count_attempt(&turn)?;
        tracing::warn!(instance = %self.name, turn, attempt, "the agent stopped during a turn; a new run takes it up again");
        Ok(())
    }

    /// Sets a turn aside: `attempts` agent runs took it up and none answered. Its file leaves
    /// `in/` first (were the daemon to die before the answer is recorded, the turn is still
    /// open and is delivered again), then the failure answer and a `message.parked` event are
    /// recorded, and the instance moves on to its next turn.
    fn park(&mut self, store: &mut Store, turn: &str, attempts: u32) -> Result<(), StepError> {
        let messages = store.turn_messages(turn)?;
        if let Some(first) = messages.first() {
            let name = file_name_for(&Envelope::new(turn, first.created_at, Payload::Shutdown {}));
            self.ipc().withdraw(&name)?;
        }
        let error = policy::parked_error(attempts);
        let body = policy::apology(&error);
        let id = crate::domain::ids::new_id();
        tracing::warn!(instance = %self.name, turn, attempts, "turn parked: no agent run finished it");
        let recorded = store.park_turn(&self.name, turn, &id, &body, &error, attempts)?;
        self.answered(turn, messages, recorded, &body, true);
        Ok(())
    }

    /// Writes the turn's envelope into in/ (idempotent: same id and time, same file name).
    fn deliver(&self, store: &Store, turn: &str) -> Result<(), StepError> {
        let messages = store.turn_messages(turn)?;
        let Some(first) = messages.first() else {
            return Ok(());
        };
        // A task run is marked scheduled (nobody waits for it); an isolated one starts
        // without the conversation.
        let scheduled = messages.iter().any(|m| m.channel == policy::TASK_CHANNEL);
        let isolated = messages.iter().any(|m| m.scope != "conversation");
        // The web tools are offered when the config in force has an egress policy; a config
        // that cannot be read offers none (the web request would be refused anyway).
        let web = self
            .config()
            .is_ok_and(|c| c.egress.is_some_and(|e| e.is_enabled()));
        let before: Vec<_> = if isolated {
            Vec::new()
        } else {
            store
                .chat_history(&self.name, &first.chat, 200)?
                .into_iter()
                .filter(|m| m.created_at < first.created_at)
                .collect()
        };
        let envelope = Envelope::new(
            turn,
            first.created_at,
            Payload::Turn {
                turn_id: turn.to_string(),
                messages: messages
                    .iter()
                    .map(|m| TurnMessage {
                        id: m.id.clone(),
                        sender: policy::shown_sender(m),
                        body: m.body.clone(),
                        ts: m.created_at,
                        triggered: m.triggered,
                        chat: m.chat.clone(),
                    })
                    .collect(),
                history: policy::history(&before, policy::HISTORY_BUDGET_CHARS),
                scheduled,
                web,
                web_search: web
                    && self
                        .home
                        .host_config()
                        .is_ok_and(|c| c.web_search.searxng_url.is_some()),
            },
        );
        // A group reads its instance's persona: an edit of it reaches the group at this turn.
        if let Ok(name) = InstanceName::parse(&self.name) {
            if let Err(e) = crate::app::instances::persona::refresh_group(&self.home, &name) {
                tracing::warn!(instance = %self.name, error = %e, "the persona could not be refreshed; the group keeps the copy it has");
            }
        }
        if !self.ipc().has_sent(&envelope)? {
            self.ipc().send(&envelope)?;
        }
        Ok(())
    }

    async fn handle(&mut self, store: &mut Store, envelope: Envelope) -> Result<(), StepError> {
        if let Payload::ModelRequest { turn_id, .. } | Payload::Message { turn_id, .. } =
            &envelope.payload
        {
            self.working_on(turn_id);
        }
        match envelope.payload {
            Payload::Ready { agent_version, .. } => {
                if let Notice::Go { held_back, .. } =
                    self.notices
                        .note(READY, NOTICE_WINDOW, 1, crate::infra::store::now_ms())
                {
                    tracing::info!(instance = %self.name, %agent_version, not_logged_before = held_back, "agent ready");
                }
                self.live.agent_ready(&self.name);
                self.agent_started(store, envelope.ts)?;
            }
            Payload::Reply { turn_id, body, .. } => {
                self.finish(store, &turn_id, &envelope.id, &body, None)?;
            }
            Payload::TurnFailed { turn_id, error } => {
                let body = policy::apology(&error);
                self.finish(store, &turn_id, &envelope.id, &body, Some(&error))?;
            }
            Payload::Message { turn_id, body } => {
                let limit = &policy::EXTRA_LIMIT;
                match store.record_extra(&self.name, &turn_id, &envelope.id, &body, limit) {
                    Err(StoreError::UnknownTurn(t)) => self.unknown_turn(store, &t)?,
                    // Only the turn's first is worth a warning: the rest may be a flood.
                    Ok(Extra::Dropped { reason, first }) if first => {
                        tracing::warn!(instance = %self.name, turn = %turn_id, reason = reason.as_str(), "extra message not stored (the turn's first; later ones are not logged)");
                    }
                    other => drop(other?),
                }
            }
            Payload::ModelRequest {
                request_id,
                turn_id,
                messages,
                tools,
                max_tokens,
            } => {
                let config = self.config().map_err(|e| e.to_string());
                let in_flight = self.turn_in_flight(store)?;
                let request = broker::ModelRequest {
                    request_id,
                    turn_id,
                    messages,
                    tools,
                    max_tokens,
                };
                let cx = broker::Context {
                    instance: &self.name,
                    http: &self.http,
                    metrics: &self.metrics,
                    store,
                    config,
                    in_flight: in_flight.as_deref(),
                };
                let answer = self.broker.serve(request, cx).await?;
                let id = crate::domain::ids::new_id();
                self.ipc()
                    .send(&Envelope::new(id, crate::infra::store::now_ms(), answer))?;
            }
            Payload::TaskRequest {
                request_id,
                action,
                args,
            } => {
                let now = crate::infra::store::now_ms();
                let answer = if self.task_requests.try_take(now) {
                    task_requests::handle(store, &self.name, &action, &args, now)
                } else {
                    Err(task_requests::TOO_MANY.to_string())
                };
                if answer.is_ok() && action != "list" {
                    self.scheduler.wake();
                }
                let payload = match answer {
                    Ok(result) => Payload::TaskResponse {
                        request_id,
                        ok: true,
                        result,
                        error: None,
                    },
                    Err(error) => Payload::TaskResponse {
                        request_id,
                        ok: false,
                        result: serde_json::Value::Null,
                        error: Some(error),
                    },
                };
                let id = crate::domain::ids::new_id();
                self.ipc().send(&Envelope::new(id, now, payload))?;
            }
            Payload::WebRequest {
                request_id,
                turn_id,
                action,
                target,
            } => {
                let turn = match self.turn_in_flight(store)? {
                    Some(t) if t == turn_id => Ok(()),
                    Some(_) => Err(format!(
                        "web requests are served only for the turn in flight, and turn {turn_id} is not it"
                    )),
                    None => Err(format!(
                        "web requests are served only during a turn, and no turn of this instance is in flight (the request named turn {turn_id})"
                    )),
                };
                let policy = self.config().ok().and_then(|c| c.egress);
                let now = crate::infra::store::now_ms();
                if self.web_rate.needs_day_count(now) {
                    let since = web::WebRate::day_start(now);
                    let n = store.web_requests_since(&self.name, since)?;
                    self.web_rate.set_day_count(now, n);
                }
                // Read per request, so an edit of supervisor.toml applies at once.
                let search = self
                    .home
                    .host_config()
                    .map(|c| c.web_search)
                    .unwrap_or_default();
                let (payload, outcome) = web::serve(
                    turn,
                    policy.as_ref(),
                    &search,
                    &mut self.web_rate,
                    web::Ask {
                        request_id,
                        action: &action,
                        target: &target,
                    },
                    now,
                )
                .await;
                self.metrics
                    .web_request(&self.name, outcome.result, outcome.reason);
                // Requests past the rate caps are answered every time but recorded at a
                // bounded rate: the caps are what keeps the record from growing without end.
                let record = outcome.reason != Some("rate")
                    || matches!(
                        self.notices
                            .note(WEB_RATE, web::RATE_REFUSALS_RECORDED, 1, now),
                        Notice::Go { .. }
                    );
                if record {
                    // The redacted URL only: never a credential, a query value or a user name.
                    tracing::info!(instance = %self.name, url = %outcome.url, result = outcome.result, reason = outcome.reason.unwrap_or(""), status = outcome.status.unwrap_or(0), bytes = outcome.bytes, "web request");
                    store.record_web_request(&WebRequestRecord {
                        instance: &self.name,
                        action: &action,
                        url: &outcome.url,
                        result: outcome.result,
                        reason: outcome.reason,
                        status: outcome.status,
                        bytes: outcome.bytes,
                        millis: outcome.millis,
                    })?;
                    let detail = serde_json::json!({
                        "action": action, "url": outcome.url, "result": outcome.result,
                        "reason": outcome.reason, "status": outcome.status, "bytes": outcome.bytes,
                    });
                    store.record_event(Some(&self.name), "agent", "web.request", Some(&detail))?;
                }
                let id = crate::domain::ids::new_id();
                self.ipc().send(&Envelope::new(id, now, payload))?;
            }
            // drain_out() only returns payloads an agent may send.
            other => {
                tracing::warn!(instance = %self.name, kind = other.type_name(), "unexpected envelope")
            }
        }
        Ok(())
    }

    fn finish(
        &mut self,
        store: &mut Store,
        turn_id: &str,
        envelope_id: &str,
        body: &str,
        error: Option<&str>,
    ) -> Result<(), StepError> {
        let messages = store.turn_messages(turn_id)?;
        // An answer naming a turn this instance does not have is recorded and dropped, never
        // an error: its file would stay in out/ and hold up everything after it.
        let recorded = match store.record_final(&self.name, turn_id, envelope_id, body, error) {
            Err(StoreError::UnknownTurn(t)) => return self.unknown_turn(store, &t),
            other => other?,
        };
        self.answered(turn_id, messages, recorded, body, error.is_some());
        Ok(())
    }

    /// After a turn's final answer: waiters hear of it (when it was `recorded` now), and the
    /// instance is free for its next turn.
    fn answered(
        &mut self,
        turn_id: &str,
        messages: Vec<MessageRow>,
        recorded: Option<MessageRow>,
        body: &str,
        failed: bool,
    ) {
        let first_at = messages.iter().map(|m| m.created_at).min();
        let message_ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
        if let Some(answer) = recorded {
            if let Some(first) = first_at {
                let secs = (answer.created_at - first).max(0) as f64 / 1000.0;
                self.metrics.answered(&self.name, secs);
            }
            let _ = self.answers.send(AnswerEvent {
                instance: self.name.clone(),
                turn_id: turn_id.to_string(),
                message_ids,
                body: body.to_string(),
                failed,
            });
        }
        if self.in_flight.as_deref() == Some(turn_id) {
            self.in_flight = None;
            self.tries = None;
        }
    }

    /// An answer naming a turn this instance does not have: recorded and ignored.
    fn unknown_turn(&mut self, store: &mut Store, turn: &str) -> Result<(), StepError> {
        let now = crate::infra::store::now_ms();
        let Notice::Go { amount, .. } = self.notices.note(UNKNOWN_TURN, NOTICE_WINDOW, 1, now)
        else {
            self.come_back_in(Duration::from_millis(NOTICE_WINDOW_MS as u64));
            return Ok(());
        };
        tracing::warn!(instance = %self.name, turn, count = amount, "answer for a turn this instance does not have");
        let detail = serde_json::json!({ "turn_id": turn, "count": amount });
        store.record_event(
            Some(&self.name),
            "daemon",
            "ipc.unknown_turn",
            Some(&detail),
        )?;
        Ok(())
    }

    /// Delivers a turn; one that cannot be written at all (too large for an envelope) is
    /// answered with a failure instead of blocking the instance forever.
    fn deliver_or_fail(&mut self, store: &mut Store, turn: &str) -> Result<bool, StepError> {
        match self.deliver(store, turn) {
            Ok(()) => Ok(true),
            Err(StepError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                let error = format!("the messages of this turn cannot be delivered: {e}");
                let id = crate::domain::ids::new_id();
                self.finish(store, turn, &id, &policy::apology(&error), Some(&error))?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The turn in flight: the one this actor delivered, or, before it has looked at the store
    /// (a request read from `out/` right after a restart, before the open turn is taken up
    /// again), the instance's open turn in the store.
    fn turn_in_flight(&self, store: &Store) -> Result<Option<String>, StepError> {
        match &self.in_flight {
            Some(turn) => Ok(Some(turn.clone())),
            None => Ok(store.open_turns(&self.name)?.into_iter().next()),
        }
    }

    fn config(&self) -> Result<InstanceConfig, StepError> {
        let name = InstanceName::parse(&self.name).expect("stored names are valid");
        let path = self.home.instance_paths(&name).config;
        Ok(self.configs.load(&self.name, &path)?.into_config())
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::domain::instance::config::ConfigError),
}
