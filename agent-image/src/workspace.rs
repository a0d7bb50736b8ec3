//! File access confined to one directory tree: the workspace for the file tools and the
//! prompt, the built-in skills directory for reading skills, and in a chat group's container
//! the read-only `/persona` and `/shared` trees.
//!
//! A path given by the model is relative to the root and may not be absolute or hold a `..`
//! component. Symbolic links are allowed only while they lead somewhere under the root: the
//! deepest part of the path that exists is canonicalized (resolving every link in it) and must
//! still lie under the canonical root. The part that does not exist yet is created one plain
//! directory at a time, and a file is opened for writing with `O_NOFOLLOW`, so a link at the
//! final component is refused rather than followed.
//!
//! This is a second fence inside the container, which is the real boundary; it keeps the file
//! tools to the files the person can see and back up.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// The most `read_file` returns.
pub const READ_CAP: usize = 256 * 1024;
/// The most `write_file` accepts.
pub const WRITE_CAP: usize = 1 << 20;
/// The most entries `list_dir` shows.
pub const LIST_CAP: usize = 1000;

/// A directory tree that paths are confined to.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The canonical root.
    root: PathBuf,
    /// How the root is named in messages to the model (`/workspace`).
    label: String,
}

/// What kind of thing a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Link => "link",
            Kind::Other => "other",
        }
    }
}

/// One entry of [`Workspace::list_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// Bytes, from the entry itself (a link's own size, not its target's).
    pub size: u64,
}

/// The first bytes of a file, and whether there were more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    pub bytes: Vec<u8>,
    pub truncated: bool,
    /// The file's full size.
    pub size: u64,
}

