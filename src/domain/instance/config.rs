//! The per-instance configuration (`instances/<name>/config.json`): its schema, defaults and
//! validation. Every error names the key path and what was expected; the loader adds the file.

use regex::Regex;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::serde_text;

pub use crate::domain::field_error::FieldError;
pub use crate::domain::sizes::{format_size, is_env_var_name, parse_size};

/// The smallest disk an instance can be given: ext4 with room for a workspace.
pub const MIN_DISK_BYTES: u64 = 64 << 20;

/// The config format version this build reads and writes.
pub const CONFIG_VERSION: u32 = 1;

/// A config file larger than this is refused before parsing.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// The template new instances start from; its values are the documented defaults.
pub const TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/config.json"
));

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub version: u32,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub port: Option<u16>,
    /// Regex a message must match to start a turn; `null` means every message does.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Senders whose messages are delivered. Never empty: `["*"]` is how to say "everyone".
    #[serde(default = "default_allow_from")]
    pub allow_from: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub network: NetworkPolicy,
    #[serde(default)]
    pub budget: Budget,
    /// A built-in scheduled task; off by default.
    #[serde(default)]
    pub heartbeat: Heartbeat,
    /// Web access through the host; absent means none (src/instance/egress.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<super::egress::EgressPolicy>,
    /// Ways in besides the CLI and the API (src/domain/channels.rs); absent means none.
    #[serde(
        default,
        skip_serializing_if = "crate::domain::channels::Channels::is_empty"
    )]
    pub channels: crate::domain::channels::Channels,
    /// One container for the instance (default), or one per chat conversation.
    #[serde(default, skip_serializing_if = "Isolation::is_instance")]
    pub isolation: Isolation,
    /// On a swarm: node labels the instance's node must carry (`{"zone": "eu"}` places it
    /// only on nodes labelled `zone=eu`); empty spreads it over every node. Ignored by the
    /// local engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placement: BTreeMap<String, String>,
}

/// Who shares a container, a workspace and a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Every conversation of the instance is served by its one container.
    #[default]
    Instance,
    /// Every chat conversation (channel + chat [+ topic]) gets its own container, workspace,
    /// memory and history (a group); the operator's own conversation stays the instance's.
    Chat,
}

impl Isolation {
    pub fn is_instance(&self) -> bool {
        *self == Isolation::Instance
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Instance => "instance",
            Isolation::Chat => "chat",
        }
    }
}

/// The heartbeat: a turn every `every`, with `prompt`, whose runs that have nothing to say
/// stay silent (the agent replies with nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_heartbeat_every")]
    pub every: String,
    #[serde(default = "default_heartbeat_prompt")]
    pub prompt: String,
    /// `isolated` (default): no chat history; `continue`: the recent conversation too.
    #[serde(default = "default_heartbeat_context")]
    pub context_mode: String,
}

fn default_heartbeat_every() -> String {
    "30m".into()
}

fn default_heartbeat_prompt() -> String {
    "Heartbeat: look over your notes and pending work. If something needs the person's \
     attention now, say it briefly; otherwise reply with nothing."
        .into()
}

fn default_heartbeat_context() -> String {
    "isolated".into()
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            enabled: false,
            every: default_heartbeat_every(),
            prompt: default_heartbeat_prompt(),
            context_mode: default_heartbeat_context(),
        }
    }
}

impl Heartbeat {
    fn validate(&self) -> Result<(), FieldError> {
        crate::domain::schedule::parse_interval(&self.every)
            .map_err(|e| FieldError::new("heartbeat.every", e.to_string()))?;
        if self.prompt.trim().is_empty() || self.prompt.len() > 16 * 1024 {
            return Err(FieldError::new(
                "heartbeat.prompt",
                "expected a prompt of 1 to 16384 bytes",
            ));
        }
        if !matches!(self.context_mode.as_str(), "isolated" | "continue") {
            return Err(FieldError::new(
                "heartbeat.context_mode",
                format!(
                    "expected \"isolated\" or \"continue\", got {:?}",
                    self.context_mode
                ),
            ));
        }
        Ok(())
    }
}

