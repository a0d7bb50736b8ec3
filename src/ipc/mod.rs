//! All IPC file handling on the host side: envelopes into an instance's `in/`, envelopes out of
//! its `out/`, and the quarantine for anything in `out/` that is not a valid envelope.
//!
//! Identity is the directory: whatever appears in alice's `out/` speaks for alice only. The
//! quarantine directory is beside `ipc/`, outside every container's mounts.

pub mod watch;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use supervisor_agent::protocol::{
    is_temp_name, parse_envelope, Envelope, Payload, MAX_ENVELOPE_BYTES,
};

use crate::fsutil;
use crate::home::InstancePaths;

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
    pub fn drain_out(&self) -> io::Result<Vec<Incoming>> {
        // Keep each entry's real path: a name that is not UTF-8 must still be moved.
        let mut entries: Vec<(String, PathBuf)> = fs::read_dir(&self.out_dir)?
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(n, _)| !is_temp_name(n))
            .collect();
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

    /// Moves `path` (whatever it is; links are moved, not followed) into the quarantine
    /// directory, with a `.reason` file beside it.
    pub fn quarantine(&self, path: &Path, name: &str, reason: &str) -> io::Result<()> {
        fsutil::create_private_dir(&self.quarantine_dir)?;
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
        let target = self.quarantine_dir.join(format!(
            "{}-{}",
            crate::store::now_ms(),
            safe.trim_start_matches('.')
        ));
        match fs::rename(path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut reason_file = target.into_os_string();
        reason_file.push(".reason");
        fs::write(reason_file, format!("{reason}\n"))
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
