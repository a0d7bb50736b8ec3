//! A real `supervisor run` for tests, a prepared home (image + active runtime), and Docker
//! helpers that clean up after themselves.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use supervisor::domain::host_config::DockerConfig;
use supervisor::infra::docker::{self, container, Client};

use super::{bin, TestHome};

/// The static agent scripts/build-agent makes; tests never skip for want of it.
pub fn require_agent_bin() -> PathBuf {
    let path = std::env::var_os("SUPERVISOR_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            supervisor::infra::runtime::locate::built_agent_path(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
            )
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/test (it builds the static agent with scripts/build-agent)",
        path.display()
    );
    path
}

/// Runs `f` with a Docker client on a fresh runtime.
pub fn with_docker<T>(f: impl AsyncFnOnce(Client) -> T) -> T {
    supervisor::infra::blocking::block_on(async {
        let client = docker::connect(&DockerConfig::default())
            .await
            .expect("Docker engine");
        f(client).await
    })
}

/// A home with the agent image built and a runtime active, ready for containers; its
/// containers are removed when it is dropped.
pub struct ReadyHome {
    pub home: TestHome,
    pub home_id: String,
}

impl ReadyHome {
    pub fn new() -> Self {
        let home = TestHome::new();
        home.run(&["init"]).ok();
        home.run(&["image", "build", "--quiet"]).ok();
        let agent = require_agent_bin();
        home.run(&[
            "runtime",
            "build",
            "--activate",
            "--agent-bin",
            agent.to_str().unwrap(),
        ])
        .ok();
        let home_id = supervisor::infra::store::Store::open(&home.path("supervisor.db"))
            .unwrap()
            .home_id()
            .unwrap();
        Self { home, home_id }
    }

    /// Edits an instance's config.json as JSON.
    pub fn edit_config(&self, instance: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.home.path(&format!("instances/{instance}/config.json"));
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    pub fn containers(&self) -> Vec<container::OwnedContainer> {
        let id = self.home_id.clone();
        with_docker(async move |c| container::list_owned(&c, &id).await.unwrap())
    }

    /// The one container of `instance` (panics if there are several).
    pub fn container_of(&self, instance: &str) -> Option<container::OwnedContainer> {
        let mut mine: Vec<_> = self
            .containers()
            .into_iter()
            .filter(|c| c.instance == instance)
            .collect();
        assert!(
            mine.len() <= 1,
            "duplicate containers for {instance}: {mine:?}"
        );
        mine.pop()
    }

    pub fn record(&self, instance: &str) -> supervisor::infra::store::instances::InstanceRecord {
        supervisor::infra::store::Store::open(&self.home.path("supervisor.db"))
            .unwrap()
            .instance(instance)
            .unwrap()
    }
}

impl Drop for ReadyHome {
    fn drop(&mut self) {
        let id = self.home_id.clone();
        with_docker(async move |c| {
            for owned in container::list_owned(&c, &id).await.unwrap_or_default() {
                let _ = container::remove(&c, &owned.id).await;
            }
        });
    }
}

/// `supervisor run` as a child process; killed when dropped.
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(home: &TestHome) -> Self {
        Self::start_with_env(home, &[])
    }

    /// Starts the daemon with extra environment variables.
    pub fn start_with_env(home: &TestHome, env: &[(&str, &str)]) -> Self {
        let log = home
            .scratch()
            .join(format!("daemon-{}.log", uuid::Uuid::new_v4().simple()));
        let child = bin()
            .arg("--home")
            .arg(&home.root)
            .arg("run")
            .env("RUST_LOG", "supervisor=debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Self { child, log };
        let socket = home.path("run/supervisor.sock");
        assert!(
            wait_until(Duration::from_secs(20), || socket.exists()
                && home.run(&["--help"]).code == 0
                && std::os::unix::net::UnixStream::connect(&socket).is_ok()),
            "daemon did not come up: {}",
            d.log_text()
        );
        d
    }

    /// Whether the daemon process is still running (it has not exited or died).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for exit.
    pub fn terminate(&mut self) -> ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes. A deadline for liveness,
/// never a performance threshold.
/// Runs `script` in `instance`'s running container with its toolbox shell, as its agent's
/// user; (exit code, stdout, stderr).
pub fn toolbox_sh(h: &ReadyHome, instance: &str, script: &str) -> (i64, String, String) {
    let id = h.container_of(instance).expect("it runs").id;
    let script = script.to_string();
    let out = with_docker(async move |d| {
        supervisor::infra::docker::exec::run(
            &d,
            &id,
            &["/opt/runtime/toolbox/busybox", "sh", "-c", &script],
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    });
    (out.exit_code, out.stdout, out.stderr)
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// The final answers in an instance's history, oldest first.
pub fn finals(home: &TestHome, instance: &str) -> Vec<serde_json::Value> {
    history_where(home, instance, |m| m["state"] == "final")
}

/// The messages of an instance's history (the last 200) that `keep` keeps, oldest first.
pub fn history_where(
    home: &TestHome,
    instance: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let history = home
        .run(&["history", instance, "--json", "--limit", "200"])
        .ok()
        .json();
    history
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| keep(m))
        .cloned()
        .collect()
}

/// A loopback TCP port free when asked.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request with `headers` and `body` (None: none), on a runtime of its own: its
/// status, and its body as JSON (or as a JSON string when it is not JSON).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    })
}

/// `send INSTANCE TEXT --wait --json` in the background: the caller reads its answer once
/// whatever it waits for has happened.
pub fn send_wait_in_background(h: &ReadyHome, instance: &str, text: &str) -> std::process::Child {
    super::bin()
        .arg("--home")
        .arg(&h.home.root)
        .args([
            "send",
            instance,
            text,
            "--wait",
            "--json",
            "--timeout",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
