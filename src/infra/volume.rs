//! An instance's volume: the one directory tree its agent can write (`volume/workspace`,
//! `volume/ipc/in`, `volume/ipc/out`), on its own disk image where the limit is hard.
//!
//! Every host-side use of an instance's files goes through [`open`] (to read or hand over
//! files) or [`prepare`] (before its container starts), both under the instance's volume lock,
//! so a mount, a conversion to an image or a growth never races another process's use.
//! The directories come back as [`SafeDir`]s: nothing below `volume/` is ever reached by a
//! path string.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::domain::instance::config::format_size;
use crate::infra::disk::{self, DiskError, Enforcement, MountState};
use crate::infra::home::{InstancePaths, IPC_DIR, VOLUME_DIR, VOLUME_IMAGE, WORKSPACE_DIR};
use crate::infra::safefs::{Kind, SafeDir, TreeLimits, Usage};

/// The mode of the directories the agent owns, and of the host's own ones around them.
const DIR_MODE: u32 = 0o700;

/// Prefix of a plain volume set aside while it becomes an image.
const PLAIN_ASIDE: &str = ".volume-plain-";
/// The image being made, before it takes its name.
const IMAGE_NEW: &str = ".volume.img.new";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Something other than what the supervisor made: nothing is touched.
    #[error("{} {what}: the supervisor made a directory there; look at it (it may be an attack) and put one back, or restore the instance from a backup", path.display())]
    Unexpected { path: PathBuf, what: String },
    #[error("{} is a disk image, and only root can mount it: run this command as root", .0.display())]
    NeedsRoot(PathBuf),
    #[error("hard disk limits are required ([disk] enforce = \"hard\") but {0}")]
    Unavailable(String),
    /// In use for longer than a start should wait (a model call in flight): try again soon.
    #[error("{} is busy (a message is being handled); trying again shortly", .0.display())]
    Busy(PathBuf),
    #[error("the workspace does not fit in limits.disk ({limit}): raise limits.disk in config.json, or make room ({source})")]
    TooBig { limit: String, source: DiskError },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        action,
        path,
        source,
    }
}

/// The instance's volume lock, held while its volume is mounted, converted or used.
pub struct VolumeLock {
    _lock: Flock<File>,
}

fn lock(paths: &InstancePaths, arg: FlockArg) -> Result<Option<VolumeLock>, VolumeError> {
    let path = paths.dir.join(crate::infra::home::VOLUME_LOCK);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("open", &path))?;
    match Flock::lock(file, arg) {
        Ok(l) => Ok(Some(VolumeLock { _lock: l })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io_err("lock", &path)(io::Error::from(e))),
    }
}

/// A shared hold on the volume for one round of IPC work: None when a conversion or growth
/// holds it right now (try again shortly).
pub fn try_share(paths: &InstancePaths) -> Result<Option<VolumeLock>, VolumeError> {
    lock(paths, FlockArg::LockSharedNonblock)
}

/// The volume, opened.
pub struct OpenVolume {
    /// `volume/` itself (the image's root where there is one).
    pub root: SafeDir,
    /// On its own disk image (a hard limit).
    pub image: bool,
}

/// Which IPC queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// Host to agent (`/ipc/in`).
    In,
    /// Agent to host (`/ipc/out`).
    Out,
}

impl Queue {
    pub fn name(self) -> &'static str {
        match self {
            Queue::In => "in",
            Queue::Out => "out",
        }
    }
}

impl OpenVolume {
    /// The workspace (`/workspace` in the container).
    pub fn workspace(&self) -> Result<SafeDir, VolumeError> {
        self.checked_dir(&self.root, WORKSPACE_DIR)
    }

    /// `volume/ipc`, the host's (never mounted into a container).
    pub fn ipc(&self) -> Result<SafeDir, VolumeError> {
        self.checked_dir(&self.root, IPC_DIR)
    }

    /// One IPC queue, checked to be the real directory the supervisor made.
    pub fn queue(&self, queue: Queue) -> Result<SafeDir, VolumeError> {
        let ipc = self.ipc()?;
        self.checked_dir(&ipc, queue.name())
    }

