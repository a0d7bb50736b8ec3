//! `supervisor exec` and `supervisor shell` against a real container: the agent's user, the
//! toolbox's commands, stdin, stdout, stderr and the exit code passed through, a terminal for
//! `shell`, and a clear refusal when the container is not running.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::daemon::{Daemon, ReadyHome};
use common::{bin, Run};

/// `supervisor --home H ARGS` with `input` on its stdin.
fn run_with_input(h: &ReadyHome, args: &[&str], input: &str) -> Run {
    let mut child = bin()
        .arg("--home")
        .arg(&h.home.root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn exec_and_shell_run_in_the_container_as_the_agent() {
    let h = ReadyHome::new();
    h.home
        .run(&["create-instance", "alice", "--model", "echo"])
        .ok();
    h.home
        .run(&["exec", "alice", "--", "true"])
        .fails(1, "alice has no running container (it is stopped");
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let uid = h.record("alice").uid;

    // As the agent's own user, in its workspace, with busybox's utilities by name.
    let out = h.home.run(&["exec", "alice", "--", "id", "-u"]).ok();
    assert_eq!(out.stdout.trim(), uid.to_string());
    let out = h.home.run(&["exec", "alice", "--", "pwd"]).ok();
    assert_eq!(out.stdout.trim(), "/workspace");
    let out = h
        .home
        .run(&["exec", "alice", "--", "ls", "/workspace"])
        .ok();
    assert!(out.stdout.contains("SOUL.md"), "{}", out.stdout);
    // The runtime's own binaries are on PATH too; an absolute path runs as it is.
    let out = h
        .home
        .run(&[
            "exec",
            "alice",
            "--",
            "/opt/runtime/toolbox/busybox",
            "echo",
            "hi",
        ])
        .ok();
    assert_eq!(out.stdout, "hi\n");

    // stdin in, stdout and stderr apart, the exit code out.
    let out = run_with_input(
        &h,
        &[
            "exec",
            "alice",
            "--",
            "sh",
            "-c",
            "cat; echo oops >&2; exit 7",
        ],
        "hello from stdin\n",
    );
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(out.stdout, "hello from stdin\n");
    assert_eq!(out.stderr, "oops\n");
    let out = h.home.run(&["exec", "alice", "--", "no-such-command"]);
    assert_eq!(out.code, 127, "{} {}", out.stdout, out.stderr);

    // A shell reads its commands from stdin when it is not a terminal.
    let out = run_with_input(&h, &["shell", "alice"], "id -g\ncd /tmp && pwd\nexit 3\n");
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, format!("{uid}\n/tmp\n"));

    // With a terminal, the shell gets one of the same size.
    if std::path::Path::new(common::dashboard::SCRIPT).exists() {
        let inner = format!(
            "stty cols 101 rows 33 && exec '{}' --home '{}' shell alice",
            env!("CARGO_BIN_EXE_supervisor"),
            h.home.root.display()
        );
        let mut child = Command::new(common::dashboard::SCRIPT)
            .args(["-qefc", &inner, "/dev/null"])
            .env_remove("SUPERVISOR_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"tty; stty size; exit 4\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{text}");
        assert!(text.contains("/dev/pts/"), "{text}");
        assert!(text.contains("33 101"), "{text}");
    }

    h.home.run(&["exec", "alice"]).fails(2, "CMD");
    h.home.run(&["stop", "alice", "--wait"]).ok();
    h.home
        .run(&["shell", "alice"])
        .fails(1, "start it with `supervisor start alice --wait`");
}
