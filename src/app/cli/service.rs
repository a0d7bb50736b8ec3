//! `supervisor service install|uninstall|status`: the unit that runs `supervisor run` for
//! this home under the system's service manager (systemd; launchd on macOS).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::infra::home::Home;
use crate::infra::service::companions::{self, Companion};
use crate::infra::service::{self, render, Manager, Scope, ServiceError, WriteOutcome};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write the unit that runs the daemon for this home (systemd; launchd on macOS)
    Install(InstallArgs),
    /// Remove the unit
    Uninstall(UninstallArgs),
    /// Whether the unit is installed and, if the service manager answers, running
    Status(StatusArgs),
}

/// Which unit: the user's or the system's, and where its file is.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The user's own service manager (`systemctl --user`) instead of the system's
    #[arg(long)]
    pub user: bool,
    /// The directory of the unit file [default: ~/.config/systemd/user with --user, else
    /// /etc/systemd/system; ~/Library/LaunchAgents on macOS]
    #[arg(long, value_name = "DIR")]
    pub unit_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub target: Target,
    /// Also load, enable and start it now (runs systemctl or launchctl)
    #[arg(long)]
    pub now: bool,
    /// Replace a unit file that differs from the one this would write
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub share: ShareDir,
}

/// Where the shell completions and manual pages go with the unit.
#[derive(Debug, clap::Args)]
pub struct ShareDir {
    /// The directory under which shell completions (bash-completion/, zsh/, fish/) and
    /// manual pages (man/man1/) go [default: ~/.local/share (or $XDG_DATA_HOME) with --user,
    /// else /usr/local/share]
    #[arg(long, value_name = "DIR")]
    pub share_dir: Option<PathBuf>,
}

impl ShareDir {
    fn locate(&self, scope: Scope) -> anyhow::Result<PathBuf> {
        match &self.share_dir {
            Some(dir) => std::path::absolute(dir)
                .with_context(|| format!("cannot resolve {}", dir.display())),
            None => Ok(companions::default_share_dir(scope, |k| {
                std::env::var_os(k)
            })?),
        }
    }
}

/// The completion scripts and manual pages of this program, as `install` writes them.
fn companion_files() -> anyhow::Result<Vec<Companion>> {
    use clap_complete::Shell;
    let mut files: Vec<Companion> = [
        (companions::BASH, Shell::Bash),
        (companions::ZSH, Shell::Zsh),
        (companions::FISH, Shell::Fish),
    ]
    .into_iter()
    .map(|(path, shell)| Companion {
        relative: path.into(),
        contents: super::completions::script(shell),
    })
    .collect();
    for (name, contents) in super::man::pages()? {
        files.push(Companion {
            relative: Path::new(companions::MAN1).join(name),
            contents,
        });
    }
    Ok(files)
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON: {"unit","installed","up_to_date","note","service","query"}
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub target: Target,
    /// Stop and disable it first (runs systemctl or launchctl)
    #[arg(long)]
    pub now: bool,
    #[command(flatten)]
    pub share: ShareDir,
}

pub fn run(home: &Home, cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Install(args) => install(home, args),
        Command::Uninstall(args) => uninstall(home, args),
        Command::Status(args) => status(home, &args),
    }
}

/// Where the unit of this home is, for this platform and scope.
struct Unit {
    manager: Manager,
    scope: Scope,
    dir: PathBuf,
    path: PathBuf,
    /// The launchd label (per home); systemd's unit is simply `supervisor`.
    label: String,
}

impl Unit {
    fn locate(target: &Target, home_id: &str) -> anyhow::Result<Self> {
        let manager = Manager::current();
        let scope = if target.user {
            Scope::User
        } else {
            Scope::System
        };
        let dir = match &target.unit_dir {
            Some(dir) => std::path::absolute(dir)
                .with_context(|| format!("cannot resolve {}", dir.display()))?,
            None => service::default_unit_dir(manager, scope, |k| std::env::var_os(k))?,
        };
        let path = dir.join(service::unit_file_name(manager, home_id));
        Ok(Self {
            manager,
            scope,
            dir,
            path,
            label: service::launchd_label(home_id),
        })
    }

