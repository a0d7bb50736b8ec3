//! `send --wait` and `chat` where no answer can come: no daemon, a stopped instance, one in
//! `error`. Each fails at once with the state and its fix, and the message is kept. Blank
//! messages are refused before anything is stored; `send NAME -` reads standard input.

mod common;

use common::daemon::Daemon;
use common::TestHome;

/// The texts of an instance's stored messages, oldest first.
fn stored(home: &TestHome, instance: &str) -> Vec<String> {
    home.run(&["history", instance, "--json", "--limit", "100"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

/// `send` with `input` on standard input.
fn send_stdin(home: &TestHome, args: &[&str], input: &[u8]) -> common::Run {
    let mut all = vec!["send"];
    all.extend_from_slice(args);
    home.run_with_input(&all, input)
}

#[test]
fn waiting_where_no_answer_can_come_fails_at_once_and_keeps_the_message() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();

    // No daemon at all.
    let out = home
        .run(&["send", "alice", "anyone?", "--wait"])
        .fails(1, "no supervisor daemon is running");
    assert!(
        out.stderr
            .contains("is stored and will be answered once a daemon runs"),
        "{}",
        out.stderr
    );

    // A daemon, and alice stopped (as created). A long timeout: only an answer at once passes.
    let _daemon = Daemon::start(&home);
    let out = home
        .run(&["send", "alice", "hello?", "--wait", "--timeout", "600"])
        .fails(1, "alice is stopped");
    assert!(
        out.stderr
            .contains("start it with `supervisor start alice`")
            && out
                .stderr
                .contains("is stored and will be answered once alice runs"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("daemon status"), "{}", out.stderr);

    // Started, but no runtime is active: `error`, with the reason and its fix.
    home.run(&["start", "alice"]).ok();
    let out = home
        .run(&[
            "send",
            "alice",
            "still there?",
            "--wait",
            "--timeout",
            "600",
        ])
        .fails(1, "alice is in state error: no active runtime");
    assert!(
        out.stderr.contains("supervisor runtime build --activate"),
        "{}",
        out.stderr
    );
    let chat = home.run(&["chat", "alice", "--timeout", "600"]);
    let chat = chat.fails(1, "alice is in state error: no active runtime");
    assert!(chat.stdout.is_empty(), "{}", chat.stdout);

    assert_eq!(
        stored(&home, "alice"),
        ["anyone?", "hello?", "still there?"],
        "every message is kept, to be answered later"
    );
}

#[test]
fn blank_messages_are_refused_and_a_dash_reads_standard_input() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    for blank in ["", "   ", "\n\t"] {
        home.run(&["send", "alice", blank])
            .fails(1, "the message is empty");
    }
    send_stdin(&home, &["alice", "-"], b"\n").fails(1, "the message is empty");
    assert!(stored(&home, "alice").is_empty(), "nothing was stored");

    let out = send_stdin(&home, &["alice", "-"], b"line one\nline two\n").ok();
    assert!(out.stdout.contains("is queued"), "{}", out.stdout);
    send_stdin(&home, &["alice", "-"], &vec![b'x'; 64 * 1024 + 1]).fails(1, "at most 65536 bytes");
    assert_eq!(stored(&home, "alice"), ["line one\nline two"]);

    // Through the daemon, too.
    let _daemon = Daemon::start(&home);
    home.run(&["send", "alice", " "])
        .fails(1, "the message is empty");
    assert_eq!(stored(&home, "alice").len(), 1);
}

#[test]
fn a_broken_config_is_judged_by_the_last_valid_one_with_or_without_a_daemon() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    let config = home.path("instances/alice/config.json");
    let restrict_and_send = |home: &TestHome| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        v["allow_from"] = serde_json::json!(["telegram:7"]);
        std::fs::write(&config, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        let state = |args: &[&str]| home.run(args).ok().stdout;
        state(&["send", "alice", "judged", "--json"])
    };
    // No daemon: the CLI reads the valid config (local is not let in), then a broken edit.
    let first = restrict_and_send(&home);
    assert!(first.contains("\"state\":\"refused\""), "{first}");
    std::fs::write(&config, "{").unwrap();
    let broken = home
        .run(&["send", "alice", "after the edit", "--json"])
        .ok();
    assert!(
        broken.stdout.contains("\"state\":\"refused\""),
        "the last valid config judged it: {}{}",
        broken.stdout,
        broken.stderr
    );

    // The daemon judges it alike, and so does the CLI after the daemon is gone.
    let mut daemon = Daemon::start(&home);
    let through = home
        .run(&["send", "alice", "through the daemon", "--json"])
        .ok();
    assert!(
        through.stdout.contains("\"state\":\"refused\""),
        "{}",
        through.stdout
    );
    daemon.terminate();
    let after = home
        .run(&["send", "alice", "after the daemon", "--json"])
        .ok();
    assert!(
        after.stdout.contains("\"state\":\"refused\""),
        "{}",
        after.stdout
    );
    assert_eq!(
        stored(&home, "alice"),
        [
            "judged",
            "after the edit",
            "through the daemon",
            "after the daemon"
        ]
    );
}
