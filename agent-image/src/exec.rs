//! Running one shell command for the `exec` tool: in its own process group, with no input,
//! stdout and stderr combined into one capped buffer, and a time limit after which the whole
//! group is killed. When the shell exits, whatever it left running in its group is killed too,
//! so a command cannot leave work behind that outlives the call.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The most combined output kept.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// The time limit when none is given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// The longest time limit allowed.
pub const MAX_TIMEOUT_SECS: u64 = 120;

/// How long to keep reading output after the shell has ended, for a process that escaped the
/// group (with `setsid`) but still holds the pipe.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// How often to look whether the shell has ended while no output arrives.
const TICK: Duration = Duration::from_millis(20);

/// A shell that runs `<program> <leading args…> -c <command>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    pub program: PathBuf,
    pub leading_args: Vec<String>,
}

impl Shell {
    /// busybox's `sh` applet.
    pub fn busybox(busybox: &Path) -> Shell {
        Shell {
            program: busybox.to_path_buf(),
            leading_args: vec!["sh".into()],
        }
    }

    /// A shell binary such as `/bin/sh`.
    pub fn plain(program: &Path) -> Shell {
        Shell {
            program: program.to_path_buf(),
            leading_args: Vec::new(),
        }
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// The time limit passed; the group was killed.
    TimedOut(Duration),
}

/// The result of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ending: Ending,
    /// The first [`OUTPUT_CAP`] bytes of stdout and stderr, interleaved as written.
    pub output: Vec<u8>,
    /// True when there was more output than was kept.
    pub truncated: bool,
}

impl Outcome {
    /// The result as the model sees it: how it ended, then the output.
    pub fn to_text(&self) -> String {
        let mut text = match self.ending {
            Ending::Exited(code) => format!("exit status {code}\n"),
            Ending::Signaled(sig) => format!("killed by signal {sig}\n"),
            Ending::TimedOut(limit) => format!(
                "timed out after {} s; the command and everything it started were killed\n",
                limit.as_secs()
            ),
        };
        if self.output.is_empty() {
            text.push_str("(no output)\n");
        } else {
            text.push_str("output:\n");
            text.push_str(&String::from_utf8_lossy(&self.output));
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        if self.truncated {
            text.push_str(&format!(
                "[output truncated: only the first {} KiB are shown]\n",
                OUTPUT_CAP / 1024
            ));
        }
        text
    }
}

/// Runs `command` with `shell` in `cwd`, keeping at most `cap` bytes of output, and kills the
/// command's process group once `timeout` has passed.
pub fn run(
    shell: &Shell,
    cwd: &Path,
    command: &str,
    timeout: Duration,
    cap: usize,
) -> io::Result<Outcome> {
    let (mut reader, writer) = io::pipe()?;
    let mut cmd = Command::new(&shell.program);
    cmd.args(&shell.leading_args)
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let mut child = cmd.spawn()?;
    // The Command holds the parent's copies of the pipe's write end; without dropping it the
    // reader would never see end-of-file.
    drop(cmd);
    let pid = child.id() as libc::pid_t;
    set_nonblocking(reader.as_raw_fd())?;

    let deadline = Instant::now() + timeout;
    let mut output = Vec::new();
    let mut truncated = false;
    let mut eof = false;
    let mut ending: Option<(Ending, Instant)> = None;
    let mut buf = [0u8; 16 * 1024];
    loop {
        while !eof {
            match reader.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => {
                    let room = cap.saturating_sub(output.len());
                    output.extend_from_slice(&buf[..n.min(room)]);
                    truncated |= n > room;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => eof = true,
            }
        }
        let now = Instant::now();
        if ending.is_none() {
            if has_exited(pid) {
                // Reap only after killing the group, so the group id cannot have been reused.
                kill_group(pid);
                ending = Some((ending_of(wait(&mut child)?), now + DRAIN_GRACE));
            } else if now >= deadline {
                kill_group(pid);
                wait(&mut child)?;
                ending = Some((Ending::TimedOut(timeout), now + DRAIN_GRACE));
            }
        }
        match ending {
            Some((end, drain_until)) if eof || now >= drain_until => {
                return Ok(Outcome {
                    ending: end,
                    output,
                    truncated,
                })
            }
            _ => {}
        }
        if eof {
            std::thread::sleep(TICK);
        } else {
            wait_readable(reader.as_raw_fd(), TICK);
        }
    }
}

fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    loop {
        match child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn ending_of(status: ExitStatus) -> Ending {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(sig)) => Ending::Signaled(sig),
        (None, None) => Ending::Exited(-1),
    }
}

