//! `supervisor exec NAME -- CMD…` and `supervisor shell NAME`: a command in the instance's
//! running container, for looking around as the agent would. It runs as the agent's own user,
//! with the container's confinement (the exec API adds no privilege), in /workspace, with the
//! runtime's toolbox (busybox) for its commands. Input, output and the exit code pass through.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::infra::container_spec::LABEL_RUNTIME;
use crate::infra::container_user::ContainerUser;
use crate::infra::docker::{self, attached, container::OwnedContainer};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The instance whose container runs the command
    pub name: String,
    /// The command and its arguments (after --); a name without a slash is looked up in the
    /// toolbox (busybox's utilities) and /opt/runtime/bin
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The instance whose container the shell runs in
    pub name: String,
}

/// Where the runtime's toolbox is inside every container (docs/configuration.md).
const BUSYBOX: &str = "/opt/runtime/toolbox/busybox";
const PATH: &str = "PATH=/opt/runtime/bin:/opt/runtime/toolbox";

pub fn run_exec(home: &Home, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let target = Target::find(home, &args.name)?;
    let cmd = if target.toolbox {
        // busybox's shell runs its own utilities by name (ls, cat, ps, …) though no link to
        // them exists; `exec` leaves no shell behind, so the exit code is the command's.
        [BUSYBOX, "sh", "-c", "exec \"$@\"", "sh"]
            .into_iter()
            .map(String::from)
            .chain(args.cmd)
            .collect()
    } else {
        args.cmd
    };
    target.run(cmd, false)
}

pub fn run_shell(home: &Home, args: ShellArgs) -> anyhow::Result<ExitCode> {
    let target = Target::find(home, &args.name)?;
    if !target.toolbox {
        anyhow::bail!(
            "{}'s runtime has no toolbox, so there is no shell in its container (build a \
             runtime with busybox: `supervisor runtime build --busybox PATH --activate`)",
            target.name
        );
    }
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    target.run(vec![BUSYBOX.to_string(), "sh".to_string()], tty)
}

/// The instance's running container, and who and what runs there.
struct Target {
    name: String,
    container: OwnedContainer,
    user: String,
    /// Whether its runtime has the busybox toolbox.
    toolbox: bool,
    host: crate::domain::host_config::HostConfig,
    root: std::path::PathBuf,
}

impl Target {
    fn find(home: &Home, raw: &str) -> anyhow::Result<Self> {
        let name = super::parse_name(raw)?;
        let mut store = home.open()?;
        let record = store.instance(name.as_str())?;
        let home_id = store.home_id()?;
        let config = home.host_config()?;
        let owned = crate::infra::blocking::block_on(async {
            let (_, engine) = docker::connect_engine(&config, home.root()).await?;
            engine.list(&home_id).await
        })?;
        let Some(container) =
            docker::container::newest(owned.iter().filter(|c| c.running), name.as_str())
        else {
            let detail = record
                .state_detail
                .as_deref()
                .map(|d| format!(": {}", crate::domain::escape::line(d)))
                .unwrap_or_default();
            anyhow::bail!(
                "{name} has no running container (it is {}{detail}); start it with \
                 `supervisor start {name} --wait`",
                record.state
            );
        };
        // The runtime is the host's own content-addressed directory, never agent-writable.
        let toolbox = container
            .labels
            .get(LABEL_RUNTIME)
            .filter(|id| crate::infra::runtime::is_runtime_id(id))
            .is_some_and(|id| {
                home.runtime_dir()
                    .join(id)
                    .join(crate::infra::runtime::build::TOOLBOX_PATH)
                    .is_file()
            });
        Ok(Self {
            name: name.to_string(),
            container: container.clone(),
            user: ContainerUser::detect().spec_for(record.uid),
            toolbox,
            host: config,
            root: home.root().to_path_buf(),
        })
    }

    fn run(self, cmd: Vec<String>, tty: bool) -> anyhow::Result<ExitCode> {
        let size = if tty {
            Some(ratatui::crossterm::terminal::size().unwrap_or((80, 24)))
        } else {
            None
        };
        let mut env = vec![PATH.to_string(), "HOME=/tmp".to_string()];
        if tty {
            let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
            env.push(format!("TERM={term}"));
        }
        let what = attached::Attached {
            cmd,
            user: self.user,
            env,
            working_dir: "/workspace".to_string(),
            tty: size,
        };
        let input = read_stdin();
        // Raw while the shell runs: keys go to it as typed (its own line editing, ^C to its
        // foreground job), and restored however this ends.
        let _raw = tty.then(RawMode::enable).transpose()?;
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        let code = crate::infra::blocking::block_on(async {
            let (_, engine) = docker::connect_engine(&self.host, &self.root).await?;
            let Some((client, container)) = engine.exec_target(&self.container.id).await? else {
                anyhow::bail!(
                    "{}'s container runs on a swarm node whose engine is not reachable from \
                     here: add the node to [engine.swarm.nodes] in supervisor.toml",
                    self.name
                );
            };
            let resize = follow_size(tty)?;
            let code = attached::run(
                &client,
                &container,
                &what,
                input,
                resize,
                |chunk| match chunk {
                    attached::Output::Stdout(b) => out.write_all(&b).and_then(|_| out.flush()),
                    attached::Output::Stderr(b) => err.write_all(&b).and_then(|_| err.flush()),
                },
            )
            .await
            .with_context(|| format!("running a command in {}'s container failed", self.name))?;
            anyhow::Ok(code)
        })?;
        // The command's own code, as a shell would report it (0–255).
        Ok(ExitCode::from(code.clamp(0, 255) as u8))
    }
}

/// The terminal's new size each time it changes (SIGWINCH), for the shell's terminal to
/// follow; nothing without a terminal. Runs on the caller's tokio runtime.
fn follow_size(tty: bool) -> anyhow::Result<mpsc::Receiver<(u16, u16)>> {
    let (tx, rx) = mpsc::channel(4);
    if tty {
        use tokio::signal::unix::{signal, SignalKind};
        let mut changes =
            signal(SignalKind::window_change()).context("cannot follow the terminal's size")?;
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                let Ok(size) = ratatui::crossterm::terminal::size() else {
                    continue;
                };
                if tx.send(size).await.is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

/// Our stdin, chunk by chunk, read on a thread of its own: a read from a terminal blocks
/// until a key is pressed, and must not keep this program alive once the command has ended.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// The terminal in raw mode until dropped.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        ratatui::crossterm::terminal::enable_raw_mode()
            .context("cannot put the terminal in raw mode")?;
        Ok(Self)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = ratatui::crossterm::terminal::disable_raw_mode();
    }
}
