//! The commands the dashboard runs on the selected instance. Each is this program's own
//! command (`start`, `stop`, `restart`, `logs -f`) run as a child, so that it follows the
//! same rules and says the same things as when typed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};

use super::app::Command;

/// A `start`, `stop` or `restart` running in the background: the screen keeps refreshing
/// while the daemon carries it out.
pub struct Job {
    /// Taken once it has ended and its output read.
    child: Option<Child>,
    what: String,
}

impl Job {
    pub fn spawn(home: &Path, cmd: Command, name: &str) -> std::io::Result<Self> {
        let child = own(home)?
            .args(cmd.args())
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Self {
            child: Some(child),
            what: format!("{} {name}", cmd.args().join(" ")),
        })
    }

    /// What is running, for the footer meanwhile.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Its outcome once it has ended: what it printed, on one line.
    pub fn try_finish(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        if let Ok(None) = child.try_wait() {
            return None;
        }
        let out = self.child.take()?.wait_with_output();
        Some(match out {
            Ok(out) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let said = one_line(&text);
                match (out.status.success(), said.is_empty()) {
                    (true, true) => format!("{}: done", self.what),
                    (true, false) => said,
                    (false, _) => format!("{} failed: {said}", self.what),
                }
            }
            Err(e) => format!("{} failed: {e}", self.what),
        })
    }
}

/// `logs -f NAME` on the terminal as it is (the caller has left the dashboard's screen),
/// until it ends or Ctrl-C ends it.
pub fn follow_logs(home: &Path, name: &str) -> std::io::Result<std::process::ExitStatus> {
    own(home)?
        .args(Command::FollowLogs.args())
        .arg(name)
        .status()
}

/// This program, on this home.
fn own(home: &Path) -> std::io::Result<Process> {
    let exe: PathBuf = std::env::current_exe()?;
    let mut p = Process::new(exe);
    p.arg("--home").arg(home);
    Ok(p)
}

/// A command's output as the footer's one line: its lines joined, controls escaped.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    crate::domain::escape::line(&joined).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_becomes_one_escaped_line() {
        assert_eq!(
            one_line("note: saved, but no daemon\n\nstarting alice\n"),
            "note: saved, but no daemon; starting alice"
        );
        assert_eq!(one_line("a\u{1b}[2J"), "a\\u{1b}[2J");
    }
}
