//! `status --watch`: refused without a terminal; under a pseudo-terminal (util-linux
//! `script`) it draws the instances, quits on `q` and gives the screen back.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{Daemon, ReadyHome};
use common::dashboard::Dashboard;
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

/// A dashboard whose terminal goes away (its `script` killed, so the terminal hangs up) ends,
/// rather than spinning on a terminal that always reads ready.
#[test]
fn a_dashboard_whose_terminal_hangs_up_ends() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let d = Dashboard::start(&h.root, 120, 40);
    wait_for_text(&d, "alice");
    let pid = d.pid();
    drop(d);
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|rest| !rest.starts_with('Z')))
            .unwrap_or(false)
    };
    let ended = common::daemon::wait_until(DEADLINE, || !alive());
    if !ended {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(ended, "the dashboard ran on after its terminal hung up");
}

enum Quit {
    Key,
    Sigterm,
}

fn watch_then_quit(how: Quit) {
    let h = TestHome::new();
    for name in ["alice", "bob"] {
        h.run(&["create-instance", name]).ok();
    }
    let config = h.path("instances/alice/config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["channels"] = serde_json::json!({"webhook": {"secret_env": "ALICE_WEBHOOK_SECRET"}});
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let mut d = Dashboard::start(&h.root, 160, 40);
    // The daemon is down, so the header says so; both instances are in the table, and the
    // selected one's channel (nothing runs it) under it.
    let start = Instant::now();
    while !["alice", "bob", "DOWN"]
        .iter()
        .all(|w| d.text().contains(w))
    {
        assert!(
            start.elapsed() < DEADLINE,
            "the dashboard never showed up:\n{}",
            d.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_text(&d, "webhook: not running");
    match how {
        Quit::Key => d.press(b"q"),
        Quit::Sigterm => {
            nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGTERM).unwrap()
        }
    }
    let (status, out) = d.finish(DEADLINE);
    let status = status.unwrap_or_else(|| panic!("the dashboard did not quit:\n{out}"));
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

/// What was drawn, without escape sequences and without blanks: the terminal library moves
/// the cursor over runs of spaces, so only the printed characters are in order.
fn flat(drawn: &str) -> String {
    let mut out = String::new();
    let mut chars = drawn.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final byte in @..~.
                for p in chars.by_ref() {
                    if ('@'..='~').contains(&p) {
                        break;
                    }
                }
            }
            continue;
        }
        if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Waits until the screen (everything drawn so far) holds `needle`, blanks aside.
fn wait_for_text(d: &Dashboard, needle: &str) {
    let start = Instant::now();
    while !flat(&d.text()).contains(&flat(needle)) {
        assert!(
            start.elapsed() < DEADLINE,
            "{needle:?} never showed up:\n{}",
            d.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn desired(h: &TestHome, name: &str) -> String {
    let list = h.run(&["list", "--json"]).ok().json();
    let found = list.as_array().unwrap().iter().find(|i| i["name"] == name);
    found.unwrap()["desired_state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn keys_on_screen_stop_start_and_follow_the_selected_instances_logs_at_80_columns() {
    let h = TestHome::new();
    h.run(&["create-instance", "alice"]).ok();
    let mut d = Dashboard::start(&h.root, 80, 24);
    let home = h.root.display().to_string();
    wait_for_text(
        &d,
        &format!("DOWN (start it with `supervisor --home {home}"),
    );
    for key in ["X stop", "U start", "R restart", "l follow logs"] {
        wait_for_text(&d, key);
    }
    assert_eq!(desired(&h, "alice"), "stopped");

    // Start, as `start alice` would: saved, and the note that no daemon runs is shown.
    d.press(b"U");
    let start = Instant::now();
    while desired(&h, "alice") != "running" {
        assert!(start.elapsed() < DEADLINE, "U did not start alice");
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_text(&d, "note: saved, but no supervisor daemon is running");
    d.press(b"X");
    let start = Instant::now();
    while desired(&h, "alice") != "stopped" {
        assert!(start.elapsed() < DEADLINE, "X did not stop alice");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Its logs on the normal screen; it has no container, so `logs` says so and the
    // dashboard waits for Enter, then comes back.
    d.press(b"l");
    wait_for_text(&d, "following alice's logs");
    wait_for_text(&d, "press Enter to return to the dashboard");
    let drawn = d.text().len();
    d.press(b"\r");
    let start = Instant::now();
    while !flat(&d.text()[drawn..]).contains("Xstop") {
        assert!(
            start.elapsed() < DEADLINE,
            "the dashboard did not come back:\n{}",
            d.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.press(b"q");
    let (status, out) = d.finish(DEADLINE);
    let status = status.unwrap_or_else(|| panic!("the dashboard did not quit:\n{out}"));
    assert!(status.success(), "{status}:\n{out}");
}

/// With a daemon, the detail pane's log lines come from it: the dashboard itself cannot
/// reach any Docker engine here.
#[test]
fn the_detail_pane_shows_the_containers_last_lines_through_the_daemon() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let nowhere = format!(
        "unix://{}",
        h.home.scratch().join("no-docker-here.sock").display()
    );
    let mut d = Dashboard::start_with_env(&h.home.root, 160, 40, &[("DOCKER_HOST", &nowhere)]);
    wait_for_text(&d, "alice");
    // Enter opens the detail pane of the selected (first) instance.
    d.press(b"\r");
    wait_for_text(&d, "ready (protocol 1)");
    d.press(b"q");
    let (status, out) = d.finish(DEADLINE);
    let status = status.unwrap_or_else(|| panic!("the dashboard did not quit:\n{out}"));
    assert!(status.success(), "{status}:\n{out}");
    assert!(!out.contains("no logs"), "{out}");
}