/// Limits on model use, enforced by the host before any request goes out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Prompt + completion tokens per UTC day; 0 means no limit.
    pub daily_tokens: u64,
    /// Model requests per minute; 0 means no limit. Requests over it wait for a slot.
    pub requests_per_minute: u32,
    /// The most completion tokens one model request may ask for: the agent's `max_tokens` is
    /// lowered to it, and it is what a request that names none gets. Optional in the file, so
    /// configs written before it existed still load.
    #[serde(default = "default_max_tokens_per_request")]
    pub max_tokens_per_request: u32,
}

/// Enough for a long answer, small enough that one request cannot spend a day's budget.
pub const DEFAULT_MAX_TOKENS_PER_REQUEST: u32 = 4096;

/// The highest `budget.max_tokens_per_request` accepted: beyond any model's output window.
pub const MAX_TOKENS_PER_REQUEST_LIMIT: u32 = 1_000_000;

fn default_max_tokens_per_request() -> u32 {
    DEFAULT_MAX_TOKENS_PER_REQUEST
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            daily_tokens: 0,
            requests_per_minute: 60,
            max_tokens_per_request: DEFAULT_MAX_TOKENS_PER_REQUEST,
        }
    }
}

impl Budget {
    fn validate(&self) -> Result<(), FieldError> {
        // No "0 means no limit" here: every request goes out with a ceiling.
        if !(1..=MAX_TOKENS_PER_REQUEST_LIMIT).contains(&self.max_tokens_per_request) {
            return Err(FieldError::new(
                "budget.max_tokens_per_request",
                format!(
                    "expected a number of tokens from 1 to {MAX_TOKENS_PER_REQUEST_LIMIT}, got {}",
                    self.max_tokens_per_request
                ),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: Provider,
    pub name: String,
    /// Overrides the provider's default endpoint (OpenAI-compatible servers, proxies).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The NAME of the host environment variable holding the API key; never the key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Echo,
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory: String,
    pub cpus: f64,
    pub pids: u32,
    pub tmp: String,
    /// What the workspace and the IPC queues may hold together, inodes included (one per
    /// 16 KiB of it); a hard limit where the host allows it (docs/configuration.md).
    #[serde(default = "default_disk")]
    pub disk: String,
}

fn default_disk() -> String {
    "1g".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub mode: LifecycleMode,
    pub idle_timeout: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleMode {
    Persistent,
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPolicy {
    #[default]
    None,
    Bridge,
}

fn default_allow_from() -> Vec<String> {
    vec!["local".to_string()]
}

/// Node label keys and values as Docker accepts them in a constraint
/// (`node.labels.KEY==VALUE`): nothing that could end or widen the expression.
fn validate_placement(placement: &BTreeMap<String, String>) -> Result<(), FieldError> {
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 128
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    let value_ok = |v: &str| {
        !v.is_empty()
            && v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    };
    for (key, value) in placement {
        if !key_ok(key) {
            return Err(FieldError::new(
                "placement",
                format!("expected node label names of letters, digits, . _ -, got {key:?}"),
            ));
        }
        if !value_ok(value) {
            return Err(FieldError::new(
                format!("placement.{key}"),
                format!("expected a label value of letters, digits, . _ - : /, got {value:?}"),
            ));
        }
    }
    Ok(())
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            model: ModelConfig::default(),
            port: None,
            trigger: None,
            allow_from: default_allow_from(),
            limits: Limits::default(),
            lifecycle: Lifecycle::default(),
            network: NetworkPolicy::None,
            budget: Budget::default(),
            heartbeat: Heartbeat::default(),
            egress: None,
            channels: Default::default(),
            isolation: Isolation::Instance,
            placement: BTreeMap::new(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Echo,
            name: "echo".to_string(),
            base_url: None,
            api_key_env: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: "512m".to_string(),
            cpus: 1.0,
            pids: 256,
            tmp: "64m".to_string(),
            disk: default_disk(),
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            mode: LifecycleMode::Persistent,
            idle_timeout: "15m".to_string(),
        }
    }
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Echo => "echo",
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
        }
    }

    /// The environment variable a new instance names for this provider's key.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Provider::Echo => None,
            Provider::Openai => Some("OPENAI_API_KEY"),
            Provider::Anthropic => Some("ANTHROPIC_API_KEY"),
        }
    }
}

impl LifecycleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleMode::Persistent => "persistent",
            LifecycleMode::OnDemand => "on-demand",
        }
    }
}

