//! With `[engine] kind = "swarm"`: a row per node of the swarm (whether it takes tasks), and
//! a warning per node whose engine cannot set no-new-privileges on a service's containers.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::host_config::HostConfig;
use crate::infra::docker::swarm::nodes::{self, NodeView};
use crate::infra::docker::{self, DockerError};

use super::checks::NO_DOCKER;
use super::Check;

pub const SWARM_NODE: &str = "swarm-node";

/// How long the manager has to list its nodes.
const WAIT: Duration = Duration::from_secs(10);

/// What doctor learnt of the swarm's nodes.
#[derive(Debug)]
pub enum NodesFact {
    Listed(Vec<NodeView>),
    /// The engine is not a swarm manager: no service can be created through it.
    NotSwarm(String),
    /// The engine could not be asked (the docker row says why) or did not answer.
    Unknown(String),
}

/// Asks the configured engine (a swarm manager) for its nodes.
pub async fn gather(host: &HostConfig) -> NodesFact {
    let asked = tokio::time::timeout(WAIT, async {
        let client = docker::connect(&host.docker).await?;
        nodes::list(&client).await
    })
    .await;
    match asked {
        Ok(Ok(listed)) => NodesFact::Listed(listed),
        Ok(Err(e @ DockerError::NotSwarm)) => NodesFact::NotSwarm(e.to_string()),
        Ok(Err(DockerError::Connect { .. })) => NodesFact::Unknown(NO_DOCKER.to_string()),
        Ok(Err(e)) => NodesFact::Unknown(e.to_string()),
        Err(_) => NodesFact::Unknown(format!(
            "the swarm manager did not list its nodes within {} s",
            WAIT.as_secs()
        )),
    }
}

/// The rows for the swarm's nodes: each node's own, then one per node whose engine lacks
/// no-new-privileges on services.
pub fn rows(fact: &NodesFact) -> Vec<Check> {
    let listed = match fact {
        NodesFact::Listed(listed) => listed,
        NodesFact::NotSwarm(message) => {
            return vec![Check::fail(
                SWARM_NODE,
                message.clone(),
                "docker swarm init (or point docker.host in supervisor.toml at a swarm manager)",
            )]
        }
        NodesFact::Unknown(reason) => {
            let reason = if reason.starts_with("not checked") {
                reason.clone()
            } else {
                format!("not checked: {reason}")
            };
            return vec![Check::warn(
                SWARM_NODE,
                reason,
                "docker node ls on the manager, then `supervisor doctor` again",
            )];
        }
    };
    if listed.is_empty() {
        return vec![Check::fail(
            SWARM_NODE,
            "the swarm lists no nodes",
            "docker node ls on the manager",
        )];
    }
    // Nodes are named by hostname, with their id when two share one.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for n in listed {
        *seen.entry(n.hostname.as_str()).or_default() += 1;
    }
    let label = |n: &NodeView| match seen.get(n.hostname.as_str()) {
        Some(1) if !n.hostname.is_empty() => n.hostname.clone(),
        _ => format!("{} ({})", n.hostname, n.short_id()),
    };
    let mut rows: Vec<Check> = listed.iter().map(|n| node(n, &label(n))).collect();
    rows.extend(
        listed
            .iter()
            .filter(|n| nodes::api_lacks_no_new_privileges(&n.engine_version))
            .map(|n| no_new_privileges(n, &label(n))),
    );
    rows
}

/// Ok when the node takes tasks (ready and active), else a warning saying why not.
fn node(n: &NodeView, label: &str) -> Check {
    let role = if n.leader {
        "manager, the leader".to_string()
    } else {
        n.role.clone()
    };
    let engine = if n.engine_version.is_empty() {
        String::new()
    } else {
        format!(", Docker {}", n.engine_version)
    };
    let what = format!("swarm node {label} ({role}{engine})");
    if n.takes_tasks() {
        return Check::ok(SWARM_NODE, format!("{what}: ready and active"));
    }
    if n.state != "ready" {
        return Check::warn(
            SWARM_NODE,
            format!(
                "{what}: {}: no task runs there; swarm places its instances' new tasks on other nodes",
                n.state
            ),
            format!(
                "start Docker on {label} or restore its network to the manager (`docker node ls`); \
                 or `docker node rm {}` if it is gone for good",
                n.short_id()
            ),
        );
    }
    Check::warn(
        SWARM_NODE,
        format!(
            "{what}: availability {}: swarm places no new task there{}",
            n.availability,
            if n.availability == "drain" {
                " and moves its tasks away"
            } else {
                ""
            }
        ),
        format!(
            "docker node update --availability active {} (once it should take tasks again)",
            n.short_id()
        ),
    )
}

