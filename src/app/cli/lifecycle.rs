//! `start`, `stop` and `restart`: they change the desired state in the store, then ask a
//! running daemon to act on it now.

use std::process::ExitCode;

use crate::app::client::{ClientError, DaemonClient};
use crate::app::instances::lifecycle;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["names", "all"])))]
pub struct Args {
    /// Instance names (or --all for every instance)
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Every instance
    #[arg(long)]
    pub all: bool,
    /// Wait (up to 60 s) until the daemon reports the new state
    #[arg(long)]
    pub wait: bool,
}

pub use crate::app::instances::lifecycle::Verb;

pub fn run(home: &Home, verb: Verb, args: Args) -> anyhow::Result<ExitCode> {
    let mut store = home.open()?;
    let since = crate::infra::store::now_ms();
    let names: Vec<String> = if args.all {
        store.instances()?.into_iter().map(|r| r.name).collect()
    } else {
        let mut names = Vec::new();
        for raw in &args.names {
            names.push(super::parse_name(raw)?.to_string());
        }
        names
    };
    lifecycle::request(&mut store, &names, verb, super::CLI_ACTOR)?;
    let client = DaemonClient::for_home(home);
    match crate::infra::blocking::block_on(client.reconcile()) {
        Ok(Some(report)) if !report.docker => {
            eprintln!("note: {}", lifecycle::ENGINE_AWAY);
            if args.wait {
                anyhow::bail!(lifecycle::ENGINE_AWAY_NO_WAIT);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ok(_) => {}
        Err(e @ ClientError::NotRunning { .. }) => {
            eprintln!("note: saved, but {e}");
            if args.wait {
                anyhow::bail!("cannot wait: no daemon is running");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    }
    let word = verb.doing();
    if names.is_empty() {
        println!("no instances");
    }
    for name in &names {
        println!("{word} {name}");
    }
    if args.wait {
        let started = std::time::Instant::now();
        lifecycle::wait_for(&store, &names, verb, since, lifecycle::WAIT)?;
        println!("done in {:.2}s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
