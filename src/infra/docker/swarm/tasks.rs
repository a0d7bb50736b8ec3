//! Which of a service's tasks is the instance's container now, and what state it is in: a
//! pure reading of the swarm's task and node lists, so that node loss, drains and restarts
//! are tested without a swarm.

use std::collections::HashMap;

use bollard::models::{Task, TaskState};

use crate::infra::docker::container::{parse_time, ContainerState};

/// What the daemon needs of a node to judge its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    pub hostname: String,
    /// Ready: the manager hears from it. A task on a node that is not is lost with it.
    pub ready: bool,
}

/// A service's current task, as the reconciler sees a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub task_id: String,
    /// Node id and hostname.
    pub node_id: Option<String>,
    pub node: Option<String>,
    /// The container on its node, once it has one.
    pub container_id: Option<String>,
    /// Running, or on its way to it (assigned, pulling, starting): the supervisor's start
    /// has been carried out and the agent's readiness will tell the rest.
    pub running: bool,
    /// It was running or about to on a node that is no longer ready.
    pub lost: bool,
    pub state: ContainerState,
    /// The swarm's own words for the task's state (`running`, `preparing`, `failed`, …).
    pub swarm_state: String,
    pub message: String,
}

fn on_its_way(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::NEW
            | TaskState::ALLOCATED
            | TaskState::PENDING
            | TaskState::ASSIGNED
            | TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING
            | TaskState::RUNNING
    )
}

/// Whether a task still holds (or is about to hold) a container on a node that answers,
/// whatever the swarm now wants of it: what a stop waits for.
pub fn alive_on_ready_node(t: &Task, nodes: &HashMap<String, NodeSeen>) -> bool {
    let state = t
        .status
        .as_ref()
        .and_then(|s| s.state)
        .unwrap_or(TaskState::NEW);
    let on_ready = match &t.node_id {
        Some(id) => nodes.get(id).is_some_and(|n| n.ready),
        None => false,
    };
    on_ready && on_its_way(state) && state != TaskState::NEW
}

fn date(d: &Option<String>) -> Option<String> {
    d.clone().filter(|s| parse_time(s).is_some())
}

/// The service's current task among `tasks` (which may hold other services' tasks): the
/// newest one the swarm wants running, else the newest one, whose exit is the last word.
pub fn current(
    tasks: &[Task],
    service_id: &str,
    nodes: &HashMap<String, NodeSeen>,
) -> Option<TaskView> {
    let mine = tasks
        .iter()
        .filter(|t| t.service_id.as_deref() == Some(service_id));
    let newest = |t: &&Task| {
        (
            t.created_at.as_deref().and_then(parse_time).unwrap_or(0),
            t.version.as_ref().and_then(|v| v.index).unwrap_or(0),
        )
    };
    let wanted = mine
        .clone()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .max_by_key(newest);
    let task = wanted.or_else(|| mine.max_by_key(newest))?;
    Some(view(task, nodes))
}

