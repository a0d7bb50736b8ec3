//! `backup`: one archive of the home, safe to take while the daemon runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::backup::create::{backup, BackupReport};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the archive (a new file) [default: <home>/backups/supervisor-<UTC time>.tar.gz]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print JSON: {"path","bytes","home_id","schema_version","database","instances","files","directories","skipped","unsettled"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let report = backup(home, args.out.as_deref())
        .with_context(|| format!("cannot back up {}", home.root().display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn render(r: &BackupReport) -> String {
    let mut out = format!("wrote {} ({} bytes)\n", r.path.display(), r.bytes);
    let names = if r.instances.is_empty() {
        String::new()
    } else {
        format!(" ({})", r.instances.join(", "))
    };
    out.push_str(&format!(
        "  database: schema {}, {} instance(s){names}, {} message(s), {} task(s)\n",
        r.schema_version, r.database.instances, r.database.messages, r.database.tasks
    ));
    out.push_str(&format!(
        "  files: {} file(s), {} directories\n",
        r.files, r.directories
    ));
    // Names come from workspaces, which agents write: escaped, one line each.
    use crate::domain::escape::line;
    for s in &r.skipped {
        out.push_str(&format!(
            "  skipped {}: {}\n",
            line(&s.path),
            line(&s.reason)
        ));
    }
    for path in &r.unsettled {
        out.push_str(&format!(
            "  warning: {} kept changing while it was copied; the archive holds one version of it\n",
            line(path)
        ));
    }
    out
}
