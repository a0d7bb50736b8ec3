//! `supervisor-agent`: the program each instance's container runs from `/opt/runtime/bin`.

use std::io::{self, Write};
use std::process::ExitCode;
use supervisor_agent::protocol::PROTOCOL_VERSION;
use supervisor_agent::{self_check, AGENT_VERSION};

const USAGE: &str = "\
usage: supervisor-agent <command>

commands:
  run                  the agent loop (the image's default command; not part of this build)
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
        ["run", ..] => {
            eprintln!("supervisor-agent: the run loop is not part of this build");
            ExitCode::from(2)
        }
        ["help" | "--help" | "-h"] => print(USAGE),
        [] => usage_error("a command is required"),
        _ => usage_error(&format!("unknown arguments: {}", args.join(" "))),
    }
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
