//! What an operator watches live, through real containers and a real daemon: `history -f`
//! as messages and answers arrive (across a daemon restart), and `logs` with both of the
//! container's streams on stdout, `--since` and `--timestamps`.

mod common;

use common::daemon::{Daemon, ReadyHome};
use common::follower::Follower;
use serde_json::Value;

/// A home with alice running under a daemon.
fn alice_running() -> (ReadyHome, Daemon) {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    (h, daemon)
}

#[test]
fn history_follow_prints_each_message_and_answer_once_as_they_arrive() {
    let (h, mut daemon) = alice_running();
    h.home.run(&["send", "alice", "before", "--wait"]).ok();
    let follower = Follower::start(&h.home, &["history", "alice", "-f", "--limit", "1"]);
    let json = Follower::start(
        &h.home,
        &["history", "alice", "-f", "--json", "--limit", "0"],
    );
    follower.expect("alice: echo: [local] before");

    // What the sender wrote, and so the echo of it, is shown escaped.
    h.home
        .run(&["send", "alice", "clear \u{1b}[2J\u{202e}now", "--wait"])
        .ok();
    // (Shown as it is when the follower sees it: waiting, or already answered.)
    assert!(follower
        .expect(r": clear \u{1b}[2J\u{202e}now")
        .contains("  local"));
    follower.expect(r"alice: echo: [local] clear \u{1b}[2J\u{202e}now");

    // The daemon goes away: a message stored meanwhile shows, and its answer once a daemon
    // runs again.
    daemon.kill9();
    h.home.run(&["send", "alice", "while away"]).ok();
    follower.expect("local (waiting): while away");
    let _daemon = Daemon::start(&h.home);
    follower.expect("alice: echo: [local] while away");

    let lines = follower.lines();
    assert!(!lines.iter().any(|l| l.contains(": before")), "{lines:#?}");
    for needle in [
        "local (waiting): while away",
        "alice: echo: [local] while away",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(needle)).count(),
            1,
            "{lines:#?}"
        );
    }
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')));

    // --json: one exact object per line.
    let line = json.expect("echo: [local] while away");
    let m: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (m["direction"].as_str(), m["state"].as_str()),
        (Some("out"), Some("final"))
    );
    // --limit 0: only what came after it started.
    assert!(
        !json.lines().iter().any(|l| l.contains("before")),
        "{:#?}",
        json.lines()
    );
    let escaped = json.expect("clear");
    let m: Value = serde_json::from_str(&escaped).unwrap();
    assert_eq!(m["body"], "clear \u{1b}[2J\u{202e}now");
}

#[test]
fn history_follow_works_without_a_daemon_and_ends_when_the_instance_is_removed() {
    let home = common::TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    let mut follower = Follower::start(&home, &["history", "alice", "-f"]);
    // No daemon: the message is stored by the command itself.
    home.run(&["send", "alice", "anyone there?"]).ok();
    follower.expect("local (waiting): anyone there?");
    home.run(&["remove", "alice", "--purge"]).ok();
    assert!(
        common::daemon::wait_until(std::time::Duration::from_secs(60), || !follower
            .is_running()),
        "history -f went on after the instance was removed"
    );
    home.run(&["history", "nobody", "-f"]).fails(1, "nobody");
}

