//! `events`: the audit log (who did what, when), and with `-f` followed as it grows.

use std::io::Write;
use std::process::ExitCode;

use super::follow;
use crate::app::render;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the events of this instance (also after it was removed)
    pub name: Option<String>,
    /// How many of the latest events to print first
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u32,
    /// Keep printing new events as they are recorded, until interrupted
    #[arg(long, short)]
    pub follow: bool,
    /// Print JSON: an array of event objects, oldest first; with -f, one object per line
    #[arg(long)]
    pub json: bool,
}

/// Most events one look at the database prints.
const BATCH: u32 = 500;

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    // The log keeps a removed instance's events, so the name need not exist any more.
    let name = args.name.as_deref().map(super::parse_name).transpose()?;
    let instance = name.as_ref().map(|n| n.as_str());
    let store = home.open()?;
    // Newest first from the store; the newest one is where following starts.
    let latest = store.recent_events(instance, args.limit.max(1))?;
    let mut after = latest.first().map_or(0, |e| e.id);
    let mut first: Vec<_> = latest.into_iter().take(args.limit as usize).collect();
    first.reverse();
    let mut out = std::io::stdout().lock();
    if args.json && !args.follow {
        writeln!(out, "{}", serde_json::to_string_pretty(&first)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut batch = first;
    loop {
        for e in &batch {
            if args.json {
                follow::json_line(&mut out, e)?;
            } else {
                writeln!(out, "{}", render::events::line(e))?;
            }
            after = after.max(e.id);
        }
        out.flush()?;
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(follow::POLL);
        batch = store.events_after(after, instance, BATCH)?;
    }
}
