//! Creating an instance, all or nothing: the files are assembled in a hidden staging
//! directory, the row is inserted in an open transaction, the directory is renamed into
//! place, and only then is the transaction committed. Any failure undoes every step.

use std::fs;
use std::path::{Path, PathBuf};

use super::soul::Soul;
use crate::domain::instance::config::InstanceConfig;
use crate::domain::instance::name::InstanceName;
use crate::infra::disk::{self, Enforcement};
use crate::infra::fsutil;
use crate::infra::home::{Home, HomeError, InstancePaths};
use crate::infra::store::{events, instances, Store, StoreError};
use crate::infra::volume::VolumeError;

const AGENTS_MD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/workspace/AGENTS.md"
));
const MEMORY_MD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/workspace/MEMORY.md"
));

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
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Name(crate::domain::instance::name::NameError),
}

pub(super) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> CreateError {
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
    let enforcement = home.host_config()?.disk.enforcement();
    if let Enforcement::Unavailable { why } = &enforcement {
        return Err(CreateError::Volume(VolumeError::Unavailable(why.clone())));
    }

    if new.name.is_group() {
        return Err(CreateError::Name(
            crate::domain::instance::name::NameError::GroupForm(new.name.to_string()),
        ));
    }
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
    let inserted = instances::insert(&tx, name, &new.soul.label)?;
    // A root supervisor gives the files to the instance's own uid; an unprivileged one runs
    // every container as itself, so its files stay its own.
    let owner = nix::unistd::geteuid()
        .is_root()
        .then_some((inserted.uid, inserted.uid));

    // Staging names start with '.', which no instance name can, so they never collide.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".creating-{}-", new.name))
        .tempdir_in(&instances_dir)
        .map_err(io_err("create staging directory in", &instances_dir))?;
    let staged = InstancePaths::under(staging.path().to_path_buf());
    stage_instance_files(&staged, new, owner, enforcement.is_hard())?;
    let detail = serde_json::json!({
        "soul": new.soul.label,
        "model": new.config.model.spec(),
        "port": new.config.port,
        "uid": inserted.uid,
        "disk": new.config.limits.disk,
        "disk_limit": enforcement.label(),
    });
    events::record(&tx, Some(name), actor, "instance.created", Some(&detail))?;

    move_in_and_commit(staging, &paths.dir, tx)?;
    Ok(paths)
}

/// Renames the staged directory to `target` and then commits `tx`: either both happen, or
/// neither (a failed commit takes the files back out; the transaction rolls back on drop).
pub(super) fn move_in_and_commit(
    staging: tempfile::TempDir,
    target: &Path,
    tx: rusqlite::Transaction,
) -> Result<(), CreateError> {
    let staged_dir = staging.keep();
    if let Err(e) = fs::rename(&staged_dir, target) {
        let _ = fs::remove_dir_all(&staged_dir);
        return Err(io_err("move into place", target)(e));
    }
    let parent = target.parent().unwrap_or(Path::new("/"));
    let committed = fsutil::sync_dir(parent)
        .map_err(io_err("sync", parent))
        .and_then(|()| tx.commit().map_err(|e| StoreError::from(e).into()));
    if let Err(e) = committed {
        let _ = fs::remove_dir_all(target);
        return Err(e);
    }
    Ok(())
}

fn check_port_free(tx: &rusqlite::Connection, home: &Home, port: u16) -> Result<(), CreateError> {
    for owner in instances::live_names(tx)? {
        // A group has no port: its config is its instance's.
        let Ok(name) = InstanceName::parse(&owner).map(|n| n.root().unwrap_or(n)) else {
            continue;
        };
        if name.as_str() != owner {
            continue;
        }
        // An unreadable config cannot claim a port; `show` reports it separately.
        if let Ok(cfg) = InstanceConfig::load(&home.instance_paths(&name).config) {
            if cfg.port == Some(port) {
                return Err(CreateError::PortInUse { port, owner });
            }
        }
    }
    Ok(())
}

/// Writes the new instance's files below the staging directory `p`: its config, and its
/// volume's tree (workspace with the persona, empty IPC queues), owned by `owner`.
fn stage_instance_files(
    p: &InstancePaths,
    new: &NewInstance,
    owner: Option<(u32, u32)>,
    image: bool,
) -> Result<(), CreateError> {
    fsutil::create_private_dir(&p.dir).map_err(io_err("create", &p.dir))?;
    fsutil::write_atomic(&p.config, new.config.to_json_pretty().as_bytes())
        .map_err(io_err("write", &p.config))?;
    let persona = [
        ("SOUL.md", new.soul.text.as_str()),
        ("AGENTS.md", AGENTS_MD),
    ];
    stage_volume(
        p,
        &persona,
        owner,
        image.then(|| new.config.limits.disk_bytes()),
    )
}

/// Writes a volume's tree below `p` (a staging directory that exists): the workspace with
/// `files` and an empty memory, empty IPC queues, all owned by `owner`. With `image` (its
/// size), the tree goes into a disk image of that many bytes and `volume/` is left empty, to
/// be its mount point.
pub(super) fn stage_volume(
    p: &InstancePaths,
    files: &[(&str, &str)],
    owner: Option<(u32, u32)>,
    image: Option<u64>,
) -> Result<(), CreateError> {
    // The tree is made where mke2fs can copy it from, or where it stays.
    let tree = if image.is_some() {
        InstancePaths::under(p.dir.join(".image-source"))
    } else {
        p.clone()
    };
    let memory = tree.workspace.join("memory");
    let owned_dirs = [
        tree.workspace.clone(),
        memory.clone(),
        tree.workspace.join("skills"),
        tree.ipc.join("in"),
        tree.ipc.join("out"),
    ];
    for dir in [&tree.dir, &tree.volume, &tree.ipc]
        .into_iter()
        .chain(&owned_dirs)
    {
        fsutil::create_private_dir(dir).map_err(io_err("create", dir))?;
    }
    let mut written: Vec<(PathBuf, &str)> = files
        .iter()
        .map(|(name, text)| (tree.workspace.join(name), *text))
        .collect();
    written.push((memory.join("MEMORY.md"), MEMORY_MD));
    for (path, text) in &written {
        fsutil::write_atomic(path, text.as_bytes()).map_err(io_err("write", path))?;
    }
    if let Some((uid, gid)) = owner {
        for path in owned_dirs.iter().chain(written.iter().map(|(p, _)| p)) {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                .map_err(io_err("give to the instance's user", path))?;
        }
    }
    if let Some(bytes) = image {
        disk::make_image(&tree.volume, &p.volume_image, bytes).map_err(VolumeError::from)?;
        fs::remove_dir_all(&tree.dir).map_err(io_err("remove", &tree.dir))?;
        fsutil::create_private_dir(&p.volume).map_err(io_err("create", &p.volume))?;
    }
    Ok(())
}
