//! The owners of external systems, one module per system: Docker (`docker`), SQLite (`store`),
//! the IPC directories (`ipc`), agent-writable trees (`safefs`), disk images (`disk`), model
//! providers (`llm`), the home directory and its files. They depend on `domain` and on each
//! other without circles, never on `app`.

pub mod agent_image;
pub mod blocking;
pub mod container_spec;
pub mod container_user;
pub mod disk;
pub mod docker;
pub mod fsutil;
pub mod home;
pub mod inbox;
pub mod ipc;
pub mod llm;
pub mod logging;
pub mod runtime;
pub mod safefs;
pub mod service;
pub mod store;
pub mod telegram;
pub mod volume;
