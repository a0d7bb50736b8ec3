//! All IPC file handling on the host side: envelopes into an instance's `in/`, envelopes out of
//! its `out/`, and the quarantine for anything in `out/` that is not a valid envelope.
//!
//! Identity is the directory: whatever appears in alice's `out/` speaks for alice only. The
//! quarantine directory is beside `ipc/`, outside every container's mounts.

pub mod watch;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use supervisor_agent::protocol::{
    is_temp_name, parse_envelope, Envelope, Payload, MAX_ENVELOPE_BYTES,
};

use crate::fsutil;
use crate::home::InstancePaths;

/// How old (by modification time) a temporary file in `in/` or `out/` must be before the host
/// removes it: by then the write that made it was interrupted (its writer killed or crashed),
/// since a write in progress takes milliseconds. Younger ones are left alone.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(10 * 60);

/// How many names [`InstanceIpc::quarantine`] tries for one entry before giving up.
const QUARANTINE_NAME_TRIES: u32 = 1000;

/// One instance's IPC directories.
#[derive(Debug, Clone)]
pub struct InstanceIpc {
    pub in_dir: PathBuf,
    pub out_dir: PathBuf,
    pub quarantine_dir: PathBuf,
    /// Owner for files the host writes into `in/` (the container user, when running as root).
    pub owner: Option<(u32, u32)>,
}

/// An entry of `out/`, checked.
#[derive(Debug)]
pub enum Incoming {
    Envelope {
        path: PathBuf,
        envelope: Envelope,
    },
    /// Moved to quarantine; `reason` says why.
    Quarantined {
        name: String,
        reason: String,
    },
}

/// The name an entry gets in the quarantine, after its `<ms>-` stamp (docs/ipc.md): every
/// character other than letters, digits, `-`, `_` and `.` becomes `_`, at most 100
/// characters, leading dots removed.
pub fn quarantine_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    safe.trim_start_matches('.').to_string()
}

impl InstanceIpc {
    pub fn new(paths: &InstancePaths, owner: Option<(u32, u32)>) -> Self {
        Self {
            in_dir: paths.ipc.join("in"),
            out_dir: paths.ipc.join("out"),
            quarantine_dir: paths.dir.join("quarantine"),
            owner,
        }
    }

    /// Writes an envelope into `in/` atomically (temp file, fsync, rename, fsync dir).
    pub fn send(&self, envelope: &Envelope) -> io::Result<PathBuf> {
        // The host is the only writer of this temp name: one left behind is from a write a
        // crash interrupted, and it must not block the retry.
        let stale = self
            .in_dir
            .join(supervisor_agent::protocol::temp_name_for(envelope));
        match fs::remove_file(&stale) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        supervisor_agent::ipc::write_envelope_owned(&self.in_dir, envelope, self.owner)
    }

    /// Whether `in/` already holds this envelope (re-delivery after a restart is idempotent).
    pub fn has_sent(&self, envelope: &Envelope) -> bool {
        self.in_dir
            .join(supervisor_agent::protocol::file_name_for(envelope))
            .exists()
    }

