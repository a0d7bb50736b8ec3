use std::process::ExitCode;

use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(home: &Home, _args: Args) -> anyhow::Result<ExitCode> {
    // Logs go to stderr (journald-friendly); RUST_LOG adjusts levels per module.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
    crate::daemon::run::run(home)?;
    Ok(ExitCode::SUCCESS)
}
