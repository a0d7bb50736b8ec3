//! Text an agent wrote reaches the operator's terminal escaped: every command that prints it
//! (`send --wait`, `chat`, `history`, `task runs`, `task list`, `show`, `status --watch`,
//! `logs`) shows its escape sequences, control characters and bidi overrides as `\u{…}`
//! instead of sending them to the terminal, while `--json` keeps the exact text. The test
//! plays the agent by writing envelopes into the instance's `out/`, except for `logs`, which
//! needs a real container's output.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::agent::writes as agent_writes;
use common::daemon::{wait_until, Daemon, ReadyHome};
use common::dashboard::Dashboard;
use common::{bin, TestHome};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

/// What a hostile (or confused) agent answers: a colour, a new window title (OSC), a screen
/// clear by the one-byte C1 CSI, a DEL, and a right-to-left override; over two lines, the
/// second indented by a tab.
const HOSTILE: &str = "red \u{1b}[31mALERT\u{1b}[0m title \u{1b}]0;pwned\u{7}\n\tclear \u{9b}2J del \u{7f} rlo \u{202e}txt.exe";
/// None of these may reach a terminal from an agent's text.
const RAW: [char; 6] = ['\u{1b}', '\u{7}', '\u{9b}', '\u{7f}', '\u{202e}', '\r'];

/// `out` shows the hostile text escaped, and holds none of it raw.
#[track_caller]
fn shown_escaped(what: &str, out: &str) {
    for c in RAW {
        assert!(!out.contains(c), "{what}: {c:?} printed raw:\n{out:?}");
    }
    for visible in [
        r"\u{1b}[31mALERT\u{1b}[0m",
        r"\u{1b}]0;pwned\u{7}",
        r"\u{9b}2J",
        r"\u{7f}",
        r"\u{202e}txt.exe",
    ] {
        assert!(out.contains(visible), "{what}: {visible} missing:\n{out}");
    }
}

fn in_dir(home: &TestHome) -> PathBuf {
    home.ipc_in("alice")
}

/// The turns waiting in alice's in/, in file-name order, with their files.
fn turns(home: &TestHome) -> Vec<(PathBuf, Value)> {
    common::agent::waiting(&in_dir(home), "turn")
}

/// Answers the next turn with `body` as the agent does: the reply (envelope `id`), then
/// the turn's file removed.
fn answer_turn(home: &TestHome, id: &str, body: &str) {
    assert!(
        wait_until(LONG, || !turns(home).is_empty()),
        "no turn was delivered"
    );
    let (path, turn) = turns(home).remove(0);
    let turn = turn["turn_id"].as_str().unwrap().to_string();
    agent_writes(
        &home.ipc_out("alice"),
        json!({"v": 1, "id": id, "ts": 1, "type": "reply", "turn_id": turn, "reply_to": [], "body": body}),
    );
    std::fs::remove_file(path).unwrap();
}

fn supervisor(home: &TestHome, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.arg("--home").arg(&home.root).args(args);
    cmd
}

/// A home with alice (not started: the test is her agent) and a daemon.
fn alice() -> (TestHome, Daemon) {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    home.run(&["create-instance", "alice"]).ok();
    let daemon = Daemon::start(&home);
    (home, daemon)
}

#[test]
fn send_wait_and_history_print_a_reply_escaped() {
    let (home, _daemon) = alice();

    // alice is stopped (the test is her agent), so `send --wait` would refuse to wait for
    // an answer: the answer comes first, and sending the same id again prints it at once.
    home.run(&["send", "alice", "hello", "--id", "hello-1"])
        .ok();
    answer_turn(&home, "r1", HOSTILE);
    assert!(
        wait_until(LONG, || common::daemon::finals(&home, "alice").len() == 1),
        "the answer was not recorded"
    );
    let out = home
        .run(&["send", "alice", "hello", "--id", "hello-1", "--wait"])
        .ok();
    let printed = out.stdout;
    shown_escaped("send --wait", &printed);
    assert!(
        printed.contains("\\u{7}\n\tclear"),
        "the reply keeps its lines and tabs: {printed:?}"
    );

    // The same reply once more, for the history below.
    home.run(&["send", "alice", "and again"]).ok();
    answer_turn(&home, "r2", HOSTILE);
    assert!(
        wait_until(LONG, || common::daemon::finals(&home, "alice").len() == 2),
        "the second answer was not recorded"
    );

    let history = home.run(&["history", "alice"]).ok().stdout;
    shown_escaped("history", &history);
    // Machines get the exact text.
    let json = home.run(&["history", "alice", "--json"]).ok().json();
    let finals: Vec<&Value> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "final")
        .collect();
    assert_eq!(finals.len(), 2);
    assert!(finals.iter().all(|m| m["body"] == HOSTILE), "{json}");
}