    fn checked_dir(&self, parent: &SafeDir, name: &str) -> Result<SafeDir, VolumeError> {
        let path = parent.shown_child(name);
        match parent.stat(name).map_err(io_err("inspect", &path))? {
            Some(s) if s.kind == Kind::Dir => {}
            Some(s) => {
                return Err(VolumeError::Unexpected {
                    path,
                    what: format!("is {}", s.kind.described()),
                })
            }
            None => {
                return Err(VolumeError::Unexpected {
                    path,
                    what: "is missing".into(),
                })
            }
        }
        parent.open_dir(name).map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) | Some(nix::libc::ENOTDIR) => VolumeError::Unexpected {
                path: path.clone(),
                what: "was swapped for something else".into(),
            },
            _ => io_err("open", &path)(e),
        })
    }

    /// What the volume holds and can hold: (bytes used, inodes used). From the file system
    /// itself with an image; by a walk (capped: `complete` false past its limits) otherwise.
    pub fn usage(&self) -> Result<Usage, VolumeError> {
        let shown = self.root.shown().to_path_buf();
        if self.image {
            let (_, used, _, inodes) = self
                .root
                .file_system_use()
                .map_err(io_err("measure", &shown))?;
            return Ok(Usage {
                bytes: used,
                inodes,
                complete: true,
            });
        }
        self.root
            .usage(TreeLimits::default())
            .map_err(io_err("measure", &shown))
    }
}

/// Opens the instance's volume, mounting its image if it has one and it is not mounted yet.
/// A home from before volumes existed gets its `workspace/` and `ipc/` moved into one first.
pub fn open(paths: &InstancePaths) -> Result<OpenVolume, VolumeError> {
    // Already in order (the usual case): a shared hold is enough, and it never waits for the
    // messaging actor's round.
    {
        let _shared = lock(paths, FlockArg::LockShared)?;
        if in_order(paths)? {
            return open_unlocked(paths).and_then(|v| with_own_root_mode(paths, v));
        }
    }
    let _lock = lock(paths, FlockArg::LockExclusive)?;
    settle_layout(paths)?;
    open_locked(paths)
}

/// Whether the layout is this version's and an image, if there is one, is mounted.
fn in_order(paths: &InstancePaths) -> Result<bool, VolumeError> {
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if !exists(&paths.volume)
        || exists(&paths.dir.join(WORKSPACE_DIR))
        || exists(&paths.dir.join(IPC_DIR))
    {
        return Ok(false);
    }
    if interrupted_conversion(paths) {
        return Ok(false);
    }
    if !is_file(&paths.volume_image)? {
        return Ok(true);
    }
    Ok(matches!(
        disk::is_mounted(&paths.volume_image, &paths.volume),
        Ok(MountState::Mounted { .. })
    ))
}

/// Whether a conversion to an image left its traces (the instance's own directory is the
/// host's, so it is read by path).
fn interrupted_conversion(paths: &InstancePaths) -> bool {
    let Ok(entries) = std::fs::read_dir(&paths.dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with(PLAIN_ASIDE) || name == IMAGE_NEW
    })
}

/// How long [`prepare`] waits for the volume's exclusive lock (the messaging actor holds a
/// shared one for each round, which can last as long as a model call).
const PREPARE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The volume as it is now, without the lock and without mounting anything: for checking
/// that directories opened before are still the ones its paths lead to.
pub fn open_unlocked(paths: &InstancePaths) -> Result<OpenVolume, VolumeError> {
    let image = is_file(&paths.volume_image)?;
    let root = SafeDir::open(&paths.volume).map_err(io_err("open", &paths.volume))?;
    Ok(OpenVolume { root, image })
}

