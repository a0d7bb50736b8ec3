//! Creating an instance, all or nothing: the files are assembled in a hidden staging
//! directory, the row is inserted in an open transaction, the directory is renamed into
//! place, and only then is the transaction committed. Any failure undoes every step.

use std::fs;
use std::path::{Path, PathBuf};

use super::config::InstanceConfig;
use super::name::InstanceName;
use super::soul::Soul;
use crate::fsutil;
use crate::home::{Home, InstancePaths};
use crate::store::{events, instances, Store, StoreError};

const AGENTS_MD: &str = include_str!("../../templates/workspace/AGENTS.md");
const MEMORY_MD: &str = include_str!("../../templates/workspace/MEMORY.md");

/// Everything a new instance is made from, validated before any of it touches the disk.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub name: InstanceName,
    pub soul: Soul,
    pub config: InstanceConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} already exists on disk but no instance owns it: move it away or pick another name", .0.display())]
    Stray(PathBuf),
    #[error("port {port} is already used by instance {owner:?}")]
    PortInUse { port: u16, owner: String },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CreateError {
    let path = path.to_path_buf();
    move |source| CreateError::Io {
        action,
        path,
        source,
    }
}

pub fn create(
    home: &Home,
    store: &mut Store,
    new: &NewInstance,
    actor: &str,
) -> Result<InstancePaths, CreateError> {
    let paths = home.instance_paths(&new.name);
    let instances_dir = home.instances_dir();
    fsutil::create_private_dir(&instances_dir).map_err(io_err("create", &instances_dir))?;

    // Staging names start with '.', which no instance name can, so they never collide.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".creating-{}-", new.name))
        .tempdir_in(&instances_dir)
        .map_err(io_err("create staging directory in", &instances_dir))?;
    let staged = InstancePaths::under(staging.path().to_path_buf());
    write_instance_files(&staged, new)?;

    let tx = store.begin()?;
    let name = new.name.as_str();
    if instances::find_live(&tx, name)?.is_some() {
        return Err(StoreError::InstanceExists(name.to_string()).into());
    }
    if let Some(port) = new.config.port {
        check_port_free(&tx, home, port)?;
    }
    if fs::symlink_metadata(&paths.dir).is_ok() {
        return Err(CreateError::Stray(paths.dir.clone()));
    }
    instances::insert(&tx, name, &new.soul.label)?;
    let detail = serde_json::json!({
        "soul": new.soul.label,
        "model": new.config.model.spec(),
        "port": new.config.port,
    });
    events::record(&tx, Some(name), actor, "instance.created", Some(&detail))?;

    let staged_dir = staging.keep();
    if let Err(e) = fs::rename(&staged_dir, &paths.dir) {
        let _ = fs::remove_dir_all(&staged_dir);
        return Err(io_err("move into place", &paths.dir)(e));
    }
    let committed = fsutil::sync_dir(&instances_dir)
        .map_err(io_err("sync", &instances_dir))
        .and_then(|()| tx.commit().map_err(|e| StoreError::from(e).into()));
    if let Err(e) = committed {
        // The transaction rolls back on drop; take the files back out with it.
        let _ = fs::remove_dir_all(&paths.dir);
        return Err(e);
    }
    Ok(paths)
}

fn check_port_free(tx: &rusqlite::Connection, home: &Home, port: u16) -> Result<(), CreateError> {
    for owner in instances::live_names(tx)? {
        let Ok(name) = InstanceName::parse(&owner) else {
            continue;
        };
        // An unreadable config cannot claim a port; `show` reports it separately.
        if let Ok(cfg) = InstanceConfig::load(&home.instance_paths(&name).config) {
            if cfg.port == Some(port) {
                return Err(CreateError::PortInUse { port, owner });
            }
        }
    }
    Ok(())
}

fn write_instance_files(p: &InstancePaths, new: &NewInstance) -> Result<(), CreateError> {
    let memory = p.workspace.join("memory");
    for dir in [
        &p.dir,
        &p.workspace,
        &memory,
        &p.workspace.join("skills"),
        &p.ipc.join("in"),
        &p.ipc.join("out"),
    ] {
        fsutil::create_private_dir(dir).map_err(io_err("create", dir))?;
    }
    let files: [(PathBuf, &str); 4] = [
        (p.config.clone(), &new.config.to_json_pretty()),
        (p.soul.clone(), &new.soul.text),
        (p.workspace.join("AGENTS.md"), AGENTS_MD),
        (memory.join("MEMORY.md"), MEMORY_MD),
    ];
    for (path, text) in &files {
        fsutil::write_atomic(path, text.as_bytes()).map_err(io_err("write", path))?;
    }
    Ok(())
}
