//! Mounting an instance's image on its `volume/` directory, and telling whether it is.
//!
//! An image is never attached to two loop devices at once (two kernels' views of one ext4
//! file system would corrupt it): a container keeps its bind mounts, and with them the loop
//! device, after the host's mount is gone, so mounting again reuses that device when there is
//! one. Callers hold the instance's volume lock around these calls.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{run, DiskError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountState {
    Unmounted,
    /// Mounted from this loop device.
    Mounted {
        device: PathBuf,
    },
}

/// The path the kernel reports for an image's backing file (links resolved), to compare with
/// what sysfs says a loop device is backed by.
fn backing_path(image: &Path) -> Result<PathBuf, DiskError> {
    std::fs::canonicalize(image).map_err(DiskError::io("resolve", image))
}

/// Whether `mountpoint` has `image` mounted on it; a foreign file system there is an error.
pub fn is_mounted(image: &Path, mountpoint: &Path) -> Result<MountState, DiskError> {
    let meta =
        std::fs::symlink_metadata(mountpoint).map_err(DiskError::io("inspect", mountpoint))?;
    let parent = mountpoint.parent().unwrap_or(Path::new("/"));
    let parent_dev = std::fs::symlink_metadata(parent)
        .map_err(DiskError::io("inspect", parent))?
        .dev();
    if !meta.is_dir() || meta.dev() == parent_dev {
        return Ok(MountState::Unmounted);
    }
    let (major, minor) = (
        nix::sys::stat::major(meta.dev()),
        nix::sys::stat::minor(meta.dev()),
    );
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let backing = std::fs::read_to_string(sys.join("loop/backing_file")).unwrap_or_default();
    if image.exists() && Path::new(backing.trim_end_matches('\n')) == backing_path(image)? {
        if let Some(device) = device_of(&sys) {
            return Ok(MountState::Mounted { device });
        }
    }
    Err(DiskError::Foreign {
        mountpoint: mountpoint.to_path_buf(),
        image: image.to_path_buf(),
    })
}

/// `/dev/loopN` for a block device's sysfs directory.
fn device_of(sys: &Path) -> Option<PathBuf> {
    let uevent = std::fs::read_to_string(sys.join("uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|name| Path::new("/dev").join(name))
}

/// Whether `image` is attached to a loop device (mounted here, or held by a container).
pub fn is_attached(image: &Path) -> Result<bool, DiskError> {
    Ok(attached(image)?.is_some())
}

/// The loop device `image` is attached to already, if any.
fn attached(image: &Path) -> Result<Option<PathBuf>, DiskError> {
    let want = backing_path(image)?;
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let sys = entry.path();
        let Ok(backing) = std::fs::read_to_string(sys.join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end_matches('\n')) == want {
            return Ok(device_of(&sys));
        }
    }
    Ok(None)
}

/// Counts the mounts this process made: a directory on a file system mounted again can have
/// the device and inode it had before (the image's loop device is reused), so this is how
/// a watcher of it learns that its watch went with the old mount.
static MOUNTS_MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many mounts this process has made so far.
pub fn mounts_made() -> u64 {
    MOUNTS_MADE.load(std::sync::atomic::Ordering::Acquire)
}

/// Mounts `image` on `mountpoint` (an empty directory) unless it is already; returns the
/// state after. `nosuid,nodev`: nothing on an agent's disk can raise privileges.
/// `noinit_itable`: the kernel does not zero the inode tables in the background (mke2fs
/// marked them uninitialised), which would write 16 MiB into every 1g image for nothing.
pub fn mount(image: &Path, mountpoint: &Path) -> Result<MountState, DiskError> {
    if let state @ MountState::Mounted { .. } = is_mounted(image, mountpoint)? {
        return Ok(state);
    }
    let options = "nosuid,nodev,noatime,noinit_itable";
    match attached(image)? {
        Some(device) => run(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("ext4"),
                OsStr::new("-o"),
                OsStr::new(options),
                device.as_os_str(),
                mountpoint.as_os_str(),
            ],
        )?,
        None => run(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("ext4"),
                OsStr::new("-o"),
                OsStr::new(&format!("loop,{options}")),
                image.as_os_str(),
                mountpoint.as_os_str(),
            ],
        )?,
    }
    MOUNTS_MADE.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    is_mounted(image, mountpoint)
}

/// Unmounts whatever is mounted on `mountpoint` (lazily when something still has it open: a
/// running container keeps its own bind mounts either way).
pub fn unmount(mountpoint: &Path) -> Result<(), DiskError> {
    match run("umount", &[mountpoint.as_os_str()]) {
        Ok(()) => Ok(()),
        Err(DiskError::Tool { ref stderr, .. }) if stderr.contains("not mounted") => Ok(()),
        Err(_) => run("umount", &[OsStr::new("-l"), mountpoint.as_os_str()]),
    }
}

/// Unmounts (lazily) every mount at or below `root`, deepest first; returns how many. For
/// throwing a whole home away (tests, and a home's directory removed by hand).
pub fn unmount_below(root: &Path) -> usize {
    let Ok(root) = std::fs::canonicalize(root) else {
        return 0;
    };
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
        .iter()
        .filter(|p| run("umount", &[OsStr::new("-l"), p.as_os_str()]).is_ok())
        .count()
}