fn open_locked(paths: &InstancePaths) -> Result<OpenVolume, VolumeError> {
    let image = is_file(&paths.volume_image)?;
    if image {
        if !nix::unistd::geteuid().is_root() {
            return Err(VolumeError::NeedsRoot(paths.volume_image.clone()));
        }
        disk::mount(&paths.volume_image, &paths.volume)?;
    }
    let root = SafeDir::open(&paths.volume).map_err(|e| match e.raw_os_error() {
        Some(nix::libc::ELOOP) | Some(nix::libc::ENOTDIR) => VolumeError::Unexpected {
            path: paths.volume.clone(),
            what: "is not a directory".into(),
        },
        _ => io_err("open", &paths.volume)(e),
    })?;
    with_own_root_mode(paths, OpenVolume { root, image })
}

/// An image's root comes from mke2fs as 0755; the host keeps it its own (0700).
fn with_own_root_mode(paths: &InstancePaths, v: OpenVolume) -> Result<OpenVolume, VolumeError> {
    if v.image && v.root.stat_self().is_ok_and(|s| s.mode != DIR_MODE) {
        v.root
            .set_own_mode(DIR_MODE)
            .map_err(io_err("set the mode of", &paths.volume))?;
    }
    Ok(v)
}

fn is_file(path: &Path) -> Result<bool, VolumeError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(_) => Err(VolumeError::Unexpected {
            path: path.to_path_buf(),
            what: "is not a regular file".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("inspect", path)(e)),
    }
}

/// What [`prepare`] did beyond making sure, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub converted: bool,
    /// Its image took the new `limits.disk` (grown or shrunk).
    pub resized: Option<disk::Resized>,
    /// Ownership handed to the instance's uid (entries changed).
    pub chowned: u64,
    /// A raised limit that could not be applied yet, and why.
    pub pending: Option<String>,
}

/// Gets the volume ready for a container that is about to start (none of the instance's
/// containers runs now): an image of at least `limit` bytes where limits are hard (a plain
/// volume from before is converted), mounted, with `workspace/`, `ipc/in` and `ipc/out` real
/// directories of mode 0700 owned by `owner` (and everything in them, when they were someone
/// else's). Anything unexpected where those directories should be is refused, not repaired.
pub fn prepare(
    paths: &InstancePaths,
    enforcement: &Enforcement,
    limit: u64,
    owner: Option<(u32, u32)>,
) -> Result<(OpenVolume, Prepared), VolumeError> {
    let deadline = std::time::Instant::now() + PREPARE_LOCK_WAIT;
    let _lock = loop {
        match lock(paths, FlockArg::LockExclusiveNonblock)? {
            Some(l) => break l,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            None => return Err(VolumeError::Busy(paths.volume.clone())),
        }
    };
    settle_layout(paths)?;
    let mut done = Prepared::default();
    if let Enforcement::Unavailable { why } = enforcement {
        return Err(VolumeError::Unavailable(why.clone()));
    }
    let has_image = is_file(&paths.volume_image)?;
    if enforcement.is_hard() && !has_image {
        convert_to_image(paths, limit)?;
        done.converted = true;
    } else if has_image {
        let size = std::fs::metadata(&paths.volume_image)
            .map_err(io_err("inspect", &paths.volume_image))?
            .len();
        if limit != size {
            // Offline: the host's mount goes first; a device still attached means a container
            // of this instance still holds it, and the change waits for the next start.
            disk::unmount(&paths.volume)?;
            let (from, to) = (format_size(size), format_size(limit));
            if disk::is_attached(&paths.volume_image)? {
                done.pending = Some(format!(
                    "limits.disk is {to}; the disk stays at {from} until no container of this \
                     instance holds it"
                ));
            } else {
                done.resized = match disk::resize(&paths.volume_image, limit) {
                    Ok(r) => Some(r),
                    // The files do not fit in the new limit: nothing changed, and the instance
                    // waits in `error` until they do or the limit is raised again.
                    Err(source @ DiskError::Tool { .. }) if limit < size => {
                        return Err(VolumeError::TooBig { limit: to, source })
                    }
                    Err(e) => return Err(e.into()),
                };
            }
        }
    }
    let volume = open_locked(paths)?;
    done.chowned = own_dirs(paths, &volume, owner)?;
    Ok((volume, done))
}

