//! `supervisor egress NAME`: the web requests an instance's agent made through the host, and
//! how each ended. Read from the store; the URLs in it carry no credentials or query values.

use std::process::ExitCode;

use crate::domain::escape;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose web requests to show
    pub name: String,
    /// How many requests (newest)
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON (an array of request objects, oldest first)
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let store = home.open()?;
    store.instance(name.as_str())?;
    let rows = store.web_requests(name.as_str(), args.limit)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("{name} has made no web requests");
        return Ok(ExitCode::SUCCESS);
    }
    for r in rows {
        let outcome = match (&r.reason, r.status) {
            (Some(reason), Some(status)) => format!("{} ({reason}, {status})", r.result),
            (Some(reason), None) => format!("{} ({reason})", r.result),
            (None, Some(status)) => format!("{} {status}, {} bytes", r.result, r.bytes),
            (None, None) => r.result.clone(),
        };
        // URLs come from the agent: shown, not obeyed.
        println!(
            "{}  {:<6} {}  {outcome}  {} ms",
            crate::app::render::timestamp(r.at),
            r.action,
            escape::line(&r.url),
            r.millis
        );
    }
    Ok(ExitCode::SUCCESS)
}
