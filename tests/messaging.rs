//! Messages through the real daemon, store and IPC files, with the test playing the agent
//! (so each step can be checked and crashes placed exactly).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::agent::writes as agent_writes;
use common::daemon::{wait_until, Daemon, ReadyHome};
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

fn in_dir(h: &ReadyHome) -> PathBuf {
    h.home.ipc_in("alice")
}

fn out_dir(h: &ReadyHome) -> PathBuf {
    h.home.ipc_out("alice")
}

/// The envelopes of one type waiting in in/, in file-name order.
fn envelopes_in(h: &ReadyHome, kind: &str) -> Vec<serde_json::Value> {
    common::agent::envelopes_in(&in_dir(h), kind)
}

fn turns(h: &ReadyHome) -> Vec<serde_json::Value> {
    envelopes_in(h, "turn")
}

fn reply(turn: &str, id: &str, body: &str) -> serde_json::Value {
    json!({"v": 1, "id": id, "ts": 1, "type": "reply", "turn_id": turn, "reply_to": [], "body": body})
}

#[test]
fn a_message_sent_without_a_daemon_is_kept_and_answered_later() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let out = h.home.run(&["send", "alice", "are you there?"]).ok();
    assert!(out.stderr.contains("saved"), "{}", out.stderr);
    h.home
        .run(&["send", "alice", "x", "--wait"])
        .fails(1, "is stored and will be answered once a daemon runs");
    let history = h.home.run(&["history", "alice"]).ok().stdout;
    assert!(
        history.contains("are you there? ") || history.contains("are you there?"),
        "{history}"
    );

    let _daemon = Daemon::start(&h.home);
    assert!(
        wait_until(LONG, || turns(&h).len() == 1),
        "no turn delivered"
    );
    let turn = turns(&h)[0].clone();
    let bodies: Vec<_> = turn["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        [json!("are you there?"), json!("x")],
        "both waiting messages in one turn, in order"
    );
    agent_writes(
        &out_dir(&h),
        reply(turn["turn_id"].as_str().unwrap(), "r1", "yes"),
    );
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "alice"
    )
    .len()
        == 1));
    assert_eq!(common::daemon::finals(&h.home, "alice")[0]["body"], "yes");
}

/// One message under a chosen id, waited for.
const SEND_GREETING: [&str; 7] = [
    "send",
    "alice",
    "hello",
    "--wait",
    "--json",
    "--id",
    "greeting-1",
];

#[test]
fn send_wait_returns_the_answer_and_refused_senders_never_reach_the_agent() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    // alice is stopped (the test is her agent), and `--wait` on a stopped instance says so at
    // once: the message is sent first, answered, and then waited for under its id.
    h.home
        .run(&["send", "alice", "hello", "--id", "greeting-1"])
        .ok();
    assert!(wait_until(LONG, || turns(&h).len() == 1));
    let turn = turns(&h)[0]["turn_id"].as_str().unwrap().to_string();
    agent_writes(&out_dir(&h), reply(&turn, "r1", "hi!"));
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "alice"
    )
    .len()
        == 1));
    let v = h.home.run(&SEND_GREETING).ok().json();
    assert_eq!(
        (v["state"].as_str(), v["reply"].as_str()),
        (Some("answered"), Some("hi!"))
    );
    assert!(v["latency_ms"].as_u64().is_some());
    assert_eq!(v["id"], "greeting-1");

    // Sent again under its id (as after a lost response): the stored answer comes back and
    // nothing new is stored or delivered. The same id for other text is refused.
    let again = h.home.run(&SEND_GREETING).ok().json();
    assert_eq!(
        (again["state"].as_str(), again["reply"].as_str()),
        (Some("answered"), Some("hi!"))
    );
    assert_eq!(turns(&h).len(), 1, "no second turn");
    h.home
        .run(&["send", "alice", "something else", "--id", "greeting-1"])
        .fails(1, "message id \"greeting-1\" is already taken");
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let inbound: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE direction = 'in'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(inbound, 1);

    // Only telegram:42 may speak now: the operator's message is stored as refused.
    let cfg = h.home.path("instances/alice/config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["allow_from"] = json!(["telegram:42"]);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let out = h
        .home
        .run(&["send", "alice", "let me in", "--wait", "--json"])
        .ok()
        .json();
    assert_eq!(out["state"], "refused");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(turns(&h).len(), 1, "no new turn for a refused sender");
}