/// Hands the volume of an instance whose files belong to someone else (a home restored from
/// a backup, its instances given new uids) to `owner` now: the same hand-over [`prepare`]
/// does before a container starts, under the lock and through descriptors. Returns how many
/// entries changed owner.
pub fn give_to(paths: &InstancePaths, owner: (u32, u32)) -> Result<u64, VolumeError> {
    let _lock = lock(paths, FlockArg::LockExclusive)?;
    settle_layout(paths)?;
    let volume = open_locked(paths)?;
    own_dirs(paths, &volume, Some(owner))
}

/// Makes `workspace/`, `ipc/in` and `ipc/out` real directories of mode 0700 owned by
/// `owner` (and everything in them, when they were someone else's); returns the entries
/// whose owner changed.
fn own_dirs(
    paths: &InstancePaths,
    volume: &OpenVolume,
    owner: Option<(u32, u32)>,
) -> Result<u64, VolumeError> {
    let mut chowned = 0;
    volume
        .root
        .set_own_mode(DIR_MODE)
        .map_err(io_err("set the mode of", &paths.volume))?;
    let ipc_path = paths.ipc.clone();
    if volume
        .root
        .stat(IPC_DIR)
        .map_err(io_err("inspect", &ipc_path))?
        .is_none()
    {
        volume
            .root
            .create_dir(IPC_DIR, DIR_MODE)
            .map_err(io_err("create", &ipc_path))?;
    }
    let ipc = volume.ipc()?;
    ipc.set_own_mode(DIR_MODE)
        .map_err(io_err("set the mode of", &ipc_path))?;
    for (parent, name) in [
        (&volume.root, WORKSPACE_DIR),
        (&ipc, Queue::In.name()),
        (&ipc, Queue::Out.name()),
    ] {
        let path = parent.shown_child(name);
        // Missing: made. Anything but a directory: refused (checked_dir says what it is).
        if parent
            .stat(name)
            .map_err(io_err("inspect", &path))?
            .is_none()
        {
            parent
                .create_dir(name, DIR_MODE)
                .map_err(io_err("create", &path))?;
        }
        let dir = volume.checked_dir(parent, name)?;
        if let Some((uid, gid)) = owner {
            let st = dir.stat_self().map_err(io_err("inspect", &path))?;
            if (st.uid, st.gid) != (uid, gid) {
                // Made for another uid (an older supervisor gave every agent one; a restored
                // home's files are the restorer's): the whole tree becomes this instance's,
                // through descriptors, links not followed.
                let (n, _) = dir
                    .chown_tree(uid, gid, TreeLimits::default())
                    .map_err(io_err("give to the instance's user", &path))?;
                chowned += n + 1;
                dir.set_own_owner(uid, gid)
                    .map_err(io_err("give to the instance's user", &path))?;
            }
        }
        dir.set_own_mode(DIR_MODE)
            .map_err(io_err("set the mode of", &path))?;
    }
    Ok(chowned)
}

