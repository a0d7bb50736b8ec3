//! The agent's side of the IPC directories: writing envelope files so that the host, which
//! skips temporary names, only ever sees complete ones.

use crate::protocol::{file_name_for, temp_name_for, Envelope};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `env` into `dir` atomically, returning the final path.
///
/// The bytes go to a new file named by [`temp_name_for`] (created exclusively, mode 0644),
/// which is then renamed to [`file_name_for`]. On failure the temporary file is removed and
/// the error names the step and path. An envelope that [`Envelope::to_json_bytes`] refuses is
/// `InvalidInput`.
///
/// Nothing is fsynced, on purpose. An envelope file only has to outlive the processes, not
/// the machine: what a killed agent, daemon or container wrote stays in the page cache, where
/// the other side reads it. Only a crash of the kernel (or a power loss) can lose a file
/// written here, or leave it empty, and then the host's store decides what happens: it keeps
/// a turn open until the host has recorded the turn's answer, and a daemon starting again
/// writes an open turn's file into `in/` again when it is not there (same name). A reply
/// lost that way means the turn is done again; one left empty or cut short does not parse
/// and is set aside, never taken as an answer; one that survived a recorded answer is
/// recorded once. The store itself commits with `synchronous=NORMAL`, so after a power loss
/// it may have forgotten its last commits as well: an fsync here would not make the pair any
/// more durable, and it cost several milliseconds per file on an instance's loop-mounted
/// volume (two fsyncs for each of the four files of an echo turn).
pub fn write_envelope(dir: &Path, env: &Envelope) -> io::Result<PathBuf> {
    write_envelope_owned(dir, env, None)
}

/// [`write_envelope`], giving the file to `owner` (uid, gid) before it appears under its final
/// name, so the reader can open it the moment it sees it (the host writing for the agent).
pub fn write_envelope_owned(
    dir: &Path,
    env: &Envelope,
    owner: Option<(u32, u32)>,
) -> io::Result<PathBuf> {
    let bytes = env.to_json_bytes().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot encode envelope: {e}"),
        )
    })?;
    let tmp = dir.join(temp_name_for(env));
    let path = dir.join(file_name_for(env));

    // create_new (O_EXCL) also refuses to follow a symlink planted at the temporary name.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| context(e, "cannot create", &tmp))?;
    let owned = match owner {
        Some((uid, gid)) => std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| context(e, "cannot chown", &tmp)),
        None => Ok(()),
    };
    let written = owned.and_then(|()| {
        file.write_all(&bytes)
            .map_err(|e| context(e, "cannot write", &tmp))
    });
    drop(file);
    let renamed = written.and_then(|()| {
        fs::rename(&tmp, &path).map_err(|e| {
            let what = format!("cannot rename {} to {}: {e}", tmp.display(), path.display());
            io::Error::new(e.kind(), what)
        })
    });
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(path)
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A fresh envelope id: 32 lowercase hex digits, from `/dev/urandom` when it can be read and
/// otherwise from the clock, the process id and a counter.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_be_bytes());
        bytes[12..].copy_from_slice(&(n as u32).to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time in Unix milliseconds, as envelopes carry it (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{is_temp_name, is_valid_id, parse_envelope, Payload, PROTOCOL_VERSION};
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn ready(id: &str) -> Envelope {
        Envelope::new(
            id,
            1_700_000_000_000,
            Payload::Ready {
                agent_version: crate::AGENT_VERSION.into(),
                protocol: PROTOCOL_VERSION,
            },
        )
    }

    #[test]
    fn writes_under_the_final_name_and_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let env = ready("r-1");
        let path = write_envelope(dir.path(), &env).unwrap();
        assert_eq!(path, dir.path().join("1700000000000-r-1.json"));
        assert_eq!(names(dir.path()), vec!["1700000000000-r-1.json"]);
        assert!(!names(dir.path()).iter().any(|n| is_temp_name(n)));
        assert_eq!(parse_envelope(&fs::read(&path).unwrap()).unwrap(), env);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);

        let second = Envelope::new("r-2", 1_700_000_000_001, Payload::Shutdown {});
        write_envelope(dir.path(), &second).unwrap();
        assert_eq!(
            names(dir.path()),
            vec!["1700000000000-r-1.json", "1700000000001-r-2.json"]
        );
    }

    #[test]
    fn refused_envelope_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_envelope(dir.path(), &ready("bad.id")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn existing_temp_name_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let env = ready("r-1");
        let stale = dir.path().join(temp_name_for(&env));
        fs::write(&stale, b"stale").unwrap();
        let err = write_envelope(dir.path(), &env).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(err.to_string().contains(&*stale.to_string_lossy()), "{err}");
        // Someone else's file is left alone, and no final file appears.
        assert_eq!(fs::read(&stale).unwrap(), b"stale");
        assert_eq!(names(dir.path()), vec![temp_name_for(&env)]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_envelope(&dir.path().join("nope"), &ready("r-1")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn ids_are_valid_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(is_valid_id(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn now_is_after_2023() {
        assert!(now_ms() > 1_700_000_000_000);
    }
}
