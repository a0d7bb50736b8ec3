//! `status --watch`: the status report as a live dashboard in the terminal. `app` is the
//! state and its keys, `view` draws it, `fetch` does the I/O, `commands`
//! runs what its keys ask for, `run` owns the terminal.

mod app;
mod commands;
mod fetch;
mod run;
mod view;

pub use run::{run, TuiError};
