//! Whole trees under a [`SafeDir`]: walking, measuring and removing them with a bounded
//! number of open descriptors and a cap on the entries visited, whatever an agent made of
//! them (a directory 30,000 levels deep, a million files, links everywhere).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use super::{Kind, SafeDir, Stat};

/// Bounds on a walk: how deep it descends (each level holds one open directory) and how many
/// entries it visits in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    pub max_depth: usize,
    pub max_entries: u64,
}

impl Default for TreeLimits {
    fn default() -> Self {
        Self {
            max_depth: 128,
            max_entries: 1_000_000,
        }
    }
}

/// One entry met by [`SafeDir::walk`]: `parent` holds it under `name`.
pub struct WalkEntry<'a> {
    pub parent: &'a SafeDir,
    pub name: &'a OsStr,
    /// Its path below the walk's root, for messages.
    pub rel: &'a Path,
    pub stat: Stat,
    /// 1 for the root's own entries.
    pub depth: usize,
}

/// How far a walk got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkReport {
    pub visited: u64,
    /// Directories not entered because they were at the depth limit.
    pub too_deep: u64,
    /// The entry limit was reached: the rest of the tree was not visited.
    pub truncated: bool,
}

impl WalkReport {
    pub fn complete(&self) -> bool {
        self.too_deep == 0 && !self.truncated
    }
}

/// What a tree holds: bytes allocated and entries (each an inode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
    /// False when the walk stopped at a limit: the tree holds at least this much.
    pub complete: bool,
}

/// What [`SafeDir::remove_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoveReport {
    pub removed: u64,
    /// Directories that were deeper than the descriptor budget and were moved up to be
    /// removed in a later pass.
    pub moved_up: u64,
}

/// How many names are read from a directory at a time while it is emptied.
const CHUNK: usize = 4096;

impl SafeDir {
    /// Visits every entry below this directory, depth first, never following a link; `visit`
    /// returns whether to descend into a directory it was shown.
    pub fn walk(
        &self,
        limits: TreeLimits,
        visit: &mut dyn FnMut(&WalkEntry) -> io::Result<bool>,
    ) -> io::Result<WalkReport> {
        let mut report = WalkReport::default();
        walk_dir(self, Path::new(""), 1, limits, visit, &mut report)?;
        Ok(report)
    }

    /// What the tree below this directory holds (the directory itself not counted).
    pub fn usage(&self, limits: TreeLimits) -> io::Result<Usage> {
        let mut usage = Usage::default();
        let report = self.walk(limits, &mut |e| {
            usage.bytes = usage.bytes.saturating_add(e.stat.allocated);
            usage.inodes += 1;
            Ok(true)
        })?;
        usage.complete = report.complete();
        Ok(usage)
    }

