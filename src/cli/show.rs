use std::process::ExitCode;

use crate::home::Home;
use crate::instance::soul::Soul;
use crate::instance::InstanceConfig;
use crate::render::{self, InstanceDetail};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub name: String,
    /// Print JSON (fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let store = home.open()?;
    let record = store.instance(name.as_str())?;
    let paths = home.instance_paths(&name);
    let config = InstanceConfig::load(&paths.config);
    let soul_title = std::fs::read_to_string(&paths.soul)
        .ok()
        .and_then(|t| Soul::title_of(&t).map(str::to_string));
    let detail = InstanceDetail {
        counts: store.instance_counts(record.id)?,
        recent_events: store.recent_events(Some(name.as_str()), 10)?,
        summary: render::InstanceSummary::new(
            record,
            &paths.dir,
            config.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
        ),
        soul_title,
        paths,
        config: config.as_ref().ok().cloned(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        print!("{}", render::instance_detail(&detail));
    }
    // A broken config is shown, and also makes the command fail so scripts notice.
    config?;
    Ok(ExitCode::SUCCESS)
}
