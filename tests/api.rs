//! The daemon's API over real sockets: the TCP listener and its token rules, the JSON
//! endpoints, metrics, an instance's own port (never without the token), and who a caller
//! over TCP may be.

mod common;

use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use common::daemon::{free_port, wait_until, Daemon, ReadyHome};
use common::{bin, TestHome};
use serde_json::{json, Value};
use supervisor::app::client::DaemonClient;
use supervisor::infra::home::Home;

const LONG: Duration = Duration::from_secs(60);
const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";

fn listen_on(home: &TestHome, addr: &str) {
    home.listen_on(addr);
}

/// One HTTP request; returns the status and the body (JSON when it parses, else a string).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    })
}

#[test]
fn the_tcp_api_demands_its_token_and_serves_every_endpoint() {
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    let alice_port = free_port();
    h.edit_config("alice", |c| {
        c["port"] = json!(alice_port);
        // Callers over TCP are `api:tcp`, never `local`.
        c["allow_from"] = json!(["local", "api:tcp"]);
    });
    let port = free_port();
    listen_on(&h.home, &format!("127.0.0.1:{port}"));
    let daemon = Daemon::start_with_env(&h.home, &[("SUPERVISOR_API_TOKEN", TOKEN)]);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let base = format!("http://127.0.0.1:{port}");
    let url = |p: &str| format!("{base}{p}");

    // The token, exactly, or nothing; liveness alone answers without it, and says no more.
    assert_eq!(
        call("GET", &url("/v1/health"), None, None),
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        call("GET", &url("/v1/health"), Some("wrong"), None),
        (200, json!({"status": "ok"}))
    );
    assert_eq!(call("GET", &url("/v1/status"), None, None).0, 401);
    assert_eq!(
        call("GET", &url("/v1/instances"), Some("wrong"), None).0,
        401
    );
    assert_eq!(
        call("GET", &url("/metrics"), Some(&TOKEN[1..]), None).0,
        401
    );
    let (code, health) = call("GET", &url("/v1/health"), Some(TOKEN), None);
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")));

    assert!(wait_until(LONG, || call(
        "GET",
        &url("/v1/ready"),
        Some(TOKEN),
        None
    )
    .0 == 200));
    let (_, ready) = call("GET", &url("/v1/ready"), Some(TOKEN), None);
    assert_eq!(ready["problems"], json!([]));

    // Send and wait.
    let (code, sent) = call(
        "POST",
        &url("/v1/instances/alice/messages"),
        Some(TOKEN),
        Some(json!({"text": "over tcp", "wait": true})),
    );
    assert_eq!(code, 200, "{sent}");
    assert_eq!(sent["reply"], "echo: [api:tcp] over tcp");
    let (_, history) = call(
        "GET",
        &url("/v1/instances/alice/messages?limit=10"),
        Some(TOKEN),
        None,
    );
    assert_eq!(history.as_array().unwrap().len(), 2);
    let (_, alice) = call("GET", &url("/v1/instances/alice"), Some(TOKEN), None);
    assert_eq!(alice["state"], "running");
    assert_eq!(
        call("GET", &url("/v1/instances/nobody"), Some(TOKEN), None).0,
        404
    );

    // Tasks.
    let (code, task) = call(
        "POST",
        &url("/v1/instances/alice/tasks"),
        Some(TOKEN),
        Some(json!({"every": "1h", "prompt": "hourly"})),
    );
    assert_eq!(code, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let (code, bad) = call(
        "POST",
        &url("/v1/instances/alice/tasks"),
        Some(TOKEN),
        Some(json!({"cron": "61 * * * *", "prompt": "never"})),
    );
    assert_eq!(code, 422);
    assert!(
        bad["error"].as_str().unwrap().contains("invalid cron"),
        "{bad}"
    );
    let (_, paused) = call(
        "POST",
        &url(&format!("/v1/tasks/{id}/pause")),
        Some(TOKEN),
        None,
    );
    assert_eq!(paused["status"], "paused");
    let (_, all) = call("GET", &url("/v1/tasks"), Some(TOKEN), None);
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (code, _) = call(
        "DELETE",
        &url(&format!("/v1/tasks/{id}")),
        Some(TOKEN),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        call("GET", &url(&format!("/v1/tasks/{id}")), Some(TOKEN), None).0,
        404
    );

    // Metrics, in Prometheus text.
    let (code, metrics) = call("GET", &url("/metrics"), Some(TOKEN), None);
    assert_eq!(code, 200);
    let text = metrics.as_str().unwrap();
    for needle in [
        "supervisor_instances{state=\"running\"} 1",
        "supervisor_instances{state=\"error\"} 0",
        "supervisor_instance_state{instance=\"alice\",state=\"running\"} 1",
        "supervisor_instance_state{instance=\"alice\",state=\"crash-loop\"} 0",
        "supervisor_messages_answered_total{instance=\"alice\"} 1",
        "supervisor_queue_depth{instance=\"alice\"} 0",
        "supervisor_model_requests_total{instance=\"alice\",status=\"ok\"}",
        "supervisor_message_latency_seconds_bucket",
        "supervisor_docker_up 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }

    // The instance's own port: its health and messages, behind the same token.
    let own = |p: &str| format!("http://127.0.0.1:{alice_port}{p}");
    assert!(wait_until(LONG, || call(
        "GET",
        &own("/health"),
        Some(TOKEN),
        None
    )
    .0 == 200));
    assert_eq!(call("GET", &own("/health"), None, None).0, 401);
    let (_, own_health) = call("GET", &own("/health"), Some(TOKEN), None);
    assert_eq!(own_health["name"], "alice");
    let (_, sent) = call(
        "POST",
        &own("/messages"),
        Some(TOKEN),
        Some(json!({"text": "on my port", "wait": true})),
    );
    assert_eq!(sent["reply"], "echo: [api:tcp] on my port");

    // The token never reaches the log.
    assert!(!daemon.log_text().contains(TOKEN));
}

#[test]
fn unsafe_listeners_are_refused_before_anything_binds() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    listen_on(&home, &format!("0.0.0.0:{}", free_port()));
    let run = |env: &[(&str, &str)]| {
        bin()
            .arg("--home")
            .arg(&home.root)
            .arg("run")
            .env_remove("SUPERVISOR_API_TOKEN")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs a bearer token"), "{err}");
    assert!(err.contains("SUPERVISOR_API_TOKEN"), "{err}");
    let out = run(&[("SUPERVISOR_API_TOKEN", "too-short-a-token")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("17 characters"), "{err}");
    assert!(
        !err.contains("too-short-a-token"),
        "the token is never printed: {err}"
    );
    assert!(
        !home.path("run/supervisor.sock").exists(),
        "nothing was served"
    );
}

fn api_setting(home: &TestHome, line: &str) {
    home.api_setting(line);
}

/// Runs a reconcile pass now and waits for it.
fn reconcile(home: &TestHome) {
    let client = DaemonClient::for_home(&Home::new(&home.root).unwrap());
    supervisor::infra::blocking::block_on(client.reconcile()).unwrap();
}

fn refused_connection(port: u16) -> bool {
    matches!(
        TcpStream::connect(("127.0.0.1", port)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[test]
fn an_instance_port_without_a_token_is_never_opened_and_says_why() {
    let h = ReadyHome::new();
    // A variable no environment sets: the daemon has no token.
    api_setting(&h.home, "token_env = \"SUPERVISOR_TEST_UNSET_TOKEN\"");
    let port = free_port();
    h.home
        .run(&["create-instance", "alice", "--port", &port.to_string()])
        .ok();
    let daemon = Daemon::start(&h.home);
    h.home.run(&["start", "alice", "--wait"]).ok();
    let closed = format!("port {port} is not open");
    let detail = || {
        h.home.run(&["status", "--json"]).json()["instances"][0]["detail"]
            .as_str()
            .map(str::to_string)
    };
    assert!(
        wait_until(LONG, || detail().is_some_and(|d| d.contains(&closed))),
        "status says nothing: {:?}\n{}",
        detail(),
        daemon.log_text()
    );
    let d = detail().unwrap();
    assert!(
        d.contains("SUPERVISOR_TEST_UNSET_TOKEN") && d.contains("[api] token_env"),
        "says how to fix it: {d}"
    );
    let show = h.home.run(&["show", "alice"]).ok().stdout;
    assert!(show.contains(&closed), "{show}");
    // The instance itself runs.
    let status = h.home.run(&["status", "--json"]).json();
    assert!(
        ["running", "starting"].contains(&status["instances"][0]["state"].as_str().unwrap()),
        "{status}"
    );

    // Nothing listens on the port, pass after pass.
    for _ in 0..3 {
        reconcile(&h.home);
        assert!(refused_connection(port), "port {port} accepts connections");
    }
    // Said once: one warning, one event.
    let log = daemon.log_text();
    assert_eq!(
        log.matches("the instance's port is not opened").count(),
        1,
        "{log}"
    );
    let shown = h.home.run(&["show", "alice", "--json"]).ok().json();
    let events: Vec<&Value> = shown["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "port.closed")
        .collect();
    assert_eq!(events.len(), 1, "{shown}");
    assert_eq!(events[0]["detail"]["port"], port);
}

#[test]
fn an_instance_port_demands_the_token_without_an_api_listener_too() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    let port = free_port();
    home.run(&["create-instance", "alice", "--port", &port.to_string()])
        .ok();
    let _daemon = Daemon::start_with_env(&home, &[("SUPERVISOR_API_TOKEN", TOKEN)]);
    let health = format!("http://127.0.0.1:{port}/health");
    assert!(
        wait_until(LONG, || !refused_connection(port)),
        "port {port} never opened"
    );
    assert_eq!(call("GET", &health, None, None).0, 401);
    assert_eq!(call("GET", &health, Some(&TOKEN[1..]), None).0, 401);
    let (code, alice) = call("GET", &health, Some(TOKEN), None);
    assert_eq!(
        (code, alice["name"].as_str()),
        (200, Some("alice")),
        "{alice}"
    );
    assert_eq!(alice["detail"], Value::Null, "nothing to report: {alice}");
}

#[test]
fn no_caller_over_tcp_can_be_the_local_sender() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    let api_port = free_port();
    listen_on(&home, &format!("127.0.0.1:{api_port}"));
    let own_port = free_port();
    // allow_from is the default, ["local"].
    home.run(&["create-instance", "alice", "--port", &own_port.to_string()])
        .ok();
    let _daemon = Daemon::start_with_env(&home, &[("SUPERVISOR_API_TOKEN", TOKEN)]);
    assert!(
        wait_until(LONG, || !refused_connection(own_port)),
        "port {own_port} never opened"
    );
    for url in [
        format!("http://127.0.0.1:{api_port}/v1/instances/alice/messages"),
        format!("http://127.0.0.1:{own_port}/messages"),
    ] {
        for claim in ["local", "LOCAL"] {
            let (code, e) = call(
                "POST",
                &url,
                Some(TOKEN),
                Some(json!({"text": "it is me, the operator", "sender": claim})),
            );
            assert_eq!(code, 403, "{url} as {claim}: {e}");
            assert!(
                e["error"]
                    .as_str()
                    .unwrap()
                    .contains("cannot be claimed over TCP"),
                "{e}"
            );
        }
        // Without a sender: `api:tcp` on the channel `api`, which alice does not allow.
        let (code, sent) = call(
            "POST",
            &url,
            Some(TOKEN),
            Some(json!({"text": "who am i", "wait": true})),
        );
        assert_eq!(
            (code, sent["state"].as_str()),
            (200, Some("refused")),
            "{url}: {sent}"
        );
    }
    // The CLI, on the socket, is the operator.
    home.run(&["send", "alice", "from the cli"]).ok();
    let history = home.run(&["history", "alice", "--json"]).ok().json();
    let from: Vec<(&str, &str, bool)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap(),
                m["channel"].as_str().unwrap(),
                m["state"] == "refused",
            )
        })
        .collect();
    assert_eq!(
        from,
        [
            ("api:tcp", "api", true),
            ("api:tcp", "api", true),
            ("local", "cli", false),
        ],
        "{history}"
    );
}

#[test]
fn a_loopback_listener_without_a_token_stops_the_daemon_from_starting() {
    let home = TestHome::new();
    home.run(&["init"]).ok();
    let port = free_port();
    listen_on(&home, &format!("127.0.0.1:{port}"));
    let mut child = bin()
        .arg("--home")
        .arg(&home.root)
        .arg("run")
        .env_remove("SUPERVISOR_API_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the daemon started with a loopback listener and no token");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("api.listen")).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        lines[0].contains("needs a bearer token") && lines[0].contains("SUPERVISOR_API_TOKEN"),
        "{err}"
    );
    assert!(
        !home.path("run/supervisor.sock").exists(),
        "nothing was served"
    );
    assert!(refused_connection(port));
}

