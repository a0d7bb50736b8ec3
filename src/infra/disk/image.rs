//! Disk images: made with mke2fs from a staged tree, grown online when a limit is raised.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{run, DiskError};

/// The smallest disk limit: below it the file system's own journal and tables take too much.
pub use crate::domain::instance::config::MIN_DISK_BYTES;

/// Bytes per inode: an instance gets one inode per 16 KiB of its limit (65,536 for 1 GiB).
const BYTES_PER_INODE: u64 = 16 << 10;

/// The journal: 1 MiB per GiB of disk, from 4 to 64 MiB. Small, since the image is sparse
/// and a journal, once written round, takes its whole size on the host; an agent's writes are
/// small.
fn journal_mib(size: u64) -> u64 {
    (size >> 30).clamp(4, 64)
}

/// Makes `image` (which must not exist), a sparse ext4 file system of `size` bytes holding a
/// copy of the tree `src` (owners and modes kept). `src` must be a tree only the supervisor
/// writes (a staging directory), since mke2fs reads it by path. On failure nothing is left.
pub fn make_image(src: &Path, image: &Path, size: u64) -> Result<(), DiskError> {
    if size < MIN_DISK_BYTES {
        return Err(DiskError::TooSmall { limit: size });
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)
        .map_err(DiskError::io("create", image))?;
    let made = file
        .set_len(size)
        .map_err(DiskError::io("size", image))
        .and_then(|()| {
            drop(file);
            let inode_ratio = BYTES_PER_INODE.to_string();
            let journal = format!("size={}", journal_mib(size));
            run(
                "mke2fs",
                &[
                    OsStr::new("-q"),
                    OsStr::new("-F"),
                    OsStr::new("-t"),
                    OsStr::new("ext4"),
                    OsStr::new("-b"),
                    OsStr::new("4096"),
                    OsStr::new("-m"),
                    OsStr::new("1"),
                    OsStr::new("-i"),
                    OsStr::new(&inode_ratio),
                    OsStr::new("-J"),
                    OsStr::new(&journal),
                    OsStr::new("-E"),
                    OsStr::new("lazy_itable_init=1,lazy_journal_init=1"),
                    OsStr::new("-d"),
                    src.as_os_str(),
                    image.as_os_str(),
                ],
            )
        })
        .and_then(|()| {
            std::fs::File::open(image)
                .and_then(|f| f.sync_all())
                .map_err(DiskError::io("sync", image))
        });
    if made.is_err() {
        let _ = std::fs::remove_file(image);
    }
    made
}

/// What [`resize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resized {
    Unchanged,
    Grown,
    Shrunk,
}

/// Makes the image `image` a file system of `size` bytes, larger or smaller. It must be
/// unmounted and attached to no loop device: resizing a mounted ext4 needs CAP_SYS_RESOURCE,
/// which a root daemon in a container often lacks, and shrinking needs it unmounted anyway, so
/// it is done offline, between a container's stop and the next start. A shrink that the files
/// do not fit in fails and changes nothing.
pub fn resize(image: &Path, size: u64) -> Result<Resized, DiskError> {
    if size < MIN_DISK_BYTES {
        return Err(DiskError::TooSmall { limit: size });
    }
    let current = std::fs::metadata(image)
        .map_err(DiskError::io("inspect", image))?
        .len();
    if size == current {
        return Ok(Resized::Unchanged);
    }
    // resize2fs insists on a freshly checked file system; -p: fix only what is safe to fix.
    run(
        "e2fsck",
        &[OsStr::new("-f"), OsStr::new("-p"), image.as_os_str()],
    )?;
    let open = || OpenOptions::new().write(true).open(image);
    let resized = if size > current {
        open()
            .and_then(|f| f.set_len(size))
            .map_err(DiskError::io("grow", image))?;
        run("resize2fs", &[image.as_os_str()])?;
        Resized::Grown
    } else {
        let kib = format!("{}K", size >> 10);
        run("resize2fs", &[image.as_os_str(), OsStr::new(&kib)])?;
        open()
            .and_then(|f| f.set_len(size))
            .map_err(DiskError::io("shrink", image))?;
        Resized::Shrunk
    };
    // The journal keeps the size it was made with; one sized for the old disk would take a
    // quarter of a disk shrunk from 1g to 64m. Made anew for this size (the file system is
    // clean: it was just checked and resized).
    run(
        "tune2fs",
        &[
            OsStr::new("-O"),
            OsStr::new("^has_journal"),
            image.as_os_str(),
        ],
    )?;
    let journal = format!("size={}", journal_mib(size));
    run(
        "tune2fs",
        &[OsStr::new("-J"), OsStr::new(&journal), image.as_os_str()],
    )?;
    Ok(resized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_sizes() {
        assert_eq!(journal_mib(64 << 20), 4);
        assert_eq!(journal_mib(1 << 30), 4);
        assert_eq!(journal_mib(16 << 30), 16);
        assert_eq!(journal_mib(100 << 30), 64);
    }
}
