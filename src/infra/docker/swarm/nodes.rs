//! The swarm's nodes as the operator sees them: what `supervisor nodes` lists and doctor
//! judges, and which of this home's instances run on each.

use std::collections::BTreeMap;

use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState};
use bollard::query_parameters::ListNodesOptions;
use bollard::Docker;
use serde::Serialize;

use crate::infra::docker::DockerError;

/// One node of the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// The manager that leads the swarm's Raft.
    pub leader: bool,
    /// `ready`, `down`, `unknown` or `disconnected`.
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// The address the node talks to the swarm from (empty when unknown).
    pub addr: String,
    /// Its Docker engine's version (empty when unknown).
    pub engine_version: String,
    /// Its node labels (`docker node update --label-add`): what placement constraints match.
    pub labels: BTreeMap<String, String>,
}

impl NodeView {
    /// The node as the Engine API describes it.
    pub fn from_node(n: &Node) -> Self {
        let spec = n.spec.as_ref();
        let description = n.description.as_ref();
        let status = n.status.as_ref();
        let role = match spec.and_then(|s| s.role) {
            Some(NodeSpecRoleEnum::MANAGER) => "manager",
            Some(NodeSpecRoleEnum::WORKER) => "worker",
            _ => "unknown",
        };
        let availability = match spec.and_then(|s| s.availability) {
            Some(NodeSpecAvailabilityEnum::ACTIVE) => "active",
            Some(NodeSpecAvailabilityEnum::PAUSE) => "pause",
            Some(NodeSpecAvailabilityEnum::DRAIN) => "drain",
            _ => "unknown",
        };
        let state = match status.and_then(|s| s.state) {
            Some(NodeState::READY) => "ready",
            Some(NodeState::DOWN) => "down",
            Some(NodeState::DISCONNECTED) => "disconnected",
            Some(NodeState::UNKNOWN) | None => "unknown",
        };
        // A manager's own status address may be 0.0.0.0; its manager address is the one
        // the swarm reaches it at.
        let status_addr = status
            .and_then(|s| s.addr.clone())
            .filter(|a| !a.is_empty() && a != "0.0.0.0");
        let manager_addr = n
            .manager_status
            .as_ref()
            .and_then(|m| m.addr.as_deref())
            .map(|a| a.rsplit_once(':').map_or(a, |(host, _)| host).to_string());
        Self {
            id: n.id.clone().unwrap_or_default(),
            hostname: description
                .and_then(|d| d.hostname.clone())
                .unwrap_or_default(),
            role: role.to_string(),
            leader: n
                .manager_status
                .as_ref()
                .and_then(|m| m.leader)
                .unwrap_or(false),
            state: state.to_string(),
            availability: availability.to_string(),
            addr: status_addr.or(manager_addr).unwrap_or_default(),
            engine_version: description
                .and_then(|d| d.engine.as_ref())
                .and_then(|e| e.engine_version.clone())
                .unwrap_or_default(),
            labels: spec
                .and_then(|s| s.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }

    /// Whether swarm places new tasks on it: ready and active.
    pub fn takes_tasks(&self) -> bool {
        self.state == "ready" && self.availability == "active"
    }

    /// The first 12 characters of its id, as `docker node ls` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// Maps an error of a swarm-only endpoint: an engine that is not a swarm manager (or a
/// worker's engine) answers 503.
fn swarm_error(
    e: bollard::errors::Error,
    other: fn(bollard::errors::Error) -> DockerError,
) -> DockerError {
    match &e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } if *status_code == 503 || message.contains("not a swarm manager") => {
            DockerError::NotSwarm
        }
        _ => other(e),
    }
}

/// Every node of the swarm `client`'s engine manages: managers first, then by hostname.
pub async fn list(client: &Docker) -> Result<Vec<NodeView>, DockerError> {
    let nodes = client
        .list_nodes(None::<ListNodesOptions>)
        .await
        .map_err(|e| swarm_error(e, DockerError::Nodes))?;
    let mut views: Vec<NodeView> = nodes.iter().map(NodeView::from_node).collect();
    sort(&mut views);
    Ok(views)
}

fn sort(views: &mut [NodeView]) {
    views.sort_by(|a, b| {
        (a.role != "manager", &a.hostname, &a.id).cmp(&(b.role != "manager", &b.hostname, &b.id))
    });
}

/// (node, instance) pairs → node → sorted, distinct instances.
pub(super) fn group(
    pairs: impl Iterator<Item = (String, String)>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (node, instance) in pairs {
        out.entry(node).or_default().push(instance);
    }
    for names in out.values_mut() {
        names.sort();
        names.dedup();
    }
    out
}

/// Whether a node's engine (its version as the node reports it: `20.10.24+dfsg1`, `25.0.3`,
/// `28.2.2`) predates Docker 25.0 (API 1.44), the first whose service API sets
/// no-new-privileges. A version that cannot be read counts as not lacking it: nothing is
/// known against it.
pub fn api_lacks_no_new_privileges(engine_version: &str) -> bool {
    parse_major_minor(engine_version).is_some_and(|v| v < (25, 0))
}

/// The leading `major.minor` of a version like `v20.10.24+dfsg1` or `25.0.3-ce` ("27" is
/// 27.0).
fn parse_major_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let (major, rest) = leading_number(v)?;
    let minor = match rest.strip_prefix('.') {
        Some(after) => leading_number(after)?.0,
        None => 0,
    };
    Some((major, minor))
}

