//! The permissions check: the modes the supervisor gives what it creates, and what is found.
//!
//! Everything private is 0700 (directories) or 0600 (files), as `fsutil` creates them. A
//! runtime is sealed read-only, 0555 for its directories (`runtime::build`); its files' modes
//! are part of its manifest and checked by the runtime check. Only modes are checked, not
//! owners: a root daemon hands `workspace/` and `ipc/` to 65532 on purpose (`daemon::user`).
//! Inside the workspace only what the supervisor wrote is checked; the agent's own files are
//! its business.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fsutil::{DIR_MODE, FILE_MODE};
use crate::home::{CONFIG_FILE, DB_FILE};

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

/// One path and the mode it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub path: PathBuf,
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
    let dir = |p: PathBuf| Expect {
        path: p,
        kind: Kind::Dir,
        mode: DIR_MODE,
    };
    let file = |p: PathBuf| Expect {
        path: p,
        kind: Kind::File,
        mode: FILE_MODE,
    };
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
    out.push(Expect {
        path: root.join("run/supervisor.sock"),
        kind: Kind::Socket,
        mode: FILE_MODE,
    });
    for name in ["daemon.lock", "daemon.pid"] {
        out.push(file(root.join("run").join(name)));
    }
    for name in &layout.instances {
        let inst = root.join("instances").join(name);
        out.push(dir(inst.clone()));
        out.push(file(inst.join("config.json")));
        for sub in [
            "workspace",
            "workspace/memory",
            "workspace/skills",
            "ipc",
            "ipc/in",
            "ipc/out",
            "quarantine",
        ] {
            out.push(dir(inst.join(sub)));
        }
        for name in ["SOUL.md", "AGENTS.md"] {
            out.push(file(inst.join("workspace").join(name)));
        }
    }
    for d in &layout.runtime_dirs {
        out.push(Expect {
            path: d.clone(),
            kind: Kind::Dir,
            mode: RUNTIME_DIR_MODE,
        });
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

/// Looks at one path without following a link (except the home itself, which may well be
/// a link to where the data lives).
pub fn look(expect: &Expect, follow: bool) -> io::Result<Found> {
    let meta = if follow {
        fs::metadata(&expect.path)
    } else {
        fs::symlink_metadata(&expect.path)
    };
    let meta = match meta {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(Found::Symlink);
    }
    let kind = if ft.is_dir() {
        Some(Kind::Dir)
    } else if ft.is_file() {
        Some(Kind::File)
    } else if ft.is_socket() {
        Some(Kind::Socket)
    } else {
        None
    };
    Ok(Found::Entry {
        kind,
        mode: meta.permissions().mode() & 0o7777,
    })
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
        if crate::runtime::is_runtime_id(&id) {
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

/// Sets the mode `expect` asks for (the path was just seen not to be a link).
pub fn repair(expect: &Expect) -> Result<(), String> {
    crate::fsutil::set_mode(&expect.path, expect.mode).map_err(|e| e.to_string())
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
            ("/h/instances/alice/workspace", 0o700),
            ("/h/instances/alice/workspace/SOUL.md", 0o600),
            ("/h/instances/alice/ipc", 0o700),
            ("/h/instances/alice/ipc/out", 0o700),
            ("/h/runtime/0123456789abcdef", 0o555),
        ] {
            assert_eq!(mode_of(&l, path), Some(mode), "{path}");
        }
        assert_eq!(
            mode_of(&l, "/h/instances/alice/workspace/memory/MEMORY.md"),
            None,
            "the agent's own files are not judged"
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
            kind: Kind::File,
            mode: 0o600,
        };
        let v = Verdict::Mode {
            found: 0o644,
            want: 0o600,
        };
        let rel = "instances/alice/config.json";
        let warn = finding(&e, &v, rel, None);
        assert_eq!(warn.status, crate::doctor::Status::Warn);
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
        assert_eq!(fixed.status, crate::doctor::Status::Ok);
        assert!(fixed.fixed);
        assert!(fixed.message.contains("mode was 0644, set to 0600"));
        let failed = finding(&e, &v, rel, Some(&Err("EPERM".into())));
        assert_eq!(failed.status, crate::doctor::Status::Warn);
        assert!(failed.message.contains("chmod failed: EPERM"));
    }
}