    /// Gives `uid:gid` everything below this directory that another user owns (links are
    /// changed themselves, never their targets). Returns how many entries changed.
    pub fn chown_tree(
        &self,
        uid: u32,
        gid: u32,
        limits: TreeLimits,
    ) -> io::Result<(u64, WalkReport)> {
        let mut changed = 0;
        let report = self.walk(limits, &mut |e| {
            if (e.stat.uid, e.stat.gid) != (uid, gid) {
                match lchown_at(e.parent, e.name, uid, gid) {
                    Ok(()) => changed += 1,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(true)
        })?;
        Ok((changed, report))
    }

    /// Removes the entry `name` of this directory and, if it is a directory, everything below
    /// it. At most `limits.max_depth` directories are open at once: deeper ones are moved up
    /// to the top of the tree being removed (a rename within it) and removed in a later pass,
    /// so a tree of any depth goes without running out of descriptors. Gives up with an error
    /// after `limits.max_entries` removals (an agent still writing into it).
    pub fn remove_tree(
        &self,
        name: impl AsRef<OsStr>,
        limits: TreeLimits,
    ) -> io::Result<RemoveReport> {
        let name = name.as_ref();
        let mut report = RemoveReport::default();
        match self.stat(name)? {
            None => return Ok(report),
            Some(s) if s.kind != Kind::Dir => {
                self.remove_file(name)?;
                report.removed = 1;
                return Ok(report);
            }
            Some(_) => {}
        }
        let top = self.open_dir(name)?;
        let mut counter = 0u64;
        loop {
            let before = report.moved_up;
            empty_dir(&top, &top, 1, limits, &mut report, &mut counter)?;
            if report.moved_up == before {
                break;
            }
        }
        match self.remove_dir(name) {
            Ok(()) => {
                report.removed += 1;
                Ok(report)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(report),
            Err(e) => Err(e),
        }
    }
}

fn lchown_at(dir: &SafeDir, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = super::component(name)?;
    nix::unistd::fchownat(
        dir.as_fd(),
        c.as_c_str(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(super::errno)
}

fn walk_dir(
    dir: &SafeDir,
    rel: &Path,
    depth: usize,
    limits: TreeLimits,
    visit: &mut dyn FnMut(&WalkEntry) -> io::Result<bool>,
    report: &mut WalkReport,
) -> io::Result<()> {
    let budget = limits.max_entries.saturating_sub(report.visited);
    let listing = dir.list(budget.min(usize::MAX as u64) as usize)?;
    if listing.truncated {
        report.truncated = true;
    }
    let mut names = listing.names;
    names.sort();
    for name in names {
        if report.visited >= limits.max_entries {
            report.truncated = true;
            return Ok(());
        }
        let Some(stat) = dir.stat(&name)? else {
            continue;
        };
        report.visited += 1;
        let child_rel: PathBuf = rel.join(&name);
        let entry = WalkEntry {
            parent: dir,
            name: &name,
            rel: &child_rel,
            stat,
            depth,
        };
        let descend = visit(&entry)?;
        if stat.kind != Kind::Dir || !descend {
            continue;
        }
        if depth >= limits.max_depth {
            report.too_deep += 1;
            continue;
        }
        match dir.open_dir(&name) {
            Ok(child) => {
                // Swapped for something else since the stat: what is there now is not what
                // was visited, so it is left alone.
                if child.stat_self()?.identity() != stat.identity() {
                    continue;
                }
                walk_dir(&child, &child_rel, depth + 1, limits, visit, report)?;
            }
            Err(e) if is_gone_or_swapped(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An entry that vanished or became a link between listing and opening.
fn is_gone_or_swapped(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOENT) | Some(nix::libc::ELOOP) | Some(nix::libc::ENOTDIR)
    )
}

/// Removes everything in `dir` (at `depth` below `top`); directories at the depth limit are
/// moved up into `top` under a fresh name instead.
fn empty_dir(
    top: &SafeDir,
    dir: &SafeDir,
    depth: usize,
    limits: TreeLimits,
    report: &mut RemoveReport,
    counter: &mut u64,
) -> io::Result<()> {
    loop {
        let listing = dir.list(CHUNK)?;
        if listing.names.is_empty() {
            return Ok(());
        }
        let mut progressed = false;
        for name in listing.names {
            if report.removed + report.moved_up >= limits.max_entries {
                return Err(io::Error::other(format!(
                    "{}: gave up after {} entries (is something still writing into it?)",
                    top.shown().display(),
                    limits.max_entries
                )));
            }
            let Some(stat) = dir.stat(&name)? else {
                continue;
            };
            if stat.kind != Kind::Dir {
                match dir.remove_file(&name) {
                    Ok(()) => {
                        report.removed += 1;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if depth >= limits.max_depth {
                let up = fresh_name(counter);
                match dir.rename_to(&name, top, &up, false) {
                    Ok(()) => {
                        report.moved_up += 1;
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            match dir.open_dir(&name) {
                Ok(child) => empty_dir(top, &child, depth + 1, limits, report, counter)?,
                Err(e) if is_gone_or_swapped(&e) => continue,
                Err(e) => return Err(e),
            }
            match dir.remove_dir(&name) {
                Ok(()) => {
                    report.removed += 1;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Refilled since it was emptied: the next round of this loop empties it again.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => progressed = true,
                Err(e) => return Err(e),
            }
        }
        if !progressed {
            return Err(io::Error::other(format!(
                "{}: cannot remove what is left",
                dir.shown().display()
            )));
        }
    }
}

fn fresh_name(counter: &mut u64) -> OsString {
    *counter += 1;
    OsString::from(format!(".removing-{}-{counter}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn walk_counts_without_following_links_and_stops_at_its_limits() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("big"), vec![1u8; 100_000]).unwrap();
        fs::create_dir_all(t.path().join("a/b/c")).unwrap();
        fs::write(t.path().join("a/b/c/f"), b"x").unwrap();
        symlink(outside.path(), t.path().join("a/out")).unwrap();
        symlink(outside.path().join("big"), t.path().join("big")).unwrap();
        let dir = SafeDir::open(t.path()).unwrap();
        let mut seen = Vec::new();
        let report = dir
            .walk(TreeLimits::default(), &mut |e| {
                seen.push((e.rel.display().to_string(), e.stat.kind));
                Ok(true)
            })
            .unwrap();
        assert!(report.complete());
        assert_eq!(
            seen,
            [
                ("a".to_string(), Kind::Dir),
                ("a/b".into(), Kind::Dir),
                ("a/b/c".into(), Kind::Dir),
                ("a/b/c/f".into(), Kind::File),
                ("a/out".into(), Kind::Symlink),
                ("big".into(), Kind::Symlink),
            ]
        );
        let usage = dir.usage(TreeLimits::default()).unwrap();
        assert_eq!(usage.inodes, 6);
        assert!(usage.bytes < 100_000, "the link's target is not counted");

        let shallow = TreeLimits {
            max_depth: 2,
            max_entries: 100,
        };
        let r = dir.walk(shallow, &mut |_| Ok(true)).unwrap();
        assert_eq!(r.too_deep, 1);
        assert!(!dir.usage(shallow).unwrap().complete);
        let few = TreeLimits {
            max_depth: 10,
            max_entries: 3,
        };
        let r = dir.walk(few, &mut |_| Ok(true)).unwrap();
        assert!(r.truncated);
        assert_eq!(r.visited, 3);
    }

    #[test]
    fn a_tree_deeper_than_the_descriptor_budget_is_removed_whole() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("deep");
        // 300 levels with a file at every tenth, through relative mkdirs (a path this deep is
        // longer than PATH_MAX).
        fs::create_dir(&root).unwrap();
        let mut dir = SafeDir::open(&root).unwrap();
        for i in 0..300 {
            dir.create_dir("d", 0o700).unwrap();
            if i % 10 == 0 {
                dir.create_new("f", 0o600).unwrap();
            }
            dir = dir.open_dir("d").unwrap();
        }
        symlink("/etc", t.path().join("deep/etc")).unwrap();
        let parent = SafeDir::open(t.path()).unwrap();
        let limits = TreeLimits {
            max_depth: 16,
            max_entries: 10_000,
        };
        let report = parent.remove_tree("deep", limits).unwrap();
        assert!(report.moved_up > 0, "{report:?}");
        assert_eq!(report.removed, 300 + 30 + 1 + 1);
        assert!(!root.exists());
        assert!(
            Path::new("/etc/passwd").exists(),
            "a link is removed, not followed"
        );
    }

    #[test]
    fn chown_tree_changes_links_not_their_targets() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test changes owners and must run as root (CI does)");
        }
        let t = tempfile::tempdir().unwrap();
        let target = tempfile::NamedTempFile::new().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/f"), b"x").unwrap();
        symlink(target.path(), t.path().join("d/link")).unwrap();
        let dir = SafeDir::open(t.path()).unwrap();
        let (changed, report) = dir
            .chown_tree(4_000_123, 4_000_123, TreeLimits::default())
            .unwrap();
        assert!(report.complete());
        assert_eq!(changed, 3);
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::symlink_metadata(t.path().join("d/link")).unwrap().uid(),
            4_000_123
        );
        assert_eq!(
            fs::metadata(target.path()).unwrap().uid(),
            0,
            "the target keeps its owner"
        );
    }
}
