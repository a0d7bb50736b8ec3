use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Everything the supervisor creates is private to its user unless it says otherwise.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`supervisor list | head -1`) instead of failing on a broken pipe.
    // SAFETY: setting a signal to its default action, before any other thread exists.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = supervisor::app::cli::Cli::parse();
    match supervisor::app::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", supervisor::domain::error_text::one_line(&err));
            ExitCode::FAILURE
        }
    }
}