    /// The commands that load and start the unit, as a user would type them.
    fn start_commands(&self) -> Vec<Vec<String>> {
        match self.manager {
            Manager::Systemd => vec![
                self.systemctl(&["daemon-reload"]),
                self.systemctl(&["enable", "--now", "supervisor"]),
            ],
            Manager::Launchd => vec![vec![
                "launchctl".into(),
                "bootstrap".into(),
                launchd_domain(),
                self.path.display().to_string(),
            ]],
        }
    }

    fn stop_commands(&self) -> Vec<Vec<String>> {
        match self.manager {
            Manager::Systemd => vec![self.systemctl(&["disable", "--now", "supervisor"])],
            Manager::Launchd => vec![vec![
                "launchctl".into(),
                "bootout".into(),
                format!("{}/{}", launchd_domain(), self.label),
            ]],
        }
    }

    fn systemctl(&self, args: &[&str]) -> Vec<String> {
        std::iter::once("systemctl")
            .chain(self.scope.systemctl_args().iter().copied())
            .chain(args.iter().copied())
            .map(String::from)
            .collect()
    }

    /// The unit's text for this home and this executable, as `install` writes it.
    fn render(&self, home: &Home, home_path: &Path) -> anyhow::Result<String> {
        let exe = std::env::current_exe().context("cannot find the path of this program")?;
        let host = home.host_config()?;
        let stop_timeout = Duration::from_secs(host.daemon.stop_timeout_secs().max(0) as u64);
        let text = match self.manager {
            Manager::Systemd => {
                let run_as = match self.scope {
                    Scope::System => service::system_unit_user(home_path)?,
                    Scope::User => None,
                };
                render::systemd_unit(&render::SystemdUnit {
                    exe: &exe,
                    home: home_path,
                    scope: self.scope,
                    run_as: run_as.as_deref(),
                    stop_timeout,
                    // Root with [disk] enforce = "auto" or "hard" mounts instances' images.
                    disk_images: host.disk.enforce != crate::infra::disk::EnforceSetting::Soft,
                })?
            }
            Manager::Launchd => render::launchd_plist(&render::LaunchdAgent {
                label: &self.label,
                exe: &exe,
                home: home_path,
                stop_timeout,
            })?,
        };
        Ok(text)
    }
}