impl NetworkPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::None => "none",
            NetworkPolicy::Bridge => "bridge",
        }
    }
}

impl ModelConfig {
    /// Parses the `--model` shorthand: `echo`, or `provider/model` where the model name
    /// may itself contain slashes (`openai/meta-llama/llama-3-70b` on a compatible server).
    pub fn from_spec(spec: &str) -> Result<Self, FieldError> {
        let (provider, name) = match spec.split_once('/') {
            Some((p, n)) => (p, n),
            None if spec == "echo" => ("echo", "echo"),
            None => {
                return Err(FieldError::new(
                    "model",
                    format!("expected \"echo\" or \"provider/model\" (providers: echo, openai, anthropic), got {spec:?}"),
                ))
            }
        };
        let provider = match provider {
            "echo" => Provider::Echo,
            "openai" => Provider::Openai,
            "anthropic" => Provider::Anthropic,
            other => {
                return Err(FieldError::new(
                    "model.provider",
                    format!("expected one of echo, openai, anthropic, got {other:?}"),
                ))
            }
        };
        Ok(Self {
            provider,
            name: name.to_string(),
            base_url: None,
            api_key_env: provider.default_key_env().map(str::to_string),
        })
    }

    /// `provider/name`, the form `--model` takes and `list` shows.
    pub fn spec(&self) -> String {
        format!("{}/{}", self.provider.as_str(), self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", file.display())]
    Invalid { file: PathBuf, source: FieldError },
}

impl InstanceConfig {
    /// Reads, parses and validates a config file; any problem names the file and key path.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(file).map_err(read_err)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                source: FieldError::new(
                    "(file)",
                    format!("{len} bytes is larger than the {MAX_CONFIG_BYTES}-byte limit"),
                ),
            });
        }
        let bytes = std::fs::read(file).map_err(read_err)?;
        Self::parse(&bytes).map_err(|source| ConfigError::Invalid {
            file: file.to_path_buf(),
            source,
        })
    }

    /// Parses and validates config JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, FieldError> {
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|err| {
            let (path, message) = serde_text::json_error(&err.path().to_string(), err.inner());
            FieldError::new(path, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config a chat group of this instance runs with: the instance's own, but started
    /// on demand (stopped after the instance's idle timeout), with no port, no heartbeat and
    /// no channels of its own (the instance keeps those and routes to its groups).
    pub fn for_group(mut self) -> Self {
        self.lifecycle.mode = LifecycleMode::OnDemand;
        self.port = None;
        self.heartbeat.enabled = false;
        self.channels = Default::default();
        self
    }

    pub fn to_json_pretty(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("config serialises");
        s.push('\n');
        s
    }

    /// Checks every value the type system cannot: ranges, formats, names.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_placement(&self.placement)?;
        if self.version != CONFIG_VERSION {
            return Err(FieldError::new(
                "version",
                format!(
                    "expected {CONFIG_VERSION} (the config format this supervisor reads), got {}",
                    self.version
                ),
            ));
        }
        self.model.validate()?;
        if let Some(port) = self.port {
            if port < 1024 {
                return Err(FieldError::new(
                    "port",
                    format!("expected a port from 1024 to 65535, got {port}"),
                ));
            }
        }
        if let Some(pattern) = &self.trigger {
            if pattern.len() > 512 {
                return Err(FieldError::new(
                    "trigger",
                    "expected a regular expression of at most 512 characters",
                ));
            }
            Regex::new(pattern).map_err(|e| {
                let first = e.to_string().lines().last().unwrap_or_default().to_string();
                FieldError::new(
                    "trigger",
                    format!("expected a regular expression: {}", first.trim()),
                )
            })?;
        }
        validate_allow_from(&self.allow_from)?;
        self.limits.validate()?;
        self.lifecycle.validate()?;
        self.budget.validate()?;
        self.heartbeat.validate()?;
        if let Some(egress) = &self.egress {
            egress.validate()?;
        }
        self.channels.validate()?;
        Ok(())
    }
}

