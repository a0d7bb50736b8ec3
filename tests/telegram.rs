//! The Telegram channel through the real daemon, real containers and a loopback fake of the
//! Bot API that follows the real one's semantics and errors: private round trips with text
//! full of markup characters, long answers split, unknown senders paired, groups answered
//! only when addressed, forum topics, typing, a 429 storm, the API down for 30 s, a refused
//! token and a second poller, a kill -9 during a burst of 200 updates, and attachments put in
//! the workspace's inbox/ without ever following what the agent planted there.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::daemon::{wait_until, Daemon, ReadyHome};
use common::decoy::Decoy;
use common::fake_llm::FakeLlm;
use common::telegram::{FakeTelegram, Sent};
use serde_json::{json, Value};

const TOKEN: &str = "123456:TEST-token-never-shown";
const TOKEN_ENV: &str = "ALICE_TELEGRAM_TOKEN";
const LONG: Duration = Duration::from_secs(90);

fn telegram_home(allow: &[&str]) -> (ReadyHome, FakeTelegram) {
    let h = ReadyHome::new();
    let tg = FakeTelegram::start(TOKEN);
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |c| {
        c["allow_from"] = json!(allow);
        c["channels"] = json!({"telegram": {"token_env": TOKEN_ENV, "api_base": tg.base}});
    });
    (h, tg)
}

fn start(h: &ReadyHome) -> Daemon {
    Daemon::start_with_env(&h.home, &[(TOKEN_ENV, TOKEN)])
}

fn sent_to(tg: &FakeTelegram, chat: i64) -> Vec<Sent> {
    tg.sent()
        .into_iter()
        .filter(|s| s.chat_id == chat)
        .collect()
}

fn history(h: &ReadyHome) -> Vec<Value> {
    let out = h
        .home
        .run(&["history", "alice", "--json", "--limit", "5000"])
        .ok();
    out.json().as_array().unwrap().clone()
}

fn inbound(h: &ReadyHome) -> Vec<Value> {
    history(h)
        .into_iter()
        .filter(|m| m["direction"] == "in" && m["channel"] == "telegram")
        .collect()
}

fn channel_row(h: &ReadyHome) -> Value {
    let rows = h.home.run(&["channels", "alice", "--json"]).ok().json();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel"] == "telegram")
        .cloned()
        .expect("a telegram row")
}

/// Doctor's row for alice's channel, as doctor judges it without the token in its own
/// environment (the daemon has it); the token never shows in what it prints.
fn doctor_row(h: &ReadyHome) -> Value {
    let run = h.home.run(&["doctor", "--json"]);
    let secret = TOKEN.split_once(':').unwrap().1;
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let report = run.json();
    let rows: Vec<Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "channels")
        .cloned()
        .collect();
    assert_eq!(rows.len(), 1, "{report}");
    rows[0].clone()
}

/// Runs `script` in alice's container with its toolbox shell; (exit code, stdout, stderr).
fn sh(h: &ReadyHome, script: &str) -> (i64, String, String) {
    common::daemon::toolbox_sh(h, "alice", script)
}

