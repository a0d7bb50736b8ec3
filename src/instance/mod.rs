//! Instances: their names, configs, personas, and the all-or-nothing create and remove.

pub mod config;
pub mod create;
pub mod egress;
pub mod last_good;
pub mod lifecycle;
pub mod name;
pub mod remove;
pub mod settings;
pub mod soul;
pub mod volume;

pub use config::InstanceConfig;
pub use name::InstanceName;
