//! The host's only way into directories an agent can write (its workspace and its IPC
//! queues), and the way it touches its own directories too.
//!
//! The daemon runs as root, and anything an agent can create (a symlink, a FIFO, a renamed
//! directory, a hard link) can be swapped in at any instant. So nothing here joins path
//! strings: a [`SafeDir`] is an open directory descriptor, every name handed to it is one
//! plain component resolved relative to that descriptor without following a link
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`), and a deeper path is resolved with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), or component by component where the kernel has
//! no `openat2`. Reads are capped, files are checked to be regular files on the descriptor
//! that is then read, and modes and owners are set on descriptors (`fchmod`, `fchown`).

mod tree;

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

pub use tree::{RemoveReport, TreeLimits, Usage, WalkEntry};

/// What an entry is, as `lstat` sees it (a link is a link, never its target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl Kind {
    fn of(mode: u32) -> Self {
        match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            SFlag::S_IFIFO => Kind::Fifo,
            SFlag::S_IFSOCK => Kind::Socket,
            SFlag::S_IFCHR | SFlag::S_IFBLK => Kind::Device,
            _ => Kind::Other,
        }
    }

    /// "a symbolic link", "a FIFO", ...: for messages.
    pub fn described(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::Device => "a device file",
            Kind::Other => "not a regular file or directory",
        }
    }
}

/// What `lstat` says of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// Permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Bytes actually allocated on disk.
    pub allocated: u64,
    pub nlink: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime: SystemTime,
}

impl Stat {
    fn from(st: &FileStat) -> Self {
        let mtime = if st.st_mtime >= 0 {
            SystemTime::UNIX_EPOCH
                + Duration::new(
                    st.st_mtime as u64,
                    st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
                )
        } else {
            SystemTime::UNIX_EPOCH
        };
        Self {
            kind: Kind::of(st.st_mode),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size.max(0) as u64,
            allocated: (st.st_blocks.max(0) as u64).saturating_mul(512),
            nlink: st.st_nlink,
            dev: st.st_dev,
            ino: st.st_ino,
            mtime,
        }
    }

    /// Device and inode: what a directory is, whatever its name now.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("missing")]
    Missing,
    #[error("is {}, not a regular file (never followed or read)", .0.described())]
    NotRegular(Kind),
    #[error("is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The names of a directory, as far as they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub names: Vec<OsString>,
    /// More names were there than the limit let through.
    pub truncated: bool,
}

/// An open directory. Every operation names one entry of it, never a path.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    /// Where it was when it was opened: for messages only, never opened again.
    shown: PathBuf,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Flags for reading an entry that should be a regular file: never follow a link, never
/// block on a FIFO, never become a controlling terminal.
const READ_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(OFlag::O_CLOEXEC);

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// One plain name: not empty, no `/`, not `.` or `..`, no NUL.
fn component(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

impl SafeDir {
    /// Opens a directory the supervisor owns by its path (its parents are trusted), refusing
    /// a link in its last component.
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty()).map_err(errno)?;
        Ok(Self {
            fd,
            shown: path.to_path_buf(),
        })
    }

    /// Opens a directory by its path, following a link in its last component too: only for
    /// a home reached through a link the operator made.
    pub fn open_following(path: &Path) -> io::Result<Self> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(path, flags, Mode::empty()).map_err(errno)?;
        Ok(Self {
            fd,
            shown: path.to_path_buf(),
        })
    }

    /// Where this directory was when it was opened, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// The path of `name` in this directory, for messages.
    pub fn shown_child(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.shown.join(name.as_ref())
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A second descriptor for the same directory.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
            shown: self.shown.clone(),
        })
    }

    /// Opens the directory `rel` (one or more plain components) below this one. No component
    /// may be a link, and the result can never be outside this directory.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<SafeDir> {
        let rel = rel.as_ref();
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => parts.push(n),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a relative path of plain names", rel.display()),
                    ))
                }
            }
        }
        if parts.is_empty() {
            return self.try_clone();
        }
        let shown = self.shown.join(rel);
        let how = OpenHow::new().flags(DIR_FLAGS).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        match nix::fcntl::openat2(self.fd.as_fd(), rel, how) {
            Ok(fd) => return Ok(SafeDir { fd, shown }),
            // No openat2 (before Linux 5.6, or filtered by a seccomp policy): one component
            // at a time, each with O_NOFOLLOW, which is just as strict.
            Err(Errno::ENOSYS | Errno::EPERM) => {}
            Err(e) => return Err(errno(e)),
        }
        self.open_dir_by_components(&parts, shown)
    }

    /// [`SafeDir::open_dir`] without `openat2`: each component opened on its own with
    /// `O_NOFOLLOW | O_DIRECTORY` relative to the one before.
    fn open_dir_by_components(&self, parts: &[&OsStr], shown: PathBuf) -> io::Result<SafeDir> {
        let mut dir = self.try_clone()?;
        for part in parts {
            let name = component(part)?;
            let fd = nix::fcntl::openat(dir.fd.as_fd(), name.as_c_str(), DIR_FLAGS, Mode::empty())
                .map_err(errno)?;
            dir = SafeDir {
                fd,
                shown: shown.clone(),
            };
        }
        Ok(dir)
    }

    /// `lstat` of `name`; None when it does not exist.
    pub fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Option<Stat>> {
        let c = component(name.as_ref())?;
        match nix::sys::stat::fstatat(
            self.fd.as_fd(),
            c.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(Stat::from(&st))),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno(e)),
        }
    }

    /// What this directory itself is.
    pub fn stat_self(&self) -> io::Result<Stat> {
        nix::sys::stat::fstat(self.fd.as_fd())
            .map(|st| Stat::from(&st))
            .map_err(errno)
    }

    /// Opens `name` for reading if it is a regular file; the check is made on the descriptor
    /// that is returned, so a swap after it changes nothing.
    pub fn open_file(&self, name: impl AsRef<OsStr>) -> Result<(File, Stat), ReadError> {
        let c = component(name.as_ref())?;
        let fd = match nix::fcntl::openat(self.fd.as_fd(), c.as_c_str(), READ_FLAGS, Mode::empty())
        {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Err(ReadError::Missing),
            // O_NOFOLLOW on a link.
            Err(Errno::ELOOP) => return Err(ReadError::NotRegular(Kind::Symlink)),
            // A socket (or a device without its driver): say which, as lstat sees it.
            Err(Errno::ENXIO) => {
                let kind = self.stat(name.as_ref())?.map_or(Kind::Other, |s| s.kind);
                return Err(ReadError::NotRegular(kind));
            }
            Err(e) => return Err(ReadError::Io(errno(e))),
        };
        let file = File::from(fd);
        let st = nix::sys::stat::fstat(file.as_fd()).map_err(errno)?;
        let stat = Stat::from(&st);
        if stat.kind != Kind::File {
            return Err(ReadError::NotRegular(stat.kind));
        }
        Ok((file, stat))
    }

    /// Reads the regular file `name`, refusing one over `limit` bytes (checked on the
    /// descriptor, and again while reading, so a file that grows is refused too).
    pub fn read_file(&self, name: impl AsRef<OsStr>, limit: u64) -> Result<Vec<u8>, ReadError> {
        let (file, stat) = self.open_file(name)?;
        if stat.size > limit {
            return Err(ReadError::TooLarge {
                size: stat.size,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(stat.size as usize);
        file.take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > limit {
            return Err(ReadError::TooLarge {
                size: buf.len() as u64,
                limit,
            });
        }
        Ok(buf)
    }

    /// Creates `name` exclusively (never through a link, never over anything) for writing.
    pub fn create_new(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<File> {
        let c = component(name.as_ref())?;
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::openat(
            self.fd.as_fd(),
            c.as_c_str(),
            flags,
            Mode::from_bits_truncate(mode),
        )
        .map_err(errno)?;
        let file = File::from(fd);
        // The umask may have taken bits away.
        nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)?;
        Ok(file)
    }

    /// Creates the directory `name`; an existing directory (not a link) is fine.
    pub fn create_dir(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<()> {
        let c = component(name.as_ref())?;
        match nix::sys::stat::mkdirat(
            self.fd.as_fd(),
            c.as_c_str(),
            Mode::from_bits_truncate(mode),
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => match self.stat(name.as_ref())? {
                Some(s) if s.kind == Kind::Dir => Ok(()),
                Some(s) => Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} is {}, not a directory",
                        self.shown_child(name.as_ref()).display(),
                        s.kind.described()
                    ),
                )),
                None => Err(errno(Errno::EEXIST)),
            },
            Err(e) => Err(errno(e)),
        }
    }

    /// Renames `from` (in this directory) to `to` in `dest`. With `replace` false an existing
    /// `to` is never replaced (`AlreadyExists`). Links are renamed, never followed.
    pub fn rename_to(
        &self,
        from: impl AsRef<OsStr>,
        dest: &SafeDir,
        to: impl AsRef<OsStr>,
        replace: bool,
    ) -> io::Result<()> {
        let from = component(from.as_ref())?;
        let to = component(to.as_ref())?;
        if replace {
            return nix::fcntl::renameat(
                self.fd.as_fd(),
                from.as_c_str(),
                dest.fd.as_fd(),
                to.as_c_str(),
            )
            .map_err(errno);
        }
        match nix::fcntl::renameat2(
            self.fd.as_fd(),
            from.as_c_str(),
            dest.fd.as_fd(),
            to.as_c_str(),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists",
                    dest.shown_child(OsStr::from_bytes(to.as_bytes())).display()
                ),
            )),
            // A file system without RENAME_NOREPLACE: check, then rename. Only callers that
            // are the sole writers of `dest` ask for this.
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                if dest.stat(OsStr::from_bytes(to.as_bytes()))?.is_some() {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
                }
                nix::fcntl::renameat(
                    self.fd.as_fd(),
                    from.as_c_str(),
                    dest.fd.as_fd(),
                    to.as_c_str(),
                )
                .map_err(errno)
            }
            Err(e) => Err(errno(e)),
        }
    }

    /// The target of the link `name` (read, never followed).
    pub fn read_link(&self, name: impl AsRef<OsStr>) -> io::Result<OsString> {
        let c = component(name.as_ref())?;
        nix::fcntl::readlinkat(self.fd.as_fd(), c.as_c_str()).map_err(errno)
    }

    /// Removes the entry `name` if it is not a directory (a link is removed, not followed).
    pub fn remove_file(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let c = component(name.as_ref())?;
        nix::unistd::unlinkat(
            self.fd.as_fd(),
            c.as_c_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(errno)
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let c = component(name.as_ref())?;
        nix::unistd::unlinkat(
            self.fd.as_fd(),
            c.as_c_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        )
        .map_err(errno)
    }

    /// Up to `limit` names of this directory (`.` and `..` left out), in the order the file
    /// system gives them.
    pub fn list(&self, limit: usize) -> io::Result<Listing> {
        // A fresh descriptor: reading a directory moves its offset, and this one may be
        // shared with other readers.
        let fd =
            nix::fcntl::openat(self.fd.as_fd(), c".", DIR_FLAGS, Mode::empty()).map_err(errno)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(errno)?;
        let mut out = Listing::default();
        for entry in dir.iter() {
            let entry = entry.map_err(errno)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if out.names.len() >= limit {
                out.truncated = true;
                break;
            }
            out.names.push(OsString::from_vec(name.to_vec()));
        }
        Ok(out)
    }

    /// Opens `name` for a change of mode or owner, if it is `kind`: the change is then made
    /// on that descriptor, so a link swapped in after the check is never followed.
    fn open_entry(&self, name: &OsStr, kind: Kind) -> io::Result<OwnedFd> {
        let c = component(name)?;
        let flags = match kind {
            Kind::Dir => DIR_FLAGS,
            Kind::File => READ_FLAGS,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("cannot change {}", other.described()),
                ))
            }
        };
        let fd = nix::fcntl::openat(self.fd.as_fd(), c.as_c_str(), flags, Mode::empty()).map_err(
            |e| match e {
                Errno::ELOOP => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link (not followed)",
                        self.shown_child(name).display()
                    ),
                ),
                e => errno(e),
            },
        )?;
        let found = Kind::of(nix::sys::stat::fstat(fd.as_fd()).map_err(errno)?.st_mode);
        if found != kind {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {}, not {}",
                    self.shown_child(name).display(),
                    found.described(),
                    kind.described()
                ),
            ));
        }
        Ok(fd)
    }

    /// Sets the mode of `name`, which must be `kind` (a file or a directory).
    pub fn set_mode(&self, name: impl AsRef<OsStr>, kind: Kind, mode: u32) -> io::Result<()> {
        let fd = self.open_entry(name.as_ref(), kind)?;
        nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Sets the owner of `name`, which must be `kind` (a file or a directory).
    pub fn set_owner(
        &self,
        name: impl AsRef<OsStr>,
        kind: Kind,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        let fd = self.open_entry(name.as_ref(), kind)?;
        fchown(fd.as_fd(), uid, gid)
    }

    /// Sets this directory's own mode.
    pub fn set_own_mode(&self, mode: u32) -> io::Result<()> {
        nix::sys::stat::fchmod(self.fd.as_fd(), Mode::from_bits_truncate(mode)).map_err(errno)
    }

    /// Sets this directory's own owner.
    pub fn set_own_owner(&self, uid: u32, gid: u32) -> io::Result<()> {
        fchown(self.fd.as_fd(), uid, gid)
    }

    /// Flushes this directory's entries to disk (a rename or create is durable after this).
    pub fn sync(&self) -> io::Result<()> {
        match nix::unistd::fsync(self.fd.as_fd()) {
            // Some file systems cannot fsync a directory; the entry is as durable as they make it.
            Ok(()) | Err(Errno::EINVAL) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// Free space of the file system this directory is on: (bytes available, inodes available).
    pub fn free_space(&self) -> io::Result<(u64, u64)> {
        let s = nix::sys::statvfs::fstatvfs(self.fd.as_fd()).map_err(errno)?;
        Ok((
            (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64),
            s.files_available() as u64,
        ))
    }

    /// Size and use of the file system this directory is on: (bytes total, bytes used,
    /// inodes total, inodes used).
    pub fn file_system_use(&self) -> io::Result<(u64, u64, u64, u64)> {
        let s = nix::sys::statvfs::fstatvfs(self.fd.as_fd()).map_err(errno)?;
        let frag = s.fragment_size() as u64;
        let total = (s.blocks() as u64).saturating_mul(frag);
        let free = (s.blocks_free() as u64).saturating_mul(frag);
        let files = s.files() as u64;
        let files_free = s.files_free() as u64;
        Ok((
            total,
            total.saturating_sub(free),
            files,
            files.saturating_sub(files_free),
        ))
    }

    /// Copies the regular file `name` into a new file `to` of `dest` (mode `mode`), at most
    /// `limit` bytes of it; returns (bytes copied, whether it was cut). A copy, unlike a
    /// rename or a hard link, shares nothing with the original: whoever can still write the
    /// original (through another link or an open descriptor) cannot change the copy.
    pub fn copy_file_to(
        &self,
        name: impl AsRef<OsStr>,
        dest: &SafeDir,
        to: impl AsRef<OsStr>,
        mode: u32,
        limit: u64,
    ) -> Result<(u64, bool), ReadError> {
        let (mut src, _) = self.open_file(name)?;
        let mut out = dest.create_new(to, mode)?;
        let copied = io::copy(&mut (&mut src).take(limit), &mut out)?;
        // One more byte tells a file of exactly `limit` bytes from a longer one.
        let cut = copied == limit && src.read(&mut [0u8; 1])? == 1;
        out.sync_all()?;
        Ok((copied, cut))
    }
}

fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::fchown(
        fd,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn tree() -> (tempfile::TempDir, SafeDir) {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("a/b")).unwrap();
        fs::write(t.path().join("a/file"), b"hello").unwrap();
        let dir = SafeDir::open(t.path()).unwrap();
        (t, dir)
    }

    #[test]
    fn paths_below_resolve_only_through_real_directories() {
        let (t, dir) = tree();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), t.path().join("link")).unwrap();
        symlink(outside.path(), t.path().join("a/inner")).unwrap();
        assert!(dir.open_dir("a/b").is_ok());
        for bad in ["link", "a/inner", "../x", "/etc", "a/../a", "a/file"] {
            let e = dir.open_dir(bad).unwrap_err();
            assert!(
                matches!(
                    e.raw_os_error(),
                    Some(nix::libc::ELOOP) | Some(nix::libc::ENOTDIR) | Some(nix::libc::EXDEV)
                ) || e.kind() == io::ErrorKind::InvalidInput,
                "{bad}: {e}"
            );
        }
        // A plain name cannot smuggle a path.
        assert!(dir.stat("a/file").is_err());
        assert!(dir.stat("..").is_err());
        assert!(
            SafeDir::open(&t.path().join("link")).is_err(),
            "a link is never opened"
        );
        // The same without openat2 (an older kernel, a seccomp filter), one component at a time.
        let by_parts = |p: &[&str]| {
            let parts: Vec<&OsStr> = p.iter().map(OsStr::new).collect();
            dir.open_dir_by_components(&parts, PathBuf::new())
        };
        assert!(by_parts(&["a", "b"]).is_ok());
        for bad in [&["link"][..], &["a", "inner"], &["a", "file"], &[".."]] {
            assert!(by_parts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_regular_files_are_read_and_never_past_the_limit() {
        let (t, dir) = tree();
        let a = dir.open_dir("a").unwrap();
        assert_eq!(a.read_file("file", 5).unwrap(), b"hello");
        assert!(matches!(
            a.read_file("file", 4),
            Err(ReadError::TooLarge { size: 5, limit: 4 })
        ));
        assert!(matches!(a.read_file("nope", 4), Err(ReadError::Missing)));
        assert!(matches!(
            a.read_file("b", 4),
            Err(ReadError::NotRegular(Kind::Dir))
        ));
        symlink("/etc/passwd", t.path().join("a/passwd")).unwrap();
        assert!(matches!(
            a.read_file("passwd", 1 << 20),
            Err(ReadError::NotRegular(Kind::Symlink))
        ));
        symlink("/dev/zero", t.path().join("a/zero")).unwrap();
        assert!(matches!(
            a.read_file("zero", 10),
            Err(ReadError::NotRegular(_))
        ));
        nix::unistd::mkfifo(&t.path().join("a/fifo"), Mode::S_IRWXU).unwrap();
        // Returns at once: a FIFO is opened without blocking and refused.
        assert!(matches!(
            a.read_file("fifo", 10),
            Err(ReadError::NotRegular(Kind::Fifo))
        ));
    }

    #[test]
    fn creating_never_goes_through_a_link_or_over_an_entry() {
        let (t, dir) = tree();
        let target = t.path().join("target");
        symlink(&target, t.path().join("trap")).unwrap();
        assert!(dir.create_new("trap", 0o600).is_err());
        assert!(!target.exists());
        assert!(dir.create_new("a", 0o600).is_err());
        let mut f = dir.create_new("new", 0o640).unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(
            fs::metadata(t.path().join("new"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        dir.create_dir("a", 0o700).unwrap();
        assert!(
            dir.create_dir("new", 0o700).is_err(),
            "a file is not a directory"
        );
        assert!(dir.create_dir("trap", 0o700).is_err(), "nor is a link");
    }

    #[test]
    fn modes_and_owners_change_on_what_was_checked_never_through_a_link() {
        let (t, dir) = tree();
        let victim = tempfile::NamedTempFile::new().unwrap();
        fs::set_permissions(victim.path(), fs::Permissions::from_mode(0o644)).unwrap();
        symlink(victim.path(), t.path().join("SOUL.md")).unwrap();
        assert!(dir.set_mode("SOUL.md", Kind::File, 0o600).is_err());
        assert!(dir.set_owner("SOUL.md", Kind::File, 1, 1).is_err());
        assert_eq!(
            fs::metadata(victim.path()).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // A directory where a file is expected, and the other way round.
        assert!(dir.set_mode("a", Kind::File, 0o600).is_err());
        let a = dir.open_dir("a").unwrap();
        assert!(a.set_mode("file", Kind::Dir, 0o700).is_err());
        a.set_mode("file", Kind::File, 0o600).unwrap();
        assert_eq!(
            fs::metadata(t.path().join("a/file"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        dir.set_mode("a", Kind::Dir, 0o711).unwrap();
        assert_eq!(
            fs::metadata(t.path().join("a"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o711
        );
    }

    #[test]
    fn renames_move_links_themselves_and_can_refuse_to_replace() {
        let (t, dir) = tree();
        let other = SafeDir::open(&t.path().join("a/b")).unwrap();
        symlink("/etc", t.path().join("etc")).unwrap();
        dir.rename_to("etc", &other, "moved", false).unwrap();
        assert!(fs::symlink_metadata(t.path().join("a/b/moved"))
            .unwrap()
            .file_type()
            .is_symlink());
        fs::write(t.path().join("x"), b"1").unwrap();
        fs::write(t.path().join("a/b/x"), b"2").unwrap();
        let e = dir.rename_to("x", &other, "x", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(t.path().join("a/b/x")).unwrap(), b"2");
        dir.rename_to("x", &other, "x", true).unwrap();
        assert_eq!(fs::read(t.path().join("a/b/x")).unwrap(), b"1");
    }

    #[test]
    fn listing_is_capped() {
        let (t, dir) = tree();
        for i in 0..50 {
            fs::write(t.path().join(format!("f{i}")), b"").unwrap();
        }
        let all = dir.list(1000).unwrap();
        assert_eq!(all.names.len(), 51);
        assert!(!all.truncated);
        let some = dir.list(10).unwrap();
        assert_eq!(some.names.len(), 10);
        assert!(some.truncated);
    }

    #[test]
    fn a_copy_shares_nothing_with_the_original() {
        let (t, dir) = tree();
        let a = dir.open_dir("a").unwrap();
        // Another link to the same file, and a descriptor kept open on it.
        fs::hard_link(t.path().join("a/file"), t.path().join("a/.keep.tmp")).unwrap();
        let mut writer = fs::OpenOptions::new()
            .append(true)
            .open(t.path().join("a/file"))
            .unwrap();
        let (n, cut) = a
            .copy_file_to("file", &dir, "copy", 0o600, 1 << 20)
            .unwrap();
        assert_eq!((n, cut), (5, false));
        writer.write_all(b" EVIL").unwrap();
        fs::write(t.path().join("a/.keep.tmp"), b"EVIL").unwrap();
        assert_eq!(fs::read(t.path().join("copy")).unwrap(), b"hello");
        assert_eq!(fs::metadata(t.path().join("copy")).unwrap().nlink(), 1);
        let (n, cut) = a.copy_file_to("file", &dir, "short", 0o600, 2).unwrap();
        assert_eq!((n, cut), (2, true));
        assert!(matches!(
            dir.copy_file_to("a", &dir, "dir-copy", 0o600, 10),
            Err(ReadError::NotRegular(Kind::Dir))
        ));
    }
}
