//! The permissions check: the modes the supervisor gives what it creates, and what is found.
//!
//! Everything private is 0700 (directories) or 0600 (files), as `fsutil` creates them. A
//! runtime is sealed read-only, 0555 for its directories (`runtime::build`); its files' modes
//! are part of its manifest and checked by the runtime check. Only modes are checked here
//! (owners are the isolation check's). Inside the workspace only what the supervisor wrote
//! is checked; the agent's own files are its business.
//!
//! What an agent can write is looked at, and repaired, only through descriptors: each path is
//! a base directory (the home, or an instance's volume opened by `instance::volume`) and
//! plain names below it, none of which is ever followed if it is a link, and `--fix` changes
//! the mode on the descriptor of the entry it judged (`fchmod`), so an entry swapped for a
//! link after the look is never the one changed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::infra::fsutil::{DIR_MODE, FILE_MODE};
use crate::infra::home::{CONFIG_FILE, DB_FILE};
use crate::infra::safefs::{self, SafeDir};

use super::checks::PERMISSIONS;
use super::Check;

/// Directories of a sealed runtime.
pub const RUNTIME_DIR_MODE: u32 = 0o555;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Socket,
}

/// The directory an expected path is resolved below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// The home (which may itself be reached through a link).
    Home,
    /// An instance's volume (its image mounted, where it has one).
    Volume(String),
}

/// One path and the mode it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// For messages.
    pub path: PathBuf,
    pub base: Base,
    /// Below the base: plain names, resolved one by one, none followed.
    pub rel: PathBuf,
    pub kind: Kind,
    pub mode: u32,
}

/// What the home holds, as far as modes go: found by listing, judged by [`expectations`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    /// Names of the directories under `instances/` (staging directories left out).
    pub instances: Vec<String>,
    /// Every directory of every runtime under `runtime/`, the runtime's own included.
    pub runtime_dirs: Vec<PathBuf>,
}

/// Every path whose mode the supervisor decides, with that mode. Paths that may not exist
/// (the WAL, the socket, a quarantine) are listed too: missing ones are skipped.
pub fn expectations(layout: &Layout) -> Vec<Expect> {
    let root = &layout.root;
    let at = |p: PathBuf, kind, mode| Expect {
        rel: p.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf(),
        path: p,
        base: Base::Home,
        kind,
        mode,
    };
    let dir = |p: PathBuf| at(p, Kind::Dir, DIR_MODE);
    let file = |p: PathBuf| at(p, Kind::File, FILE_MODE);
    let mut out = vec![dir(root.clone())];
    for sub in ["instances", "archive", "runtime", "run", "backups", "logs"] {
        out.push(dir(root.join(sub)));
    }
    for name in [
        DB_FILE.to_string(),
        format!("{DB_FILE}-wal"),
        format!("{DB_FILE}-shm"),
        CONFIG_FILE.to_string(),
        // Holds API keys and the token for the service unit.
        "supervisor.env".to_string(),
    ] {
        out.push(file(root.join(name)));
    }
    out.push(at(
        root.join("run/supervisor.sock"),
        Kind::Socket,
        FILE_MODE,
    ));
    for name in ["daemon.lock", "daemon.pid"] {
        out.push(file(root.join("run").join(name)));
    }
    for name in &layout.instances {
        // A chat group's directory is below its instance's; its config and persona are the
        // instance's.
        let parsed = crate::domain::instance::InstanceName::parse(name);
        let group = parsed.as_ref().is_ok_and(|n| n.is_group());
        let inst = match &parsed {
            Ok(n) => root.join(crate::infra::home::instance_dir(n)),
            Err(_) => root.join("instances").join(name),
        };
        out.push(dir(inst.clone()));
        if !group {
            out.push(file(inst.join("config.json")));
        }
        out.push(file(inst.join(crate::infra::home::VOLUME_IMAGE)));
        out.push(file(inst.join(crate::infra::home::VOLUME_LOCK)));
        out.push(dir(inst.join(crate::infra::home::QUARANTINE_DIR)));
        let volume = inst.join(crate::infra::home::VOLUME_DIR);
        let in_volume = |rel: &str, kind, mode| Expect {
            path: volume.join(rel),
            base: Base::Volume(name.clone()),
            rel: PathBuf::from(rel),
            kind,
            mode,
        };
        out.push(in_volume("", Kind::Dir, DIR_MODE));
        for sub in [
            "workspace",
            "workspace/memory",
            "workspace/skills",
            "ipc",
            "ipc/in",
            "ipc/out",
        ] {
            out.push(in_volume(sub, Kind::Dir, DIR_MODE));
        }
        for name in ["SOUL.md", "AGENTS.md"].iter().filter(|_| !group) {
            out.push(in_volume(
                &format!("workspace/{name}"),
                Kind::File,
                FILE_MODE,
            ));
        }
    }
    for d in &layout.runtime_dirs {
        out.push(at(d.clone(), Kind::Dir, RUNTIME_DIR_MODE));
    }
    out
}

