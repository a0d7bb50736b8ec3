//! An instance's [`ContainerSpec`] as a swarm service: the same hardening, as far as the
//! service API carries it, its own internal network, its mounts as volumes of the shared
//! storage, and its placement. Pure, so the translation is tested without a swarm.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{
    Limit, Mount, MountTmpfsOptions, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use sha2::{Digest, Sha256};

use crate::domain::engine_config::StorageConfig;
use crate::infra::container_spec::{ContainerSpec, MountSpec, LABEL_HOME, LABEL_INSTANCE};

/// Why a spec cannot become a service.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{} is not below the supervisor's home {}: only the home is on the shared storage", path.display(), home.display())]
    OutsideHome {
        path: std::path::PathBuf,
        home: std::path::PathBuf,
    },
}

/// What turns a container spec into a service besides the spec itself.
pub struct ServiceInputs<'a> {
    /// The image by digest, as every node pulls it.
    pub image: &'a str,
    /// The instance's own overlay network (its name).
    pub network: &'a str,
    pub storage: &'a StorageConfig,
    /// The supervisor's home: mount sources are made relative to it.
    pub home: &'a Path,
    /// How long a task gets between SIGTERM and SIGKILL.
    pub stop_grace_secs: i32,
    /// The engine's API carries no-new-privileges for services (1.44 and later); older
    /// ones have no such setting, and doctor says so per node.
    pub no_new_privileges: bool,
    /// How often the agent lists `/ipc/in` when the host's writes raise no file event there
    /// (network storage), in milliseconds.
    pub ipc_rescan_ms: u64,
}

