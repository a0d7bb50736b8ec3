//! Choosing and copying what a backup holds from a live home, into a private staging
//! directory, recording each entry for the manifest.
//!
//! What is kept of each live instance (`instances/<name>/`): `config.json`, the whole
//! `workspace/` tree (SOUL.md, AGENTS.md, memory/, skills/ and whatever the agent wrote), and
//! the `ipc/`, `ipc/in/` and `ipc/out/` directories but none of their files. Those are
//! envelopes in transit, and the database copy is the truth about them: a turn still open in
//! it is written into `in/` again by the next daemon, and an answer still waiting in `out/`
//! for a turn the copy does not know could not be matched anyway. Anything else found in an
//! instance's directory (such as `quarantine/`) is listed as skipped.
//!
//! Files are copied before they are archived, each read exactly once and hashed as it is
//! read, so the archive always matches its manifest even while agents keep writing. A file
//! that changes while it is copied is copied again (up to three times).
//!
//! Nothing is followed: every directory is opened relative to its parent's descriptor with
//! `O_NOFOLLOW`, and every file is checked to be the regular file that was listed, so an
//! agent that swaps a file for a link during the backup cannot bring a host file into it.
//! Links, FIFOs, sockets and devices are listed as skipped with the reason.

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use sha2::{Digest, Sha256};

use super::manifest::{Entry, Kind, Skipped};
use crate::infra::fsutil;
use crate::infra::home::{Home, GROUPS_DIR, IPC_DIR, WORKSPACE_DIR};

/// How often a file that changes while it is copied is copied again.
const COPY_ATTEMPTS: u32 = 3;

/// Entries deeper than this below a workspace are left out (and listed as skipped): each
/// level holds a directory open while it is copied.
pub const MAX_DEPTH: usize = 100;
/// Entries whose path is longer than this are left out (and listed as skipped): the copy and
/// a restore must be able to name them.
pub const MAX_PATH_BYTES: usize = 3000;
/// How many files of one IPC queue are listed as skipped one by one; the rest are counted.
const LISTED_QUEUE_FILES: usize = 100;

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}: {source}")]
pub struct CollectError {
    pub action: &'static str,
    pub path: String,
    pub source: io::Error,
}

fn fail(action: &'static str, path: &str) -> impl FnOnce(io::Error) -> CollectError {
    let path = path.to_string();
    move |source| CollectError {
        action,
        path,
        source,
    }
}

/// The staged copies and what the manifest will say of them.
#[derive(Debug)]
pub struct Stager {
    root: PathBuf,
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
    /// Files that kept changing while they were copied: the archive holds one of their
    /// versions, possibly a torn one.
    pub unsettled: Vec<String>,
}

