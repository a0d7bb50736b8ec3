//! What an instance's container must look like: a pure function of the instance config, the
//! home and the active runtime. Its hash is stored as a label, so the reconciler can tell an
//! unchanged container (leave it alone) from a drifted one (recreate it) without comparing
//! Docker's inspect output field by field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::instance::InstanceConfig;
use crate::infra::home::InstancePaths;

pub const LABEL_HOME: &str = "supervisor.home";
pub const LABEL_INSTANCE: &str = "supervisor.instance";
pub const LABEL_SPEC_HASH: &str = "supervisor.spec-hash";
pub const LABEL_RUNTIME: &str = "supervisor.runtime";
/// The instance's `limits.disk`: part of the spec, so raising it recreates the container
/// (the disk grows while none runs).
pub const LABEL_DISK: &str = "supervisor.disk";

/// Docker's json-file log rotation for every agent container.
pub const LOG_MAX_SIZE: &str = "10m";
pub const LOG_MAX_FILES: &str = "3";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountSpec {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// Everything Docker is told when the container is created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<MountSpec>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub tmp_bytes: u64,
    pub network: String,
    pub log_max_size: String,
    pub log_max_files: String,
    /// Node labels a swarm task's node must carry (`placement` in config.json). Left out of
    /// the hash when empty, so containers made before it existed keep theirs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, String>,
}

pub struct SpecInputs<'a> {
    pub home_id: &'a str,
    pub instance: &'a str,
    pub config: &'a InstanceConfig,
    pub paths: &'a InstancePaths,
    pub runtime_id: &'a str,
    pub runtime_dir: PathBuf,
    pub image: &'a str,
    /// `uid:gid` the agent runs as (never root).
    pub user: &'a str,
}

/// The image's own unprivileged USER: what throwaway check containers run as. An instance's
/// container runs as the instance's own uid (or, under an unprivileged supervisor, as the
/// supervisor itself).
pub const AGENT_USER: &str = "65532:65532";

/// A small, hardened spec for a throwaway container (no name, no workspace): for checking an
/// image and runtime together.
pub fn throwaway(
    image: &str,
    mounts: Vec<MountSpec>,
    labels: BTreeMap<String, String>,
) -> ContainerSpec {
    ContainerSpec {
        name: String::new(),
        image: image.to_string(),
        user: AGENT_USER.to_string(),
        labels,
        mounts,
        memory_bytes: 128 << 20,
        nano_cpus: 1_000_000_000,
        pids_limit: 64,
        tmp_bytes: 16 << 20,
        network: "none".to_string(),
        log_max_size: LOG_MAX_SIZE.into(),
        log_max_files: LOG_MAX_FILES.into(),
        placement: BTreeMap::new(),
    }
}

/// The container name: unique per home and instance, readable in `docker ps`.
pub fn container_name(home_id: &str, instance: &str) -> String {
    format!("sv-{}-{instance}", &home_id[..home_id.len().min(8)])
}

impl ContainerSpec {
    pub fn for_instance(i: &SpecInputs) -> Self {
        let limits = &i.config.limits;
        let mut spec = Self {
            name: container_name(i.home_id, i.instance),
            image: i.image.to_string(),
            user: i.user.to_string(),
            labels: BTreeMap::from([
                (LABEL_HOME.to_string(), i.home_id.to_string()),
                (LABEL_INSTANCE.to_string(), i.instance.to_string()),
                (LABEL_RUNTIME.to_string(), i.runtime_id.to_string()),
                (LABEL_DISK.to_string(), limits.disk.clone()),
            ]),
            // Exactly these four (and a group's two read-only ones below), and nothing else:
            // never the Docker socket, never another instance's directory. The two IPC queues are mounts of their own, so the agent
            // cannot rename or replace either (a mount point is busy); /ipc itself is part of
            // the read-only root file system.
            mounts: vec![
                MountSpec {
                    source: i.runtime_dir.clone(),
                    target: "/opt/runtime".into(),
                    read_only: true,
                },
                MountSpec {
                    source: i.paths.workspace.clone(),
                    target: "/workspace".into(),
                    read_only: false,
                },
                MountSpec {
                    source: i.paths.ipc.join("in"),
                    target: "/ipc/in".into(),
                    read_only: false,
                },
                MountSpec {
                    source: i.paths.ipc.join("out"),
                    target: "/ipc/out".into(),
                    read_only: false,
                },
            ],
            memory_bytes: limits.memory_bytes() as i64,
            nano_cpus: (limits.cpus * 1e9).round() as i64,
            pids_limit: i64::from(limits.pids),
            tmp_bytes: limits.tmp_bytes(),
            network: i.config.network.as_str().to_string(),
            log_max_size: LOG_MAX_SIZE.into(),
            log_max_files: LOG_MAX_FILES.into(),
            placement: i.config.placement.clone(),
        };
        // A chat group also reads its instance's persona and shared knowledge: host-owned
        // directories (the agent can write neither), mounted read-only.
        for (source, target) in [(&i.paths.persona, "/persona"), (&i.paths.shared, "/shared")] {
            if let Some(source) = source {
                spec.mounts.push(MountSpec {
                    source: source.clone(),
                    target: target.into(),
                    read_only: true,
                });
            }
        }
        let hash = spec.hash();
        spec.labels.insert(LABEL_SPEC_HASH.to_string(), hash);
        spec
    }

