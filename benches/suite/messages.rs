//! Message round trip with the `echo` model through a real container, sequential, N messages
//! (default 1000) each way: as the daemon measures it (accepted → answer stored), as a client
//! on the unix socket sees it, through the CLI (`send --wait`, a process per message) and
//! through the HTTP API on TCP with its bearer token; then HOP_N more (default 300, at most N)
//! on the socket, watched file by file, for the time of each hop (see `hops.rs`); and N through
//! the signed webhook channel, from the POST in to the answer POSTed out to a loopback receiver;
//! and N through the Telegram channel, from an update pushed to a loopback fake of the Bot API
//! (its long poll woken at once) to the reply the bot sends there.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, sv};
use crate::fake_telegram::FakeTelegram;
use crate::hops;
use crate::stats::{ms, summary};
use supervisor::app::client::DaemonClient;
use supervisor::app::daemon::api::SendRequest;
use supervisor::infra::home::Home;

const TOKEN: &str = "bench-token-0123456789abcdef0123456789";
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
const TELEGRAM_TOKEN: &str = "123456:BENCH-token";
/// Each Telegram round trip has a private chat of its own, from this user id up: the bot
/// sends about one message a second into one chat, and a shared chat would measure that pace.
const TELEGRAM_FIRST_USER: i64 = 10_000;
/// Least time between two replies the bot sends: under its pace of 30 messages a second in
/// all, so that no reply waits for the pace and the figure is the channel's own.
const TELEGRAM_GAP: Duration = Duration::from_millis(40);

