//! One invalid value in a config file: where it is and what was expected. Every config
//! (an instance's config.json, supervisor.toml) reports its errors this way.

/// One invalid value: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    /// Checks that `raw` at `path` is a duration from `min` to `max`; `range` says the
    /// bounds and an example in words (`from 1s to 1h like "60s"`).
    pub fn duration_within(
        path: &str,
        raw: &str,
        min: std::time::Duration,
        max: std::time::Duration,
        range: &str,
    ) -> Result<std::time::Duration, FieldError> {
        match humantime::parse_duration(raw) {
            Ok(d) if d >= min && d <= max => Ok(d),
            _ => Err(FieldError::new(
                path,
                format!("expected a duration {range}, got {raw:?}"),
            )),
        }
    }

    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}