/// mountinfo writes space, tab, newline and backslash in a path as `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::disk::{make_image, resize, EnforceSetting, Enforcement, Resized};
    use std::io::Write;

    /// A staged tree, its image and a mount point, unmounted at the end.
    struct Scratch {
        dir: tempfile::TempDir,
    }

    impl Scratch {
        fn new() -> Self {
            assert!(
                Enforcement::detect(EnforceSetting::Auto).is_hard(),
                "these tests mount disk images: run them as root on a host with loop devices \
                 and e2fsprogs (CI does)"
            );
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("src/workspace")).unwrap();
            std::fs::write(dir.path().join("src/workspace/SOUL.md"), "# Soul\n").unwrap();
            std::fs::create_dir(dir.path().join("volume")).unwrap();
            Self { dir }
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = unmount(&self.path("volume"));
        }
    }

    #[test]
    fn an_image_mounts_once_holds_its_tree_and_grows() {
        let s = Scratch::new();
        let (image, mp) = (s.path("volume.img"), s.path("volume"));
        make_image(&s.path("src"), &image, 64 << 20).unwrap();
        assert!(
            std::fs::metadata(&image).unwrap().blocks() * 512 < 8 << 20,
            "sparse"
        );
        assert_eq!(is_mounted(&image, &mp).unwrap(), MountState::Unmounted);
        let MountState::Mounted { device } = mount(&image, &mp).unwrap() else {
            panic!("not mounted");
        };
        assert!(device.starts_with("/dev"));
        assert_eq!(
            std::fs::read_to_string(mp.join("workspace/SOUL.md")).unwrap(),
            "# Soul\n"
        );
        // Mounting again changes nothing and attaches no second device.
        assert_eq!(
            mount(&image, &mp).unwrap(),
            MountState::Mounted {
                device: device.clone()
            }
        );
        let before = nix::sys::statvfs::statvfs(&mp).unwrap().blocks();
        unmount(&mp).unwrap();
        assert_eq!(is_mounted(&image, &mp).unwrap(), MountState::Unmounted);
        unmount(&mp).unwrap();
        // The device went with the mount (autoclear).
        assert!(attached(&image).unwrap().is_none());
        assert_eq!(resize(&image, 128 << 20).unwrap(), Resized::Grown);
        assert_eq!(resize(&image, 128 << 20).unwrap(), Resized::Unchanged);
        // A new mount finds the data, on a larger file system.
        mount(&image, &mp).unwrap();
        assert!(mp.join("workspace/SOUL.md").exists());
        let after = nix::sys::statvfs::statvfs(&mp).unwrap().blocks();
        assert!(after > before, "{before} -> {after}");
        // Filled past 64 MiB, it cannot shrink back; emptied, it can.
        let big = mp.join("workspace/big");
        std::fs::File::create(&big)
            .unwrap()
            .write_all(&vec![7u8; 80 << 20])
            .unwrap();
        unmount(&mp).unwrap();
        assert!(resize(&image, 64 << 20).is_err(), "the files do not fit");
        assert_eq!(std::fs::metadata(&image).unwrap().len(), 128 << 20);
        mount(&image, &mp).unwrap();
        assert_eq!(
            std::fs::metadata(&big).unwrap().len(),
            80 << 20,
            "nothing lost"
        );
        std::fs::remove_file(&big).unwrap();
        unmount(&mp).unwrap();
        assert_eq!(resize(&image, 64 << 20).unwrap(), Resized::Shrunk);
        assert_eq!(std::fs::metadata(&image).unwrap().len(), 64 << 20);
        mount(&image, &mp).unwrap();
        assert!(mp.join("workspace/SOUL.md").exists());
        // With a journal made for its size, nearly all of it is the agent's.
        let st = nix::sys::statvfs::statvfs(&mp).unwrap();
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        assert!(free > 56 << 20, "{free} bytes free of 64 MiB");
    }

    #[test]
    fn a_device_still_attached_is_reused_not_doubled() {
        let s = Scratch::new();
        let (image, mp) = (s.path("volume.img"), s.path("volume"));
        make_image(&s.path("src"), &image, 64 << 20).unwrap();
        let MountState::Mounted { device } = mount(&image, &mp).unwrap() else {
            panic!()
        };
        // A second mount of the same device elsewhere (as a container's bind mount keeps it)
        // holds the device after the first is gone.
        let other = s.path("other");
        std::fs::create_dir(&other).unwrap();
        run(
            "mount",
            &[OsStr::new("--bind"), mp.as_os_str(), other.as_os_str()],
        )
        .unwrap();
        unmount(&mp).unwrap();
        assert_eq!(attached(&image).unwrap(), Some(device.clone()));
        assert_eq!(mount(&image, &mp).unwrap(), MountState::Mounted { device });
        unmount(&other).unwrap();
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn everything_below_a_root_is_unmounted() {
        let s = Scratch::new();
        let (image, mp) = (s.path("volume.img"), s.path("volume"));
        make_image(&s.path("src"), &image, 64 << 20).unwrap();
        mount(&image, &mp).unwrap();
        assert_eq!(unmount_below(s.dir.path()), 1);
        assert_eq!(is_mounted(&image, &mp).unwrap(), MountState::Unmounted);
        assert_eq!(unmount_below(s.dir.path()), 0);
    }

    #[test]
    fn too_small_is_refused_and_leaves_nothing() {
        let s = Scratch::new();
        let image = s.path("small.img");
        assert!(matches!(
            make_image(&s.path("src"), &image, 1 << 20),
            Err(DiskError::TooSmall { .. })
        ));
        assert!(!image.exists());
    }
}
