//! What an agent can make the host do, through the real daemon, store and IPC files, with the
//! test playing the agent: model requests only for the turn in flight, within the token
//! ceiling and the day's budget, and a bounded number of extra messages per turn.

mod common;

use std::time::Duration;

use common::agent::writes as agent_writes;
use common::daemon::{wait_until, Daemon, ReadyHome};
use common::fake_llm::FakeLlm;
use serde_json::{json, Value};
use supervisor_agent::protocol::{ModelMessage, Role};

const LONG: Duration = Duration::from_secs(30);

/// The envelopes of one type waiting in alice's `in/`, in file-name order.
fn envelopes_in(h: &ReadyHome, kind: &str) -> Vec<Value> {
    common::agent::envelopes_in(&h.home.ipc_in("alice"), kind)
}

/// The one turn delivered to alice, once it is there.
fn the_turn(h: &ReadyHome) -> String {
    assert!(
        wait_until(LONG, || envelopes_in(h, "turn").len() == 1),
        "no turn delivered"
    );
    envelopes_in(h, "turn")[0]["turn_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

/// A model request for `turn` with `messages` and, when given, `max_tokens`.
fn model_request(id: &str, turn: &str, messages: Vec<Value>, max_tokens: Option<u32>) -> Value {
    let mut v = json!({"v": 1, "id": format!("env{id}"), "ts": 2, "type": "model_request",
                       "request_id": id, "turn_id": turn, "messages": messages, "tools": []});
    if let Some(n) = max_tokens {
        v["max_tokens"] = n.into();
    }
    v
}

/// Sends a model request as alice's agent and waits for its answer.
fn ask(h: &ReadyHome, request: Value) -> Value {
    let id = request["request_id"].clone();
    agent_writes(&h.home.ipc_out("alice"), request);
    let answer = || {
        envelopes_in(h, "model_response")
            .into_iter()
            .find(|r| r["request_id"] == id)
    };
    assert!(wait_until(LONG, || answer().is_some()), "no answer to {id}");
    answer().unwrap()
}

fn db(h: &ReadyHome) -> rusqlite::Connection {
    rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap()
}

/// `(status, error)` of every usage row, oldest first.
fn usage(h: &ReadyHome) -> Vec<(String, Option<String>)> {
    db(h)
        .prepare("SELECT status, error FROM model_usage ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Alice answered by the fake provider's model `model`.
fn alice_on(h: &ReadyHome, fake: &FakeLlm, model: &str) {
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |c| {
        c["model"] = json!({"provider": "openai", "name": model,
                            "base_url": fake.base_url, "api_key_env": null});
    });
}

fn reply(turn: &str, id: &str, body: &str) -> Value {
    json!({"v": 1, "id": id, "ts": 3, "type": "reply", "turn_id": turn, "reply_to": [], "body": body})
}

#[test]
fn model_requests_are_served_only_for_the_turn_in_flight() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    alice_on(&h, &fake, "fast");
    let _daemon = Daemon::start(&h.home);

    // No turn in flight: refused, and no provider call.
    let before_any = ask(&h, model_request("q1", "t-none", vec![user("hi")], None));
    let error = before_any["error"].as_str().unwrap();
    assert!(
        error.contains("no turn of this instance is in flight"),
        "{error}"
    );
    assert_eq!(fake.calls(), 0);

    // The turn in flight is served.
    h.home.run(&["send", "alice", "hello"]).ok();
    let turn = the_turn(&h);
    let served = ask(&h, model_request("q2", &turn, vec![user("hi")], None));
    assert_eq!(served["content"], "fast answer", "{served}");
    assert!(served.get("error").is_none());
    assert_eq!(fake.calls(), 1);

    // Another turn, even while one is in flight: refused.
    let other = ask(&h, model_request("q3", "t-other", vec![user("hi")], None));
    let error = other["error"].as_str().unwrap();
    assert!(error.contains("turn t-other is not it"), "{error}");

    // Once the turn is answered it is no longer in flight.
    agent_writes(&h.home.ipc_out("alice"), reply(&turn, "r1", "bye"));
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "alice"
    )
    .len()
        == 1));
    let late = ask(&h, model_request("q4", &turn, vec![user("hi")], None));
    assert!(
        late["error"].as_str().unwrap().contains("no turn"),
        "{late}"
    );
    assert_eq!(fake.calls(), 1, "no call for a refused request");

    let rows = usage(&h);
    let statuses: Vec<&str> = rows.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["refused", "ok", "refused", "refused"]);
    assert!(
        rows[2].1.as_deref().unwrap().contains("t-other"),
        "{rows:?}"
    );
}

