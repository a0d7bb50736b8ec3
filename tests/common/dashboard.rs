//! `status --watch` under a pseudo-terminal (util-linux `script`), with what it draws kept.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where `script` is; the tests that need it fail without it.
pub const SCRIPT: &str = "/usr/bin/script";

pub struct Dashboard {
    child: Child,
    stdin: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Dashboard {
    /// `supervisor --home HOME status --watch` on a `cols` x `rows` terminal.
    pub fn start(home: &Path, cols: u16, rows: u16) -> Self {
        Self::command(home, cols, rows, "status --watch")
    }

    /// `status --watch` with extra environment variables.
    pub fn start_with_env(home: &Path, cols: u16, rows: u16, env: &[(&str, &str)]) -> Self {
        Self::spawn(home, cols, rows, "status --watch", env)
    }

    /// `supervisor --home HOME ARGS` (words, without quotes) on a terminal.
    pub fn command(home: &Path, cols: u16, rows: u16, args: &str) -> Self {
        Self::spawn(home, cols, rows, args, &[])
    }

    fn spawn(home: &Path, cols: u16, rows: u16, args: &str, env: &[(&str, &str)]) -> Self {
        assert!(
            Path::new(SCRIPT).exists(),
            "{SCRIPT} (util-linux) is missing: it gives the dashboard a terminal"
        );
        // A pseudo-terminal made by `script` starts 0x0 when its own input is a pipe: size it.
        let inner = format!(
            "stty cols {cols} rows {rows} && exec '{}' --home '{}' {args}",
            env!("CARGO_BIN_EXE_supervisor"),
            home.display()
        );
        let mut child = Command::new(SCRIPT)
            .args(["-qefc", &inner, "/dev/null"])
            .env_remove("SUPERVISOR_HOME")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run script");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            stdin: child.stdin.take(),
            child,
            screen,
            reader: Some(reader),
        }
    }

    /// Everything drawn so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    pub fn press(&mut self, keys: &[u8]) {
        let stdin = self.stdin.as_mut().expect("still running");
        stdin.write_all(keys).unwrap();
        stdin.flush().unwrap();
    }

    /// The dashboard's own process: `script` runs it (through `exec`) as its only child.
    pub fn pid(&self) -> nix::unistd::Pid {
        let children = format!("/proc/{0}/task/{0}/children", self.child.id());
        let text = std::fs::read_to_string(children).unwrap();
        let pid: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
        nix::unistd::Pid::from_raw(pid)
    }

    /// Waits up to `deadline` for it to exit (killed after that: None); returns its status
    /// and everything it drew.
    pub fn finish(mut self, deadline: Duration) -> (Option<ExitStatus>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(self.stdin.take());
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status, self.text())
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
