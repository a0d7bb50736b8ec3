//! A command that keeps printing (`events -f`, `history -f`, `logs -f`) as a child process,
//! its stdout read line by line as it comes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::daemon::wait_until;
use super::TestHome;

pub struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    /// `supervisor --home HOME ARGS…`, its stdout collected.
    pub fn start(home: &TestHome, args: &[&str]) -> Self {
        let mut child = super::bin()
            .arg("--home")
            .arg(&home.root)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run supervisor");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (up to a generous deadline) for a line that contains `needle`; panics with
    /// what was printed when none comes.
    #[track_caller]
    pub fn expect(&self, needle: &str) -> String {
        let found = || self.lines().into_iter().find(|l| l.contains(needle));
        assert!(
            wait_until(Duration::from_secs(60), || found().is_some()),
            "no line with {needle:?} in {:#?}",
            self.lines()
        );
        found().unwrap()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
