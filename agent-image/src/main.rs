//! `supervisor-agent`: the program each instance's container runs from `/opt/runtime/bin`.

use std::io::{self, Write};
use std::process::ExitCode;
use supervisor_agent::agent::{self, Config};
use supervisor_agent::lifecycle;
use supervisor_agent::protocol::PROTOCOL_VERSION;
use supervisor_agent::signals::{self, ShutdownSignals};
use supervisor_agent::{self_check, AGENT_VERSION};

const USAGE: &str = "\
usage: supervisor-agent <command>

commands:
  run                  run the agent (the image's default command): check that
                       /workspace/SOUL.md (/persona/SOUL.md when /persona is mounted) is
                       a readable file and /ipc/in and /ipc/out are directories, write a
                       ready message to /ipc/out, then answer the turns that arrive in
                       /ipc/in; exit 0 on SIGTERM, SIGINT or a shutdown message, 1 if a
                       check or a write fails or /ipc/in cannot be read
  self-check [--json]  inspect this sandbox; exit 0 when every check passes, 1 otherwise
  version [--json]     print the agent and protocol versions
  --version, -V        same as `version`
  help, --help, -h     print this help
";

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect()
    {
        Ok(args) => args,
        Err(_) => return usage_error("arguments must be valid UTF-8"),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    match args.as_slice() {
        ["--version" | "-V"] | ["version"] => print(&format!(
            "supervisor-agent {AGENT_VERSION} (protocol {PROTOCOL_VERSION})\n"
        )),
        ["version", "--json"] => print(&format!(
            "{}\n",
            serde_json::json!({"agent_version": AGENT_VERSION, "protocol": PROTOCOL_VERSION})
        )),
        ["self-check"] => finish_check(self_check::run(), false),
        ["self-check", "--json"] => finish_check(self_check::run(), true),
        ["run"] => run(),
        ["help" | "--help" | "-h"] => print(USAGE),
        [] => usage_error("a command is required"),
        _ => usage_error(&format!("unknown arguments: {}", args.join(" "))),
    }
}

/// `run`: the agent's lifecycle.
fn run() -> ExitCode {
    // First of all, before any thread exists: every thread spawned later inherits the mask, so
    // SIGTERM and SIGINT can only ever be taken by the wait below.
    let shutdown = match ShutdownSignals::block() {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot block SIGTERM and SIGINT: {e}")),
    };
    let config = Config::container();
    let layout = &config.layout;
    if let Err(e) = lifecycle::check_environment(layout) {
        return fail(&e.to_string());
    }
    if let Err(e) = lifecycle::announce_ready(&layout.ipc_out) {
        return fail(&format!(
            "cannot write the ready message to {}: {e}",
            layout.ipc_out.display()
        ));
    }
    note(&format!(
        "supervisor-agent {AGENT_VERSION} ready (protocol {PROTOCOL_VERSION})"
    ));

    // The message loop runs on a thread of its own and ends the process itself on a shutdown
    // message or a fatal error; this thread only waits to be stopped.
    let worker = std::thread::Builder::new()
        .name("turns".into())
        .spawn(move || {
            let code = match std::panic::catch_unwind(|| agent::serve(&config)) {
                Ok(Ok(())) => {
                    note("supervisor-agent: stopping on a shutdown message");
                    0
                }
                Ok(Err(e)) => {
                    note(&format!("supervisor-agent: {e}"));
                    1
                }
                // The panic message is already on stderr.
                Err(_) => 1,
            };
            std::process::exit(code)
        });
    if let Err(e) = worker {
        return fail(&format!("cannot start the message loop: {e}"));
    }

    // On SIGTERM or SIGINT the process exits at once, abandoning any turn in progress. That is
    // safe: every envelope is written atomically (temporary name, then rename), so the host
    // never sees half of one, and a turn's file stays in /ipc/in until its answer has been
    // written, so an abandoned turn is simply done again on the next start. A workspace file
    // being written by a tool at that moment may be left short.
    match signals::wait_for_shutdown_signal(&shutdown) {
        Ok(sig) => {
            note(&format!("supervisor-agent: stopping on {sig}"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("cannot wait for SIGTERM or SIGINT: {e}")),
    }
}

/// One line to stderr; a failed write is ignored, as there is nowhere else to report it.
fn note(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Reports an error on stderr and returns exit status 1.
fn fail(msg: &str) -> ExitCode {
    note(&format!("supervisor-agent: {msg}"));
    ExitCode::FAILURE
}

fn finish_check(report: self_check::Report, json: bool) -> ExitCode {
    let text = if json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("supervisor-agent: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        report.to_text()
    };
    match print(&text) {
        code if code != ExitCode::SUCCESS => code,
        _ if report.ok => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Writes to stdout; a failed write (closed pipe, full disk) is exit status 1, not a panic.
fn print(text: &str) -> ExitCode {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprint!("supervisor-agent: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}
