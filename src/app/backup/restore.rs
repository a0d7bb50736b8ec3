//! `supervisor restore`: a new home from a backup archive, all or nothing.
//!
//! 1. The target must be new or an empty directory (restoring over a home is not supported).
//! 2. The whole archive is read and checked against its manifest, writing nothing.
//! 3. It is extracted, and checked again, into a hidden staging directory beside the target,
//!    with the home's private modes; the empty directories of a home are added.
//! 4. The restored database must pass `PRAGMA integrity_check` and match the manifest.
//! 5. Unless the same id is asked for, the copy gets a home id and a block of instance uids
//!    of its own (a copy beside its original on one engine must never take the original's
//!    containers, or its instances' files, for its own); each instance's files are handed to
//!    its uid.
//! 6. The staging directory is renamed to the target: the home appears complete or not at all.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::manifest::{Entry, Kind, Manifest, VerifyError};
use super::scan::{self, ScanError};
use crate::infra::fsutil;
use crate::infra::home::{Home, DB_FILE, IPC_DIR, VOLUME_DIR, WORKSPACE_DIR};
use crate::infra::store::backup::{inspect_copy, CopySummary};
use crate::infra::store::{Store, StoreError};

/// Who the audit log says gave a restored home its new identity.
const RESTORE_ACTOR: &str = "restore";

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(
        "{} already holds a supervisor database: restoring over an existing home is not supported; restore into a new or empty directory (--home DIR)",
        .0.display()
    )]
    TargetHasDatabase(PathBuf),
    #[error("{} is not empty: restore into a new or empty directory (--home DIR)", .0.display())]
    TargetNotEmpty(PathBuf),
    #[error("{} exists and is not a directory", .0.display())]
    TargetNotDir(PathBuf),
    #[error(
        "the archive holds database schema version {found}, newer than this supervisor knows ({known}): upgrade supervisor"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("the restored database fails its integrity check: {0}")]
    Integrity(String),
    #[error("the archive's database names an instance {0:?}, which is not a valid instance name: it is refused")]
    BadInstanceName(String),
    #[error(
        "the archive unpacks to {} and {} has only {} free: free some space or restore elsewhere",
        crate::app::render::bytes(*.needed), .dir.display(), crate::app::render::bytes(*.free)
    )]
    NoSpace {
        needed: u64,
        free: u64,
        dir: PathBuf,
    },
    #[error("the archive is refused: {0}")]
    Mismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| RestoreError::Io {
        action,
        path,
        source,
    }
}

/// How to restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Keep the original's home id and uids (disaster recovery where the original is gone).
    pub same_id: bool,
}

/// What was restored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub home: PathBuf,
    /// The restored home's id: a new one unless `same_id`.
    pub home_id: String,
    /// The id of the home the backup was taken of.
    pub original_home_id: String,
    pub same_id: bool,
    /// Files and directories handed to their instance's uid.
    pub owners_changed: u64,
    pub created_at: String,
    pub supervisor_version: String,
    pub schema_version: i64,
    pub instances: Vec<String>,
    pub messages: u64,
    pub tasks: u64,
    pub files: usize,
    pub integrity: String,
}

