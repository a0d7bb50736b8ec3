//! Instances: their names, configs, personas, and the all-or-nothing create and remove.

pub mod config;
pub mod egress;
pub mod name;
pub mod settings;
pub mod state;

pub use config::InstanceConfig;
pub use name::InstanceName;