impl Stager {
    /// Copies go below `root`, a private directory the caller made.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            entries: Vec::new(),
            skipped: Vec::new(),
            unsettled: Vec::new(),
        }
    }

    /// Where the copy of `rel` is (or goes).
    pub fn staged(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn skip(&mut self, rel: &str, reason: &str) {
        self.skipped.push(Skipped {
            path: rel.to_string(),
            reason: reason.to_string(),
        });
    }

    fn dir(&mut self, rel: &str, mode: u32) -> Result<(), CollectError> {
        let staged = self.staged(rel);
        fsutil::create_private_dir(&staged).map_err(fail("create", rel))?;
        self.entries.push(Entry {
            path: rel.to_string(),
            kind: Kind::Dir,
            size: 0,
            mode: format!("{:04o}", mode & 0o7777),
            sha256: None,
        });
        Ok(())
    }

    /// Records a file already staged (the database copy), hashing it.
    pub fn staged_file(&mut self, rel: &str, mode: u32) -> Result<(), CollectError> {
        let mut f = File::open(self.staged(rel)).map_err(fail("read", rel))?;
        let (size, sha256) = copy_hashing(&mut f, &mut io::sink()).map_err(fail("read", rel))?;
        self.push_file(rel, size, mode, sha256);
        Ok(())
    }

    fn push_file(&mut self, rel: &str, size: u64, mode: u32, sha256: String) {
        self.entries.push(Entry {
            path: rel.to_string(),
            kind: Kind::File,
            size,
            mode: format!("{:04o}", mode & 0o7777),
            sha256: Some(sha256),
        });
    }

    /// Copies the regular file `name` of the directory `dir` to the staging copy of `rel`.
    fn file_at(&mut self, dir: BorrowedFd, name: &CStr, rel: &str) -> Result<(), CollectError> {
        for attempt in 1..=COPY_ATTEMPTS {
            let flags = OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC;
            let fd = match openat(dir, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                // Deleted since it was listed: it is simply not part of this backup.
                Err(Errno::ENOENT) => return Ok(()),
                Err(Errno::ELOOP) => {
                    self.skip(rel, "symbolic link (not followed)");
                    return Ok(());
                }
                Err(e) => return Err(fail("open", rel)(e.into())),
            };
            let mut src = File::from(fd);
            let before = src.metadata().map_err(fail("stat", rel))?;
            if !before.is_file() {
                self.skip(
                    rel,
                    "changed into something other than a regular file during the backup",
                );
                return Ok(());
            }
            let mut dst = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(fsutil::FILE_MODE)
                .open(self.staged(rel))
                .map_err(fail("stage", rel))?;
            let (size, sha256) = copy_hashing(&mut src, &mut dst).map_err(fail("copy", rel))?;
            let after = src.metadata().map_err(fail("stat", rel))?;
            let settled = size == after.len()
                && before.len() == after.len()
                && (before.mtime(), before.mtime_nsec()) == (after.mtime(), after.mtime_nsec());
            if settled || attempt == COPY_ATTEMPTS {
                if !settled {
                    self.unsettled.push(rel.to_string());
                }
                self.push_file(rel, size, before.mode(), sha256);
                return Ok(());
            }
        }
        unreachable!("the last attempt always returns")
    }

    /// Copies the directory `name` of `dir` and everything below it, following nothing, down
    /// to [`MAX_DEPTH`] levels below the top and paths of [`MAX_PATH_BYTES`]; what lies beyond
    /// is listed as skipped.
    fn tree_at(
        &mut self,
        dir: BorrowedFd,
        name: &CStr,
        rel: &str,
        depth: usize,
    ) -> Result<(), CollectError> {
        let Some(fd) = self.open_dir_at(dir, name, rel)? else {
            return Ok(());
        };
        let mode = fs_mode(fd.as_fd(), rel)?;
        self.dir(rel, mode)?;
        for child in list(fd.as_fd(), rel)? {
            let Some(child_rel) = child_path(rel, &child) else {
                self.skip(
                    &shorten(&format!("{rel}/{}", child.to_string_lossy())),
                    "name is not UTF-8",
                );
                continue;
            };
            let kind = file_type_at(fd.as_fd(), &child, &child_rel)?;
            if kind.is_some() && child_rel.len() > MAX_PATH_BYTES {
                self.skip(
                    &shorten(&child_rel),
                    &format!("its path is longer than {MAX_PATH_BYTES} bytes (not stored)"),
                );
                continue;
            }
            match kind {
                None => {}
                Some(SFlag::S_IFDIR) if depth >= MAX_DEPTH => self.skip(
                    &shorten(&child_rel),
                    &format!("deeper than {MAX_DEPTH} levels (not stored)"),
                ),
                Some(SFlag::S_IFDIR) => self.tree_at(fd.as_fd(), &child, &child_rel, depth + 1)?,
                Some(SFlag::S_IFREG) => self.file_at(fd.as_fd(), &child, &child_rel)?,
                Some(other) => self.skip(&child_rel, special_reason(other)),
            }
        }
        Ok(())
    }

    /// Opens a directory below `dir` without following a link; None (and a skipped entry)
    /// when it is gone or not a directory.
    fn open_dir_at(
        &mut self,
        dir: BorrowedFd,
        name: &CStr,
        rel: &str,
    ) -> Result<Option<OwnedFd>, CollectError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => {
                self.skip(rel, "missing");
                Ok(None)
            }
            Err(Errno::ELOOP) => {
                self.skip(rel, "symbolic link (not followed)");
                Ok(None)
            }
            Err(Errno::ENOTDIR) => {
                self.skip(rel, "not a directory");
                Ok(None)
            }
            Err(e) => Err(fail("open", rel)(e.into())),
        }
    }
}