/// What is on disk at an expected path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Missing,
    Symlink,
    Entry { kind: Option<Kind>, mode: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// The mode differs; chmod fixes it.
    Mode {
        found: u32,
        want: u32,
    },
    /// Something else than expected is there; a person has to look.
    Other(String),
}

/// Judges what was found at one path.
pub fn judge(expect: &Expect, found: Found) -> Verdict {
    match found {
        Found::Missing => Verdict::Ok,
        // Never followed: a link could point a chmod anywhere.
        Found::Symlink => Verdict::Other("is a symbolic link".into()),
        Found::Entry { kind, .. } if kind != Some(expect.kind) => Verdict::Other(format!(
            "is not a {}",
            match expect.kind {
                Kind::Dir => "directory",
                Kind::File => "regular file",
                Kind::Socket => "socket",
            }
        )),
        Found::Entry { mode, .. } if mode != expect.mode => Verdict::Mode {
            found: mode,
            want: expect.mode,
        },
        Found::Entry { .. } => Verdict::Ok,
    }
}

/// The row for one path that is not as expected. `fixed`: the outcome of `--fix`'s chmod.
pub fn finding(
    expect: &Expect,
    verdict: &Verdict,
    rel: &str,
    fixed: Option<&Result<(), String>>,
) -> Check {
    match (verdict, fixed) {
        (Verdict::Mode { found, want }, Some(Ok(()))) => {
            let mut c = Check::ok(
                PERMISSIONS,
                format!("{rel}: mode was {found:04o}, set to {want:04o}"),
            );
            c.fixed = true;
            c
        }
        (Verdict::Mode { found, want }, outcome) => {
            let how = if found & !want != 0 {
                "too open"
            } else {
                "not as created"
            };
            let failed = match outcome {
                Some(Err(e)) => format!("; chmod failed: {e}"),
                _ => String::new(),
            };
            Check::warn(
                PERMISSIONS,
                format!("{rel}: mode {found:04o}, expected {want:04o} ({how}){failed}"),
                format!("chmod {want:o} {}", expect.path.display()),
            )
        }
        (Verdict::Other(what), _) => Check::warn(
            PERMISSIONS,
            format!("{rel} {what}"),
            format!(
                "look at {} and put back what the supervisor created",
                expect.path.display()
            ),
        ),
        (Verdict::Ok, _) => Check::ok(PERMISSIONS, format!("{rel}: as expected")),
    }
}

/// Looks at one path below `base` (its base directory, opened), following no link on the
/// way or at the end.
pub fn look(expect: &Expect, base: &SafeDir) -> io::Result<Found> {
    let (parent, name) = match (expect.rel.parent(), expect.rel.file_name()) {
        (Some(parent), Some(name)) => (parent, name),
        // The base itself.
        _ => return Ok(found_of(&base.stat_self()?)),
    };
    let dir = match base.open_dir(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        // A directory on the way is a link (or not a directory): never followed.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ELOOP) | Some(nix::libc::ENOTDIR)
            ) =>
        {
            return Ok(Found::Symlink)
        }
        Err(e) => return Err(e),
    };
    Ok(match dir.stat(name)? {
        None => Found::Missing,
        Some(st) => found_of(&st),
    })
}