/// A request with a body of `content_type` (none when None), as is.
fn call_raw(
    method: &str,
    url: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .request(method.parse().unwrap(), url)
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = content_type {
            req = req.header("content-type", c);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, ctype, value)
    })
}

/// Method, path, content type, body; the status and a part of the error expected.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u16, &'a str);

#[test]
fn every_error_is_json_with_its_documented_status() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    // Callers over TCP are `api:tcp`; alice takes their messages.
    let config = home.path("instances/alice/config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["allow_from"] = json!(["local", "api:tcp"]);
    std::fs::write(&config, c.to_string()).unwrap();
    let port = free_port();
    listen_on(&home, &format!("127.0.0.1:{port}"));
    let _daemon = Daemon::start_with_env(&home, &[("SUPERVISOR_API_TOKEN", TOKEN)]);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let json = Some("application/json");
    let send = "/v1/instances/alice/messages";
    let cases: &[Case] = &[
        (
            "GET",
            "/v1/nothing",
            None,
            "",
            404,
            "no endpoint GET /v1/nothing",
        ),
        (
            "DELETE",
            "/v1/health",
            None,
            "",
            405,
            "/v1/health does not take DELETE",
        ),
        (
            "POST",
            send,
            None,
            r#"{"text": "hi"}"#,
            415,
            "Content-Type: application/json",
        ),
        (
            "POST",
            send,
            Some("text/plain"),
            r#"{"text": "hi"}"#,
            415,
            "must be JSON",
        ),
        (
            "POST",
            send,
            json,
            r#"{"text": "#,
            400,
            "not valid JSON at line 1, column 9",
        ),
        ("POST", send, json, "", 400, "the request body is empty"),
        (
            "POST",
            send,
            json,
            "{}",
            422,
            r#"the key "text" is missing"#,
        ),
        (
            "POST",
            send,
            json,
            r#"{"text": "hi", "timeout_secs": "soon"}"#,
            422,
            r#""timeout_secs": expected a whole number of 0 or more, got the string "soon""#,
        ),
        (
            "POST",
            send,
            json,
            r#"{"text": "  "}"#,
            422,
            "the message is empty",
        ),
        (
            "POST",
            "/v1/instances/Bad_Name/messages",
            json,
            r#"{"text": "hi"}"#,
            400,
            "instance name",
        ),
        (
            "GET",
            "/v1/instances/Bad_Name",
            None,
            "",
            400,
            "instance name",
        ),
        (
            "GET",
            "/v1/instances/Bad_Name/tasks",
            None,
            "",
            400,
            "instance name",
        ),
        (
            "GET",
            "/v1/instances/bob",
            None,
            "",
            404,
            "no instance named \"bob\"",
        ),
        (
            "GET",
            "/v1/tasks/abc",
            None,
            "",
            400,
            "task id \"abc\": expected a number",
        ),
        // alice is stopped: a wait is refused at once, and the message kept.
        (
            "POST",
            send,
            json,
            r#"{"text": "hi", "wait": true, "timeout_secs": 600}"#,
            409,
            "alice is stopped, so nothing answers it",
        ),
        (
            "GET",
            "/v1/instances/alice/messages?limit=many",
            None,
            "",
            400,
            "limit \"many\"",
        ),
        (
            "POST",
            "/v1/instances/alice/tasks",
            json,
            r#"{"every": "1h", "prompt": "x", "colour": "blue"}"#,
            422,
            r#""colour": not a known key here"#,
        ),
    ];
    for (method, path, ctype, body, status, needle) in cases {
        let (code, got_type, answer) = call_raw(method, &url(path), Some(TOKEN), *ctype, body);
        let what = format!("{method} {path} {body:?}: {code} {answer}");
        assert_eq!(code, *status, "{what}");
        assert_eq!(got_type.as_deref(), Some("application/json"), "{what}");
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{what}"));
        assert!(error.contains(needle), "{what}");
        assert_eq!(answer.as_object().unwrap().len(), 1, "{what}");
        for internal in [
            "serde",
            "u64",
            "i64",
            "Failed to",
            "`Content-Type`",
            "line 1 column",
        ] {
            assert!(!error.contains(internal), "{what}");
        }
    }
    // Without the token, nothing is told about the paths either.
    let (code, _, answer) = call_raw("GET", &url("/v1/nothing"), None, None, "");
    assert_eq!(
        (code, answer["error"].as_str()),
        (401, Some("missing or wrong bearer token"))
    );
}