/// True once `pid` has ended, without reaping it (`WNOWAIT`).
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: an all-zero siginfo_t is valid; waitid only writes to it.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // With WNOHANG, si_pid stays 0 while the child runs. An error (ECHILD: already
        // reaped) also counts as ended, so the caller's wait returns at once.
        rc != 0 || info.si_pid() != 0
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: sends a signal; ESRCH (nothing left in the group) is fine.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

fn set_nonblocking(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn wait_readable(fd: libc::c_int, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd. EINTR or an error just ends the wait early.
    unsafe {
        libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh() -> Shell {
        Shell::plain(Path::new("/bin/sh"))
    }

    fn run_sh(cmd: &str, secs: u64) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        run(
            &sh(),
            dir.path(),
            cmd,
            Duration::from_secs(secs),
            OUTPUT_CAP,
        )
        .unwrap()
    }

    #[test]
    fn status_and_combined_output() {
        let out = run_sh("echo out; echo err >&2; exit 3", 10);
        assert_eq!(out.ending, Ending::Exited(3));
        assert_eq!(out.output, b"out\nerr\n");
        assert!(!out.truncated);
        assert_eq!(out.to_text(), "exit status 3\noutput:\nout\nerr\n");
        let out = run_sh("true", 10);
        assert_eq!(out.to_text(), "exit status 0\n(no output)\n");
        let out = run_sh("kill -9 $$", 10);
        assert_eq!(out.ending, Ending::Signaled(9));
    }

    #[test]
    fn runs_in_cwd_with_no_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here.txt"), "x").unwrap();
        let out = run(
            &sh(),
            dir.path(),
            "ls; cat; echo done",
            Duration::from_secs(10),
            OUTPUT_CAP,
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.output), "here.txt\ndone\n");
    }

    #[test]
    fn timeout_kills_the_group() {
        let start = Instant::now();
        let out = run_sh("sleep 30 & sleep 30; echo never", 1);
        assert_eq!(out.ending, Ending::TimedOut(Duration::from_secs(1)));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(out.output.is_empty());
        assert!(out.to_text().starts_with("timed out after 1 s"));
    }

    #[test]
    fn background_work_does_not_outlive_the_shell() {
        let start = Instant::now();
        // The background sleep holds the pipe open; it is killed when the shell exits.
        let out = run_sh("sleep 30 & echo started", 10);
        assert_eq!(out.ending, Ending::Exited(0));
        assert_eq!(out.output, b"started\n");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn output_is_capped() {
        let out = run_sh("head -c 200000 /dev/zero | tr '\\0' x", 10);
        assert_eq!(out.ending, Ending::Exited(0));
        assert_eq!(out.output.len(), OUTPUT_CAP);
        assert!(out.truncated);
        assert!(out
            .to_text()
            .ends_with("only the first 64 KiB are shown]\n"));
        // Endless output with a timeout: the pipe is kept drained, and the kill still works.
        let start = Instant::now();
        let out = run_sh("yes", 1);
        assert!(matches!(out.ending, Ending::TimedOut(_)));
        assert_eq!(out.output.len(), OUTPUT_CAP);
        assert!(out.truncated);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn missing_shell_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let shell = Shell::plain(&dir.path().join("no-such-shell"));
        assert!(run(&shell, dir.path(), "true", Duration::from_secs(1), 10).is_err());
    }
}