fn found_of(st: &safefs::Stat) -> Found {
    let kind = match st.kind {
        safefs::Kind::Symlink => return Found::Symlink,
        safefs::Kind::Dir => Some(Kind::Dir),
        safefs::Kind::File => Some(Kind::File),
        safefs::Kind::Socket => Some(Kind::Socket),
        _ => None,
    };
    Found::Entry {
        kind,
        mode: st.mode,
    }
}

/// Sets the mode `expect` asks for, on a descriptor of the entry itself: if it was swapped
/// for anything but what was judged (a link, another kind), nothing is changed.
pub fn repair(expect: &Expect, base: &SafeDir) -> Result<(), String> {
    let kind = match expect.kind {
        Kind::Dir => safefs::Kind::Dir,
        Kind::File => safefs::Kind::File,
        Kind::Socket => return Err("a socket's mode is set by whoever binds it".into()),
    };
    match (expect.rel.parent(), expect.rel.file_name()) {
        (Some(parent), Some(name)) => base
            .open_dir(parent)
            .and_then(|d| d.set_mode(name, kind, expect.mode)),
        _ => base.set_own_mode(expect.mode),
    }
    .map_err(|e| e.to_string())
}

/// Lists what [`Layout`] needs: the instance directories and the runtimes' directories.
pub fn layout(root: &Path) -> Layout {
    let names = |dir: PathBuf| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // Staging directories (`.creating-…`, `.building-…`) come and go.
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    let mut runtime_dirs = Vec::new();
    for id in names(root.join("runtime")) {
        if crate::infra::runtime::is_runtime_id(&id) {
            dirs_below(&root.join("runtime").join(id), &mut runtime_dirs);
        }
    }
    Layout {
        root: root.to_path_buf(),
        instances: names(root.join("instances")),
        runtime_dirs,
    }
}

