//! The security-relevant settings of an agent container in one plain shape, read either from
//! what [`create_body`] asks Docker for (the policy) or from what `inspect` says a container
//! has now. The live side matters because `docker update` or a container made by hand can
//! differ from the policy while carrying the right labels. Comparing the two is the caller's
//! business (`doctor`); this file only reads Docker's documents.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerInspectResponse, HostConfig, ServiceSpec};
use bollard::Docker;

use super::container::create_body;
use super::{is_not_found, DockerError};
use crate::infra::container_spec::ContainerSpec;

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountView {
    pub target: String,
    /// `bind`, `volume`, `tmpfs`, …
    pub kind: String,
    /// The host path of a bind mount (a volume's storage path for volumes).
    pub source: String,
    pub read_only: bool,
}

/// The settings that confine a container. Unset values are read as Docker reads them: no
/// limit is 0, no user is "" (the image's), no flag is false.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hardening {
    pub user: String,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub network_mode: String,
    pub network_disabled: bool,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    /// 0 when unlimited (Docker says so with 0, -1 or nothing).
    pub pids_limit: i64,
    pub tmpfs: BTreeMap<String, String>,
    /// Sorted by target.
    pub mounts: Vec<MountView>,
    /// `host path:container path` of every device passed through.
    pub devices: Vec<String>,
    /// Namespaces shared with the host or another container, e.g. `PidMode=host`.
    pub shared_namespaces: Vec<String>,
    pub volumes_from: Vec<String>,
}

/// A container as `inspect` shows it, reduced to what an audit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
    pub hardening: Hardening,
    /// Read from a swarm service's spec, not from a live container (its node's engine is not
    /// reachable from here).
    pub from_service_spec: bool,
}

impl Hardening {
    /// What the supervisor creates for `spec`: read through the same [`create_body`] the
    /// daemon sends, so the policy is never written down twice.
    pub fn expected(spec: &ContainerSpec) -> Self {
        let body = create_body(spec, None, None);
        let host = body.host_config.unwrap_or_default();
        let mounts = host
            .mounts
            .iter()
            .flatten()
            .map(|m| MountView {
                target: m.target.clone().unwrap_or_default(),
                kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
                source: m.source.clone().unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            })
            .collect();
        Self::from_host(
            &host,
            body.user.unwrap_or_default(),
            body.network_disabled.unwrap_or(false),
            mounts,
        )
    }

    /// What a container has now. Mounts come from the top-level list, the engine's record
    /// of what is mounted, which covers `Binds`, `Mounts` and the image's volumes alike.
    pub fn live(inspect: &ContainerInspectResponse) -> Self {
        let host = inspect.host_config.clone().unwrap_or_default();
        let config = inspect.config.clone().unwrap_or_default();
        let mounts = inspect
            .mounts
            .iter()
            .flatten()
            .map(|m| MountView {
                target: m.destination.clone().unwrap_or_default(),
                kind: m.typ.clone().unwrap_or_default(),
                source: m.source.clone().unwrap_or_default(),
                read_only: !m.rw.unwrap_or(true),
            })
            .collect();
        Self::from_host(
            &host,
            config.user.unwrap_or_default(),
            config.network_disabled.unwrap_or(false),
            mounts,
        )
    }

