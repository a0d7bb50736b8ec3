use std::process::ExitCode;

use anyhow::Context;

use crate::infra::home::Home;
use crate::infra::logging::{self, LogFormat, LogOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Log format on stderr: text (for people and journald) or json (one object per line)
    #[arg(
        long,
        value_enum,
        env = "SUPERVISOR_LOG_FORMAT",
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Log levels per module, like `info,supervisor::daemon::messaging=debug`; wins over
    /// RUST_LOG [default: RUST_LOG, else info]
    #[arg(long, value_name = "DIRECTIVES", value_parser = logging::level_arg)]
    pub log_level: Option<String>,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    // Logs go to stderr only (a service manager or journald keeps them), redacted of secrets.
    logging::init(&LogOptions {
        format: args.log_format,
        level: args.log_level,
    })
    .context("cannot set up logging")?;
    crate::app::daemon::run::run(home)?;
    Ok(ExitCode::SUCCESS)
}
