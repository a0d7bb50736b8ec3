//! What the daemon's parts share: the messages they send each other (why the reconciler is
//! woken, what an actor is told, a turn's answer) and the cheap handles through which one part
//! reaches another. Kept apart from every part so that the API, the scheduler, the messaging
//! actors and the reconciler depend on this module and never on each other in a circle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot, Notify};

use crate::app::wire::PassReport;

/// Why the reconciler was woken.
#[derive(Debug)]
pub enum Wake {
    /// The CLI or API changed something in the store; the sender hears when a pass that
    /// started after the request has finished.
    Api(Option<oneshot::Sender<PassReport>>),
    /// A Docker event for one of our containers.
    Docker,
    /// A container of ours exited. The engine's container list can still say "running" when
    /// the event arrives, so it is worth another look shortly after.
    DockerExit,
    /// The Docker event stream ended: the engine went away.
    DockerLost,
    /// A config file changed (hot reload).
    Config,
    /// An instance's disk crossed its soft limit, one way or the other.
    Usage,
}

/// A turn's final answer, as waiters (`send --wait`) hear of it.
#[derive(Debug, Clone)]
pub struct AnswerEvent {
    pub instance: String,
    pub turn_id: String,
    /// The inbound messages the turn answered.
    pub message_ids: Vec<String>,
    pub body: String,
    pub failed: bool,
}

/// What an instance's actor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Look for work: a message was accepted, a task is due, or the daemon checks in.
    Work,
    /// The instance's `out/` changed.
    OutChanged,
    /// The instance is gone: stop, and stay stopped.
    Stop,
}

/// What the API needs to reach the actors: cheap to clone.
#[derive(Clone)]
pub struct MessagingHandle {
    pub(super) actors: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>>,
    pub(super) answers: broadcast::Sender<AnswerEvent>,
}

impl MessagingHandle {
    /// Tells an instance's actor to look for work.
    pub fn poke(&self, instance: &str) {
        if let Some(tx) = self.actors.lock().expect("actors").get(instance) {
            let _ = tx.send(Control::Work);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<AnswerEvent> {
        self.answers.subscribe()
    }
}

/// Wakes the scheduler; cheap to clone.
#[derive(Clone, Default)]
pub struct SchedulerHandle(pub(super) Arc<Notify>);

impl SchedulerHandle {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}
