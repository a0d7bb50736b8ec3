//! The workspace's `inbox/`: where files people send through a channel are put for the agent.
//! The workspace is the agent's, so every step goes through descriptors beneath the volume
//! ([`SafeDir`]): `inbox` is made or opened without following a link (one the agent put there
//! is refused, never followed to a host tree), the file is written under a temporary name
//! created exclusively, then renamed into place within that same directory.

use std::io::{self, Write};

use crate::infra::home::InstancePaths;
use crate::infra::safefs::SafeDir;
use crate::infra::volume;

/// The directory's name in the workspace (`/workspace/inbox` in the container).
pub const INBOX_DIR: &str = "inbox";

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Volume(#[from] volume::VolumeError),
    #[error("cannot save {name} in the workspace's inbox/: {source}")]
    Io { name: String, source: io::Error },
}

/// Saves `bytes` as `inbox/<name>` in the instance's workspace, owned by `owner` when the
/// daemon runs as root; returns the path the agent sees (`inbox/<name>`). A file of that name
/// already there is kept (the same update read again after a restart).
pub fn save(
    paths: &InstancePaths,
    owner: Option<(u32, u32)>,
    name: &str,
    bytes: &[u8],
) -> Result<String, InboxError> {
    let io_err = |source| InboxError::Io {
        name: name.to_string(),
        source,
    };
    let workspace = volume::open(paths)?.workspace()?;
    let inbox = inbox_dir(&workspace, owner).map_err(io_err)?;
    let shown = format!("{INBOX_DIR}/{name}");
    if inbox.stat(name).map_err(io_err)?.is_some() {
        return Ok(shown);
    }
    let partial = format!(".{name}.partial-{}", std::process::id());
    // A partial file left by a crash is replaced, never written through.
    let _ = inbox.remove_file(&partial);
    let mut file = inbox.create_new(&partial, 0o640).map_err(io_err)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = inbox.remove_file(&partial);
        return Err(io_err(e));
    }
    if let Some((uid, gid)) = owner {
        if let Err(e) = nix::unistd::fchown(&file, Some(uid.into()), Some(gid.into())) {
            let _ = inbox.remove_file(&partial);
            return Err(io_err(e.into()));
        }
    }
    drop(file);
    inbox
        .rename_to(&partial, &inbox, name, false)
        .or_else(|e| match e.kind() {
            // Made meanwhile (by the agent, or a daemon before this one): theirs stays.
            io::ErrorKind::AlreadyExists => inbox.remove_file(&partial),
            _ => Err(e),
        })
        .map_err(io_err)?;
    Ok(shown)
}

/// `inbox/`, made if it is missing; anything else of that name (a link, a file) is refused.
fn inbox_dir(workspace: &SafeDir, owner: Option<(u32, u32)>) -> io::Result<SafeDir> {
    if workspace.stat(INBOX_DIR)?.is_none() {
        workspace.create_dir(INBOX_DIR, 0o770)?;
        if let Some((uid, gid)) = owner {
            workspace.set_owner(INBOX_DIR, crate::infra::safefs::Kind::Dir, uid, gid)?;
        }
    }
    workspace.open_dir(INBOX_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::home::Home;

    fn instance() -> (tempfile::TempDir, InstancePaths) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path()).unwrap();
        let paths =
            home.instance_paths(&crate::domain::instance::InstanceName::parse("alice").unwrap());
        std::fs::create_dir_all(paths.volume.join("workspace")).unwrap();
        std::fs::create_dir_all(paths.volume.join("ipc/in")).unwrap();
        std::fs::create_dir_all(paths.volume.join("ipc/out")).unwrap();
        (dir, paths)
    }

    #[test]
    fn a_file_lands_in_the_inbox_once() {
        let (_d, paths) = instance();
        assert_eq!(save(&paths, None, "a.txt", b"one").unwrap(), "inbox/a.txt");
        assert_eq!(save(&paths, None, "a.txt", b"two").unwrap(), "inbox/a.txt");
        let ws = paths.volume.join("workspace/inbox");
        assert_eq!(std::fs::read(ws.join("a.txt")).unwrap(), b"one");
        assert_eq!(
            std::fs::read_dir(&ws).unwrap().count(),
            1,
            "no partial file left"
        );
    }

    #[test]
    fn an_inbox_that_is_a_link_is_never_followed() {
        let (d, paths) = instance();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, paths.volume.join("workspace/inbox")).unwrap();
        assert!(save(&paths, None, "a.txt", b"x").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }
}
