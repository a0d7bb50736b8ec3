use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::instances::create::{create, NewInstance};
use crate::app::instances::soul::{BuiltinSoul, Soul};
use crate::domain::instance::config::{InstanceConfig, LifecycleMode};
use crate::domain::instance::settings::Settings;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Instance name: lowercase letters, digits and dashes, starting with a letter (max 32)
    pub name: String,
    /// Built-in persona
    #[arg(
        long,
        value_enum,
        default_value = "assistant",
        conflicts_with = "soul_file"
    )]
    pub soul: BuiltinSoul,
    /// Your own SOUL.md instead of a built-in persona
    #[arg(long, value_name = "PATH")]
    pub soul_file: Option<PathBuf>,
    /// Model as "echo" or "provider/model" (providers: echo, openai, anthropic)
    #[arg(long, value_name = "SPEC")]
    pub model: Option<String>,
    /// Loopback port for this instance's own API listener (1024-65535)
    #[arg(long)]
    pub port: Option<u16>,
    /// Keep the container running, or start it when work arrives
    #[arg(long, value_enum)]
    pub lifecycle: Option<Lifecycle>,
    /// Memory limit, e.g. 512m or 2g
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU limit, e.g. 0.5 or 2
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Process limit inside the container
    #[arg(long)]
    pub pids: Option<u32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lifecycle {
    Persistent,
    OnDemand,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    // Every input is checked before anything is written.
    // A group's form (`<instance>_<key>`) is the supervisor's to make.
    let name = crate::domain::instance::InstanceName::parse_new(&args.name)?;
    let soul = match &args.soul_file {
        Some(path) => Soul::from_file(path)?,
        None => Soul::builtin(args.soul),
    };
    let config = config_from_args(&args)
        .map_err(|e| anyhow::anyhow!("{}: {}", flag_for(&e.path), e.message))?;
    let new = NewInstance { name, soul, config };

    let mut store = home.open_or_init()?;
    let paths = create(home, &mut store, &new, super::CLI_ACTOR)?;
    println!(
        "created instance {} (soul {}, model {}) in {}",
        new.name,
        new.soul.label,
        new.config.model.spec(),
        paths.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn config_from_args(
    args: &Args,
) -> Result<InstanceConfig, crate::domain::instance::config::FieldError> {
    Settings {
        model: args.model.clone(),
        port: args.port,
        lifecycle: args.lifecycle.map(|mode| match mode {
            Lifecycle::Persistent => LifecycleMode::Persistent,
            Lifecycle::OnDemand => LifecycleMode::OnDemand,
        }),
        memory: args.memory.clone(),
        cpus: args.cpus,
        pids: args.pids,
    }
    .config()
}

/// The command-line flag that sets a config key, so errors speak the user's language.
fn flag_for(path: &str) -> String {
    match path {
        p if p.starts_with("model") => "--model".into(),
        "limits.memory" => "--memory".into(),
        "limits.cpus" => "--cpus".into(),
        "limits.pids" => "--pids".into(),
        "port" => "--port".into(),
        "lifecycle.mode" => "--lifecycle".into(),
        other => format!("{} (in templates/config.json)", other),
    }
}
