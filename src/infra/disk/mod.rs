//! Per-instance disks: the only code that makes file systems, attaches loop devices and
//! mounts or unmounts anything.
//!
//! With a hard limit an instance's workspace and IPC queues live on their own ext4 file
//! system in a sparse image file (`instances/<name>/volume.img`), loop-mounted on
//! `instances/<name>/volume/`. Writing past it fails inside the container with "No space left
//! on device" and touches neither the host's disk nor another instance's; inodes are capped
//! with it. 1% of the blocks are reserved for root, so the host can still hand a turn to an
//! agent that filled its disk. Without the means for that (the daemon is not root, no loop
//! devices, no mke2fs) the limit is soft: the daemon measures the tree and stops an instance
//! past it (see [`Enforcement`]).

mod image;
mod mount;

use std::path::{Path, PathBuf};

pub use image::{make_image, resize, Resized, MIN_DISK_BYTES};
pub use mount::{is_attached, is_mounted, mount, mounts_made, unmount, unmount_below, MountState};

pub use crate::domain::host_config::EnforceSetting;

/// Which enforcement a `[disk]` setting gives on this host: the question needs the host, so it
/// is answered here rather than by the config type.
impl crate::domain::host_config::DiskConfig {
    pub fn enforcement(&self) -> Enforcement {
        Enforcement::detect(self.enforce)
    }
}

/// How this process enforces disk limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Image files, loop-mounted.
    Hard,
    /// Measured; an instance past its limit is stopped. `why`: why not hard.
    Soft { why: String },
    /// `enforce = "hard"` on a host that cannot: `why` says what is missing.
    Unavailable { why: String },
}

impl Enforcement {
    /// Decides from the setting and what this host offers.
    pub fn detect(setting: EnforceSetting) -> Self {
        if setting == EnforceSetting::Soft {
            return Enforcement::Soft {
                why: "[disk] enforce = \"soft\" in supervisor.toml".into(),
            };
        }
        match hard_possible() {
            Ok(()) => Enforcement::Hard,
            Err(why) if setting == EnforceSetting::Hard => Enforcement::Unavailable { why },
            Err(why) => Enforcement::Soft { why },
        }
    }

    pub fn is_hard(&self) -> bool {
        matches!(self, Enforcement::Hard)
    }

    /// "hard", "soft" or "unavailable", for status and doctor.
    pub fn label(&self) -> &'static str {
        match self {
            Enforcement::Hard => "hard",
            Enforcement::Soft { .. } => "soft",
            Enforcement::Unavailable { .. } => "unavailable",
        }
    }

    /// Why it is not hard, if it is not.
    pub fn why_not_hard(&self) -> Option<&str> {
        match self {
            Enforcement::Hard => None,
            Enforcement::Soft { why } | Enforcement::Unavailable { why } => Some(why),
        }
    }
}

/// Whether this process can make and mount images: Ok, or what is missing.
fn hard_possible() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the supervisor does not run as root, so it cannot mount disk images".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("this host has no loop devices (/dev/loop-control is missing)".into());
    }
    for tool in [
        "mke2fs",
        "e2fsck",
        "resize2fs",
        "tune2fs",
        "mount",
        "umount",
    ] {
        if find_tool(tool).is_none() {
            return Err(format!(
                "{tool} is not installed (Debian: apt-get install e2fsprogs mount)"
            ));
        }
    }
    Ok(())
}

/// Where a system tool is: on PATH, else in the sbin directories a service's PATH may lack.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{tool} is not installed (Debian: apt-get install e2fsprogs mount)")]
    NoTool { tool: &'static str },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} has a file system mounted that is not its image {}", mountpoint.display(), image.display())]
    Foreign { mountpoint: PathBuf, image: PathBuf },
    #[error("the limit {limit} is below the smallest disk, {min} bytes", min = MIN_DISK_BYTES)]
    TooSmall { limit: u64 },
}

impl DiskError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| DiskError::Io {
            action,
            path,
            source,
        }
    }
}

/// Runs a system tool; its error output becomes the error.
fn run(tool: &'static str, args: &[&std::ffi::OsStr]) -> Result<(), DiskError> {
    let bin = find_tool(tool).ok_or(DiskError::NoTool { tool })?;
    let out = std::process::Command::new(bin)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| DiskError::Io {
            action: "run",
            path: PathBuf::from(tool),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(DiskError::Tool {
        tool,
        status: out.status.to_string(),
        stderr,
    })
}

/// Unmounts everything below its path when dropped: for unit tests whose homes mount disk
/// images in a temporary directory.
#[cfg(test)]
pub(crate) struct UnmountBelow(pub PathBuf);

#[cfg(test)]
impl Drop for UnmountBelow {
    fn drop(&mut self) {
        unmount_below(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_when_asked_and_unavailable_only_when_hard_is_required() {
        assert!(matches!(
            Enforcement::detect(EnforceSetting::Soft),
            Enforcement::Soft { .. }
        ));
        let auto = Enforcement::detect(EnforceSetting::Auto);
        let hard = Enforcement::detect(EnforceSetting::Hard);
        match hard_possible() {
            Ok(()) => {
                assert_eq!(auto, Enforcement::Hard);
                assert_eq!(hard, Enforcement::Hard);
            }
            Err(why) => {
                assert_eq!(auto, Enforcement::Soft { why: why.clone() });
                assert_eq!(hard, Enforcement::Unavailable { why });
            }
        }
    }
}