/// Puts an instance directory in this version's layout, and finishes (or undoes) a
/// conversion to an image that a crash interrupted. Idempotent; called under the lock.
fn settle_layout(paths: &InstancePaths) -> Result<(), VolumeError> {
    let dir = SafeDir::open(&paths.dir).map_err(io_err("open", &paths.dir))?;
    let listing = dir.list(4096).map_err(io_err("read", &paths.dir))?;
    let image = dir
        .stat(VOLUME_IMAGE)
        .map_err(io_err("inspect", &paths.dir))?;
    for name in &listing.names {
        let Some(n) = name.to_str() else { continue };
        if !n.starts_with(PLAIN_ASIDE) {
            continue;
        }
        if image.is_some() {
            // The image took the plain volume's place: what was set aside is a copy.
            dir.remove_tree(name, TreeLimits::default())
                .map_err(io_err("remove", &paths.dir.join(name)))?;
        } else {
            // No image: the conversion stopped before it was complete, and what was set aside
            // is the only copy. The crash may have come after the empty mount point was made;
            // that directory gives way (rmdir fails, and nothing moves, if it holds anything).
            if dir
                .stat(VOLUME_DIR)
                .map_err(io_err("inspect", &paths.dir))?
                .is_some()
            {
                dir.remove_dir(VOLUME_DIR)
                    .map_err(|e| match e.raw_os_error() {
                        Some(nix::libc::ENOTEMPTY | nix::libc::EEXIST | nix::libc::ENOTDIR) => {
                            VolumeError::Unexpected {
                                path: paths.volume.clone(),
                                what: format!(
                                    "is there as well as the set-aside {n} of an interrupted \
                                 conversion; move one of them away"
                                ),
                            }
                        }
                        _ => io_err("remove", &paths.volume)(e),
                    })?;
            }
            dir.rename_to(name, &dir, VOLUME_DIR, false)
                .map_err(io_err("restore", &paths.volume))?;
            dir.sync().map_err(io_err("sync", &paths.dir))?;
            tracing::warn!(dir = %paths.dir.display(), "an interrupted conversion to a disk image was undone");
        }
    }
    if dir
        .stat(IMAGE_NEW)
        .map_err(io_err("inspect", &paths.dir))?
        .is_some()
    {
        dir.remove_file(IMAGE_NEW)
            .map_err(io_err("remove", &paths.dir.join(IMAGE_NEW)))?;
    }
    // Before volumes: workspace/ and ipc/ directly in the instance's directory.
    let volume = dir
        .stat(VOLUME_DIR)
        .map_err(io_err("inspect", &paths.volume))?;
    let old: Vec<&str> = [WORKSPACE_DIR, IPC_DIR]
        .into_iter()
        .filter(|n| matches!(dir.stat(n), Ok(Some(_))))
        .collect();
    if old.is_empty() {
        if volume.is_none() {
            dir.create_dir(VOLUME_DIR, DIR_MODE)
                .map_err(io_err("create", &paths.volume))?;
        }
        return Ok(());
    }
    match volume {
        None => dir
            .create_dir(VOLUME_DIR, DIR_MODE)
            .map_err(io_err("create", &paths.volume))?,
        Some(s) if s.kind != Kind::Dir => {
            return Err(VolumeError::Unexpected {
                path: paths.volume.clone(),
                what: format!("is {}", s.kind.described()),
            })
        }
        Some(_) => {}
    }
    let vol = dir
        .open_dir(VOLUME_DIR)
        .map_err(io_err("open", &paths.volume))?;
    for name in old {
        // Links and all: whatever is there moves as it is and is judged where it lands.
        dir.rename_to(name, &vol, name, false)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => VolumeError::Unexpected {
                    path: paths.dir.join(name),
                    what: format!("is there as well as {VOLUME_DIR}/{name}"),
                },
                _ => io_err("move into the volume", &paths.dir.join(name))(e),
            })?;
    }
    vol.sync().map_err(io_err("sync", &paths.volume))?;
    dir.sync().map_err(io_err("sync", &paths.dir))?;
    tracing::info!(dir = %paths.dir.display(), "moved the instance's files into volume/");
    Ok(())
}

/// Turns a plain volume into a disk image of `limit` bytes holding the same tree (no
/// container of the instance runs: mke2fs reads the tree by path).
fn convert_to_image(paths: &InstancePaths, limit: u64) -> Result<(), VolumeError> {
    let dir = SafeDir::open(&paths.dir).map_err(io_err("open", &paths.dir))?;
    if !matches!(
        disk::is_mounted(&paths.volume_image, &paths.volume),
        Ok(MountState::Unmounted)
    ) {
        return Err(VolumeError::Unexpected {
            path: paths.volume.clone(),
            what: "has a file system mounted but no image beside it".into(),
        });
    }
    let new = paths.dir.join(IMAGE_NEW);
    disk::make_image(&paths.volume, &new, limit).map_err(|e| match e {
        e @ DiskError::Tool { .. } => VolumeError::TooBig {
            limit: format_size(limit),
            source: e,
        },
        e => e.into(),
    })?;
    let aside = format!("{PLAIN_ASIDE}{}", crate::infra::store::now_ms());
    dir.rename_to(VOLUME_DIR, &dir, &aside, false)
        .map_err(io_err("set aside", &paths.volume))?;
    dir.create_dir(VOLUME_DIR, DIR_MODE)
        .map_err(io_err("create", &paths.volume))?;
    dir.rename_to(IMAGE_NEW, &dir, VOLUME_IMAGE, false)
        .map_err(io_err("move into place", &paths.volume_image))?;
    dir.sync().map_err(io_err("sync", &paths.dir))?;
    dir.remove_tree(&aside, TreeLimits::default())
        .map_err(io_err("remove", &paths.dir.join(&aside)))?;
    tracing::info!(dir = %paths.dir.display(), limit, "the instance's volume is now a disk image");
    Ok(())
}