fn dirs_below(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs_below(&entry.path(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_of(instances: &[&str]) -> Layout {
        Layout {
            root: "/h".into(),
            instances: instances.iter().map(|s| s.to_string()).collect(),
            runtime_dirs: vec!["/h/runtime/0123456789abcdef".into()],
        }
    }

    fn mode_of(l: &Layout, path: &str) -> Option<u32> {
        expectations(l)
            .into_iter()
            .find(|e| e.path == Path::new(path))
            .map(|e| e.mode)
    }

    #[test]
    fn the_modes_the_supervisor_creates() {
        let l = layout_of(&["alice"]);
        for (path, mode) in [
            ("/h", 0o700),
            ("/h/run", 0o700),
            ("/h/instances", 0o700),
            ("/h/runtime", 0o700),
            ("/h/supervisor.db", 0o600),
            ("/h/supervisor.db-wal", 0o600),
            ("/h/supervisor.db-shm", 0o600),
            ("/h/supervisor.toml", 0o600),
            ("/h/run/supervisor.sock", 0o600),
            ("/h/instances/alice", 0o700),
            ("/h/instances/alice/config.json", 0o600),
            ("/h/instances/alice/volume", 0o700),
            ("/h/instances/alice/volume.img", 0o600),
            ("/h/instances/alice/volume/workspace", 0o700),
            ("/h/instances/alice/volume/workspace/SOUL.md", 0o600),
            ("/h/instances/alice/volume/ipc", 0o700),
            ("/h/instances/alice/volume/ipc/out", 0o700),
            ("/h/runtime/0123456789abcdef", 0o555),
        ] {
            assert_eq!(mode_of(&l, path), Some(mode), "{path}");
        }
        assert_eq!(
            mode_of(&l, "/h/instances/alice/volume/workspace/memory/MEMORY.md"),
            None,
            "the agent's own files are not judged"
        );
    }

    #[test]
    fn what_an_agent_can_write_is_resolved_below_its_volume() {
        let l = layout_of(&["alice"]);
        let soul = expectations(&l)
            .into_iter()
            .find(|e| e.path == Path::new("/h/instances/alice/volume/workspace/SOUL.md"))
            .unwrap();
        assert_eq!(soul.base, Base::Volume("alice".into()));
        assert_eq!(soul.rel, Path::new("workspace/SOUL.md"));
        let config = expectations(&l)
            .into_iter()
            .find(|e| e.path == Path::new("/h/instances/alice/config.json"))
            .unwrap();
        assert_eq!(
            (config.base, config.rel),
            (Base::Home, PathBuf::from("instances/alice/config.json"))
        );
    }

    #[test]
    fn looking_and_repairing_never_follow_a_link() {
        let t = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            victim.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(t.path().join("workspace")).unwrap();
        std::os::unix::fs::symlink(victim.path(), t.path().join("workspace/memory")).unwrap();
        let base = SafeDir::open(t.path()).unwrap();
        let e = Expect {
            path: t.path().join("workspace/memory"),
            base: Base::Volume("alice".into()),
            rel: "workspace/memory".into(),
            kind: Kind::Dir,
            mode: 0o700,
        };
        assert_eq!(look(&e, &base).unwrap(), Found::Symlink);
        assert!(repair(&e, &base).is_err());
        let below = Expect {
            rel: "workspace/memory/MEMORY.md".into(),
            ..e.clone()
        };
        assert_eq!(
            look(&below, &base).unwrap(),
            Found::Symlink,
            "a link on the way"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(victim.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
    }

    #[test]
    fn verdicts() {
        let l = layout_of(&["alice"]);
        let e = expectations(&l);
        let dir = e
            .iter()
            .find(|x| x.path == Path::new("/h/instances/alice"))
            .unwrap();
        let entry = |kind, mode| Found::Entry {
            kind: Some(kind),
            mode,
        };
        assert_eq!(judge(dir, Found::Missing), Verdict::Ok);
        assert_eq!(judge(dir, entry(Kind::Dir, 0o700)), Verdict::Ok);
        assert_eq!(
            judge(dir, entry(Kind::Dir, 0o755)),
            Verdict::Mode {
                found: 0o755,
                want: 0o700
            }
        );
        assert!(matches!(judge(dir, Found::Symlink), Verdict::Other(_)));
        assert!(matches!(
            judge(dir, entry(Kind::File, 0o700)),
            Verdict::Other(_)
        ));
        let rt = e
            .iter()
            .find(|x| x.path == Path::new("/h/runtime/0123456789abcdef"))
            .unwrap();
        assert_eq!(judge(rt, entry(Kind::Dir, 0o555)), Verdict::Ok);
        assert!(matches!(
            judge(rt, entry(Kind::Dir, 0o755)),
            Verdict::Mode { .. }
        ));
    }

    #[test]
    fn rows_say_what_was_found_and_what_was_done() {
        let e = Expect {
            path: "/h/instances/alice/config.json".into(),
            base: Base::Home,
            rel: "instances/alice/config.json".into(),
            kind: Kind::File,
            mode: 0o600,
        };
        let v = Verdict::Mode {
            found: 0o644,
            want: 0o600,
        };
        let rel = "instances/alice/config.json";
        let warn = finding(&e, &v, rel, None);
        assert_eq!(warn.status, crate::app::doctor::Status::Warn);
        assert!(
            warn.message.contains("mode 0644, expected 0600 (too open)"),
            "{}",
            warn.message
        );
        assert_eq!(
            warn.fix.as_deref(),
            Some("chmod 600 /h/instances/alice/config.json")
        );
        let fixed = finding(&e, &v, rel, Some(&Ok(())));
        assert_eq!(fixed.status, crate::app::doctor::Status::Ok);
        assert!(fixed.fixed);
        assert!(fixed.message.contains("mode was 0644, set to 0600"));
        let failed = finding(&e, &v, rel, Some(&Err("EPERM".into())));
        assert_eq!(failed.status, crate::app::doctor::Status::Warn);
        assert!(failed.message.contains("chmod failed: EPERM"));
    }
}
