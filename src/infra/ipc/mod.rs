//! All IPC file handling on the host side: envelopes into an instance's `in/`, envelopes out of
//! its `out/`, and the quarantine for anything in `out/` that is not a valid envelope.
//!
//! Identity is the directory: whatever appears in alice's `out/` speaks for alice only. Both
//! queues are opened once, through the instance's volume, as directory descriptors
//! ([`SafeDir`]); every file is then named relative to them, never followed if it is a link,
//! read only if it is a regular file, and never more than the envelope limit. Each queue is a
//! mount of its own in the container, so the agent cannot replace either; the host still
//! checks, each round, that the queue's path leads to the directory it holds
//! ([`InstanceIpc::still_in_place`]).
//!
//! The quarantine (`instances/<name>/quarantine/`, outside every container) keeps a *copy* of
//! what it sets aside, so a hard link or an open descriptor the agent kept cannot change it,
//! and it is capped: [`QUARANTINE_MAX_ITEMS`] items and [`QUARANTINE_MAX_BYTES`] bytes, the
//! oldest dropped first, and at most [`QUARANTINE_COPIES_PER_ROUND`] copies per round (the rest
//! of a flood is removed and only counted).

pub mod watch;

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use supervisor_agent::protocol::{
    file_name_for, is_temp_name, parse_envelope, temp_name_for, Envelope, Payload,
    MAX_ENVELOPE_BYTES,
};

use crate::infra::home::InstancePaths;
use crate::infra::safefs::{Kind, ReadError, SafeDir, TreeLimits};
use crate::infra::volume::{OpenVolume, Queue, VolumeError};

/// How old (by modification time) a temporary file in `in/` or `out/` must be before the host
/// removes it: by then the write that made it was interrupted (its writer killed or crashed),
/// since a write in progress takes milliseconds. Younger ones are left alone.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(10 * 60);

/// How many names [`InstanceIpc::quarantine`] tries for one entry before giving up.
const QUARANTINE_NAME_TRIES: u32 = 1000;

/// Most items (an entry with its `.reason`) the quarantine keeps.
pub const QUARANTINE_MAX_ITEMS: usize = 1000;
/// Most bytes the quarantine keeps.
pub const QUARANTINE_MAX_BYTES: u64 = 64 << 20;
/// Most entries copied into the quarantine in one round; the rest are removed and counted.
pub const QUARANTINE_COPIES_PER_ROUND: usize = 100;

/// Most entries of `out/` looked at in one round (the next round takes the rest).
pub const MAX_ENTRIES_PER_ROUND: usize = 1000;
/// Most names read from a queue in one round.
const MAX_LISTED: usize = 10_000;

/// Modes of what the host writes: turn files readable by the agent (which owns them).
const ENVELOPE_MODE: u32 = 0o600;
const PRIVATE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// One instance's IPC queues and quarantine, opened.
#[derive(Debug)]
pub struct InstanceIpc {
    instance: String,
    in_dir: SafeDir,
    out_dir: SafeDir,
    quarantine_dir: SafeDir,
    /// What `in/` and `out/` were when opened (device, inode).
    identity: [(u64, u64); 2],
    /// Owner for files the host writes into `in/` (the instance's uid, when running as root).
    owner: Option<(u32, u32)>,
    /// Items copied into the quarantine this round.
    copies_this_round: usize,
}

/// An entry of `out/`, checked.
#[derive(Debug)]
pub enum Incoming {
    Envelope {
        name: OsString,
        envelope: Envelope,
    },
    /// Set aside (or, past the round's budget, removed); `reason` says why.
    Quarantined {
        name: String,
        reason: String,
        kept: bool,
    },
}

