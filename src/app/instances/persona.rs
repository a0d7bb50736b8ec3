//! The persona a chat group reads: the host's copy of its instance's `SOUL.md`, `AGENTS.md`
//! and `skills/*.md`, in `instances/<name>/persona/`, mounted read-only at `/persona` in every
//! group's container. The instance's workspace is where the persona is edited (by the operator,
//! or by the instance's own agent); it is agent-writable, so it is read only through
//! descriptors (never following a link, each file capped) and copied into the host's own
//! directory, which no container can write. It is refreshed before each group's container
//! starts and before each of its turns, so an edit reaches every group at its next turn.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::domain::instance::InstanceName;
use crate::infra::fsutil;
use crate::infra::home::{Home, InstancePaths};
use crate::infra::safefs::{ReadError, SafeDir};
use crate::infra::volume::{self, VolumeError};

/// The most of each persona file copied (the agent puts no more of it in its prompt).
pub const FILE_CAP: u64 = 64 * 1024;
/// The most skills copied (the agent lists no more).
pub const SKILLS_CAP: usize = 50;
/// How many names of the instance's `skills/` are looked at to find them.
const SKILLS_SCAN: usize = 1000;

/// Readable by every group's uid; writable by none.
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum PersonaError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("the instance's SOUL.md {0}: its groups keep the persona they had")]
    Soul(ReadError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The persona files as read from the instance's workspace: relative path → contents.
type Files = BTreeMap<PathBuf, Vec<u8>>;

/// Brings `persona` (the host's copy) in line with the persona in `instance`'s workspace;
/// returns whether anything changed. A missing or unreadable `SOUL.md` changes nothing: the
/// groups go on with the copy they have.
pub fn refresh(instance: &InstancePaths, persona: &Path) -> Result<bool, PersonaError> {
    let files = {
        let open = volume::open(instance)?;
        read_persona(&open.workspace()?)?
    };
    write_copy(persona, &files)
}

/// Refreshes the persona that the group `name` reads from its instance's workspace ([`refresh`]);
/// Ok(false) for an instance, which reads its own.
pub fn refresh_group(home: &Home, name: &InstanceName) -> Result<bool, PersonaError> {
    let paths = home.instance_paths(name);
    let (Some(root), Some(persona)) = (name.root(), paths.persona) else {
        return Ok(false);
    };
    // Both are mounted into the group's container, so both must be there.
    if let Some(shared) = &paths.shared {
        ensure_dir(shared).map_err(io_err("create", shared))?;
    }
    refresh(&home.instance_paths(&root), &persona)
}

/// Makes the directory `dir` (mode 0755) if it is not there: a group's read-only mount source.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .and_then(|()| fsutil::set_mode(dir, DIR_MODE))
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PersonaError {
    let path = path.to_path_buf();
    move |source| PersonaError::Io {
        action,
        path,
        source,
    }
}

/// Reads `SOUL.md` (required), `AGENTS.md` and up to [`SKILLS_CAP`] `skills/*.md` regular
/// files from the workspace, each at most [`FILE_CAP`] bytes. A link, a FIFO or an oversized
/// file is left out, never followed or read.
fn read_persona(ws: &SafeDir) -> Result<Files, PersonaError> {
    let mut files = Files::new();
    let soul = ws
        .read_file("SOUL.md", FILE_CAP)
        .map_err(PersonaError::Soul)?;
    files.insert("SOUL.md".into(), soul);
    if let Ok(manual) = ws.read_file("AGENTS.md", FILE_CAP) {
        files.insert("AGENTS.md".into(), manual);
    }
    let Ok(skills) = ws.open_dir("skills") else {
        return Ok(files);
    };
    let Ok(listing) = skills.list(SKILLS_SCAN) else {
        return Ok(files);
    };
    let mut names: Vec<_> = listing
        .names
        .into_iter()
        .filter(|n| is_skill_name(n))
        .collect();
    names.sort();
    for name in names {
        if files.len() >= SKILLS_CAP + 2 {
            break;
        }
        if let Ok(text) = skills.read_file(&name, FILE_CAP) {
            files.insert(Path::new("skills").join(&name), text);
        }
    }
    Ok(files)
}

/// `NAME.md`, with a name that is plain to show and to write (no dot first, no control).
fn is_skill_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.len() > 3
        && b.len() <= 128
        && b.ends_with(b".md")
        && b[0] != b'.'
        && b.iter().all(|c| c.is_ascii_graphic() && *c != b'/')
}

