//! The shared agent runtime: a content-addressed, read-only directory per build, mounted at
//! /opt/runtime in every instance's container. N instances cost one copy on disk, and a new
//! agent needs no image rebuild.
//!
//! ```text
//! runtime/<id>/bin/supervisor-agent   the static agent binary
//! runtime/<id>/toolbox/busybox        optional static toolbox for the agent's exec tool
//! runtime/<id>/skills/*.md            built-in skills
//! runtime/<id>/VERSION.txt            agent, protocol and toolbox versions
//! runtime/<id>/manifest.json          sha256, size and mode of every file; hashes to <id>
//! ```

pub mod build;
pub mod elf;
pub mod gc;
pub mod locate;
pub mod manifest;
pub mod resolve;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no agent binary found (looked for {looked}): build one with scripts/build-agent or pass --agent-bin")]
    NoAgent { looked: String },
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    #[error("runtime {id} exists but does not match its manifest ({first}); see `supervisor runtime verify {id}`")]
    Corrupt { id: String, first: String },
    #[error("no runtime {0:?} (see `supervisor runtime list`)")]
    NoSuchRuntime(String),
    #[error("no runtime {given:?}: {known}")]
    NoMatch { given: String, known: String },
    #[error("runtime {given:?} is ambiguous: it could be {matches}; give more of the id")]
    Ambiguous { given: String, matches: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io {
        action,
        path,
        source,
    }
}

/// A runtime id is 16 lowercase hex digits; anything else never names a directory.
pub fn is_runtime_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

use std::collections::BTreeSet;

use serde::Serialize;

use crate::infra::home::Home;
use crate::infra::store::runtimes::RuntimeRecord;
use crate::infra::store::Store;

/// Records a built runtime in the store.
pub fn register(
    store: &mut Store,
    built: &build::Built,
) -> Result<(), crate::infra::store::StoreError> {
    store.register_runtime(&RuntimeRecord {
        id: built.id.clone(),
        built_at: crate::infra::store::now_ms(),
        agent_version: built.agent_version.clone(),
        protocol: i64::from(supervisor_agent::protocol::PROTOCOL_VERSION),
        toolbox: built.toolbox.clone(),
        size_bytes: built.size as i64,
    })
}

/// One runtime as `runtime list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeView {
    pub id: String,
    pub agent_version: Option<String>,
    pub toolbox: Option<String>,
    pub size_bytes: Option<u64>,
    pub built_at: Option<i64>,
    pub active: bool,
    pub rollback_target: bool,
    pub used_by: Vec<String>,
    pub on_disk: bool,
    pub registered: bool,
}

/// Runtime ids present as directories under `<home>/runtime`.
fn on_disk(home: &Home) -> Result<BTreeSet<String>, RuntimeError> {
    let root = home.runtime_dir();
    let mut ids = BTreeSet::new();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(io_err("read", &root)(e)),
    };
    for entry in entries {
        let name = entry.map_err(io_err("read", &root))?.file_name();
        let name = name.to_string_lossy();
        if is_runtime_id(&name) {
            ids.insert(name.into_owned());
        }
    }
    Ok(ids)
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeOpError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] crate::infra::store::StoreError),
}

/// Every runtime the store or the disk knows, oldest first.
pub fn list(home: &Home, store: &Store) -> Result<Vec<RuntimeView>, RuntimeOpError> {
    let disk = on_disk(home)?;
    let active = store.active_runtime()?;
    let records = store.runtimes()?;
    let mut views = Vec::new();
    let mut ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    ids.extend(
        disk.iter()
            .filter(|id| !records.iter().any(|r| &r.id == *id))
            .cloned(),
    );
    for id in ids {
        let rec = records.iter().find(|r| r.id == id);
        let dir = home.runtime_dir().join(&id);
        views.push(RuntimeView {
            agent_version: rec.map(|r| r.agent_version.clone()),
            toolbox: rec.and_then(|r| r.toolbox.clone()),
            size_bytes: crate::infra::fsutil::tree_size(&dir).ok(),
            built_at: rec.map(|r| r.built_at),
            active: active.as_ref().is_some_and(|a| a.runtime_id == id),
            rollback_target: active
                .as_ref()
                .is_some_and(|a| a.previous_id.as_deref() == Some(id.as_str())),
            used_by: store.runtime_users(&id)?,
            on_disk: disk.contains(&id),
            registered: rec.is_some(),
            id,
        });
    }
    Ok(views)
}

/// The registered runtime `given` names: its id or a prefix only it has.
pub fn resolve_registered(store: &Store, given: &str) -> Result<String, RuntimeOpError> {
    let known: Vec<String> = store.runtimes()?.into_iter().map(|r| r.id).collect();
    Ok(resolve::resolve(given, &known)?)
}

/// The runtime directory under `<home>/runtime` that `given` names (id or unique prefix).
pub fn resolve_on_disk(home: &Home, given: &str) -> Result<String, RuntimeError> {
    let known: Vec<String> = on_disk(home)?.into_iter().collect();
    resolve::resolve(given, &known)
}

/// Makes a built, intact runtime the active one. Returns the previous active id.
pub fn activate(
    home: &Home,
    store: &mut Store,
    id: &str,
    actor: &str,
) -> Result<Option<String>, RuntimeOpError> {
    if !is_runtime_id(id) || store.runtime(id)?.is_none() {
        return Err(RuntimeError::NoSuchRuntime(id.to_string()).into());
    }
    let dir = home.runtime_dir().join(id);
    let diffs = manifest::Manifest::verify_dir(&dir, id).map_err(io_err("verify", &dir))?;
    if let Some(first) = diffs.first() {
        return Err(RuntimeError::Corrupt {
            id: id.to_string(),
            first: first.to_string(),
        }
        .into());
    }
    Ok(store.activate_runtime(id, actor)?)
}

/// Removes every runtime no one needs (see [`gc::plan`]); returns the ids removed.
pub fn collect_garbage(
    home: &Home,
    store: &mut Store,
    actor: &str,
) -> Result<Vec<String>, RuntimeOpError> {
    let mut known = on_disk(home)?;
    known.extend(store.runtimes()?.into_iter().map(|r| r.id));
    let active = store.active_runtime()?;
    let mut in_use = BTreeSet::new();
    for id in &known {
        if !store.runtime_users(id)?.is_empty() {
            in_use.insert(id.clone());
        }
    }
    let doomed = gc::plan(
        &known,
        active.as_ref().map(|a| a.runtime_id.as_str()),
        active.as_ref().and_then(|a| a.previous_id.as_deref()),
        &in_use,
    );
    for id in &doomed {
        let dir = home.runtime_dir().join(id);
        if dir.exists() {
            build::make_writable_and_remove(&dir).map_err(io_err("remove", &dir))?;
        }
        store.forget_runtime(id, actor)?;
    }
    Ok(doomed)
}
