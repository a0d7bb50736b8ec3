use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::runtime_activate::{self, Activation, Follow};
use crate::app::render;
use crate::infra::home::Home;
use crate::infra::runtime::{self, build, locate, manifest::Manifest};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Package the agent into runtime/<id>/ (a no-op when the same runtime exists); the first
    /// runtime of a home with none active becomes active
    Build(BuildArgs),
    /// List runtimes: size, which is active, which instances use them
    List {
        /// Print JSON (an array of runtime objects)
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every file of a runtime and report any difference from its manifest
    Verify {
        /// The runtime: its id or a prefix only it has
        id: String,
        /// Print JSON: {"id","ok","differences"}
        #[arg(long)]
        json: bool,
    },
    /// Make a runtime the one instances run; a running daemon moves them one at a time
    Activate {
        /// The runtime: its id or a prefix only it has
        id: String,
        /// Return once activated instead of following the roll-out
        #[arg(long)]
        no_wait: bool,
        /// Print JSON once done: {"runtime_id","previous_id","changed","daemon_running","rollout"}
        #[arg(long)]
        json: bool,
    },
    /// Go back to the rollback target (the runtime the active one replaced), rolled out as `activate` does
    Rollback {
        /// Return once activated instead of following the roll-out
        #[arg(long)]
        no_wait: bool,
        /// Print JSON once done, as `runtime activate --json`
        #[arg(long)]
        json: bool,
    },
    /// Show the latest roll-out: each instance moved, and how it ended
    Rollout {
        /// Print JSON (the roll-out and each instance's step)
        #[arg(long)]
        json: bool,
    },
    /// Remove runtimes no instance uses (never the active one or its rollback target)
    Gc {
        /// Print JSON: {"removed": [ids]}
        #[arg(long)]
        json: bool,
    },
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
    /// Make the runtime active once built (the first runtime of a home is made active anyway)
    #[arg(long)]
    pub activate: bool,
    /// Print JSON once done (fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
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
        Command::Verify { id, json } => verify(home, &id, json),
        Command::Activate { id, no_wait, json } => {
            let outcome = runtime_activate::activate(home, &id, Follow { no_wait, json })?;
            runtime_activate::finish(outcome, json)
        }
        Command::Rollback { no_wait, json } => {
            let outcome = runtime_activate::rollback(home, Follow { no_wait, json })?;
            runtime_activate::finish(outcome, json)
        }
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
        Command::Gc { json } => {
            let mut store = home.open()?;
            let removed = runtime::collect_garbage(home, &mut store, super::CLI_ACTOR)?;
            if json {
                let out = serde_json::json!({ "removed": removed });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(ExitCode::SUCCESS);
            }
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

/// What `runtime build --json` prints.
#[derive(Debug, Serialize)]
struct BuildReport {
    id: String,
    /// False for a rebuild that found the same runtime (nothing written).
    created: bool,
    size_bytes: u64,
    agent_version: String,
    agent_path: String,
    toolbox: Option<String>,
    toolbox_path: Option<String>,
    /// Why there is no toolbox, when there is none.
    toolbox_absent: Option<String>,
    path: String,
    /// Whether it is the active runtime once the command is done.
    active: bool,
    /// The activation this command made (`--activate`, or the first runtime of a home).
    activation: Option<Activation>,
}

fn build_runtime(home: &Home, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let agent = locate::agent_binary(args.agent_bin.as_deref())?;
    let toolbox = locate::toolbox(args.busybox.as_deref(), args.no_toolbox)?;
    let mut store = home.open_or_init()?;
    let started = std::time::Instant::now();
    let built = build::build(&home.runtime_dir(), &agent, &toolbox)?;
    runtime::register(&mut store, &built)?;
    let active = store.active_runtime()?.map(|a| a.runtime_id);
    drop(store);
    let mut report = BuildReport {
        id: built.id.clone(),
        created: built.created,
        size_bytes: built.size,
        agent_version: built.agent_version.clone(),
        agent_path: agent.display().to_string(),
        toolbox: built.toolbox.clone(),
        toolbox_path: match &toolbox {
            locate::Toolbox::Found(path) => Some(path.display().to_string()),
            locate::Toolbox::Absent(_) => None,
        },
        toolbox_absent: match &toolbox {
            locate::Toolbox::Absent(why) => Some(why.to_string()),
            locate::Toolbox::Found(_) => None,
        },
        path: built.dir.display().to_string(),
        active: active.as_deref() == Some(built.id.as_str()),
        activation: None,
    };
    if !args.json {
        print_built(&report, started.elapsed().as_secs_f64());
    }
    // A home whose active runtime is none, or not on disk (a restored home: runtimes are not
    // in backups), cannot run any instance: the runtime just built is what the operator
    // wants, activated as `runtime activate` would.
    let runnable = active
        .as_ref()
        .filter(|id| home.runtime_dir().join(id).is_dir());
    let needed = runnable.is_none() && !report.active;
    if args.activate || needed {
        if needed && !args.json {
            match &active {
                None => println!("  active   yes: this home had no active runtime"),
                Some(gone) => println!("  active   yes: the active runtime {gone} is not on disk"),
            }
        }
        let follow = Follow {
            no_wait: false,
            json: args.json,
        };
        let (activation, failure) = runtime_activate::activate(home, &built.id, follow)?;
        report.active = activation.runtime_id == built.id;
        report.activation = Some(activation);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        return match failure {
            Some(e) => Err(e),
            None => Ok(ExitCode::SUCCESS),
        };
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.active {
        println!("  active   yes");
    } else {
        println!(
            "  active   no: runtime {} is; to move instances onto this one: supervisor --home {} runtime activate {}",
            active.unwrap_or_default(),
            home.root().display(),
            built.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_built(r: &BuildReport, secs: f64) {
    let what = if r.created {
        format!("built in {secs:.2}s")
    } else {
        "already exists and verifies (nothing written)".to_string()
    };
    println!("runtime {} {what}", r.id);
    println!("  size     {}", render::bytes(r.size_bytes));
    println!("  agent    {} from {}", r.agent_version, r.agent_path);
    match (&r.toolbox, &r.toolbox_path, &r.toolbox_absent) {
        (_, _, Some(why)) => {
            println!("  toolbox  none: {why}; the agent's exec tool is unavailable")
        }
        (Some(v), Some(path), None) => println!("  toolbox  {v} from {path}"),
        _ => {}
    }
    println!("  path     {}", r.path);
}

fn verify(home: &Home, given: &str, json: bool) -> anyhow::Result<ExitCode> {
    let id = runtime::resolve_on_disk(home, given)?;
    let dir = home.runtime_dir().join(&id);
    let diffs = Manifest::verify_dir(&dir, &id)?;
    if json {
        let out = serde_json::json!({
            "id": id,
            "ok": diffs.is_empty(),
            "differences": diffs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if diffs.is_empty() {
        if !json {
            println!("runtime {id}: every file matches its manifest");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        for d in &diffs {
            println!("{d}");
        }
    }
    anyhow::bail!(
        "runtime {id} differs from its manifest in {} place(s)",
        diffs.len()
    )
}
