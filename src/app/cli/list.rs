use std::process::ExitCode;

use crate::app::render::{self, InstanceSummary};
use crate::domain::instance::{InstanceConfig, InstanceName};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (an array of objects; fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let store = home.open()?;
    // Chat groups are listed by `supervisor groups NAME`.
    let rows: Vec<InstanceSummary> = store
        .roots()?
        .into_iter()
        .map(|rec| {
            let dir = InstanceName::parse(&rec.name)
                .map(|n| home.instance_paths(&n))
                .expect("names in the store were validated");
            let config = InstanceConfig::load(&dir.config).map_err(|e| e.to_string());
            InstanceSummary::new(rec, &dir.dir, config)
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", render::instance_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}
