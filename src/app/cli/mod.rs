//! The command line: one file per subcommand, each with its arguments and its `run`.

mod backup;
mod can_answer;
mod channels;
mod chat;
mod chat_input;
mod completions;
mod config_check;
mod create_instance;
mod db;
mod doctor;
mod edit;
mod egress;
mod events;
mod exec;
mod follow;
mod groups;
mod history;
mod image;
mod init;
mod lifecycle;
mod list;
mod logs;
mod man;
mod nodes;
mod remove;
mod restore;
mod run;
mod runtime;
mod runtime_activate;
mod send;
mod service;
mod show;
mod status;
mod task;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::infra::home::Home;

/// Who the audit log says acted, for commands typed at the CLI.
pub const CLI_ACTOR: &str = "cli";

/// The top-level help's last words: what a script can rely on (docs/cli.md says the same).
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the command was refused or failed
  2  usage error: the command line itself is wrong
  3  doctor found warnings; status shows an instance in error
  4  doctor found a failure";

#[derive(Debug, Parser)]
#[command(name = "supervisor", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// The supervisor home [default: $XDG_DATA_HOME/supervisor or ~/.local/share/supervisor]
    #[arg(long, global = true, env = "SUPERVISOR_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the home: directories, database, host config.
    Init,
    /// Create an instance from a soul (initialises the home if needed).
    CreateInstance(create_instance::Args),
    /// List instances.
    List(list::Args),
    /// The daemon, the Docker engine and every instance at a glance.
    Status(status::Args),
    /// Show one instance: config, paths, soul, state.
    Show(show::Args),
    /// Remove instances (their files are archived; --purge deletes them).
    Remove(remove::Args),
    /// Run the daemon in the foreground: keep every instance's container as the store says.
    Run(run::Args),
    /// Start instances (the daemon creates and starts their containers).
    Start(lifecycle::Args),
    /// Stop instances.
    Stop(lifecycle::Args),
    /// Restart instances' containers.
    Restart(lifecycle::Args),
    /// Print an instance's container output.
    Logs(logs::Args),
    /// Send a message to an instance.
    Send(send::Args),
    /// Show an instance's conversation.
    History(history::Args),
    /// Show the web requests an instance's agent made through the host.
    Egress(egress::Args),
    /// List an instance's chat groups ("isolation": "chat"): one container each.
    Groups(groups::Args),
    /// The swarm's nodes and which instances run on each ([engine] kind = "swarm").
    Nodes(nodes::Args),
    /// Show instances' channels (Telegram, webhook) and let senders in (channels pair).
    Channels(channels::Args),
    /// Talk with an instance interactively (one line, one message).
    Chat(chat::Args),
    /// The audit log: who did what, when (-f follows it).
    Events(events::Args),
    /// Scheduled tasks: recurring or one-shot turns of an instance.
    #[command(subcommand)]
    Task(task::Command),
    /// The agent image.
    #[command(subcommand)]
    Image(image::Command),
    /// The shared agent runtimes mounted read-only into every container.
    #[command(subcommand)]
    Runtime(runtime::Command),
    /// Write one archive of the home (database, host config, instances); safe while the daemon runs.
    Backup(backup::Args),
    /// Make a new home (--home) from a backup archive, checking all of it first.
    Restore(restore::Args),
    /// Database maintenance: prune old history.
    #[command(subcommand)]
    Db(db::Command),
    /// Run the daemon as a service: install, uninstall or check its systemd (launchd) unit.
    #[command(subcommand)]
    Service(service::Command),
    /// Check the installation and say how to fix what is wrong (--fix repairs the safe part).
    Doctor(doctor::Args),
    /// Run a command in an instance's running container, as its agent's user.
    Exec(exec::ExecArgs),
    /// An interactive shell in an instance's running container, as its agent's user.
    Shell(exec::ShellArgs),
    /// Edit an instance's config.json in $VISUAL or $EDITOR; saved only once it is valid.
    Edit(edit::Args),
    /// Check configuration files without changing anything.
    #[command(subcommand)]
    Config(config_check::Command),
    /// Print a shell's completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::Args),
    /// Print the manual page in roff, or write every page into a directory.
    Man(man::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // These describe the program itself and need no home (a package build runs them where
    // there is none, nor a HOME to find one in).
    let command = match cli.command {
        Command::Completions(args) => return completions::run(args),
        Command::Man(args) => return man::run(args),
        command => command,
    };
    let root = match cli.home {
        Some(dir) => dir,
        None => Home::default_root()?,
    };
    let home = Home::new(&root)?;
    match command {
        Command::Init => init::run(&home),
        Command::CreateInstance(args) => create_instance::run(&home, args),
        Command::List(args) => list::run(&home, args),
        Command::Show(args) => show::run(&home, args),
        Command::Status(args) => status::run(&home, args),
        Command::Remove(args) => remove::run(&home, args),
        Command::Run(args) => run::run(&home, args),
        Command::Start(args) => lifecycle::run(&home, lifecycle::Verb::Start, args),
        Command::Stop(args) => lifecycle::run(&home, lifecycle::Verb::Stop, args),
        Command::Restart(args) => lifecycle::run(&home, lifecycle::Verb::Restart, args),
        Command::Logs(args) => logs::run(&home, args),
        Command::Send(args) => send::run(&home, args),
        Command::History(args) => history::run(&home, args),
        Command::Egress(args) => egress::run(&home, args),
        Command::Nodes(args) => nodes::run(&home, args),
        Command::Channels(args) => channels::run(&home, args),
        Command::Groups(args) => groups::run(&home, args),
        Command::Chat(args) => chat::run(&home, args),
        Command::Events(args) => events::run(&home, args),
        Command::Task(cmd) => task::run(&home, cmd),
        Command::Image(cmd) => image::run(&home, cmd),
        Command::Runtime(cmd) => runtime::run(&home, cmd),
        Command::Backup(args) => backup::run(&home, args),
        Command::Restore(args) => restore::run(&home, args),
        Command::Db(cmd) => db::run(&home, cmd),
        Command::Service(cmd) => service::run(&home, cmd),
        Command::Doctor(args) => doctor::run(&home, args),
        Command::Exec(args) => exec::run_exec(&home, args),
        Command::Shell(args) => exec::run_shell(&home, args),
        Command::Edit(args) => edit::run(&home, args),
        Command::Config(cmd) => config_check::run(&home, cmd),
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
    }
}

/// Parses an instance name argument with the reason in the error.
fn parse_name(raw: &str) -> anyhow::Result<crate::domain::instance::InstanceName> {
    Ok(crate::domain::instance::InstanceName::parse(raw)?)
}