pub fn n() -> usize {
    std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

pub fn request(text: String) -> SendRequest {
    SendRequest {
        text,
        sender: Some("local".into()),
        channel: Some("cli".into()),
        wait: true,
        timeout_secs: Some(120),
        id: None,
    }
}

/// supervisor.toml's text with `line` in its `[api]` table, wherever that table is (a line
/// added at the end would land in whatever table comes last).
pub fn with_api_line(text: &str, line: &str) -> String {
    if text.starts_with("[api]\n") || text.contains("\n[api]\n") {
        text.replacen("[api]\n", &format!("[api]\n{line}\n"), 1)
    } else {
        format!("{text}\n[api]\n{line}\n")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn run() -> Value {
    let n = n();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("home");
    common::prepared_home(&root, "m", 1);
    // A caller over TCP is never `local`: it is `api:tcp`, which the instance must allow.
    let config = Home::new(&root)
        .unwrap()
        .instance_paths(&supervisor::domain::instance::InstanceName::parse("m0").unwrap())
        .config;
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    // The Telegram round trips come from N users, one private chat each: "*" lets them all in
    // without a list of N senders read with the config on every message of every row (the
    // named senders stay to say who the other rows' callers are).
    c["allow_from"] = json!(["local", "api:tcp", "webhook:bench", "*"]);
    let (receiver_url, received) = crate::receiver::start();
    let telegram = FakeTelegram::start(TELEGRAM_TOKEN);
    c["channels"] = json!({
        "webhook": {"secret_env": "BENCH_WEBHOOK_SECRET", "url": receiver_url},
        "telegram": {"token_env": "BENCH_TELEGRAM_TOKEN", "api_base": telegram.base},
    });
    std::fs::write(&config, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let port = free_port();
    let toml = root.join("supervisor.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        with_api_line(&text, &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let daemon = common::start_daemon_with_env(
        &root,
        &[
            ("SUPERVISOR_API_TOKEN", TOKEN),
            ("BENCH_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("BENCH_TELEGRAM_TOKEN", TELEGRAM_TOKEN),
        ],
    );
    sv(&root, &["start", "--all", "--wait"]);
    let home = Home::new(&root).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let (mut daemon_side, mut socket) = (Vec::new(), Vec::new());
    let (mut http, mut webhook) = (Vec::new(), Vec::new());
    let hop_n = std::env::var("HOP_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n.min(300));
    let mut per_hop = Vec::new();
    rt.block_on(async {
        let client = DaemonClient::for_home(&home);
        for i in 0..20 {
            client
                .send("m0", &request(format!("warm {i}")))
                .await
                .unwrap();
        }
        for i in 0..n {
            let t = Instant::now();
            let r = client
                .send("m0", &request(format!("message {i}")))
                .await
                .unwrap();
            socket.push(ms(t.elapsed()));
            daemon_side.push(r.latency_ms.unwrap() as f64);
            assert_eq!(
                r.reply.as_deref(),
                Some(format!("echo: [local] message {i}").as_str())
            );
        }
        // The same round trip again, watched file by file: where its time goes (apart from
        // the figures above, so that the watching costs them nothing).
        let ipc = home
            .instance_paths(&supervisor::domain::instance::InstanceName::parse("m0").unwrap())
            .ipc;
        let mut probe = hops::Probe::watch(&ipc.join("in"), &ipc.join("out"));
        for i in 0..hop_n {
            let sent = Instant::now();
            client
                .send("m0", &request(format!("hop {i}")))
                .await
                .unwrap();
            if let Some(h) = probe.round_trip(sent, Instant::now()) {
                per_hop.push(h);
            }
        }
        let web = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/v1/instances/m0/messages");
        for i in 0..n {
            let t = Instant::now();
            let r: Value = web
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"text": format!("http {i}"), "wait": true}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            http.push(ms(t.elapsed()));
            assert_eq!(r["reply"], format!("echo: [api:tcp] http {i}"));
        }
        // The webhook channel: signed POST in → the answer POSTed out, through the outbox.
        let url = format!("http://127.0.0.1:{port}/v1/channels/webhook/m0");
        for i in 0..n {
            let t = post_webhook(
                &web,
                &url,
                WEBHOOK_SECRET,
                &json!({"id": format!("w{i}"), "sender": "bench", "chat": "c", "text": format!("hook {i}")}),
            )
            .await;
            let (at, answer) = received
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("the webhook answer");
            webhook.push(ms(at.duration_since(t)));
            assert_eq!(
                answer["text"],
                format!("echo: [webhook:bench in webhook:c] hook {i}")
            );
        }
    });
    let mut telegram_rt = Vec::new();
    // A few chats first, unmeasured, as the other rows are warmed: the bot's first poll and
    // its connections to the API are set up by then.
    let mut last_reply = Instant::now();
    for i in 0..3 {
        last_reply = telegram_round_trip(&telegram, TELEGRAM_FIRST_USER - 10 + i, "warm").1;
    }
    for i in 0..n {
        if let Some(wait) = (last_reply + TELEGRAM_GAP).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let user = TELEGRAM_FIRST_USER + i as i64;
        let (took, at) = telegram_round_trip(&telegram, user, &format!("tg {i}"));
        telegram_rt.push(ms(took));
        last_reply = at;
    }
    let mut cli = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let out = sv(&root, &["send", "m0", &format!("cli {i}"), "--wait"]);
        cli.push(ms(t.elapsed()));
        assert_eq!(out.trim(), format!("echo: [local] cli {i}"));
    }
    let (lost, duplicated) = common::lost_and_duplicated(&root);
    common::tear_down(&root, daemon);

    println!("round trip with echo, 1 instance, sequential, {n} messages each:");
    let d = summary("accepted → answer stored (daemon)", &mut daemon_side);
    let s = summary("client on the unix socket (send, wait)", &mut socket);
    let h = summary("HTTP API on TCP with token (send, wait)", &mut http);
    let c = summary("CLI `send --wait` (a process each)", &mut cli);
    let w = summary("webhook in → answer POSTed out", &mut webhook);
    let t = summary("telegram update in → reply sent", &mut telegram_rt);
    println!("lost: {lost}, duplicated: {duplicated}");
    let hops = hops::report(&per_hop);
    json!({
        "hops": hops,
        "messages_each": n,
        "daemon": d,
        "socket_client": s,
        "http_api": h,
        "cli_send_wait": c,
        "webhook": w,
        "telegram": t,
        "lost": lost,
        "duplicated": duplicated,
    })
}

/// Pushes `text` from `user` in a private chat and waits for the bot's reply to it; the time
/// from the push to the reply reaching the fake API, and when it did.
fn telegram_round_trip(telegram: &FakeTelegram, user: i64, text: &str) -> (Duration, Instant) {
    let seen = telegram.sent().len();
    let pushed = Instant::now();
    let (_, message_id) = telegram.private_text(user, text);
    let deadline = pushed + Duration::from_secs(120);
    loop {
        let reply = telegram
            .sent()
            .into_iter()
            .skip(seen)
            .find(|s| s.chat_id == user && s.reply_to_message_id == Some(message_id));
        if let Some(reply) = reply {
            assert!(
                reply.text.starts_with(&format!("echo: [telegram:{user}"))
                    && reply.text.ends_with(&format!("] {text}")),
                "{reply:?}"
            );
            return (reply.at.duration_since(pushed), reply.at);
        }
        assert!(Instant::now() < deadline, "no reply to telegram:{user}");
        // The figure is the fake's own time of arrival; looking often only ends the wait
        // sooner.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// POSTs `message` to a webhook channel's `url`, signed with `secret`, and checks the `202`;
/// returns the instant just before the POST.
pub async fn post_webhook(
    web: &reqwest::Client,
    url: &str,
    secret: &str,
    message: &serde_json::Value,
) -> Instant {
    let body = serde_json::to_vec(message).unwrap();
    let signature = supervisor::domain::channels::sign(secret.as_bytes(), &body);
    let t = Instant::now();
    let status = web
        .post(url)
        .header(supervisor::domain::channels::SIGNATURE_HEADER, signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202, "{url} {message}");
    t
}
