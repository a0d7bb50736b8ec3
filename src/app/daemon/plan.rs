//! The reconcile plan: a pure function from what should run (the store) and what does run
//! (Docker) to the actions that close the gap. No I/O here; the executor applies the plan.

use std::collections::BTreeMap;

/// One live instance as the store and its config say it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    /// Should a container be running now (desired state, lifecycle and idle time considered)?
    pub run: bool,
    pub spec_hash: String,
    /// Restart backoff: no (re)start before this time (unix ms).
    pub not_before: Option<i64>,
    /// Since when it has wanted a slot (unix ms): the fair order under the running cap.
    pub waiting_since: i64,
}

/// A container this home owns, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub id: String,
    pub instance: String,
    pub spec_hash: String,
    pub running: bool,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the container and start it.
    Create { instance: String },
    /// Start the existing, unchanged container.
    Start { instance: String, id: String },
    /// Remove the drifted container, then create and start a new one.
    Recreate { instance: String, id: String },
    /// Stop it gracefully and keep it (its logs stay readable).
    Stop { instance: String, id: String },
    /// Remove a container no live instance wants (removed instance, or a duplicate).
    Remove { id: String },
}

/// For the log: `create alice`, `stop alice (container 0123456789ab)`.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Docker's short form of an id, as `docker ps` shows it.
        let short = |id: &str| id.chars().take(12).collect::<String>();
        match self {
            Action::Create { instance } => write!(f, "create {instance}"),
            Action::Start { instance, id } => {
                write!(f, "start {instance} (container {})", short(id))
            }
            Action::Recreate { instance, id } => {
                write!(f, "recreate {instance} (container {})", short(id))
            }
            Action::Stop { instance, id } => write!(f, "stop {instance} (container {})", short(id)),
            Action::Remove { id } => write!(f, "remove container {}", short(id)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Instances that want to run but wait for a slot under the cap, in queue order.
    pub queued: Vec<String>,
    /// Instances held back by restart backoff.
    pub backing_off: Vec<String>,
    /// The earliest time a backoff ends (unix ms): when the caller should plan again.
    pub next_wake: Option<i64>,
}

/// Plans the actions. `max_running` caps how many containers may run at once (None: no cap);
/// running containers are never stopped to make room, and waiting instances get slots in the
/// order they started waiting.
pub fn plan(desired: &[Desired], actual: &[Actual], now: i64, max_running: Option<usize>) -> Plan {
    let mut out = Plan::default();
    let mut by_instance: BTreeMap<&str, Vec<&Actual>> = BTreeMap::new();
    for a in actual {
        by_instance.entry(a.instance.as_str()).or_default().push(a);
    }

    let mut running = 0usize;
    // (waiting_since, name, action) for everything that would start a container.
    let mut starts: Vec<(i64, String, Action)> = Vec::new();

    for d in desired {
        let mut mine = by_instance.remove(d.name.as_str()).unwrap_or_default();
        // Keep one container: an up-to-date running one if any, else the newest.
        mine.sort_by_key(|a| {
            (
                a.spec_hash == d.spec_hash && a.running,
                a.running,
                a.created,
            )
        });
        let kept = mine.pop();
        out.actions.extend(
            mine.into_iter()
                .map(|a| Action::Remove { id: a.id.clone() }),
        );

        let backing_off = d.not_before.filter(|t| *t > now);
        match (d.run, kept) {
            (true, Some(c)) if c.spec_hash != d.spec_hash => {
                if c.running {
                    // Drift of a running container: replace it in its own slot.
                    running += 1;
                    out.actions.push(Action::Recreate {
                        instance: d.name.clone(),
                        id: c.id.clone(),
                    });
                } else if let Some(t) = backing_off {
                    out.backing_off.push(d.name.clone());
                    out.next_wake = Some(out.next_wake.map_or(t, |w| w.min(t)));
                } else {
                    let action = Action::Recreate {
                        instance: d.name.clone(),
                        id: c.id.clone(),
                    };
                    starts.push((d.waiting_since, d.name.clone(), action));
                }
            }
            (true, Some(c)) if c.running => running += 1,
            (true, kept) => {
                if let Some(t) = backing_off {
                    out.backing_off.push(d.name.clone());
                    out.next_wake = Some(out.next_wake.map_or(t, |w| w.min(t)));
                    continue;
                }
                let action = match kept {
                    Some(c) => Action::Start {
                        instance: d.name.clone(),
                        id: c.id.clone(),
                    },
                    None => Action::Create {
                        instance: d.name.clone(),
                    },
                };
                starts.push((d.waiting_since, d.name.clone(), action));
            }
            (false, Some(c)) if c.running => out.actions.push(Action::Stop {
                instance: d.name.clone(),
                id: c.id.clone(),
            }),
            (false, _) => {}
        }
    }

    // Containers of instances that no longer exist (removed, purged).
    for (_, orphans) in by_instance {
        out.actions.extend(
            orphans
                .into_iter()
                .map(|a| Action::Remove { id: a.id.clone() }),
        );
    }

    starts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for (_, name, action) in starts {
        if max_running.is_some_and(|cap| running >= cap) {
            out.queued.push(name);
        } else {
            running += 1;
            out.actions.push(action);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_words_in_the_log() {
        let id = "0123456789abcdef0123".to_string();
        let alice = || "alice".to_string();
        assert_eq!(
            Action::Create { instance: alice() }.to_string(),
            "create alice"
        );
        assert_eq!(
            Action::Stop {
                instance: alice(),
                id: id.clone()
            }
            .to_string(),
            "stop alice (container 0123456789ab)"
        );
        assert_eq!(
            Action::Remove { id }.to_string(),
            "remove container 0123456789ab"
        );
    }

    fn want(name: &str, run: bool, hash: &str) -> Desired {
        Desired {
            name: name.into(),
            run,
            spec_hash: hash.into(),
            not_before: None,
            waiting_since: 0,
        }
    }

    fn have(id: &str, instance: &str, hash: &str, running: bool) -> Actual {
        Actual {
            id: id.into(),
            instance: instance.into(),
            spec_hash: hash.into(),
            running,
            created: 0,
        }
    }

    fn actions(p: &Plan) -> Vec<Action> {
        p.actions.clone()
    }

    #[test]
    fn converged_state_needs_nothing() {
        let p = plan(
            &[want("a", true, "h1"), want("b", false, "h2")],
            &[have("c1", "a", "h1", true), have("c2", "b", "h2", false)],
            0,
            None,
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn missing_container_is_created_and_stopped_one_started() {
        let p = plan(
            &[want("a", true, "h1"), want("b", true, "h2")],
            &[have("c2", "b", "h2", false)],
            0,
            None,
        );
        assert_eq!(
            actions(&p),
            [
                Action::Create {
                    instance: "a".into()
                },
                Action::Start {
                    instance: "b".into(),
                    id: "c2".into()
                },
            ]
        );
    }

    #[test]
    fn drift_recreates_and_unwanted_running_is_stopped() {
        let p = plan(
            &[want("a", true, "new"), want("b", false, "h")],
            &[have("c1", "a", "old", true), have("c2", "b", "h", true)],
            0,
            None,
        );
        assert_eq!(
            actions(&p),
            [
                Action::Recreate {
                    instance: "a".into(),
                    id: "c1".into()
                },
                Action::Stop {
                    instance: "b".into(),
                    id: "c2".into()
                },
            ]
        );
    }

    #[test]
    fn a_stopped_drifted_container_is_left_until_wanted() {
        let p = plan(
            &[want("a", false, "new")],
            &[have("c1", "a", "old", false)],
            0,
            None,
        );
        assert!(p.actions.is_empty());
    }

    #[test]
    fn orphans_and_duplicates_are_removed() {
        let p = plan(
            &[want("a", true, "h")],
            &[
                have("old", "a", "h", false),
                have("good", "a", "h", true),
                have("gone", "removed-one", "h", true),
            ],
            0,
            None,
        );
        assert_eq!(
            actions(&p),
            [
                Action::Remove { id: "old".into() },
                Action::Remove { id: "gone".into() },
            ]
        );
    }

    #[test]
    fn backoff_defers_a_start_and_sets_the_wake_time() {
        let mut a = want("a", true, "h");
        a.not_before = Some(5_000);
        let mut b = want("b", true, "h");
        b.not_before = Some(3_000);
        let p = plan(&[a.clone(), b], &[have("c1", "a", "h", false)], 1_000, None);
        assert!(p.actions.is_empty());
        assert_eq!(p.backing_off, ["a", "b"]);
        assert_eq!(p.next_wake, Some(3_000));
        // Once the time has come, it starts.
        let p = plan(&[a], &[have("c1", "a", "h", false)], 5_000, None);
        assert_eq!(
            actions(&p),
            [Action::Start {
                instance: "a".into(),
                id: "c1".into()
            }]
        );
    }

    #[test]
    fn backoff_never_delays_a_stop_or_a_running_drift() {
        let mut a = want("a", false, "h");
        a.not_before = Some(9_999);
        let mut b = want("b", true, "new");
        b.not_before = Some(9_999);
        let p = plan(
            &[a, b],
            &[have("c1", "a", "h", true), have("c2", "b", "old", true)],
            0,
            None,
        );
        assert_eq!(
            actions(&p),
            [
                Action::Stop {
                    instance: "a".into(),
                    id: "c1".into()
                },
                Action::Recreate {
                    instance: "b".into(),
                    id: "c2".into()
                },
            ]
        );
    }

    #[test]
    fn cap_queues_the_latest_waiters_and_never_stops_running_ones() {
        let mut d: Vec<Desired> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| want(n, true, "h"))
            .collect();
        d[1].waiting_since = 10; // b waited longest after a
        d[2].waiting_since = 30;
        d[3].waiting_since = 20;
        let p = plan(&d, &[have("ca", "a", "h", true)], 0, Some(3));
        assert_eq!(
            actions(&p),
            [
                Action::Create {
                    instance: "b".into()
                },
                Action::Create {
                    instance: "d".into()
                },
            ]
        );
        assert_eq!(p.queued, ["c"]);
        // Already over the cap (the cap was lowered): nothing is stopped, nothing started.
        let running: Vec<Actual> = ["a", "b"]
            .iter()
            .map(|n| have(&format!("c{n}"), n, "h", true))
            .collect();
        let p = plan(&d, &running, 0, Some(1));
        assert!(p.actions.is_empty());
        assert_eq!(p.queued, ["d", "c"]);
    }
}
