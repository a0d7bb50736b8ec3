//! Channels through the real daemon, real containers and real HTTP: the webhook channel's
//! signed way in (401 and nothing stored without the signature, the same id stored once), its
//! signed way out (retried until a 2xx, resumed after a kill -9, never sent twice once
//! taken), and conversations (two chats never share a turn).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{free_port, wait_until, Daemon, ReadyHome};
use serde_json::{json, Value};
use supervisor::domain::channels::{sign, verify, SIGNATURE_HEADER};

const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";
const SECRET: &str = "webhook-test-secret";
const LONG: Duration = Duration::from_secs(60);

/// One POST the receiver got: its signature header, its body, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    signature: Option<String>,
    body: Vec<u8>,
    status: u16,
}

/// A real HTTP server on loopback that takes the channel's answers: it answers 500 while
/// `failing` is set, else 200, and keeps every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<Mutex<bool>>,
}

impl Receiver {
    fn start(failing: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/out", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(Mutex::new(failing));
        let (g, f) = (got.clone(), failing.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut signature) = (0usize, None);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let (k, v) = line.split_once(':').unwrap_or((&line, ""));
                    let v = v.trim().to_string();
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.parse().unwrap_or(0);
                    } else if k.eq_ignore_ascii_case(SIGNATURE_HEADER) {
                        signature = Some(v);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let status = if *f.lock().unwrap() { 500 } else { 200 };
                g.lock().unwrap().push(Received {
                    signature,
                    body,
                    status,
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self { url, got, failing }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap() = failing;
    }

    /// The answers taken (2xx), as JSON.
    fn taken(&self) -> Vec<Value> {
        self.got()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

/// POSTs `body` to the webhook route with `signature` (None: no header).
fn post(url: &str, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(signature.map(|s| (SIGNATURE_HEADER, s)));
    common::daemon::http("POST", url, &headers, Some(body.to_vec()))
}

fn signed(url: &str, message: Value) -> (u16, Value) {
    let body = serde_json::to_vec(&message).unwrap();
    post(url, &body, Some(&sign(SECRET.as_bytes(), &body)))
}

/// A home with `alice` whose webhook channel answers to `receiver`, and the daemon's TCP
/// listener; returns the webhook URL.
fn webhook_home(h: &ReadyHome, receiver: &Receiver) -> String {
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |c| {
        c["allow_from"] = json!(["local", "webhook:bob", "webhook:carol"]);
        c["channels"] =
            json!({"webhook": {"secret_env": "ALICE_WEBHOOK_SECRET", "url": receiver.url}});
    });
    let port = free_port();
    h.home.listen_on(&format!("127.0.0.1:{port}"));
    format!("http://127.0.0.1:{port}/v1/channels/webhook/alice")
}

fn start(h: &ReadyHome) -> Daemon {
    Daemon::start_with_env(
        &h.home,
        &[
            ("SUPERVISOR_API_TOKEN", TOKEN),
            ("ALICE_WEBHOOK_SECRET", SECRET),
        ],
    )
}

fn inbound(h: &ReadyHome) -> Vec<Value> {
    common::daemon::history_where(&h.home, "alice", |m| m["direction"] == "in")
}

#[test]
fn the_webhook_channel_is_signed_both_ways_stores_once_and_retries_until_taken() {
    let receiver = Receiver::start(true);
    let h = ReadyHome::new();
    let url = webhook_home(&h, &receiver);
    let mut daemon = start(&h);
    h.home.run(&["start", "alice", "--wait"]).ok();

    let message = json!({"id": "m-1", "sender": "bob", "chat": "ops", "text": "hello <&_*.!>"});
    let body = serde_json::to_vec(&message).unwrap();
    // No signature, a wrong one, one for another body: 401, and nothing is stored.
    let wrong = sign(b"not the secret", &body);
    let other = sign(SECRET.as_bytes(), b"{}");
    for signature in [
        None,
        Some(wrong.as_str()),
        Some(other.as_str()),
        Some("sha256="),
    ] {
        let (status, answer) = post(&url, &body, signature);
        assert_eq!(status, 401, "{answer}");
    }
    assert!(inbound(&h).is_empty());
    // An instance without the channel, and a bad message, are refused too.
    assert_eq!(
        signed(&url.replace("/alice", "/nobody"), message.clone()).0,
        404
    );
    assert_eq!(
        signed(
            &url,
            json!({"id": "a/b", "sender": "bob", "chat": "ops", "text": "x"})
        )
        .0,
        400
    );

    // Signed: accepted; the same id again is stored once.
    let (status, first) = signed(&url, message.clone());
    assert_eq!(status, 202, "{first}");
    let (status, again) = signed(&url, message.clone());
    assert_eq!((status, &again["id"]), (202, &first["id"]));
    assert_eq!(inbound(&h).len(), 1);

    // The answer is POSTed, signed, and tried again (the receiver fails) with the same id.
    assert!(
        wait_until(LONG, || receiver.got().len() >= 2),
        "{}",
        daemon.log_text()
    );
    // A kill -9 while it is pending: the restarted daemon carries on with it.
    daemon.kill9();
    receiver.set_failing(false);
    let daemon = start(&h);
    assert!(
        wait_until(LONG, || !receiver.taken().is_empty()),
        "{}",
        daemon.log_text()
    );
    std::thread::sleep(Duration::from_secs(3));
    let got = receiver.got();
    for r in &got {
        assert!(
            verify(SECRET.as_bytes(), &r.body, r.signature.as_deref()),
            "every answer is signed: {r:?}"
        );
    }
    let ids: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "one answer, tried {} times: {got:?}",
        got.len()
    );
    let taken = receiver.taken();
    assert_eq!(taken.len(), 1, "taken once, never sent again: {taken:?}");
    assert_eq!(taken[0]["chat"], "ops");
    assert_eq!(taken[0]["reply_to"], "m-1");
    assert_eq!(taken[0]["kind"], "final");
    assert_eq!(
        taken[0]["text"],
        "echo: [webhook:bob in webhook:ops] hello <&_*.!>"
    );

    // A sender not allowed is stored as refused and gets no answer.
    let (status, refused) = signed(
        &url,
        json!({"id": "m-2", "sender": "mallory", "chat": "ops", "text": "let me in"}),
    );
    assert_eq!((status, refused["state"].as_str()), (202, Some("refused")));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.taken().len(), 1);
    // The secret never reaches the log.
    assert!(!daemon.log_text().contains(SECRET));

    // `channels` shows how the way out stands, naming the secret's variable, never its value.
    let shown = h.home.run(&["channels", "alice", "--json"]).ok();
    assert!(!shown.stdout.contains(SECRET));
    let rows = shown.json();
    let row = &rows[0];
    assert_eq!(
        (
            &row["channel"],
            &row["state"],
            &row["backlog"],
            &row["secret_env"]
        ),
        (
            &json!("webhook"),
            &json!("ok"),
            &json!(0),
            &json!("ALICE_WEBHOOK_SECRET")
        )
    );
    assert!(
        row["last_in_at"].is_i64() && row["last_out_at"].is_i64(),
        "{row}"
    );
    let text = h.home.run(&["channels"]).ok().stdout;
    assert!(
        text.contains("alice webhook: ok") && text.contains("backlog      0"),
        "{text}"
    );
}

#[test]
fn two_chats_never_share_a_turn_and_each_answer_goes_to_its_own() {
    let receiver = Receiver::start(false);
    let h = ReadyHome::new();
    let url = webhook_home(&h, &receiver);
    let _daemon = start(&h);
    // Stopped: everything waits, so that one turn could take it all.
    h.home.run(&["stop", "alice"]).ok();
    for (id, sender, chat) in [
        ("a-1", "bob", "a"),
        ("b-1", "carol", "b"),
        ("a-2", "bob", "a"),
    ] {
        let text = format!("{id} from {sender}");
        let (status, answer) = signed(
            &url,
            json!({"id": id, "sender": sender, "chat": chat, "text": text}),
        );
        assert_eq!(status, 202, "{answer}");
    }
    h.home.run(&["send", "alice", "from the operator"]).ok();
    h.home.run(&["start", "alice", "--wait"]).ok();
    // The first message's turn is handed over at once; then the three waiting (two chats and
    // the operator's) each get a turn of their own: four in all.
    assert!(wait_until(LONG, || receiver.taken().len() >= 3));
    assert!(wait_until(LONG, || common::daemon::finals(
        &h.home, "alice"
    )
    .len()
        >= 4));

    let store = supervisor::infra::store::Store::open(&h.home.path("supervisor.db")).unwrap();
    let finals = common::daemon::finals(&h.home, "alice");
    assert_eq!(finals.len(), 4, "{finals:?}");
    for f in &finals {
        let turn = store.turn_messages(f["turn_id"].as_str().unwrap()).unwrap();
        let chats: std::collections::BTreeSet<_> = turn.iter().map(|m| m.chat.clone()).collect();
        assert_eq!(chats.len(), 1, "one chat per turn: {turn:?}");
        assert_eq!(f["chat"], turn[0].chat, "the answer is in its turn's chat");
    }
    let taken = receiver.taken();
    let mut chats: Vec<_> = taken
        .iter()
        .map(|t| t["chat"].as_str().unwrap().to_string())
        .collect();
    chats.sort();
    assert_eq!(chats, ["a", "a", "b"], "{taken:?}");
    for t in &taken {
        let text = t["text"].as_str().unwrap();
        let other = if t["chat"] == "a" { "b-1" } else { "a-" };
        assert!(!text.contains(other), "another chat's words in {text:?}");
    }
    // The operator's conversation has no outbox.
    assert!(taken
        .iter()
        .all(|t| !t["text"].as_str().unwrap().contains("operator")));
}

/// A receiver that takes connections and never answers: how many it took, how many the
/// sender gave up on (closed).
struct Hanging {
    url: String,
    taken: Arc<Mutex<u32>>,
    closed: Arc<Mutex<u32>>,
}

impl Hanging {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/out", listener.local_addr().unwrap());
        let (taken, closed) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let (t, c) = (taken.clone(), closed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                *t.lock().unwrap() += 1;
                let c = c.clone();
                std::thread::spawn(move || {
                    // Read until the sender closes (its timeout); answer nothing.
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    *c.lock().unwrap() += 1;
                });
            }
        });
        Self { url, taken, closed }
    }
}

