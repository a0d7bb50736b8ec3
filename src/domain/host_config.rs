//! The host configuration, `<home>/supervisor.toml`. The file is optional and every key has
//! a default; a present file is validated like an instance config (file, key path, expected).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::domain::engine_config::EngineConfig;
use crate::domain::field_error::FieldError;
use crate::domain::serde_text;

/// Written by `init` so users can see every key and its default in place.
pub const TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/supervisor.toml"
));

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    pub docker: DockerConfig,
    pub engine: EngineConfig,
    pub daemon: DaemonConfig,
    pub api: ApiConfig,
    pub disk: DiskConfig,
    pub web_search: WebSearchConfig,
}

/// The search backend behind agents' `web_search`: a SearXNG instance's JSON API. Unset, no
/// agent is offered the tool.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSearchConfig {
    /// The SearXNG base URL, e.g. `http://127.0.0.1:8888`; `/search?q=…&format=json` is asked.
    pub searxng_url: Option<String>,
    /// The NAME of an environment variable whose value is sent as `Authorization: Bearer
    /// <value>` (for a backend behind an authenticating proxy); never the key itself.
    pub api_key_env: Option<String>,
}

/// How instances' disk limits (`limits.disk`) are enforced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// "auto": a disk image per instance where this host allows it (root, loop devices,
    /// e2fsprogs), measured and stopped past the limit otherwise; "hard": images or nothing;
    /// "soft": never images.
    pub enforce: EnforceSetting,
}

/// The optional TCP listener for the daemon's API (the unix socket is always there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `host:port` to listen on, e.g. `127.0.0.1:8787`; unset means no TCP listener.
    pub listen: Option<String>,
    /// The NAME of the environment variable that holds the bearer token (never the token).
    pub token_env: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: None,
            token_env: "SUPERVISOR_API_TOKEN".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Most containers running at once; 0 means no cap. Instances beyond it queue in the
    /// order they asked to run.
    pub max_running: u32,
    /// What `supervisor run` does with running containers when it stops.
    pub on_shutdown: ShutdownPolicy,
    /// How long a container gets to stop after SIGTERM before it is killed.
    pub stop_timeout: String,
    /// How long an instance moved onto a newly activated runtime has to report ready before
    /// the roll-out is stopped and the previous runtime put back.
    pub rollout_ready_timeout: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownPolicy {
    /// Leave containers running; the next daemon adopts them (fast daemon upgrades).
    Leave,
    /// Stop every container of this home.
    Stop,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            max_running: 0,
            on_shutdown: ShutdownPolicy::Leave,
            stop_timeout: "10s".to_string(),
            rollout_ready_timeout: "60s".to_string(),
        }
    }
}

impl DaemonConfig {
    pub fn stop_timeout_secs(&self) -> i32 {
        humantime::parse_duration(&self.stop_timeout)
            .map(|d| d.as_secs().min(600) as i32)
            .unwrap_or(10)
    }

    pub fn rollout_ready_timeout_ms(&self) -> i64 {
        humantime::parse_duration(&self.rollout_ready_timeout)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(60_000)
    }

