//! Watching `/ipc/in` for the envelopes the host sends.
//!
//! The directory listing is the source of truth: envelope files are handed out in file-name
//! order (`<ts>-<id>.json`, so oldest first), each once, skipping the temporary names the host
//! writes before renaming a file into place. inotify (`IN_MOVED_TO | IN_CLOSE_WRITE`) only
//! says when to look again; if it cannot be set up, the directory is looked at every 200 ms
//! instead. With inotify the directory is still looked at every second, in case an event is
//! lost (a full event queue, or a file system that does not report changes made elsewhere).
//!
//! A file that does not parse is reported on stderr in one line and deleted. Files that parse
//! stay until the caller [`Inbox::remove`]s them, so the caller decides when a message counts
//! as handled.

use crate::protocol::{is_temp_name, parse_envelope, Envelope, MAX_ENVELOPE_BYTES};
use std::collections::{HashSet, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the directory is listed when inotify is not available.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often the directory is listed anyway when inotify is in use.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Where the host's writes raise no event here (network storage: a swarm), the host sets
/// how often to look instead, in milliseconds.
pub const RESCAN_ENV: &str = "SUPERVISOR_IPC_RESCAN_MS";

/// The rescan interval a [`RESCAN_ENV`] value asks for: 50 ms to 10 s, else the default.
pub fn rescan_interval(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| (50..=10_000).contains(ms))
        .map_or(RESCAN_INTERVAL, Duration::from_millis)
}

/// One envelope file taken from the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The file name.
    pub name: String,
    /// The decoded envelope.
    pub envelope: Envelope,
}

/// The incoming envelope directory.
#[derive(Debug)]
pub struct Inbox {
    dir: PathBuf,
    inotify: Option<OwnedFd>,
    /// Names found by the last listing and not handed out yet, in order.
    ready: VecDeque<String>,
    /// Names handed out (or set aside) whose files still exist.
    taken: HashSet<String>,
    /// How often the directory is listed anyway when inotify is in use.
    rescan: Duration,
}

impl Inbox {
    /// Watches `dir` with inotify, or falls back to polling (saying so on stderr).
    pub fn open(dir: &Path) -> Inbox {
        let mut inbox = Inbox::polling(dir);
        inbox.rescan = rescan_interval(std::env::var(RESCAN_ENV).ok().as_deref());
        match watch(dir) {
            Ok(fd) => inbox.inotify = Some(fd),
            Err(e) => crate::note(&format!(
                "cannot watch {} with inotify ({e}); looking every {} ms instead",
                dir.display(),
                POLL_INTERVAL.as_millis()
            )),
        }
        inbox
    }