#[test]
fn a_receiver_that_hangs_holds_up_only_its_own_answers() {
    let hanging = Hanging::start();
    let h = ReadyHome::new();
    let tg = common::telegram::FakeTelegram::start("654321:TEST-token");
    h.home.run(&["create-instance", "alice"]).ok();
    h.home.run(&["create-instance", "bob"]).ok();
    h.edit_config("alice", |c| {
        c["allow_from"] = json!(["*"]);
        c["channels"] =
            json!({"telegram": {"token_env": "ALICE_TELEGRAM_TOKEN", "api_base": tg.base}});
    });
    h.edit_config("bob", |c| {
        c["allow_from"] = json!(["webhook:carol"]);
        c["channels"] =
            json!({"webhook": {"secret_env": "ALICE_WEBHOOK_SECRET", "url": hanging.url}});
    });
    let port = free_port();
    h.home.listen_on(&format!("127.0.0.1:{port}"));
    let daemon = Daemon::start_with_env(
        &h.home,
        &[
            ("SUPERVISOR_API_TOKEN", TOKEN),
            ("ALICE_WEBHOOK_SECRET", SECRET),
            ("ALICE_TELEGRAM_TOKEN", "654321:TEST-token"),
        ],
    );
    h.home.run(&["start", "alice", "bob", "--wait"]).ok();
    let url = format!("http://127.0.0.1:{port}/v1/channels/webhook/bob");
    let (status, answer) = signed(
        &url,
        json!({"id": "h-1", "sender": "carol", "chat": "ops", "text": "hang on"}),
    );
    assert_eq!(status, 202, "{answer}");
    assert!(
        wait_until(LONG, || *hanging.taken.lock().unwrap() >= 1),
        "{}",
        daemon.log_text()
    );
    // bob's answer hangs on its receiver; alice's goes meanwhile, before bob's try gives up.
    tg.private_text(7, "are you there?");
    assert!(
        wait_until(LONG, || !tg.sent().is_empty()),
        "{}",
        daemon.log_text()
    );
    assert_eq!(
        *hanging.closed.lock().unwrap(),
        0,
        "alice's answer waited for bob's receiver to time out"
    );
}