/// Writes `files` into `dir` (made if missing) where they differ, and removes the files of an
/// earlier copy that are gone from the instance's persona.
fn write_copy(dir: &Path, files: &Files) -> Result<bool, PersonaError> {
    let skills = dir.join("skills");
    ensure_dir(dir).map_err(io_err("create", dir))?;
    ensure_dir(&skills).map_err(io_err("create", &skills))?;
    let mut changed = false;
    for (rel, text) in files {
        let path = dir.join(rel);
        if fs::read(&path).is_ok_and(|old| &old == text) {
            continue;
        }
        fsutil::write_atomic_with_mode(&path, text, FILE_MODE).map_err(io_err("write", &path))?;
        changed = true;
    }
    let mut stale = Vec::new();
    if !files.contains_key(Path::new("AGENTS.md")) {
        stale.push(dir.join("AGENTS.md"));
    }
    for entry in fs::read_dir(&skills).map_err(io_err("list", &skills))? {
        let entry = entry.map_err(io_err("list", &skills))?;
        if !files.contains_key(&Path::new("skills").join(entry.file_name())) {
            stale.push(entry.path());
        }
    }
    for path in stale {
        match fs::remove_file(&path) {
            Ok(()) => changed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn workspace() -> (tempfile::TempDir, InstancePaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = InstancePaths::under(dir.path().join("alice"));
        fs::create_dir_all(paths.workspace.join("skills")).unwrap();
        fs::create_dir_all(paths.ipc.join("in")).unwrap();
        fs::create_dir_all(paths.ipc.join("out")).unwrap();
        fs::write(paths.workspace.join("SOUL.md"), "# Helper\n").unwrap();
        fs::write(paths.workspace.join("AGENTS.md"), "# Manual\n").unwrap();
        fs::write(paths.workspace.join("skills/cook.md"), "# Cooking\n").unwrap();
        (dir, paths)
    }

    #[test]
    fn the_copy_follows_the_instances_persona_and_is_readable_by_every_group() {
        let (dir, paths) = workspace();
        let persona = dir.path().join("alice/persona");
        assert!(refresh(&paths, &persona).unwrap());
        assert_eq!(
            fs::read_to_string(persona.join("SOUL.md")).unwrap(),
            "# Helper\n"
        );
        assert_eq!(
            fs::read_to_string(persona.join("skills/cook.md")).unwrap(),
            "# Cooking\n"
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&persona), 0o755);
        assert_eq!(mode(&persona.join("SOUL.md")), 0o644);
        assert!(
            !refresh(&paths, &persona).unwrap(),
            "nothing new: nothing written"
        );

        fs::write(paths.workspace.join("SOUL.md"), "# Helper, edited\n").unwrap();
        fs::remove_file(paths.workspace.join("AGENTS.md")).unwrap();
        fs::remove_file(paths.workspace.join("skills/cook.md")).unwrap();
        assert!(refresh(&paths, &persona).unwrap());
        assert_eq!(
            fs::read_to_string(persona.join("SOUL.md")).unwrap(),
            "# Helper, edited\n"
        );
        assert!(!persona.join("AGENTS.md").exists());
        assert!(!persona.join("skills/cook.md").exists());
    }

    #[test]
    fn links_fifos_and_oversized_files_are_never_followed_or_copied() {
        let (dir, paths) = workspace();
        let secret = dir.path().join("secret");
        fs::write(&secret, "host secret").unwrap();
        let persona = dir.path().join("alice/persona");
        fs::remove_file(paths.workspace.join("AGENTS.md")).unwrap();
        symlink(&secret, paths.workspace.join("AGENTS.md")).unwrap();
        symlink(&secret, paths.workspace.join("skills/leak.md")).unwrap();
        nix::unistd::mkfifo(
            &paths.workspace.join("skills/hang.md"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::write(
            paths.workspace.join("skills/big.md"),
            vec![b'x'; FILE_CAP as usize + 1],
        )
        .unwrap();
        refresh(&paths, &persona).unwrap();
        assert!(!persona.join("AGENTS.md").exists());
        let copied: Vec<_> = fs::read_dir(persona.join("skills"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(copied, ["cook.md"]);

        // SOUL.md swapped for a link: the groups keep the persona they had.
        fs::remove_file(paths.workspace.join("SOUL.md")).unwrap();
        symlink(&secret, paths.workspace.join("SOUL.md")).unwrap();
        assert!(matches!(
            refresh(&paths, &persona),
            Err(PersonaError::Soul(_))
        ));
        assert_eq!(
            fs::read_to_string(persona.join("SOUL.md")).unwrap(),
            "# Helper\n"
        );

        // The skills directory swapped for a link to the host: nothing read through it.
        fs::remove_file(paths.workspace.join("SOUL.md")).unwrap();
        fs::write(paths.workspace.join("SOUL.md"), "# Helper\n").unwrap();
        let host_dir = dir.path().join("host-skills");
        fs::create_dir(&host_dir).unwrap();
        fs::write(host_dir.join("x.md"), "host").unwrap();
        fs::rename(paths.workspace.join("skills"), dir.path().join("old")).unwrap();
        symlink(&host_dir, paths.workspace.join("skills")).unwrap();
        refresh(&paths, &persona).unwrap();
        assert!(!persona.join("skills/x.md").exists());
    }
}
