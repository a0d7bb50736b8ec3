//! Conversations through real containers: the agent in its sandbox, the host's broker, the
//! store. Models are `echo` or a small OpenAI-compatible server on loopback.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, with_docker, Daemon, ReadyHome};
use common::fake_llm::FakeLlm;
use serde_json::json;
use supervisor::infra::docker::container;

const LONG: Duration = Duration::from_secs(60);

fn use_model(h: &ReadyHome, instance: &str, name: &str, fake: &FakeLlm) {
    h.edit_config(instance, |c| {
        c["model"] = json!({"provider": "openai", "name": name, "base_url": fake.base_url,
                            "api_key_env": null});
    });
}

#[test]
fn send_wait_through_the_container_with_echo() {
    let h = ReadyHome::new();
    h.home
        .run(&["create-instance", "alice", "--soul", "expert"])
        .ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let out = h
        .home
        .run(&["send", "alice", "what is on my list today?", "--wait"])
        .ok();
    assert_eq!(out.stdout.trim(), "echo: [local] what is on my list today?");
    let v = h
        .home
        .run(&["send", "alice", "and tomorrow?", "--wait", "--json"])
        .ok()
        .json();
    assert_eq!(v["reply"], "echo: [local] and tomorrow?");
    for field in ["id", "instance", "state", "latency_ms"] {
        assert!(v.get(field).is_some(), "{field}");
    }
    let history = h.home.run(&["history", "alice"]).ok().stdout;
    assert_eq!(history.lines().count(), 4, "{history}");
}

#[test]
fn messages_to_a_running_instance_wake_no_reconcile_pass() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    // The reconciler logs each pass it makes.
    let passes = || daemon.log_text().matches("reconcile pass").count();
    let before = passes();
    const SENDS: usize = 10;
    for i in 0..SENDS {
        let text = format!("message {i}");
        let out = h.home.run(&["send", "alice", &text, "--wait"]).ok();
        assert_eq!(out.stdout.trim(), format!("echo: [local] {text}"));
    }
    // Each used to wake a pass of its own; what passes remain came from elsewhere (the
    // engine's events, the safety tick).
    let during = passes() - before;
    assert!(during < SENDS, "{during} passes for {SENDS} messages");
}

#[test]
fn a_tool_calling_conversation_writes_the_workspace() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    use_model(&h, "alice", "tools", &fake);
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let out = h
        .home
        .run(&["send", "alice", "please take a note", "--wait"])
        .ok();
    assert!(out.stdout.starts_with("done: "), "{}", out.stdout);
    let note =
        std::fs::read_to_string(h.home.workspace("alice").join("notes/from-agent.md")).unwrap();
    assert_eq!(note, "written by the agent\n");
    assert_eq!(fake.calls(), 2, "one tool round, then the answer");
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let (n, tokens): (i64, i64) = db
        .query_row("SELECT count(*), sum(prompt_tokens + completion_tokens) FROM model_usage WHERE status = 'ok'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((n, tokens), (2, 43));
}

#[test]
fn a_slow_instance_never_delays_another() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    for (name, model) in [("slowpoke", "slow"), ("quick", "fast")] {
        h.home.run(&["create-instance", name]).ok();
        use_model(&h, name, model, &fake);
    }
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "--all", "--wait"]).ok();
    h.home.run(&["send", "slowpoke", "take your time"]).ok();
    assert!(wait_until(LONG, || fake.calls() >= 1), "slow request sent");
    let out = h.home.run(&["send", "quick", "hurry", "--wait"]).ok();
    assert_eq!(out.stdout.trim(), "fast answer");
    assert!(
        common::daemon::finals(&h.home, "slowpoke").is_empty(),
        "quick was answered while slowpoke still thinks"
    );
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "slowpoke"
    )
    .len()
        == 1));
}

#[test]
fn a_container_killed_mid_turn_still_answers_exactly_once() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    use_model(&h, "alice", "slow", &fake);
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    h.home.run(&["send", "alice", "think hard"]).ok();
    assert!(
        wait_until(LONG, || fake.calls() >= 1),
        "the turn reached the model"
    );
    let id = h.container_of("alice").unwrap().id;
    with_docker(async move |d| container::kill(&d, &id).await.unwrap());
    assert!(
        wait_until(Duration::from_secs(90), || common::daemon::finals(
            &h.home, "alice"
        )
        .len()
            == 1),
        "never answered"
    );
    std::thread::sleep(Duration::from_secs(5));
    let f = common::daemon::finals(&h.home, "alice");
    assert_eq!(f.len(), 1, "answered exactly once: {f:?}");
    assert_eq!(f[0]["body"], "slow answer");
    assert!(fake.calls() >= 2, "the restarted agent redid the turn");
}

#[test]
fn over_budget_gets_a_clear_reply_and_no_request() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    use_model(&h, "alice", "fast", &fake);
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert_eq!(
        h.home
            .run(&["send", "alice", "one", "--wait"])
            .ok()
            .stdout
            .trim(),
        "fast answer"
    );
    let calls = fake.calls();
    let failed_send = |text: &str| {
        let out = h.home.run(&["send", "alice", text, "--wait", "--json"]);
        assert_eq!(out.code, 1, "a failed turn is a failed send");
        let v = out.json();
        assert_eq!(v["failed"], true);
        v["reply"].as_str().unwrap().to_string()
    };

    // The fake provider counts 15 tokens a call: a budget of 15 is used up.
    h.edit_config("alice", |c| c["budget"]["daily_tokens"] = json!(15));
    let reply = failed_send("two");
    assert!(
        reply.contains("daily model budget of 15 tokens is used up"),
        "{reply}"
    );
    assert_eq!(fake.calls(), calls, "no request went out");

    // 85 tokens left: less than the agent's prompt (its persona alone is longer), so no
    // request goes out either, however few tokens it would ask for.
    h.edit_config("alice", |c| c["budget"]["daily_tokens"] = json!(100));
    let reply = failed_send("three");
    assert!(
        reply.contains("does not fit in what is left of the daily model budget (85 of 100 tokens)"),
        "{reply}"
    );
    assert_eq!(fake.calls(), calls, "no request went out");
}

#[test]
fn chat_reads_lines_and_prints_answers() {
    use std::io::Write;
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let mut child = common::bin()
        .arg("--home")
        .arg(&h.home.root)
        .args(["chat", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"first\n\nsecond\n/quit\nnever sent\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "alice> echo: [local] first\nalice> echo: [local] second\n"
    );
    assert_eq!(common::daemon::finals(&h.home, "alice").len(), 2);
}

#[test]
fn the_daemon_killed_mid_turn_still_answers_exactly_once() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    use_model(&h, "alice", "slow", &fake);
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    h.home.run(&["send", "alice", "think hard"]).ok();
    assert!(
        wait_until(LONG, || fake.calls() >= 1),
        "the turn reached the model"
    );
    daemon.kill9();
    let _again = Daemon::start(&h.home);
    assert!(
        wait_until(Duration::from_secs(90), || common::daemon::finals(
            &h.home, "alice"
        )
        .len()
            == 1),
        "never answered"
    );
    h.home.run(&["send", "alice", "and then?", "--wait"]).ok();
    let f = common::daemon::finals(&h.home, "alice");
    assert_eq!(f.len(), 2, "each message answered exactly once: {f:?}");
    let history = h.home.run(&["history", "alice", "--json"]).ok().json();
    let answered = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "in" && m["state"] == "answered")
        .count();
    assert_eq!(answered, 2);
}
