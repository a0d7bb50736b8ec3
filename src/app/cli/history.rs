use std::io::Write;
use std::process::ExitCode;

use super::follow;
use crate::domain::escape;
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;
use crate::infra::store::messages::MessageRow;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose conversation to show
    pub name: String,
    /// How many messages (newest), both directions
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Keep printing new messages and answers as they are stored, until interrupted
    #[arg(long, short)]
    pub follow: bool,
    /// Print JSON (an array of message objects, oldest first; with -f, one object per line)
    #[arg(long)]
    pub json: bool,
}

/// Most messages one look at the database prints while following.
const BATCH: u32 = 500;

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let store = home.open()?;
    store.instance(name.as_str())?;
    if args.follow {
        return follow(home, &name, &args);
    }
    let rows: Vec<_> = store
        .history(name.as_str(), args.limit)?
        .into_iter()
        .filter(in_conversation)
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for m in &rows {
        writeln!(out, "{}", line(&name, m))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The last messages, then each new one as it is stored. A message is printed once, as it
/// was when it was stored (a question's note says `(waiting)`; its answer follows as a
/// line of its own). Ends when the instance is removed.
fn follow(home: &Home, name: &InstanceName, args: &Args) -> anyhow::Result<ExitCode> {
    let store = home.open()?;
    let (mut rows, mut cursor) = store.history_after(name.as_str(), None, args.limit)?;
    let mut out = std::io::stdout().lock();
    loop {
        for m in rows.iter().filter(|m| in_conversation(m)) {
            if args.json {
                follow::json_line(&mut out, m)?;
            } else {
                writeln!(out, "{}", line(name, m))?;
            }
        }
        out.flush()?;
        std::thread::sleep(follow::POLL);
        (rows, cursor) = store.history_after(name.as_str(), Some(cursor), BATCH)?;
        if rows.is_empty() && store.instance(name.as_str()).is_err() {
            eprintln!("note: {name} was removed");
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Silent task runs (nothing to say) are not part of the conversation; `task runs` has them.
fn in_conversation(m: &MessageRow) -> bool {
    m.scope != "silent"
}

/// `TIME  WHO (NOTE): BODY`. Bodies and senders come from outside (agents, API callers):
/// shown, not obeyed.
fn line(name: &InstanceName, m: &MessageRow) -> String {
    let who = if m.direction == "in" {
        crate::app::router::policy::shown_sender(m)
    } else {
        name.to_string()
    };
    let note = match m.state.as_str() {
        _ if m.channel == crate::app::router::policy::TASK_CHANNEL && m.direction == "in" => {
            " (scheduled task)"
        }
        "refused" => " (refused: sender not allowed)",
        "context" | "queued" => " (waiting)",
        "delivered" => " (in a turn)",
        _ => "",
    };
    format!(
        "{}  {}{note}: {}",
        crate::app::render::timestamp(m.created_at),
        escape::line(&who),
        escape::text(&m.body)
    )
}
