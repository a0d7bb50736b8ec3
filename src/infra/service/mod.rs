//! Running the daemon under the system's service manager: a systemd unit on Linux, a launchd
//! agent on macOS. The text of those files is rendered without I/O in [`render`]; this file
//! knows their names, where they go, and writes and removes them.

pub mod companions;
pub mod render;

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::infra::fsutil;

/// The systemd unit's file name, and so the name `systemctl` knows the service by.
pub const SYSTEMD_UNIT: &str = "supervisor.service";
/// The unit file's mode: the service manager and `systemctl cat` read it as any user; it
/// holds no secret (those go in [`ENV_FILE`]).
pub const UNIT_MODE: u32 = 0o644;
/// In the home: the `KEY=value` lines systemd hands the daemon as its environment.
pub const ENV_FILE: &str = "supervisor.env";
/// Under the home: where launchd writes the daemon's stderr (launchd has no journal).
pub const LAUNCHD_LOG: &str = "logs/daemon.log";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{what} {value:?} cannot be written into a {format}: it {reason}")]
    Unrepresentable {
        what: &'static str,
        value: String,
        format: &'static str,
        reason: &'static str,
    },
    #[error("no directory for user units: HOME is not set (pass --unit-dir DIR)")]
    NoUserDir,
    #[error(
        "{} exists and differs from the unit this would write (pass --force to replace it)",
        .0.display()
    )]
    Differs(PathBuf),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl ServiceError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// Which service manager runs the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// The one this platform has.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }
}

/// The user's own service manager, or the system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

impl Scope {
    /// `systemctl`'s arguments before the verb: `--user` or nothing.
    pub fn systemctl_args(self) -> &'static [&'static str] {
        match self {
            Self::User => &["--user"],
            Self::System => &[],
        }
    }

    /// The target `systemctl enable` hooks the unit into.
    pub fn wanted_by(self) -> &'static str {
        match self {
            Self::User => "default.target",
            Self::System => "multi-user.target",
        }
    }
}

/// Where unit files go when `--unit-dir` does not say: systemd's user directory
/// (`$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`) or its directory for
/// local system units; for launchd the user's LaunchAgents, whatever the scope. `env` looks
/// up an environment variable (a parameter, so this stays testable).
pub fn default_unit_dir(
    manager: Manager,
    scope: Scope,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, ServiceError> {
    // Relative values are ignored, as the XDG base directory specification asks.
    let absolute = |k: &str| env(k).map(PathBuf::from).filter(|p| p.is_absolute());
    match (manager, scope) {
        (Manager::Systemd, Scope::System) => Ok(PathBuf::from("/etc/systemd/system")),
        (Manager::Systemd, Scope::User) => match absolute("XDG_CONFIG_HOME") {
            Some(config) => Ok(config.join("systemd/user")),
            None => Ok(absolute("HOME")
                .ok_or(ServiceError::NoUserDir)?
                .join(".config/systemd/user")),
        },
        (Manager::Launchd, _) => Ok(absolute("HOME")
            .ok_or(ServiceError::NoUserDir)?
            .join("Library/LaunchAgents")),
    }
}

/// The launchd label of a home's agent: one agent per home, so two homes can both run.
pub fn launchd_label(home_id: &str) -> String {
    let short: String = home_id.chars().take(8).collect();
    format!("io.supervisor.{short}")
}

/// The unit's file name: fixed for systemd (so `systemctl … supervisor` works), per home
/// for launchd (`<label>.plist`, as launchd expects).
pub fn unit_file_name(manager: Manager, home_id: &str) -> String {
    match manager {
        Manager::Systemd => SYSTEMD_UNIT.to_string(),
        Manager::Launchd => format!("{}.plist", launchd_label(home_id)),
    }
}

/// What [`write_unit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    /// The file already had exactly this content.
    Unchanged,
    /// A different file was there, and `force` allowed replacing it.
    Replaced,
}

/// Writes `contents` to `path` (mode 0644), atomically: the service manager reads the old
/// file or the new one, never half of one. An identical file is left alone; a different one
/// is replaced only with `force`, since it may be a unit someone wrote or edited by hand.
pub fn write_unit(path: &Path, contents: &str, force: bool) -> Result<WriteOutcome, ServiceError> {
    let outcome = match fs::read(path) {
        Ok(existing) if existing == contents.as_bytes() => {
            // Same unit; only make sure the service manager can still read it.
            fsutil::set_mode(path, UNIT_MODE).map_err(ServiceError::io("set the mode of", path))?;
            return Ok(WriteOutcome::Unchanged);
        }
        Ok(_) if !force => return Err(ServiceError::Differs(path.to_path_buf())),
        Ok(_) => WriteOutcome::Replaced,
        Err(e) if e.kind() == io::ErrorKind::NotFound => WriteOutcome::Created,
        Err(e) => return Err(ServiceError::io("read", path)(e)),
    };
    write_public(path, contents.as_bytes())?;
    Ok(outcome)
}