impl ModelConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() != self.name.len() || self.name.len() > 200 {
            return Err(FieldError::new(
                "model.name",
                "expected a model name of 1 to 200 characters with no surrounding spaces",
            ));
        }
        if let Some(url) = &self.base_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "https://".len()
                && !url.chars().any(char::is_whitespace);
            if !ok {
                return Err(FieldError::new(
                    "model.base_url",
                    format!("expected an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        if let Some(var) = &self.api_key_env {
            if !is_env_var_name(var) {
                return Err(FieldError::new(
                    "model.api_key_env",
                    "expected the NAME of an environment variable (like OPENAI_API_KEY: \
                     capital letters, digits and underscores), never the key itself",
                ));
            }
        }
        Ok(())
    }
}

impl Limits {
    pub fn memory_bytes(&self) -> u64 {
        parse_size(&self.memory).expect("validated")
    }

    pub fn tmp_bytes(&self) -> u64 {
        parse_size(&self.tmp).expect("validated")
    }

    pub fn disk_bytes(&self) -> u64 {
        parse_size(&self.disk).expect("validated")
    }

    fn validate(&self) -> Result<(), FieldError> {
        check_size("limits.memory", &self.memory, 16 << 20)?;
        check_size("limits.tmp", &self.tmp, 1 << 20)?;
        check_size("limits.disk", &self.disk, MIN_DISK_BYTES)?;
        if !(self.cpus.is_finite() && self.cpus >= 0.01 && self.cpus <= 256.0) {
            return Err(FieldError::new(
                "limits.cpus",
                format!(
                    "expected a number of CPUs from 0.01 to 256, got {}",
                    self.cpus
                ),
            ));
        }
        if !(16..=65536).contains(&self.pids) {
            return Err(FieldError::new(
                "limits.pids",
                format!(
                    "expected a process limit from 16 to 65536, got {}",
                    self.pids
                ),
            ));
        }
        Ok(())
    }
}

impl Lifecycle {
    pub fn idle_timeout(&self) -> Duration {
        humantime::parse_duration(&self.idle_timeout).expect("validated")
    }

    fn validate(&self) -> Result<(), FieldError> {
        let bad = || {
            FieldError::new(
                "lifecycle.idle_timeout",
                format!(
                    "expected a duration of at least 10s like \"15m\" or \"1h\", got {:?}",
                    self.idle_timeout
                ),
            )
        };
        let d = humantime::parse_duration(&self.idle_timeout).map_err(|_| bad())?;
        if d < Duration::from_secs(10) {
            return Err(bad());
        }
        Ok(())
    }
}

fn validate_allow_from(list: &[String]) -> Result<(), FieldError> {
    if list.is_empty() {
        return Err(FieldError::new(
            "allow_from",
            "is empty, so no sender could ever reach this instance: list senders, \
             use [\"local\"] for the operator or [\"*\"] for everyone",
        ));
    }
    // Compiled once: validation runs for every config `list` reads.
    static SENDER: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^[a-z][a-z0-9-]*:\S{1,128}$").expect("static regex")
    });
    let sender = &*SENDER;
    for (i, entry) in list.iter().enumerate() {
        if !(entry == "*" || entry == "local" || sender.is_match(entry)) {
            return Err(FieldError::new(
                format!("allow_from[{i}]"),
                format!(
                    "expected \"*\", \"local\" or \"channel:sender-id\" (like \"telegram:12345\"), got {entry:?}"
                ),
            ));
        }
    }
    Ok(())
}

