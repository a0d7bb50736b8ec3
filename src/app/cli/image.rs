use std::process::ExitCode;

use crate::infra::agent_image;
use crate::infra::docker::{self, image::Progress};
use crate::infra::home::Home;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build the agent image through the Docker API (a no-op when nothing changed)
    Build {
        /// Print only the result, not the build steps
        #[arg(long, short)]
        quiet: bool,
        /// Build even when an image with the same content exists, without the layer cache
        #[arg(long)]
        force: bool,
        /// Print JSON: {"tag","id","size","built","elapsed_ms"} (and no build steps)
        #[arg(long)]
        json: bool,
    },
}

pub fn run(home: &Home, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Build { quiet, force, json } => build(home, quiet || json, force, json),
    }
}

fn build(home: &Home, quiet: bool, force: bool, json: bool) -> anyhow::Result<ExitCode> {
    let config = home.host_config()?;
    let report = crate::infra::blocking::block_on(async {
        let client = docker::connect(&config.docker).await?;
        agent_image::ensure_built(&client, &config.docker.image, force, |p| {
            if !quiet {
                let (Progress::Step(line) | Progress::Status(line)) = p;
                eprintln!("  {line}");
            }
        })
        .await
    })?;
    if json {
        let out = serde_json::json!({
            "tag": report.tag,
            "id": report.id,
            "size": report.size,
            "built": report.built,
            "elapsed_ms": report.elapsed.as_millis() as u64,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let what = if report.built {
        format!("built in {:.1}s", report.elapsed.as_secs_f64())
    } else {
        "is up to date (same content hash; nothing built)".to_string()
    };
    println!(
        "image {} {what}; size {} ({})",
        report.tag,
        crate::app::render::bytes(report.size),
        short_id(&report.id)
    );
    Ok(ExitCode::SUCCESS)
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
