//! `restore`: a new home (the `--home` given) from a backup archive, all or nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::backup::restore::{restore, RestoreOptions, RestoreReport};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive `supervisor backup` wrote
    #[arg(value_name = "FILE")]
    pub archive: PathBuf,
    /// Keep the original's home id and instance uids: only where the original home will never run again on this Docker engine (disaster recovery on a new machine)
    #[arg(long)]
    pub same_id: bool,
    /// Print JSON: {"home","home_id","original_home_id","same_id","owners_changed","created_at","supervisor_version","schema_version","instances","messages","tasks","files","integrity"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let opts = RestoreOptions {
        same_id: args.same_id,
    };
    let report = restore(&args.archive, home, opts)
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
    let identity = if r.same_id {
        format!(
            "note: the home keeps the original's id {}: never run its daemon on a Docker engine where the original home runs (they would take each other's containers)\n",
            r.home_id
        )
    } else {
        format!(
            "  new home id {} (the backup's was {}) and new instance uids: it can run beside the original\n",
            r.home_id, r.original_home_id
        )
    };
    format!(
        "restored home {home} from a backup of {} (supervisor {})\n\
         \x20 {} instance(s){names}, {} message(s), {} task(s), {} file(s); database integrity {}\n\
         {identity}\
         next: supervisor --home {home} runtime build   (runtimes are not in backups; the first one built becomes active)\n",
        r.created_at,
        r.supervisor_version,
        r.instances.len(),
        r.messages,
        r.tasks,
        r.files,
        r.integrity,
    )
}
