use std::path::PathBuf;
use std::process::ExitCode;

use crate::home::Home;
use crate::render;
use crate::runtime::{self, build, locate, manifest::Manifest};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Package the agent into runtime/<id>/ (a no-op when the same runtime exists)
    Build(BuildArgs),
    /// List runtimes: size, which is active, which instances use them
    List {
        /// Print JSON (an array of runtime objects)
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every file of a runtime and report any difference from its manifest
    Verify {
        /// The runtime's id, as `runtime list` shows it
        id: String,
    },
    /// Make a runtime the one instances run; a running daemon moves them one at a time
    Activate {
        /// The runtime's id, as `runtime list` shows it
        id: String,
        /// Return once activated instead of following the roll-out
        #[arg(long)]
        no_wait: bool,
    },
    /// Show the latest roll-out: each instance moved, and how it ended
    Rollout {
        /// Print JSON (the roll-out and each instance's step)
        #[arg(long)]
        json: bool,
    },
    /// Remove runtimes no instance uses (never the active one or its rollback target)
    Gc,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The static agent binary [default: $SUPERVISOR_AGENT_BIN, beside this program, or where scripts/build-agent puts it]
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    /// A static busybox for the agent's exec tool [default: busybox on PATH, if static]
    #[arg(long, value_name = "PATH", conflicts_with = "no_toolbox")]
    pub busybox: Option<PathBuf>,
    /// Build without a toolbox (the agent then has no exec tool)
    #[arg(long)]
    pub no_toolbox: bool,
    /// Make the runtime active once built
    #[arg(long)]
    pub activate: bool,
}

pub fn run(home: &Home, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Build(args) => build_runtime(home, args),
        Command::List { json } => {
            let store = home.open()?;
            let views = runtime::list(home, &store)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print!("{}", render::runtime_table(&views));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { id } => verify(home, &id),
        Command::Activate { id, no_wait } => activate(home, &id, no_wait),
        Command::Rollout { json } => {
            let store = home.open()?;
            let rollout = store.latest_rollout()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rollout)?);
            } else {
                match rollout {
                    Some(r) => print!("{}", render::rollout(&r)),
                    None => {
                        println!("no roll-out yet: the first activation has nothing to replace")
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc => {
            let mut store = home.open()?;
            let removed = runtime::collect_garbage(home, &mut store, super::CLI_ACTOR)?;
            if removed.is_empty() {
                println!("nothing to remove");
            }
            for id in removed {
                println!("removed runtime {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Activates a runtime and, when a daemon runs, follows its roll-out to the end: exits 1 when
/// it was stopped and the previous runtime put back.
fn activate(home: &Home, id: &str, no_wait: bool) -> anyhow::Result<ExitCode> {
    let mut store = home.open()?;
    let previous = runtime::activate(home, &mut store, id, super::CLI_ACTOR)?;
    let rollout = store.current_rollout()?.filter(|r| r.runtime_id == id);
    match &previous {
        Some(prev) if prev != id => {
            println!("runtime {id} is active (previous: {prev}, kept as rollback target)")
        }
        _ => println!("runtime {id} is active"),
    }
    let client = crate::daemon::client::DaemonClient::for_home(home);
    let daemon_runs = crate::docker::block_on(client.reconcile()).is_ok();
    let Some(rollout) = rollout else {
        return Ok(ExitCode::SUCCESS);
    };
    if !daemon_runs {
        println!(
            "the daemon is not running: it moves running instances one at a time when it starts"
        );
        return Ok(ExitCode::SUCCESS);
    }
    if no_wait {
        println!("rolling out; follow it with `supervisor runtime rollout`");
        return Ok(ExitCode::SUCCESS);
    }
    follow_rollout(&store, &client, rollout.activation_id)
}

/// Prints each step of a roll-out as the daemon records it, until the roll-out ends.
fn follow_rollout(
    store: &crate::store::Store,
    client: &crate::daemon::client::DaemonClient,
    activation_id: i64,
) -> anyhow::Result<ExitCode> {
    let mut printed: Vec<(String, String)> = Vec::new();
    let mut polls: u64 = 0;
    loop {
        let r = store
            .rollout(activation_id)?
            .ok_or_else(|| anyhow::anyhow!("the roll-out's record is gone"))?;
        for step in &r.steps {
            let seen = (step.instance.clone(), step.state.clone());
            if !printed.contains(&seen) {
                println!("{}", render::rollout_step(step));
                printed.push(seen);
            }
        }
        match r.state.as_str() {
            "done" => {
                let moved = r.steps.iter().filter(|s| s.state == "ready").count();
                println!(
                    "roll-out done: {moved} running instance(s) moved to {}",
                    r.runtime_id
                );
                return Ok(ExitCode::SUCCESS);
            }
            "failed" => {
                let detail = r.detail.as_deref().unwrap_or("no reason recorded");
                if detail.starts_with("superseded") {
                    anyhow::bail!("roll-out of runtime {} stopped: {detail}", r.runtime_id);
                }
                anyhow::bail!(
                    "roll-out of runtime {} stopped: {detail}; runtime {} is active again",
                    r.runtime_id,
                    r.previous_id
                )
            }
            _ => {}
        }
        polls += 1;
        // The daemon carries the roll-out: if it stops, say so rather than wait forever.
        if polls.is_multiple_of(25) && crate::docker::block_on(client.health()).is_err() {
            anyhow::bail!(
                "the daemon stopped during the roll-out of runtime {}; it carries on when the daemon starts again (`supervisor runtime rollout` shows where it is)",
                r.runtime_id
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn build_runtime(home: &Home, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let agent = locate::agent_binary(args.agent_bin.as_deref())?;
    let toolbox = locate::toolbox(args.busybox.as_deref(), args.no_toolbox)?;
    let mut store = home.open_or_init()?;
    let started = std::time::Instant::now();
    let built = build::build(&home.runtime_dir(), &agent, &toolbox)?;
    runtime::register(&mut store, &built)?;
    let what = if built.created {
        format!("built in {:.2}s", started.elapsed().as_secs_f64())
    } else {
        "already exists and verifies (nothing written)".to_string()
    };
    println!("runtime {} {what}", built.id);
    println!("  size     {}", render::bytes(built.size));
    println!(
        "  agent    {} from {}",
        built.agent_version,
        agent.display()
    );
    match (&toolbox, &built.toolbox) {
        (locate::Toolbox::Found(path), Some(v)) => {
            println!("  toolbox  {v} from {}", path.display())
        }
        (locate::Toolbox::Absent(why), _) => {
            println!("  toolbox  none: {why}; the agent's exec tool is unavailable")
        }
        _ => {}
    }
    println!("  path     {}", built.dir.display());
    if args.activate {
        // Exactly as `runtime activate`: a running daemon is woken and its roll-out followed.
        drop(store);
        return activate(home, &built.id, false);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(home: &Home, id: &str) -> anyhow::Result<ExitCode> {
    if !runtime::is_runtime_id(id) {
        anyhow::bail!(runtime::RuntimeError::NoSuchRuntime(id.to_string()));
    }
    let dir = home.runtime_dir().join(id);
    if !dir.is_dir() {
        anyhow::bail!(runtime::RuntimeError::NoSuchRuntime(id.to_string()));
    }
    let diffs = Manifest::verify_dir(&dir, id)?;
    if diffs.is_empty() {
        println!("runtime {id}: every file matches its manifest");
        return Ok(ExitCode::SUCCESS);
    }
    for d in &diffs {
        println!("{d}");
    }
    anyhow::bail!(
        "runtime {id} differs from its manifest in {} place(s)",
        diffs.len()
    )
}
