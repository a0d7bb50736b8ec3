//! `status --watch`: refused without a terminal; under a pseudo-terminal (util-linux
//! `script`) it draws the instances, quits on `q` and gives the screen back.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestHome;

/// Liveness only: how long before a stuck dashboard counts as a failure.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn watch_needs_a_terminal() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let run = h.run(&["status", "--watch"]).fails(1, "terminal");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    h.run(&["status", "--watch", "--json"])
        .fails(2, "cannot be used with");
    h.run(&["status", "--interval", "5"]).fails(2, "--watch");
    h.run(&["status", "--watch", "--interval", "0.1"])
        .fails(2, "at least 0.5");
}

#[test]
fn watch_draws_the_instances_and_quits_on_q() {
    watch_then_quit(Quit::Key);
}

#[test]
fn sigterm_ends_the_dashboard_and_gives_the_screen_back() {
    watch_then_quit(Quit::Sigterm);
}

enum Quit {
    Key,
    Sigterm,
}

/// The dashboard's process: `script` runs it (through `exec`) as its only child.
fn dashboard_pid(script: &std::process::Child) -> nix::unistd::Pid {
    let children = format!("/proc/{0}/task/{0}/children", script.id());
    let text = std::fs::read_to_string(children).unwrap();
    let pid: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
    nix::unistd::Pid::from_raw(pid)
}

fn watch_then_quit(how: Quit) {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no util-linux `script` to give the dashboard a terminal");
        return;
    }
    let h = TestHome::new();
    for name in ["alice", "bob"] {
        h.run(&["create-instance", name]).ok();
    }
    // A pseudo-terminal made by `script` starts 0x0 when its own input is a pipe: size it.
    let inner = format!(
        "stty cols 160 rows 40 && exec '{}' --home '{}' status --watch",
        env!("CARGO_BIN_EXE_supervisor"),
        h.root.display()
    );
    let mut child = Command::new("/usr/bin/script")
        .args(["-qefc", &inner, "/dev/null"])
        .env_remove("SUPERVISOR_HOME")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script");
    let screen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&screen.lock().unwrap()).into_owned();

    // The daemon is down, so the header says so; both instances are in the table.
    let start = Instant::now();
    while !["alice", "bob", "DOWN"].iter().all(|w| text().contains(w)) {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the dashboard never showed up:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdin = child.stdin.take().unwrap();
    match how {
        Quit::Key => {
            stdin.write_all(b"q").unwrap();
            stdin.flush().unwrap();
        }
        Quit::Sigterm => {
            nix::sys::signal::kill(dashboard_pid(&child), nix::sys::signal::Signal::SIGTERM)
                .unwrap()
        }
    }

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("the dashboard did not quit:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    reader.join().unwrap();
    let out = text();
    assert!(status.success(), "{status}:\n{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(
        out.contains("\u{1b}[?1049h"),
        "entered the alternate screen"
    );
    assert!(
        out.rfind("\u{1b}[?1049l") > out.rfind("\u{1b}[?1049h"),
        "left the alternate screen at the end:\n{out:?}"
    );
}