pub fn restore(
    archive: &Path,
    home: &Home,
    opts: RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let target = home.root();
    check_target(target)?;
    let manifest = scan::scan(archive, &mut |_, _| Ok(()))?;
    let known = crate::infra::store::latest_version();
    if manifest.schema_version > known {
        return Err(RestoreError::NewerSchema {
            found: manifest.schema_version,
            known,
        });
    }

    // Only now, with the archive known good and known to fit, is anything created.
    let parent = target.parent().unwrap_or(Path::new("/"));
    check_space(&manifest, parent)?;
    if !parent.exists() {
        fsutil::create_private_dir(parent).map_err(io_err("create", parent))?;
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".restoring-{}-", name.unwrap_or_default()))
        .tempdir_in(parent)
        .map_err(io_err("create a staging directory in", parent))?;
    let root = staging.path().to_path_buf();
    fsutil::set_mode(&root, fsutil::DIR_MODE).map_err(io_err("set the mode of", &root))?;

    let again = scan::scan(archive, &mut |entry, data| extract(&root, entry, data))?;
    if again != manifest {
        return Err(RestoreError::Mismatch(
            "the archive changed while it was being restored".into(),
        ));
    }
    let staged = Home::new(&root).map_err(|e| RestoreError::Mismatch(e.to_string()))?;
    for dir in [
        staged.instances_dir(),
        staged.archive_dir(),
        staged.runtime_dir(),
        staged.run_dir(),
        staged.backups_dir(),
    ] {
        fsutil::create_private_dir(&dir).map_err(io_err("create", &dir))?;
    }
    let db = check_database(&staged.db_path(), &manifest)?;
    let home_id = if opts.same_id {
        manifest.home_id.clone()
    } else {
        let mut store = Store::open(&staged.db_path())?;
        store.take_new_identity(RESTORE_ACTOR)?.home_id
    };
    let owners_changed = hand_over(&staged)?;

    fsutil::sync_dir(&root).map_err(io_err("sync", &root))?;
    check_target(target)?;
    let kept = staging.keep();
    if let Err(e) = fs::rename(&kept, target) {
        let _ = fs::remove_dir_all(&kept);
        return Err(io_err("move the restored home into place at", target)(e));
    }
    fsutil::sync_dir(parent).map_err(io_err("sync", parent))?;
    Ok(RestoreReport {
        home: target.to_path_buf(),
        home_id,
        original_home_id: manifest.home_id,
        same_id: opts.same_id,
        owners_changed,
        created_at: manifest.created_at,
        supervisor_version: manifest.supervisor_version,
        schema_version: db.schema_version,
        instances: db.live_instances,
        messages: db.messages,
        tasks: db.tasks,
        files: manifest
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .count(),
        integrity: db.integrity,
    })
}

/// Hands each live instance's extracted files (the restorer's own) to the instance's uid, as
/// the daemon would before its container starts; nothing when the supervisor is not root
/// (its instances then share its uid). Returns the entries that changed owner.
fn hand_over(staged: &Home) -> Result<u64, RestoreError> {
    let user = crate::infra::container_user::ContainerUser::detect();
    let store = Store::open(&staged.db_path())?;
    let mut changed = 0;
    for record in store.instances()? {
        // What every group reads is readable by their uids again (extraction made it private).
        if record.group.is_none() {
            let shared = staged
                .instances_dir()
                .join(&record.name)
                .join(crate::infra::home::SHARED_DIR);
            open_to_groups(&shared).map_err(io_err("open to the groups", &shared))?;
        }
        let Some(owner) = user.owner_for(record.uid) else {
            continue;
        };
        let name = crate::domain::instance::InstanceName::parse(&record.name)
            .map_err(|_| RestoreError::BadInstanceName(record.name.clone()))?;
        let paths = staged.instance_paths(&name);
        if fs::symlink_metadata(&paths.dir).is_err() {
            continue; // nothing of it was in the archive
        }
        changed += crate::infra::volume::give_to(&paths, owner)
            .map_err(|e| RestoreError::Mismatch(format!("instances/{}: {e}", record.name)))?;
    }
    Ok(changed)
}

/// Makes `dir` (an instance's `shared/`, restored: the host's own, no agent writes it)
/// readable by every uid: directories 0755, files 0644. Nothing when it is not there.
fn open_to_groups(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    fsutil::set_mode(dir, 0o755)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            open_to_groups(&entry.path())?;
        } else if kind.is_file() {
            fsutil::set_mode(&entry.path(), 0o644)?;
        }
    }
    Ok(())
}

/// What extracting the archive needs on disk: every file's size, a block for each entry's own
/// metadata, and room for the database to open (its WAL); at least the free space of the file
/// system that would hold it (the nearest existing directory up from `dir`).
fn check_space(manifest: &Manifest, dir: &Path) -> Result<(), RestoreError> {
    const PER_ENTRY: u64 = 4096;
    const SLACK: u64 = 64 << 20;
    let needed = manifest
        .entries
        .iter()
        .map(|e| e.size.div_ceil(PER_ENTRY) * PER_ENTRY + PER_ENTRY)
        .fold(SLACK, u64::saturating_add);
    let mut probe = dir;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let st = nix::sys::statvfs::statvfs(probe)
        .map_err(|e| io_err("measure the free space of", probe)(e.into()))?;
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    if needed > free {
        return Err(RestoreError::NoSpace {
            needed,
            free,
            dir: probe.to_path_buf(),
        });
    }
    Ok(())
}

