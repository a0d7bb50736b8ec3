//! Messaging: one actor per instance, so instances run in parallel and one slow instance
//! never delays another, while each instance handles its turns strictly one at a time.
//!
//! An actor wakes when a message is accepted for its instance or when its `out/` changes
//! (the file watcher wakes it directly). Every step is recorded in the store before the next
//! happens, so after any crash the actor rebuilds its state from the store and the files: an
//! open turn is re-delivered (same turn id, same file name), and an answer that already exists
//! is never recorded twice. That is also what lets a supervisor start a dead actor again
//! ([`supervise`]): its restarts show in the daemon's live view.
//! A turn that agent runs keep taking up without ever answering (each run stopped first) is
//! parked after [`policy::MAX_TURN_ATTEMPTS`] of them, with a failure answer, so the
//! instance moves on.
//!
//! [`policy::MAX_TURN_ATTEMPTS`]: crate::app::router::policy::MAX_TURN_ATTEMPTS

mod actor;

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};

use super::live::Live;
use super::metrics::Metrics;
pub use super::shared::{AnswerEvent, Control, MessagingHandle, SchedulerHandle};
use super::supervise::{self, supervise, Backoff};
use crate::app::instances::last_good::LastGoodConfigs;
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;
use crate::infra::ipc::watch::OutWatcher;
use crate::infra::llm;
use actor::{Actor, Shared};

impl supervise::Control for Control {
    fn is_stop(&self) -> bool {
        *self == Control::Stop
    }
}

/// Owns the actors and the `out/` watcher; the daemon keeps it in step with the instances.
pub struct Messaging {
    shared: Shared,
    handle: MessagingHandle,
}

impl Messaging {
    pub fn new(
        home: Home,
        scheduler: SchedulerHandle,
        live: Live,
        configs: LastGoodConfigs,
        metrics: Metrics,
        watcher: OutWatcher,
    ) -> Self {
        let handle = MessagingHandle {
            actors: Arc::default(),
            answers: broadcast::channel(1024).0,
        };
        let shared = Shared {
            http: llm::http_client(),
            home,
            watcher: Arc::new(Mutex::new(watcher)),
            answers: handle.answers.clone(),
            scheduler,
            live,
            configs,
            metrics,
        };
        Self { shared, handle }
    }

    pub fn handle(&self) -> MessagingHandle {
        self.handle.clone()
    }

    /// Starts actors for new instances and stops those of removed ones; every actor then
    /// looks at its directory once (a safety net for a lost file event).
    pub fn ensure(&mut self, live: &[String]) {
        let mut actors = self.handle.actors.lock().expect("actors");
        actors.retain(|name, tx| {
            let keep = live.contains(name);
            let _ = tx.send(if keep { Control::Work } else { Control::Stop });
            if !keep {
                self.shared.live.actor_stopped(name);
            }
            keep
        });
        self.shared.watcher.lock().expect("watcher").retain(live);
        for name in live {
            if actors.contains_key(name) || InstanceName::parse(name).is_err() {
                continue;
            }
            // Its out/ is watched by the actor once it has opened the volume: an image is not
            // mounted before, and there would be nothing to watch yet.
            let (tx, mailbox) = supervise::mailbox();
            actors.insert(name.clone(), tx.clone());
            tokio::spawn(supervised(name.clone(), self.shared.clone(), tx, mailbox));
        }
    }
}

/// An instance's actor, started again whenever it dies until it is told to stop.
async fn supervised(
    name: String,
    shared: Shared,
    tx: mpsc::UnboundedSender<Control>,
    mailbox: supervise::Mailbox<Control>,
) {
    let live = shared.live.clone();
    let start = || Actor::new(&name, shared.clone(), tx.clone()).run(mailbox.clone());
    let report = |f: &supervise::Failure| live.actor_failed(&name, f.restarts, &f.reason);
    supervise(
        &format!("messaging {name}"),
        mailbox.clone(),
        Backoff::ACTORS,
        start,
        report,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// An actor whose store cannot be opened is noticed and shows in the live view; once its
    /// instance is gone it is stopped and shows no more.
    #[tokio::test]
    async fn an_actor_that_cannot_open_the_store_shows_in_the_live_view() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        // A directory where the database should be: the store cannot be opened.
        std::fs::create_dir_all(home.db_path()).unwrap();
        let live = Live::default();
        let mut messaging = Messaging::new(
            home,
            SchedulerHandle::default(),
            live.clone(),
            LastGoodConfigs::default(),
            Metrics::default(),
            OutWatcher::new(),
        );
        messaging.ensure(&["alice".to_string()]);
        // A hang detector, not a speed limit.
        let failed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Some(health) = live.snapshot().actors.get("alice") {
                    return health.clone();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the failure was not noticed");
        assert_eq!(failed.restarts, 1);
        assert!(
            failed.last_failure.contains("cannot open the store"),
            "{failed:?}"
        );
        messaging.ensure(&[]);
        assert!(live.snapshot().actors.is_empty());
    }
}
