//! `supervisor edit NAME`: the instance's config.json in the user's editor. The editor works
//! on a copy; the copy replaces the file (atomically) only once it passes the validation the
//! daemon applies, so the daemon never sees a half-written or invalid config from here.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::domain::instance::config::ConfigError;
use crate::domain::instance::InstanceConfig;
use crate::infra::fsutil;
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose config.json to edit
    pub name: String,
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    let store = home.open()?;
    store.instance(name.as_str())?;
    let path = home.instance_paths(&name).config;
    let original =
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let editor = editor();
    // A private copy (0600 under this program's umask) with the file's own name at the end,
    // so the editor picks JSON highlighting.
    let copy = tempfile::Builder::new()
        .prefix(&format!("supervisor-{name}-"))
        .suffix(".config.json")
        .tempfile()
        .context("cannot create a temporary copy to edit")?;
    std::fs::write(copy.path(), &original)
        .with_context(|| format!("cannot write {}", copy.path().display()))?;
    let interactive = std::io::stdin().is_terminal();
    let edited = loop {
        open_editor(&editor, copy.path())?;
        let edited = std::fs::read(copy.path())
            .with_context(|| format!("cannot read {}", copy.path().display()))?;
        if edited == original {
            println!("no change: {} is as it was", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        // The daemon's own loader, on the copy: its size limit, parsing and validation.
        match InstanceConfig::load(copy.path()) {
            Ok(_) => break edited,
            Err(e) => {
                let problem = match e {
                    ConfigError::Invalid { source, .. } => source.to_string(),
                    ConfigError::Read { source, .. } => format!("cannot read it: {source}"),
                };
                eprintln!(
                    "error: config.json is not valid: {}",
                    crate::domain::escape::line(&problem)
                );
                if interactive && ask("edit it again? [Y/n] ")? {
                    continue;
                }
                let kept = keep(copy)?;
                anyhow::bail!(
                    "{} is unchanged; your edit is kept in {}",
                    path.display(),
                    kept.display()
                );
            }
        }
    };
    // Someone (another edit, a script) may have changed the file while the editor was open:
    // replacing it would silently drop their change.
    let now = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if now != original {
        let kept = keep(copy)?;
        anyhow::bail!(
            "{} changed while you were editing it; it is left as it is now, and your edit is \
             kept in {}",
            path.display(),
            kept.display()
        );
    }
    fsutil::write_atomic(&path, &edited)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    println!(
        "saved {} (a running daemon applies it by itself)",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The user's editor as a shell command: $VISUAL, then $EDITOR, then vi (as git does).
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string())
}

/// Runs the editor on `file` through the shell, so that `EDITOR="code --wait"` works; the
/// file is passed as an argument, never spliced into the command text.
fn open_editor(editor: &str, file: &Path) -> anyhow::Result<()> {
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$@\""))
        .arg(editor)
        .arg(file)
        .status()
        .with_context(|| format!("cannot run the editor `{editor}`"))?;
    if !status.success() {
        anyhow::bail!("the editor `{editor}` failed ({status}); nothing was changed");
    }
    Ok(())
}

/// Asks a yes/no question on the terminal; yes unless the answer starts with n.
fn ask(question: &str) -> anyhow::Result<bool> {
    use std::io::Write;
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer)? == 0 {
        return Ok(false);
    }
    Ok(!answer.trim().to_lowercase().starts_with('n'))
}

/// Keeps the edited copy (it would be deleted on drop) and returns where it is.
fn keep(copy: tempfile::NamedTempFile) -> anyhow::Result<std::path::PathBuf> {
    let (_, path) = copy.keep().context("cannot keep the edited copy")?;
    Ok(path)
}
