//! The Telegram fake keeps the real Bot API's semantics: these tests pin them down, so that
//! tests relying on the fake rely on the real behaviour. No Docker needed.

#[path = "common/telegram.rs"]
mod telegram;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use telegram::FakeTelegram;

const TOKEN: &str = "123456:ABC-xyz";

/// Calls `method` with a JSON body; returns the HTTP status and the answer.
async fn call(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
    call_as(fake, &fake.token, method, body).await
}

async fn call_as(fake: &FakeTelegram, token: &str, method: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/bot{token}/{method}", fake.base);
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// A GET of `method_and_query`; returns the status and the body as text.
async fn call_raw(fake: &FakeTelegram, method_and_query: &str) -> (u16, String) {
    let url = format!("{}/bot{}/{method_and_query}", fake.base, fake.token);
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[track_caller]
fn assert_error(answer: (u16, Value), code: u16, description: &str) {
    assert_eq!(answer.0, code, "{}", answer.1);
    assert_eq!(
        answer.1,
        json!({"ok": false, "error_code": code, "description": description})
    );
}

fn send(chat_id: i64, text: &str) -> Value {
    json!({"chat_id": chat_id, "text": text})
}

#[tokio::test]
async fn get_me_describes_the_bot() {
    let fake = FakeTelegram::start(TOKEN);
    let (status, body) = call(&fake, "getMe", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"ok": true, "result": {"id": 123456, "is_bot": true, "first_name": "Test Bot",
            "username": "test_bot", "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false}})
    );
    assert_eq!(fake.bot_id(), 123456);
    assert_eq!(fake.username(), "test_bot");
    assert_eq!(fake.requests(), ["getMe"]);
}

#[tokio::test]
async fn wrong_or_revoked_token_is_unauthorized_and_unknown_methods_not_found() {
    let fake = FakeTelegram::start(TOKEN);
    let wrong = call_as(&fake, "123456:other", "getMe", json!({})).await;
    assert_error(wrong, 401, "Unauthorized");
    assert_error(
        call(&fake, "noSuchMethod", json!({})).await,
        404,
        "Not Found",
    );
    fake.set_token_revoked(true);
    assert_error(call(&fake, "getMe", json!({})).await, 401, "Unauthorized");
    fake.set_token_revoked(false);
    assert_eq!(call(&fake, "getme", json!({})).await.0, 200);
}

#[tokio::test]
async fn an_offset_confirms_earlier_updates_and_never_goes_back() {
    let fake = FakeTelegram::start(TOKEN);
    assert_eq!(fake.private_text(42, "one"), (1000, 1));
    assert_eq!(fake.private_text(42, "two"), (1001, 2));
    assert_eq!(fake.group_text(-100, 42, "three"), (1002, 1));
    let (_, body) = call(&fake, "getUpdates", json!({})).await;
    let updates = body["result"].as_array().unwrap();
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[0]["message"]["text"], "one");
    assert_eq!(updates[0]["message"]["chat"]["type"], "private");
    assert_eq!(updates[2]["message"]["chat"]["title"], "Group -100");
    assert_eq!(fake.pending_updates(), 3);

    let (_, body) = call(&fake, "getUpdates", json!({"offset": 1002})).await;
    assert_eq!(body["result"][0]["update_id"], 1002);
    assert_eq!(body["result"].as_array().unwrap().len(), 1);
    assert_eq!((fake.confirmed_offset(), fake.pending_updates()), (1002, 1));

    let (_, body) = call(&fake, "getUpdates", json!({"offset": 1000, "limit": 1})).await;
    assert_eq!(body["result"][0]["update_id"], 1002);
    assert_eq!(fake.confirmed_offset(), 1002);

    // A kind left out by allowed_updates is not returned, yet the offset confirms it.
    fake.push_update(json!({"edited_message": {"message_id": 1, "chat": {"id": 42}}}));
    let p = json!({"offset": 1003, "allowed_updates": ["message"]});
    let (_, body) = call(&fake, "getUpdates", p).await;
    assert_eq!(body["result"], json!([]));
    assert_eq!(fake.pending_updates(), 1);
    call(&fake, "getUpdates", json!({"offset": 1004})).await;
    assert_eq!(fake.pending_updates(), 0);
}

#[tokio::test]
async fn a_long_poll_wakes_on_an_update_and_times_out_empty() {
    let fake = FakeTelegram::start(TOKEN);
    let started = Instant::now();
    let (_, body) = call(&fake, "getUpdates", json!({"timeout": 1})).await;
    assert_eq!(body["result"], json!([]));
    assert!(started.elapsed() >= Duration::from_millis(900));

    let started = Instant::now();
    let poll = call(&fake, "getUpdates", json!({"timeout": 50}));
    let push = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fake.private_text(7, "wake up");
    };
    let ((status, body), ()) = tokio::join!(poll, push);
    assert_eq!(status, 200);
    assert_eq!(body["result"][0]["message"]["text"], "wake up");
    // Woken by the update, long before the poll's own 50 s were up.
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[tokio::test]
async fn a_second_poller_ends_the_first_with_409() {
    let fake = FakeTelegram::start(TOKEN);
    let first = call(&fake, "getUpdates", json!({"timeout": 10}));
    let second = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        call(&fake, "getUpdates", json!({"timeout": 0})).await
    };
    let (first, second) = tokio::join!(first, second);
    assert_error(
        first,
        409,
        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    );
    assert_eq!(second, (200, json!({"ok": true, "result": []})));

    fake.set_conflict(true);
    assert_eq!(call(&fake, "getUpdates", json!({})).await.0, 409);
    fake.set_conflict(false);

    let hook = json!({"url": "https://example.com/hook"});
    assert_eq!(call(&fake, "setWebhook", hook).await.1["result"], true);
    assert_eq!(fake.webhook().as_deref(), Some("https://example.com/hook"));
    assert_error(
        call(&fake, "getUpdates", json!({})).await,
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
    );
    call(
        &fake,
        "deleteWebhook",
        json!({"drop_pending_updates": true}),
    )
    .await;
    assert_eq!(call(&fake, "getUpdates", json!({})).await.0, 200);
}

#[tokio::test]
async fn text_length_is_counted_in_utf16_units() {
    let fake = FakeTelegram::start(TOKEN);
    fake.private_text(42, "hi");
    fake.set_flood_control(false);
    let too_long = "Bad Request: message is too long";
    assert_eq!(
        call(&fake, "sendMessage", send(42, &"a".repeat(4096)))
            .await
            .0,
        200
    );
    assert_error(
        call(&fake, "sendMessage", send(42, &"a".repeat(4097))).await,
        400,
        too_long,
    );
    assert_eq!(
        call(&fake, "sendMessage", send(42, &"😀".repeat(2048)))
            .await
            .0,
        200
    );
    assert_error(
        call(&fake, "sendMessage", send(42, &"😀".repeat(2049))).await,
        400,
        too_long,
    );
    let empty = "Bad Request: message text is empty";
    assert_error(call(&fake, "sendMessage", send(42, "")).await, 400, empty);
    assert_eq!(fake.sent().len(), 2);
}

#[tokio::test]
async fn parse_modes_reject_malformed_markup_and_plain_text_passes_intact() {
    let fake = FakeTelegram::start(TOKEN);
    fake.private_text(42, "hi");
    fake.set_flood_control(false);
    let with = |text: &str, mode: &str| json!({"chat_id": 42, "text": text, "parse_mode": mode});
    let rejected = [
        (
            with("<foo>x</foo>", "HTML"),
            "Unsupported start tag \"foo\" at byte offset 0",
        ),
        (
            with("1 < 2", "HTML"),
            "Unsupported start tag \"\" at byte offset 2",
        ),
        (
            with("R&D", "HTML"),
            "Unsupported character entity at byte offset 1",
        ),
        (
            with("<b>bold", "HTML"),
            "Can't find end tag corresponding to start tag \"b\"",
        ),
        (
            with("done.", "MarkdownV2"),
            "Character '.' is reserved and must be escaped with the preceding '\\'",
        ),
        (
            with("*bold", "MarkdownV2"),
            "Can't find end of Bold entity at byte offset 0",
        ),
        (
            with("snake_case", "Markdown"),
            "Can't find end of the entity starting at byte offset 5",
        ),
    ];
    for (body, detail) in rejected {
        let answer = call(&fake, "sendMessage", body.clone()).await;
        let description = format!("Bad Request: can't parse entities: {detail}");
        assert_error(answer, 400, &description);
    }
    let unsupported = call(&fake, "sendMessage", with("x", "md")).await;
    assert_error(unsupported, 400, "Bad Request: unsupported parse_mode");

    let accepted = [
        with(
            "<b>a</b> &amp; <a href=\"https://x.y\">link</a> &lt;&#33;",
            "HTML",
        ),
        with(
            "*b* _i_ __u__ ~s~ ||sp|| `c.d` [t](https://x.y) done\\.",
            "MarkdownV2",
        ),
        with("*b* _i_ `c_d` [t](https://x.y)", "Markdown"),
    ];
    for body in accepted {
        let (status, answer) = call(&fake, "sendMessage", body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let plain = "<&_*.!> 1 < 2";
    let (status, answer) = call(&fake, "sendMessage", send(42, plain)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["text"], plain);
    assert_eq!(answer["result"]["from"]["id"], 123456);
    let sent = fake.sent();
    assert_eq!(sent.last().unwrap().text, plain);
    assert_eq!(sent[0].parse_mode.as_deref(), Some("HTML"));
}

#[tokio::test]
async fn replies_need_a_message_in_that_chat_and_sends_a_known_chat() {
    let fake = FakeTelegram::start(TOKEN);
    let (_, asked) = fake.private_text(42, "question");
    let not_found = "Bad Request: message to be replied not found";
    let stray = json!({"chat_id": 42, "text": "x", "reply_to_message_id": 99});
    assert_error(call(&fake, "sendMessage", stray).await, 400, not_found);
    let stray = json!({"chat_id": 42, "text": "x", "reply_parameters": {"message_id": 99}});
    assert_error(call(&fake, "sendMessage", stray).await, 400, not_found);
    let lenient = json!({"chat_id": 42, "text": "x",
        "reply_parameters": {"message_id": 99, "allow_sending_without_reply": true}});
    assert_eq!(call(&fake, "sendMessage", lenient).await.0, 200);
    let reply =
        json!({"chat_id": "42", "text": "answer", "reply_parameters": {"message_id": asked}});
    let (status, answer) = call(&fake, "sendMessage", reply).await;
    assert_eq!(status, 200);
    assert_eq!(answer["result"]["message_id"], 3);
    assert_eq!(answer["result"]["reply_to_message"]["text"], "question");
    let sent = fake.sent();
    assert_eq!(sent[0].reply_to_message_id, None);
    assert_eq!(sent[1].reply_to_message_id, Some(asked));

    let unknown = "Bad Request: chat not found";
    assert_error(
        call(&fake, "sendMessage", send(777, "x")).await,
        400,
        unknown,
    );
    let typing = json!({"chat_id": 777, "action": "typing"});
    assert_error(call(&fake, "sendChatAction", typing).await, 400, unknown);
    let typing = json!({"chat_id": 42, "action": "typing", "message_thread_id": 5});
    assert_eq!(
        call(&fake, "sendChatAction", typing).await.1["result"],
        true
    );
    let actions = fake.actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(
        (actions[0].chat_id, actions[0].action.as_str()),
        (42, "typing")
    );
    assert_eq!(actions[0].message_thread_id, Some(5));
}

#[tokio::test]
async fn flood_limits_answer_429_with_retry_after() {
    let fake = FakeTelegram::start(TOKEN);
    fake.freeze_clock();
    fake.private_text(42, "hi");
    fake.fail_sends_with_429(2, 7);
    for _ in 0..2 {
        let (status, body) = call(&fake, "sendMessage", send(42, "x")).await;
        assert_eq!(status, 429);
        assert_eq!(
            body,
            json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7",
                "parameters": {"retry_after": 7}})
        );
    }
    // Into one chat: a burst of three, then about one a second.
    for _ in 0..3 {
        assert_eq!(call(&fake, "sendMessage", send(42, "x")).await.0, 200);
    }
    let (status, body) = call(&fake, "sendMessage", send(42, "x")).await;
    assert_eq!(status, 429);
    assert_eq!(body["parameters"]["retry_after"], 1);
    fake.advance_clock(Duration::from_millis(1100));
    assert_eq!(call(&fake, "sendMessage", send(42, "x")).await.0, 200);
    assert_eq!(fake.sent().len(), 4);
}

#[tokio::test]
async fn more_than_30_sends_a_second_across_chats_are_refused() {
    let fake = FakeTelegram::start(TOKEN);
    fake.freeze_clock();
    for user in 1..=31 {
        fake.private_text(user, "hi");
    }
    for user in 1..=30 {
        assert_eq!(call(&fake, "sendMessage", send(user, "x")).await.0, 200);
    }
    let (status, body) = call(&fake, "sendMessage", send(31, "x")).await;
    assert_eq!(
        (status, &body["parameters"]["retry_after"]),
        (429, &json!(1))
    );
    fake.set_flood_control(false);
    assert_eq!(call(&fake, "sendMessage", send(31, "x")).await.0, 200);
}

#[tokio::test]
async fn a_dead_api_behind_a_proxy_answers_502() {
    let fake = FakeTelegram::start(TOKEN);
    // A poll in progress ends with the proxy's page too.
    let poll = call_raw(&fake, "getUpdates?timeout=10");
    let outage = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fake.set_down(true);
    };
    let ((status, page), ()) = tokio::join!(poll, outage);
    assert_eq!(status, 502);
    assert!(page.contains("502 Bad Gateway"), "{page}");
    assert_eq!(call_raw(&fake, "getMe").await.0, 502);
    fake.set_down(false);
    assert_eq!(call_raw(&fake, "getMe").await.0, 200);
}