/// Where an archived path goes in this version's layout: an instance's `workspace/` and
/// `ipc/` live in its volume (`instances/<name>/volume/`), whatever the home they came from.
fn physical(path: &str) -> PathBuf {
    let parts: Vec<&str> = path.split('/').collect();
    // An instance's own directory (a chat group's is below its instance's); a name that is
    // not valid stays as it is (the database check refuses it).
    let dir = |name: &str| {
        crate::domain::instance::InstanceName::parse(name)
            .map(|n| crate::infra::home::instance_dir(&n))
            .unwrap_or_else(|_| Path::new("instances").join(name))
    };
    match parts.as_slice() {
        ["instances", name, top, rest @ ..] if *top == WORKSPACE_DIR || *top == IPC_DIR => {
            let mut p = dir(name);
            p.push(VOLUME_DIR);
            p.push(top);
            p.extend(rest);
            p
        }
        ["instances", name] => dir(name),
        _ => PathBuf::from(path),
    }
}

/// The target may not exist yet, or be an empty directory (which the restored home replaces).
fn check_target(target: &Path) -> Result<(), RestoreError> {
    let meta = match fs::symlink_metadata(target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect", target)(e)),
    };
    if !meta.is_dir() {
        return Err(RestoreError::TargetNotDir(target.to_path_buf()));
    }
    if fs::symlink_metadata(target.join(DB_FILE)).is_ok() {
        return Err(RestoreError::TargetHasDatabase(target.to_path_buf()));
    }
    let mut entries = fs::read_dir(target).map_err(io_err("read", target))?;
    if entries.next().is_some() {
        return Err(RestoreError::TargetNotEmpty(target.to_path_buf()));
    }
    Ok(())
}

/// Writes one checked entry below `root` with the modes a home uses: directories 0700, files
/// 0600, or 0700 for files their owner could execute (scripts in a workspace).
fn extract(root: &Path, entry: &Entry, data: Option<&mut dyn Read>) -> io::Result<()> {
    // Checked by the manifest's checker: relative, plain names only.
    let path = root.join(physical(&entry.path));
    match (entry.kind, data) {
        (Kind::Dir, _) => fsutil::create_private_dir(&path),
        (Kind::File, Some(data)) => {
            if let Some(parent) = path.parent() {
                fsutil::create_private_dir(parent)?;
            }
            let executable = u32::from_str_radix(&entry.mode, 8).is_ok_and(|m| m & 0o100 != 0);
            let mode = if executable { 0o700 } else { fsutil::FILE_MODE };
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)?;
            io::copy(data, &mut file)?;
            fsutil::set_mode(&path, mode)?;
            file.sync_all()
        }
        (Kind::File, None) => Err(io::Error::other("a file without data")),
    }
}

/// The restored database must be intact and be the one the manifest describes.
fn check_database(path: &Path, manifest: &Manifest) -> Result<CopySummary, RestoreError> {
    let db = inspect_copy(path)?;
    if db.integrity != "ok" {
        return Err(RestoreError::Integrity(db.integrity));
    }
    // Every command takes the names it reads back for valid: a crafted database must not
    // bring in one that is not (a path, a control character, an empty name).
    if let Some(bad) = db
        .live_instances
        .iter()
        .find(|n| crate::domain::instance::InstanceName::parse(n).is_err())
    {
        return Err(RestoreError::BadInstanceName(bad.clone()));
    }
    if db.home_id.as_deref() != Some(manifest.home_id.as_str()) {
        return Err(refused(VerifyError::Manifest(format!(
            "home_id {} does not match the database's ({})",
            manifest.home_id,
            db.home_id.as_deref().unwrap_or("none")
        ))));
    }
    if db.schema_version != manifest.schema_version {
        return Err(refused(VerifyError::Manifest(format!(
            "schema_version {} does not match the database's ({})",
            manifest.schema_version, db.schema_version
        ))));
    }
    Ok(db)
}

