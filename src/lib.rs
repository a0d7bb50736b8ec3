//! supervisor: runs many AI-agent instances on one machine, each in its own hardened
//! container, with SQLite as the single source of truth.

pub mod agent_image;
pub mod backup;
pub mod cli;
pub mod container_spec;
pub mod daemon;
pub mod disk;
pub mod docker;
pub mod doctor;
pub mod duration_words;
pub mod fsutil;
pub mod home;
pub mod host_config;
pub mod instance;
pub mod ipc;
pub mod llm;
pub mod logging;
pub mod render;
pub mod router;
pub mod runtime;
pub mod safefs;
pub mod schedule;
pub mod serde_text;
pub mod service;
pub mod status;
pub mod store;
pub mod tasks;
pub mod tui;