#[test]
fn a_request_for_the_open_turn_read_right_after_a_restart_is_served() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    alice_on(&h, &fake, "fast");
    let mut daemon = Daemon::start(&h.home);
    h.home.run(&["send", "alice", "hello"]).ok();
    let turn = the_turn(&h);
    daemon.kill9();

    // Written while no daemon runs: the next one reads it before it takes the turn up again.
    agent_writes(
        &h.home.ipc_out("alice"),
        model_request("q1", &turn, vec![user("hi")], None),
    );
    let _daemon = Daemon::start(&h.home);
    assert!(wait_until(LONG, || !envelopes_in(&h, "model_response").is_empty()));
    let answer = &envelopes_in(&h, "model_response")[0];
    assert_eq!(answer["content"], "fast answer", "{answer}");
    assert_eq!(fake.calls(), 1);
}

#[test]
fn max_tokens_is_held_to_the_ceiling_and_to_what_is_left_of_the_day() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    alice_on(&h, &fake, "max-tokens");
    h.edit_config("alice", |c| {
        c["budget"] =
            json!({"daily_tokens": 0, "requests_per_minute": 0, "max_tokens_per_request": 100});
    });
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["send", "alice", "hello"]).ok();
    let turn = the_turn(&h);

    // The fake says which max_tokens it got.
    for (id, asked, got) in [
        ("q1", Some(1_000_000), "max_tokens=100"),
        ("q2", None, "max_tokens=100"),
        ("q3", Some(50), "max_tokens=50"),
    ] {
        let answer = ask(&h, model_request(id, &turn, vec![user("hi")], asked));
        assert_eq!(answer["content"], got, "{id}: {answer}");
    }
    assert_eq!(fake.calls(), 3);

    // 60 tokens left of the day: a huge prompt is refused before any call, however few
    // tokens it asks for, and a small one may ask for what is left after its prompt.
    let used: i64 = db(&h)
        .query_row(
            "SELECT sum(prompt_tokens + completion_tokens) FROM model_usage",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let daily = used + 60;
    h.edit_config("alice", |c| c["budget"]["daily_tokens"] = json!(daily));
    let huge = "x".repeat(600_000);
    let refused = ask(&h, model_request("q4", &turn, vec![user(&huge)], Some(1)));
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("does not fit in what is left of the daily model budget")
            && error.contains(&format!("(60 of {daily} tokens)")),
        "{error}"
    );
    assert_eq!(fake.calls(), 3, "no call for the refused request");

    let text = "a short question of about forty bytes..";
    let estimate = supervisor::infra::llm::budget::estimate_prompt_tokens(
        &[ModelMessage {
            role: Role::User,
            content: text.into(),
            tool_calls: vec![],
            tool_call_id: None,
        }],
        &[],
    );
    let answer = ask(&h, model_request("q5", &turn, vec![user(text)], None));
    assert_eq!(
        answer["content"],
        format!("max_tokens={}", 60 - estimate),
        "{answer}"
    );
    let statuses: Vec<String> = usage(&h).into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["ok", "ok", "ok", "refused", "ok"]);
}

fn extra(turn: &str, id: &str, body: &str) -> Value {
    json!({"v": 1, "id": id, "ts": 2, "type": "message", "turn_id": turn, "body": body})
}