/// Writes a file every user may read (mode 0644) atomically, creating its directory (0755,
/// so that the service manager, `man` or a shell of another user can enter it).
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), ServiceError> {
    let dir = path
        .parent()
        .ok_or_else(|| ServiceError::io("write", path)(io::ErrorKind::InvalidInput.into()))?;
    create_public_dir(dir).map_err(ServiceError::io("create directory", dir))?;
    let write = || -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".supervisor.")
            .suffix(".tmp")
            .tempfile_in(dir)?;
        tmp.write_all(contents)?;
        // Set after creation: a mode given at creation would be narrowed by the umask
        // (0077 in this program).
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(UNIT_MODE))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        fsutil::sync_dir(dir)
    };
    write().map_err(ServiceError::io("write", path))
}

/// Creates `dir` and its missing parents with mode 0755 (the umask would make them 0700);
/// directories that exist are left as they are.
fn create_public_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_public_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the unit file; false when there was none.
pub fn remove_unit(path: &Path) -> Result<bool, ServiceError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ServiceError::io("remove", path)(e)),
    }
}

/// Removes the link `systemctl enable` made for the unit in `unit_dir` (`<target>.wants/`),
/// if there is one: with the unit file gone, `systemctl disable` can no longer find it, and
/// the dangling link would stay. Returns the link removed.
pub fn remove_enablement_link(
    unit_dir: &Path,
    scope: Scope,
) -> Result<Option<PathBuf>, ServiceError> {
    let link = unit_dir
        .join(format!("{}.wants", scope.wanted_by()))
        .join(SYSTEMD_UNIT);
    match fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::remove_file(&link).map_err(ServiceError::io("remove", &link))?;
            Ok(Some(link))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServiceError::io("inspect", &link)(e)),
    }
}

/// The user a system unit runs the daemon as: the owner of the home, unless that is root.
/// The daemon must be the home's owner: the home is 0700 and the CLI can only talk to a
/// daemon of its own user; and root's daemon would hand instance directories to another uid.
/// `None` means root (no `User=` line).
pub fn system_unit_user(home: &Path) -> Result<Option<String>, ServiceError> {
    use std::os::unix::fs::MetadataExt;
    let uid = fs::metadata(home)
        .map_err(ServiceError::io("inspect", home))?
        .uid();
    if uid == 0 {
        return Ok(None);
    }
    // A uid with no name in the user database still works: systemd takes numeric ids.
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn default_unit_dirs() {
        let dir = |m, s, e| default_unit_dir(m, s, e).unwrap();
        assert_eq!(
            dir(Manager::Systemd, Scope::System, env(&[("HOME", "/home/a")])),
            Path::new("/etc/systemd/system")
        );
        assert_eq!(
            dir(
                Manager::Systemd,
                Scope::User,
                env(&[("HOME", "/home/a"), ("XDG_CONFIG_HOME", "/cfg")])
            ),
            Path::new("/cfg/systemd/user")
        );
        // A relative XDG_CONFIG_HOME is ignored, as the specification says.
        assert_eq!(
            dir(
                Manager::Systemd,
                Scope::User,
                env(&[("HOME", "/home/a"), ("XDG_CONFIG_HOME", "cfg")])
            ),
            Path::new("/home/a/.config/systemd/user")
        );
        assert_eq!(
            dir(Manager::Launchd, Scope::User, env(&[("HOME", "/Users/a")])),
            Path::new("/Users/a/Library/LaunchAgents")
        );
        assert!(matches!(
            default_unit_dir(Manager::Systemd, Scope::User, env(&[])),
            Err(ServiceError::NoUserDir)
        ));
    }

    #[test]
    fn names() {
        let id = "3f9c02ab11112222333344445555aaaa";
        assert_eq!(launchd_label(id), "io.supervisor.3f9c02ab");
        assert_eq!(unit_file_name(Manager::Systemd, id), "supervisor.service");
        assert_eq!(
            unit_file_name(Manager::Launchd, id),
            "io.supervisor.3f9c02ab.plist"
        );
    }

    #[test]
    fn write_is_atomic_idempotent_and_refuses_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("units/supervisor.service");
        assert_eq!(
            write_unit(&path, "one\n", false).unwrap(),
            WriteOutcome::Created
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, UNIT_MODE);
        assert_eq!(
            write_unit(&path, "one\n", false).unwrap(),
            WriteOutcome::Unchanged
        );
        assert!(matches!(
            write_unit(&path, "two\n", false),
            Err(ServiceError::Differs(_))
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(
            write_unit(&path, "two\n", true).unwrap(),
            WriteOutcome::Replaced
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temp files left behind");
        assert!(remove_unit(&path).unwrap());
        assert!(!remove_unit(&path).unwrap());
    }

    #[test]
    fn enablement_link_is_removed_only_if_it_is_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let wants = dir.path().join("default.target.wants");
        fs::create_dir(&wants).unwrap();
        assert_eq!(
            remove_enablement_link(dir.path(), Scope::User).unwrap(),
            None
        );
        std::os::unix::fs::symlink("../supervisor.service", wants.join(SYSTEMD_UNIT)).unwrap();
        assert_eq!(
            remove_enablement_link(dir.path(), Scope::User).unwrap(),
            Some(wants.join(SYSTEMD_UNIT))
        );
        assert!(fs::symlink_metadata(wants.join(SYSTEMD_UNIT)).is_err());
    }
}
