//! What doctor knows of the home before its checks run: the store's facts and every config,
//! read once and shared by the checks.

use std::collections::BTreeMap;

use crate::domain::instance::config::ConfigError;
use crate::domain::instance::InstanceConfig;
use crate::infra::store::Store;

/// What the store says about the home.
pub(crate) struct StoreFacts {
    pub store: Store,
    pub home_id: String,
    pub instances: Vec<String>,
    pub active_runtime: Option<String>,
}

/// Every live instance's config.json as the loader judged it.
pub(crate) type Configs = BTreeMap<String, Result<InstanceConfig, ConfigError>>;
