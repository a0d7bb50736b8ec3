//! `start`, `stop` and `restart`: they change the desired state in the store, then ask a
//! running daemon to act on it now.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::daemon::client::{ClientError, DaemonClient};
use crate::docker;
use crate::home::Home;
use crate::store::Store;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

pub fn run(home: &Home, verb: Verb, args: Args) -> anyhow::Result<ExitCode> {
    let mut store = home.open()?;
    let since = crate::store::now_ms();
    let names: Vec<String> = if args.all {
        store.instances()?.into_iter().map(|r| r.name).collect()
    } else {
        let mut names = Vec::new();
        for raw in &args.names {
            let name = super::parse_name(raw)?;
            store.instance(name.as_str())?;
            names.push(name.to_string());
        }
        names
    };
    for name in &names {
        match verb {
            Verb::Start => store.set_desired(name, "running", super::CLI_ACTOR)?,
            Verb::Stop => store.set_desired(name, "stopped", super::CLI_ACTOR)?,
            Verb::Restart => store.request_restart(name, super::CLI_ACTOR)?,
        }
    }
    let client = DaemonClient::for_home(home);
    match docker::block_on(client.reconcile()) {
        Ok(Some(report)) if !report.docker => {
            eprintln!("note: saved, but the daemon cannot reach the Docker engine; it applies the change when the engine is back");
            if args.wait {
                anyhow::bail!("cannot wait: the daemon cannot reach the Docker engine");
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
    let word = match verb {
        Verb::Start => "starting",
        Verb::Stop => "stopping",
        Verb::Restart => "restarting",
    };
    if names.is_empty() {
        println!("no instances");
    }
    for name in &names {
        println!("{word} {name}");
    }
    if args.wait {
        wait_for(&store, &names, verb, since)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls the store until every instance shows the state `verb` leads to. Only what the daemon
/// recorded after `since` (the request) counts as a failure.
fn wait_for(store: &Store, names: &[String], verb: Verb, since: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    let mut pending: Vec<&String> = names.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for name in pending {
            let rec = store.instance(name)?;
            let done = !rec.restart_pending
                && match verb {
                    Verb::Stop => matches!(rec.state.as_str(), "stopped"),
                    Verb::Start | Verb::Restart => matches!(rec.state.as_str(), "running" | "idle"),
                };
            let fresh = rec.state_changed_at.is_some_and(|t| t >= since);
            if fresh && matches!(rec.state.as_str(), "error" | "crash-loop") && verb != Verb::Stop {
                anyhow::bail!(
                    "{name} is in state {}: {}",
                    rec.state,
                    rec.state_detail.unwrap_or_default()
                );
            }
            if !done {
                still.push(name);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out waiting for {}",
                pending
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("done in {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}