#[tokio::test]
async fn get_file_then_download_and_parameters_from_query_or_form() {
    let fake = FakeTelegram::start(TOKEN);
    fake.add_file("F1", b"hello file".to_vec(), "documents/file_0.txt");
    let (status, body) = call(&fake, "getFile", json!({"file_id": "F1"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["file_size"], 10);
    let path = body["result"]["file_path"].as_str().unwrap();
    assert_eq!(path, "documents/file_0.txt");
    let url = format!("{}/file/bot{}/{path}", fake.base, fake.token);
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"hello file");
    let missing = format!("{}/file/bot{}/documents/none.txt", fake.base, fake.token);
    assert_eq!(reqwest::get(&missing).await.unwrap().status().as_u16(), 404);
    let unknown = call(&fake, "getFile", json!({"file_id": "nope"})).await;
    assert_error(unknown, 400, "Bad Request: invalid file_id");
    fake.add_file("BIG", vec![0; 20 * 1024 * 1024 + 1], "videos/big.mp4");
    let big = call(&fake, "getFile", json!({"file_id": "BIG"})).await;
    assert_error(big, 400, "Bad Request: file is too big");

    fake.private_text(42, "hi");
    let query = call_raw(&fake, "sendMessage?chat_id=42&text=a%20b%2Bc").await;
    assert_eq!(query.0, 200, "{}", query.1);
    let form = reqwest::Client::new()
        .post(format!("{}/bot{}/sendMessage", fake.base, fake.token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("chat_id=42&text=hello+there&reply_parameters=%7B%22message_id%22%3A1%7D")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 200);
    let sent = fake.sent();
    assert_eq!(sent[0].text, "a b+c");
    assert_eq!(
        (sent[1].text.as_str(), sent[1].reply_to_message_id),
        ("hello there", Some(1))
    );
}
