//! The pure core: what an instance, a config, a schedule and a container spec are, and the
//! rules over them. Nothing here talks to Docker, SQLite, the network or the IPC directories,
//! and nothing here depends on `infra` or `app`.

pub mod channels;
pub mod clock;
pub mod duration_words;
pub mod engine_config;
pub mod error_text;
pub mod escape;
pub mod field_error;
pub mod format;
pub mod host_config;
pub mod ids;
pub mod instance;
pub mod schedule;
pub mod serde_text;
pub mod sizes;
pub mod telegram;
