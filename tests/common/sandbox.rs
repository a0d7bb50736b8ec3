//! Two instances under one real daemon, on the real engine, and a shell inside a container:
//! alice (small limits, an OpenAI-compatible model whose key is only in the daemon's
//! environment) and bob (echo). Commands run with busybox's shell inside a container as the
//! agent's user, through the engine's exec API: for the tests that attack the sandbox and the
//! host from the inside (escape.rs, boundary.rs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use supervisor::infra::docker::exec::{self, ExecError, ExecOutput};

use super::daemon::{wait_until, with_docker, Daemon, ReadyHome};
use super::Run;

/// A fake key, only ever in the daemon's environment.
pub const KEY_ENV: &str = "OPENAI_API_KEY";
pub const KEY: &str = "sk-escape-test-0123456789abcdef";
/// The API's bearer token, which bob's own port demands.
pub const API_TOKEN_ENV: &str = "SUPERVISOR_API_TOKEN";
pub const API_TOKEN: &str = "escape-test-api-token-0123456789abcdef";
/// The toolbox inside the runtime (src/runtime/build.rs, TOOLBOX_PATH).
pub const BUSYBOX: &str = "/opt/runtime/toolbox/busybox";
/// alice's limits: small, so that exhausting them is quick.
pub const ALICE_MEMORY: i64 = 128 << 20;
pub const ALICE_PIDS: u32 = 64;
pub const ALICE_TMP: i64 = 16 << 20;
/// What alice's model answers.
pub const ALICE_ANSWER: &str = "keyed answer";
/// Liveness deadlines, never performance thresholds.
pub const LONG: Duration = Duration::from_secs(120);
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// The first line of a command's error output, for a report.
pub fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// What the fake model server saw of one request.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub authorization: String,
    pub body: String,
}

/// An OpenAI-compatible server on loopback that records every request (its Authorization
/// header and its body): evidence that the daemon holds the key and uses it, on the host
/// side only, and of whose conversation reached alice's model.
pub struct KeyedModel {
    pub base_url: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    _rt: tokio::runtime::Runtime,
}

impl KeyedModel {
    pub fn start() -> Self {
        let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(seen.clone());
        let (rt, base_url) = super::fake_llm::serve_on_loopback(app);
        Self {
            base_url,
            seen,
            _rt: rt,
        }
    }

    pub fn auth_headers(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|r| r.authorization)
            .collect()
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

async fn chat(
    State(seen): State<Arc<Mutex<Vec<SeenRequest>>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    seen.lock().unwrap().push(SeenRequest {
        authorization,
        body: body.to_string(),
    });
    Json(json!({"choices": [{"message": {"content": ALICE_ANSWER}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}))
}

/// alice and bob running under one daemon.
pub struct Sandbox {
    // Fields drop in order: the daemon goes first, so that it cannot create again the
    // containers ReadyHome removes when it drops.
    pub daemon: Daemon,
    pub h: ReadyHome,
    pub model: KeyedModel,
}

impl Sandbox {
    pub fn new() -> Self {
        Self::with_bob_port(None)
    }

    /// `bob_port`: a loopback port for bob's own API listener.
    pub fn with_bob_port(bob_port: Option<u16>) -> Self {
        let model = KeyedModel::start();
        let h = ReadyHome::new();
        h.home.run(&["create-instance", "alice"]).ok();
        match bob_port {
            Some(port) => h
                .home
                .run(&["create-instance", "bob", "--port", &port.to_string()])
                .ok(),
            None => h.home.run(&["create-instance", "bob"]).ok(),
        };
        h.edit_config("alice", |c| {
            c["model"] = json!({"provider": "openai", "name": "escape",
                                "base_url": model.base_url, "api_key_env": KEY_ENV});
            c["limits"]["memory"] = json!("128m");
            c["limits"]["pids"] = json!(ALICE_PIDS);
            c["limits"]["tmp"] = json!("16m");
        });
        // bob's port opens only behind the API's token.
        let daemon = Daemon::start_with_env(&h.home, &[(KEY_ENV, KEY), (API_TOKEN_ENV, API_TOKEN)]);
        h.home.run(&["start", "--all", "--wait"]).ok();
        let s = Self { h, model, daemon };
        s.alice_answers();
        s.bob_answers("hello bob");
        s
    }

    /// Stops the daemon (SIGTERM; containers keep running) and starts a new one on the same
    /// home, with the same environment.
    pub fn restart_daemon(&mut self) {
        self.daemon.terminate();
        self.daemon =
            Daemon::start_with_env(&self.h.home, &[(KEY_ENV, KEY), (API_TOKEN_ENV, API_TOKEN)]);
    }

    /// The running container of `instance`.
    pub fn container_id(&self, instance: &str) -> String {
        let mut id = None;
        assert!(
            wait_until(LONG, || {
                id = self
                    .h
                    .container_of(instance)
                    .filter(|c| c.running)
                    .map(|c| c.id);
                id.is_some()
            }),
            "{instance} has no running container: {:?}",
            self.h.record(instance)
        );
        id.unwrap()
    }

    /// alice's running container.
    pub fn alice_id(&self) -> String {
        self.container_id("alice")
    }

    /// Runs `script` with busybox's shell inside `instance`'s container.
    pub fn try_sh_in(
        &self,
        instance: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let id = self.container_id(instance);
        let script = script.to_string();
        with_docker(async move |d| {
            exec::run(&d, &id, &[BUSYBOX, "sh", "-c", &script], timeout).await
        })
    }

    /// Runs `script` with busybox's shell inside alice's container.
    pub fn try_sh(&self, script: &str, timeout: Duration) -> Result<ExecOutput, ExecError> {
        self.try_sh_in("alice", script, timeout)
    }

    pub fn sh(&self, script: &str) -> ExecOutput {
        self.try_sh(script, EXEC_TIMEOUT)
            .unwrap_or_else(|e| panic!("exec in alice failed: {e}\nscript: {script}"))
    }

    /// `send INSTANCE TEXT --wait` with a deadline of `timeout_secs`; the run as it ended.
    pub fn send_wait(&self, instance: &str, text: &str, timeout_secs: u32) -> Run {
        self.h.home.run(&[
            "send",
            instance,
            text,
            "--wait",
            "--timeout",
            &timeout_secs.to_string(),
        ])
    }

    pub fn bob_answers(&self, text: &str) {
        let out = self.send_wait("bob", text, 120).ok();
        assert_eq!(out.stdout.trim(), format!("echo: [local] {text}"));
    }

    pub fn alice_answers(&self) {
        let out = self.send_wait("alice", "are you there?", 120).ok();
        assert_eq!(out.stdout.trim(), ALICE_ANSWER);
    }

    /// The daemon answers on its socket and still reaches the engine.
    pub fn daemon_status(&self) -> Value {
        let status = self.h.home.run(&["status", "--json"]).ok().json();
        assert_eq!(status["daemon"]["running"], true, "{status}");
        assert_eq!(status["docker"]["reachable"], true, "{status}");
        status
    }

    /// alice comes back (or stays) running and answering, bob answers, the daemon is fine.
    pub fn all_well(&self) {
        assert!(
            wait_until(LONG, || self.h.record("alice").state == "running"),
            "alice is not running again: {:?}",
            self.h.record("alice")
        );
        self.alice_answers();
        self.bob_answers("still there?");
        self.daemon_status();
    }
}