    fn from_host(
        host: &HostConfig,
        user: String,
        network_disabled: bool,
        mut mounts: Vec<MountView>,
    ) -> Self {
        mounts.sort();
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        // Docker's defaults for ipc ("private", "shareable") and the others ("") are fine;
        // only sharing with the host or another container weakens isolation.
        let shared_namespaces = [
            ("PidMode", &host.pid_mode),
            ("IpcMode", &host.ipc_mode),
            ("UTSMode", &host.uts_mode),
            ("UsernsMode", &host.userns_mode),
        ]
        .into_iter()
        .filter_map(|(key, mode)| {
            let mode = mode.as_deref().unwrap_or("");
            (mode == "host" || mode.starts_with("container:")).then(|| format!("{key}={mode}"))
        })
        .collect();
        Self {
            user,
            readonly_rootfs: host.readonly_rootfs.unwrap_or(false),
            privileged: host.privileged.unwrap_or(false),
            cap_add: list(&host.cap_add),
            cap_drop: list(&host.cap_drop),
            security_opt: list(&host.security_opt),
            network_mode: host.network_mode.clone().unwrap_or_default(),
            network_disabled,
            memory: host.memory.unwrap_or(0),
            memory_swap: host.memory_swap.unwrap_or(0),
            nano_cpus: host.nano_cpus.unwrap_or(0),
            pids_limit: host.pids_limit.unwrap_or(0).max(0),
            tmpfs: host.tmpfs.clone().unwrap_or_default().into_iter().collect(),
            mounts,
            devices: host
                .devices
                .iter()
                .flatten()
                .map(|d| {
                    format!(
                        "{}:{}",
                        d.path_on_host.as_deref().unwrap_or(""),
                        d.path_in_container.as_deref().unwrap_or("")
                    )
                })
                .collect(),
            shared_namespaces,
            volumes_from: list(&host.volumes_from),
        }
    }
}

/// Inspects a container for an audit; `None` when it no longer exists.
pub async fn inspect_hardening(
    docker: &Docker,
    id: &str,
) -> Result<Option<Inspected>, DockerError> {
    inspect_with(docker, id, Hardening::live).await
}

/// Inspects a swarm task's container on its node for an audit (see [`Hardening::live_task`]).
pub async fn inspect_task_hardening(
    docker: &Docker,
    id: &str,
) -> Result<Option<Inspected>, DockerError> {
    inspect_with(docker, id, Hardening::live_task).await
}