/// `(count, bytes)` of the extra messages stored for `turn`.
fn extras_of(h: &ReadyHome, turn: &str) -> (i64, i64) {
    db(h)
        .query_row(
            "SELECT count(*), coalesce(sum(length(CAST(body AS BLOB))), 0) FROM messages
             WHERE turn_id = ?1 AND direction = 'out' AND state = 'extra'",
            [turn],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn dropped_events(h: &ReadyHome) -> Vec<Value> {
    db(h)
        .prepare("SELECT detail FROM events WHERE kind = 'message.extra_dropped' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

/// Deletes a turn's file from `in/`, as the agent does once it has answered.
fn agent_done_with(h: &ReadyHome, turn: &str) {
    for e in std::fs::read_dir(h.home.ipc_in("alice")).unwrap().flatten() {
        if e.file_name().to_string_lossy().contains(turn) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

/// Waits until alice's `out/` has been read to the end.
fn drained(h: &ReadyHome) -> bool {
    wait_until(LONG, || {
        std::fs::read_dir(h.home.ipc_out("alice")).unwrap().count() == 0
    })
}

#[test]
fn extra_messages_per_turn_are_capped_in_number_and_bytes() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let _daemon = Daemon::start(&h.home);
    let out = h.home.ipc_out("alice");

    // Many small ones: the first 20 are stored, and one event says the rest were not.
    h.home.run(&["send", "alice", "one"]).ok();
    let first = the_turn(&h);
    for i in 0..60 {
        agent_writes(
            &out,
            extra(&first, &format!("small{i:03}"), &format!("note {i}")),
        );
    }
    assert!(drained(&h));
    assert_eq!(extras_of(&h, &first).0, 20);
    let events = dropped_events(&h);
    assert_eq!(events.len(), 1, "one event per turn: {events:?}");
    assert_eq!(events[0]["turn_id"], first.as_str());
    assert_eq!(events[0]["reason"], "over the limit");

    // The turn goes on: its answer is recorded, and an extra after it is not.
    agent_writes(&out, reply(&first, "r1", "done"));
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "alice"
    )
    .len()
        == 1));
    agent_done_with(&h, &first);
    agent_writes(&out, extra(&first, "late", "after the answer"));
    assert!(drained(&h));
    assert_eq!(extras_of(&h, &first).0, 20);

    // A few large ones: no more than 256 KiB in all.
    h.home.run(&["send", "alice", "two"]).ok();
    assert!(wait_until(LONG, || envelopes_in(&h, "turn").len() == 1
        && envelopes_in(&h, "turn")[0]["turn_id"] != first.as_str()));
    let second = envelopes_in(&h, "turn")[0]["turn_id"]
        .as_str()
        .unwrap()
        .to_string();
    let big = "y".repeat(900_000);
    for i in 0..40 {
        let body = if i < 2 {
            "z".repeat(100_000)
        } else {
            big.clone()
        };
        agent_writes(&out, extra(&second, &format!("big{i:03}"), &body));
    }
    assert!(drained(&h));
    assert_eq!(extras_of(&h, &second), (2, 200_000));
    assert_eq!(dropped_events(&h).len(), 2, "one more, for the second turn");
    agent_writes(&out, reply(&second, "r2", "done too"));
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "alice"
    )
    .len()
        == 2));
}

#[test]
fn a_flood_of_refused_and_task_requests_is_answered_but_recorded_at_a_bounded_rate() {
    let fake = FakeLlm::start();
    let h = ReadyHome::new();
    alice_on(&h, &fake, "fast");
    let _daemon = Daemon::start(&h.home);
    let out = h.home.ipc_out("alice");

    // 200 model requests with no turn in flight: each is answered, few are written down.
    const ASKED: usize = 200;
    for i in 0..ASKED {
        agent_writes(
            &out,
            model_request(&format!("f{i}"), "t-none", vec![user("hi")], None),
        );
    }
    assert!(
        wait_until(LONG, || envelopes_in(&h, "model_response").len() == ASKED),
        "{} of {ASKED} answered",
        envelopes_in(&h, "model_response").len()
    );
    assert!(envelopes_in(&h, "model_response")
        .iter()
        .all(|r| r["error"].as_str().unwrap_or("").contains("no turn")));
    let recorded = usage(&h).len();
    assert!(
        (1..=10).contains(&recorded),
        "{recorded} usage rows for {ASKED} refused requests"
    );
    assert_eq!(fake.calls(), 0);

    // 40 task requests in a row: 30 are served, the rest told to wait, and no task is made
    // for them.
    for i in 0..40 {
        agent_writes(
            &out,
            json!({"v": 1, "id": format!("task{i}"), "ts": 2, "type": "task_request",
                   "request_id": format!("k{i}"), "action": "list", "args": null}),
        );
    }
    assert!(
        wait_until(LONG, || envelopes_in(&h, "task_response").len() == 40),
        "{} of 40 task requests answered",
        envelopes_in(&h, "task_response").len()
    );
    let answers = envelopes_in(&h, "task_response");
    let refused: Vec<&Value> = answers.iter().filter(|a| a["ok"] == false).collect();
    assert_eq!(refused.len(), 10, "{answers:?}");
    assert!(refused
        .iter()
        .all(|a| a["error"].as_str().unwrap().contains("at most 30 a minute")));
}