fn view(t: &Task, nodes: &HashMap<String, NodeSeen>) -> TaskView {
    let status = t.status.clone().unwrap_or_default();
    let state = status.state.unwrap_or(TaskState::NEW);
    let node = t.node_id.as_ref().and_then(|id| nodes.get(id));
    // Not yet given a node counts as ready: the scheduler is still choosing one.
    let node_ready = t.node_id.is_none() || node.is_some_and(|n| n.ready);
    let alive = on_its_way(state);
    let lost = alive && !node_ready;
    // Still running while the swarm replaces it (a drain): the new task takes over once it
    // exists, and until then nothing needs starting.
    let running = alive && node_ready;
    let container = status.container_status.clone().unwrap_or_default();
    let started = date(&t.created_at);
    let finished = if running {
        None
    } else if lost {
        // The node cannot report an end: the swarm's last change to the task (its desired
        // state set to shutdown when the node went down) stands for it.
        date(&t.updated_at).or_else(|| date(&status.timestamp))
    } else if alive {
        None
    } else {
        date(&status.timestamp)
    };
    TaskView {
        task_id: t.id.clone().unwrap_or_default(),
        node_id: t.node_id.clone(),
        node: node.map(|n| n.hostname.clone()),
        container_id: container.container_id.clone().filter(|c| !c.is_empty()),
        running,
        lost,
        state: ContainerState {
            running,
            exit_code: if running || lost {
                None
            } else {
                container.exit_code
            },
            oom_killed: false,
            started_at: started,
            finished_at: finished,
        },
        swarm_state: if lost {
            "lost".to_string()
        } else {
            state.to_string()
        },
        message: status.err.or(status.message).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(
        id: &str,
        node: &str,
        desired: &str,
        state: &str,
        created: &str,
        exit: Option<i64>,
    ) -> Task {
        serde_json::from_value(serde_json::json!({
            "ID": id,
            "ServiceID": "svc",
            "NodeID": node,
            "CreatedAt": created,
            "UpdatedAt": "2026-12-03T10:00:09Z",
            "DesiredState": desired,
            "Status": {
                "Timestamp": "2026-12-03T10:00:05Z",
                "State": state,
                "Message": state,
                "ContainerStatus": {"ContainerID": format!("c-{id}"), "ExitCode": exit}
            }
        }))
        .unwrap()
    }

    fn nodes(w1_ready: bool) -> HashMap<String, NodeSeen> {
        HashMap::from([
            (
                "n1".to_string(),
                NodeSeen {
                    hostname: "w1".into(),
                    ready: w1_ready,
                },
            ),
            (
                "n2".to_string(),
                NodeSeen {
                    hostname: "w2".into(),
                    ready: true,
                },
            ),
        ])
    }

    #[test]
    fn a_running_task_is_a_running_container_on_its_node() {
        let t = [task(
            "t1",
            "n1",
            "running",
            "running",
            "2026-12-03T10:00:00Z",
            None,
        )];
        let v = current(&t, "svc", &nodes(true)).unwrap();
        assert!(v.running && !v.lost);
        assert_eq!(v.node.as_deref(), Some("w1"));
        assert_eq!(v.container_id.as_deref(), Some("c-t1"));
        assert_eq!(v.state.finished_at, None);
        assert!(current(&t, "other", &nodes(true)).is_none());
    }

    #[test]
    fn a_task_on_its_way_counts_as_started() {
        let t = [task(
            "t1",
            "n1",
            "running",
            "preparing",
            "2026-12-03T10:00:00Z",
            None,
        )];
        assert!(current(&t, "svc", &nodes(true)).unwrap().running);
    }

    #[test]
    fn a_task_lost_with_its_node_is_an_exit_without_a_code() {
        // What the swarm shows when a node goes down: the task still says running, its
        // desired state is shutdown, and no replacement is made (restart condition none).
        let t = [task(
            "t1",
            "n1",
            "shutdown",
            "running",
            "2026-12-03T10:00:00Z",
            None,
        )];
        let v = current(&t, "svc", &nodes(false)).unwrap();
        assert!(!v.running && v.lost);
        assert_eq!(v.swarm_state, "lost");
        assert_eq!(v.state.exit_code, None);
        assert_eq!(v.state.started_at.as_deref(), Some("2026-12-03T10:00:00Z"));
        assert_eq!(v.state.finished_at.as_deref(), Some("2026-12-03T10:00:09Z"));
        // Still wanted, but its node is down: lost all the same.
        let t = [task(
            "t1",
            "n1",
            "running",
            "running",
            "2026-12-03T10:00:00Z",
            None,
        )];
        assert!(current(&t, "svc", &nodes(false)).unwrap().lost);
    }

    #[test]
    fn the_newest_wanted_task_wins_over_the_one_it_replaced() {
        // A drain or a forced update: the old task shuts down, the new one takes over.
        let t = [
            task(
                "old",
                "n1",
                "shutdown",
                "running",
                "2026-12-03T10:00:00Z",
                None,
            ),
            task(
                "new",
                "n2",
                "running",
                "starting",
                "2026-12-03T10:01:00Z",
                None,
            ),
        ];
        let v = current(&t, "svc", &nodes(true)).unwrap();
        assert_eq!(v.task_id, "new");
        assert_eq!(v.node.as_deref(), Some("w2"));
        assert!(v.running);
    }

    #[test]
    fn a_task_being_replaced_still_runs_until_it_stops() {
        let t = [task(
            "old",
            "n1",
            "shutdown",
            "running",
            "2026-12-03T10:00:00Z",
            None,
        )];
        let v = current(&t, "svc", &nodes(true)).unwrap();
        assert!(
            v.running && !v.lost,
            "nothing to start while a drain moves it"
        );
    }

    #[test]
    fn a_finished_task_gives_its_exit_code() {
        let t = [
            task(
                "t1",
                "n1",
                "shutdown",
                "failed",
                "2026-12-03T10:00:00Z",
                Some(3),
            ),
            task(
                "t0",
                "n1",
                "shutdown",
                "complete",
                "2026-12-03T09:00:00Z",
                Some(0),
            ),
        ];
        let v = current(&t, "svc", &nodes(true)).unwrap();
        assert_eq!(v.task_id, "t1");
        assert!(!v.running && !v.lost);
        assert_eq!(v.state.exit_code, Some(3));
        assert_eq!(v.state.finished_at.as_deref(), Some("2026-12-03T10:00:05Z"));
    }
}