fn check_size(path: &str, value: &str, min: u64) -> Result<(), FieldError> {
    match parse_size(value) {
        Some(n) if n >= min => Ok(()),
        _ => Err(FieldError::new(
            path,
            format!(
                "expected a size of at least {}m like \"512m\" or \"2g\", got {value:?}",
                min >> 20
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(json: &str) -> FieldError {
        InstanceConfig::parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn template_is_the_default() {
        let parsed = InstanceConfig::parse(TEMPLATE.as_bytes()).unwrap();
        assert_eq!(parsed, InstanceConfig::default());
        assert_eq!(parsed.to_json_pretty(), TEMPLATE);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = InstanceConfig::parse(br#"{"version": 1}"#).unwrap();
        assert_eq!(c, InstanceConfig::default());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = err_of(
            r#"{"version": 1, "limits": {"memory": "1g", "cpus": 1, "pids": 64, "tmp": "8m", "swap": "1g"}}"#,
        );
        assert_eq!(e.path, "limits.swap");
        assert!(e.message.contains("not a known key here"), "{e}");
        let e = err_of(r#"{"version": 1, "colour": "blue"}"#);
        assert_eq!(e.path, "colour");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let e = err_of(r#"{"version": 1, "port": "eighty"}"#);
        assert_eq!(e.path, "port");
        assert!(
            e.message
                .contains("expected a whole number from 0 to 65535"),
            "{e}"
        );
        let e =
            err_of(r#"{"version": 1, "lifecycle": {"mode": "sometimes", "idle_timeout": "1m"}}"#);
        assert_eq!(e.path, "lifecycle.mode");
        assert!(e.message.contains("persistent"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            (r#"{"version": 2}"#, "version"),
            (r#"{"version": 1, "port": 80}"#, "port"),
            (r#"{"version": 1, "trigger": "(unclosed"}"#, "trigger"),
            (r#"{"version": 1, "allow_from": []}"#, "allow_from"),
            (
                r#"{"version": 1, "allow_from": ["local", "not a sender"]}"#,
                "allow_from[1]",
            ),
            (
                r#"{"version": 1, "limits": {"memory": "lots", "cpus": 1, "pids": 64, "tmp": "8m"}}"#,
                "limits.memory",
            ),
            (
                r#"{"version": 1, "limits": {"memory": "1m", "cpus": 1, "pids": 64, "tmp": "8m"}}"#,
                "limits.memory",
            ),
            (
                r#"{"version": 1, "limits": {"memory": "1g", "cpus": 0, "pids": 64, "tmp": "8m"}}"#,
                "limits.cpus",
            ),
            (
                r#"{"version": 1, "limits": {"memory": "1g", "cpus": 1, "pids": 1, "tmp": "8m"}}"#,
                "limits.pids",
            ),
            (
                r#"{"version": 1, "lifecycle": {"mode": "on-demand", "idle_timeout": "1s"}}"#,
                "lifecycle.idle_timeout",
            ),
            (
                r#"{"version": 1, "model": {"provider": "openai", "name": "gpt", "api_key_env": "sk-abc123"}}"#,
                "model.api_key_env",
            ),
            (
                r#"{"version": 1, "model": {"provider": "openai", "name": "gpt", "base_url": "ftp://x"}}"#,
                "model.base_url",
            ),
            (
                r#"{"version": 1, "model": {"provider": "openai", "name": ""}}"#,
                "model.name",
            ),
            (r#"{"version": 1, "network": "host"}"#, "network"),
            (
                r#"{"version": 1, "budget": {"daily_tokens": 0, "requests_per_minute": 60, "max_tokens_per_request": 0}}"#,
                "budget.max_tokens_per_request",
            ),
            (
                r#"{"version": 1, "budget": {"daily_tokens": 0, "requests_per_minute": 60, "max_tokens_per_request": 1000001}}"#,
                "budget.max_tokens_per_request",
            ),
            (
                r#"{"version": 1, "budget": {"daily_tokens": 0, "requests_per_minute": 60, "max_tokens_per_request": -1}}"#,
                "budget.max_tokens_per_request",
            ),
            (
                r#"{"version": 1, "egress": {"allow": ["docs.rs", "not a host"]}}"#,
                "egress.allow[1]",
            ),
            (r#"{"version": 1, "egress": {"alow": []}}"#, "egress.alow"),
            (
                r#"{"version": 1, "egress": {"allow": ["a.com"], "limits": {"redirects": 99}}}"#,
                "egress.limits.redirects",
            ),
        ];
        for (json, path) in cases {
            assert_eq!(err_of(json).path, path, "{json}");
        }
    }

    #[test]
    fn egress_is_off_unless_listed() {
        assert!(InstanceConfig::default().egress.is_none());
        let c = InstanceConfig::parse(br#"{"version": 1, "egress": {}}"#).unwrap();
        assert!(!c.egress.unwrap().is_enabled());
        let c =
            InstanceConfig::parse(br#"{"version": 1, "egress": {"allow": ["docs.rs"]}}"#).unwrap();
        let egress = c.egress.clone().unwrap();
        assert!(egress.is_enabled());
        assert_eq!(egress.limits, super::super::egress::EgressLimits::default());
        // Written back as it was given, so `config set`-style rewrites keep it.
        assert_eq!(
            InstanceConfig::parse(c.to_json_pretty().as_bytes()).unwrap(),
            c
        );
    }

    #[test]
    fn a_budget_written_before_the_token_ceiling_existed_gets_the_default() {
        let c = InstanceConfig::parse(
            br#"{"version": 1, "budget": {"daily_tokens": 100, "requests_per_minute": 5}}"#,
        )
        .unwrap();
        assert_eq!(
            c.budget.max_tokens_per_request,
            DEFAULT_MAX_TOKENS_PER_REQUEST
        );
        let e = err_of(r#"{"version": 1, "budget": {"max_tokens_per_request": 10}}"#);
        assert!(e.message.contains("daily_tokens"), "{e}");
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = err_of(r#"{"version": 1,"#);
        assert_eq!(e.path, "(syntax)");
        assert!(e.message.contains("line 1, column 14"), "{e}");
        assert!(!e.message.contains("EOF"), "{e}");
    }

    #[test]
    fn model_spec_shorthand() {
        let m = ModelConfig::from_spec("echo").unwrap();
        assert_eq!((m.provider, m.name.as_str()), (Provider::Echo, "echo"));
        let m = ModelConfig::from_spec("openai/meta-llama/llama-3").unwrap();
        assert_eq!(m.provider, Provider::Openai);
        assert_eq!(m.name, "meta-llama/llama-3");
        assert_eq!(m.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(ModelConfig::from_spec("gpt4").unwrap_err().path, "model");
        assert_eq!(
            ModelConfig::from_spec("cohere/x").unwrap_err().path,
            "model.provider"
        );
    }

    #[test]
    fn isolation_defaults_to_the_instance_and_a_group_runs_on_demand() {
        let c = InstanceConfig::parse(br#"{"version": 1}"#).unwrap();
        assert_eq!(c.isolation, Isolation::Instance);
        assert!(!c.to_json_pretty().contains("isolation"), "unchanged files");
        let c = InstanceConfig::parse(
            br#"{"version": 1, "isolation": "chat", "port": 8080,
            "heartbeat": {"enabled": true}}"#,
        )
        .unwrap();
        assert_eq!(c.isolation, Isolation::Chat);
        assert!(c.to_json_pretty().contains(r#""isolation": "chat""#));
        let g = c.clone().for_group();
        assert_eq!(g.lifecycle.mode, LifecycleMode::OnDemand);
        assert_eq!(g.lifecycle.idle_timeout, c.lifecycle.idle_timeout);
        assert_eq!((g.port, g.heartbeat.enabled), (None, false));
        assert_eq!((g.limits, g.model), (c.limits, c.model));
        let bad = InstanceConfig::parse(br#"{"version": 1, "isolation": "group"}"#).unwrap_err();
        assert_eq!(bad.path, "isolation");
    }

    #[test]
    fn placement_is_node_labels_and_absent_by_default() {
        let c = InstanceConfig::default();
        assert!(!c.to_json_pretty().contains("placement"), "unchanged files");
        let c = InstanceConfig::parse(br#"{"version": 1, "placement": {"zone": "eu-1"}}"#).unwrap();
        assert_eq!(c.placement["zone"], "eu-1");
        let bad =
            InstanceConfig::parse(br#"{"version": 1, "placement": {"zone": "a,b"}}"#).unwrap_err();
        assert_eq!(bad.path, "placement.zone");
        let bad =
            InstanceConfig::parse(br#"{"version": 1, "placement": {"a b": "x"}}"#).unwrap_err();
        assert_eq!(bad.path, "placement");
    }

    #[test]
    fn sizes() {
        assert_eq!(format_size(1 << 30), "1g");
        assert_eq!(format_size(512 << 20), "512m");
        assert_eq!(format_size(1536 << 20), "1536m");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        for bad in ["", "m", "1.5g", "-1m", "12x", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