fn install(home: &Home, args: InstallArgs) -> anyhow::Result<ExitCode> {
    // The unit names the home, and a system unit's ReadWritePaths= needs it to exist (the
    // sandbox would not let the daemon create it): initialise it now, as `run` would.
    let mut store = home.open_or_init()?;
    let home_id = store.home_id()?;
    let home_path = real_home(home)?;
    let unit = Unit::locate(&args.target, &home_id)?;
    let text = unit.render(home, &home_path)?;
    if unit.manager == Manager::Launchd {
        // launchd opens StandardErrorPath but does not create its directory.
        let logs = home_path.join(service::LAUNCHD_LOG);
        let logs = logs.parent().unwrap_or(&home_path);
        crate::infra::fsutil::create_private_dir(logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
    }
    let outcome = service::write_unit(&unit.path, &text, args.force)
        .map_err(|e| explain_permission(e, unit.scope))?;
    let verb = match outcome {
        WriteOutcome::Created => "wrote",
        WriteOutcome::Replaced => "replaced",
        WriteOutcome::Unchanged => "unchanged:",
    };
    println!("{verb} {}", unit.path.display());
    let share = args.share.locate(unit.scope)?;
    companions::install(&share, &companion_files()?)
        .map_err(|e| explain_permission(e, unit.scope))
        .with_context(|| {
            format!(
                "the unit is written ({}), but its shell completions and manual pages are not",
                unit.path.display()
            )
        })?;
    println!(
        "wrote shell completions (bash, zsh, fish) and manual pages under {}",
        share.display()
    );
    if unit.manager == Manager::Systemd {
        let who = match (unit.scope, service::system_unit_user(&home_path)?) {
            (Scope::User, _) => "your user (a user service)".to_string(),
            (Scope::System, Some(user)) => format!("{user}, the owner of the home"),
            (Scope::System, None) => "root".to_string(),
        };
        println!("the daemon runs as {who}");
        println!(
            "API keys: put KEY=value lines in {} (mode 0600); nothing else of your \
             environment reaches the service",
            home_path.join(service::ENV_FILE).display()
        );
    }
    if args.now {
        for cmd in unit.start_commands() {
            run_command(&cmd).with_context(|| {
                format!(
                    "the unit is written ({}), but starting it failed",
                    unit.path.display()
                )
            })?;
        }
        println!("started: {}", shell_line(&unit.start_commands()));
    } else {
        println!("next: {}", shell_line(&unit.start_commands()));
    }
    if unit.manager == Manager::Systemd && unit.scope == Scope::User {
        println!(
            "note: user services stop when you log out, unless lingering is on: \
             loginctl enable-linger {}",
            current_user_name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn uninstall(home: &Home, args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let home_id = existing_home_id(home)?;
    let unit = Unit::locate(&args.target, &home_id)?;
    let present = std::fs::symlink_metadata(&unit.path).is_ok();
    if args.now && present {
        // While the unit file is still there for systemctl and launchctl to find.
        for cmd in unit.stop_commands() {
            run_command(&cmd).context("stopping the service failed; nothing was removed")?;
        }
    }
    let removed = service::remove_unit(&unit.path)?;
    let link = match unit.manager {
        Manager::Systemd => service::remove_enablement_link(&unit.dir, unit.scope)?,
        Manager::Launchd => None,
    };
    if removed {
        println!("removed {}", unit.path.display());
    } else {
        println!("nothing to remove: {} does not exist", unit.path.display());
    }
    if let Some(link) = &link {
        println!("removed {}", link.display());
    }
    let share = args.share.locate(unit.scope)?;
    let gone = companions::remove(&share, &companion_files()?)?;
    if !gone.is_empty() {
        println!(
            "removed {} shell completion and manual page files under {}",
            gone.len(),
            share.display()
        );
    }
    if unit.manager == Manager::Systemd && (removed || link.is_some()) {
        let reload = unit.systemctl(&["daemon-reload"]);
        if args.now {
            run_command(&reload).context("the unit is removed, but reloading systemd failed")?;
        } else {
            let stop = [unit.systemctl(&["stop", "supervisor"]), reload];
            println!("next, if it was running: {}", shell_line(&stop));
        }
    } else if unit.manager == Manager::Launchd && removed && !args.now {
        println!(
            "next, if it was loaded: {}",
            shell_line(&unit.stop_commands())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(home: &Home, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let home_id = existing_home_id(home)?;
    let unit = Unit::locate(&args.target, &home_id)?;
    let mut report = StatusReport {
        unit: unit.path.display().to_string(),
        installed: false,
        up_to_date: None,
        note: None,
        service: String::new(),
        query: String::new(),
    };
    match std::fs::read_to_string(&unit.path) {
        Ok(installed) => {
            report.installed = true;
            // Only an initialised home can say what `install` would write now.
            if home.is_initialized() {
                let expected = real_home(home).and_then(|h| unit.render(home, &h));
                match expected {
                    Ok(expected) => report.up_to_date = Some(expected == installed),
                    Err(e) => {
                        report.note = Some(format!(
                            "cannot tell whether it is up to date: {}",
                            crate::domain::error_text::one_line(&e)
                        ))
                    }
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report.note = Some(format!("cannot read it: {e}")),
    }
    // The service manager's view is a bonus: a machine without one (a container, CI) still
    // gets an answer, and a status that never fails.
    let query = match unit.manager {
        Manager::Systemd => unit.systemctl(&["is-active", "supervisor"]),
        Manager::Launchd => vec![
            "launchctl".into(),
            "print".into(),
            format!("{}/{}", launchd_domain(), unit.label),
        ],
    };
    report.service = match std::process::Command::new(&query[0])
        .args(&query[1..])
        .output()
    {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            match unit.manager {
                // is-active prints the state (active, inactive, failed, …) whatever its code.
                Manager::Systemd => first_line(&stdout)
                    .or_else(|| first_line(&stderr))
                    .unwrap_or_else(|| out.status.to_string()),
                Manager::Launchd if out.status.success() => "loaded".to_string(),
                Manager::Launchd => "not loaded".to_string(),
            }
        }
        Err(e) => format!("unknown ({} cannot be run: {e})", query[0]),
    };
    report.query = shell_words(&query);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let shown = if report.installed {
        "installed"
    } else {
        "not installed"
    };
    println!("unit: {} ({shown})", report.unit);
    if report.up_to_date == Some(false) {
        println!(
            "note: it differs from what `service install` would write now \
             (`service install --force` rewrites it)"
        );
    }
    if let Some(note) = &report.note {
        println!("note: {note}");
    }
    println!("service: {} (`{}`)", report.service, report.query);
    Ok(ExitCode::SUCCESS)
}

/// What `service status` found, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
struct StatusReport {
    /// The unit file's path.
    unit: String,
    installed: bool,
    /// Whether the installed file is what `install` would write now; null when not known.
    up_to_date: Option<bool>,
    note: Option<String>,
    /// What the service manager says (`active`, `inactive`, `loaded`, `unknown (…)`).
    service: String,
    /// The command that asked it.
    query: String,
}

/// The home's real path: it is what systemd's sandbox mounts, and the unit should name the
/// same directory however `--home` was spelled.
fn real_home(home: &Home) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(home.root())
        .with_context(|| format!("cannot resolve {}", home.root().display()))
}

/// The home id, for launchd's per-home label; an uninitialised home has no unit anyway
/// (install initialises it), so any placeholder finds nothing.
fn existing_home_id(home: &Home) -> anyhow::Result<String> {
    if home.is_initialized() {
        Ok(home.open()?.home_id()?)
    } else {
        Ok("uninitialised".to_string())
    }
}

fn explain_permission(e: ServiceError, scope: Scope) -> anyhow::Error {
    let denied = matches!(&e, ServiceError::Io { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied);
    if denied && scope == Scope::System {
        anyhow::Error::new(e).context(
            "system units need root (sudo); --user installs a unit for your own user instead",
        )
    } else {
        e.into()
    }
}

/// Runs one command, failing with its exit status and what it said.
fn run_command(cmd: &[String]) -> anyhow::Result<()> {
    let shown = shell_words(cmd);
    let out = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .with_context(|| format!("cannot run `{shown}`"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim();
        anyhow::bail!(
            "`{shown}` failed ({}){}{}",
            out.status,
            if said.is_empty() { "" } else { ": " },
            said.replace('\n', " ")
        );
    }
    Ok(())
}

fn launchd_domain() -> String {
    format!("gui/{}", nix::unistd::getuid())
}

fn current_user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "$USER".to_string())
}

fn first_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(String::from)
}

/// Commands joined with `&&`, each quoted for a POSIX shell, to copy and paste.
fn shell_line(cmds: &[Vec<String>]) -> String {
    cmds.iter()
        .map(|c| shell_words(c))
        .collect::<Vec<_>>()
        .join(" && ")
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/etc/systemd/system"), "/etc/systemd/system");
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let line = shell_line(&[
            vec!["systemctl".into(), "--user".into(), "daemon-reload".into()],
            vec!["systemctl".into(), "enable".into(), "--now".into()],
        ]);
        assert_eq!(
            line,
            "systemctl --user daemon-reload && systemctl enable --now"
        );
    }
}
