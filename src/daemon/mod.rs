//! The daemon (`supervisor run`): keeps every instance's container as the store says.

pub mod api;
pub mod client;
pub mod lock;
pub mod messaging;
pub mod plan;
pub mod reconcile;
pub mod restart;
pub mod run;
pub mod user;