/// Unmounts the instance's volume if it is mounted (before its directory moves or goes).
/// The caller keeps the returned lock until the directory has moved: without it, the
/// messaging actor could mount the image again in between.
#[must_use = "the volume may be mounted again as soon as the lock is dropped"]
pub fn release(paths: &InstancePaths) -> Result<Option<VolumeLock>, VolumeError> {
    if !paths.volume_image.exists() {
        return Ok(None);
    }
    let held = lock(paths, FlockArg::LockExclusive)?;
    if let MountState::Mounted { .. } = disk::is_mounted(&paths.volume_image, &paths.volume)? {
        disk::unmount(&paths.volume)?;
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn instance() -> (tempfile::TempDir, InstancePaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = InstancePaths::under(dir.path().join("alice"));
        fs::create_dir_all(&paths.dir).unwrap();
        (dir, paths)
    }

    fn plain_tree(paths: &InstancePaths) {
        for d in [
            &paths.workspace,
            &paths.ipc.join("in"),
            &paths.ipc.join("out"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(paths.workspace.join("SOUL.md"), "# Soul\n").unwrap();
    }

    #[test]
    fn a_home_from_before_volumes_is_moved_into_one() {
        let (_d, paths) = instance();
        fs::create_dir_all(paths.dir.join("workspace/memory")).unwrap();
        fs::write(paths.dir.join("workspace/SOUL.md"), "# Old\n").unwrap();
        fs::create_dir_all(paths.dir.join("ipc/in")).unwrap();
        fs::create_dir_all(paths.dir.join("ipc/out")).unwrap();
        fs::write(paths.dir.join("ipc/in/1-turn.json"), "{}").unwrap();
        let v = open(&paths).unwrap();
        assert!(!paths.dir.join("workspace").exists() && !paths.dir.join("ipc").exists());
        assert_eq!(
            fs::read_to_string(paths.workspace.join("SOUL.md")).unwrap(),
            "# Old\n"
        );
        assert!(paths.ipc.join("in/1-turn.json").is_file(), "nothing lost");
        assert!(v.queue(Queue::Out).is_ok());
        // Done once: opening again changes nothing.
        open(&paths).unwrap();
        assert!(paths.workspace.join("memory").is_dir());
    }

    #[test]
    fn a_conversion_cut_short_after_the_mount_point_was_made_gives_the_files_back() {
        let (_d, paths) = instance();
        plain_tree(&paths);
        fs::write(paths.workspace.join("notes.md"), "keep me\n").unwrap();
        // The state a crash leaves between "set aside" and "image moved into place".
        fs::rename(&paths.volume, paths.dir.join(format!("{PLAIN_ASIDE}1"))).unwrap();
        fs::create_dir(&paths.volume).unwrap();
        fs::write(paths.dir.join(IMAGE_NEW), b"half an image").unwrap();
        let v = open(&paths).unwrap();
        assert_eq!(
            fs::read_to_string(paths.workspace.join("notes.md")).unwrap(),
            "keep me\n"
        );
        assert!(v.queue(Queue::Out).is_ok());
        assert!(!paths.dir.join(IMAGE_NEW).exists());
        assert!(!paths.dir.join(format!("{PLAIN_ASIDE}1")).exists());
    }

    #[test]
    fn a_link_where_a_queue_should_be_is_refused_and_left_alone() {
        let (_d, paths) = instance();
        plain_tree(&paths);
        let decoy = tempfile::tempdir().unwrap();
        fs::remove_dir(paths.ipc.join("out")).unwrap();
        symlink(decoy.path(), paths.ipc.join("out")).unwrap();
        let v = open(&paths).unwrap();
        assert!(matches!(
            v.queue(Queue::Out),
            Err(VolumeError::Unexpected { .. })
        ));
        let soft = Enforcement::Soft { why: "test".into() };
        let err = prepare(&paths, &soft, 64 << 20, None)
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(fs::symlink_metadata(paths.ipc.join("out"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn prepare_gives_the_instance_its_tree_through_descriptors() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test changes owners: run it as root (CI does)"
        );
        let (_d, paths) = instance();
        plain_tree(&paths);
        let outside = tempfile::NamedTempFile::new().unwrap();
        symlink(outside.path(), paths.workspace.join("link")).unwrap();
        let soft = Enforcement::Soft { why: "test".into() };
        let (_, done) = prepare(&paths, &soft, 64 << 20, Some((16_777_999, 16_777_999))).unwrap();
        assert!(done.chowned >= 4, "{done:?}");
        for p in [
            &paths.workspace,
            &paths.workspace.join("SOUL.md"),
            &paths.ipc.join("in"),
        ] {
            assert_eq!(
                fs::symlink_metadata(p).unwrap().uid(),
                16_777_999,
                "{}",
                p.display()
            );
        }
        assert_eq!(
            fs::metadata(outside.path()).unwrap().uid(),
            0,
            "a link's target is not changed"
        );
        assert_eq!(
            fs::metadata(&paths.ipc).unwrap().uid(),
            0,
            "ipc/ stays the host's"
        );
        // Once handed over, nothing more to do.
        let (_, again) = prepare(&paths, &soft, 64 << 20, Some((16_777_999, 16_777_999))).unwrap();
        assert_eq!(again.chowned, 0);
    }

    #[test]
    fn a_plain_volume_becomes_an_image_holding_its_files_and_follows_its_limit() {
        assert!(
            Enforcement::detect(crate::infra::disk::EnforceSetting::Auto).is_hard(),
            "this test makes disk images: run it as root with loop devices and e2fsprogs (CI does)"
        );
        let (d, paths) = instance();
        let _mounts = crate::infra::disk::UnmountBelow(d.path().to_path_buf());
        plain_tree(&paths);
        fs::write(paths.ipc.join("in/1-turn.json"), "{}").unwrap();
        let (v, done) = prepare(&paths, &Enforcement::Hard, 64 << 20, None).unwrap();
        assert!(done.converted);
        assert!(v.image && paths.volume_image.is_file());
        assert_eq!(
            fs::read_to_string(paths.workspace.join("SOUL.md")).unwrap(),
            "# Soul\n"
        );
        assert!(
            paths.ipc.join("in/1-turn.json").is_file(),
            "a turn waiting is kept"
        );
        let aside: Vec<_> = fs::read_dir(&paths.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".volume"))
            .collect();
        assert!(aside.is_empty(), "nothing left beside it");
        drop(v);
        // A larger limit grows it, a smaller one the files fit in shrinks it.
        let (_, grown) = prepare(&paths, &Enforcement::Hard, 128 << 20, None).unwrap();
        assert_eq!(grown.resized, Some(disk::Resized::Grown));
        let (v, shrunk) = prepare(&paths, &Enforcement::Hard, 64 << 20, None).unwrap();
        assert_eq!(shrunk.resized, Some(disk::Resized::Shrunk));
        let (_, used, _, _) = v.root.file_system_use().unwrap();
        assert!(used < 64 << 20);
        assert_eq!(
            fs::read_to_string(paths.workspace.join("SOUL.md")).unwrap(),
            "# Soul\n"
        );
    }
}