/// What one round of reading `out/` found.
#[derive(Debug, Default)]
pub struct Drained {
    /// Valid envelopes and refused entries, oldest name first.
    pub items: Vec<Incoming>,
    /// `out/` held more than one round takes: read it again soon.
    pub more: bool,
    /// Old quarantined items dropped to stay within the caps.
    pub dropped: usize,
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

fn io_err(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> IpcError {
    move |source| IpcError::Io {
        action,
        path,
        source,
    }
}

impl InstanceIpc {
    /// Opens the queues of `volume` (each must be the real directory the supervisor made)
    /// and the instance's quarantine.
    pub fn open(
        instance: &str,
        paths: &InstancePaths,
        volume: &OpenVolume,
        owner: Option<(u32, u32)>,
    ) -> Result<Self, IpcError> {
        let in_dir = volume.queue(Queue::In)?;
        let out_dir = volume.queue(Queue::Out)?;
        let identity = |d: &SafeDir| {
            d.stat_self()
                .map(|s| s.identity())
                .map_err(io_err("inspect", d.shown().to_path_buf()))
        };
        let identity = [identity(&in_dir)?, identity(&out_dir)?];
        crate::infra::fsutil::create_private_dir(&paths.quarantine)
            .map_err(io_err("create", paths.quarantine.clone()))?;
        let quarantine_dir =
            SafeDir::open(&paths.quarantine).map_err(io_err("open", paths.quarantine.clone()))?;
        Ok(Self {
            instance: instance.to_string(),
            in_dir,
            out_dir,
            quarantine_dir,
            identity,
            owner,
            copies_this_round: 0,
        })
    }

    /// What `in/` and `out/` are (device, inode), as opened.
    pub fn identity(&self) -> [(u64, u64); 2] {
        self.identity
    }

    /// Whether the queues' paths in `volume` still lead to the directories held (a remount
    /// or a conversion of the volume means the queues must be opened again).
    pub fn still_in_place(&self, volume: &OpenVolume) -> Result<bool, IpcError> {
        for (queue, held) in [
            (Queue::In, self.identity[0]),
            (Queue::Out, self.identity[1]),
        ] {
            let now = volume.queue(queue)?;
            let id = now
                .stat_self()
                .map_err(io_err("inspect", now.shown().to_path_buf()))?
                .identity();
            if id != held {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes an envelope into `in/` atomically: a temporary file created exclusively (never
    /// through a link), given to the agent's user, written, then renamed to its final name.
    /// An envelope too large to encode is `InvalidInput`.
    ///
    /// Neither the file nor the directory is fsynced: the store, not `in/`, is what must
    /// survive a crash. A turn stays open in the store until its answer is recorded, and a
    /// daemon starting again writes an open turn's file again when `in/` does not have it
    /// (same name, [`InstanceIpc::has_sent`]); a model, task or web response lost with the
    /// machine belongs to an agent run that was lost with it, and the turn is done again.
    /// A process that dies (the daemon, the agent, the container) loses nothing written here,
    /// since the page cache keeps it; only a kernel crash or a power loss can, and then the
    /// store (`synchronous=NORMAL`) may also have lost its last commits, so an fsync would
    /// not make the two agree any better. It cost several milliseconds per file on the
    /// instance's loop-mounted volume, on every exchange of every turn.
    pub fn send(&self, envelope: &Envelope) -> io::Result<()> {
        let bytes = envelope.to_json_bytes().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot encode envelope: {e}"),
            )
        })?;
        let tmp = temp_name_for(envelope);
        let name = file_name_for(envelope);
        // The host is the only writer of this temp name: one left behind is from a write a
        // crash interrupted (or something the agent put there), and it must not block the retry.
        match self.in_dir.remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                if self.in_dir.stat(&tmp)?.is_some_and(|s| s.kind == Kind::Dir) {
                    self.in_dir.remove_tree(&tmp, TreeLimits::default())?;
                } else {
                    return Err(e);
                }
            }
            _ => {}
        }
        let written = (|| {
            let mut file = self.in_dir.create_new(&tmp, ENVELOPE_MODE)?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
            file.write_all(&bytes)?;
            self.in_dir.rename_to(&tmp, &self.in_dir, &name, true)
        })();
        if let Err(e) = written {
            let _ = self.in_dir.remove_file(&tmp);
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot write {}: {e}",
                    self.in_dir.shown_child(&name).display()
                ),
            ));
        }
        Ok(())
    }

    /// Whether `in/` already holds this envelope (re-delivery after a restart is idempotent):
    /// a regular file under its name, as long as its encoding. Since [`InstanceIpc::send`]
    /// does not fsync, a kernel crash can leave the name with fewer bytes (none, often):
    /// such a file is not the envelope, and is written again.
    pub fn has_sent(&self, envelope: &Envelope) -> io::Result<bool> {
        let Ok(bytes) = envelope.to_json_bytes() else {
            return Ok(false);
        };
        Ok(self
            .in_dir
            .stat(file_name_for(envelope))?
            .is_some_and(|s| s.kind == Kind::File && s.size == bytes.len() as u64))
    }

    /// Removes a file the host wrote into `in/` (a parked turn); gone already is fine.
    pub fn withdraw(&self, name: &str) -> io::Result<()> {
        match self.in_dir.remove_file(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes an envelope of `out/` once it has been handled.
    pub fn consumed(&self, name: &OsStr) -> io::Result<()> {
        match self.out_dir.remove_file(name) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads up to [`MAX_ENTRIES_PER_ROUND`] finished entries of `out/`, oldest name first.
    /// Anything that is not a valid agent-to-host envelope is set aside, never parsed twice
    /// and never fatal. Temporary files in `out/` and `in/` older than [`STALE_TEMP_AGE`] are
    /// removed (and logged) on the way.
    pub fn drain_out(&mut self) -> io::Result<Drained> {
        self.copies_this_round = 0;
        let listing = self.out_dir.list(MAX_LISTED)?;
        let (temps, mut names): (Vec<_>, Vec<_>) = listing
            .names
            .into_iter()
            .partition(|n| is_temp_name(&n.to_string_lossy()));
        let now = SystemTime::now();
        remove_stale_temps(&self.instance, &self.out_dir, temps, now);
        // The host's own interrupted writes into in/ (send() only clears a temp file of the
        // envelope it is sending again; others would stay forever).
        if let Ok(listing) = self.in_dir.list(MAX_LISTED) {
            let temps = listing
                .names
                .into_iter()
                .filter(|n| is_temp_name(&n.to_string_lossy()));
            remove_stale_temps(&self.instance, &self.in_dir, temps, now);
        }
        names.sort();
        let mut drained = Drained {
            more: listing.truncated || names.len() > MAX_ENTRIES_PER_ROUND,
            ..Drained::default()
        };
        names.truncate(MAX_ENTRIES_PER_ROUND);
        for name in names {
            match check(&self.out_dir, &name) {
                Ok(envelope) => drained.items.push(Incoming::Envelope { name, envelope }),
                Err(Refusal::Gone) => {}
                Err(Refusal::Reason(reason)) => {
                    let shown = name.to_string_lossy().into_owned();
                    let kept = self.quarantine(&name, &reason)?;
                    drained.items.push(Incoming::Quarantined {
                        name: shown,
                        reason,
                        kept,
                    });
                }
            }
        }
        if drained
            .items
            .iter()
            .any(|i| matches!(i, Incoming::Quarantined { kept: true, .. }))
        {
            drained.dropped = self.prune_quarantine()?;
        }
        Ok(drained)
    }

    /// Sets the entry `name` of `out/` aside: a copy of a regular file (at most the envelope
    /// limit of it) with a `.reason` file beside it, or only the `.reason` for anything else;
    /// then the entry leaves `out/`. Past this round's budget of copies the entry is removed
    /// and only counted. Returns whether something was kept.
    pub fn quarantine(&mut self, name: &OsStr, reason: &str) -> io::Result<bool> {
        let Some(stat) = self.out_dir.stat(name)? else {
            // Gone already (deleted by its writer): nothing to set aside.
            return Ok(false);
        };
        let keep = self.copies_this_round < QUARANTINE_COPIES_PER_ROUND;
        if keep {
            self.copies_this_round += 1;
            self.keep_copy(name, stat.kind, reason, crate::infra::store::now_ms())?;
        }
        match stat.kind {
            Kind::Dir => {
                self.out_dir.remove_tree(name, TreeLimits::default())?;
            }
            _ => match self.out_dir.remove_file(name) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
        Ok(keep)
    }

    /// Writes the quarantine's copy of `name` (when it is a regular file) and its `.reason`,
    /// under `<now ms>-<safe name>` or, when taken, `<now ms>.<n>-<safe name>`.
    fn keep_copy(&self, name: &OsStr, kind: Kind, reason: &str, now_ms: i64) -> io::Result<()> {
        let safe = quarantine_name(&name.to_string_lossy());
        for n in 1..=QUARANTINE_NAME_TRIES {
            let stamp = if n == 1 {
                now_ms.to_string()
            } else {
                format!("{now_ms}.{n}")
            };
            let target = format!("{stamp}-{safe}");
            let reason_name = format!("{target}.reason");
            // Claim the .reason name first (created exclusively): a name taken by either file
            // moves on to the next stamp.
            let mut reason_out = match self.quarantine_dir.create_new(&reason_name, PRIVATE_MODE) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let mut text = reason.to_string();
            if kind == Kind::Symlink {
                if let Ok(target) = self.out_dir.read_link(name) {
                    text.push_str(&format!(" (it pointed to {:?})", target));
                }
            }
            if kind == Kind::File {
                match self.out_dir.copy_file_to(
                    name,
                    &self.quarantine_dir,
                    &target,
                    PRIVATE_MODE,
                    MAX_ENVELOPE_BYTES as u64,
                ) {
                    Ok((_, true)) => text.push_str(&format!(
                        " (the copy keeps its first {MAX_ENVELOPE_BYTES} bytes)"
                    )),
                    Ok((_, false)) => {}
                    Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let _ = self.quarantine_dir.remove_file(&reason_name);
                        continue;
                    }
                    // Swapped or gone since it was checked: only the reason is kept.
                    Err(ReadError::Missing | ReadError::NotRegular(_)) => {
                        text.push_str(" (it changed before a copy was made)")
                    }
                    Err(ReadError::TooLarge { .. }) => {}
                    Err(ReadError::Io(e)) => {
                        let _ = self.quarantine_dir.remove_file(&reason_name);
                        return Err(e);
                    }
                }
            }
            reason_out.write_all(format!("{text}\n").as_bytes())?;
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "no free name for {safe:?} in {} after {QUARANTINE_NAME_TRIES} tries",
                self.quarantine_dir.shown().display()
            ),
        ))
    }

    /// Drops the oldest quarantined items until at most [`QUARANTINE_MAX_ITEMS`] items and
    /// [`QUARANTINE_MAX_BYTES`] bytes are left; returns how many were dropped.
    fn prune_quarantine(&self) -> io::Result<usize> {
        let listing = self.quarantine_dir.list(MAX_LISTED)?;
        let mut items: std::collections::BTreeMap<(i64, u32, String), Vec<(OsString, u64)>> =
            Default::default();
        for name in listing.names {
            let Some(key) = stamp_of(&name) else { continue };
            let size = self.quarantine_dir.stat(&name)?.map_or(0, |s| s.size);
            items.entry(key).or_default().push((name, size));
        }
        let mut count = items.len();
        let mut bytes: u64 = items.values().flatten().map(|(_, s)| s).sum();
        let mut dropped = 0;
        while count > QUARANTINE_MAX_ITEMS || bytes > QUARANTINE_MAX_BYTES {
            let Some((_, files)) = items.pop_first() else {
                break;
            };
            for (name, size) in files {
                match self.quarantine_dir.remove_file(&name) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => bytes = bytes.saturating_sub(size),
                }
            }
            count -= 1;
            dropped += 1;
        }
        Ok(dropped)
    }
}

