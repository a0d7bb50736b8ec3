//! `status --watch`: the status report as a live dashboard in the terminal. `app` is the
//! state and its keys, `view` draws it, `fetch` does the I/O, `run` owns the terminal.

mod app;
mod fetch;
mod run;
mod view;

pub use fetch::PickContainer;
pub use run::{run, TuiError};