#[test]
fn logs_puts_both_streams_on_stdout_and_takes_since_and_timestamps() {
    let (h, _daemon) = alice_running();
    h.home.run(&["send", "alice", "hello", "--wait"]).ok();

    // The agent reports on its stderr; a pipe gets it.
    let logs = h.home.run(&["logs", "alice"]).ok();
    assert!(
        logs.stdout.lines().any(|l| l.contains("answered")),
        "stdout: {}\nstderr: {}",
        logs.stdout,
        logs.stderr
    );
    assert_eq!(logs.stderr, "");

    let stamped = h.home.run(&["logs", "alice", "--timestamps"]).ok().stdout;
    let line = stamped.lines().find(|l| l.contains("answered")).unwrap();
    let (stamp, _) = line.split_once(' ').unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{line}"
    );

    let recent = h.home.run(&["logs", "alice", "--since", "1h"]).ok().stdout;
    assert!(recent.contains("answered"), "{recent}");
    let since_start = h
        .home
        .run(&["logs", "alice", "--since", "2000-01-01T00:00:00Z"])
        .ok()
        .stdout;
    assert_eq!(since_start, logs.stdout);
    let future = h
        .home
        .run(&["logs", "alice", "--since", "2037-01-01T00:00:00+01:00"])
        .ok();
    assert_eq!(future.stdout, "");

    h.home
        .run(&["logs", "alice", "--since", "yesterday"])
        .fails(2, "expected a duration back from now such as 30s, 10m");
}

/// `supervisor --home H ARGS` whose own way to the Docker engine leads nowhere.
fn without_engine(h: &ReadyHome, args: &[&str]) -> (i32, String, String) {
    let nowhere = h.home.scratch().join("no-docker-here.sock");
    let out = common::bin()
        .arg("--home")
        .arg(&h.home.root)
        .args(args)
        .env("DOCKER_HOST", format!("unix://{}", nowhere.display()))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn with_a_daemon_logs_ask_it_and_need_no_engine_of_their_own() {
    let (h, mut daemon) = alice_running();
    h.home.run(&["send", "alice", "hello", "--wait"]).ok();

    // The daemon reads the output from its engine; the command cannot reach one itself.
    let (code, out, err) = without_engine(&h, &["logs", "alice"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.contains("ready (protocol 1)"), "{out}");
    assert!(out.lines().any(|l| l.contains("answered")), "{out}");
    let (code, out, _) = without_engine(&h, &["logs", "alice", "--tail", "1", "--timestamps"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (stamp, _) = out.split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "{out}");
    // An instance without a container: the same sentence as without a daemon.
    h.home.run(&["create-instance", "bob"]).ok();
    let (code, _, err) = without_engine(&h, &["logs", "bob"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: bob has no container yet (start it with `supervisor start bob`)\n"
    );

    // The endpoint: the agent's report arrives as its stderr, as text.
    let home = supervisor::infra::home::Home::new(&h.home.root).unwrap();
    let pieces = supervisor::infra::blocking::block_on(async {
        let client = supervisor::app::client::DaemonClient::for_home(&home);
        let mut answer = client.logs("alice", &Default::default()).await.unwrap();
        let mut pieces = Vec::new();
        while let Some(piece) = answer.next().await {
            pieces.push(piece.unwrap());
        }
        pieces
    });
    use supervisor::app::container_output::LogPiece;
    assert!(
        pieces
            .iter()
            .any(|p| matches!(p, LogPiece::Stderr(t) if t.contains("answered"))),
        "{pieces:#?}"
    );

    // Following through the daemon, then on from the engine once the daemon stops (the
    // container runs on).
    let follower = Follower::start(&h.home, &["logs", "alice", "-f", "--tail", "0"]);
    // The follower attaches in its own time and, with --tail 0, shows only what comes after:
    // send until a turn's line reaches it.
    assert!(
        common::daemon::wait_until(std::time::Duration::from_secs(60), || {
            h.home.run(&["send", "alice", "later", "--wait"]).ok();
            follower.lines().iter().any(|l| l.contains("answered"))
        }),
        "{:#?}",
        follower.lines()
    );
    assert!(daemon.terminate().success());
    // Without a daemon the agent still reports a file it cannot read.
    std::fs::write(
        h.home.ipc_in("alice").join("after-the-daemon.json"),
        b"{not an envelope",
    )
    .unwrap();
    follower.expect("after-the-daemon");
    // And without a daemon, `logs` is the engine's business again.
    let (code, _, err) = without_engine(&h, &["logs", "alice"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the Docker engine"), "{err}");
}