    /// Reads every finished entry of `out/`, oldest name first. Anything that is not a valid
    /// agent-to-host envelope is moved to quarantine, never parsed twice and never fatal.
    /// Temporary files in `out/` and `in/` older than [`STALE_TEMP_AGE`] are removed (and
    /// logged) on the way.
    pub fn drain_out(&self) -> io::Result<Vec<Incoming>> {
        // Keep each entry's real path: a name that is not UTF-8 must still be moved.
        let (temps, mut entries): (Vec<_>, Vec<_>) = fs::read_dir(&self.out_dir)?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .partition(|(n, _)| is_temp_name(n));
        let now = SystemTime::now();
        self.remove_stale_temps(temps, now);
        // The host's own interrupted writes into in/ (send() only clears a temp file of the
        // envelope it is sending again; others would stay forever).
        if let Ok(dir) = fs::read_dir(&self.in_dir) {
            let temps = dir
                .filter_map(|e| e.ok())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(n, _)| is_temp_name(n));
            self.remove_stale_temps(temps, now);
        }
        entries.sort();
        let mut out = Vec::with_capacity(entries.len());
        for (name, path) in entries {
            match check(&path) {
                Ok(envelope) => out.push(Incoming::Envelope { path, envelope }),
                Err(reason) => {
                    self.quarantine(&path, &name, &reason)?;
                    out.push(Incoming::Quarantined { name, reason });
                }
            }
        }
        Ok(out)
    }

    /// Removes those of `temps` (temporary names in `in/` or `out/`) whose modification time
    /// is at least [`STALE_TEMP_AGE`] before `now`, and logs each one removed. Directories
    /// are left alone; so is anything younger, which may be a write in progress. Returns the
    /// paths removed.
    pub fn remove_stale_temps(
        &self,
        temps: impl IntoIterator<Item = (String, PathBuf)>,
        now: SystemTime,
    ) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for (name, path) in temps {
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if meta.is_dir() || age < STALE_TEMP_AGE {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(
                        instance = %self.instance(),
                        file = %path.display(),
                        age_secs = age.as_secs(),
                        "removed a temporary IPC file left by an interrupted write"
                    );
                    removed.push(path);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    instance = %self.instance(),
                    file = %name,
                    error = %e,
                    "cannot remove a stale temporary IPC file"
                ),
            }
        }
        removed
    }

    /// The instance's name, for logs: the directory holding `quarantine/`.
    fn instance(&self) -> String {
        self.quarantine_dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Moves `path` (whatever it is; links are moved, not followed) into the quarantine
    /// directory, with a `.reason` file beside it. Nothing already in the quarantine is ever
    /// replaced: when `<now ms>-<name>` (or its `.reason`) is taken, `<now ms>.<n>-<name>`
    /// is tried, for n = 2, 3, ...
    pub fn quarantine(&self, path: &Path, name: &str, reason: &str) -> io::Result<()> {
        self.quarantine_at(path, name, reason, crate::store::now_ms())
    }

    fn quarantine_at(&self, path: &Path, name: &str, reason: &str, now_ms: i64) -> io::Result<()> {
        fsutil::create_private_dir(&self.quarantine_dir)?;
        let safe = quarantine_name(name);
        let safe = safe.as_str();
        for n in 1..=QUARANTINE_NAME_TRIES {
            let stamp = if n == 1 {
                now_ms.to_string()
            } else {
                format!("{now_ms}.{n}")
            };
            let target = self.quarantine_dir.join(format!("{stamp}-{safe}"));
            let reason_file = self.quarantine_dir.join(format!("{stamp}-{safe}.reason"));
            // Claim the .reason name first (created exclusively), then move the entry beside
            // it without replacing anything: a name taken by either moves on to the next one.
            let mut reason_out = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&reason_file)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            if let Err(e) = rename_no_replace(path, &target) {
                let _ = fs::remove_file(&reason_file);
                match e.kind() {
                    io::ErrorKind::AlreadyExists => continue,
                    // Gone already (deleted by its writer): nothing to set aside.
                    io::ErrorKind::NotFound => return Ok(()),
                    _ => return Err(e),
                }
            }
            return io::Write::write_all(&mut reason_out, format!("{reason}\n").as_bytes());
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "no free name for {safe:?} in {} after {QUARANTINE_NAME_TRIES} tries",
                self.quarantine_dir.display()
            ),
        ))
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing anything at
/// `to` (`renameat2(RENAME_NOREPLACE)`). On a file system without it, `to` is checked first:
/// only the daemon writes into the quarantine, so nothing can appear there in between.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL | Errno::ENOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match fs::symlink_metadata(to) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(from, to),
        Err(e) => Err(e),
    }
}

/// Why an `out/` entry is refused, or the envelope it holds.
fn check(path: &Path) -> Result<Envelope, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.file_type().is_file() {
        let kind = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(format!("{kind}: only regular files are read"));
    }
    if meta.len() > MAX_ENVELOPE_BYTES as u64 {
        return Err(format!(
            "{} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit",
            meta.len()
        ));
    }
    // O_NOFOLLOW: the entry could have been swapped for a link since the stat.
    let bytes = {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("cannot open: {e}"))?;
        let mut buf = Vec::new();
        f.by_ref()
            .take(MAX_ENVELOPE_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read: {e}"))?;
        buf
    };
    let envelope = parse_envelope(&bytes).map_err(|e| e.to_string())?;
    if !from_agent(&envelope.payload) {
        return Err(format!(
            "type {:?} is not sent by an agent",
            envelope.payload.type_name()
        ));
    }
    Ok(envelope)
}

