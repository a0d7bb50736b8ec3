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
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every file of a runtime and report any difference from its manifest
    Verify { id: String },
    /// Make a runtime the one instances run
    Activate { id: String },
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
        Command::Activate { id } => {
            let mut store = home.open()?;
            let previous = runtime::activate(home, &mut store, &id, super::CLI_ACTOR)?;
            // A running daemon moves containers onto it at once.
            let client = crate::daemon::client::DaemonClient::for_home(home);
            let _ = crate::docker::block_on(client.reconcile());
            match previous {
                Some(prev) if prev != id => {
                    println!("runtime {id} is active (previous: {prev}, kept as rollback target)")
                }
                _ => println!("runtime {id} is active"),
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
        runtime::activate(home, &mut store, &built.id, super::CLI_ACTOR)?;
        println!("runtime {} is active", built.id);
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
