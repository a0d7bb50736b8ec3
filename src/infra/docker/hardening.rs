//! The security-relevant settings of an agent container in one plain shape, read either from
//! what [`create_body`] asks Docker for (the policy) or from what `inspect` says a container
//! has now. The live side matters because `docker update` or a container made by hand can
//! differ from the policy while carrying the right labels. Comparing the two is the caller's
//! business (`doctor`); this file only reads Docker's documents.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerInspectResponse, HostConfig};
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
            hardening: Hardening::live(&c),
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(DockerError::InspectContainer {
            id: id.to_string(),
            source,
        }),
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
