//! The settings a new instance can be given where it is created (`create-instance`'s flags,
//! the API's `POST /v1/instances`), applied to the config template and validated as one
//! config. Errors carry the config key; each front end names its own flag or field.

use super::config::{FieldError, InstanceConfig, LifecycleMode, ModelConfig, TEMPLATE};

/// What a creator may choose; everything left out keeps the template's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// "echo" or "provider/model".
    pub model: Option<String>,
    pub port: Option<u16>,
    pub lifecycle: Option<LifecycleMode>,
    /// A size like "512m".
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<u32>,
}

impl Settings {
    /// The template with these settings, checked as a whole.
    pub fn config(&self) -> Result<InstanceConfig, FieldError> {
        let mut config = InstanceConfig::parse(TEMPLATE.as_bytes())?;
        if let Some(spec) = &self.model {
            config.model = ModelConfig::from_spec(spec)?;
        }
        config.port = self.port.or(config.port);
        if let Some(mode) = self.lifecycle {
            config.lifecycle.mode = mode;
        }
        if let Some(memory) = &self.memory {
            config.limits.memory = memory.clone();
        }
        if let Some(cpus) = self.cpus {
            config.limits.cpus = cpus;
        }
        if let Some(pids) = self.pids {
            config.limits.pids = pids;
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_the_template_and_are_validated() {
        let c = Settings {
            model: Some("openai/gpt-4o-mini".into()),
            memory: Some("1g".into()),
            lifecycle: Some(LifecycleMode::OnDemand),
            ..Settings::default()
        }
        .config()
        .unwrap();
        assert_eq!(c.model.spec(), "openai/gpt-4o-mini");
        assert_eq!(c.limits.memory, "1g");
        assert_eq!(c.lifecycle.mode, LifecycleMode::OnDemand);
        let e = Settings {
            port: Some(80),
            ..Settings::default()
        }
        .config()
        .unwrap_err();
        assert_eq!(e.path, "port");
        assert_eq!(
            Settings::default().config().unwrap(),
            InstanceConfig::parse(TEMPLATE.as_bytes()).unwrap()
        );
    }
}
