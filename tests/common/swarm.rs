//! A real three-node Docker Swarm on this machine (scripts/swarm-lab): this machine's engine
//! as the manager, two workers, each a dockerd in a network namespace of its own, and a
//! registry. [`Lab::new`] builds it and dropping the [`Lab`] takes it down, then checks that
//! this machine's engine is left as it was found (out of any swarm, no swarm networks, no
//! lab namespaces, no registry CA). With `SVLAB_REUSE=DIR` a lab already up at DIR is used
//! and left up. Self-contained (std and serde_json only): the benchmark suite uses it too.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The lab's registry (scripts/swarm-lab: the manager's address, port 5443).
pub const REGISTRY: &str = "10.231.0.1:5443";
/// The manager's address on the lab's bridge.
pub const MANAGER_ADDR: &str = "10.231.0.1";
/// The registry CA the lab installs for this machine's engine.
pub const CERTS_D: &str = "/etc/docker/certs.d/10.231.0.1:5443";

pub struct Lab {
    pub dir: PathBuf,
    /// What `scripts/swarm-lab up` printed (WORKERn_HOST, WORKERn_NODE, MANAGER_NODE, ...).
    pub vars: BTreeMap<String, String>,
    /// Built here (and so taken down here), not reused.
    own: bool,
    down: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/swarm-lab")
}

/// Runs a command; its standard output, or what it said when it failed.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `docker ARGS` on this machine's engine (the manager).
pub fn docker(args: &[&str]) -> Result<String, String> {
    run(Command::new("docker").args(args))
}

/// `docker -H HOST ARGS` (a worker's engine).
pub fn docker_at(host: &str, args: &[&str]) -> Result<String, String> {
    run(Command::new("docker").arg("-H").arg(host).args(args))
}

