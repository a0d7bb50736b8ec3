use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Everything the supervisor creates is private to its user unless it says otherwise.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let cli = supervisor::cli::Cli::parse();
    match supervisor::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", supervisor::cli::one_line(&err));
            ExitCode::FAILURE
        }
    }
}
