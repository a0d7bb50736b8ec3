//! A decoy tree on the host: a temporary directory outside any home, with files,
//! subdirectories, links, a FIFO, chosen modes and owners, and a root-only file, that an
//! attacker points the host at. Every entry (kind, mode, owner, size, content, link target,
//! modification time) is snapshotted when it is made, so a test can show that nothing in it
//! was moved, removed, added, changed, chmodded or chowned.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The title of the root-only file (its first line is `# SECRET-TITLE`): what `show` would
/// print if it read it.
pub const SECRET: &str = "SECRET-TITLE";

/// What one entry of a tree is, as far as a test can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    /// Files: size, modification time (ns) and the first 64 KiB; links: the target.
    pub size: u64,
    pub mtime_ns: i128,
    pub content: Vec<u8>,
}

impl EntryState {
    fn describe(&self) -> String {
        format!(
            "{} mode {:04o} owner {}:{} links {} size {}",
            self.kind, self.mode, self.uid, self.gid, self.nlink, self.size
        )
    }
}

/// Every entry below `root` (relative path → state), `root` itself as ".". Links are never
/// followed.
pub fn snapshot(root: &Path) -> BTreeMap<String, EntryState> {
    fn state(path: &Path) -> Option<EntryState> {
        let meta = fs::symlink_metadata(path).ok()?;
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            "link"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let content = match kind {
            "link" => fs::read_link(path)
                .map(|t| t.into_os_string().into_encoded_bytes())
                .unwrap_or_default(),
            "file" => {
                use std::io::Read;
                let mut buf = Vec::new();
                if let Ok(f) = fs::File::open(path) {
                    let _ = f.take(64 << 10).read_to_end(&mut buf);
                }
                buf
            }
            _ => Vec::new(),
        };
        Some(EntryState {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: if kind == "dir" { 0 } else { meta.nlink() },
            size: if kind == "file" { meta.size() } else { 0 },
            mtime_ns: if kind == "file" {
                i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
            } else {
                0
            },
            content,
        })
    }
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, EntryState>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if let Some(s) = state(&p) {
                let is_dir = s.kind == "dir";
                out.insert(rel, s);
                if is_dir {
                    walk(root, &p, out);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Some(s) = state(root) {
        out.insert(".".to_string(), s);
    }
    walk(root, root, &mut out);
    out
}

/// What differs between two snapshots, one line per entry: empty when nothing does.
pub fn differences(
    before: &BTreeMap<String, EntryState>,
    after: &BTreeMap<String, EntryState>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => out.push(format!("{path}: gone (was {})", was.describe())),
            Some(now) if now != was => {
                let mut what = Vec::new();
                if now.kind != was.kind {
                    what.push(format!("{} → {}", was.kind, now.kind));
                }
                if now.mode != was.mode {
                    what.push(format!("mode {:04o} → {:04o}", was.mode, now.mode));
                }
                if (now.uid, now.gid) != (was.uid, was.gid) {
                    what.push(format!(
                        "owner {}:{} → {}:{}",
                        was.uid, was.gid, now.uid, now.gid
                    ));
                }
                if now.nlink != was.nlink {
                    what.push(format!("links {} → {}", was.nlink, now.nlink));
                }
                if now.content != was.content || now.size != was.size {
                    what.push("content changed".to_string());
                }
                if now.mtime_ns != was.mtime_ns {
                    what.push("modification time changed".to_string());
                }
                out.push(format!("{path}: {}", what.join(", ")));
            }
            Some(_) => {}
        }
    }
    for (path, now) in after {
        if !before.contains_key(path) {
            out.push(format!("{path}: new ({})", now.describe()));
        }
    }
    out
}

/// The decoy tree, removed when dropped.
pub struct Decoy {
    _tmp: tempfile::TempDir,
    /// The decoy's host path: what an attacker links to.
    pub root: PathBuf,
    before: BTreeMap<String, EntryState>,
}

impl Decoy {
    /// Makes the tree in a new temporary directory on the same file system as `near` (a
    /// path of the home), so that a host that renames entries out of it could really do so.
    pub fn new(near: &Path) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("decoy");
        let near_dev = fs::metadata(near).unwrap().dev();
        assert_eq!(
            fs::metadata(tmp.path()).unwrap().dev(),
            near_dev,
            "the decoy must be on the home's file system"
        );
        let dir = |rel: &str, mode: u32, owner: (u32, u32)| {
            let p = root.join(rel);
            fs::create_dir(&p).unwrap();
            set(&p, mode, owner);
        };
        let file = |rel: &str, body: &[u8], mode: u32, owner: (u32, u32)| {
            let p = root.join(rel);
            fs::write(&p, body).unwrap();
            set(&p, mode, owner);
        };
        fs::create_dir(&root).unwrap();
        set(&root, 0o755, (0, 0));
        file("notes.txt", b"decoy notes\n", 0o644, (1001, 1001));
        file(
            "secret.md",
            format!("# {SECRET}\nroot only, never to be printed\n").as_bytes(),
            0o600,
            (0, 0),
        );
        // A valid agent envelope: a host that reads this tree as an out/ acts on it and
        // deletes it.
        file(
            "0000000000001-decoy.json",
            br#"{"v":1,"id":"decoy","ts":1,"type":"ready","agent_version":"0","protocol":1}"#,
            0o644,
            (0, 0),
        );
        // A temporary name, old: a host that clears stale temporary files removes it.
        file(".cache.tmp", b"cache", 0o644, (0, 0));
        fs::File::options()
            .write(true)
            .open(root.join(".cache.tmp"))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        dir("sub", 0o750, (1002, 1002));
        file("sub/inner.txt", b"inner\n", 0o640, (0, 1002));
        dir("sub/deeper", 0o700, (0, 0));
        file("sub/deeper/deep.txt", b"deep\n", 0o600, (0, 0));
        dir("open", 0o777, (1003, 1003));
        dir("readonly", 0o555, (0, 0));
        file("readonly/file", b"read only\n", 0o444, (0, 0));
        std::os::unix::fs::symlink("notes.txt", root.join("link")).unwrap();
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let before = snapshot(&root);
        Self {
            _tmp: tmp,
            root,
            before,
        }
    }

    /// An entry's host path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The decoy's host path as text, for a link planted inside a container.
    pub fn host_path(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// What changed since the decoy was made: empty when nothing did.
    pub fn changes(&self) -> Vec<String> {
        differences(&self.before, &snapshot(&self.root))
    }

    /// The changes in one line, for a report.
    pub fn changes_line(&self) -> Option<String> {
        let c = self.changes();
        (!c.is_empty()).then(|| {
            let shown: Vec<&str> = c.iter().take(8).map(String::as_str).collect();
            let more = c.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            };
            let n = match c.len() {
                1 => "1 change".to_string(),
                n => format!("{n} changes"),
            };
            format!("{n} in the decoy: {}{tail}", shown.join("; "))
        })
    }
}

fn set(path: &Path, mode: u32, (uid, gid): (u32, u32)) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}