/// Stages what a backup holds of `home`: `supervisor.toml` if present, and the files that
/// matter of each instance named in `live` (the live instances of the database copy, so the
/// archive's files and its database agree on which instances exist).
pub fn collect(home: &Home, live: &[String], s: &mut Stager) -> Result<(), CollectError> {
    let root_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let home_root = home.root();
    let shown = home_root.display().to_string();
    // The home itself may be reached through a link: that is the operator's choice.
    let root = nix::fcntl::open(home_root, root_flags, Mode::empty())
        .map_err(|e| fail("open", &shown)(e.into()))?;

    let config = cstring(crate::infra::home::CONFIG_FILE);
    match file_type_at(root.as_fd(), &config, crate::infra::home::CONFIG_FILE)? {
        None => {}
        Some(SFlag::S_IFREG) => {
            s.file_at(root.as_fd(), &config, crate::infra::home::CONFIG_FILE)?
        }
        Some(other) => s.skip(crate::infra::home::CONFIG_FILE, special_reason(other)),
    }

    let Some(instances) = s.open_dir_at(root.as_fd(), &cstring("instances"), "instances")? else {
        return Ok(());
    };
    s.dir("instances", fsutil::DIR_MODE)?;
    for name in live {
        instance(s, home, instances.as_fd(), name)?;
    }
    Ok(())
}

/// One instance: its config, and from its volume (mounted if it is an image) its workspace
/// and its IPC directories, under the names a restore expects: `instances/<name>/workspace`
/// and `instances/<name>/ipc/{in,out}`, whatever the volume is on this host.
fn instance(
    s: &mut Stager,
    home: &Home,
    instances: BorrowedFd,
    name: &str,
) -> Result<(), CollectError> {
    let rel = format!("instances/{name}");
    // Names come from the database; one that is not a valid name is never made a path.
    let Ok(iname) = crate::domain::instance::InstanceName::parse(name) else {
        s.skip(&shorten(&rel), "not a valid instance name");
        return Ok(());
    };
    // A chat group's files are below its instance's (`instances/<name>/groups/<key>`); the
    // archive names them as an instance's, `instances/<name>_<key>/`, with no config.json.
    let group_dir;
    let (parent, own) = match (iname.root(), iname.key()) {
        (Some(root), Some(key)) => {
            let root_rel = format!("instances/{root}");
            let Some(root_dir) = s.open_dir_at(instances, &cstring(root.as_str()), &root_rel)?
            else {
                return Ok(());
            };
            let groups_rel = format!("{root_rel}/{GROUPS_DIR}");
            let Some(groups) =
                s.open_dir_at(root_dir.as_fd(), &cstring(GROUPS_DIR), &groups_rel)?
            else {
                return Ok(());
            };
            group_dir = groups;
            (group_dir.as_fd(), cstring(key))
        }
        _ => (instances, cstring(name)),
    };
    let Some(dir) = s.open_dir_at(parent, &own, &rel)? else {
        return Ok(());
    };
    s.dir(&rel, fs_mode(dir.as_fd(), &rel)?)?;
    for child in list(dir.as_fd(), &rel)? {
        let Some(child_rel) = child_path(&rel, &child) else {
            s.skip(
                &format!("{rel}/{}", child.to_string_lossy()),
                "name is not UTF-8",
            );
            continue;
        };
        let kind = file_type_at(dir.as_fd(), &child, &child_rel)?;
        match (child.to_bytes(), kind) {
            (_, None) => {}
            (b"config.json", Some(SFlag::S_IFREG)) => s.file_at(dir.as_fd(), &child, &child_rel)?,
            (b"volume", Some(SFlag::S_IFDIR)) => {}
            (b"volume.img", Some(SFlag::S_IFREG)) => s.skip(
                &child_rel,
                "the instance's disk image: the files on it are in the backup instead",
            ),
            (b"volume.lock", Some(SFlag::S_IFREG)) => {}
            // The daemon's memory of config.json, made again from it when it is read.
            (b"config.last-valid.json", Some(SFlag::S_IFREG)) => {}
            // Each group is collected as an instance of its own.
            (b"groups", Some(SFlag::S_IFDIR)) => {}
            // The host's copy of the persona, made again from the workspace before each turn.
            (b"persona", Some(SFlag::S_IFDIR)) => {}
            // What the operator gives every group to read: kept, as a workspace is.
            (b"shared", Some(SFlag::S_IFDIR)) => s.tree_at(dir.as_fd(), &child, &child_rel, 1)?,
            (b"quarantine", Some(SFlag::S_IFDIR)) => s.skip(
                &child_rel,
                "quarantined IPC files are kept for inspection, not instance state",
            ),
            (_, Some(SFlag::S_IFREG | SFlag::S_IFDIR)) => s.skip(
                &child_rel,
                "not instance state (only config.json and the volume's workspace/ and ipc/ are)",
            ),
            (_, Some(other)) => s.skip(&child_rel, special_reason(other)),
        }
    }
    let volume = match crate::infra::volume::open(&home.instance_paths(&iname)) {
        Ok(v) => v,
        Err(e) => {
            s.skip(
                &format!("{rel}/workspace"),
                &format!("the instance's volume cannot be opened: {e}"),
            );
            return Ok(());
        }
    };
    s.tree_at(
        volume.root.as_fd(),
        &cstring(WORKSPACE_DIR),
        &format!("{rel}/workspace"),
        1,
    )?;
    ipc(
        s,
        volume.root.as_fd(),
        &cstring(IPC_DIR),
        &format!("{rel}/ipc"),
    )
}

