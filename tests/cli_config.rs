//! Commands around instances' configuration and the command line itself, with the real
//! binary: `remove` of several names, `edit` (with a script for an editor), `config check`,
//! and the completion scripts and manual pages generated from the parser.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{bin, Run, TestHome};

/// `supervisor --home <home> <args>` with extra environment.
fn run_env(h: &TestHome, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = bin();
    cmd.env_remove("VISUAL")
        .env_remove("EDITOR")
        .arg("--home")
        .arg(&h.root)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run supervisor");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An executable shell script in the test's scratch directory.
fn script(h: &TestHome, name: &str, body: &str) -> PathBuf {
    let path = h.scratch().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn names(h: &TestHome) -> Vec<String> {
    h.run(&["list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn remove_takes_several_names_and_checks_them_all_first() {
    let h = TestHome::new();
    for name in ["ann", "ben", "cat"] {
        h.run(&["create-instance", name]).ok();
    }
    // One unknown and one malformed name: each is reported, and none is removed.
    let out = h
        .run(&["remove", "ann", "nobody", "ben", "Bad_Name"])
        .fails(1, "nothing was removed");
    assert!(
        out.stderr.contains("no instance named \"nobody\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Bad_Name"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 3, "{}", out.stderr);
    assert_eq!(names(&h), ["ann", "ben", "cat"]);

    // A name given twice is removed once.
    let out = h.run(&["remove", "ann", "cat", "ann", "--purge"]).ok();
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("removed instance ann"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("removed instance cat"),
        "{}",
        out.stdout
    );
    assert_eq!(names(&h), ["ben"]);
    h.run(&["remove"]).fails(2, "NAME");

    // A removal that fails is reported with its name, and changes nothing of that instance.
    h.run(&["create-instance", "dan"]).ok();
    std::fs::remove_dir_all(h.path("archive")).unwrap();
    std::fs::write(h.path("archive"), "in the way").unwrap();
    let out = h.run(&["remove", "ben", "dan"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("error: cannot remove ben: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("error: cannot remove dan: "),
        "{}",
        out.stderr
    );
    assert_eq!(names(&h), ["ben", "dan"]);
    assert!(h.path("instances/dan/config.json").is_file());
}

#[test]
fn edit_saves_a_valid_change_and_says_when_nothing_changed() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let config = h.path("instances/alice/config.json");
    let before = std::fs::read_to_string(&config).unwrap();

    // An editor that leaves the file as it is.
    let noop = script(&h, "noop-editor", "exit 0");
    let out = run_env(&h, &["edit", "alice"], &[("EDITOR", &noop)]).ok();
    assert!(out.stdout.contains("no change"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    // An editor that changes the memory limit; VISUAL wins over EDITOR.
    let edit = script(
        &h,
        "memory-editor",
        r#"sed -i 's/"memory": "[^"]*"/"memory": "768m"/' "$1""#,
    );
    let out = run_env(
        &h,
        &["edit", "alice"],
        &[("VISUAL", &edit), ("EDITOR", &noop)],
    )
    .ok();
    assert!(out.stdout.contains("saved"), "{}", out.stdout);
    let after = std::fs::read_to_string(&config).unwrap();
    assert!(after.contains("\"memory\": \"768m\""), "{after}");
    assert_eq!(common::mode(&config), 0o600);
    let show = h.run(&["show", "alice", "--json"]).ok().json();
    assert_eq!(show["config"]["limits"]["memory"], "768m");
}

#[test]
fn edit_refuses_an_invalid_config_naming_the_field_and_keeps_the_edit() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let config = h.path("instances/alice/config.json");
    let before = std::fs::read_to_string(&config).unwrap();
    let bad = script(
        &h,
        "bad-editor",
        r#"sed -i 's/"pids": [0-9]*/"pids": "many"/' "$1""#,
    );
    let out = run_env(&h, &["edit", "alice"], &[("EDITOR", &bad)])
        .fails(1, "is unchanged; your edit is kept in ");
    assert!(
        out.stderr.contains(
            "limits.pids: expected a whole number from 0 to 4294967295, got the string \"many\""
        ),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    let kept = out.stderr.trim().rsplit(' ').next().unwrap();
    assert!(std::fs::read_to_string(kept).unwrap().contains("\"many\""));
    std::fs::remove_file(kept).unwrap();

    // A failing editor changes nothing either.
    let fail = script(&h, "failing-editor", "exit 3");
    run_env(&h, &["edit", "alice"], &[("EDITOR", &fail)]).fails(1, "failed");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    h.run(&["edit", "nobody"])
        .fails(1, "no instance named \"nobody\"");

    // A config broken by hand is mended the same way.
    std::fs::write(
        &config,
        before.replace("\"pids\": 256", "\"pids\": \"many\""),
    )
    .unwrap();
    h.run(&["config", "check", "alice"]).fails(1, "not valid");
    let mend = script(
        &h,
        "mend-editor",
        r#"sed -i 's/"pids": "many"/"pids": 256/' "$1""#,
    );
    run_env(&h, &["edit", "alice"], &[("EDITOR", &mend)]).ok();
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    h.run(&["config", "check", "alice"]).ok();
}

#[test]
fn edit_on_a_terminal_reopens_an_invalid_edit() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    assert!(
        Path::new(common::dashboard::SCRIPT).exists(),
        "util-linux script gives edit a terminal"
    );
    // The first edit breaks a field; the editor, reopened on that edit, then fixes it.
    let count = h.scratch().join("rounds");
    let editor = script(
        &h,
        "two-round-editor",
        &format!(
            r#"echo x >> '{count}'
if [ "$(wc -l < '{count}')" -eq 1 ]; then
  sed -i 's/"pids": [0-9]*/"pids": "many"/' "$1"
else
  grep -q '"many"' "$1" || exit 9
  sed -i 's/"pids": "many"/"pids": 99/' "$1"
fi"#,
            count = count.display()
        ),
    );
    let inner = format!(
        "exec '{}' --home '{}' edit alice",
        env!("CARGO_BIN_EXE_supervisor"),
        h.root.display()
    );
    let mut child = std::process::Command::new(common::dashboard::SCRIPT)
        .args(["-qefc", &inner, "/dev/null"])
        .env_remove("SUPERVISOR_HOME")
        .env_remove("VISUAL")
        .env("EDITOR", &editor)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "limits.pids: expected a whole number from 0 to 4294967295, got the string \"many\""
        ),
        "{text}"
    );
    assert!(text.contains("edit it again? [Y/n]"), "{text}");
    assert!(text.contains("saved"), "{text}");
    let show = h.run(&["show", "alice", "--json"]).ok().json();
    assert_eq!(show["config"]["limits"]["pids"], 99);
}

#[test]
fn config_check_names_every_invalid_file_and_field() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    h.run(&["create-instance", "bob"]).ok();
    let out = h.run(&["config", "check"]).ok();
    assert!(
        out.stdout.contains("all 3 configuration files are valid"),
        "{}",
        out.stdout
    );

    std::fs::write(h.path("supervisor.toml"), "[docker]\nsokcet = \"/x\"\n").unwrap();
    let bob = h.path("instances/bob/config.json");
    std::fs::write(&bob, r#"{"version": 1, "network": "host"}"#).unwrap();
    let out = h
        .run(&["config", "check"])
        .fails(1, "2 of 3 configuration files are not valid");
    assert!(
        out.stdout.contains(&format!(
            "invalid  {}: docker.sokcet: not a known key here",
            h.path("supervisor.toml").display()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "invalid  {}: network: expected \"none\" or \"bridge\", got \"host\"",
            bob.display()
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("ok       "), "{}", out.stdout);

    // One instance: its file and supervisor.toml.
    let one = h.run(&["config", "check", "alice", "--json"]);
    assert_eq!(one.code, 1);
    let report = one.json();
    assert_eq!(report.as_array().unwrap().len(), 2);
    assert_eq!(report[0]["field"], "docker.sokcet");
    assert_eq!(report[0]["instance"], serde_json::Value::Null);
    assert_eq!(report[1]["instance"], "alice");
    assert_eq!(report[1]["valid"], true);
    h.run(&["config", "check", "nobody"])
        .fails(1, "no instance named \"nobody\"");
}

#[test]
fn completions_and_man_pages_come_from_the_parser() {
    let h = TestHome::new();
    let bash = h.run(&["completions", "bash"]).ok();
    assert!(
        bash.stdout.contains("complete -F _supervisor"),
        "{}",
        bash.stdout
    );
    assert!(bash.stdout.contains("create-instance"));
    for shell in ["zsh", "fish", "powershell"] {
        let out = h.run(&["completions", shell]).ok();
        assert!(out.stdout.contains("create-instance"), "{shell}");
    }
    h.run(&["completions", "tcsh"]).fails(2, "tcsh");

    let man = h.run(&["man"]).ok();
    assert!(man.stdout.contains(".TH supervisor 1"), "{}", man.stdout);
    let dir = h.scratch().join("man1");
    h.run(&["man", "--dir", dir.to_str().unwrap()]).ok();
    for page in [
        "supervisor.1",
        "supervisor-task-add.1",
        "supervisor-config-check.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.starts_with(".ie"), "{page}");
    }
    assert!(!h.root.exists(), "neither needs a home");
    for args in [&["completions", "fish"][..], &["man"]] {
        let out = bin()
            .args(args)
            .env_remove("HOME")
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?} without HOME");
    }
}

/// What bash's completion offers for the words typed so far, with the generated script.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = format!(
        "source <('{}' completions bash)\nCOMP_WORDS=({})\nCOMP_CWORD={}\n\
         _supervisor supervisor \"${{COMP_WORDS[COMP_CWORD]}}\" \
         \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        env!("CARGO_BIN_EXE_supervisor"),
        words.join(" "),
        words.len() - 1
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_commands_and_options_and_man_renders_the_exit_codes() {
    assert_eq!(bash_completes(&["supervisor", "cre"]), ["create-instance"]);
    assert_eq!(
        bash_completes(&["supervisor", "service", "install", "--sh"]),
        ["--share-dir"]
    );
    assert_eq!(
        bash_completes(&["supervisor", "completions", "fi"]),
        ["fish"]
    );
    // man(1), when installed, renders the page, the exit codes included.
    let page = bin().arg("man").output().unwrap().stdout;
    let Ok(mut man) = std::process::Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("note: man is not on PATH; the page was not rendered");
        return;
    };
    use std::io::Write;
    man.stdin.take().unwrap().write_all(&page).unwrap();
    let shown = man.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("supervisor-create-instance(1)"), "{text}");
    assert!(text.contains("4  doctor found a failure"), "{text}");
}
