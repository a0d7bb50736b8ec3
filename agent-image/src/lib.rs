//! The agent program's library: the IPC protocol types shared with the host, and the sandbox
//! self-check whose JSON report the host can read back.
pub mod protocol;
pub mod self_check;

/// This agent build's version (the crate version).
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