/// The IPC directories, empty: see the module documentation for why their files are left.
fn ipc(s: &mut Stager, parent: BorrowedFd, name: &CStr, rel: &str) -> Result<(), CollectError> {
    let Some(dir) = s.open_dir_at(parent, name, rel)? else {
        return Ok(());
    };
    s.dir(rel, fs_mode(dir.as_fd(), rel)?)?;
    const TRANSIENT: &str = "transient IPC file (the database holds the messages)";
    for child in list(dir.as_fd(), rel)? {
        let Some(child_rel) = child_path(rel, &child) else {
            continue;
        };
        let is_queue = matches!(child.to_bytes(), b"in" | b"out");
        match file_type_at(dir.as_fd(), &child, &child_rel)? {
            Some(SFlag::S_IFDIR) if is_queue => {
                let Some(queue) = s.open_dir_at(dir.as_fd(), &child, &child_rel)? else {
                    continue;
                };
                s.dir(&child_rel, fs_mode(queue.as_fd(), &child_rel)?)?;
                let files = list(queue.as_fd(), &child_rel)?;
                for file in files.iter().take(LISTED_QUEUE_FILES) {
                    let shown = format!("{child_rel}/{}", file.to_string_lossy());
                    s.skip(&shorten(&shown), TRANSIENT);
                }
                if files.len() > LISTED_QUEUE_FILES {
                    s.skip(
                        &format!("{child_rel}/…"),
                        &format!(
                            "{} more transient IPC files (the database holds the messages)",
                            files.len() - LISTED_QUEUE_FILES
                        ),
                    );
                }
            }
            None => {}
            Some(_) => s.skip(&child_rel, TRANSIENT),
        }
    }
    Ok(())
}

/// A path for the list of skipped entries, cut to a length a manifest should hold.
fn shorten(path: &str) -> String {
    if path.len() <= 512 {
        return path.to_string();
    }
    let mut end = 500;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

fn cstring(s: &str) -> CString {
    CString::new(s).expect("no NUL in a fixed name")
}

fn child_path(rel: &str, name: &CStr) -> Option<String> {
    name.to_str().ok().map(|n| format!("{rel}/{n}"))
}

/// The names in a directory, sorted, without `.` and `..`.
fn list(dir: BorrowedFd, rel: &str) -> Result<Vec<CString>, CollectError> {
    let dup = dir.try_clone_to_owned().map_err(fail("read", rel))?;
    let mut d = nix::dir::Dir::from_fd(dup).map_err(|e| fail("read", rel)(e.into()))?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| fail("read", rel)(e.into()))?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The type of `name` in `dir`, not following a link; None when it is gone.
fn file_type_at(dir: BorrowedFd, name: &CStr, rel: &str) -> Result<Option<SFlag>, CollectError> {
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(
            st.st_mode & SFlag::S_IFMT.bits(),
        ))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(fail("stat", rel)(e.into())),
    }
}

fn fs_mode(fd: BorrowedFd, rel: &str) -> Result<u32, CollectError> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| fail("stat", rel)(e.into()))?;
    Ok(st.st_mode & 0o7777)
}

fn special_reason(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFLNK => "symbolic link (not followed)",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "device file",
        _ => "not a regular file or directory",
    }
}