/// The name of a mount's volume: the container's name, the mount's place, and a digest of
/// everything the volume is made from, so a changed storage setting or runtime never reuses
/// a node's old volume of the same name.
pub fn volume_name(
    container: &str,
    target: &str,
    driver: &str,
    options: &HashMap<String, String>,
) -> String {
    let mut sorted: Vec<_> = options.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    h.update(driver.as_bytes());
    for (k, v) in sorted {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    let place: String = target
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{container}-{place}-{}", &hex::encode(h.finalize())[..10])
}

/// One of the spec's mounts as a volume of the shared storage.
pub fn volume_mount(
    container: &str,
    m: &MountSpec,
    storage: &StorageConfig,
    home: &Path,
    labels: &HashMap<String, String>,
) -> Result<Mount, SpecError> {
    let relative = m
        .source
        .strip_prefix(home)
        .map_err(|_| SpecError::OutsideHome {
            path: m.source.clone(),
            home: home.to_path_buf(),
        })?;
    let mut options: HashMap<String, String> = storage
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let device = format!(
        "{}/{}",
        storage.device.trim_end_matches('/'),
        relative.to_string_lossy()
    );
    options.insert("device".to_string(), device);
    Ok(Mount {
        typ: Some(MountType::VOLUME),
        source: Some(volume_name(container, &m.target, &storage.driver, &options)),
        target: Some(m.target.clone()),
        read_only: Some(m.read_only),
        volume_options: Some(MountVolumeOptions {
            // Never copy the image's files into the volume: it is the host's tree.
            no_copy: Some(true),
            // The node's volume carries the instance's labels, so it is found and removed
            // with the instance.
            labels: Some(labels.clone()),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some(storage.driver.clone()),
                options: Some(options),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Placement constraints from the instance's `placement` labels.
pub fn constraints(spec: &ContainerSpec) -> Vec<String> {
    spec.placement
        .iter()
        .map(|(k, v)| format!("node.labels.{k}=={v}"))
        .collect()
}

/// The service for `spec`, with no replica: `start` asks for one.
pub fn service_spec(spec: &ContainerSpec, i: &ServiceInputs) -> Result<ServiceSpec, SpecError> {
    let owner: HashMap<String, String> = [LABEL_HOME, LABEL_INSTANCE]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), spec.labels.get(k)?.clone())))
        .collect();
    let mut mounts = spec
        .mounts
        .iter()
        .map(|m| volume_mount(&spec.name, m, i.storage, i.home, &owner))
        .collect::<Result<Vec<_>, _>>()?;
    mounts.push(Mount {
        typ: Some(MountType::TMPFS),
        target: Some("/tmp".to_string()),
        tmpfs_options: Some(MountTmpfsOptions {
            size_bytes: Some(spec.tmp_bytes as i64),
            mode: Some(0o1777),
            ..Default::default()
        }),
        ..Default::default()
    });
    let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    let constraints = constraints(spec);
    Ok(ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(labels.clone()),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(i.image.to_string()),
                // The task's container carries the same labels as a local one would.
                labels: Some(labels),
                user: Some(spec.user.clone()),
                env: Some(vec![format!(
                    "{}={}",
                    supervisor_agent::inbox::RESCAN_ENV,
                    i.ipc_rescan_ms
                )]),
                read_only: Some(true),
                init: Some(true),
                mounts: Some(mounts),
                capability_drop: Some(vec!["ALL".to_string()]),
                privileges: i.no_new_privileges.then(|| {
                    bollard::models::TaskSpecContainerSpecPrivileges {
                        no_new_privileges: Some(true),
                        ..Default::default()
                    }
                }),
                stop_grace_period: Some(i64::from(i.stop_grace_secs) * 1_000_000_000),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: Some(spec.nano_cpus),
                    memory_bytes: Some(spec.memory_bytes),
                    pids: Some(spec.pids_limit),
                }),
                ..Default::default()
            }),
            // The supervisor restarts tasks itself, with its backoff and crash-loop rules.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: (!constraints.is_empty()).then_some(constraints),
                ..Default::default()
            }),
            log_driver: Some(TaskSpecLogDriver {
                name: Some("json-file".to_string()),
                options: Some(HashMap::from([
                    ("max-size".to_string(), spec.log_max_size.clone()),
                    ("max-file".to_string(), spec.log_max_files.clone()),
                ])),
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(i.network.to_string()),
                ..Default::default()
            }]),
            force_update: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn storage() -> StorageConfig {
        StorageConfig {
            driver: "local".into(),
            device: ":/srv/sv/".into(),
            options: BTreeMap::from([
                ("type".into(), "nfs".into()),
                ("o".into(), "addr=10.0.0.1,rw".into()),
            ]),
        }
    }

    fn spec() -> ContainerSpec {
        let mut s = crate::infra::container_spec::throwaway(
            "supervisor-agent:abc",
            vec![
                MountSpec {
                    source: "/home/sv/runtime/r1".into(),
                    target: "/opt/runtime".into(),
                    read_only: true,
                },
                MountSpec {
                    source: "/home/sv/instances/alice/volume/ipc/in".into(),
                    target: "/ipc/in".into(),
                    read_only: false,
                },
            ],
            BTreeMap::from([("supervisor.home".into(), "h1".into())]),
        );
        s.name = "sv-h1-alice".into();
        s.user = "10001:10001".into();
        s.placement = BTreeMap::from([("zone".into(), "eu".into())]);
        s
    }

    fn inputs<'a>(storage: &'a StorageConfig) -> ServiceInputs<'a> {
        ServiceInputs {
            image: "reg:5000/supervisor-agent@sha256:00",
            network: "sv-h1-alice",
            storage,
            home: Path::new("/home/sv"),
            stop_grace_secs: 10,
            no_new_privileges: false,
            ipc_rescan_ms: 300,
        }
    }

    #[test]
    fn the_service_carries_the_containers_hardening() {
        let st = storage();
        let s = service_spec(&spec(), &inputs(&st)).unwrap();
        assert_eq!(s.name.as_deref(), Some("sv-h1-alice"));
        assert_eq!(s.mode.unwrap().replicated.unwrap().replicas, Some(0));
        let t = s.task_template.unwrap();
        let c = t.container_spec.unwrap();
        assert_eq!(
            c.image.as_deref(),
            Some("reg:5000/supervisor-agent@sha256:00")
        );
        assert_eq!(c.user.as_deref(), Some("10001:10001"));
        assert_eq!((c.read_only, c.init), (Some(true), Some(true)));
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        assert!(c.capability_add.is_none() && c.privileges.is_none());
        assert_eq!(c.stop_grace_period, Some(10_000_000_000));
        assert_eq!(
            c.env,
            Some(vec!["SUPERVISOR_IPC_RESCAN_MS=300".to_string()])
        );
        assert_eq!(c.labels.unwrap()["supervisor.home"], "h1");
        let limits = t.resources.unwrap().limits.unwrap();
        assert_eq!(limits.memory_bytes, Some(128 << 20));
        assert_eq!(limits.pids, Some(64));
        assert_eq!(
            t.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            t.placement.unwrap().constraints,
            Some(vec!["node.labels.zone==eu".to_string()])
        );
        assert_eq!(t.log_driver.unwrap().options.unwrap()["max-file"], "3");
        let nets = t.networks.unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].target.as_deref(), Some("sv-h1-alice"));
        let tmp = c.mounts.as_ref().unwrap().last().unwrap().clone();
        assert_eq!(tmp.typ, Some(MountType::TMPFS));
        assert_eq!(tmp.tmpfs_options.unwrap().size_bytes, Some(16 << 20));
    }

    #[test]
    fn no_new_privileges_is_asked_for_where_the_api_carries_it() {
        let st = storage();
        let mut i = inputs(&st);
        i.no_new_privileges = true;
        let s = service_spec(&spec(), &i).unwrap();
        let c = s.task_template.clone().unwrap().container_spec.unwrap();
        assert_eq!(c.privileges.unwrap().no_new_privileges, Some(true));
        let h = crate::infra::docker::hardening::Hardening::from_service(&s);
        assert_eq!(h.security_opt, ["no-new-privileges"]);
        assert_eq!(h.network_mode, "swarm:sv-h1-alice");
        assert_eq!(h.tmpfs["/tmp"], format!("size={},mode=1777", 16 << 20));
        assert!(h.mounts.iter().all(|m| m.kind == "volume"));
    }

    #[test]
    fn every_mount_is_a_volume_of_the_shared_storage_below_its_device() {
        let st = storage();
        let s = service_spec(&spec(), &inputs(&st)).unwrap();
        let mounts = s
            .task_template
            .unwrap()
            .container_spec
            .unwrap()
            .mounts
            .unwrap();
        let runtime = &mounts[0];
        assert_eq!(runtime.typ, Some(MountType::VOLUME));
        assert_eq!(runtime.read_only, Some(true));
        let vo = runtime.volume_options.clone().unwrap();
        assert_eq!(vo.no_copy, Some(true));
        assert_eq!(vo.labels.clone().unwrap()["supervisor.home"], "h1");
        let dc = vo.driver_config.unwrap();
        assert_eq!(dc.name.as_deref(), Some("local"));
        let o = dc.options.unwrap();
        assert_eq!(o["device"], ":/srv/sv/runtime/r1");
        assert_eq!(o["type"], "nfs");
        assert_eq!(o["o"], "addr=10.0.0.1,rw");
        let ipc = &mounts[1];
        assert_eq!(ipc.read_only, Some(false));
        assert!(ipc
            .source
            .as_deref()
            .unwrap()
            .starts_with("sv-h1-alice-ipc-in-"));
        assert_ne!(runtime.source, ipc.source);
    }

    #[test]
    fn a_changed_storage_setting_names_a_new_volume() {
        let a = HashMap::from([("device".to_string(), ":/a".to_string())]);
        let b = HashMap::from([("device".to_string(), ":/b".to_string())]);
        assert_eq!(
            volume_name("c", "/workspace", "local", &a),
            volume_name("c", "/workspace", "local", &a)
        );
        assert_ne!(
            volume_name("c", "/workspace", "local", &a),
            volume_name("c", "/workspace", "local", &b)
        );
        assert_ne!(
            volume_name("c", "/workspace", "local", &a),
            volume_name("c", "/workspace", "nfs", &a)
        );
    }

    #[test]
    fn a_mount_outside_the_home_is_refused() {
        let st = storage();
        let mut s = spec();
        s.mounts[0].source = PathBuf::from("/etc");
        assert!(matches!(
            service_spec(&s, &inputs(&st)),
            Err(SpecError::OutsideHome { .. })
        ));
    }
}
