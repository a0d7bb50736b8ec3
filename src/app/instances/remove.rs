//! Removing an instance. Without purge its files move to `archive/` and its history stays in
//! the store; with purge both are deleted. Either way the store and the disk change together.

use std::fs;
use std::path::{Path, PathBuf};

use crate::domain::instance::name::InstanceName;
use crate::infra::fsutil;
use crate::infra::home::Home;
use crate::infra::safefs::{SafeDir, TreeLimits};
use crate::infra::store::{events, instances, Store, StoreError};
use crate::infra::volume::VolumeError;

/// A purge removes at most this many entries (an agent still writing into its tree could
/// otherwise keep it going); what is left stays in `archive/.purging-*`, named in the error.
const PURGE_LIMITS: TreeLimits = TreeLimits {
    max_depth: 128,
    max_entries: 50_000_000,
};

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// Files kept at this path (None if the instance directory was already gone).
    Archived(Option<PathBuf>),
    Purged,
}

pub fn remove(
    home: &Home,
    store: &mut Store,
    name: &InstanceName,
    purge: bool,
    actor: &str,
) -> Result<Removed, RemoveError> {
    let dir = home.instance_paths(name).dir;
    let archive_dir = home.archive_dir();
    fsutil::create_private_dir(&archive_dir).map_err(|source| RemoveError::Io {
        action: "create",
        path: archive_dir.clone(),
        source,
    })?;
    let has_files = fs::symlink_metadata(&dir).is_ok();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let target = if purge {
        // Out of the way first, deleted after the commit: a crash leaves a dot-directory in
        // archive/, never a live instance with half its files.
        archive_dir.join(format!(".purging-{name}-{}", uuid::Uuid::new_v4().simple()))
    } else {
        unique_path(&archive_dir, &format!("{name}-{stamp}"))
    };

    // An instance's groups go with it: their files are below its directory.
    let groups: Vec<InstanceName> = store
        .groups_of(name.as_str())?
        .into_iter()
        .filter_map(|g| InstanceName::parse(&g.name).ok())
        .collect();
    let tx = store.begin()?;
    if purge {
        instances::purge(&tx, name.as_str())?;
    } else {
        let kept = has_files.then(|| target.to_string_lossy().into_owned());
        instances::archive(&tx, name.as_str(), kept.as_deref().unwrap_or(""))?;
    }
    let kind = if purge {
        "instance.purged"
    } else {
        "instance.removed"
    };
    let detail =
        (!purge && has_files).then(|| serde_json::json!({ "archive": target.to_string_lossy() }));
    events::record(&tx, Some(name.as_str()), actor, kind, detail.as_ref())?;

    if has_files {
        // Its disk leaves the mount table first: an archive holds the image, not a mount.
        // Held until the directory has moved, so that nothing mounts it again in between.
        let _unmounted = crate::infra::volume::release(&home.instance_paths(name))?;
        let _groups_unmounted = groups
            .iter()
            .map(|g| crate::infra::volume::release(&home.instance_paths(g)))
            .collect::<Result<Vec<_>, _>>()?;
        fs::rename(&dir, &target).map_err(|source| RemoveError::Io {
            action: "move",
            path: dir.clone(),
            source,
        })?;
    }
    if let Err(e) = tx.commit() {
        if has_files {
            let _ = fs::rename(&target, &dir);
        }
        return Err(StoreError::from(e).into());
    }
    if purge {
        if has_files {
            // Whatever the agent left (a tree of any depth, links everywhere) goes through
            // descriptors, never followed, with a bounded number of them open.
            let delete = |source| RemoveError::Io {
                action: "delete (the instance is already removed from the store)",
                path: target.clone(),
                source,
            };
            let archive = SafeDir::open(&archive_dir).map_err(delete)?;
            let name = target.file_name().expect("a name of our own");
            archive.remove_tree(name, PURGE_LIMITS).map_err(delete)?;
        }
        Ok(Removed::Purged)
    } else {
        Ok(Removed::Archived(has_files.then_some(target)))
    }
}

fn unique_path(dir: &Path, base: &str) -> PathBuf {
    let mut candidate = dir.join(base);
    let mut n = 1;
    while fs::symlink_metadata(&candidate).is_ok() {
        n += 1;
        candidate = dir.join(format!("{base}-{n}"));
    }
    candidate
}