    /// Looks at `dir` every [`POLL_INTERVAL`], without inotify.
    pub fn polling(dir: &Path) -> Inbox {
        Inbox {
            dir: dir.to_path_buf(),
            inotify: None,
            ready: VecDeque::new(),
            taken: HashSet::new(),
            rescan: RESCAN_INTERVAL,
        }
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when inotify is in use.
    pub fn uses_inotify(&self) -> bool {
        self.inotify.is_some()
    }

    /// The next envelope not handed out before, oldest name first; `None` once `deadline` has
    /// passed (`None` waits for ever). Files that do not parse are reported and deleted on
    /// the way. An error means the directory itself cannot be read.
    pub fn next(&mut self, deadline: Option<Instant>) -> io::Result<Option<Item>> {
        loop {
            if self.ready.is_empty() {
                // Drain before listing: an event for a file that arrives after the listing
                // then still wakes the wait below.
                self.drain_events();
                self.scan()?;
            }
            while let Some(name) = self.ready.pop_front() {
                if let Some(item) = self.load(name) {
                    return Ok(Some(item));
                }
            }
            let now = Instant::now();
            let tick = if self.inotify.is_some() {
                self.rescan
            } else {
                POLL_INTERVAL
            };
            let wait = match deadline {
                Some(d) if d <= now => return Ok(None),
                Some(d) => tick.min(d - now),
                None => tick,
            };
            self.wait(wait);
        }
    }

    /// Deletes an item's file; it is handled. A file already gone is fine.
    pub fn remove(&mut self, item: &Item) {
        self.remove_name(&item.name);
    }

    fn remove_name(&mut self, name: &str) {
        match fs::remove_file(self.dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => crate::note(&format!("cannot delete {}/{name}: {e}", self.dir.display())),
        }
        self.taken.remove(name);
    }

    /// Lists the directory into `ready`: names not handed out yet, sorted, without temporary
    /// names.
    fn scan(&mut self) -> io::Result<()> {
        let mut present = HashSet::new();
        let mut fresh = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                // Not a name the host writes; it can never parse as one.
                let path = entry.path();
                crate::note(&format!(
                    "deleting {}: not an envelope name",
                    path.display()
                ));
                let _ = fs::remove_file(&path);
                continue;
            };
            if is_temp_name(&name) {
                continue;
            }
            if !self.taken.contains(&name) {
                fresh.push(name.clone());
            }
            present.insert(name);
        }
        self.taken.retain(|n| present.contains(n));
        fresh.sort();
        self.ready = fresh.into();
        Ok(())
    }

    /// Reads and decodes one file; reports and deletes it if it does not parse.
    fn load(&mut self, name: String) -> Option<Item> {
        let path = self.dir.join(&name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            // Removed since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            // A directory, link or other oddity is not the host's doing: left alone, reported
            // once, and not looked at again while it is there.
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "not a regular file".to_string(),
                };
                crate::note(&format!("ignoring {}: {why}", path.display()));
                self.taken.insert(name);
                return None;
            }
        }
        let result = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .and_then(|file| {
                let mut bytes = Vec::new();
                file.take(MAX_ENVELOPE_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)?;
                Ok(bytes)
            });
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                crate::note(&format!("deleting {}: cannot read it: {e}", path.display()));
                self.remove_name(&name);
                return None;
            }
        };
        match parse_envelope(&bytes) {
            Ok(envelope) => {
                self.taken.insert(name.clone());
                Some(Item { name, envelope })
            }
            Err(e) => {
                crate::note(&format!("deleting {}: {e}", path.display()));
                self.remove_name(&name);
                None
            }
        }
    }

    /// Sleeps until an inotify event or `timeout`.
    fn wait(&self, timeout: Duration) {
        match &self.inotify {
            Some(fd) => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
                // SAFETY: one valid pollfd. EINTR just ends the wait early.
                unsafe {
                    libc::poll(&mut pfd, 1, ms);
                }
            }
            None => std::thread::sleep(timeout),
        }
    }

    /// Reads and discards pending inotify events; only their arrival matters.
    fn drain_events(&self) {
        let Some(fd) = &self.inotify else { return };
        // Aligned for struct inotify_event, large enough for any single event.
        let mut buf = [0u64; 512];
        loop {
            // SAFETY: reads into a buffer of the given size; the descriptor is non-blocking.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n <= 0 {
                return;
            }
        }
    }
}

