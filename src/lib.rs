//! supervisor: runs many AI-agent instances on one machine, each in its own hardened
//! container, with SQLite as the single source of truth.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.
//!
//! The tree shows the direction of dependencies: `domain` (pure) ← `infra` (the owners of
//! external systems) ← `app` (daemon, CLI, dashboard). `tests/module_graph.rs` holds it.

pub mod app;
pub mod domain;
pub mod infra;
