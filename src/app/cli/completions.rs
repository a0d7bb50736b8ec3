//! `supervisor completions SHELL`: the shell's completion script, generated from the same
//! definitions the parser uses, so it can never offer an option that does not exist.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The program's name in completion scripts and man pages.
pub const BIN: &str = "supervisor";

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &script(args.shell))?;
    Ok(ExitCode::SUCCESS)
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut buf);
    buf
}
