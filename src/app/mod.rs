//! The application: the daemon, the CLI and its dashboard, doctor, backup, and the operations
//! that combine the owners of external systems. Depends on `domain` and `infra`.

pub mod accept;
pub mod backup;
pub mod channels;
pub mod cli;
pub mod client;
pub mod container_output;
pub mod daemon;
pub mod doctor;
pub mod instances;
pub mod render;
pub mod router;
pub mod status;
pub mod tasks;
pub mod tui;
pub mod wire;