fn no_new_privileges(n: &NodeView, label: &str) -> Check {
    Check::warn(
        SWARM_NODE,
        format!(
            "{label}: Docker {} (API < 1.44) cannot set no-new-privileges on services; the container still runs without capabilities, as a non-root uid, on a read-only root (docs/scale.md)",
            n.engine_version
        ),
        format!("upgrade Docker on {label} to 25.0 or later"),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::app::doctor::Status;

    fn view(id: &str, host: &str, state: &str, availability: &str, engine: &str) -> NodeView {
        NodeView {
            id: id.into(),
            hostname: host.into(),
            role: "worker".into(),
            leader: false,
            state: state.into(),
            availability: availability.into(),
            addr: "10.0.0.2".into(),
            engine_version: engine.into(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn a_row_per_node_and_a_warning_per_old_engine() {
        let mut mgr = view("m0000000000000", "mgr", "ready", "active", "28.2.2");
        mgr.role = "manager".into();
        mgr.leader = true;
        let rows = rows(&NodesFact::Listed(vec![
            mgr,
            view("a1111111111111", "w1", "ready", "drain", "28.0.1"),
            view("b2222222222222", "w2", "down", "active", "25.0.3"),
            view("c3333333333333", "w3", "ready", "pause", "20.10.24+dfsg1"),
        ]));
        let got: Vec<(Status, &str)> = rows
            .iter()
            .map(|r| (r.status, r.message.as_str()))
            .collect();
        assert!(rows.iter().all(|r| r.name == SWARM_NODE));
        assert_eq!(
            got[0],
            (
                Status::Ok,
                "swarm node mgr (manager, the leader, Docker 28.2.2): ready and active"
            )
        );
        assert_eq!(got[1].0, Status::Warn);
        assert!(got[1].1.contains("availability drain"), "{}", got[1].1);
        assert!(
            rows[1]
                .fix
                .as_deref()
                .unwrap()
                .contains("docker node update --availability active a11111111111"),
            "{:?}",
            rows[1].fix
        );
        assert!(got[2]
            .1
            .starts_with("swarm node w2 (worker, Docker 25.0.3): down"));
        assert!(got[3].1.contains("availability pause"));
        assert_eq!(rows.len(), 5, "one old engine: {got:#?}");
        assert_eq!(
            got[4],
            (
                Status::Warn,
                "w3: Docker 20.10.24+dfsg1 (API < 1.44) cannot set no-new-privileges on services; the container still runs without capabilities, as a non-root uid, on a read-only root (docs/scale.md)"
            )
        );
    }

    #[test]
    fn nodes_sharing_a_hostname_are_told_apart_by_id() {
        let rows = rows(&NodesFact::Listed(vec![
            view("a1111111111111", "vm", "ready", "active", "28.2.2"),
            view("b2222222222222", "vm", "ready", "active", "28.2.2"),
        ]));
        assert!(rows[0].message.starts_with("swarm node vm (a11111111111) "));
        assert!(rows[1].message.starts_with("swarm node vm (b22222222222) "));
    }

    #[test]
    fn a_manager_that_is_not_one_fails_and_an_unknown_swarm_warns() {
        let r = rows(&NodesFact::NotSwarm(DockerError::NotSwarm.to_string()));
        assert_eq!(r[0].status, Status::Fail);
        assert!(r[0].message.contains("docker swarm init"));
        let r = rows(&NodesFact::Unknown(NO_DOCKER.into()));
        assert_eq!(
            (r[0].status, r[0].message.as_str()),
            (Status::Warn, NO_DOCKER)
        );
        let r = rows(&NodesFact::Unknown("boom".into()));
        assert_eq!(r[0].message, "not checked: boom");
    }
}