    pub fn max_running(&self) -> Option<usize> {
        (self.max_running > 0).then_some(self.max_running as usize)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// Docker endpoint (`unix:///path` or `tcp://host:port`); unset means `DOCKER_HOST`,
    /// then the local default socket.
    pub host: Option<String>,
    /// Repository name of the agent image; the tag is the image's content hash.
    pub image: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            image: "supervisor-agent".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", file.display())]
    Invalid { file: PathBuf, source: FieldError },
}

impl HostConfig {
    /// Loads `file`, or the defaults when it does not exist.
    pub fn load(file: &Path) -> Result<Self, HostConfigError> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(HostConfigError::Read {
                    file: file.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|source| HostConfigError::Invalid {
            file: file.to_path_buf(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let value: toml::Table = toml::from_str(text).map_err(|e| {
            FieldError::new(
                "(syntax)",
                one_line(e.message()) + &line_hint(text, e.span()),
            )
        })?;
        let config: Self =
            serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
                FieldError::new(
                    e.path().to_string(),
                    one_line(&serde_text::data_error(
                        e.inner().message(),
                        serde_text::Format::Toml,
                    )),
                )
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), FieldError> {
        self.engine.validate()?;
        if let Some(url) = &self.web_search.searxng_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && reqwest::Url::parse(url).is_ok();
            if !ok {
                return Err(FieldError::new(
                    "web_search.searxng_url",
                    format!("expected an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        if let Some(var) = &self.web_search.api_key_env {
            if !crate::domain::instance::config::is_env_var_name(var) {
                return Err(FieldError::new(
                    "web_search.api_key_env",
                    "expected the NAME of an environment variable, never the key itself",
                ));
            }
        }
        if let Some(host) = &self.docker.host {
            if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
                return Err(FieldError::new(
                    "docker.host",
                    format!("expected unix:///path/to/socket or tcp://host:port, got {host:?}"),
                ));
            }
        }
        match humantime::parse_duration(&self.daemon.stop_timeout) {
            Ok(d) if d.as_secs() <= 600 => {}
            _ => {
                return Err(FieldError::new(
                    "daemon.stop_timeout",
                    format!(
                        "expected a duration of at most 10m like \"10s\", got {:?}",
                        self.daemon.stop_timeout
                    ),
                ))
            }
        }
        FieldError::duration_within(
            "daemon.rollout_ready_timeout",
            &self.daemon.rollout_ready_timeout,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(3600),
            "from 1s to 1h like \"60s\"",
        )?;
        if let Some(listen) = &self.api.listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(FieldError::new(
                    "api.listen",
                    format!("expected an address and port like \"127.0.0.1:8787\", got {listen:?}"),
                ));
            }
        }
        if !crate::domain::instance::config::is_env_var_name(&self.api.token_env) {
            return Err(FieldError::new(
                "api.token_env",
                "expected the NAME of an environment variable (like SUPERVISOR_API_TOKEN), never the token itself",
            ));
        }
        let image_ok = !self.docker.image.is_empty()
            && self.docker.image.len() <= 128
            && self
                .docker
                .image
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
        if !image_ok {
            return Err(FieldError::new(
                "docker.image",
                "expected an image repository name (lowercase letters, digits, . _ - /), without a tag",
            ));
        }
        Ok(())
    }
}

/// The TOML parser's messages span lines ("invalid key" then "expected ..."); a log line and
/// a one-line error need them on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        // "in `daemon.max_running`": the error names the key already.
        .filter(|l| !l.is_empty() && !l.starts_with("in `"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
        format!(" (line {line})")
    })
    .unwrap_or_default()
}

/// `[disk]` in supervisor.toml: how disk limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforceSetting {
    /// Hard where this host allows it (root, loop devices, mke2fs), soft otherwise.
    #[default]
    Auto,
    /// Hard or not at all: instances do not run where it is not possible.
    Hard,
    /// Always soft: no images, no mounts (the daemon measures and stops).
    Soft,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_shows_every_key() {
        let defaults = toml::Value::try_from(HostConfig::default()).unwrap();
        for (section, table) in defaults.as_table().unwrap() {
            assert!(TEMPLATE.contains(&format!("[{section}]")), "[{section}]");
            for key in table.as_table().unwrap().keys() {
                assert!(
                    TEMPLATE.contains(&format!("# {key} = ")),
                    "{section}.{key} is missing from the template"
                );
            }
        }
    }

    #[test]
    fn template_and_empty_file_are_the_defaults() {
        assert_eq!(HostConfig::parse(TEMPLATE).unwrap(), HostConfig::default());
        assert_eq!(HostConfig::parse("").unwrap(), HostConfig::default());
    }

    #[test]
    fn errors_are_on_one_line() {
        for text in [
            "[daemon\nmax_running = 1\n",
            "[daemon]\nmax_running = \n",
            "[daemon]\nmax_running = \"many\"\n",
            "= 3\n",
        ] {
            let e = HostConfig::parse(text).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{text:?} gives {e:?}");
            assert!(!e.trim().is_empty());
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = HostConfig::parse("[docker]\nsocket = \"/x\"\n").unwrap_err();
        assert_eq!(e.path, "docker.socket");
        let e = HostConfig::parse("[docker]\nhost = \"/var/run/docker.sock\"\n").unwrap_err();
        assert_eq!(e.path, "docker.host");
        let e = HostConfig::parse("[docker]\nimage = 5\n").unwrap_err();
        assert_eq!(e.path, "docker.image");
        let e = HostConfig::parse("[daemon]\non_shutdown = \"explode\"\n").unwrap_err();
        assert_eq!(e.path, "daemon.on_shutdown");
        let e = HostConfig::parse("[daemon]\nstop_timeout = \"1d\"\n").unwrap_err();
        assert_eq!(e.path, "daemon.stop_timeout");
        let e = HostConfig::parse("[daemon]\nrollout_ready_timeout = \"0s\"\n").unwrap_err();
        assert_eq!(e.path, "daemon.rollout_ready_timeout");
        let ok = HostConfig::parse("[daemon]\nrollout_ready_timeout = \"5s\"\n").unwrap();
        assert_eq!(ok.daemon.rollout_ready_timeout_ms(), 5000);
        let e = HostConfig::parse("[daemon]\nmax_running = -1\n").unwrap_err();
        assert_eq!(e.path, "daemon.max_running");
        let e = HostConfig::parse("[api]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(e.path, "api.listen");
        let e = HostConfig::parse("[api]\ntoken_env = \"s3cr3t-t0ken\"\n").unwrap_err();
        assert_eq!(e.path, "api.token_env");
        let e = HostConfig::parse("[docker\n").unwrap_err();
        assert_eq!(e.path, "(syntax)");
        assert!(e.message.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = HostConfig::load(&dir.path().join("supervisor.toml")).unwrap();
        assert_eq!(c, HostConfig::default());
    }
}
