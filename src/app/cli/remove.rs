use std::process::ExitCode;

use crate::app::instances::remove::{remove, Removed};
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instances to remove (all are checked before any is removed)
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Delete the instances' files and history instead of archiving them
    #[arg(long)]
    pub purge: bool,
}

/// Every name is checked first, so a typo in one removes none; then each removal is
/// all-or-nothing on its own, and one that fails does not stop the others.
pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let mut store = home.open()?;
    let mut names: Vec<InstanceName> = Vec::new();
    let mut refused = false;
    for raw in &args.names {
        let checked = super::parse_name(raw).and_then(|name| {
            store.instance(name.as_str())?;
            Ok(name)
        });
        match checked {
            Ok(name) if names.contains(&name) => {}
            Ok(name) => names.push(name),
            Err(e) => {
                eprintln!("error: {}", crate::domain::error_text::one_line(&e));
                refused = true;
            }
        }
    }
    if refused {
        anyhow::bail!("nothing was removed");
    }
    let mut failed = false;
    for name in &names {
        match remove(home, &mut store, name, args.purge, super::CLI_ACTOR) {
            Ok(Removed::Archived(Some(path))) => println!(
                "removed instance {name}; its files are kept in {}",
                path.display()
            ),
            Ok(Removed::Archived(None)) => {
                println!("removed instance {name} (it had no files on disk)")
            }
            Ok(Removed::Purged) => {
                println!("removed instance {name} and deleted its files and history")
            }
            Err(e) => {
                let e = anyhow::Error::new(e).context(format!("cannot remove {name}"));
                eprintln!("error: {}", crate::domain::error_text::one_line(&e));
                failed = true;
            }
        }
    }
    // A running daemon removes the containers now; otherwise the next daemon start does.
    let client = crate::app::client::DaemonClient::for_home(home);
    let _ = crate::infra::blocking::block_on(client.reconcile());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
