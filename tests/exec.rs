//! `supervisor exec` and `supervisor shell` against a real container: the agent's user, the
//! toolbox's commands, stdin, stdout, stderr and the exit code passed through, a terminal for
//! `shell`, and a clear refusal when the container is not running.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, ReadyHome};
use common::Run;

/// `supervisor --home H ARGS` with `input` on its stdin.
fn run_with_input(h: &ReadyHome, args: &[&str], input: &str) -> Run {
    h.home.run_with_input(args, input.as_bytes())
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

    // With a terminal, the shell gets one of the same size, and follows it when it changes.
    shell_on_a_terminal(&h);

    h.home.run(&["exec", "alice"]).fails(2, "CMD");
    h.home.run(&["stop", "alice", "--wait"]).ok();
    h.home
        .run(&["shell", "alice"])
        .fails(1, "start it with `supervisor start alice --wait`");
}

/// `supervisor shell alice` under util-linux `script`, its terminal resized from outside.
fn shell_on_a_terminal(h: &ReadyHome) {
    assert!(
        std::path::Path::new(common::dashboard::SCRIPT).exists(),
        "util-linux script gives the shell a terminal"
    );
    let tty_file = h.home.scratch().join("tty");
    let inner = format!(
        "tty > '{}' && stty cols 101 rows 33 && exec '{}' --home '{}' shell alice",
        tty_file.display(),
        env!("CARGO_BIN_EXE_supervisor"),
        h.home.root.display()
    );
    let mut child = Command::new(common::dashboard::SCRIPT)
        .args(["-qefc", &inner, "/dev/null"])
        .env_remove("SUPERVISOR_HOME")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let screen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let screen = screen.clone();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();
    let mut stdin = child.stdin.take().unwrap();
    // Asks until the answer shows: typing before the shell is up is not lost, but the size
    // may change only after the resize has reached the engine.
    let mut ask_until = |question: &[u8], answer: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !shown().contains(answer) {
            assert!(Instant::now() < deadline, "no {answer:?} in {}", shown());
            stdin.write_all(question).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    ask_until(b"tty; stty size\n", "33 101");
    assert!(shown().contains("/dev/pts/"), "{}", shown());

    // The terminal shrinks, as when its window does: the kernel signals the foreground
    // process (the supervisor), which resizes the shell's terminal.
    let pts = std::fs::read_to_string(&tty_file).unwrap();
    let pts = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pts.trim())
        .unwrap();
    let size = nix::libc::winsize {
        ws_row: 20,
        ws_col: 60,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    let rc = unsafe { nix::libc::ioctl(pts.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    ask_until(b"stty size\n", "20 60");

    stdin.write_all(b"exit 4\n").unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert_eq!(status.code(), Some(4), "{}", shown());
}
