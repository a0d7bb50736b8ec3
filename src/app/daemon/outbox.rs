//! The outbox loop: hands every pending delivery (`deliveries`) to its channel's sender, in
//! order per chat, and records how it went. It looks when an answer is recorded and once a
//! second (mid-turn messages, retries that fall due). A delivery the channel took is marked
//! sent and never taken again; one that failed waits its backoff and is tried again, for as
//! long as it takes. A daemon restarted carries on with what is pending. Each instance's
//! channel sends in a task of its own, so one whose receiver is slow to answer or to fail
//! holds up nobody else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::app::channels::{self, Hub, Outbound, Outcome};
use crate::app::daemon::metrics::Metrics;
use crate::app::daemon::shared::MessagingHandle;
use crate::app::instances::last_good::LastGoodConfigs;
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;
use crate::infra::store::deliveries::Delivery;
use crate::infra::store::Store;

/// The most deliveries one channel of one instance sends per pass (one per chat).
const PER_PASS: u32 = 32;

/// How often the outbox looks without being told of an answer.
const TICK: Duration = Duration::from_secs(1);

pub async fn run(
    home: Home,
    configs: LastGoodConfigs,
    hub: Hub,
    messaging: MessagingHandle,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let db = home.db_path();
    let store = match tokio::task::spawn_blocking(move || Store::open(&db)).await {
        Ok(Ok(s)) => Arc::new(Mutex::new(s)),
        Ok(Err(e)) => {
            return tracing::error!(error = %e, "the outbox cannot open the store: answers to channels are not sent")
        }
        Err(e) => return tracing::error!(error = %e, "the outbox cannot open the store"),
    };
    let mut answers = messaging.subscribe();
    // Whose sender could not be set up, so that it is logged once, not every second.
    let mut unready: std::collections::HashMap<String, String> = Default::default();
    // The (instance, channel) pairs sending now: each sends on its own, so a receiver slow to
    // fail (its timeout) holds up only its own answers, never another's or the next pass.
    let busy: Busy = Arc::default();
    let finished = Arc::new(tokio::sync::Notify::new());
    loop {
        if *stop.borrow() {
            return;
        }
        let work = {
            let (store, home, configs, hub, busy) = (
                store.clone(),
                home.clone(),
                configs.clone(),
                hub.clone(),
                busy.clone(),
            );
            tokio::task::spawn_blocking(move || due(&store, &home, &configs, &hub, &busy)).await
        };
        match work {
            Ok(Ok((work, problems))) => {
                for (instance, problem) in problems {
                    if unready.get(&instance) != Some(&problem) {
                        tracing::warn!(instance = %instance, %problem, "a channel cannot send answers");
                        unready.insert(instance, problem);
                    }
                }
                for (instance, sender, deliveries) in work {
                    unready.remove(&instance);
                    let key = (instance.clone(), sender.name());
                    busy.lock().expect("outbox busy").insert(key.clone());
                    let (store, metrics, busy, finished) = (
                        store.clone(),
                        metrics.clone(),
                        busy.clone(),
                        finished.clone(),
                    );
                    tokio::spawn(async move {
                        send_all(&store, &metrics, &instance, sender.as_ref(), &deliveries).await;
                        busy.lock().expect("outbox busy").remove(&key);
                        // The chats' next answers may go now.
                        finished.notify_one();
                    });
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "the outbox cannot read the store"),
            Err(e) => tracing::warn!(error = %e, "an outbox pass did not finish"),
        }
        tokio::select! {
            _ = answers.recv() => {}
            _ = finished.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
    }
}

type Busy = Arc<Mutex<std::collections::HashSet<(String, &'static str)>>>;

type Work = Vec<(String, Box<dyn Outbound>, Vec<Delivery>)>;

/// What is due now, per instance and channel, with the senders to send it; and the
/// channels whose sender cannot be set up while they have deliveries waiting.
fn due(
    store: &Mutex<Store>,
    home: &Home,
    configs: &LastGoodConfigs,
    hub: &Hub,
    busy: &Busy,
) -> Result<(Work, Vec<(String, String)>), crate::infra::store::StoreError> {
    let store = store.lock().expect("outbox store");
    let mut work = Vec::new();
    let mut problems = Vec::new();
    // Only instances with something due are looked at: an idle outbox costs one query.
    let busy = busy.lock().expect("outbox busy").clone();
    for (instance, channel) in store.due_channels()? {
        if busy.iter().any(|(i, c)| i == &instance && *c == channel) {
            continue;
        }
        let Ok(name) = InstanceName::parse(&instance) else {
            continue;
        };
        let Ok(config) = configs.load(&instance, &home.instance_paths(&name).config) else {
            continue;
        };
        for sender in channels::outbound_for(&instance, &config.into_config(), hub) {
            match sender {
                Ok(sender) if sender.name() == channel => {
                    let due = store.due_deliveries(&instance, &channel, PER_PASS)?;
                    if !due.is_empty() {
                        work.push((instance.clone(), sender, due));
                    }
                }
                Ok(_) => {}
                Err(problem) => problems.push((instance.clone(), problem)),
            }
        }
    }
    Ok((work, problems))
}

/// Sends `deliveries` (one per chat) at once, and records each outcome as soon as it is
/// known: the time between the channel taking an answer and the outbox knowing it (when a
/// daemon killed then would send it again) is one SQLite write, not a whole pass.
async fn send_all(
    store: &Arc<Mutex<Store>>,
    metrics: &Metrics,
    instance: &str,
    sender: &dyn Outbound,
    deliveries: &[Delivery],
) {
    let sends = deliveries.iter().map(|d| async move {
        let outcome = sender.send(instance, d).await;
        observe(metrics, instance, sender.name(), d, &outcome);
        let store = store.clone();
        let id = d.id;
        let recorded = tokio::task::spawn_blocking(move || record(&store, id, outcome)).await;
        if let Ok(Err(e)) = recorded {
            // Sent but not recorded: sent again later. The answer's id lets the receiver tell.
            tracing::warn!(instance, error = %e, "the outbox cannot record a delivery");
        }
    });
    futures_util::future::join_all(sends).await;
}

/// Metrics and the log of one try.
fn observe(metrics: &Metrics, instance: &str, channel: &str, d: &Delivery, outcome: &Outcome) {
    match outcome {
        Outcome::Sent => {
            let after = (crate::infra::store::now_ms() - d.created_at).max(0) as f64 / 1000.0;
            metrics.delivery(instance, channel, Some(after));
            tracing::debug!(instance, channel, message = %d.message_id, "answer delivered");
        }
        Outcome::Later { .. } => {}
        Outcome::Failed { error, .. } => {
            metrics.delivery(instance, channel, None);
            // The first failure and every tenth: a receiver down for hours is not a flood.
            if d.attempts.is_multiple_of(10) {
                tracing::warn!(instance, channel, message = %d.message_id, attempts = d.attempts + 1, %error, "an answer could not be delivered; it is tried again");
            }
        }
    }
}

fn record(
    store: &Mutex<Store>,
    id: i64,
    outcome: Outcome,
) -> Result<(), crate::infra::store::StoreError> {
    let mut store = store.lock().expect("outbox store");
    match outcome {
        Outcome::Sent => store.delivery_sent(id),
        Outcome::Later { parts_sent, wait } => {
            store.delivery_progress(id, parts_sent, wait.as_millis() as i64)
        }
        Outcome::Failed {
            error,
            parts_sent,
            retry_after,
        } => store
            .delivery_failed(
                id,
                &error,
                parts_sent,
                retry_after.map(|w| w.as_millis() as i64),
            )
            .map(drop),
    }
}
