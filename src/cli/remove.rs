use std::process::ExitCode;

use crate::home::Home;
use crate::instance::remove::{remove, Removed};

#[derive(Debug, clap::Args)]
pub struct Args {
    pub name: String,
    /// Delete the instance's files and history instead of archiving them
    #[arg(long)]
    pub purge: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let mut store = home.open()?;
    match remove(home, &mut store, &name, args.purge, super::CLI_ACTOR)? {
        Removed::Archived(Some(path)) => {
            println!(
                "removed instance {name}; its files are kept in {}",
                path.display()
            )
        }
        Removed::Archived(None) => {
            println!("removed instance {name} (it had no files on disk)")
        }
        Removed::Purged => println!("removed instance {name} and deleted its files and history"),
    }
    // A running daemon removes the container now; otherwise the next daemon start does.
    let client = crate::daemon::client::DaemonClient::for_home(home);
    let _ = crate::docker::block_on(client.reconcile());
    Ok(ExitCode::SUCCESS)
}