fn refused(e: VerifyError) -> RestoreError {
    RestoreError::Scan(ScanError::Refused(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::backup::create::backup;
    use crate::app::instances::create::{create, NewInstance};
    use crate::app::instances::soul::{BuiltinSoul, Soul};
    use crate::domain::instance::{InstanceConfig, InstanceName};
    use crate::infra::store::messages::Inbound;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// An initialised home with instance alice, two messages and a file in its workspace.
    fn live_home(dir: &Path) -> Home {
        let home = Home::new(&dir.join("home")).unwrap();
        let mut store = home.init().unwrap();
        let new = NewInstance {
            name: InstanceName::parse("alice").unwrap(),
            soul: Soul::builtin(BuiltinSoul::Expert),
            config: InstanceConfig::default(),
        };
        create(&home, &mut store, &new, "test").unwrap();
        for body in ["one", "two"] {
            store
                .accept_message(&Inbound {
                    instance: "alice",
                    channel: "cli",
                    sender: "local",
                    body,
                    state: "queued",
                    chat: "",
                    sender_name: None,
                })
                .unwrap();
        }
        let paths = home.instance_paths(&new.name);
        let volume = crate::infra::volume::open(&paths).unwrap();
        let ws = volume.workspace().unwrap();
        use std::io::Write;
        ws.create_new("notes.txt", 0o644)
            .unwrap()
            .write_all(b"remember")
            .unwrap();
        let inbox = volume.queue(crate::infra::volume::Queue::In).unwrap();
        inbox
            .create_new("t.json", 0o600)
            .unwrap()
            .write_all(b"{}")
            .unwrap();
        home
    }

    #[test]
    fn a_backup_restores_into_a_new_home() {
        let dir = tempfile::tempdir().unwrap();
        let _mounts = crate::infra::disk::UnmountBelow(dir.path().to_path_buf());
        let home = live_home(dir.path());
        let report = backup(&home, None).unwrap();
        assert!(report.path.starts_with(home.backups_dir()));
        assert_eq!(mode(&report.path), 0o600);
        assert_eq!(report.database.messages, 2);
        assert!(report
            .skipped
            .iter()
            .any(|s| s.path == "instances/alice/ipc/in/t.json"));

        let target = Home::new(&dir.path().join("restored")).unwrap();
        let r = restore(&report.path, &target, RestoreOptions::default()).unwrap();
        assert_eq!(
            (r.instances.clone(), r.messages, r.tasks),
            (vec!["alice".to_string()], 2, 0)
        );
        assert_eq!(r.integrity, "ok");
        let root = target.root();
        assert_eq!(mode(root), 0o700);
        for rel in [
            "instances/alice/config.json",
            "instances/alice/workspace/SOUL.md",
            "instances/alice/workspace/AGENTS.md",
            "instances/alice/workspace/memory/MEMORY.md",
            "supervisor.toml",
        ] {
            let rel = physical(rel);
            assert_eq!(
                fs::read(root.join(&rel)).unwrap(),
                fs::read(home.root().join(&rel)).unwrap(),
                "{}",
                rel.display()
            );
            assert_eq!(mode(&root.join(&rel)), 0o600, "{}", rel.display());
        }
        assert_eq!(mode(&root.join("supervisor.db")), 0o600);
        let notes = root.join("instances/alice/volume/workspace/notes.txt");
        assert_eq!(fs::read_to_string(&notes).unwrap(), "remember");
        assert_eq!(mode(&notes), 0o600);
        for d in [
            "instances/alice/volume/ipc/in",
            "instances/alice/volume/ipc/out",
            "run",
            "runtime",
            "archive",
            "backups",
        ] {
            assert_eq!(mode(&root.join(d)), 0o700, "{d}");
        }
        assert!(!root.join("instances/alice/volume/ipc/in/t.json").exists());
        assert!(
            !root.join("instances/alice/volume.img").exists(),
            "restored as a plain volume; the daemon makes its image when it first starts it"
        );
        let mut store = target.open().unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        assert_eq!(store.history("alice", 10).unwrap().len(), 2);
        // A copy of its own: a new id and uid block, its files handed to the new uids.
        assert_eq!(r.original_home_id, report.home_id);
        assert_eq!(store.home_id().unwrap(), r.home_id);
        assert_ne!(r.home_id, report.home_id);
        let original = home.open().unwrap();
        assert_ne!(store.uid_block().unwrap(), original.uid_block().unwrap());
        let uid = store.instance("alice").unwrap().uid;
        assert_eq!(
            uid - store.uid_block().unwrap().0,
            original.instance("alice").unwrap().uid - original.uid_block().unwrap().0
        );
        use std::os::unix::fs::MetadataExt;
        if nix::unistd::geteuid().is_root() {
            for rel in [
                "instances/alice/volume/workspace",
                "instances/alice/volume/workspace/notes.txt",
                "instances/alice/volume/ipc/in",
            ] {
                assert_eq!(
                    fs::symlink_metadata(root.join(rel)).unwrap().uid(),
                    uid,
                    "{rel}"
                );
            }
            assert!(r.owners_changed >= 3, "{}", r.owners_changed);
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn refuses_a_home_with_a_database_and_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let _mounts = crate::infra::disk::UnmountBelow(dir.path().to_path_buf());
        let home = live_home(dir.path());
        let archive = backup(&home, None).unwrap().path;
        let err = restore(&archive, &home, RestoreOptions::default()).unwrap_err();
        assert!(matches!(err, RestoreError::TargetHasDatabase(_)), "{err}");
        let busy = dir.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("x"), "x").unwrap();
        let err = restore(
            &archive,
            &Home::new(&busy).unwrap(),
            RestoreOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::TargetNotEmpty(_)), "{err}");
        let hidden = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0, "no staging directory left behind");
        // An empty directory is fine: the restored home takes its place.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        restore(
            &archive,
            &Home::new(&empty).unwrap(),
            RestoreOptions::default(),
        )
        .unwrap();
        assert!(empty.join("supervisor.db").is_file());
    }

    #[test]
    fn refuses_a_database_naming_an_invalid_instance_and_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let _mounts = crate::infra::disk::UnmountBelow(dir.path().to_path_buf());
        let home = live_home(dir.path());
        home.open()
            .unwrap()
            .conn()
            .execute(
                "UPDATE instances SET name = '../evil' WHERE name = 'alice'",
                [],
            )
            .unwrap();
        let report = backup(&home, None).unwrap();
        assert!(report
            .skipped
            .iter()
            .any(|s| s.reason == "not a valid instance name"));
        let target = Home::new(&dir.path().join("restored")).unwrap();
        let err = restore(&report.path, &target, RestoreOptions::default()).unwrap_err();
        assert!(
            matches!(err, RestoreError::BadInstanceName(ref n) if n == "../evil"),
            "{err}"
        );
        assert!(!target.root().exists());
        assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
    }

    #[test]
    fn refuses_an_archive_that_does_not_fit_before_writing_anything() {
        let dir = tempfile::tempdir().unwrap();
        let _mounts = crate::infra::disk::UnmountBelow(dir.path().to_path_buf());
        let home = live_home(dir.path());
        // 100 MB of zeros: a small archive that unpacks large.
        let paths = home.instance_paths(&InstanceName::parse("alice").unwrap());
        let ws = crate::infra::volume::open(&paths)
            .unwrap()
            .workspace()
            .unwrap();
        let zeros = ws.create_new("zeros", 0o600).unwrap();
        zeros.set_len(100 << 20).unwrap();
        let report = backup(&home, None).unwrap();
        assert!(report.bytes < 1 << 20, "{} bytes", report.bytes);
        // A 128 MiB file system to restore into.
        let small = dir.path().join("small");
        fs::create_dir(&small).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=128m", "tmpfs"])
            .arg(&small)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "this test mounts a tmpfs: run it as root (CI does)"
        );
        let err = restore(
            &report.path,
            &Home::new(&small.join("home")).unwrap(),
            RestoreOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("free some space"), "{err}");
        assert_eq!(
            fs::read_dir(&small).unwrap().count(),
            0,
            "nothing was written"
        );
    }

    #[test]
    fn refuses_to_write_the_archive_where_it_would_back_itself_up() {
        let dir = tempfile::tempdir().unwrap();
        let _mounts = crate::infra::disk::UnmountBelow(dir.path().to_path_buf());
        let home = live_home(dir.path());
        let inside = home
            .root()
            .join("instances/alice/volume/workspace/b.tar.gz");
        let err = backup(&home, Some(&inside)).unwrap_err();
        assert!(
            matches!(err, super::super::BackupError::BadOut { .. }),
            "{err}"
        );
        let over_db = home.root().join("supervisor.db");
        assert!(backup(&home, Some(&over_db)).is_err());
        let fine = dir.path().join("b.tar.gz");
        backup(&home, Some(&fine)).unwrap();
        let again = backup(&home, Some(&fine)).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        assert!(!home
            .root()
            .join("instances/alice/volume/workspace")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with('.') }));
    }
}