/// An inotify descriptor watching `dir` for files renamed into it or closed after writing.
fn watch(dir: &Path) -> io::Result<OwnedFd> {
    // SAFETY: plain system calls; the descriptor is owned by the OwnedFd from here on.
    unsafe {
        let raw = libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK);
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(raw);
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let wd = libc::inotify_add_watch(
            fd.as_raw_fd(),
            path.as_ptr(),
            libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE | libc::IN_ONLYDIR,
        );
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_can_ask_for_a_shorter_rescan_within_bounds() {
        use super::{rescan_interval, RESCAN_INTERVAL};
        assert_eq!(rescan_interval(None), RESCAN_INTERVAL);
        assert_eq!(rescan_interval(Some("200")), Duration::from_millis(200));
        assert_eq!(rescan_interval(Some("5")), RESCAN_INTERVAL, "too often");
        assert_eq!(rescan_interval(Some("x")), RESCAN_INTERVAL);
    }

    use super::*;
    use crate::ipc::write_envelope;
    use crate::protocol::{temp_name_for, Payload};

    fn shutdown(id: &str, ts: i64) -> Envelope {
        Envelope::new(id, ts, Payload::Shutdown {})
    }

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(50))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn ordering_and_skipping(mut inbox: Inbox, dir: &Path) {
        // Written out of order; handed out in name (time) order.
        for (id, ts) in [("c", 3), ("a", 1), ("b", 2)] {
            write_envelope(dir, &shutdown(id, ts)).unwrap();
        }
        // A file still being written is skipped, whatever it holds.
        let partial = temp_name_for(&shutdown("z", 0));
        fs::write(dir.join(&partial), b"{\"v\":1,").unwrap();
        let mut got = Vec::new();
        while let Some(item) = inbox.next(soon()).unwrap() {
            got.push(item.envelope.id.clone());
        }
        assert_eq!(got, ["a", "b", "c"]);
        // Handed out once: the files stay until removed, but are not returned again.
        assert_eq!(names(dir).len(), 4);
        assert!(inbox.next(soon()).unwrap().is_none());
        assert!(names(dir).contains(&partial));
    }

    #[test]
    fn files_come_out_in_name_order_polling() {
        let dir = tempfile::tempdir().unwrap();
        ordering_and_skipping(Inbox::polling(dir.path()), dir.path());
    }

    #[test]
    fn files_come_out_in_name_order_inotify() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path());
        assert!(inbox.uses_inotify());
        ordering_and_skipping(inbox, dir.path());
    }

    #[test]
    fn bad_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::polling(dir.path());
        fs::write(dir.path().join("1-bad.json"), b"not json").unwrap();
        fs::write(dir.path().join("2-v9.json"), br#"{"v":9}"#).unwrap();
        fs::create_dir(dir.path().join("3-dir.json")).unwrap();
        write_envelope(dir.path(), &shutdown("ok", 4)).unwrap();
        let item = inbox.next(soon()).unwrap().unwrap();
        assert_eq!(item.envelope.id, "ok");
        assert_eq!(names(dir.path()), ["3-dir.json", "4-ok.json"]);
        inbox.remove(&item);
        assert_eq!(names(dir.path()), ["3-dir.json"]);
        assert!(inbox.next(soon()).unwrap().is_none());
    }

    #[test]
    fn a_file_renamed_in_later_wakes_the_wait() {
        for use_inotify in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut inbox = if use_inotify {
                Inbox::open(dir.path())
            } else {
                Inbox::polling(dir.path())
            };
            assert!(inbox.next(soon()).unwrap().is_none());
            let path = dir.path().to_path_buf();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                write_envelope(&path, &shutdown("late", 7)).unwrap();
            });
            let start = Instant::now();
            let item = inbox
                .next(Some(Instant::now() + Duration::from_secs(5)))
                .unwrap()
                .unwrap();
            writer.join().unwrap();
            assert_eq!(item.envelope.id, "late");
            // inotify wakes before the one-second rescan would; polling within an interval or
            // so (the bounds leave room for a loaded machine).
            let limit = if use_inotify { 900 } else { 2000 };
            assert!(start.elapsed() < Duration::from_millis(limit));
        }
    }

    #[test]
    fn a_removed_and_rewritten_name_is_seen_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::polling(dir.path());
        write_envelope(dir.path(), &shutdown("x", 1)).unwrap();
        let item = inbox.next(soon()).unwrap().unwrap();
        inbox.remove(&item);
        write_envelope(dir.path(), &shutdown("x", 1)).unwrap();
        assert!(inbox.next(soon()).unwrap().is_some());
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = Inbox::open(&dir.path().join("nope"));
        assert!(!inbox.uses_inotify());
        assert!(inbox.next(soon()).is_err());
    }
}
