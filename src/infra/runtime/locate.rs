//! Finding the inputs of a runtime build: the static agent binary and an optional busybox.

use std::path::{Path, PathBuf};

use super::elf::{linkage, Linkage};
use super::RuntimeError;

pub const AGENT_BIN_ENV: &str = "SUPERVISOR_AGENT_BIN";

/// Where scripts/build-agent leaves the static agent under a cargo target directory.
pub fn built_agent_path(target_dir: &Path) -> PathBuf {
    target_dir
        .join(format!("{}-unknown-linux-gnu", std::env::consts::ARCH))
        .join("release/supervisor-agent")
}

/// Where to look for the agent binary when none is named: beside this executable (installed
/// side by side), then where scripts/build-agent leaves it in a source checkout.
pub fn agent_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("supervisor-agent"));
        // target/{debug,release}/supervisor → target/<triple>/release/supervisor-agent
        if let Some(target) = dir.parent() {
            out.push(built_agent_path(target));
        }
    }
    out
}

/// The agent binary to package: `explicit`, else `$SUPERVISOR_AGENT_BIN`, else the first
/// candidate that is a static executable. Whatever is chosen must be static.
pub fn agent_binary(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let named = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(AGENT_BIN_ENV).map(PathBuf::from));
    if let Some(path) = named {
        require_static(&path, "the agent")?;
        return Ok(path);
    }
    let candidates = agent_candidates();
    for c in &candidates {
        if matches!(linkage(c), Ok(Linkage::Static)) {
            return Ok(c.clone());
        }
    }
    Err(RuntimeError::NoAgent {
        looked: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// What became of the toolbox search, for the build's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolbox {
    Found(PathBuf),
    /// Absent, with the reason shown to the user.
    Absent(String),
}

/// The busybox to include: `explicit` (must be static), else a static `busybox` on PATH.
pub fn toolbox(explicit: Option<&Path>, disabled: bool) -> Result<Toolbox, RuntimeError> {
    if disabled {
        return Ok(Toolbox::Absent("disabled with --no-toolbox".into()));
    }
    if let Some(path) = explicit {
        require_static(path, "the toolbox")?;
        return Ok(Toolbox::Found(path.to_path_buf()));
    }
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("busybox"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    Ok(match found {
        None => Toolbox::Absent(
            "no busybox on PATH (install a static one, e.g. Debian's busybox-static)".into(),
        ),
        Some(path) => match linkage(&path) {
            Ok(Linkage::Static) => Toolbox::Found(path),
            _ => Toolbox::Absent(format!(
                "{} is not a static executable (install a static one, e.g. Debian's busybox-static)",
                path.display()
            )),
        },
    })
}

fn require_static(path: &Path, what: &str) -> Result<(), RuntimeError> {
    let bad = |reason: String| RuntimeError::BadInput {
        path: path.to_path_buf(),
        reason,
    };
    match linkage(path) {
        Ok(Linkage::Static) => Ok(()),
        Ok(Linkage::Dynamic) => Err(bad(format!(
            "{what} is dynamically linked and would not run on the empty agent image; build it statically (scripts/build-agent)"
        ))),
        Ok(Linkage::NotElf) => Err(bad(format!("{what} is not an ELF executable"))),
        Err(e) => Err(bad(e.to_string())),
    }
}
