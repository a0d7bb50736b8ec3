//! `supervisor config check [NAME]`: validates supervisor.toml and instances' config.json
//! with the loaders the daemon uses, and names the file and the field of every problem.

use std::process::ExitCode;

use crate::domain::host_config::{HostConfig, HostConfigError};
use crate::domain::instance::config::ConfigError;
use crate::domain::instance::InstanceConfig;
use crate::infra::home::Home;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate supervisor.toml and every instance's config.json (or one instance's)
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only this instance's config.json (supervisor.toml is checked too)
    pub name: Option<String>,
    /// Print JSON: an array of {"file","instance","valid","field","problem"}
    #[arg(long)]
    pub json: bool,
}

/// One file's verdict.
#[derive(Debug, serde::Serialize)]
struct Checked {
    file: String,
    /// The instance the file belongs to; null for supervisor.toml.
    instance: Option<String>,
    valid: bool,
    /// The key at fault (`limits.memory`, `(syntax)`, …); null when valid or unreadable.
    field: Option<String>,
    problem: Option<String>,
}

pub fn run(home: &Home, cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Check(args) = cmd;
    let store = home.open()?;
    let names = match &args.name {
        Some(raw) => {
            let name = super::parse_name(raw)?;
            store.instance(name.as_str())?;
            vec![name]
        }
        None => store
            .instances()?
            .into_iter()
            .map(|r| super::parse_name(&r.name))
            .collect::<anyhow::Result<_>>()?,
    };
    let mut results = vec![host(home)];
    for name in &names {
        let path = home.instance_paths(name).config;
        let (valid, field, problem) = match InstanceConfig::load(&path) {
            Ok(_) => (true, None, None),
            Err(ConfigError::Invalid { source, .. }) => {
                (false, Some(source.path), Some(source.message))
            }
            Err(ConfigError::Read { source, .. }) => {
                (false, None, Some(format!("cannot read it: {source}")))
            }
        };
        results.push(Checked {
            file: path.display().to_string(),
            instance: Some(name.to_string()),
            valid,
            field,
            problem,
        });
    }
    let invalid = results.iter().filter(|r| !r.valid).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            match (&r.field, &r.problem) {
                _ if r.valid => println!("ok       {}", r.file),
                (Some(field), Some(problem)) => println!(
                    "invalid  {}: {field}: {}",
                    r.file,
                    crate::domain::escape::line(problem)
                ),
                (_, problem) => println!(
                    "invalid  {}: {}",
                    r.file,
                    problem.as_deref().unwrap_or_default()
                ),
            }
        }
    }
    if invalid > 0 {
        anyhow::bail!(
            "{invalid} of {} configuration files are not valid",
            results.len()
        );
    }
    if !args.json {
        println!("all {} configuration files are valid", results.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// supervisor.toml (a missing file is valid: the defaults apply).
fn host(home: &Home) -> Checked {
    let path = home.config_path();
    let (valid, field, problem) = match HostConfig::load(&path) {
        Ok(_) => (true, None, None),
        Err(HostConfigError::Invalid { source, .. }) => {
            (false, Some(source.path), Some(source.message))
        }
        Err(HostConfigError::Read { source, .. }) => {
            (false, None, Some(format!("cannot read it: {source}")))
        }
    };
    Checked {
        file: path.display().to_string(),
        instance: None,
        valid,
        field,
        problem,
    }
}
