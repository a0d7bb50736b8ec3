//! The outbox loop: hands every pending delivery (`deliveries`) to its channel's sender, in
//! order per chat, and records how it went. It looks when an answer is recorded and once a
//! second (mid-turn messages, retries that fall due). A delivery the channel took is marked
//! sent and never taken again; one that failed waits its backoff and is tried again, for as
//! long as it takes. A daemon restarted carries on with what is pending.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::app::channels::{self, Outbound};
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
    let http = reqwest::Client::new();
    let mut answers = messaging.subscribe();
    // Whose sender could not be set up, so that it is logged once, not every second.
    let mut unready: std::collections::HashMap<String, String> = Default::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let work = {
            let (store, home, configs, http) =
                (store.clone(), home.clone(), configs.clone(), http.clone());
            tokio::task::spawn_blocking(move || due(&store, &home, &configs, &http)).await
        };
        match work {
            Ok(Ok((work, problems))) => {
                for (instance, problem) in problems {
                    if unready.get(&instance) != Some(&problem) {
                        tracing::warn!(instance = %instance, %problem, "a channel cannot send answers");
                        unready.insert(instance, problem);
                    }
                }
                for (instance, _, _) in &work {
                    unready.remove(instance);
                }
                // Each instance's channel at once: a receiver that is slow to fail (its
                // timeout) holds up only its own answers.
                let sends = work.iter().map(|(instance, sender, deliveries)| {
                    send_all(&store, &metrics, instance, sender.as_ref(), deliveries)
                });
                futures_util::future::join_all(sends).await;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "the outbox cannot read the store"),
            Err(e) => tracing::warn!(error = %e, "an outbox pass did not finish"),
        }
        tokio::select! {
            _ = answers.recv() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
    }
}

type Work = Vec<(String, Box<dyn Outbound>, Vec<Delivery>)>;

/// What is due now, per instance and channel, with the senders to send it; and the
/// channels whose sender cannot be set up while they have deliveries waiting.
fn due(
    store: &Mutex<Store>,
    home: &Home,
    configs: &LastGoodConfigs,
    http: &reqwest::Client,
) -> Result<(Work, Vec<(String, String)>), crate::infra::store::StoreError> {
    let store = store.lock().expect("outbox store");
    let mut work = Vec::new();
    let mut problems = Vec::new();
    // Only instances with something due are looked at: an idle outbox costs one query.
    for (instance, channel) in store.due_channels()? {
        let Ok(name) = InstanceName::parse(&instance) else {
            continue;
        };
        let Ok(config) = configs.load(&instance, &home.instance_paths(&name).config) else {
            continue;
        };
        for sender in channels::outbound_for(&config.into_config(), http) {
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

/// Sends `deliveries` (one per chat) at once, and records each outcome.
async fn send_all(
    store: &Arc<Mutex<Store>>,
    metrics: &Metrics,
    instance: &str,
    sender: &dyn Outbound,
    deliveries: &[Delivery],
) {
    let sends = deliveries
        .iter()
        .map(|d| async move { (d, sender.send(instance, d).await) });
    let outcomes = futures_util::future::join_all(sends).await;
    let results: Vec<(i64, Result<(), String>)> = outcomes
        .into_iter()
        .map(|(d, r)| (d.id, r.map_err(|e| e.0)))
        .collect();
    let now = crate::infra::store::now_ms();
    for (d, (_, r)) in deliveries.iter().zip(&results) {
        let sent_after = r
            .is_ok()
            .then(|| (now - d.created_at).max(0) as f64 / 1000.0);
        metrics.delivery(instance, sender.name(), sent_after);
        match r {
            Ok(()) => {
                tracing::debug!(instance, channel = sender.name(), message = %d.message_id, "answer delivered")
            }
            // The first failure and every tenth: a receiver down for hours is not a flood.
            Err(e) if d.attempts % 10 == 0 => {
                tracing::warn!(instance, channel = sender.name(), message = %d.message_id, attempts = d.attempts + 1, error = %e, "an answer could not be delivered; it is tried again")
            }
            Err(_) => {}
        }
    }
    let store = store.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().expect("outbox store");
        for (id, r) in results {
            match r {
                Ok(()) => store.delivery_sent(id)?,
                Err(e) => drop(store.delivery_failed(id, &e)?),
            }
        }
        Ok::<_, crate::infra::store::StoreError>(())
    })
    .await;
    if let Ok(Err(e)) = recorded {
        // Sent but not recorded: sent again later. The answer's id lets the receiver tell.
        tracing::warn!(instance, error = %e, "the outbox cannot record a delivery");
    }
}
