//! `task`: scheduled tasks. Commands change the store directly (so they work with no daemon)
//! and then wake a running daemon's scheduler.

use std::process::ExitCode;

use crate::app::client::{ClientError, DaemonClient};
use crate::app::render::tasks::{runs_table, tasks_table};
use crate::app::tasks::{self, TaskInput};
use crate::domain::schedule::Kind;
use crate::infra::home::Home;
use crate::infra::store::now_ms;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a task to an instance: exactly one of --cron, --every or --at.
    Add(AddArgs),
    /// List tasks: next run, last run, last result, status.
    List(ListArgs),
    /// Stop a task from running until it is resumed.
    Pause(IdArgs),
    /// Resume a paused task (what was missed while paused is skipped).
    Resume(IdArgs),
    /// Remove a task and its run history.
    Rm(IdArgs),
    /// Run a task once now, whatever its schedule or status.
    RunNow(IdArgs),
    /// A task's runs, newest first: when, how long, outcome, result excerpt.
    Runs(RunsArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("schedule").required(true).args(["cron", "every", "at"])))]
pub struct AddArgs {
    /// Instance name
    pub name: String,
    /// A 5-field cron expression: minute hour day-of-month month day-of-week
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// A fixed interval such as 30m, 2h or 1h30m, counted from the first run
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// One run at a local time such as 2026-12-01T09:00 (or RFC 3339 with an offset)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// IANA time zone for --cron and --at [default: UTC]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// What the agent is asked to do on each run
    #[arg(long)]
    pub prompt: String,
    /// isolated: each run starts without the conversation; continue: it sees it
    #[arg(long, value_name = "MODE", default_value = "isolated",
          value_parser = ["isolated", "continue"])]
    pub context: String,
    /// Print the task as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this instance's tasks
    pub name: Option<String>,
    /// Print JSON (an array of task objects)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// Task id (see `task list`)
    pub id: i64,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Task id (see `task list`)
    pub id: i64,
    /// How many runs (newest)
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON (an array of run objects, newest first)
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, cmd: Command) -> anyhow::Result<ExitCode> {
    let mut store = home.open()?;
    let actor = super::CLI_ACTOR;
    match cmd {
        Command::Add(a) => {
            let name = super::parse_name(&a.name)?;
            store.instance(name.as_str())?;
            let (kind, text) = match (&a.cron, &a.every, &a.at) {
                (Some(c), _, _) => (Kind::Cron, c),
                (_, Some(e), _) => (Kind::Every, e),
                (_, _, Some(t)) => (Kind::At, t),
                _ => unreachable!("clap requires one of them"),
            };
            let input = TaskInput {
                kind,
                schedule: text,
                tz: a.tz.as_deref(),
                prompt: &a.prompt,
                context_mode: &a.context,
            };
            let t = tasks::create(&mut store, name.as_str(), &input, actor, now_ms())?;
            wake(home);
            print_task(&t, a.json, "added")?;
        }
        Command::List(a) => {
            let filter = match &a.name {
                Some(raw) => {
                    let name = super::parse_name(raw)?;
                    store.instance(name.as_str())?;
                    Some(name.to_string())
                }
                None => None,
            };
            let views: Vec<_> = store
                .tasks(filter.as_deref())?
                .iter()
                .map(tasks::view)
                .collect();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print!("{}", tasks_table(&views, now_ms()));
            }
        }
        Command::Pause(a) => {
            let t = tasks::pause(&mut store, a.id, actor)?;
            wake(home);
            print_task(&t, a.json, "paused")?;
        }
        Command::Resume(a) => {
            let t = tasks::resume(&mut store, a.id, actor, now_ms())?;
            wake(home);
            print_task(&t, a.json, "resumed")?;
        }
        Command::Rm(a) => {
            tasks::remove(&mut store, a.id, actor)?;
            wake(home);
            if a.json {
                println!("{}", serde_json::json!({ "id": a.id, "removed": true }));
            } else {
                println!("removed task {}", a.id);
            }
        }
        Command::RunNow(a) => {
            let run = store.run_task_now(a.id, actor)?;
            let t = store.task(a.id)?;
            poke_messaging(home);
            if a.json {
                println!("{}", serde_json::json!({ "id": a.id, "run_id": run }));
            } else {
                println!(
                    "task {} queued to run now on {} (run {run}); see `supervisor task runs {}`",
                    a.id, t.instance, a.id
                );
            }
        }
        Command::Runs(a) => {
            store.task(a.id)?;
            let runs = store.task_runs(a.id, a.limit)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print!("{}", runs_table(&runs));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_task(
    t: &crate::infra::store::tasks::TaskRow,
    json: bool,
    verb: &str,
) -> anyhow::Result<()> {
    let v = tasks::view(t);
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        // A paused task has no next run, whatever time the store keeps for its resumption.
        let next = if v.status == "paused" {
            format!("no runs until `supervisor task resume {}`", v.id)
        } else {
            format!("next run {}", v.next_run.as_deref().unwrap_or("none"))
        };
        println!(
            "{verb} task {} on {}: {} — {next}",
            v.id,
            v.instance,
            crate::domain::escape::line(&v.schedule),
        );
    }
    Ok(())
}

/// Tells a running daemon's scheduler to look again; with no daemon the change simply waits.
fn wake(home: &Home) {
    let client = DaemonClient::for_home(home);
    match crate::infra::blocking::block_on(client.wake_scheduler()) {
        Ok(()) | Err(ClientError::NotRunning { .. }) => {}
        Err(e) => eprintln!("note: saved, but the daemon did not hear of it: {e}"),
    }
}

/// A run-now message is queued like any message: the daemon's reconcile request makes the
/// actor look at it and starts an on-demand container.
fn poke_messaging(home: &Home) {
    let client = DaemonClient::for_home(home);
    match crate::infra::blocking::block_on(client.reconcile()) {
        Ok(_) | Err(ClientError::NotRunning { .. }) => {}
        Err(e) => eprintln!("note: queued, but the daemon did not hear of it: {e}"),
    }
}
