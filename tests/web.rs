//! The web through the host, end to end: the real agent in its container, offered `web_fetch`
//! only when its instance has an egress policy, the model (a loopback fake scripting the tool
//! call) reading what the host fetched from a loopback web server listed in the policy.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::Router;
use common::daemon::{Daemon, ReadyHome};
use common::fake_llm::{serve_on_loopback, FakeLlm};
use serde_json::json;

const SECRET: &str = "web-test-credential-7f3a9c";

/// A web server on loopback: `/page` (HTML), `/png` (binary); `(runtime, "127.0.0.1:PORT",
/// the value of `X-Api-Key` of each request)`.
fn web_server() -> (
    tokio::runtime::Runtime,
    String,
    Arc<Mutex<Vec<Option<String>>>>,
) {
    let keys: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let k = keys.clone();
    let app = Router::new()
        .route(
            "/page",
            get(move |h: HeaderMap| async move {
                let key = h.get("x-api-key").map(|v| v.to_str().unwrap().to_string());
                k.lock().unwrap().push(key);
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body><h1>Release notes</h1><p>Version <b>2.0</b> is out.</p></body></html>",
                )
            }),
        )
        .route(
            "/search",
            get(
                |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    axum::Json(json!({"results": [{
                        "title": format!("About {}", q.0["q"]),
                        "url": "https://docs.rs/serde",
                        "content": format!("format={}", q.0["format"]),
                    }]}))
                },
            ),
        )
        .route(
            "/png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0x89u8, b'P', 0, 0]) }),
        );
    let (rt, base) = serve_on_loopback(app);
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string();
    (rt, addr, keys)
}

fn use_model(h: &ReadyHome, instance: &str, fake: &FakeLlm) {
    h.edit_config(instance, |c| {
        c["model"] = json!({"provider": "openai", "name": "web", "base_url": fake.base_url,
                            "api_key_env": null});
    });
}

fn ask(h: &ReadyHome, instance: &str, text: &str) -> String {
    h.home
        .run(&["send", instance, text, "--wait"])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn the_agent_reads_allowed_pages_and_hears_why_others_are_refused() {
    let fake = FakeLlm::start();
    let (_web, addr, keys) = web_server();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    h.home.run(&["create-instance", "bob"]).ok();
    use_model(&h, "alice", &fake);
    use_model(&h, "bob", &fake);
    h.edit_config("alice", |c| {
        c["egress"] = json!({
            "allow": [addr.clone()],
            "credentials": [{"host": "127.0.0.1", "header": "X-Api-Key", "value_env": "WEB_TEST_KEY"}]
        });
    });
    let daemon = Daemon::start_with_env(&h.home, &[("WEB_TEST_KEY", SECRET)]);
    h.home.run(&["start", "alice", "bob", "--wait"]).ok();

    // An allowed page reaches the model as text, with the credential added on the host.
    let out = ask(&h, "alice", &format!("fetch http://{addr}/page"));
    assert!(out.starts_with("web said: "), "{out}");
    assert!(
        out.contains("Release notes") && out.contains("2.0"),
        "{out}"
    );
    assert!(!out.contains("<h1>"), "{out}");
    assert_eq!(keys.lock().unwrap().as_slice(), &[Some(SECRET.to_string())]);

    // Refusals and binary bodies reach it as tool errors.
    let out = ask(&h, "alice", &format!("fetch http://{addr}/png"));
    assert!(out.contains("error: the response is image/png"), "{out}");
    let out = ask(&h, "alice", "fetch http://unlisted.example/");
    assert!(
        out.contains(
            "error: refused: unlisted.example is not in this instance's egress.allow list"
        ),
        "{out}"
    );

    // An instance without a policy is never offered the web tools.
    let out = ask(&h, "bob", &format!("fetch http://{addr}/page"));
    assert!(out.starts_with("tools offered: read_file"), "{out}");
    assert!(!out.contains("web_"), "{out}");
    assert_eq!(keys.lock().unwrap().len(), 1, "bob's turn fetched nothing");

    // Every request is on record, with why it was refused, and in the events.
    let rows = h.home.run(&["egress", "alice", "--json"]).ok().json();
    let outcomes: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["result"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        outcomes,
        pairs(&[("ok", ""), ("failed", "binary"), ("refused", "not_listed")])
    );
    assert_eq!(rows[0]["url"], format!("http://{addr}/page"));
    assert_eq!(rows[0]["status"], 200);
    let text = h.home.run(&["egress", "alice"]).ok().stdout;
    assert!(
        text.contains("unlisted.example") && text.contains("refused (not_listed)"),
        "{text}"
    );
    let bob = h.home.run(&["egress", "bob"]).ok().stdout;
    assert_eq!(bob.trim(), "bob has made no web requests");
    let db = rusqlite::Connection::open(h.home.path("supervisor.db")).unwrap();
    let events: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE instance = 'alice' AND kind = 'web.request'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, 3);

    // The credential's value is nowhere in the home (store, configs, IPC, workspaces) nor in
    // the daemon's log, and not in the container's environment.
    assert_eq!(
        files_holding(&h.home.path(""), SECRET.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );
    assert!(!daemon.log_text().contains(SECRET));
    let container = h.container_of("alice").unwrap();
    let env = common::daemon::with_docker(async move |c| {
        supervisor::infra::docker::container::inspect_raw(&c, &container.id)
            .await
            .unwrap()
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
    });
    assert!(!env.iter().any(|e| e.contains(SECRET)), "{env:?}");
    // Nor in a backup.
    let archive = h.home.scratch().join("web-backup.tar.gz");
    h.home
        .run(&["backup", "--out", archive.to_str().unwrap()])
        .ok();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap()),
        &mut bytes,
    )
    .unwrap();
    assert!(bytes.len() > 1000, "the backup holds the home");
    assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
}