impl Lab {
    /// Builds a lab in a directory of its own, or reuses the one `SVLAB_REUSE` names.
    pub fn new() -> Self {
        assert!(
            nix_is_root(),
            "the swarm lab makes network namespaces and engines: run the swarm tests as root"
        );
        if let Some(dir) = std::env::var_os("SVLAB_REUSE").filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            let vars = Self::vars_of(&dir).unwrap_or_else(|e| panic!("lab at {dir:?}: {e}"));
            return Self {
                dir,
                vars,
                own: false,
                down: false,
            };
        }
        if let Err(e) = engine_as_found() {
            panic!("this machine's engine is not as a lab needs it: {e}");
        }
        // Short: the workers' sockets live below it (a socket's path has ~108 bytes at most).
        let dir = std::env::temp_dir().join(format!("svlab-{}", std::process::id()));
        let mut lab = Self {
            dir,
            vars: BTreeMap::new(),
            own: true,
            down: false,
        };
        match run(Command::new(script()).arg("up").arg(&lab.dir)) {
            Ok(out) => lab.vars = parse_vars(&out),
            Err(e) => panic!("scripts/swarm-lab up: {e}"),
        }
        lab
    }

    /// What `up` prints, for a lab that is up already.
    fn vars_of(dir: &Path) -> Result<BTreeMap<String, String>, String> {
        let mut vars = BTreeMap::new();
        for n in [1, 2] {
            let host = format!("unix://{}/w{n}/docker.sock", dir.display());
            let node = docker_at(&host, &["info", "-f", "{{.Swarm.NodeID}}"])?;
            vars.insert(format!("WORKER{n}_HOST"), host);
            vars.insert(format!("WORKER{n}_ADDR"), format!("10.231.0.{}", n + 1));
            vars.insert(format!("WORKER{n}_NODE"), node.trim().to_string());
        }
        let manager = docker(&["info", "-f", "{{.Swarm.NodeID}}"])?;
        vars.insert("MANAGER_NODE".into(), manager.trim().to_string());
        vars.insert("MANAGER_ADDR".into(), MANAGER_ADDR.into());
        vars.insert("REGISTRY".into(), REGISTRY.into());
        Ok(vars)
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("the lab gave no {key}: {:?}", self.vars))
    }

    /// The workers' hostnames (svlab-w1, svlab-w2).
    pub fn workers(&self) -> [&'static str; 2] {
        ["svlab-w1", "svlab-w2"]
    }

    /// Worker `n`'s engine endpoint (unix://DIR/wN/docker.sock).
    pub fn host(&self, n: u32) -> String {
        self.var(&format!("WORKER{n}_HOST")).to_string()
    }

    /// The number of the worker whose hostname is `node` (svlab-wN).
    pub fn number(node: &str) -> u32 {
        node.strip_prefix("svlab-w")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{node:?} is not a lab worker"))
    }

    /// The engine endpoint of the worker whose hostname is `node`.
    pub fn host_of(&self, node: &str) -> String {
        self.host(Self::number(node))
    }

    /// The supervisor.toml tables of a home at `home` whose engine is this lab.
    pub fn engine_toml(&self, home: &Path) -> String {
        format!(
            "[engine]\nkind = \"swarm\"\n\n[engine.swarm]\nregistry = \"{REGISTRY}\"\n\
             poll_interval = \"300ms\"\n\n[engine.swarm.storage]\ndriver = \"local\"\n\
             device = \"{}\"\noptions = {{ type = \"none\", o = \"bind\" }}\n\n\
             [engine.swarm.nodes]\nsvlab-w1 = \"{}\"\nsvlab-w2 = \"{}\"\n",
            home.display(),
            self.host(1),
            self.host(2)
        )
    }

    /// `docker node update --label-add KEY=VALUE` on both workers.
    pub fn label_workers(&self, label: &str) {
        for w in self.workers() {
            docker(&["node", "update", "--label-add", label, w]).unwrap();
        }
    }

    /// `docker node update --availability AVAILABILITY NODE`.
    pub fn set_availability(&self, node: &str, availability: &str) {
        docker(&["node", "update", "--availability", availability, node]).unwrap();
    }

    /// Kills worker `n`'s engine, containerd and containers, as a power loss would.
    pub fn kill(&self, n: u32) {
        self.lab(&["kill", &n.to_string()]);
    }

    /// Starts worker `n`'s engine again after [`Lab::kill`] and waits for its node to be ready.
    pub fn revive(&self, n: u32) {
        self.lab(&["revive", &n.to_string()]);
        let node = format!("svlab-w{n}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while docker(&["node", "inspect", &node, "-f", "{{.Status.State}}"])
            .map(|s| s.trim() != "ready")
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "{node} not ready again");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Removes the services and networks of the home `home_id` (for a reused lab, which
    /// outlives the test's home).
    pub fn forget_home(&self, home_id: &str) {
        let label = format!("label=supervisor.home={home_id}");
        for kind in ["service", "network"] {
            let ids = docker(&[kind, "ls", "-q", "--filter", &label]).unwrap_or_default();
            for id in ids.split_whitespace() {
                let _ = docker(&[kind, "rm", id]);
            }
            // A service's network goes once its tasks are gone.
            std::thread::sleep(Duration::from_secs(if kind == "service" { 3 } else { 0 }));
        }
    }

    fn lab(&self, args: &[&str]) {
        let mut cmd = Command::new(script());
        cmd.arg(args[0]).arg(&self.dir).args(&args[1..]);
        run(&mut cmd).unwrap_or_else(|e| panic!("scripts/swarm-lab: {e}"));
    }

    /// Takes the lab down (when it was built here) and checks that this machine's engine is
    /// left as it was found.
    pub fn down(&mut self) -> Result<(), String> {
        if self.down || !self.own {
            self.down = true;
            return Ok(());
        }
        self.down = true;
        run(Command::new(script()).arg("down").arg(&self.dir))?;
        if self.dir.exists() {
            return Err(format!(
                "the lab's directory {} is left",
                self.dir.display()
            ));
        }
        engine_as_found()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            if std::thread::panicking() {
                eprintln!("the swarm lab's teardown: {e}");
            } else {
                panic!("the swarm lab's teardown: {e}");
            }
        }
    }
}

fn parse_vars(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn nix_is_root() -> bool {
    run(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

/// This machine's engine as a lab finds it and must leave it: in no swarm, without the
/// networks a swarm makes or a supervisor home's, no lab network namespace, no lab CA.
pub fn engine_as_found() -> Result<(), String> {
    let mut wrong = Vec::new();
    let state = docker(&["info", "-f", "{{.Swarm.LocalNodeState}}"])?;
    if state.trim() != "inactive" {
        wrong.push(format!("the engine's swarm state is {:?}", state.trim()));
    }
    let names = docker(&["network", "ls", "--format", "{{.Name}}"])?;
    for n in names.lines() {
        if n == "docker_gwbridge" || n == "ingress" {
            wrong.push(format!("network {n} is left"));
        }
    }
    let labelled = docker(&[
        "network",
        "ls",
        "--filter",
        "label=supervisor.home",
        "--format",
        "{{.Name}}",
    ])?;
    if !labelled.trim().is_empty() {
        wrong.push(format!("networks of a home are left: {}", labelled.trim()));
    }
    let netns = run(Command::new("ip").args(["netns", "list"]))?;
    if netns.contains("svlab") {
        wrong.push(format!("lab network namespaces are left: {}", netns.trim()));
    }
    if Path::new(CERTS_D).exists() {
        wrong.push(format!("{CERTS_D} is left"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}