async fn inspect_with(
    docker: &Docker,
    id: &str,
    read: fn(&ContainerInspectResponse) -> Hardening,
) -> Result<Option<Inspected>, DockerError> {
    match docker.inspect_container(id, None).await {
        Ok(c) => Ok(Some(Inspected {
            id: c.id.clone().unwrap_or_else(|| id.to_string()),
            name: c
                .name
                .clone()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
            labels: c
                .config
                .as_ref()
                .and_then(|cfg| cfg.labels.clone())
                .unwrap_or_default(),
            hardening: read(&c),
            from_service_spec: false,
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(DockerError::InspectContainer {
            id: id.to_string(),
            source,
        }),
    }
}

/// How a tmpfs mount's size and mode read in an audit, from either side.
fn tmpfs_text(size: Option<i64>, mode: Option<i64>) -> String {
    format!("size={},mode={:o}", size.unwrap_or(0), mode.unwrap_or(0))
}

impl Hardening {
    /// What a swarm service of this spec hands every node: the service API's names for the
    /// same settings, read into the shape a task's container is audited in
    /// ([`Hardening::live_task`]). The network is `swarm:<its networks>`; a memory swap the
    /// service does not set reads 0.
    pub fn from_service(spec: &ServiceSpec) -> Self {
        let task = spec.task_template.clone().unwrap_or_default();
        let c = task.container_spec.unwrap_or_default();
        let limits = task
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let memory = limits.memory_bytes.unwrap_or(0);
        let swap = task.resources.as_ref().and_then(|r| r.swap_bytes);
        let mut tmpfs = BTreeMap::new();
        let mut mounts = Vec::new();
        for m in c.mounts.iter().flatten() {
            let target = m.target.clone().unwrap_or_default();
            if m.typ == Some(bollard::models::MountType::TMPFS) {
                let o = m.tmpfs_options.clone().unwrap_or_default();
                tmpfs.insert(target, tmpfs_text(o.size_bytes, o.mode));
                continue;
            }
            mounts.push(MountView {
                target,
                kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
                source: m.source.clone().unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            });
        }
        mounts.sort();
        let mut networks: Vec<String> = task
            .networks
            .iter()
            .chain(spec.networks.iter())
            .flatten()
            .filter_map(|n| n.target.clone())
            .collect();
        networks.sort();
        let no_new_privileges = c
            .privileges
            .as_ref()
            .and_then(|p| p.no_new_privileges)
            .unwrap_or(false);
        Self {
            user: c.user.unwrap_or_default(),
            readonly_rootfs: c.read_only.unwrap_or(false),
            privileged: false,
            cap_add: c.capability_add.unwrap_or_default(),
            cap_drop: c.capability_drop.unwrap_or_default(),
            security_opt: if no_new_privileges {
                vec!["no-new-privileges".to_string()]
            } else {
                Vec::new()
            },
            network_mode: format!("swarm:{}", networks.join(",")),
            network_disabled: false,
            memory,
            memory_swap: swap.map_or(0, |s| s + memory),
            nano_cpus: limits.nano_cpus.unwrap_or(0),
            pids_limit: limits.pids.unwrap_or(0).max(0),
            tmpfs,
            mounts,
            devices: Vec::new(),
            shared_namespaces: Vec::new(),
            volumes_from: Vec::new(),
        }
    }

    /// A swarm task's container as its node's engine shows it, in the shape of
    /// [`Hardening::from_service`]: volumes by name (their paths are the node's own), tmpfs
    /// mounts by size and mode, the network as the networks it is attached to, and the swap
    /// Docker adds when none is set (twice the memory) read as unset.
    pub fn live_task(inspect: &ContainerInspectResponse) -> Self {
        let mut h = Self::live(inspect);
        let host = inspect.host_config.clone().unwrap_or_default();
        h.tmpfs = host
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ == Some(bollard::models::MountType::TMPFS))
            .map(|m| {
                let o = m.tmpfs_options.clone().unwrap_or_default();
                (
                    m.target.clone().unwrap_or_default(),
                    tmpfs_text(o.size_bytes, o.mode),
                )
            })
            .chain(h.tmpfs.clone())
            .collect();
        let names: HashMap<String, String> = inspect
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| Some((m.destination.clone()?, m.name.clone()?)))
            .collect();
        h.mounts.retain(|m| m.kind != "tmpfs");
        for m in &mut h.mounts {
            if m.kind == "volume" {
                if let Some(name) = names.get(&m.target) {
                    m.source = name.clone();
                }
            }
        }
        let mut networks: Vec<String> = inspect
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        networks.sort();
        h.network_mode = format!("swarm:{}", networks.join(","));
        if h.memory_swap == 2 * h.memory {
            h.memory_swap = 0;
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::container_spec::{throwaway, MountSpec};

    fn spec() -> ContainerSpec {
        let mut s = throwaway(
            "supervisor-agent:abc",
            vec![MountSpec {
                source: "/h/runtime/r1".into(),
                target: "/opt/runtime".into(),
                read_only: true,
            }],
            Default::default(),
        );
        s.user = "1000:1000".into();
        s
    }

    #[test]
    fn the_expected_side_is_read_from_the_create_body() {
        let h = Hardening::expected(&spec());
        assert_eq!(h.user, "1000:1000");
        assert!(h.readonly_rootfs && !h.privileged && h.network_disabled);
        assert_eq!(h.cap_drop, ["ALL"]);
        assert!(h.cap_add.is_empty());
        assert_eq!(h.security_opt, ["no-new-privileges"]);
        assert_eq!(h.network_mode, "none");
        assert_eq!((h.memory, h.memory_swap), (128 << 20, 128 << 20));
        assert_eq!((h.nano_cpus, h.pids_limit), (1_000_000_000, 64));
        assert!(h.tmpfs["/tmp"].contains(&format!("size={}", 16 << 20)));
        assert_eq!(
            h.mounts,
            [MountView {
                target: "/opt/runtime".into(),
                kind: "bind".into(),
                source: "/h/runtime/r1".into(),
                read_only: true,
            }]
        );
        assert!(h.devices.is_empty() && h.shared_namespaces.is_empty());
    }

    /// A task container as a swarm node's engine shows it (read off a real one) matches
    /// the service it was made from, once both are in the same shape.
    #[test]
    fn a_swarm_task_container_reads_like_its_service() {
        let service: ServiceSpec = serde_json::from_value(serde_json::json!({
            "Name": "sv-1-alice",
            "TaskTemplate": {
                "ContainerSpec": {
                    "User": "1234:1234", "ReadOnly": true, "Init": true,
                    "CapabilityDrop": ["ALL"],
                    "Mounts": [
                        {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 1000000, "Mode": 1023}},
                        {"Type": "volume", "Source": "sv-1-alice-ws", "Target": "/ws", "ReadOnly": true}
                    ]
                },
                "Resources": {"Limits": {"NanoCPUs": 500000000, "MemoryBytes": 67108864, "Pids": 64}},
                "Networks": [{"Target": "sv-1-alice"}]
            }
        }))
        .unwrap();
        let doc = serde_json::json!({
            "Id": "c1", "Name": "/sv-1-alice.1.x",
            "Config": {"User": "1234:1234"},
            "HostConfig": {
                "NetworkMode": "default", "ReadonlyRootfs": true, "CapDrop": ["ALL"],
                "Memory": 67108864, "MemorySwap": 134217728, "NanoCpus": 500000000,
                "PidsLimit": 64, "Init": true,
                "Mounts": [
                    {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 1000000, "Mode": 1023}},
                    {"Type": "volume", "Source": "sv-1-alice-ws", "Target": "/ws", "ReadOnly": true}
                ]
            },
            "Mounts": [
                {"Type": "tmpfs", "Source": "", "Destination": "/tmp", "RW": true},
                {"Type": "volume", "Name": "sv-1-alice-ws", "Source": "/var/lib/docker/volumes/sv-1-alice-ws/_data", "Destination": "/ws", "RW": false}
            ],
            "NetworkSettings": {"Networks": {"sv-1-alice": {}}}
        });
        let inspect: ContainerInspectResponse = serde_json::from_value(doc).unwrap();
        let live = Hardening::live_task(&inspect);
        let want = Hardening::from_service(&service);
        assert_eq!(
            crate::infra::docker::hardening_diff::compare(&want, &live),
            Vec::<String>::new()
        );
        assert_eq!(live.network_mode, "swarm:sv-1-alice");
        assert_eq!(live.memory_swap, 0, "Docker's default swap reads as unset");
        // A second network attached, or a writable mount, is told.
        let mut weakened = live.clone();
        weakened.network_mode = "swarm:bridge,sv-1-alice".into();
        weakened.mounts[0].read_only = false;
        assert_eq!(
            crate::infra::docker::hardening_diff::compare(&want, &weakened).len(),
            2
        );
    }

    #[test]
    fn the_live_side_is_read_from_an_inspect_document() {
        let doc = serde_json::json!({
            "Id": "abc",
            "Name": "/sv-1-alice",
            "Config": {"User": "1000:1000", "NetworkDisabled": true, "Labels": {"a": "b"}},
            "HostConfig": {
                "ReadonlyRootfs": false,
                "Privileged": true,
                "CapAdd": ["NET_ADMIN"],
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges"],
                "NetworkMode": "none",
                "Memory": 1, "MemorySwap": -1, "NanoCpus": 2, "PidsLimit": -1,
                "Tmpfs": {"/tmp": "rw"},
                "PidMode": "host", "IpcMode": "private",
                "Devices": [{"PathOnHost": "/dev/kvm", "PathInContainer": "/dev/kvm", "CgroupPermissions": "rwm"}]
            },
            "Mounts": [
                {"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/s", "RW": true},
                {"Type": "bind", "Source": "/h/runtime/r1", "Destination": "/opt/runtime", "RW": false}
            ]
        });
        let inspect: ContainerInspectResponse = serde_json::from_value(doc).unwrap();
        let h = Hardening::live(&inspect);
        assert!(!h.readonly_rootfs && h.privileged);
        assert_eq!(h.cap_add, ["NET_ADMIN"]);
        assert_eq!(h.pids_limit, 0, "-1 is unlimited");
        assert_eq!(h.shared_namespaces, ["PidMode=host"], "private ipc is fine");
        assert_eq!(h.devices, ["/dev/kvm:/dev/kvm"]);
        assert_eq!(
            h.mounts
                .iter()
                .map(|m| (m.target.as_str(), m.read_only))
                .collect::<Vec<_>>(),
            [("/opt/runtime", true), ("/s", false)],
            "sorted by target"
        );
    }
}
