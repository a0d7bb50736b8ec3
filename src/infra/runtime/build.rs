//! Building a runtime: gather the files in memory, derive the id from their manifest, and
//! write the directory only if no runtime with that id exists. Building twice from the same
//! inputs therefore gives the same id and writes nothing the second time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use supervisor_agent::protocol::PROTOCOL_VERSION;
use supervisor_agent::BUILTIN_SKILLS;

use super::locate::Toolbox;
use super::manifest::{Manifest, MANIFEST_FILE};
use super::{io_err, RuntimeError};
use crate::infra::fsutil;

pub const AGENT_PATH: &str = "bin/supervisor-agent";
pub const TOOLBOX_PATH: &str = "toolbox/busybox";

#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub id: String,
    pub dir: PathBuf,
    pub size: u64,
    pub agent_version: String,
    pub toolbox: Option<String>,
    /// False when the runtime already existed (and verified): nothing was written.
    pub created: bool,
}

/// Asks the agent binary its version and protocol; refuses one that speaks another protocol.
fn agent_version(agent: &Path) -> Result<String, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadInput {
        path: agent.to_path_buf(),
        reason,
    };
    let out = Command::new(agent)
        .args(["version", "--json"])
        .output()
        .map_err(|e| bad(format!("cannot run it: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| bad("is not a supervisor agent (`version --json` gave no JSON)".into()))?;
    let protocol = v["protocol"].as_u64().unwrap_or(0);
    if protocol != u64::from(PROTOCOL_VERSION) {
        return Err(bad(format!(
            "speaks IPC protocol {protocol}, this supervisor speaks {PROTOCOL_VERSION}"
        )));
    }
    v["agent_version"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad("`version --json` has no agent_version".into()))
}

fn toolbox_version(busybox: &Path) -> String {
    Command::new(busybox)
        .arg("--help")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().trim_end_matches(" multi-call binary.").to_string())
        })
        .unwrap_or_else(|| "busybox (version unknown)".to_string())
}

/// Builds (or finds) the runtime for these inputs under `root` (`<home>/runtime`).
pub fn build(root: &Path, agent: &Path, toolbox: &Toolbox) -> Result<Built, RuntimeError> {
    let agent_version = agent_version(agent)?;
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let read = |p: &Path| fs::read(p).map_err(io_err("read", p));
    files.push((AGENT_PATH.into(), read(agent)?, 0o555));
    let toolbox_line = match toolbox {
        Toolbox::Found(path) => {
            files.push((TOOLBOX_PATH.into(), read(path)?, 0o555));
            Some(toolbox_version(path))
        }
        Toolbox::Absent(_) => None,
    };
    for (name, text) in BUILTIN_SKILLS {
        files.push((format!("skills/{name}"), text.as_bytes().to_vec(), 0o444));
    }
    let version_txt = format!(
        "agent {agent_version}\nprotocol {PROTOCOL_VERSION}\ntoolbox {}\n",
        toolbox_line.as_deref().unwrap_or("none")
    );
    files.push(("VERSION.txt".into(), version_txt.into_bytes(), 0o444));

    let manifest = Manifest::of(files.iter().map(|(p, b, m)| (p.as_str(), &b[..], *m)));
    let id = manifest.id();
    let dir = root.join(&id);
    let size = files.iter().map(|(_, b, _)| b.len() as u64).sum::<u64>()
        + manifest.to_bytes().len() as u64;
    let mut built = Built {
        id: id.clone(),
        dir: dir.clone(),
        size,
        agent_version,
        toolbox: toolbox_line,
        created: false,
    };

    if dir.exists() {
        let diffs = Manifest::verify_dir(&dir, &id).map_err(io_err("verify", &dir))?;
        if let Some(first) = diffs.first() {
            return Err(RuntimeError::Corrupt {
                id,
                first: first.to_string(),
            });
        }
        return Ok(built);
    }

    fsutil::create_private_dir(root).map_err(io_err("create", root))?;
    let staging = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(root)
        .map_err(io_err("create staging directory in", root))?;
    for (rel, bytes, mode) in &files {
        write_read_only(staging.path(), rel, bytes, *mode)?;
    }
    write_read_only(staging.path(), MANIFEST_FILE, &manifest.to_bytes(), 0o444)?;
    seal_dirs(staging.path())?;
    let staged = staging.keep();
    if let Err(e) = fs::rename(&staged, &dir) {
        let _ = make_writable_and_remove(&staged);
        return Err(io_err("move into place", &dir)(e));
    }
    fsutil::sync_dir(root).map_err(io_err("sync", root))?;
    built.created = true;
    Ok(built)
}

fn write_read_only(base: &Path, rel: &str, bytes: &[u8], mode: u32) -> Result<(), RuntimeError> {
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    fs::write(&path, bytes).map_err(io_err("write", &path))?;
    fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("sync", &path))?;
    fsutil::set_mode(&path, mode).map_err(io_err("set mode of", &path))
}

/// Directories end up 0555: readable by the container's unprivileged user, writable by none.
fn seal_dirs(dir: &Path) -> Result<(), RuntimeError> {
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        let entry = entry.map_err(io_err("read", dir))?;
        if entry
            .file_type()
            .map_err(io_err("stat", &entry.path()))?
            .is_dir()
        {
            seal_dirs(&entry.path())?;
        }
    }
    fsutil::set_mode(dir, 0o555).map_err(io_err("set mode of", dir))
}

/// Removes a sealed runtime tree (its directories are 0555, so open them up first).
pub fn make_writable_and_remove(dir: &Path) -> std::io::Result<()> {
    fn open_up(dir: &Path) -> std::io::Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                open_up(&entry.path())?;
            }
        }
        Ok(())
    }
    open_up(dir)?;
    fs::remove_dir_all(dir)
}
