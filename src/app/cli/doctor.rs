//! `doctor`: checks the installation (engine, image, runtime, modes, database, configs, the
//! containers' live hardening, orphans, disk, API token) and says how to fix each problem.

use std::process::ExitCode;

use crate::app::doctor::{self, run::Options};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repair what is safe to repair: modes (chmod) and containers of unknown instances
    #[arg(long)]
    pub fix: bool,
    /// Print JSON (fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

/// Exit code 0: every check ok; 3: warnings only; 4: at least one failure (1 is left to
/// "doctor could not run", 2 to usage errors, as for every command).
pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let report = doctor::run(home, &Options { fix: args.fix });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", doctor::render::table(&report));
    }
    Ok(ExitCode::from(report.exit_code()))
}
