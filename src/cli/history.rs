use std::process::ExitCode;

use crate::home::Home;
use crate::render::escape;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose conversation to show
    pub name: String,
    /// How many messages (newest), both directions
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON (an array of message objects, oldest first)
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let store = home.open()?;
    store.instance(name.as_str())?;
    // Silent task runs (nothing to say) are not part of the conversation; `task runs` has them.
    let rows: Vec<_> = store
        .history(name.as_str(), args.limit)?
        .into_iter()
        .filter(|m| m.scope != "silent")
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in rows {
        let who = if m.direction == "in" {
            m.sender.clone()
        } else {
            name.to_string()
        };
        let note = match m.state.as_str() {
            _ if m.channel == crate::router::policy::TASK_CHANNEL && m.direction == "in" => {
                " (scheduled task)"
            }
            "refused" => " (refused: sender not allowed)",
            "context" | "queued" => " (waiting)",
            "delivered" => " (in a turn)",
            _ => "",
        };
        // Bodies and senders come from outside (agents, API callers): shown, not obeyed.
        println!(
            "{}  {}{note}: {}",
            crate::render::timestamp(m.created_at),
            escape::line(&who),
            escape::text(&m.body)
        );
    }
    Ok(ExitCode::SUCCESS)
}