#[test]
fn task_runs_and_task_list_print_a_result_escaped() {
    let (home, _daemon) = alice();
    let task = home
        .run(&[
            "task", "add", "alice", "--every", "1h", "--prompt", "check", "--json",
        ])
        .ok()
        .json();
    let id = task["id"].as_i64().unwrap().to_string();
    home.run(&["task", "run-now", &id]).ok();
    // One line, short enough for the table's cell.
    let result = "\u{1b}[2J\u{9b}2J\u{202e}done\u{7f}";
    answer_turn(&home, "r1", result);
    assert!(
        wait_until(LONG, || home
            .run(&["task", "runs", &id, "--json"])
            .ok()
            .json()[0]["status"]
            == "ok"),
        "the run did not finish"
    );
    for args in [vec!["task", "runs", id.as_str()], vec!["task", "list"]] {
        let out = home.run(&args).ok().stdout;
        for c in RAW {
            assert!(!out.contains(c), "{args:?}: {c:?} printed raw:\n{out:?}");
        }
        assert!(
            out.contains(r"\u{1b}[2J\u{9b}2J\u{202e}done\u{7f}"),
            "{args:?}:\n{out}"
        );
    }
    let runs = home.run(&["task", "runs", &id, "--json"]).ok().json();
    assert_eq!(runs[0]["result"], result, "exact in JSON");
}

#[test]
fn show_prints_the_soul_title_from_the_workspace_escaped() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    home.run(&["create-instance", "alice"]).ok();
    // SOUL.md is in the workspace, which the agent may rewrite.
    let title =
        "Helper \u{1b}[31mALERT\u{1b}[0m \u{1b}]0;pwned\u{7} \u{9b}2J \u{7f} \u{202e}txt.exe";
    std::fs::write(
        home.workspace("alice").join("SOUL.md"),
        format!("# {title}\n\nBe helpful.\n"),
    )
    .unwrap();
    let out = home.run(&["show", "alice"]).ok().stdout;
    shown_escaped("show", &out);
    let json = home.run(&["show", "alice", "--json"]).ok().json();
    assert_eq!(json["soul_title"], title, "exact in JSON");
}

#[test]
fn status_watch_prints_an_event_an_agent_caused_escaped() {
    let (home, _daemon) = alice();
    // A task request for another instance is refused and recorded, with the action the
    // agent named in the event's detail.
    let action = "list\u{9b}2J\u{202e}";
    agent_writes(
        &home.ipc_out("alice"),
        json!({"v": 1, "id": "q1", "ts": 1, "type": "task_request", "request_id": "q1",
               "action": action, "args": {"instance": "bob"}}),
    );
    let refused = || {
        home.run(&["show", "alice", "--json"]).ok().json()["recent_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "task.refused" && e["detail"]["action"] == action)
    };
    assert!(wait_until(LONG, refused), "the refusal was not recorded");

    let mut d = Dashboard::start(&home.root, 250, 30);
    let drawn = wait_until(LONG, || d.text().contains("task.refused"));
    // Give the event's line time to be drawn whole before quitting.
    std::thread::sleep(Duration::from_millis(500));
    d.press(b"q");
    let (_, out) = d.finish(LONG);
    assert!(drawn, "the event never showed:\n{out}");
    for c in ['\u{9b}', '\u{202e}'] {
        assert!(!out.contains(c), "{c:?} reached the terminal:\n{out:?}");
    }
    assert!(out.contains(r"list\u{9b}2J\u{202e}"), "{out}");
}

#[test]
fn logs_print_a_containers_output_escaped() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    // The agent names a file it cannot read in its output; its name is anyone's choice.
    let name = "x\u{1b}[31mALERT\u{1b}[0m\u{1b}]0;pwned\u{7}\u{9b}2J\u{7f}\u{202e}txt.exe.json";
    std::fs::write(h.home.ipc_in("alice").join(name), b"{not an envelope").unwrap();
    let logs = || {
        let run = h.home.run(&["logs", "alice"]).ok();
        format!("{}{}", run.stdout, run.stderr)
    };
    assert!(
        wait_until(LONG, || logs().contains("ALERT")),
        "the agent did not report the file:\n{}",
        logs()
    );
    shown_escaped("logs", &logs());
}

/// `chat` talks only with an instance that can answer, so its agent is a real one: the echo
/// model says the hostile line back.
#[test]
fn chat_prints_a_reply_escaped() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let mut chat = supervisor(&h.home, &["chat", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    // One line: chat sends a line at a time.
    writeln!(stdin, "{}", HOSTILE.replace('\n', " ")).unwrap();
    drop(stdin);
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.starts_with("alice> echo: "), "{printed}");
    shown_escaped("chat", &printed);
}
