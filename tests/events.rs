//! The audit log: `events` and `events -f` with the real binary, and `GET /v1/events` as
//! server-sent events from a real daemon, behind its token.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::daemon::{wait_until, Daemon};
use common::follower::Follower;
use common::TestHome;
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";

fn store(home: &TestHome) -> supervisor::infra::store::Store {
    supervisor::infra::store::Store::open(&home.path("supervisor.db")).unwrap()
}

/// An event whose detail holds what an agent could have written: controls JSON does not
/// escape (C1, bidi overrides) and one it does (ESC).
fn record_hostile_event(home: &TestHome) {
    store(home)
        .record_event(
            Some("alice"),
            "agent",
            "task.refused",
            Some(&json!({"reason": "x\u{9b}2J\u{202e}\u{1b}[31m"})),
        )
        .unwrap();
}

#[test]
fn events_prints_the_audit_log_escaped_and_follows_it_while_the_daemon_comes_and_goes() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();

    let text = home.run(&["events"]).ok().stdout;
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("  alice ") && lines[0].contains("instance.created   by cli"),
        "{text}"
    );
    let all = home.run(&["events", "--json"]).ok().json();
    assert_eq!(all[0]["kind"], "instance.created");
    assert_eq!(all[0]["instance"], "alice");
    assert!(all[0]["id"].is_i64() && all[0]["at"].is_i64());
    assert_eq!(home.run(&["events", "bob"]).ok().stdout, "");
    home.run(&["events", "Not A Name"]).fails(1, "error:");

    record_hostile_event(&home);
    let text = home.run(&["events", "alice"]).ok().stdout;
    assert!(
        text.contains(r#"{"reason":"x\u{9b}2J\u{202e}\u001b[31m"}"#),
        "{text}"
    );
    assert!(!text.contains('\u{9b}') && !text.contains('\u{202e}'));
    // JSON keeps the exact text.
    let raw = home.run(&["events", "alice", "--json"]).ok().json();
    assert_eq!(raw[1]["detail"]["reason"], "x\u{9b}2J\u{202e}\u{1b}[31m");
    assert_eq!(
        home.run(&["events", "--limit", "1", "--json"]).ok().json()[0]["kind"],
        "task.refused"
    );

    // Following: the last one first, then each new event once, whoever records it.
    let follower = Follower::start(&home, &["events", "-f", "--limit", "1"]);
    follower.expect("task.refused");
    let mut daemon = Daemon::start(&home);
    home.run(&["create-instance", "bob"]).ok();
    follower.expect("  bob ");
    daemon.kill9();
    home.run(&["create-instance", "carol"]).ok();
    follower.expect("  carol ");
    let _daemon = Daemon::start(&home);
    // The daemon records a supervisor.toml it refuses itself.
    std::fs::write(home.path("supervisor.toml"), "[daemon\n").unwrap();
    follower.expect("config.invalid");
    let lines = follower.lines();
    for needle in ["task.refused", "  bob ", "  carol "] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(needle)).count(),
            1,
            "{lines:#?}"
        );
    }
    assert!(!lines
        .iter()
        .any(|l| l.contains("  alice        instance.created")));

    // With --json, one object per line.
    let json_follower = Follower::start(&home, &["events", "-f", "--json", "--limit", "2"]);
    let first: Value = serde_json::from_str(&json_follower.expect("\"kind\"")).unwrap();
    assert!(first["id"].is_i64());
}

/// One server-sent-events stream read as it comes.
struct Sse {
    rt: tokio::runtime::Runtime,
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    fn open(url: &str, token: Option<&str>, last_id: Option<i64>) -> Result<Self, (u16, Value)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let resp = rt.block_on(async {
            let mut req = reqwest::Client::new().get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Some(id) = last_id {
                req = req.header("Last-Event-ID", id.to_string());
            }
            req.send().await.unwrap()
        });
        if resp.status() != 200 {
            let code = resp.status().as_u16();
            let body = rt.block_on(resp.json::<Value>()).unwrap_or(Value::Null);
            return Err((code, body));
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Ok(Self {
            rt,
            resp,
            buf: String::new(),
        })
    }

    /// The next event: its `id` and its data as JSON (keep-alive comments skipped); None
    /// when the stream ends.
    fn next(&mut self) -> Option<(i64, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(str::to_string))
                };
                if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                    return Some((id.parse().unwrap(), serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            let chunk = self
                .rt
                .block_on(async { tokio::time::timeout(LONG, self.resp.chunk()).await })
                .expect("the stream went quiet")
                .ok()??;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[test]
fn get_v1_events_streams_the_log_behind_the_token_resumes_and_ends_with_the_daemon() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    home.listen_on(&format!("127.0.0.1:{port}"));
    let mut daemon = Daemon::start_with_env(&home, &[("SUPERVISOR_API_TOKEN", TOKEN)]);
    let url = format!("http://127.0.0.1:{port}/v1/events");

    assert_eq!(Sse::open(&url, None, None).err().unwrap().0, 401);
    assert_eq!(Sse::open(&url, Some("wrong"), None).err().unwrap().0, 401);
    let (code, body) = Sse::open(&format!("{url}?after=soon"), Some(TOKEN), None)
        .err()
        .unwrap();
    assert_eq!(code, 400);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("expected an event id"));
    let (code, _) = Sse::open(&format!("{url}?instance=Not%20A%20Name"), Some(TOKEN), None)
        .err()
        .unwrap();
    assert_eq!(code, 400);

    // The latest events, then each new one as it is recorded, with what an agent wrote in
    // it exactly (JSON), and its id.
    let mut stream = Sse::open(&url, Some(TOKEN), None).unwrap();
    let (created, first) = stream.next().unwrap();
    assert_eq!(
        (first["kind"].as_str(), first["instance"].as_str()),
        (Some("instance.created"), Some("alice"))
    );
    record_hostile_event(&home);
    let (_, hostile) = stream.next().unwrap();
    assert_eq!(hostile["detail"]["reason"], "x\u{9b}2J\u{202e}\u{1b}[31m");
    home.run(&["create-instance", "bob"]).ok();
    let (bob_id, bob) = stream.next().unwrap();
    assert_eq!(bob["instance"], "bob");

    // Reconnecting with the last id seen gives what came after, and nothing twice.
    let mut resumed = Sse::open(&url, Some(TOKEN), Some(created)).unwrap();
    assert_eq!(resumed.next().unwrap().1["kind"], "task.refused");
    assert_eq!(resumed.next().unwrap().0, bob_id);
    let mut only_bob =
        Sse::open(&format!("{url}?instance=bob&limit=5"), Some(TOKEN), None).unwrap();
    assert_eq!(only_bob.next().unwrap().0, bob_id);

    // Open streams do not keep the daemon from stopping: they end with it. (The daemon
    // waits for its socket's connections to finish, so one is open there too.)
    let mut on_socket =
        std::os::unix::net::UnixStream::connect(home.path("run/supervisor.sock")).unwrap();
    on_socket
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    on_socket.set_read_timeout(Some(LONG)).unwrap();
    let mut head = [0u8; 64];
    let n = on_socket.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(
            supervisor::app::daemon::lock::recorded_pid(&home.path("run")).unwrap() as i32,
        ),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        wait_until(LONG, || !daemon.is_running()),
        "the daemon did not stop with event streams open: {}",
        daemon.log_text()
    );
    assert!(stream.next().is_none());
}
