use std::process::ExitCode;

use crate::app::instances::soul::{Soul, MAX_SOUL_BYTES};
use crate::app::render::{self, DiskView, InstanceDetail};
use crate::domain::instance::InstanceConfig;
use crate::infra::home::{Home, InstancePaths};
use crate::infra::volume::{self, OpenVolume};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance to show
    pub name: String,
    /// Print JSON (fields in docs/cli.md)
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let store = home.open()?;
    let record = store.instance(name.as_str())?;
    let paths = home.instance_paths(&name);
    // A chat group runs with its instance's config, as a group runs it.
    let config =
        InstanceConfig::load(&paths.config)
            .map(|c| if name.is_group() { c.for_group() } else { c });
    let enforcement = home.host_config()?.disk.enforcement();
    // The agent can write SOUL.md (and everything around it): it is read through the
    // volume's descriptors, only if it is a regular file, and never more than a soul can be.
    let opened = volume::open(&paths);
    let (soul_title, soul_problem) = match &opened {
        // A group's persona is the host's copy of its instance's.
        Ok(_) if paths.persona.is_some() => {
            let persona = paths.persona.as_deref().expect("checked");
            match persona_title(persona) {
                Ok(title) => (title, None),
                Err(problem) => (None, Some(problem)),
            }
        }
        Ok(v) => match soul_title(v) {
            Ok(title) => (title, None),
            Err(problem) => (None, Some(problem)),
        },
        Err(e) => (None, Some(format!("cannot be read: {e}"))),
    };
    let disk = config
        .as_ref()
        .ok()
        .map(|c| disk_view(&paths, opened.as_ref().ok(), c, &enforcement));
    let detail = InstanceDetail {
        counts: store.instance_counts(record.id)?,
        recent_events: store.recent_events(Some(name.as_str()), 10)?,
        uid: record.uid,
        summary: render::InstanceSummary::new(
            record,
            &paths.dir,
            config.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
        ),
        soul_title,
        soul_problem,
        disk,
        paths,
        config: config.as_ref().ok().cloned(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        print!("{}", render::instance_detail(&detail));
    }
    // A broken config is shown, and also makes the command fail so scripts notice.
    config?;
    Ok(ExitCode::SUCCESS)
}

/// The persona's title, or why SOUL.md could not be read.
fn soul_title(volume: &OpenVolume) -> Result<Option<String>, String> {
    let workspace = volume.workspace().map_err(|e| e.to_string())?;
    let bytes = workspace
        .read_file("SOUL.md", MAX_SOUL_BYTES)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(Soul::title_of(&text).map(str::to_string))
}

/// The title of the persona copy a group reads (`/persona/SOUL.md` in its container).
fn persona_title(dir: &std::path::Path) -> Result<Option<String>, String> {
    let dir = crate::infra::safefs::SafeDir::open(dir).map_err(|e| e.to_string())?;
    let bytes = dir
        .read_file("SOUL.md", MAX_SOUL_BYTES)
        .map_err(|e| e.to_string())?;
    Ok(Soul::title_of(&String::from_utf8_lossy(&bytes)).map(str::to_string))
}

fn disk_view(
    paths: &InstancePaths,
    volume: Option<&OpenVolume>,
    config: &InstanceConfig,
    enforcement: &crate::infra::disk::Enforcement,
) -> DiskView {
    let usage = volume.map(|v| v.usage());
    let hard = volume.is_some_and(|v| v.image) || paths.volume_image.is_file();
    let note = match &usage {
        Some(Err(e)) => Some(format!("not measured: {e}")),
        Some(Ok(u)) if !u.complete => Some("at least this much (too large to count all)".into()),
        _ if !hard => enforcement.why_not_hard().map(str::to_string),
        _ => None,
    };
    let usage = usage.and_then(Result::ok);
    DiskView {
        limit: config.limits.disk.clone(),
        enforcement: if hard { "hard" } else { "soft" }.into(),
        used_bytes: usage.map(|u| u.bytes),
        used_inodes: usage.map(|u| u.inodes),
        note,
    }
}