/// The number `s` starts with, and what follows it.
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three nodes as a Docker 20.10 manager lists them (plugins and TLS left out).
    const NODES: &str = r#"[
      {"ID": "sum45w5zgmlxhz79ietmfs923", "Version": {"Index": 9},
       "CreatedAt": "2026-12-03T13:47:12.357141009Z", "UpdatedAt": "2026-12-03T13:47:12.87163165Z",
       "Spec": {"Labels": {}, "Role": "manager", "Availability": "active"},
       "Description": {"Hostname": "mgr", "Platform": {"Architecture": "x86_64", "OS": "linux"},
                       "Engine": {"EngineVersion": "20.10.24+dfsg1"}},
       "Status": {"State": "ready", "Addr": "0.0.0.0"},
       "ManagerStatus": {"Leader": true, "Reachability": "reachable", "Addr": "10.231.0.1:2377"}},
      {"ID": "v62myle03xg5kauusj6pdxwm7", "Version": {"Index": 48},
       "Spec": {"Labels": {"zone": "eu", "disk": "ssd"}, "Role": "worker", "Availability": "drain"},
       "Description": {"Hostname": "w2", "Engine": {"EngineVersion": "28.2.2"}},
       "Status": {"State": "down", "Message": "heartbeat failure", "Addr": "10.231.0.3"}},
      {"ID": "y5lzchlhc1xonmobywy0qs5aa",
       "Spec": {"Role": "worker", "Availability": "active"},
       "Description": {"Hostname": "w1"},
       "Status": {"State": "ready", "Addr": "10.231.0.2"}}
    ]"#;

    fn views() -> Vec<NodeView> {
        let nodes: Vec<Node> = serde_json::from_str(NODES).unwrap();
        let mut v: Vec<NodeView> = nodes.iter().map(NodeView::from_node).collect();
        sort(&mut v);
        v
    }

    #[test]
    fn a_node_document_maps_to_its_view() {
        let v = views();
        let names: Vec<&str> = v.iter().map(|n| n.hostname.as_str()).collect();
        assert_eq!(
            names,
            ["mgr", "w1", "w2"],
            "managers first, then by hostname"
        );
        assert_eq!(
            v[0],
            NodeView {
                id: "sum45w5zgmlxhz79ietmfs923".into(),
                hostname: "mgr".into(),
                role: "manager".into(),
                leader: true,
                state: "ready".into(),
                availability: "active".into(),
                addr: "10.231.0.1".into(),
                engine_version: "20.10.24+dfsg1".into(),
                labels: BTreeMap::new(),
            }
        );
        assert_eq!(v[0].short_id(), "sum45w5zgmlx");
        assert!(v[0].takes_tasks());
        let w2 = &v[2];
        assert_eq!(
            (w2.role.as_str(), w2.leader, w2.state.as_str()),
            ("worker", false, "down")
        );
        assert_eq!(w2.availability, "drain");
        assert_eq!(w2.addr, "10.231.0.3");
        assert_eq!(w2.labels["zone"], "eu");
        assert!(!w2.takes_tasks());
        assert_eq!(v[1].engine_version, "", "not reported");
        assert!(v[1].labels.is_empty());
    }

    #[test]
    fn engines_before_25_lack_no_new_privileges_on_services() {
        for old in [
            "20.10.24+dfsg1",
            "20.10.7",
            "19.03.15",
            "24.0.7",
            "v23.0.1",
            "17.06.2-ce",
        ] {
            assert!(api_lacks_no_new_privileges(old), "{old}");
        }
        for new in ["25.0.3", "25.0.0-beta.1", "28.2.2", "26.1", "27", "100.0.0"] {
            assert!(!api_lacks_no_new_privileges(new), "{new}");
        }
        for unknown in ["", "dev", "master-dockerproject-2024", "x.y"] {
            assert!(!api_lacks_no_new_privileges(unknown), "{unknown:?}");
        }
        assert_eq!(parse_major_minor("20.10.24+dfsg1"), Some((20, 10)));
        assert_eq!(parse_major_minor("27"), Some((27, 0)));
    }

    #[test]
    fn instances_are_grouped_by_node_sorted_once_each() {
        let pairs = [
            ("n2", "bob"),
            ("n1", "carol"),
            ("n1", "alice"),
            ("n1", "alice"),
        ];
        let g = group(pairs.iter().map(|(n, i)| (n.to_string(), i.to_string())));
        assert_eq!(g["n1"], ["alice", "carol"]);
        assert_eq!(g["n2"], ["bob"]);
    }

    #[test]
    fn a_non_manager_answer_is_not_swarm() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 503,
            message: "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
        };
        assert!(matches!(
            swarm_error(e, DockerError::Nodes),
            DockerError::NotSwarm
        ));
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        };
        let e = swarm_error(e, DockerError::Nodes);
        assert!(matches!(e, DockerError::Nodes(_)));
        assert!(e.to_string().contains("boom"), "{e}");
    }
}
