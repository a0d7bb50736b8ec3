//! The command line describes itself: every subcommand's positional arguments and `--json`
//! flags have help, the exit codes are in the top-level help, and `--version` is only there.
//! The walk goes over clap's own command tree, so a command added later is checked too.

mod common;

use clap::CommandFactory;
use common::bin;

/// Every command in the tree with its full name (`task add`, …), the root first.
fn commands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let name = format!("{prefix} {}", sub.get_name()).trim().to_string();
            out.push((name.clone(), sub.clone()));
            walk(&name, sub, out);
        }
    }
    let mut root = supervisor::app::cli::Cli::command();
    root.build();
    let mut out = vec![("supervisor".to_string(), root.clone())];
    walk("", &root, &mut out);
    out
}

fn has_help(arg: &clap::Arg) -> bool {
    arg.get_help()
        .is_some_and(|h| !h.to_string().trim().is_empty())
}

#[test]
fn the_command_definitions_are_consistent() {
    // clap's own checks: no clashing names, groups that name existing arguments, …
    supervisor::app::cli::Cli::command().debug_assert();
}

#[test]
fn every_positional_argument_and_every_json_flag_has_help() {
    let mut missing = Vec::new();
    for (name, cmd) in commands() {
        for arg in cmd.get_arguments() {
            let described = arg.is_positional() || arg.get_long() == Some("json");
            if described && !has_help(arg) {
                missing.push(format!("{name}: {}", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "without help: {missing:#?}");
}

#[test]
fn only_the_top_level_has_a_version_flag() {
    for (name, cmd) in commands().into_iter().skip(1) {
        assert!(
            !cmd.get_arguments().any(|a| a.get_id() == "version"),
            "{name} has --version"
        );
    }
    let out = bin().arg("-V").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("supervisor "));
    let out = bin().args(["list", "-V"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "list -V is a usage error");
}

#[test]
fn the_top_level_help_lists_the_exit_codes() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "0  success",
        "1  the command was refused or failed",
        "2  usage error",
        "3  doctor found warnings; status shows an instance in error",
        "4  doctor found a failure",
    ] {
        assert!(help.contains(line), "{line:?} not in\n{help}");
    }
}

#[test]
fn start_without_a_name_mentions_all() {
    for verb in ["start", "stop", "restart"] {
        let out = bin()
            .args(["--home", "/nonexistent", verb])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{verb}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--all"), "{verb}: {err}");
    }
}
