//! `restore`: a new home (the `--home` given) from a backup archive, all or nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::backup::restore::{restore, RestoreReport};
use crate::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive `supervisor backup` wrote
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,
    /// Print JSON: {"home","home_id","created_at","supervisor_version","schema_version","instances","messages","tasks","files","integrity"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let report = restore(&args.archive, home)
        .with_context(|| format!("cannot restore {}", args.archive.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(r: &RestoreReport) -> String {
    let home = r.home.display();
    let names = if r.instances.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.instances.join(", "))
    };
    format!(
        "restored home {home} from a backup of {} (supervisor {})\n\
         \x20 {} instance(s){names}, {} message(s), {} task(s), {} file(s); database integrity {}\n\
         next: supervisor --home {home} runtime build --activate   (runtimes are not in backups)\n\
         note: the home keeps its id {}: do not run its daemon on a Docker engine where a daemon of the original home runs\n",
        r.created_at,
        r.supervisor_version,
        r.instances.len(),
        r.messages,
        r.tasks,
        r.files,
        r.integrity,
        r.home_id,
    )
}
