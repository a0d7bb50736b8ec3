//! `status --watch`: refused without a terminal; under a pseudo-terminal (util-linux
//! `script`) it draws the instances, quits on `q` and gives the screen back.

mod common;

use std::time::{Duration, Instant};

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

enum Quit {
    Key,
    Sigterm,
}

fn watch_then_quit(how: Quit) {
    let h = TestHome::new();
    for name in ["alice", "bob"] {
        h.run(&["create-instance", name]).ok();
    }
    let mut d = Dashboard::start(&h.root, 160, 40);
    // The daemon is down, so the header says so; both instances are in the table.
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