/// Writes a web request as `instance`'s agent and waits for its answer.
fn web_request(h: &ReadyHome, instance: &str, id: &str, url: &str) -> serde_json::Value {
    web_action(h, instance, id, "fetch", url)
}

fn web_action(
    h: &ReadyHome,
    instance: &str,
    id: &str,
    action: &str,
    target: &str,
) -> serde_json::Value {
    // For the turn in flight, as the agent asks: the one waiting in its in/.
    let turn = common::agent::envelopes_in(&h.home.ipc_in(instance), "turn")
        .first()
        .map(|t| t["turn_id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "t-none".into());
    web_action_for(h, instance, id, action, target, &turn)
}

fn web_action_for(
    h: &ReadyHome,
    instance: &str,
    id: &str,
    action: &str,
    target: &str,
    turn: &str,
) -> serde_json::Value {
    common::agent::writes(
        &h.home.ipc_out(instance),
        json!({"v": 1, "id": format!("env{id}"), "ts": 2, "type": "web_request",
               "request_id": id, "turn_id": turn, "action": action, "target": target}),
    );
    let answer = || {
        common::agent::envelopes_in(&h.home.ipc_in(instance), "web_response")
            .into_iter()
            .find(|r| r["request_id"] == id)
    };
    assert!(
        common::daemon::wait_until(std::time::Duration::from_secs(60), || answer().is_some()),
        "no answer to {id}"
    );
    answer().unwrap()
}

#[test]
fn turns_say_whether_the_web_is_on_offer_and_the_rate_cap_holds() {
    let (_web, addr, keys) = web_server();
    let h = ReadyHome::new();
    h.home.run(&["create-instance", "alice"]).ok();
    h.home.run(&["create-instance", "bob"]).ok();
    h.edit_config("alice", |c| {
        c["egress"] = json!({"allow": [addr.clone()], "limits": {"requests_per_minute": 2}});
    });
    let _daemon = Daemon::start(&h.home);

    // The turn tells the agent: alice has a policy, bob has none.
    for name in ["alice", "bob"] {
        h.home.run(&["send", name, "hello"]).ok();
    }
    let turn_of = |name: &str| {
        let ipc_in = h.home.ipc_in(name);
        assert!(common::daemon::wait_until(
            std::time::Duration::from_secs(60),
            || !common::agent::envelopes_in(&ipc_in, "turn").is_empty()
        ));
        common::agent::envelopes_in(&ipc_in, "turn")[0].clone()
    };
    assert_eq!(turn_of("alice")["web"], true);
    assert!(turn_of("bob").get("web").is_none(), "no web for bob");
    // No search backend in supervisor.toml: web_search is not on offer, and refused.
    assert!(turn_of("alice").get("web_search").is_none());
    let none = web_action(&h, "alice", "s0", "search", "serde");
    assert!(
        none["error"]
            .as_str()
            .unwrap()
            .contains("no search backend"),
        "{none}"
    );

    // Only for the turn in flight, like model requests.
    let url = format!("http://{addr}/page");
    let stale = web_action_for(&h, "alice", "w0", "fetch", &url, "t-other");
    assert!(
        stale["error"]
            .as_str()
            .unwrap()
            .contains("only for the turn in flight"),
        "{stale}"
    );
    assert_eq!(keys.lock().unwrap().len(), 0);

    // Two a minute, then refusals that name the cap; nothing more reaches the server.
    for id in ["w1", "w2"] {
        let ok = web_request(&h, "alice", id, &url);
        assert!(
            ok["text"].as_str().unwrap().contains("Release notes"),
            "{ok}"
        );
    }
    let over = web_request(&h, "alice", "w3", &url);
    let error = over["error"].as_str().unwrap();
    assert!(
        error.contains("egress.limits.requests_per_minute"),
        "{error}"
    );
    assert_eq!(keys.lock().unwrap().len(), 2);

    // An instance without a policy is refused whatever it asks.
    let refused = web_request(&h, "bob", "w4", &url);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("has no web access"),
        "{refused}"
    );
    assert_eq!(keys.lock().unwrap().len(), 2);
}

#[test]
fn web_search_asks_the_backend_named_in_supervisor_toml() {
    let (_web, addr, _keys) = web_server();
    let h = ReadyHome::new();
    let toml = h.home.path("supervisor.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap_or_default();
    text = text.replace("[web_search]", "");
    text.push_str(&format!(
        "\n[web_search]\nsearxng_url = \"http://{addr}\"\n"
    ));
    std::fs::write(&toml, text).unwrap();
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |c| c["egress"] = json!({"allow": ["docs.rs"]}));
    let _daemon = Daemon::start(&h.home);
    h.home.run(&["send", "alice", "hello"]).ok();
    let ipc_in = h.home.ipc_in("alice");
    assert!(common::daemon::wait_until(
        std::time::Duration::from_secs(60),
        || !common::agent::envelopes_in(&ipc_in, "turn").is_empty()
    ));
    let turn = common::agent::envelopes_in(&ipc_in, "turn")[0].clone();
    assert_eq!(
        (turn["web"].clone(), turn["web_search"].clone()),
        (json!(true), json!(true))
    );
    let found = web_action(&h, "alice", "s1", "search", "serde derive");
    assert_eq!(
        found["text"], "1. About serde derive\n   https://docs.rs/serde\n   format=json\n",
        "{found}"
    );
    let rows = h.home.run(&["egress", "alice", "--json"]).ok().json();
    assert_eq!(rows[0]["action"], "search");
    assert_eq!(rows[0]["result"], "ok");
}
