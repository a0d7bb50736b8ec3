//! The swarm's container events, made by looking: the Engine API has no events for tasks, so
//! the home's services are listed every poll interval and a change of running state is told
//! as Docker tells a container's.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::SwarmEngine;
use crate::infra::docker::container::ContainerEvent;
use crate::infra::docker::{DockerError, Engine};

/// The events of `home_id`'s services, from a look every `every`.
pub(super) fn polled<'a>(
    engine: &'a SwarmEngine,
    home_id: &'a str,
    every: Duration,
) -> BoxStream<'a, Result<ContainerEvent, DockerError>> {
    struct Seen {
        running: HashMap<String, (String, bool)>,
        pending: VecDeque<ContainerEvent>,
        first: bool,
    }
    let start = Seen {
        running: HashMap::new(),
        pending: VecDeque::new(),
        first: true,
    };
    futures_util::stream::unfold(Some(start), move |state| async move {
        let mut seen = state?;
        loop {
            if let Some(ev) = seen.pending.pop_front() {
                return Some((Ok(ev), Some(seen)));
            }
            if !std::mem::take(&mut seen.first) {
                tokio::time::sleep(every).await;
            }
            let owned = match engine.list(home_id).await {
                Ok(o) => o,
                Err(e) => return Some((Err(e), None)),
            };
            let now: HashMap<String, (String, bool)> = owned
                .into_iter()
                .map(|c| (c.id, (c.instance, c.running)))
                .collect();
            seen.pending.extend(changes(&seen.running, &now));
            seen.running = now;
        }
    })
    .boxed()
}

/// Services whose running state changed between two looks, as container events.
fn changes(
    before: &HashMap<String, (String, bool)>,
    now: &HashMap<String, (String, bool)>,
) -> Vec<ContainerEvent> {
    let mut out = Vec::new();
    for (id, (instance, running)) in now {
        let was = before.get(id).map(|(_, r)| *r);
        let action = match (was, running) {
            (Some(false) | None, true) => "start",
            (Some(true), false) => "die",
            _ => continue,
        };
        out.push(ContainerEvent {
            id: id.clone(),
            instance: instance.clone(),
            action: action.to_string(),
        });
    }
    for (id, (instance, running)) in before {
        if !now.contains_key(id) {
            out.push(ContainerEvent {
                id: id.clone(),
                instance: instance.clone(),
                action: if *running { "die" } else { "destroy" }.to_string(),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_running_state_is_told_as_a_container_event() {
        let before = HashMap::from([
            ("s1".to_string(), ("alice".to_string(), true)),
            ("s2".to_string(), ("bob".to_string(), false)),
            ("s3".to_string(), ("carol".to_string(), true)),
        ]);
        let now = HashMap::from([
            ("s1".to_string(), ("alice".to_string(), false)),
            ("s2".to_string(), ("bob".to_string(), true)),
            ("s4".to_string(), ("dan".to_string(), false)),
        ]);
        let told: Vec<(String, String)> = changes(&before, &now)
            .into_iter()
            .map(|e| (e.instance, e.action))
            .collect();
        assert_eq!(
            told,
            [
                ("alice".to_string(), "die".to_string()),
                ("bob".to_string(), "start".to_string()),
                ("carol".to_string(), "die".to_string()),
            ]
        );
        assert!(changes(&now, &now).is_empty());
    }
}