/// The item a quarantine file belongs to (its entry and `.reason` share it), keyed oldest
/// first: the `<ms>` or `<ms>.<n>` stamp it starts with, then the entry's name.
fn stamp_of(name: &OsStr) -> Option<(i64, u32, String)> {
    let s = name.to_str()?;
    let (stamp, rest) = s.split_once('-')?;
    let (ms, n) = match stamp.split_once('.') {
        Some((ms, n)) => (ms, n.parse().ok()?),
        None => (stamp, 1),
    };
    let entry = rest.strip_suffix(".reason").unwrap_or(rest);
    Some((ms.parse().ok()?, n, entry.to_string()))
}

/// Removes those of `temps` (temporary names in `dir`) whose modification time is at least
/// [`STALE_TEMP_AGE`] before `now`, and logs each one removed. Directories are left alone; so
/// is anything younger, which may be a write in progress. Returns the names removed.
pub fn remove_stale_temps(
    instance: &str,
    dir: &SafeDir,
    temps: impl IntoIterator<Item = OsString>,
    now: SystemTime,
) -> Vec<OsString> {
    let mut removed = Vec::new();
    for name in temps {
        let Ok(Some(stat)) = dir.stat(&name) else {
            continue;
        };
        let age = now.duration_since(stat.mtime).unwrap_or_default();
        if stat.kind == Kind::Dir || age < STALE_TEMP_AGE {
            continue;
        }
        match dir.remove_file(&name) {
            Ok(()) => {
                tracing::info!(
                    instance,
                    file = %dir.shown_child(&name).display(),
                    age_secs = age.as_secs(),
                    "removed a temporary IPC file left by an interrupted write"
                );
                removed.push(name);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                instance,
                file = %name.to_string_lossy(),
                error = %e,
                "cannot remove a stale temporary IPC file"
            ),
        }
    }
    removed
}

