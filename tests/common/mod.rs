//! Helpers shared by the integration tests: a temporary home and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts failure with `code` and a one-line error containing `needle`.
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr {:?} lacks {needle:?}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
    cmd.env_remove("SUPERVISOR_HOME").env("NO_COLOR", "1");
    cmd
}

/// A fresh home under a temp dir (the home itself is not created until a command does).
pub struct TestHome {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl TestHome {
    /// Serves the daemon's API on TCP at `addr`.
    #[allow(dead_code)]
    pub fn listen_on(&self, addr: &str) {
        self.api_setting(&format!("listen = \"{addr}\""));
    }

    /// Puts `line` in supervisor.toml's `[api]` table, wherever that table is in the file.
    #[allow(dead_code)]
    pub fn api_setting(&self, line: &str) {
        let path = self.path("supervisor.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let text = if text.starts_with("[api]\n") || text.contains("\n[api]\n") {
            text.replacen("[api]\n", &format!("[api]\n{line}\n"), 1)
        } else {
            format!("{text}\n[api]\n{line}\n")
        };
        std::fs::write(&path, text).unwrap();
    }

    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("home");
        Self { _tmp: tmp, root }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = bin()
            .arg("--home")
            .arg(&self.root)
            .args(args)
            .output()
            .expect("run supervisor");
        Run::from(out)
    }

    /// `supervisor --home H ARGS` with `input` on its standard input.
    #[allow(dead_code)]
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = bin()
            .arg("--home")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run supervisor");
        // A command that does not read all of it closes the pipe: that is its business.
        let _ = child.stdin.take().expect("piped").write_all(input);
        Run::from(child.wait_with_output().expect("run supervisor"))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn scratch(&self) -> &Path {
        self._tmp.path()
    }

    /// An instance's workspace on the host (mounted at /workspace in its container). Tests
    /// name instance directories only through these helpers, so the layout lives in one place.
    /// Its volume is mounted first when it is a disk image (as the daemon or a command would).
    pub fn workspace(&self, instance: &str) -> PathBuf {
        self.volume(instance).join("workspace")
    }

    /// An instance's `in/` (host to agent) on the host.
    pub fn ipc_in(&self, instance: &str) -> PathBuf {
        self.volume(instance).join("ipc/in")
    }

    /// An instance's `out/` (agent to host) on the host.
    pub fn ipc_out(&self, instance: &str) -> PathBuf {
        self.volume(instance).join("ipc/out")
    }

    /// An instance's quarantine (outside every container).
    pub fn quarantine(&self, instance: &str) -> PathBuf {
        self.root
            .join("instances")
            .join(instance)
            .join("quarantine")
    }

    /// An instance's volume (`instances/<name>/volume`), mounted if it is an image.
    pub fn volume(&self, instance: &str) -> PathBuf {
        let name = supervisor::domain::instance::InstanceName::parse(instance).unwrap();
        let paths = supervisor::infra::home::Home::new(&self.root)
            .unwrap()
            .instance_paths(&name);
        // Mounted already (or plain) when it has its tree: no need to take its lock again.
        if paths.dir.is_dir() && !paths.ipc.is_dir() {
            supervisor::infra::volume::open(&paths)
                .unwrap_or_else(|e| panic!("cannot open {instance}'s volume: {e}"));
        }
        paths.volume
    }
}

impl Drop for TestHome {
    /// Disk images mounted under the home (instances' volumes) leave the mount table with it.
    fn drop(&mut self) {
        supervisor::infra::disk::unmount_below(self._tmp.path());
    }
}

/// The inodes process `pid` holds inotify watches on (the `inotify wd:` lines of its fdinfo).
pub fn inotify_inodes(pid: i64) -> Vec<u64> {
    let mut inodes = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for line in text.lines().filter(|l| l.starts_with("inotify wd:")) {
            let ino = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ino:"))
                .and_then(|h| u64::from_str_radix(h, 16).ok());
            inodes.extend(ino);
        }
    }
    inodes
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every entry below `dir` (relative paths), sorted: to show that nothing was left behind.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub mod agent;
pub mod daemon;
pub mod dashboard;
pub mod decoy;
pub mod fake_llm;
pub mod follower;
pub mod malformed;
pub mod proxy;
pub mod sandbox;
pub mod swarm;
pub mod telegram;