impl Capped {
    /// The bytes as text: invalid UTF-8 is replaced, and a character cut in two by the cap is
    /// dropped.
    pub fn text(&self) -> String {
        let bytes = match std::str::from_utf8(&self.bytes) {
            Err(e) if self.truncated && e.error_len().is_none() => &self.bytes[..e.valid_up_to()],
            _ => &self.bytes[..],
        };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

impl Workspace {
    /// The tree under `root`, named `/workspace` in messages.
    pub fn new(root: &Path) -> io::Result<Workspace> {
        Workspace::with_label(root, "/workspace")
    }

    /// The tree under `root`, named `label` in messages. `root` must exist.
    pub fn with_label(root: &Path, label: &str) -> io::Result<Workspace> {
        let root = fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Workspace {
            root,
            label: label.to_string(),
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How the root is named in messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Reads at most `cap` bytes of the file at `rel`.
    pub fn read_capped(&self, rel: &str, cap: usize) -> Result<Capped, String> {
        let path = self.existing(rel)?;
        let mut file = OpenOptions::new()
            .read(true)
            // Not following a link here only closes a race: `path` is already canonical.
            // O_NONBLOCK keeps a FIFO from hanging the open; it is refused below.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| self.io_err(rel, &e))?;
        let meta = file.metadata().map_err(|e| self.io_err(rel, &e))?;
        if meta.is_dir() {
            return Err(format!("{rel} is a directory; use list_dir to see inside"));
        }
        if !meta.is_file() {
            return Err(format!("{rel} is not a regular file"));
        }
        let mut bytes = Vec::new();
        (&mut file)
            .take(cap as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_err(rel, &e))?;
        let truncated = bytes.len() > cap;
        bytes.truncate(cap);
        Ok(Capped {
            bytes,
            truncated,
            size: meta.len(),
        })
    }

    /// Replaces (or creates) the file at `rel` with `content`, creating missing parent
    /// directories. Returns the number of bytes written.
    pub fn write_file(&self, rel: &str, content: &[u8]) -> Result<usize, String> {
        if content.len() > WRITE_CAP {
            return Err(format!(
                "the content is {} bytes; write_file takes at most {} (1 MiB)",
                content.len(),
                WRITE_CAP
            ));
        }
        let file = self.open_for_write(rel, false)?;
        (&file)
            .write_all(content)
            .map_err(|e| self.io_err(rel, &e))?;
        Ok(content.len())
    }

    /// Appends `line` to the file at `rel`, creating it and its parents if missing. If the file
    /// does not end with a newline, one is added first.
    pub fn append_line(&self, rel: &str, line: &str) -> Result<(), String> {
        let file = self.open_for_write(rel, true)?;
        let len = file.metadata().map_err(|e| self.io_err(rel, &e))?.len();
        let mut text = String::new();
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1)
                .map_err(|e| self.io_err(rel, &e))?;
            if last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.push_str(line);
        // O_APPEND: every write goes to the end, whatever the offset.
        (&file)
            .write_all(text.as_bytes())
            .map_err(|e| self.io_err(rel, &e))
    }

    /// The entries of the directory at `rel` (`.` for the root), sorted by name, at most
    /// [`LIST_CAP`] of them; the flag says whether there were more.
    pub fn list_dir(&self, rel: &str) -> Result<(Vec<Entry>, bool), String> {
        let path = self.existing(rel)?;
        if !path.is_dir() {
            return Err(format!("{rel} is not a directory"));
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(&path).map_err(|e| self.io_err(rel, &e))? {
            let entry = entry.map_err(|e| self.io_err(rel, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // symlink_metadata: describe the entry itself, never what a link points to.
            let (kind, size) = match fs::symlink_metadata(entry.path()) {
                Ok(m) if m.file_type().is_symlink() => (Kind::Link, m.len()),
                Ok(m) if m.is_dir() => (Kind::Dir, m.len()),
                Ok(m) if m.is_file() => (Kind::File, m.len()),
                Ok(m) => (Kind::Other, m.len()),
                // Removed since read_dir saw it.
                Err(_) => continue,
            };
            entries.push(Entry { name, kind, size });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let more = entries.len() > LIST_CAP;
        entries.truncate(LIST_CAP);
        Ok((entries, more))
    }

    /// The canonical path of `rel`, which must exist and lie under the root.
    pub fn existing(&self, rel: &str) -> Result<PathBuf, String> {
        let parts = self.parts(rel, true)?;
        let (path, missing) = self.resolve(rel, &parts)?;
        if !missing.is_empty() {
            return Err(format!("{rel} does not exist"));
        }
        Ok(path)
    }

    /// Opens `rel` for writing (truncating it, or appending), after creating its missing
    /// parent directories under the root.
    fn open_for_write(&self, rel: &str, append: bool) -> Result<File, String> {
        let parts = self.parts(rel, false)?;
        let (name, parents) = parts.split_last().expect("parts() refuses an empty path");
        let (mut dir, missing) = self.resolve(rel, parents)?;
        for part in missing {
            dir.push(part);
            match fs::DirBuilder::new().mode(0o755).create(&dir) {
                Ok(()) => {}
                // Made meanwhile, or a dangling link: resolve it again and check it.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    dir = fs::canonicalize(&dir).map_err(|e| self.io_err(rel, &e))?;
                    if !dir.starts_with(&self.root) {
                        return Err(self.escape(rel));
                    }
                }
                Err(e) => return Err(self.io_err(rel, &e)),
            }
        }
        let path = dir.join(name);
        let mut options = OpenOptions::new();
        options
            .create(true)
            .mode(0o644)
            // O_NONBLOCK: opening a FIFO fails at once instead of waiting for a reader.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        if append {
            options.read(true).append(true);
        } else {
            options.write(true);
        }
        let file = options.open(&path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "{rel} is a symbolic link; the file tools do not write through links, \
                 write to the file it points to instead"
            ),
            Some(libc::EISDIR) => format!("{rel} is a directory"),
            _ => self.io_err(rel, &e),
        })?;
        let meta = file.metadata().map_err(|e| self.io_err(rel, &e))?;
        if !meta.is_file() {
            return Err(format!("{rel} is not a regular file"));
        }
        if !append {
            file.set_len(0).map_err(|e| self.io_err(rel, &e))?;
        }
        Ok(file)
    }

    /// Splits a relative path into its plain components, refusing absolute paths and `..`.
    /// `.` components are dropped; an empty result (the root itself) is allowed only when
    /// `root_ok`.
    fn parts<'a>(&self, rel: &'a str, root_ok: bool) -> Result<Vec<&'a OsStr>, String> {
        if rel.is_empty() {
            return Err("the path is empty".into());
        }
        if rel.contains('\0') {
            return Err("the path contains a NUL character".into());
        }
        let mut parts = Vec::new();
        for c in Path::new(rel).components() {
            match c {
                Component::Normal(p) => parts.push(p),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(format!(
                        "{rel}: paths with `..` are refused; give the path from {} down",
                        self.label
                    ))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!(
                        "{rel}: absolute paths are refused; give the path relative to {}, \
                         e.g. \"notes/todo.md\" for {}/notes/todo.md",
                        self.label, self.label
                    ))
                }
            }
        }
        if parts.is_empty() && !root_ok {
            return Err(format!("{rel} names {} itself, not a file", self.label));
        }
        Ok(parts)
    }

    /// Canonicalizes the deepest existing ancestor of `parts` (the whole path if it exists)
    /// and checks it is under the root. Returns it with the components that do not exist.
    fn resolve<'a>(
        &self,
        rel: &str,
        parts: &[&'a OsStr],
    ) -> Result<(PathBuf, Vec<&'a OsStr>), String> {
        for depth in (0..=parts.len()).rev() {
            let mut candidate = self.root.clone();
            candidate.extend(&parts[..depth]);
            match fs::canonicalize(&candidate) {
                Ok(real) => {
                    if !real.starts_with(&self.root) {
                        return Err(self.escape(rel));
                    }
                    return Ok((real, parts[depth..].to_vec()));
                }
                // Also a dangling link: its parent is checked next, and the link itself is
                // never followed (mkdir and O_NOFOLLOW refuse it).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err(rel, &e)),
            }
        }
        Err(format!("{} is missing", self.label))
    }

    fn escape(&self, rel: &str) -> String {
        format!(
            "{rel}: refused, it leads outside {} through a symbolic link",
            self.label
        )
    }

    /// An I/O error as one line naming the path as the model gave it.
    fn io_err(&self, rel: &str, e: &io::Error) -> String {
        let msg = e.to_string();
        let msg = match msg.find(" (os error") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        format!("{rel}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("ws")).unwrap();
        let ws = Workspace::new(&tmp.path().join("ws")).unwrap();
        (tmp, ws)
    }

    #[test]
    fn nested_write_then_read() {
        let (_tmp, ws) = setup();
        assert_eq!(ws.write_file("a/b/c.txt", b"hello").unwrap(), 5);
        assert_eq!(fs::read(ws.root().join("a/b/c.txt")).unwrap(), b"hello");
        let got = ws.read_capped("./a/b/c.txt", READ_CAP).unwrap();
        assert_eq!(got.text(), "hello");
        assert!(!got.truncated);
        // Overwriting replaces the whole file.
        ws.write_file("a/b/c.txt", b"hi").unwrap();
        assert_eq!(ws.read_capped("a/b/c.txt", READ_CAP).unwrap().text(), "hi");
    }

    #[test]
    fn parent_dir_and_absolute_are_refused() {
        let (tmp, ws) = setup();
        fs::write(tmp.path().join("outside.txt"), "secret").unwrap();
        for bad in [
            "../outside.txt",
            "a/../../outside.txt",
            "a/..",
            "..",
            "/etc/passwd",
            "/workspace/x",
        ] {
            let e = ws.read_capped(bad, READ_CAP).unwrap_err();
            assert!(e.contains("refused"), "{bad}: {e}");
            let e = ws.write_file(bad, b"x").unwrap_err();
            assert!(e.contains("refused"), "{bad}: {e}");
            assert!(ws.list_dir(bad).is_err());
        }
        assert!(ws.write_file("", b"x").is_err());
        assert!(ws.write_file(".", b"x").is_err());
        assert!(ws.write_file("a\0b", b"x").is_err());
        assert_eq!(fs::read(tmp.path().join("outside.txt")).unwrap(), b"secret");
    }

    #[test]
    fn symlink_to_etc_is_refused() {
        let (_tmp, ws) = setup();
        symlink("/etc/passwd", ws.root().join("passwd")).unwrap();
        symlink("/etc", ws.root().join("etc")).unwrap();
        let e = ws.read_capped("passwd", READ_CAP).unwrap_err();
        assert!(e.contains("outside /workspace"), "{e}");
        let e = ws.read_capped("etc/hostname", READ_CAP).unwrap_err();
        assert!(e.contains("outside /workspace"), "{e}");
        assert!(ws.list_dir("etc").unwrap_err().contains("outside"));
        // Writing through the link at the last component is refused, not followed.
        let e = ws.write_file("passwd", b"x").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        // The link itself is still listed, as a link.
        let (entries, _) = ws.list_dir(".").unwrap();
        assert!(entries
            .iter()
            .any(|e| e.name == "passwd" && e.kind == Kind::Link));
    }

    #[test]
    fn symlinked_dir_escape_is_refused() {
        let (tmp, ws) = setup();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        symlink(&outside, ws.root().join("out")).unwrap();
        // Writing below the link, even into directories that do not exist yet.
        for path in ["out/x.txt", "out/new/deeper/x.txt"] {
            let e = ws.write_file(path, b"x").unwrap_err();
            assert!(e.contains("outside /workspace"), "{path}: {e}");
        }
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // A dangling link whose target would be created outside.
        symlink(outside.join("made"), ws.root().join("dangling")).unwrap();
        assert!(ws.write_file("dangling", b"x").is_err());
        assert!(ws.write_file("dangling/x.txt", b"x").is_err());
        assert!(!outside.join("made").exists());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn links_inside_the_root_are_followed_for_reading() {
        let (_tmp, ws) = setup();
        ws.write_file("real/notes.md", b"n").unwrap();
        symlink(ws.root().join("real"), ws.root().join("alias")).unwrap();
        assert_eq!(ws.read_capped("alias/notes.md", 10).unwrap().text(), "n");
        ws.write_file("alias/new.md", b"m").unwrap();
        assert_eq!(fs::read(ws.root().join("real/new.md")).unwrap(), b"m");
    }

    #[test]
    fn read_cap_and_errors() {
        let (_tmp, ws) = setup();
        ws.write_file("big.txt", &[b'a'; 100]).unwrap();
        let got = ws.read_capped("big.txt", 10).unwrap();
        assert_eq!(got.bytes.len(), 10);
        assert!(got.truncated);
        assert_eq!(got.size, 100);
        // A multibyte character cut by the cap is dropped, not shown as garbage.
        ws.write_file("utf8.txt", "aé".as_bytes()).unwrap();
        assert_eq!(ws.read_capped("utf8.txt", 2).unwrap().text(), "a");
        let e = ws.read_capped("nope.txt", 10).unwrap_err();
        assert_eq!(e, "nope.txt does not exist");
        ws.write_file("d/f", b"").unwrap();
        assert!(ws.read_capped("d", 10).unwrap_err().contains("directory"));
        assert!(ws.write_file("d", b"x").unwrap_err().contains("directory"));
        assert!(ws.write_file("d/f/g", b"x").is_err());
        assert!(ws
            .write_file("huge", &vec![0u8; WRITE_CAP + 1])
            .unwrap_err()
            .contains("1 MiB"));
    }

    #[test]
    fn fifo_is_refused_without_hanging() {
        let (_tmp, ws) = setup();
        let path = ws.root().join("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(ws.read_capped("fifo", 10).is_err());
        assert!(ws.write_file("fifo", b"x").is_err());
    }

    #[test]
    fn append_adds_a_missing_newline() {
        let (_tmp, ws) = setup();
        ws.append_line("m/M.md", "- one\n").unwrap();
        ws.append_line("m/M.md", "- two\n").unwrap();
        assert_eq!(
            fs::read_to_string(ws.root().join("m/M.md")).unwrap(),
            "- one\n- two\n"
        );
        ws.write_file("m/M.md", b"# Memory").unwrap();
        ws.append_line("m/M.md", "- three\n").unwrap();
        assert_eq!(
            fs::read_to_string(ws.root().join("m/M.md")).unwrap(),
            "# Memory\n- three\n"
        );
    }

    #[test]
    fn list_dir_shows_kinds_and_sizes() {
        let (_tmp, ws) = setup();
        ws.write_file("b.txt", b"12345").unwrap();
        ws.write_file("a/x", b"").unwrap();
        symlink("b.txt", ws.root().join("c")).unwrap();
        let (entries, more) = ws.list_dir(".").unwrap();
        assert!(!more);
        let summary: Vec<(&str, Kind)> =
            entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            summary,
            vec![("a", Kind::Dir), ("b.txt", Kind::File), ("c", Kind::Link)]
        );
        assert_eq!(entries[1].size, 5);
        assert!(ws
            .list_dir("b.txt")
            .unwrap_err()
            .contains("not a directory"));
        assert!(ws.list_dir("nope").unwrap_err().contains("does not exist"));
    }
}