#[test]
fn a_flood_of_malformed_files_is_quarantined_and_valid_traffic_still_answered() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["send", "alice", "hello"]).ok();
    assert!(wait_until(LONG, || turns(&h).len() == 1));
    let turn = turns(&h)[0]["turn_id"].as_str().unwrap().to_string();
    let out = out_dir(&h);
    for i in 0..300 {
        let name = out.join(format!("{i:05}-junk.json"));
        match i % 6 {
            0 => std::fs::write(&name, b"{truncated").unwrap(),
            1 => std::fs::write(&name, [0xff, 0xfe, 0xfd]).unwrap(),
            2 => std::fs::write(&name, json!({"v": 1, "id": "a/b", "ts": 1, "type": "ready", "agent_version": "x", "protocol": 1}).to_string()).unwrap(),
            3 => std::os::unix::fs::symlink("/etc/shadow", &name).unwrap(),
            4 => std::fs::write(&name, "[".repeat(100_000)).unwrap(),
            _ => std::fs::write(&name, json!({"v": 1, "id": "t", "ts": 1, "type": "turn", "turn_id": "t", "messages": []}).to_string()).unwrap(),
        }
    }
    agent_writes(&out, reply(&turn, "r1", "still here"));
    assert!(
        wait_until(LONG, || common::daemon::finals(&h.home, "alice").len() == 1),
        "valid reply not recorded"
    );
    assert!(
        wait_until(LONG, || std::fs::read_dir(&out).unwrap().count() == 0),
        "out/ not drained"
    );
    // A round copies at most 100 of a flood into the quarantine (the rest are removed and
    // counted), and says so in one event, not one per file.
    let quarantine = h.home.quarantine("alice");
    let reasons = std::fs::read_dir(&quarantine)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".reason"))
        .count();
    assert!((100..=300).contains(&reasons), "{reasons} kept");
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let counts = || -> Vec<i64> {
        db.prepare(
            "SELECT json_extract(detail, '$.count') FROM events WHERE kind = 'ipc.quarantined'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    // What a round held back (one event per ten seconds) is recorded when its window ends.
    wait_until(LONG, || counts().iter().sum::<i64>() >= 300);
    let counts = counts();
    assert_eq!(counts.iter().sum::<i64>(), 300, "{counts:?}");
    assert!(counts.len() <= 3, "one event per round: {counts:?}");
    let health = h.home.run(&["send", "alice", "again"]).ok();
    assert!(
        health.stdout.contains("queued"),
        "daemon still serving: {}",
        health.stdout
    );
}

#[test]
fn the_daemon_watches_each_out_once_its_volume_is_mounted() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    // The image is not mounted when the daemon starts: its actor mounts it, then watches.
    assert!(!h.home.path("instances/alice/volume/ipc").exists());
    let daemon = Daemon::start(&h.home);
    let pid = h.home.run(&["status", "--json"]).ok().json()["daemon"]["pid"]
        .as_i64()
        .unwrap();
    let out = out_dir(&h);
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(&out).unwrap().ino();
    assert!(
        wait_until(LONG, || common::inotify_inodes(pid).contains(&ino)),
        "the daemon holds no inotify watch on alice's out/ (inode {ino}): {:?}\n{}",
        common::inotify_inodes(pid),
        daemon.log_text()
    );
    assert!(
        !daemon.log_text().contains("polled instead"),
        "{}",
        daemon.log_text()
    );

    // A new disk limit: the image is unmounted, resized and mounted again before the
    // container starts. The old watch went with the old mount, even where the directory has
    // the device and inode it had (the same loop device, the same image): it is watched anew.
    h.edit_config("alice", |c| c["limits"]["disk"] = json!("64m"));
    h.home.run(&["start", "alice", "--wait"]).ok();
    let image = h.home.path("instances/alice/volume.img");
    assert!(
        wait_until(LONG, || std::fs::metadata(&image).unwrap().len()
            == 64 << 20),
        "not resized"
    );
    let ino = std::fs::metadata(&out).unwrap().ino();
    assert!(
        wait_until(LONG, || common::inotify_inodes(pid).contains(&ino)),
        "no inotify watch on alice's out/ after its disk was mounted again: {:?}\n{}",
        common::inotify_inodes(pid),
        daemon.log_text()
    );
}

