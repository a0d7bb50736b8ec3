//! `chat` at a terminal (under `script`): line editing, and a history of what was typed,
//! kept per instance in the supervisor's part of the home and recalled in the next chat.

mod common;

use std::time::Duration;

use common::daemon::{wait_until, Daemon, ReadyHome};
use common::dashboard::Dashboard;

const LONG: Duration = Duration::from_secs(60);
const LEFT: &[u8] = b"\x1b[D";
const UP: &[u8] = b"\x1b[A";

fn answers(screen: &str, text: &str) -> usize {
    screen
        .matches(&format!("alice> echo: [local] {text}"))
        .count()
}

#[test]
fn chat_edits_lines_and_recalls_what_was_typed_in_an_earlier_chat() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();

    let mut chat = Dashboard::command(&h.home.root, 100, 30, "chat alice");
    assert!(
        wait_until(LONG, || chat.text().contains("you> ")),
        "{}",
        chat.text()
    );
    // A typo mended with the arrow keys: the message sent is the mended line.
    chat.press(b"helo");
    chat.press(LEFT);
    chat.press(b"l\r");
    assert!(
        wait_until(LONG, || answers(&chat.text(), "hello") == 1),
        "{}",
        chat.text()
    );
    chat.press(b"/quit\r");
    let (status, screen) = chat.finish(LONG);
    assert!(status.is_some_and(|s| s.success()), "{screen}");

    // Kept beside the instance's config, not in anything the agent can write, and private.
    let file = h.home.path("instances/alice/chat_history");
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.lines().any(|l| l == "hello"), "{kept:?}");
    assert!(!kept.contains("/quit"), "{kept:?}");
    assert_eq!(common::mode(&file), 0o600);
    assert!(!common::tree(&h.home.volume("alice"))
        .iter()
        .any(|p| p.contains("chat_history")));

    // The next chat recalls it with the up arrow.
    let mut again = Dashboard::command(&h.home.root, 100, 30, "chat alice");
    assert!(
        wait_until(LONG, || again.text().contains("you> ")),
        "{}",
        again.text()
    );
    again.press(UP);
    again.press(b"\r");
    assert!(
        wait_until(LONG, || answers(&again.text(), "hello") == 1),
        "{}",
        again.text()
    );
    // Ctrl-D leaves.
    again.press(b"\x04");
    let (status, screen) = again.finish(LONG);
    assert!(status.is_some_and(|s| s.success()), "{screen}");
    assert_eq!(common::daemon::finals(&h.home, "alice").len(), 2);
}
