//! Operations on instances: creating, removing, starting and stopping them, their volumes,
//! and the last valid config of each.

pub mod create;
pub mod group;
pub mod last_good;
pub mod lifecycle;
pub mod persona;
pub mod remove;
pub mod soul;
