//! The daemon (`supervisor run`): keeps every instance's container as the store says.

pub mod answerable;
pub mod api;
pub mod broker;
pub mod config_watch;
pub mod courier;
pub mod disk_usage;
pub mod live;
pub mod lock;
pub mod messaging;
pub mod metrics;
pub mod notify;
pub mod outbox;
pub mod plan;
pub mod rate_window;
pub mod reconcile;
pub mod restart;
pub mod rollout;
pub mod run;
pub mod scheduler;
pub mod shared;
pub mod state_change;
pub mod supervise;
pub mod task_requests;
pub mod web;