/// The payloads an agent may write into `out/`.
pub fn from_agent(p: &Payload) -> bool {
    matches!(
        p,
        Payload::Ready { .. }
            | Payload::Reply { .. }
            | Payload::Message { .. }
            | Payload::TurnFailed { .. }
            | Payload::ModelRequest { .. }
            | Payload::TaskRequest { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ipc() -> (tempfile::TempDir, InstanceIpc) {
        let dir = tempfile::tempdir().unwrap();
        let paths = InstancePaths::under(dir.path().join("alice"));
        fs::create_dir_all(paths.ipc.join("in")).unwrap();
        fs::create_dir_all(paths.ipc.join("out")).unwrap();
        let ipc = InstanceIpc::new(&paths, None);
        (dir, ipc)
    }

    fn reply(id: &str) -> Envelope {
        Envelope::new(
            id,
            1,
            Payload::Reply {
                turn_id: "t1".into(),
                reply_to: vec![],
                body: "hi".into(),
            },
        )
    }

    #[test]
    fn valid_envelopes_are_read_in_order_and_bad_entries_quarantined() {
        let (_d, ipc) = ipc();
        supervisor_agent::ipc::write_envelope(&ipc.out_dir, &reply("b")).unwrap();
        supervisor_agent::ipc::write_envelope(&ipc.out_dir, &reply("a")).unwrap();
        let bad: &[(&str, &[u8])] = &[
            ("1-json.json", b"{not json"),
            ("2-utf8.json", &[0xff, 0xfe, 0x00]),
            ("3-version.json", br#"{"v":9,"id":"x","ts":1,"type":"reply","turn_id":"t","body":""}"#),
            ("4-type.json", br#"{"v":1,"id":"x","ts":1,"type":"launch_missiles"}"#),
            ("5-id.json", br#"{"v":1,"id":"../../etc","ts":1,"type":"ready","agent_version":"1","protocol":1}"#),
            ("6-direction.json", br#"{"v":1,"id":"x","ts":1,"type":"shutdown"}"#),
        ];
        for (name, bytes) in bad {
            fs::write(ipc.out_dir.join(name), bytes).unwrap();
        }
        fs::write(
            ipc.out_dir.join("7-huge.json"),
            vec![b' '; MAX_ENVELOPE_BYTES + 1],
        )
        .unwrap();
        symlink("/etc/passwd", ipc.out_dir.join("8-link.json")).unwrap();
        fs::create_dir(ipc.out_dir.join("9-dir.json")).unwrap();
        {
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::OsStr::from_bytes(b"9-\xff\xfe.json");
            fs::write(ipc.out_dir.join(name), b"{").unwrap();
        }
        nix::unistd::mkfifo(
            &ipc.out_dir.join("9-fifo.json"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        fs::write(ipc.out_dir.join(".half-written.json.tmp"), b"{").unwrap();

        let got = ipc.drain_out().unwrap();
        let valid: Vec<String> = got
            .iter()
            .filter_map(|i| match i {
                Incoming::Envelope { envelope, .. } => Some(envelope.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(valid, ["a", "b"], "sorted by file name (ts-id)");
        let quarantined = got
            .iter()
            .filter(|i| matches!(i, Incoming::Quarantined { .. }))
            .count();
        assert_eq!(quarantined, 11);
        let reasons: Vec<String> = got
            .iter()
            .filter_map(|i| match i {
                Incoming::Quarantined { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        for needle in [
            "symbolic link",
            "directory",
            "not a regular file",
            "over the",
            "not sent by an agent",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(needle)),
                "no reason mentions {needle}: {reasons:?}"
            );
        }
        // Only the two valid envelopes and the temp file remain in out/.
        let left = fs::read_dir(&ipc.out_dir).unwrap().count();
        assert_eq!(left, 3);
        let q = fs::read_dir(&ipc.quarantine_dir).unwrap().count();
        assert_eq!(q, 22, "each entry with its .reason file");
        assert!(
            fs::read_to_string("/etc/passwd").unwrap().contains("root"),
            "the link target is untouched"
        );
    }

    #[test]
    fn quarantining_the_same_name_twice_in_one_millisecond_keeps_both() {
        let (_d, ipc) = ipc();
        let name = "1-same.json";
        // One bad file, then another of the same name: set aside in the same millisecond,
        // and once more a millisecond later through the public entry point.
        fs::write(ipc.out_dir.join(name), b"first").unwrap();
        ipc.quarantine_at(&ipc.out_dir.join(name), name, "reason one", 7)
            .unwrap();
        fs::write(ipc.out_dir.join(name), b"second").unwrap();
        ipc.quarantine_at(&ipc.out_dir.join(name), name, "reason two", 7)
            .unwrap();
        // A bad file whose name is another's .reason file cannot replace that either.
        fs::write(ipc.out_dir.join("1-same.json.reason"), b"third").unwrap();
        ipc.quarantine_at(
            &ipc.out_dir.join("1-same.json.reason"),
            "1-same.json.reason",
            "reason three",
            7,
        )
        .unwrap();
        fs::write(ipc.out_dir.join(name), b"fourth").unwrap();
        ipc.quarantine(&ipc.out_dir.join(name), name, "reason four")
            .unwrap();

        let q = &ipc.quarantine_dir;
        let read = |n: &str| fs::read_to_string(q.join(n)).unwrap();
        assert_eq!(read("7-1-same.json"), "first");
        assert_eq!(read("7-1-same.json.reason"), "reason one\n");
        assert_eq!(read("7.2-1-same.json"), "second");
        assert_eq!(read("7.2-1-same.json.reason"), "reason two\n");
        assert_eq!(read("7.3-1-same.json.reason"), "third");
        assert_eq!(read("7.3-1-same.json.reason.reason"), "reason three\n");
        let mut contents: Vec<String> = fs::read_dir(q)
            .unwrap()
            .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        contents.sort();
        assert_eq!(
            contents,
            [
                "first",
                "fourth",
                "reason four\n",
                "reason one\n",
                "reason three\n",
                "reason two\n",
                "second",
                "third"
            ],
            "every file and every reason kept, none overwritten"
        );
        assert_eq!(fs::read_dir(&ipc.out_dir).unwrap().count(), 0);
    }

    #[test]
    fn quarantining_an_entry_that_is_gone_is_not_an_error_and_leaves_no_reason() {
        let (_d, ipc) = ipc();
        ipc.quarantine(&ipc.out_dir.join("gone.json"), "gone.json", "whatever")
            .unwrap();
        assert_eq!(fs::read_dir(&ipc.quarantine_dir).unwrap().count(), 0);
    }

    #[test]
    fn stale_temporary_files_are_removed_and_fresh_ones_and_envelopes_kept() {
        let (_d, ipc) = ipc();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let age = |path: &Path, when: SystemTime| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        // out/: an agent killed mid-write an hour ago, and a write in progress now.
        let old_out = ipc.out_dir.join(".1-old.json.tmp");
        let fresh_out = ipc.out_dir.join(".2-fresh.json.tmp");
        fs::write(&old_out, b"{").unwrap();
        fs::write(&fresh_out, b"{").unwrap();
        age(&old_out, hour_ago);
        // Just under the limit is still fresh.
        let almost = ipc.out_dir.join(".3-almost.json.tmp");
        fs::write(&almost, b"{").unwrap();
        age(
            &almost,
            SystemTime::now() - STALE_TEMP_AGE + Duration::from_secs(60),
        );
        // An old envelope and an old temp-named directory are not temporary files to clear.
        let envelope = supervisor_agent::ipc::write_envelope(&ipc.out_dir, &reply("e1")).unwrap();
        age(&envelope, hour_ago);
        let dir = ipc.out_dir.join(".4-dir.json.tmp");
        fs::create_dir(&dir).unwrap();
        // in/: the host's own interrupted write, and a fresh one.
        let old_in = ipc.in_dir.join(".5-old.json.tmp");
        let fresh_in = ipc.in_dir.join(".6-fresh.json.tmp");
        fs::write(&old_in, b"{").unwrap();
        fs::write(&fresh_in, b"{").unwrap();
        age(&old_in, hour_ago);
        let queued = ipc.in_dir.join("7-queued.json");
        fs::write(&queued, b"{}").unwrap();
        age(&queued, hour_ago);

        let got = ipc.drain_out().unwrap();
        assert!(
            matches!(&got[..], [Incoming::Envelope { envelope, .. }] if envelope.id == "e1"),
            "{got:?}"
        );
        assert!(!old_out.exists() && !old_in.exists(), "stale temps removed");
        for kept in [&fresh_out, &almost, &envelope, &dir, &fresh_in, &queued] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(
            !ipc.quarantine_dir.exists(),
            "nothing quarantined: temp names are never read"
        );

        // Called directly, it reports what it removed.
        fs::write(&old_out, b"{").unwrap();
        age(&old_out, hour_ago);
        let removed = ipc.remove_stale_temps(
            [
                (".1-old.json.tmp".to_string(), old_out.clone()),
                (".2-fresh.json.tmp".to_string(), fresh_out.clone()),
            ],
            SystemTime::now(),
        );
        assert_eq!(removed, [old_out]);
        assert!(fresh_out.exists());
    }

    #[test]
    fn send_is_atomic_idempotent_to_check_and_survives_a_crashed_write() {
        let (_d, ipc) = ipc();
        let env = reply("x1");
        // A write that a crash interrupted left its temp file behind.
        fs::write(
            ipc.in_dir
                .join(supervisor_agent::protocol::temp_name_for(&env)),
            b"{",
        )
        .unwrap();
        assert!(!ipc.has_sent(&env));
        ipc.send(&env).unwrap();
        assert!(ipc.has_sent(&env));
        assert_eq!(
            fs::read_dir(&ipc.in_dir).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