    /// sha256 of everything but the hash label itself (first 16 hex digits).
    pub fn hash(&self) -> String {
        let mut copy = self.clone();
        copy.labels.remove(LABEL_SPEC_HASH);
        let json = serde_json::to_vec(&copy).expect("spec serialises");
        hex::encode(Sha256::digest(json))[..16].to_string()
    }

    pub fn spec_hash(&self) -> &str {
        &self.labels[LABEL_SPEC_HASH]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn inputs<'a>(
        config: &'a InstanceConfig,
        paths: &'a InstancePaths,
        runtime: &'a str,
    ) -> SpecInputs<'a> {
        SpecInputs {
            home_id: "0123456789abcdef",
            instance: "alice",
            config,
            paths,
            runtime_id: runtime,
            runtime_dir: PathBuf::from(format!("/h/runtime/{runtime}")),
            image: "supervisor-agent:abc",
            user: "65532:65532",
        }
    }

    #[test]
    fn spec_carries_limits_labels_and_exactly_four_mounts() {
        let config = InstanceConfig::default();
        let paths = InstancePaths::under("/h/instances/alice".into());
        let spec = ContainerSpec::for_instance(&inputs(&config, &paths, "r1"));
        assert_eq!(spec.name, "sv-01234567-alice");
        assert_eq!(spec.memory_bytes, 512 << 20);
        assert_eq!(spec.nano_cpus, 1_000_000_000);
        assert_eq!(spec.pids_limit, 256);
        assert_eq!(spec.network, "none");
        let targets: Vec<_> = spec
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.read_only))
            .collect();
        assert_eq!(
            targets,
            [
                ("/opt/runtime", true),
                ("/workspace", false),
                ("/ipc/in", false),
                ("/ipc/out", false)
            ]
        );
        assert_eq!(
            spec.mounts[1].source,
            Path::new("/h/instances/alice/volume/workspace")
        );
        assert_eq!(
            spec.mounts[3].source,
            Path::new("/h/instances/alice/volume/ipc/out")
        );
        assert_eq!(spec.labels[LABEL_DISK], "1g");
        assert_eq!(spec.labels[LABEL_HOME], "0123456789abcdef");
        assert_eq!(spec.labels[LABEL_INSTANCE], "alice");
        assert_eq!(spec.labels[LABEL_RUNTIME], "r1");
        assert_eq!(spec.spec_hash(), spec.hash());
    }

    #[test]
    fn a_group_also_mounts_its_instances_persona_and_shared_knowledge_read_only() {
        let config = InstanceConfig::default();
        let paths = InstancePaths::for_group(
            Path::new("/h/instances/alice"),
            "/h/instances/alice/groups/0a1b2c3d".into(),
        );
        let mut i = inputs(&config, &paths, "r1");
        i.instance = "alice_0a1b2c3d";
        let spec = ContainerSpec::for_instance(&i);
        assert_eq!(spec.name, "sv-01234567-alice_0a1b2c3d");
        let mounts: Vec<_> = spec
            .mounts
            .iter()
            .map(|m| (m.source.to_str().unwrap(), m.target.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts[1..],
            [
                (
                    "/h/instances/alice/groups/0a1b2c3d/volume/workspace",
                    "/workspace",
                    false
                ),
                (
                    "/h/instances/alice/groups/0a1b2c3d/volume/ipc/in",
                    "/ipc/in",
                    false
                ),
                (
                    "/h/instances/alice/groups/0a1b2c3d/volume/ipc/out",
                    "/ipc/out",
                    false
                ),
                ("/h/instances/alice/persona", "/persona", true),
                ("/h/instances/alice/shared", "/shared", true),
            ]
        );
    }

    #[test]
    fn hash_changes_with_limits_runtime_and_network_only() {
        let config = InstanceConfig::default();
        let paths = InstancePaths::under("/h/instances/alice".into());
        let base = ContainerSpec::for_instance(&inputs(&config, &paths, "r1"));
        let same = ContainerSpec::for_instance(&inputs(&config, &paths, "r1"));
        assert_eq!(base.spec_hash(), same.spec_hash());

        let mut more_memory = config.clone();
        more_memory.limits.memory = "1g".into();
        let mut bridged = config.clone();
        bridged.network = crate::domain::instance::config::NetworkPolicy::Bridge;
        let mut other_model = config.clone();
        other_model.model.name = "other".into();
        let mut bigger_disk = config.clone();
        bigger_disk.limits.disk = "2g".into();
        for (what, spec) in [
            (
                "memory",
                ContainerSpec::for_instance(&inputs(&more_memory, &paths, "r1")),
            ),
            (
                "network",
                ContainerSpec::for_instance(&inputs(&bridged, &paths, "r1")),
            ),
            (
                "runtime",
                ContainerSpec::for_instance(&inputs(&config, &paths, "r2")),
            ),
            (
                "disk",
                ContainerSpec::for_instance(&inputs(&bigger_disk, &paths, "r1")),
            ),
        ] {
            assert_ne!(
                spec.spec_hash(),
                base.spec_hash(),
                "{what} must change the hash"
            );
        }
        // The model is the host's business (the broker calls it), not the container's.
        let model = ContainerSpec::for_instance(&inputs(&other_model, &paths, "r1"));
        assert_eq!(model.spec_hash(), base.spec_hash());
    }
}
