//! A small OpenAI-compatible chat-completions server on loopback, for tests. Its behaviour
//! depends on the model name the instance uses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub struct FakeLlm {
    pub base_url: String,
    pub calls: Arc<AtomicU32>,
    _rt: tokio::runtime::Runtime,
}

impl FakeLlm {
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let calls: Arc<AtomicU32> = Arc::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(calls.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}/v1"),
            calls,
            _rt: rt,
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn answer(content: &str) -> Value {
    json!({"choices": [{"message": {"content": content}}], "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
}

async fn chat(State(calls): State<Arc<AtomicU32>>, Json(body): Json<Value>) -> Json<Value> {
    calls.fetch_add(1, Ordering::SeqCst);
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    match body["model"].as_str().unwrap_or("") {
        // Write a file through the agent's tool, then report what the tool said.
        "tools" if last["role"] == "tool" => Json(answer(&format!(
            "done: {}",
            last["content"].as_str().unwrap_or("")
        ))),
        "tools" => Json(
            json!({"choices": [{"message": {"content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "write_file", "arguments": "{\"path\":\"notes/from-agent.md\",\"content\":\"written by the agent\\n\"}"}
        }]}}], "usage": {"prompt_tokens": 20, "completion_tokens": 8}}),
        ),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Json(answer("slow answer"))
        }
        _ => Json(answer("fast answer")),
    }
}