/// Copies `src` to `dst`, returning the size and the lowercase hex sha256 of what was read.
pub fn copy_hashing(src: &mut impl Read, dst: &mut impl io::Write) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.flush()?;
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A home with alice's files on a plain volume (a soft limit: no image to mount).
    fn home_with_alice() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        let i = home.root().join("instances/alice");
        let v = i.join("volume");
        for d in [
            "volume/workspace/memory",
            "volume/workspace/skills",
            "volume/ipc/in",
            "volume/ipc/out",
            "quarantine",
        ] {
            fs::create_dir_all(i.join(d)).unwrap();
        }
        fs::write(home.root().join("supervisor.toml"), "# host\n").unwrap();
        fs::write(i.join("config.json"), "{}").unwrap();
        fs::write(v.join("workspace/SOUL.md"), "# soul").unwrap();
        fs::write(v.join("workspace/memory/MEMORY.md"), "mem").unwrap();
        fs::write(v.join("ipc/in/turn.json"), "{}").unwrap();
        fs::write(i.join("quarantine/bad.json"), "x").unwrap();
        symlink("/etc/passwd", v.join("workspace/passwd")).unwrap();
        symlink("/etc", v.join("workspace/etc")).unwrap();
        nix::unistd::mkfifo(&v.join("workspace/pipe"), Mode::from_bits_truncate(0o600)).unwrap();
        let script = v.join("workspace/run.sh");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
        (dir, home)
    }

    #[test]
    fn keeps_instance_state_and_lists_what_it_skips() {
        let (_dir, home) = home_with_alice();
        let staging = tempfile::tempdir().unwrap();
        let mut s = Stager::new(staging.path());
        collect(&home, &["alice".into(), "gone".into()], &mut s).unwrap();

        let kept: Vec<(&str, Kind)> = s
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("supervisor.toml", Kind::File),
                ("instances", Kind::Dir),
                ("instances/alice", Kind::Dir),
                ("instances/alice/config.json", Kind::File),
                ("instances/alice/workspace", Kind::Dir),
                ("instances/alice/workspace/SOUL.md", Kind::File),
                ("instances/alice/workspace/memory", Kind::Dir),
                ("instances/alice/workspace/memory/MEMORY.md", Kind::File),
                ("instances/alice/workspace/run.sh", Kind::File),
                ("instances/alice/workspace/skills", Kind::Dir),
                ("instances/alice/ipc", Kind::Dir),
                ("instances/alice/ipc/in", Kind::Dir),
                ("instances/alice/ipc/out", Kind::Dir),
            ]
        );
        let skipped: Vec<(&str, &str)> = s
            .skipped
            .iter()
            .map(|k| (k.path.as_str(), k.reason.as_str()))
            .collect();
        assert!(skipped.contains(&(
            "instances/alice/workspace/passwd",
            "symbolic link (not followed)"
        )));
        assert!(skipped.contains(&(
            "instances/alice/workspace/etc",
            "symbolic link (not followed)"
        )));
        assert!(skipped.contains(&("instances/alice/workspace/pipe", "FIFO")));
        assert!(skipped
            .iter()
            .any(|(p, _)| *p == "instances/alice/ipc/in/turn.json"));
        assert!(skipped
            .iter()
            .any(|(p, _)| *p == "instances/alice/quarantine"));
        assert!(skipped.contains(&("instances/gone", "missing")));

        let soul = s
            .entries
            .iter()
            .find(|e| e.path.ends_with("SOUL.md"))
            .unwrap();
        assert_eq!(soul.size, 6);
        assert_eq!(
            soul.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(b"# soul")).as_str())
        );
        let script = s
            .entries
            .iter()
            .find(|e| e.path.ends_with("run.sh"))
            .unwrap();
        assert_eq!(script.mode, "0700");
        assert_eq!(
            fs::read(s.staged("instances/alice/workspace/memory/MEMORY.md")).unwrap(),
            b"mem"
        );
        assert!(s.unsettled.is_empty());
    }

    #[test]
    fn paths_too_deep_or_too_long_are_skipped_not_fatal() {
        let (_dir, home) = home_with_alice();
        let ws = crate::infra::safefs::SafeDir::open(
            &home.root().join("instances/alice/volume/workspace"),
        )
        .unwrap();
        // 150 levels (deeper than the limit) and, elsewhere, a path longer than the limit.
        let mut d = ws.try_clone().unwrap();
        for _ in 0..150 {
            d.create_dir("d", 0o700).unwrap();
            d = d.open_dir("d").unwrap();
        }
        let mut d = ws.try_clone().unwrap();
        let long = "x".repeat(200);
        for _ in 0..16 {
            d.create_dir(&long, 0o700).unwrap();
            d = d.open_dir(&long).unwrap();
        }
        d.create_new("deep-file", 0o600).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let mut s = Stager::new(staging.path());
        collect(&home, &["alice".into()], &mut s).unwrap();
        assert!(s
            .skipped
            .iter()
            .any(|k| k.reason.starts_with("deeper than 100 levels")));
        assert!(s
            .skipped
            .iter()
            .any(|k| k.reason.starts_with("its path is longer than") && k.path.len() < 600));
        assert!(s.entries.iter().all(|e| e.path.len() <= MAX_PATH_BYTES));
        assert!(s.entries.iter().any(|e| e.path.ends_with("SOUL.md")));
    }
}
