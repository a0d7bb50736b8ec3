//! Who the agent runs as, and making its directories writable for that user.
//!
//! An unprivileged supervisor runs containers as its own uid:gid, so the instance's 0700
//! directories are writable inside the container as they are. A root supervisor never runs
//! agents as root: it uses the image's unprivileged user and hands that user the instance's
//! workspace and IPC directories.

use std::path::Path;

use crate::container_spec::AGENT_USER;

const AGENT_UID: u32 = 65532;
const AGENT_GID: u32 = 65532;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUser {
    /// `uid:gid` for Docker.
    pub spec: String,
    /// Owner to give the mounted directories, when the supervisor runs as root.
    pub chown_to: Option<(u32, u32)>,
}

impl ContainerUser {
    pub fn detect() -> Self {
        let uid = nix::unistd::geteuid();
        if uid.is_root() {
            Self {
                spec: AGENT_USER.to_string(),
                chown_to: Some((AGENT_UID, AGENT_GID)),
            }
        } else {
            Self {
                spec: format!("{}:{}", uid.as_raw(), nix::unistd::getegid().as_raw()),
                chown_to: None,
            }
        }
    }

    /// Makes `dir` and everything below it owned by the container user (symlinks are not
    /// followed). A no-op for an unprivileged supervisor.
    pub fn prepare(&self, dir: &Path) -> std::io::Result<()> {
        let Some((uid, gid)) = self.chown_to else {
            return Ok(());
        };
        fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
            let meta = std::fs::symlink_metadata(p)?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(p)? {
                    walk(&entry?.path(), uid, gid)?;
                }
            }
            Ok(())
        }
        walk(dir, uid, gid)
    }
}
