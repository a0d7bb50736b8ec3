//! `[engine]` in supervisor.toml: where instances' containers run. "docker" (the default) is
//! this host's engine; "swarm" makes every instance a one-replica service of the Docker
//! Swarm this host's engine manages, with the agent image pulled from a registry and the
//! instances' files on storage every node mounts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::field_error::FieldError;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub kind: EngineKind,
    /// Required when `kind = "swarm"`.
    pub swarm: Option<SwarmConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Containers on this host's engine.
    #[default]
    Docker,
    /// Services of the swarm this host's engine is a manager of.
    Swarm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmConfig {
    /// `host[:port]` of the registry every node pulls the agent image from (by digest).
    pub registry: String,
    /// The storage every node reaches the instances' files through.
    pub storage: StorageConfig,
    /// How often the daemon looks at the swarm's tasks (it has no task events), and at IPC
    /// directories (file events do not cross network storage).
    #[serde(default = "default_poll")]
    pub poll_interval: String,
    /// Engines of individual nodes (node id or hostname to `unix://` or `tcp://`), for what
    /// only a node's own engine can do: audit, stats, logs and exec of a task's container.
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
}

fn default_poll() -> String {
    "500ms".to_string()
}

/// Every mount of an instance (runtime, workspace, IPC queues, persona, shared knowledge) is
/// a volume of `driver`, created on whichever node runs the task, whose `device` option is
/// `device` followed by the mount's path below the supervisor's home: the home must be
/// exported whole (NFS, say) and `device` is how nodes name its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default = "default_driver")]
    pub driver: String,
    /// The home's root as the driver's `device` option, e.g. `:/srv/supervisor` for NFS.
    pub device: String,
    /// The driver's other options, e.g. `type = "nfs"`, `o = "addr=10.0.0.1,rw,nfsvers=4"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_driver() -> String {
    "local".to_string()
}

impl SwarmConfig {
    pub fn poll_interval(&self) -> std::time::Duration {
        humantime::parse_duration(&self.poll_interval)
            .unwrap_or(std::time::Duration::from_millis(500))
    }
}

impl EngineConfig {
    /// The swarm settings when the swarm engine is chosen.
    pub fn swarm(&self) -> Option<&SwarmConfig> {
        match self.kind {
            EngineKind::Swarm => self.swarm.as_ref(),
            EngineKind::Docker => None,
        }
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        let Some(swarm) = &self.swarm else {
            if self.kind == EngineKind::Swarm {
                return Err(FieldError::new(
                    "engine.swarm",
                    "kind = \"swarm\" needs an [engine.swarm] table with registry and storage",
                ));
            }
            return Ok(());
        };
        let registry_ok = !swarm.registry.is_empty()
            && swarm.registry.len() <= 253
            && !swarm.registry.contains("://")
            && swarm
                .registry
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !registry_ok {
            return Err(FieldError::new(
                "engine.swarm.registry",
                format!(
                    "expected a registry address like \"registry.example:5000\" (no scheme, no path), got {:?}",
                    swarm.registry
                ),
            ));
        }
        FieldError::duration_within(
            "engine.swarm.poll_interval",
            &swarm.poll_interval,
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(10),
            "from 50ms to 10s like \"500ms\"",
        )?;
        if swarm.storage.device.is_empty() {
            return Err(FieldError::new(
                "engine.swarm.storage.device",
                "expected the home's root as nodes name it, e.g. \":/srv/supervisor\" for NFS",
            ));
        }
        if swarm.storage.options.contains_key("device") {
            return Err(FieldError::new(
                "engine.swarm.storage.options.device",
                "set engine.swarm.storage.device instead: each mount's device is made from it",
            ));
        }
        for (node, host) in &swarm.nodes {
            if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
                return Err(FieldError::new(
                    format!("engine.swarm.nodes.{node}"),
                    format!("expected unix:///path/to/socket or tcp://host:port, got {host:?}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::host_config::HostConfig;

    const SWARM: &str = r#"
[engine]
kind = "swarm"
[engine.swarm]
registry = "registry.example:5000"
[engine.swarm.storage]
device = ":/srv/supervisor"
options = { type = "nfs", o = "addr=10.0.0.1,rw" }
"#;

    #[test]
    fn the_default_engine_is_this_hosts_docker() {
        let c = HostConfig::parse("").unwrap();
        assert_eq!(c.engine.kind, super::EngineKind::Docker);
        assert!(c.engine.swarm().is_none());
    }

    #[test]
    fn a_swarm_engine_reads_its_registry_and_storage() {
        let c = HostConfig::parse(SWARM).unwrap();
        let s = c.engine.swarm().unwrap();
        assert_eq!(s.registry, "registry.example:5000");
        assert_eq!(s.storage.driver, "local");
        assert_eq!(s.storage.options["type"], "nfs");
        assert_eq!(s.poll_interval(), std::time::Duration::from_millis(500));
    }

    #[test]
    fn bad_swarm_settings_name_their_key() {
        let e = HostConfig::parse("[engine]\nkind = \"swarm\"\n").unwrap_err();
        assert_eq!(e.path, "engine.swarm");
        let e = HostConfig::parse("[engine]\nkind = \"k8s\"\n").unwrap_err();
        assert_eq!(e.path, "engine.kind");
        let bad = SWARM.replace("registry.example:5000", "https://r.example/x");
        assert_eq!(
            HostConfig::parse(&bad).unwrap_err().path,
            "engine.swarm.registry"
        );
        let bad = SWARM.replace(
            "[engine.swarm.storage]",
            "poll_interval = \"1h\"\n[engine.swarm.storage]",
        );
        assert_eq!(
            HostConfig::parse(&bad).unwrap_err().path,
            "engine.swarm.poll_interval"
        );
        let bad = format!("{SWARM}\n[engine.swarm.nodes]\nw1 = \"/var/run/docker.sock\"\n");
        assert_eq!(
            HostConfig::parse(&bad).unwrap_err().path,
            "engine.swarm.nodes.w1"
        );
        let bad = SWARM.replace("device = \":/srv/supervisor\"", "device = \"\"");
        assert_eq!(
            HostConfig::parse(&bad).unwrap_err().path,
            "engine.swarm.storage.device"
        );
        let missing = SWARM.replace("device = \":/srv/supervisor\"", "");
        assert_eq!(
            HostConfig::parse(&missing).unwrap_err().path,
            "engine.swarm.storage"
        );
    }
}
