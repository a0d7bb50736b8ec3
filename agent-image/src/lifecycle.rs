//! The steps of `supervisor-agent run` before and after the agent's work: checking the
//! mounts it needs, announcing itself to the host, and (in `main`) waiting to be stopped.

use crate::ipc;
use crate::protocol::{Envelope, Payload, PROTOCOL_VERSION};
use crate::self_check::{IPC_DIR, PERSONA_DIR, SHARED_DIR, WORKSPACE_DIR};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the agent finds its workspace and IPC directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The instance workspace (`/workspace`).
    pub workspace: PathBuf,
    /// Host → agent envelopes (`/ipc/in`).
    pub ipc_in: PathBuf,
    /// Agent → host envelopes (`/ipc/out`).
    pub ipc_out: PathBuf,
    /// The instance's persona, read-only (`/persona`), in a chat group's container only.
    pub persona: Option<PathBuf>,
    /// The instance's shared knowledge, read-only (`/shared`), in a chat group's container
    /// only, and there only when the instance has some.
    pub shared: Option<PathBuf>,
}

impl Layout {
    /// The paths inside an instance container, with `/persona` and `/shared` when they are
    /// directories now: the host mounts them before the agent starts, or not at all.
    pub fn container() -> Layout {
        let mut layout = Layout::under(Path::new(WORKSPACE_DIR), Path::new(IPC_DIR));
        layout.persona = dir_if_present(Path::new(PERSONA_DIR));
        layout.shared = dir_if_present(Path::new(SHARED_DIR));
        layout
    }

    /// `workspace`, and `in`/`out` under `ipc`; no persona or shared directory.
    pub fn under(workspace: &Path, ipc: &Path) -> Layout {
        Layout {
            workspace: workspace.to_path_buf(),
            ipc_in: ipc.join("in"),
            ipc_out: ipc.join("out"),
            persona: None,
            shared: None,
        }
    }

    /// This layout with the persona read from `dir`.
    pub fn with_persona(mut self, dir: &Path) -> Layout {
        self.persona = Some(dir.to_path_buf());
        self
    }

    /// This layout with the shared knowledge in `dir`.
    pub fn with_shared(mut self, dir: &Path) -> Layout {
        self.shared = Some(dir.to_path_buf());
        self
    }

    /// The persona file: `SOUL.md` of the persona directory when there is one (a chat group
    /// speaks with the instance's voice), else `SOUL.md` in the workspace.
    pub fn soul(&self) -> PathBuf {
        self.persona
            .as_ref()
            .unwrap_or(&self.workspace)
            .join("SOUL.md")
    }
}

/// Why the environment is unfit to run in; its `Display` is the one-line message to print.
#[derive(Debug)]
pub enum EnvError {
    /// A required directory is missing or is something else.
    NotADirectory { path: PathBuf, reason: String },
    /// `SOUL.md` is missing, not a regular file, or cannot be read.
    Soul { path: PathBuf, reason: String },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::NotADirectory { path, reason } => write!(
                f,
                "{} is missing or not a directory: {reason}",
                path.display()
            ),
            EnvError::Soul { path, reason } => {
                write!(f, "{} is missing or unreadable: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for EnvError {}

/// Checks, in this order, that the workspace is a directory, that [`Layout::soul`] is a
/// readable regular file, and that the IPC `in` and `out` directories exist. Symlinks are followed.
pub fn check_environment(layout: &Layout) -> Result<(), EnvError> {
    require_dir(&layout.workspace)?;
    let soul = layout.soul();
    check_readable_file(&soul).map_err(|reason| EnvError::Soul { path: soul, reason })?;
    require_dir(&layout.ipc_in)?;
    require_dir(&layout.ipc_out)?;
    Ok(())
}

/// `path` if it is a directory (links followed), else `None`.
fn dir_if_present(path: &Path) -> Option<PathBuf> {
    path.is_dir().then(|| path.to_path_buf())
}

fn require_dir(path: &Path) -> Result<(), EnvError> {
    let reason = match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) => format!("it is {}", describe(&m.file_type())),
        Err(e) => e.to_string(),
    };
    Err(EnvError::NotADirectory {
        path: path.to_path_buf(),
        reason,
    })
}

/// Opens `path` and reads from it. O_NONBLOCK keeps a FIFO planted at the path from hanging
/// the open; it is then refused as not a regular file.
fn check_readable_file(path: &Path) -> Result<(), String> {
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("it is {}", describe(&meta.file_type())));
    }
    let mut byte = [0u8; 1];
    file.read(&mut byte).map_err(|e| e.to_string())?;
    Ok(())
}