#[test]
fn exactly_one_answer_per_turn_across_a_daemon_kill_and_a_repeated_reply() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["send", "alice", "one"]).ok();
    assert!(wait_until(LONG, || turns(&h).len() == 1));
    let turn = turns(&h)[0]["turn_id"].as_str().unwrap().to_string();
    daemon.kill9();

    // The agent answers while the daemon is down; then answers again (it redid the turn).
    agent_writes(&out_dir(&h), reply(&turn, "r1", "first answer"));
    let mut daemon = Daemon::start(&h.home);
    assert!(
        wait_until(LONG, || common::daemon::finals(&h.home, "alice").len() == 1),
        "{}",
        daemon.log_text()
    );
    agent_writes(&out_dir(&h), reply(&turn, "r2", "second answer"));
    assert!(wait_until(LONG, || std::fs::read_dir(out_dir(&h))
        .unwrap()
        .count()
        == 0));
    let f = common::daemon::finals(&h.home, "alice");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["body"], "first answer");

    // A turn in flight when the daemon dies is delivered again under the same id, once.
    h.home.run(&["send", "alice", "two"]).ok();
    assert!(wait_until(LONG, || turns(&h)
        .iter()
        .any(|t| t["turn_id"] != json!(turn))));
    let second: Vec<_> = turns(&h)
        .into_iter()
        .filter(|t| t["turn_id"] != json!(turn))
        .collect();
    daemon.kill9();
    for f in std::fs::read_dir(in_dir(&h)).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    let _daemon = Daemon::start(&h.home);
    assert!(
        wait_until(LONG, || turns(&h).len() == 1),
        "turn not re-delivered"
    );
    assert_eq!(turns(&h)[0]["turn_id"], second[0]["turn_id"]);
}

fn model_responses(h: &ReadyHome) -> Vec<serde_json::Value> {
    envelopes_in(h, "model_response")
}

fn model_request(id: &str, turn: &str, text: &str) -> serde_json::Value {
    json!({"v": 1, "id": format!("env{id}"), "ts": 2, "type": "model_request", "request_id": id, "turn_id": turn,
           "messages": [{"role": "user", "content": text}], "tools": []})
}

#[test]
fn the_host_answers_model_requests_and_enforces_the_daily_budget() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let cfg = h.home.path("instances/alice/config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    // Room for the first question's prompt (about 110 tokens), not for what echo then counts
    // for it and its answer (about 200).
    c["budget"]["daily_tokens"] = json!(150);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["send", "alice", "hello"]).ok();
    assert!(wait_until(LONG, || turns(&h).len() == 1));
    let turn = turns(&h)[0]["turn_id"].as_str().unwrap().to_string();

    let question = format!(
        "a question long enough to cost some tokens {}",
        "?".repeat(360)
    );
    agent_writes(&out_dir(&h), model_request("q1", &turn, &question));
    assert!(wait_until(LONG, || model_responses(&h).len() == 1));
    let first = &model_responses(&h)[0];
    assert_eq!(first["request_id"], "q1");
    assert_eq!(first["content"], format!("echo: {question}"));
    assert!(first.get("error").is_none());

    agent_writes(&out_dir(&h), model_request("q2", &turn, "again"));
    assert!(wait_until(LONG, || model_responses(&h).len() == 2));
    let second = model_responses(&h)
        .into_iter()
        .find(|r| r["request_id"] == "q2")
        .unwrap();
    let error = second["error"].as_str().unwrap();
    assert!(
        error.contains("daily model budget of 150 tokens is used up"),
        "{error}"
    );

    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let statuses: Vec<String> = db
        .prepare("SELECT status FROM model_usage ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "refused"]);
}