#[test]
fn a_private_chat_round_trip_keeps_markup_splits_long_answers_and_pairs_strangers() {
    let (h, tg) = telegram_home(&["local", "telegram:7"]);
    let daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();

    // Every character Telegram's parse modes would take as markup arrives as written.
    let markup = "hello <b>x</b> & &amp; _a_ *b* [c](d) `e` 1.5! (f) #g +h -i =j |k {l} ~m >n";
    let (_, asked) = tg.private_text(7, markup);
    assert!(
        wait_until(LONG, || !sent_to(&tg, 7).is_empty()),
        "{}",
        daemon.log_text()
    );
    let answer = &sent_to(&tg, 7)[0];
    assert!(answer.text.contains(markup), "{answer:?}");
    assert_eq!(answer.parse_mode, None, "plain text: nothing is markup");
    assert_eq!(answer.reply_to_message_id, Some(asked));
    // The agent sees who wrote it: the sender key, and the name they gave, quoted.
    assert!(
        answer
            .text
            .starts_with(r#"echo: [telegram:7 "User7 (@user7)" in telegram:7] "#),
        "{}",
        answer.text
    );
    assert_eq!(inbound(&h)[0]["sender_name"], "User7 (@user7)");
    // Who the bot is, and no webhook in the way, before the first poll.
    let requests = tg.requests();
    let first = |m: &str| requests.iter().position(|r| r == m).unwrap();
    assert!(first("getMe") < first("getUpdates"), "{requests:?}");
    assert!(first("deleteWebhook") < first("getUpdates"), "{requests:?}");

    // An answer longer than a Telegram message goes in parts, in order, each within 4,096
    // UTF-16 units, cut at a paragraph; the first replies to the message.
    let paragraphs: Vec<String> = ["a", "b", "😀"].iter().map(|c| c.repeat(2000)).collect();
    let long = paragraphs.join("\n\n");
    let (_, asked) = tg.private_text(7, &long);
    assert!(
        wait_until(LONG, || sent_to(&tg, 7).len() >= 3),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let parts: Vec<Sent> = sent_to(&tg, 7)[1..].to_vec();
    assert_eq!(parts.len(), 2, "{parts:?}");
    for p in &parts {
        assert!(
            p.text.encode_utf16().count() <= 4096,
            "{} units",
            p.text.len()
        );
    }
    assert!(parts[0]
        .text
        .ends_with(&format!("{}\n\n{}", paragraphs[0], paragraphs[1])));
    assert_eq!(parts[1].text, paragraphs[2]);
    assert_eq!(parts[0].reply_to_message_id, Some(asked));
    assert_eq!(parts[1].reply_to_message_id, None);

    // A stranger in a private chat is refused, and given a pairing code once.
    tg.private_text(8, "who are you?");
    assert!(wait_until(LONG, || sent_to(&tg, 8).len() == 1));
    let offer = sent_to(&tg, 8)[0].text.clone();
    let code = offer
        .split("supervisor channels pair alice ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code in {offer:?}"))
        .to_string();
    tg.private_text(8, "hello?");
    assert!(wait_until(LONG, || inbound(&h).len() == 4));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sent_to(&tg, 8).len(), 1, "one code, not one per message");
    let refused: Vec<Value> = inbound(&h)
        .into_iter()
        .filter(|m| m["sender"] == "telegram:8")
        .collect();
    assert!(
        refused.iter().all(|m| m["state"] == "refused"),
        "{refused:?}"
    );
    let row = channel_row(&h);
    assert_eq!(row["pairings"][0]["code"], code.as_str(), "{row}");
    assert_eq!(row["pairings"][0]["sender"], "telegram:8");
    let text = h.home.run(&["channels", "alice"]).ok().stdout;
    assert!(text.contains("alice telegram: ok"), "{text}");
    assert!(text.contains("@test_bot"), "{text}");
    assert!(
        text.contains(&format!("supervisor channels pair alice {code}")),
        "{text}"
    );

    // The operator lets them in (any case); the code is spent; they are answered.
    assert_eq!(h.home.run(&["channels", "pair", "alice", "NOPE"]).code, 1);
    let paired = h
        .home
        .run(&["channels", "pair", "alice", &code.to_lowercase()])
        .ok();
    assert!(paired.stdout.contains("telegram:8"), "{}", paired.stdout);
    let again = h.home.run(&["channels", "pair", "alice", &code]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("no pairing code"), "{}", again.stderr);
    let config: Value =
        serde_json::from_slice(&std::fs::read(h.home.path("instances/alice/config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["allow_from"],
        json!(["local", "telegram:7", "telegram:8"])
    );
    tg.private_text(8, "let in now?");
    assert!(
        wait_until(LONG, || sent_to(&tg, 8).len() == 2),
        "{}",
        daemon.log_text()
    );
    assert!(sent_to(&tg, 8)[1].text.contains("let in now?"));

    // The token is in no log line, no command's output.
    let secret = TOKEN.split(':').nth(1).unwrap();
    assert!(!daemon.log_text().contains(secret));
    for args in [&["show", "alice"][..], &["channels", "alice", "--json"]] {
        let out = h.home.run(args).ok();
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    }
}

#[test]
fn groups_answer_mentions_and_replies_keep_the_rest_as_context_and_topics_stay_in_their_thread() {
    let (h, tg) = telegram_home(&["*"]);
    let daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let group = -100_200;

    tg.group_text(group, 7, "just chatting, the code word is plum");
    assert!(wait_until(LONG, || inbound(&h).len() == 1));
    std::thread::sleep(Duration::from_secs(3));
    assert!(sent_to(&tg, group).is_empty(), "silence when not addressed");
    assert_eq!(inbound(&h)[0]["state"], "context");

    let (_, asked) = tg.group_text(group, 9, "@test_bot what is the code word?");
    assert!(
        wait_until(LONG, || sent_to(&tg, group).len() == 1),
        "{}",
        daemon.log_text()
    );
    let answer = sent_to(&tg, group)[0].clone();
    assert_eq!(answer.reply_to_message_id, Some(asked));
    // The context joined that turn: it is answered with it, not left waiting.
    assert!(inbound(&h).iter().all(|m| m["state"] == "answered"));

    // A reply to the bot's message is addressed to it.
    let chat = json!({"id": group, "type": "supergroup", "title": "Ops"});
    tg.push_message(json!({
        "chat": chat, "from": {"id": 9, "is_bot": false, "first_name": "Cy"}, "text": "thanks",
        "reply_to_message": {"message_id": answer.message_id, "chat": chat,
            "from": {"id": tg.bot_id(), "is_bot": true, "first_name": "Test Bot", "username": "test_bot"},
            "text": answer.text},
    }));
    assert!(wait_until(LONG, || sent_to(&tg, group).len() == 2));

    // A forum topic is its own conversation, answered in its thread.
    let forum = json!({"id": -100_300, "type": "supergroup", "title": "Forum", "is_forum": true});
    for (thread, text) in [
        (5, "@test_bot in topic five"),
        (6, "@test_bot in topic six"),
    ] {
        tg.push_message(json!({
            "chat": forum, "from": {"id": 7, "is_bot": false, "first_name": "Bo"},
            "message_thread_id": thread, "is_topic_message": true, "text": text,
        }));
    }
    assert!(wait_until(LONG, || sent_to(&tg, -100_300).len() == 2));
    let by_thread: BTreeMap<Option<i64>, String> = sent_to(&tg, -100_300)
        .into_iter()
        .map(|s| (s.message_thread_id, s.text))
        .collect();
    assert!(by_thread[&Some(5)].contains("topic five") && !by_thread[&Some(5)].contains("six"));
    assert!(by_thread[&Some(6)].contains("topic six") && !by_thread[&Some(6)].contains("five"));
    let chats: BTreeSet<String> = inbound(&h)
        .iter()
        .map(|m| m["chat"].as_str().unwrap().to_string())
        .collect();
    assert!(chats.contains("telegram:-100300/5") && chats.contains("telegram:-100300/6"));
}

#[test]
fn typing_shows_during_a_turn_and_a_429_storm_and_an_outage_lose_nothing() {
    let (h, tg) = telegram_home(&["*"]);
    let fake = FakeLlm::start();
    h.edit_config("alice", |c| {
        c["model"] = json!({"provider": "openai", "name": "slow", "base_url": fake.base_url,
                            "api_key_env": null});
    });
    let daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();

    // A turn of a few seconds: "typing" is shown in its chat before the answer.
    tg.private_text(7, "take your time");
    assert!(
        wait_until(LONG, || !sent_to(&tg, 7).is_empty()),
        "{}",
        daemon.log_text()
    );
    let answered_at = sent_to(&tg, 7)[0].at;
    let typing: Vec<_> = tg
        .actions()
        .into_iter()
        .filter(|a| a.chat_id == 7 && a.action == "typing")
        .collect();
    assert!(!typing.is_empty(), "no typing shown");
    assert!(typing[0].at < answered_at);

    // 429s: every answer waits its retry_after and goes once.
    tg.fail_sends_with_429(4, 2);
    for user in [11, 12, 13] {
        tg.private_text(user, &format!("storm {user}"));
    }
    assert!(
        wait_until(LONG, || [11, 12, 13]
            .iter()
            .all(|u| !sent_to(&tg, *u).is_empty())),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    for user in [11, 12, 13] {
        assert_eq!(
            sent_to(&tg, user).len(),
            1,
            "chat {user}: {:?}",
            sent_to(&tg, user)
        );
    }

    // The API down for 30 s: the channel says so, and catches up once it is back.
    tg.set_down(true);
    tg.private_text(14, "during the outage");
    assert!(
        wait_until(LONG, || channel_row(&h)["state"] == "failing"),
        "{}",
        channel_row(&h)
    );
    std::thread::sleep(Duration::from_secs(30));
    // The operator's own conversation goes on meanwhile.
    let local = h
        .home
        .run(&["send", "alice", "still there?", "--wait"])
        .ok();
    assert!(local.stdout.contains("slow answer"), "{}", local.stdout);
    tg.set_down(false);
    assert!(
        wait_until(LONG, || sent_to(&tg, 14).len() == 1),
        "{}",
        daemon.log_text()
    );
    assert!(wait_until(LONG, || channel_row(&h)["state"] == "ok"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sent_to(&tg, 14).len(), 1);
    assert_eq!(
        inbound(&h)
            .iter()
            .filter(|m| m["body"] == "during the outage")
            .count(),
        1
    );
}

#[test]
fn a_refused_token_and_a_second_poller_put_the_channel_in_error_with_the_fix() {
    let (h, tg) = telegram_home(&["*"]);
    let daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert!(wait_until(LONG, || channel_row(&h)["state"] == "ok"));
    // Doctor's environment has no token: it goes by what the running daemon recorded.
    assert!(std::env::var_os(TOKEN_ENV).is_none());
    let row = doctor_row(&h);
    assert_eq!(row["status"], "ok", "{row}");
    assert!(
        row["message"].as_str().unwrap().contains("@test_bot"),
        "{row}"
    );

    tg.set_conflict(true);
    assert!(
        wait_until(LONG, || channel_row(&h)["state"] == "error"),
        "{}",
        channel_row(&h)
    );
    let detail = channel_row(&h)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("409") && detail.contains("another program"),
        "{detail}"
    );
    tg.set_conflict(false);
    tg.set_token_revoked(true);
    assert!(wait_until(LONG, || channel_row(&h)["detail"]
        .as_str()
        .is_some_and(|d| d.contains("401"))));
    let detail = channel_row(&h)["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains(TOKEN_ENV) && detail.contains("@BotFather"),
        "{detail}"
    );
    let row = doctor_row(&h);
    assert_eq!(row["status"], "fail", "{row}");
    assert!(row["message"].as_str().unwrap().contains(&detail), "{row}");
    let status = h.home.run(&["status", "--json"]).ok().json();
    assert_eq!(status["instances"][0]["channels"][0]["state"], "error");
    assert_eq!(
        status["instances"][0]["channels"][0]["detail"],
        detail.as_str()
    );
    // The instance serves its other ways in all along.
    let local = h.home.run(&["send", "alice", "hi", "--wait"]).ok();
    assert_eq!(local.stdout.trim(), "echo: [local] hi");
    // A token that works again: the channel recovers and takes what waited.
    tg.private_text(7, "are you back?");
    tg.set_token_revoked(false);
    assert!(
        wait_until(Duration::from_secs(150), || sent_to(&tg, 7).len() == 1),
        "{}",
        daemon.log_text()
    );
    assert_eq!(channel_row(&h)["state"], "ok");

    // The channel removed from the config (hot reload): the bot stops polling.
    h.edit_config("alice", |c| {
        c.as_object_mut().unwrap().remove("channels");
    });
    let polls = || tg.requests().iter().filter(|r| *r == "getUpdates").count();
    assert!(wait_until(LONG, || {
        let before = polls();
        std::thread::sleep(Duration::from_secs(30));
        polls() == before
    }));
    // And put back: it polls again.
    h.edit_config("alice", |c| {
        c["channels"] = json!({"telegram": {"token_env": TOKEN_ENV, "api_base": tg.base}});
    });
    let before = polls();
    assert!(
        wait_until(LONG, || polls() > before),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_kill_9_during_a_burst_of_200_updates_stores_each_once_and_answers_each_once() {
    let (h, tg) = telegram_home(&["*"]);
    let mut daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();
    const N: usize = 200;
    for i in 0..N {
        tg.private_text(2000 + (i % 20) as i64, &format!("burst {i}"));
    }
    assert!(
        wait_until(LONG, || inbound(&h).len() >= 40),
        "{}",
        daemon.log_text()
    );
    // Killed at an instant no answer is between Telegram taking it and the outbox recording
    // it (the API unreachable then): that instant, a few milliseconds long, is the one where
    // a send cannot be known to have happened, as the Bot API has no idempotency key.
    tg.set_down(true);
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    tg.set_down(false);
    let daemon = start(&h);
    let all_answered = || {
        let inb = inbound(&h);
        inb.len() == N && inb.iter().all(|m| m["state"] == "answered")
    };
    assert!(
        wait_until(Duration::from_secs(240), all_answered),
        "{} of {N} stored\n{}",
        inbound(&h).len(),
        daemon.log_text()
    );
    let bodies: BTreeSet<String> = inbound(&h)
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies.len(), N, "every update stored once");
    // Every answer recorded goes out, and once.
    let finals: Vec<Value> = history(&h)
        .into_iter()
        .filter(|m| m["state"] == "final")
        .collect();
    assert!(
        wait_until(LONG, || tg.sent().len() >= finals.len()),
        "{} sent of {}",
        tg.sent().len(),
        finals.len()
    );
    std::thread::sleep(Duration::from_secs(3));
    let sent = tg.sent();
    assert_eq!(sent.len(), finals.len(), "every answer sent once");
    let replies: BTreeSet<(i64, Option<i64>)> = sent
        .iter()
        .map(|s| (s.chat_id, s.reply_to_message_id))
        .collect();
    assert_eq!(replies.len(), sent.len(), "no answer sent twice");
    // Telegram may forget them all: the offset is past the last one.
    assert!(wait_until(LONG, || tg.pending_updates() == 0));
}

#[test]
fn attachments_land_in_the_inbox_and_a_planted_link_is_never_followed() {
    let (h, tg) = telegram_home(&["local", "telegram:7"]);
    let daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let document = |file_id: &str, unique: &str, size: u64, from: i64| {
        json!({
            "chat": {"id": from, "type": "private"},
            "from": {"id": from, "is_bot": false, "first_name": "Bo"},
            "caption": format!("read {file_id}"),
            "document": {"file_id": file_id, "file_unique_id": unique,
                         "file_name": "report.PDF", "file_size": size},
        })
    };
    tg.add_file(
        "doc1",
        b"quarterly numbers".to_vec(),
        "documents/file_1.pdf",
    );
    // A blip of the Bot API on the way costs nothing: each step is tried again.
    tg.blip("getFile", 1);
    tg.blip("download", 1);
    tg.push_message(document("doc1", "U1", 17, 7));
    assert!(
        wait_until(LONG, || sent_to(&tg, 7).len() == 1),
        "{}",
        daemon.log_text()
    );
    let body = inbound(&h)[0]["body"].as_str().unwrap().to_string();
    assert!(body.contains("read doc1"), "{body}");
    let shown = body
        .split("saved as ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("{body}"))
        .to_string();
    assert!(shown.starts_with("/workspace/inbox/tg-") && shown.ends_with("-document-U1.pdf"));
    // The agent reads it from inside its container.
    let (code, out, err) = sh(&h, &format!("cat {shown}"));
    assert_eq!((code, out.as_str()), (0, "quarterly numbers"), "{err}");

    // Too large: named, not downloaded. From a stranger: not downloaded at all.
    tg.push_message(document("doc2", "U2", 50 << 20, 7));
    tg.add_file("doc3", b"from a stranger".to_vec(), "documents/file_3.pdf");
    tg.push_message(document("doc3", "U3", 15, 8));
    assert!(wait_until(LONG, || sent_to(&tg, 7).len() == 2
        && inbound(&h).len() == 3));
    let bodies: Vec<String> = inbound(&h)
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("not downloaded: larger than")),
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("its sender is not let in")),
        "{bodies:?}"
    );

    // The agent swaps inbox/ for a link to a host tree: nothing is written through it.
    let decoy = Decoy::new(&h.home.root);
    let (code, _, err) = sh(
        &h,
        &format!(
            "rm -rf /workspace/inbox && ln -s '{}' /workspace/inbox",
            decoy.host_path("open")
        ),
    );
    assert_eq!(code, 0, "{err}");
    tg.add_file(
        "doc4",
        b"through the link?".to_vec(),
        "documents/file_4.pdf",
    );
    tg.push_message(document("doc4", "U4", 17, 7));
    assert!(
        wait_until(LONG, || sent_to(&tg, 7).len() == 3),
        "{}",
        daemon.log_text()
    );
    let last = inbound(&h).last().unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.contains("could not be saved"), "{last}");
    assert_eq!(decoy.changes_line(), None);

    // A real inbox/ again, with the next file's name planted as a link to a host file: it is
    // left as the agent made it, never written through (update ids start at 1000 here).
    let (code, _, err) = sh(
        &h,
        &format!(
            "rm /workspace/inbox && mkdir /workspace/inbox && for u in $(seq 1000 1100); do \
             ln -s '{}' /workspace/inbox/tg-$u-document-U5.pdf; done",
            decoy.host_path("notes.txt")
        ),
    );
    assert_eq!(code, 0, "{err}");
    tg.add_file("doc5", b"over the link?".to_vec(), "documents/file_5.pdf");
    tg.push_message(document("doc5", "U5", 14, 7));
    assert!(
        wait_until(LONG, || sent_to(&tg, 7).len() == 4),
        "{}",
        daemon.log_text()
    );
    assert_eq!(decoy.changes_line(), None);
}

#[test]
fn webhook_mode_takes_updates_only_with_the_secret_and_stores_each_once() {
    const HOOK_SECRET: &str = "hook-secret-0123456789";
    let url = "https://bot.example.org/v1/channels/telegram/alice";
    let (h, tg) = telegram_home(&["*"]);
    h.edit_config("alice", |c| {
        c["channels"]["telegram"]["webhook"] = json!({"url": url, "secret_env": "ALICE_TG_HOOK"});
    });
    let port = common::daemon::free_port();
    h.home.listen_on(&format!("127.0.0.1:{port}"));
    let daemon = Daemon::start_with_env(
        &h.home,
        &[
            (TOKEN_ENV, TOKEN),
            ("ALICE_TG_HOOK", HOOK_SECRET),
            (
                "SUPERVISOR_API_TOKEN",
                "0123456789abcdef0123456789abcdef-api",
            ),
        ],
    );
    h.home.run(&["start", "alice", "--wait"]).ok();
    assert!(
        wait_until(LONG, || tg.webhook().as_deref() == Some(url)),
        "{}",
        daemon.log_text()
    );
    // The update as Telegram would POST it (the fake learns of the chat through it too).
    let (update_id, message_id) = tg.private_text(7, "by hook");
    let update = json!({"update_id": update_id, "message": {"message_id": message_id, "date": 0,
        "chat": {"id": 7, "type": "private"},
        "from": {"id": 7, "is_bot": false, "first_name": "Bo"}, "text": "by hook"}});
    let hook = format!("http://127.0.0.1:{port}/v1/channels/telegram/alice");
    let post = |secret: Option<&str>| -> u16 {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(secret.map(|s| ("X-Telegram-Bot-Api-Secret-Token", s)));
        let body = serde_json::to_vec(&update).unwrap();
        common::daemon::http("POST", &hook, &headers, Some(body)).0
    };
    assert_eq!(post(None), 401);
    assert_eq!(post(Some("not-the-secret")), 401);
    assert!(inbound(&h).is_empty(), "nothing stored without the secret");
    assert_eq!(post(Some(HOOK_SECRET)), 200);
    assert_eq!(post(Some(HOOK_SECRET)), 200, "sent again: stored once");
    assert_eq!(inbound(&h).len(), 1);
    assert!(
        wait_until(LONG, || sent_to(&tg, 7).len() == 1),
        "{}",
        daemon.log_text()
    );
    assert_eq!(sent_to(&tg, 7)[0].reply_to_message_id, Some(message_id));
    assert!(
        !tg.requests().iter().any(|r| r == "getUpdates"),
        "no polling in webhook mode"
    );
    // Channel health in /metrics: the update in, the answer sent, its latency.
    let (_, metrics) = common::daemon::http(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        &[(
            "authorization",
            "Bearer 0123456789abcdef0123456789abcdef-api",
        )],
        None,
    );
    let metrics = metrics.as_str().expect("the Prometheus text").to_string();
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
            .to_string()
    };
    assert!(line("supervisor_channel_messages_received_total{").contains("telegram"));
    assert!(line("supervisor_channel_messages_received_total{").ends_with(" 1"));
    let sent = line("supervisor_channel_deliveries_total{");
    assert!(
        sent.contains("telegram") && sent.contains("sent") && sent.ends_with(" 1"),
        "{sent}"
    );
    assert!(line("supervisor_channel_delivery_latency_seconds_count{").ends_with(" 1"));
    assert!(!daemon.log_text().contains(HOOK_SECRET));
}