fn describe(t: &fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// The `ready` envelope the agent writes once it has started, with a fresh id and the
/// current time.
pub fn ready_envelope() -> Envelope {
    Envelope::new(
        ipc::new_id(),
        ipc::now_ms(),
        Payload::Ready {
            agent_version: crate::AGENT_VERSION.to_string(),
            protocol: PROTOCOL_VERSION,
        },
    )
}

/// Writes [`ready_envelope`] into `ipc_out`, returning the envelope and its path.
pub fn announce_ready(ipc_out: &Path) -> io::Result<(Envelope, PathBuf)> {
    let env = ready_envelope();
    let path = ipc::write_envelope(ipc_out, &env)?;
    Ok((env, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_envelope;
    use std::os::unix::fs::PermissionsExt;

    /// A complete layout under `root`: workspace/SOUL.md, ipc/in, ipc/out.
    fn full(root: &Path) -> Layout {
        let layout = Layout::under(&root.join("workspace"), &root.join("ipc"));
        fs::create_dir_all(&layout.workspace).unwrap();
        fs::write(layout.soul(), "# Soul\n").unwrap();
        fs::create_dir_all(&layout.ipc_in).unwrap();
        fs::create_dir_all(&layout.ipc_out).unwrap();
        layout
    }

    fn err(layout: &Layout) -> String {
        check_environment(layout).unwrap_err().to_string()
    }

    #[test]
    fn container_paths() {
        let l = Layout::container();
        assert_eq!(l.ipc_in, Path::new("/ipc/in"));
        assert_eq!(l.ipc_out, Path::new("/ipc/out"));
        // Only where the test runs without the chat-group mounts, as it normally does.
        if !Path::new("/persona").exists() {
            assert_eq!(l.persona, None);
            assert_eq!(l.soul(), Path::new("/workspace/SOUL.md"));
        }
        if !Path::new("/shared").exists() {
            assert_eq!(l.shared, None);
        }
    }

    #[test]
    fn only_directories_are_taken_as_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(dir_if_present(tmp.path()), Some(tmp.path().to_path_buf()));
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert_eq!(dir_if_present(&file), None);
        assert_eq!(dir_if_present(&tmp.path().join("missing")), None);
    }

    #[test]
    fn soul_comes_from_the_persona_when_there_is_one() {
        let l = Layout::under(Path::new("/w"), Path::new("/i"));
        assert_eq!((l.persona.clone(), l.shared.clone()), (None, None));
        assert_eq!(l.soul(), Path::new("/w/SOUL.md"));
        let l = l.with_shared(Path::new("/s"));
        assert_eq!(l.soul(), Path::new("/w/SOUL.md"));
        assert_eq!(l.shared.as_deref(), Some(Path::new("/s")));
        let l = l.with_persona(Path::new("/p"));
        assert_eq!(l.soul(), Path::new("/p/SOUL.md"));
        assert_eq!(l.persona.as_deref(), Some(Path::new("/p")));
    }

    #[test]
    fn a_persona_without_soul_fails_even_with_a_workspace_soul() {
        let tmp = tempfile::tempdir().unwrap();
        let persona = tmp.path().join("persona");
        fs::create_dir(&persona).unwrap();
        // The workspace's own SOUL.md does not stand in for the persona's.
        let layout = full(tmp.path()).with_persona(&persona);
        let msg = err(&layout);
        let expected = format!(
            "{} is missing or unreadable: ",
            persona.join("SOUL.md").display()
        );
        assert!(msg.starts_with(&expected), "{msg}");
        fs::write(persona.join("SOUL.md"), "# Instance\n").unwrap();
        check_environment(&layout).unwrap();
    }

    #[test]
    fn a_complete_layout_passes() {
        let tmp = tempfile::tempdir().unwrap();
        check_environment(&full(tmp.path())).unwrap();
        // An empty SOUL.md is still a readable regular file.
        let layout = full(tmp.path());
        fs::write(layout.soul(), "").unwrap();
        check_environment(&layout).unwrap();
    }

    #[test]
    fn missing_soul() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = full(tmp.path());
        fs::remove_file(layout.soul()).unwrap();
        let msg = err(&layout);
        let expected = format!("{} is missing or unreadable: ", layout.soul().display());
        assert!(msg.starts_with(&expected), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn soul_that_is_not_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = full(tmp.path());
        fs::remove_file(layout.soul()).unwrap();
        fs::create_dir(layout.soul()).unwrap();
        assert!(err(&layout).ends_with("is missing or unreadable: it is a directory"));
        fs::remove_dir(layout.soul()).unwrap();

        let path = std::ffi::CString::new(layout.soul().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        assert!(err(&layout).ends_with("is missing or unreadable: it is a FIFO"));
    }

    #[test]
    fn unreadable_soul() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = full(tmp.path());
        fs::set_permissions(layout.soul(), fs::Permissions::from_mode(0o000)).unwrap();
        // Root reads through any mode, so only check the refusal when it is really refused.
        if File::open(layout.soul()).is_err() {
            assert!(err(&layout).contains("Permission denied"));
        }
    }

    #[test]
    fn missing_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = full(tmp.path());
        fs::remove_dir(&layout.ipc_out).unwrap();
        let msg = err(&layout);
        assert!(
            msg.starts_with(&format!(
                "{} is missing or not a directory: ",
                layout.ipc_out.display()
            )),
            "{msg}"
        );
        fs::remove_dir(&layout.ipc_in).unwrap();
        fs::write(&layout.ipc_in, "").unwrap();
        assert!(
            err(&layout).ends_with("/ipc/in is missing or not a directory: it is a regular file")
        );

        let gone = Layout::under(&tmp.path().join("nope"), &tmp.path().join("ipc"));
        assert!(err(&gone).contains("nope is missing or not a directory"));
    }

    #[test]
    fn ready_is_announced() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = full(tmp.path());
        let (env, path) = announce_ready(&layout.ipc_out).unwrap();
        assert_eq!(env.id.len(), 32);
        match &env.payload {
            Payload::Ready {
                agent_version,
                protocol,
            } => {
                assert_eq!(agent_version, crate::AGENT_VERSION);
                assert_eq!(*protocol, PROTOCOL_VERSION);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(parse_envelope(&fs::read(&path).unwrap()).unwrap(), env);
        assert_eq!(fs::read_dir(&layout.ipc_out).unwrap().count(), 1);
    }
}