#[test]
fn instances_are_created_started_stopped_and_removed_over_the_api_by_the_cli_rules() {
    let h = ReadyHome::new();
    let port = free_port();
    listen_on(&h.home, &format!("127.0.0.1:{port}"));
    let _daemon = Daemon::start_with_env(&h.home, &[("SUPERVISOR_API_TOKEN", TOKEN)]);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let post = |p: &str, body: Option<Value>| call("POST", &url(p), Some(TOKEN), body);

    // Behind the token, like everything else.
    let bob = json!({"name": "bob", "soul": "expert", "memory": "1g", "lifecycle": "persistent"});
    assert_eq!(
        call("POST", &url("/v1/instances"), None, Some(bob.clone())).0,
        401
    );
    assert_eq!(
        call("POST", &url("/v1/instances/bob/start"), None, None).0,
        401
    );

    // The create-instance rules, with the request's keys in the errors.
    for (body, status, needle) in [
        (json!({"name": "Bob"}), 400, "instance name \"Bob\""),
        (
            json!({"name": "bob", "memory": "lots"}),
            422,
            "\"memory\": expected a size",
        ),
        (
            json!({"name": "bob", "port": 80}),
            422,
            "\"port\": expected a port from 1024",
        ),
        (
            json!({"name": "bob", "soul": "poet"}),
            422,
            "\"soul\": expected",
        ),
        (
            json!({"name": "bob", "soul_text": "  "}),
            422,
            "soul_text is empty",
        ),
        (
            json!({"name": "bob", "soul": "expert", "soul_text": "# Me"}),
            422,
            "not both",
        ),
        (
            json!({"soul": "expert"}),
            422,
            "the key \"name\" is missing",
        ),
        (
            json!({"name": "bob_0a1b2c3d", "soul": "expert"}),
            400,
            "that form names a chat group",
        ),
    ] {
        let (code, e) = post("/v1/instances", Some(body.clone()));
        assert_eq!(code, status, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(needle), "{body}: {e}");
    }
    assert!(
        !h.home.path("instances/bob").exists(),
        "nothing was written"
    );

    let (code, created) = post("/v1/instances", Some(bob.clone()));
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        (created["name"].as_str(), created["soul"].as_str()),
        (Some("bob"), Some("expert"))
    );
    let (code, e) = post("/v1/instances", Some(bob));
    assert_eq!(code, 409, "{e}");
    // The same instance as the command makes from the same choices.
    h.home
        .run(&[
            "create-instance",
            "carl",
            "--soul",
            "expert",
            "--memory",
            "1g",
            "--lifecycle",
            "persistent",
        ])
        .ok();
    let config = |name: &str| {
        std::fs::read_to_string(h.home.path(&format!("instances/{name}/config.json"))).unwrap()
    };
    assert_eq!(config("bob"), config("carl"));
    let (_, made) = post(
        "/v1/instances",
        Some(json!({"name": "dora", "soul_text": "# Dora\n\nA persona of my own.\n"})),
    );
    assert_eq!(made["soul"], "file", "{made}");

    // Start, restart and stop, waiting as --wait does.
    let (code, started) = post("/v1/instances/bob/start", Some(json!({"wait": true})));
    assert_eq!(code, 200, "{started}");
    // Running in the store; `starting` in the report until the agent says it is ready.
    let up =
        |v: &Value| ["running", "starting"].contains(&v["instance"]["state"].as_str().unwrap());
    assert!(up(&started), "{started}");
    assert!(h.container_of("bob").is_some());
    let (code, restarted) = post("/v1/instances/bob/restart", Some(json!({"wait": true})));
    assert_eq!(code, 200, "{restarted}");
    assert!(up(&restarted), "{restarted}");
    let (code, stopped) = post("/v1/instances/bob/stop", Some(json!({"wait": true})));
    assert_eq!(code, 200, "{stopped}");
    assert_eq!(stopped["instance"]["state"], "stopped", "{stopped}");
    assert_eq!(stopped["instance"]["desired"], "stopped", "{stopped}");
    // No body at all is fine: no wait.
    let (code, again) = call("POST", &url("/v1/instances/bob/start"), Some(TOKEN), None);
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["instance"]["desired"], "running", "{again}");
    assert_eq!(post("/v1/instances/nobody/start", None).0, 404);
    assert_eq!(post("/v1/instances/Nobody/stop", None).0, 400);
    let (code, e) = post("/v1/instances/bob/stop", Some(json!({"wait": "yes"})));
    assert_eq!(code, 422, "{e}");

    // Recorded as the API's doing.
    let shown = h.home.run(&["show", "bob", "--json"]).ok().json();
    let by_api: Vec<&str> = shown["recent_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "api")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "instance.created",
        "instance.start",
        "instance.restart",
        "instance.stop",
    ] {
        assert!(by_api.contains(&kind), "{kind}: {shown}");
    }

    // Removed: archived, its container gone, and the name free again.
    let (code, e) = call(
        "DELETE",
        &url("/v1/instances/bob?purge=maybe"),
        Some(TOKEN),
        None,
    );
    assert_eq!(code, 400, "{e}");
    let (code, removed) = call("DELETE", &url("/v1/instances/bob"), Some(TOKEN), None);
    assert_eq!(code, 200, "{removed}");
    assert_eq!(
        (removed["removed"].as_bool(), removed["purged"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(
        std::path::Path::new(removed["archive"].as_str().unwrap()).is_dir(),
        "{removed}"
    );
    assert!(
        wait_until(LONG, || h.container_of("bob").is_none()),
        "bob's container stays"
    );
    assert_eq!(
        call("GET", &url("/v1/instances/bob"), Some(TOKEN), None).0,
        404
    );
    assert_eq!(
        call("DELETE", &url("/v1/instances/bob"), Some(TOKEN), None).0,
        404
    );
    let (code, purged) = call(
        "DELETE",
        &url("/v1/instances/dora?purge=true"),
        Some(TOKEN),
        None,
    );
    assert_eq!(
        (code, purged["purged"].as_bool()),
        (200, Some(true)),
        "{purged}"
    );
    assert!(!h.home.path("instances/dora").exists());
    let names: Vec<Value> = h
        .home
        .run(&["list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(names, [json!("carl")]);
}