/// Why an `out/` entry is not read.
enum Refusal {
    /// It went away before it could be read.
    Gone,
    Reason(String),
}

/// The envelope an `out/` entry holds, or why it is refused.
fn check(dir: &SafeDir, name: &OsStr) -> Result<Envelope, Refusal> {
    if std::str::from_utf8(name.as_bytes()).is_err() {
        return Err(Refusal::Reason("the name is not UTF-8".into()));
    }
    let bytes = match dir.read_file(name, MAX_ENVELOPE_BYTES as u64) {
        Ok(b) => b,
        Err(ReadError::Missing) => return Err(Refusal::Gone),
        Err(ReadError::NotRegular(kind)) => {
            return Err(Refusal::Reason(format!(
                "{}: only regular files are read",
                kind.described()
            )))
        }
        Err(ReadError::TooLarge { size, limit }) => {
            return Err(Refusal::Reason(format!(
                "{size} bytes, over the {limit}-byte limit"
            )))
        }
        Err(ReadError::Io(e)) => return Err(Refusal::Reason(format!("cannot read: {e}"))),
    };
    let envelope = parse_envelope(&bytes).map_err(|e| Refusal::Reason(e.to_string()))?;
    if !from_agent(&envelope.payload) {
        return Err(Refusal::Reason(format!(
            "type {:?} is not sent by an agent",
            envelope.payload.type_name()
        )));
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
            | Payload::WebRequest { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::volume;
    use std::fs;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        paths: InstancePaths,
        ipc: InstanceIpc,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let paths = InstancePaths::under(dir.path().join("alice"));
            fs::create_dir_all(paths.ipc.join("in")).unwrap();
            fs::create_dir_all(paths.ipc.join("out")).unwrap();
            let vol = volume::open(&paths).unwrap();
            let ipc = InstanceIpc::open("alice", &paths, &vol, None).unwrap();
            Self {
                _dir: dir,
                paths,
                ipc,
            }
        }
        fn out(&self) -> PathBuf {
            self.paths.ipc.join("out")
        }
        fn inbox(&self) -> PathBuf {
            self.paths.ipc.join("in")
        }
        fn quarantined(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.paths.quarantine)
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        }
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

    fn reasons(d: &Drained) -> Vec<String> {
        d.items
            .iter()
            .filter_map(|i| match i {
                Incoming::Quarantined { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn valid_envelopes_are_read_in_order_and_bad_entries_set_aside() {
        let mut f = Fixture::new();
        let decoy = tempfile::tempdir().unwrap();
        fs::write(decoy.path().join("keep"), b"decoy").unwrap();
        supervisor_agent::ipc::write_envelope(&f.out(), &reply("b")).unwrap();
        supervisor_agent::ipc::write_envelope(&f.out(), &reply("a")).unwrap();
        let bad: &[(&str, &[u8])] = &[
            ("1-json.json", b"{not json"),
            ("2-utf8.json", &[0xff, 0xfe, 0x00]),
            ("3-version.json", br#"{"v":9,"id":"x","ts":1,"type":"reply","turn_id":"t","body":""}"#),
            ("4-type.json", br#"{"v":1,"id":"x","ts":1,"type":"launch_missiles"}"#),
            ("5-id.json", br#"{"v":1,"id":"../../etc","ts":1,"type":"ready","agent_version":"1","protocol":1}"#),
            ("6-direction.json", br#"{"v":1,"id":"x","ts":1,"type":"shutdown"}"#),
        ];
        for (name, bytes) in bad {
            fs::write(f.out().join(name), bytes).unwrap();
        }
        fs::write(
            f.out().join("7-huge.json"),
            vec![b' '; MAX_ENVELOPE_BYTES + 1],
        )
        .unwrap();
        symlink("/etc/passwd", f.out().join("8-link.json")).unwrap();
        symlink(decoy.path(), f.out().join("8-dirlink.json")).unwrap();
        fs::create_dir(f.out().join("9-dir.json")).unwrap();
        fs::write(f.out().join("9-dir.json/inside"), b"x").unwrap();
        {
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::OsStr::from_bytes(b"9-\xff\xfe.json");
            fs::write(f.out().join(name), b"{").unwrap();
        }
        nix::unistd::mkfifo(&f.out().join("9-fifo.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        fs::write(f.out().join(".half-written.json.tmp"), b"{").unwrap();

        let got = f.ipc.drain_out().unwrap();
        let valid: Vec<String> = got
            .items
            .iter()
            .filter_map(|i| match i {
                Incoming::Envelope { envelope, .. } => Some(envelope.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(valid, ["a", "b"], "sorted by file name (ts-id)");
        let reasons = reasons(&got);
        assert_eq!(reasons.len(), 12, "{reasons:?}");
        let link_reason = f
            .quarantined()
            .into_iter()
            .find(|n| n.ends_with("8-link.json.reason"))
            .unwrap();
        assert!(
            fs::read_to_string(f.paths.quarantine.join(link_reason))
                .unwrap()
                .contains("it pointed to \"/etc/passwd\""),
            "a link's target is recorded, never followed"
        );
        for needle in [
            "symbolic link",
            "directory",
            "FIFO",
            "over the",
            "not sent by an agent",
            "not UTF-8",
        ] {
            assert!(
                reasons.iter().any(|r| r.contains(needle)),
                "no reason mentions {needle}: {reasons:?}"
            );
        }
        // Only the two valid envelopes and the temp file remain in out/.
        assert_eq!(fs::read_dir(f.out()).unwrap().count(), 3);
        // A copy and a reason for each of the 8 regular files, a reason for the rest.
        let q = f.quarantined();
        assert_eq!(
            q.iter().filter(|n| n.ends_with(".reason")).count(),
            12,
            "{q:?}"
        );
        assert_eq!(q.len(), 12 + 8, "{q:?}");
        let huge = q.iter().find(|n| n.ends_with("7-huge.json")).unwrap();
        assert_eq!(
            fs::metadata(f.paths.quarantine.join(huge)).unwrap().len(),
            MAX_ENVELOPE_BYTES as u64,
            "a copy never exceeds the envelope limit"
        );
        assert!(fs::read_to_string("/etc/passwd").unwrap().contains("root"));
        assert_eq!(
            fs::read(decoy.path().join("keep")).unwrap(),
            b"decoy",
            "never followed"
        );
    }

    #[test]
    fn a_quarantined_copy_cannot_be_changed_through_a_link_the_agent_kept() {
        let mut f = Fixture::new();
        fs::write(f.out().join("1-bad.json"), b"{bad").unwrap();
        fs::hard_link(f.out().join("1-bad.json"), f.out().join(".keep.tmp")).unwrap();
        let mut writer = fs::OpenOptions::new()
            .append(true)
            .open(f.out().join("1-bad.json"))
            .unwrap();
        f.ipc.drain_out().unwrap();
        writer.write_all(b"EVIL").unwrap();
        fs::write(f.out().join(".keep.tmp"), b"EVIL").unwrap();
        let q = f.quarantined();
        let copy = q.iter().find(|n| n.ends_with("1-bad.json")).unwrap();
        assert_eq!(fs::read(f.paths.quarantine.join(copy)).unwrap(), b"{bad");
    }

    #[test]
    fn a_flood_is_taken_a_round_at_a_time_and_the_quarantine_stays_capped() {
        let mut f = Fixture::new();
        for i in 0..2500 {
            fs::write(f.out().join(format!("{i:05}-junk.json")), b"junk").unwrap();
        }
        let first = f.ipc.drain_out().unwrap();
        assert!(first.more);
        assert_eq!(first.items.len(), MAX_ENTRIES_PER_ROUND);
        let kept = first
            .items
            .iter()
            .filter(|i| matches!(i, Incoming::Quarantined { kept: true, .. }))
            .count();
        assert_eq!(kept, QUARANTINE_COPIES_PER_ROUND);
        let mut rounds = 1;
        while f.ipc.drain_out().unwrap().more {
            rounds += 1;
        }
        assert_eq!(
            rounds, 2,
            "2500 entries: three rounds, the last one saying no more"
        );
        assert_eq!(fs::read_dir(f.out()).unwrap().count(), 0);
        assert_eq!(f.quarantined().len(), 3 * 2 * QUARANTINE_COPIES_PER_ROUND);
        // Over many rounds the oldest go first.
        for round in 0..12 {
            for i in 0..QUARANTINE_COPIES_PER_ROUND {
                fs::write(f.out().join(format!("{round:02}{i:03}-more.json")), b"junk").unwrap();
            }
            f.ipc.drain_out().unwrap();
        }
        let items = f
            .quarantined()
            .iter()
            .filter(|n| n.ends_with(".reason"))
            .count();
        assert_eq!(items, QUARANTINE_MAX_ITEMS);
        assert!(
            !f.quarantined()
                .iter()
                .any(|n| n.ends_with("00000-junk.json")),
            "the oldest item was dropped"
        );
    }

    #[test]
    fn quarantining_the_same_name_twice_in_one_millisecond_keeps_both() {
        let f = Fixture::new();
        let name = OsStr::new("1-same.json");
        fs::write(f.out().join(name), b"first").unwrap();
        f.ipc.keep_copy(name, Kind::File, "reason one", 7).unwrap();
        fs::write(f.out().join(name), b"second").unwrap();
        f.ipc.keep_copy(name, Kind::File, "reason two", 7).unwrap();
        let q = &f.paths.quarantine;
        let read = |n: &str| fs::read_to_string(q.join(n)).unwrap();
        assert_eq!(read("7-1-same.json"), "first");
        assert_eq!(read("7-1-same.json.reason"), "reason one\n");
        assert_eq!(read("7.2-1-same.json"), "second");
        assert_eq!(read("7.2-1-same.json.reason"), "reason two\n");
    }

    #[test]
    fn quarantining_an_entry_that_is_gone_is_not_an_error_and_leaves_no_reason() {
        let mut f = Fixture::new();
        assert!(!f
            .ipc
            .quarantine(OsStr::new("gone.json"), "whatever")
            .unwrap());
        assert!(f.quarantined().is_empty());
    }

    #[test]
    fn stale_temporary_files_are_removed_and_fresh_ones_and_envelopes_kept() {
        let mut f = Fixture::new();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let age = |path: &std::path::Path, when: SystemTime| {
            fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        };
        let old_out = f.out().join(".1-old.json.tmp");
        let fresh_out = f.out().join(".2-fresh.json.tmp");
        fs::write(&old_out, b"{").unwrap();
        fs::write(&fresh_out, b"{").unwrap();
        age(&old_out, hour_ago);
        let almost = f.out().join(".3-almost.json.tmp");
        fs::write(&almost, b"{").unwrap();
        age(
            &almost,
            SystemTime::now() - STALE_TEMP_AGE + Duration::from_secs(60),
        );
        let envelope = supervisor_agent::ipc::write_envelope(&f.out(), &reply("e1")).unwrap();
        age(&envelope, hour_ago);
        let dir = f.out().join(".4-dir.json.tmp");
        fs::create_dir(&dir).unwrap();
        let old_in = f.inbox().join(".5-old.json.tmp");
        let fresh_in = f.inbox().join(".6-fresh.json.tmp");
        fs::write(&old_in, b"{").unwrap();
        fs::write(&fresh_in, b"{").unwrap();
        age(&old_in, hour_ago);
        let queued = f.inbox().join("7-queued.json");
        fs::write(&queued, b"{}").unwrap();
        age(&queued, hour_ago);
        // An old temp-named link is removed itself, its target left alone.
        let target = tempfile::NamedTempFile::new().unwrap();
        let old_link = f.out().join(".8-link.json.tmp");
        symlink(target.path(), &old_link).unwrap();
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &old_link,
            &nix::sys::time::TimeSpec::new(0, 0),
            &nix::sys::time::TimeSpec::new(0, 0),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();

        let got = f.ipc.drain_out().unwrap();
        assert!(
            matches!(&got.items[..], [Incoming::Envelope { envelope, .. }] if envelope.id == "e1"),
            "{got:?}"
        );
        assert!(!old_out.exists() && !old_in.exists(), "stale temps removed");
        assert!(fs::symlink_metadata(&old_link).is_err() && target.path().exists());
        for kept in [&fresh_out, &almost, &envelope, &dir, &fresh_in, &queued] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(f.quarantined().is_empty(), "temp names are never read");
    }

    #[test]
    fn send_is_atomic_idempotent_to_check_and_never_writes_through_a_link() {
        let f = Fixture::new();
        let env = reply("x1");
        // A write that a crash interrupted left its temp file behind; and something planted
        // a link at the final name.
        fs::write(f.inbox().join(temp_name_for(&env)), b"{").unwrap();
        let victim = tempfile::NamedTempFile::new().unwrap();
        symlink(victim.path(), f.inbox().join(file_name_for(&env))).unwrap();
        assert!(
            !f.ipc.has_sent(&env).unwrap(),
            "a link is not a sent envelope"
        );
        f.ipc.send(&env).unwrap();
        assert!(f.ipc.has_sent(&env).unwrap());
        assert_eq!(
            fs::read_dir(f.inbox()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert_eq!(
            fs::read(victim.path()).unwrap(),
            b"",
            "the link's target is untouched"
        );
        let back = fs::read(f.inbox().join(file_name_for(&env))).unwrap();
        assert_eq!(parse_envelope(&back).unwrap(), env);
        // A link planted at the temp name is removed, not written through.
        symlink(victim.path(), f.inbox().join(temp_name_for(&env))).unwrap();
        f.ipc.send(&env).unwrap();
        assert_eq!(fs::read(victim.path()).unwrap(), b"");
    }

    #[test]
    fn a_file_left_short_by_a_crash_is_not_taken_for_the_envelope_and_is_written_again() {
        let f = Fixture::new();
        let env = reply("x2");
        let path = f.inbox().join(file_name_for(&env));
        // What a kernel crash can leave of a write that was never fsynced.
        for left in [&b""[..], &b"{\"v\":1,"[..]] {
            fs::write(&path, left).unwrap();
            assert!(
                !f.ipc.has_sent(&env).unwrap(),
                "{left:?} is not the envelope"
            );
            f.ipc.send(&env).unwrap();
            assert!(f.ipc.has_sent(&env).unwrap());
            assert_eq!(parse_envelope(&fs::read(&path).unwrap()).unwrap(), env);
        }
    }

    #[test]
    fn a_queue_moved_away_on_the_host_is_noticed() {
        let f = Fixture::new();
        let vol = volume::open(&f.paths).unwrap();
        assert!(f.ipc.still_in_place(&vol).unwrap());
        fs::rename(f.out(), f.paths.ipc.join("out.old")).unwrap();
        fs::create_dir(f.out()).unwrap();
        assert!(!f.ipc.still_in_place(&vol).unwrap());
        fs::remove_dir(f.out()).unwrap();
        symlink(f.paths.ipc.join("out.old"), f.out()).unwrap();
        let err = f.ipc.still_in_place(&vol).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        assert!(matches!(
            InstanceIpc::open("alice", &f.paths, &vol, None),
            Err(IpcError::Volume(VolumeError::Unexpected { .. }))
        ));
    }
}
