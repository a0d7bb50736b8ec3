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

/// Serves `app` on a loopback port from a runtime of its own; returns the runtime (which
/// must be kept: dropping it stops the server) and the OpenAI-style base URL.
pub fn serve_on_loopback(app: Router) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (rt, format!("http://{addr}/v1"))
}

impl FakeLlm {
    pub fn start() -> Self {
        let calls: Arc<AtomicU32> = Arc::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(calls.clone());
        let (rt, base_url) = serve_on_loopback(app);
        Self {
            base_url,
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
        // Manages tasks through the agent's schedule_task tool, as a message asks; a
        // scheduled turn has nothing to say.
        "scheduler" if last["role"] == "tool" => Json(answer(&format!(
            "tool said: {}",
            last["content"].as_str().unwrap_or("")
        ))),
        "scheduler" => {
            let said = |needle: &str| {
                messages
                    .iter()
                    .any(|m| m["content"].as_str().is_some_and(|c| c.contains(needle)))
            };
            if said("started by a schedule") {
                return Json(answer(""));
            }
            let text = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .and_then(|m| m["content"].as_str())
                .unwrap_or("")
                .to_string();
            let args = match text.split("cancel task ").nth(1) {
                Some(id) => {
                    json!({"action": "cancel", "task_id": id.trim().parse::<i64>().unwrap_or(0)})
                }
                None => json!({"action": "create", "schedule_kind": "every", "schedule": "2s",
                               "prompt": "agent tick"}),
            };
            Json(
                json!({"choices": [{"message": {"content": null, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "schedule_task", "arguments": args.to_string()}
            }]}}], "usage": {"prompt_tokens": 20, "completion_tokens": 8}}),
            )
        }
        // Scripted by the message: "use-tool TOOL {json}" calls that tool and reports what it
        // said; "recall WORD" says whether WORD is in the system prompt (memory, persona) and
        // the prompt's first line (the persona's title); "slow" thinks for 6 s first.
        "groups" => Json(groups(&messages, &last).await),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Json(answer("slow answer"))
        }
        // Thinks for a while about a message that says "stall" (so that a test can stop the
        // agent during the call) and answers anything else at once.
        "stall" => {
            let text = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .and_then(|m| m["content"].as_str())
                .unwrap_or("");
            if text.contains("stall") {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(answer("answered after stalling"))
            } else {
                Json(answer("fast answer"))
            }
        }
        // Fetches the URL after "fetch " in the last message through web_fetch and reports
        // what the tool said; without that tool on offer, lists the tools it was given.
        "web" if last["role"] == "tool" => Json(answer(&format!(
            "web said: {}",
            last["content"].as_str().unwrap_or("")
        ))),
        "web" => {
            let names: Vec<&str> = body["tools"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|t| t["function"]["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let text = last["content"].as_str().unwrap_or("");
            match text.split("fetch ").nth(1) {
                Some(url) if names.contains(&"web_fetch") => {
                    let args = json!({"url": url.trim()});
                    Json(
                        json!({"choices": [{"message": {"content": null, "tool_calls": [{
                        "id": "call_1", "type": "function",
                        "function": {"name": "web_fetch", "arguments": args.to_string()}
                    }]}}], "usage": {"prompt_tokens": 20, "completion_tokens": 8}}),
                    )
                }
                _ => Json(answer(&format!("tools offered: {}", names.join(", ")))),
            }
        }
        // Says what it was asked for, so a test can see what the host sent.
        "max-tokens" => Json(answer(&format!("max_tokens={}", body["max_tokens"]))),
        _ => Json(answer("fast answer")),
    }
}

/// The "groups" model (see `chat`).
async fn groups(messages: &[Value], last: &Value) -> Value {
    if last["role"] == "tool" {
        return answer(&format!(
            "tool said: {}",
            last["content"].as_str().unwrap_or("")
        ));
    }
    // A scheduled turn ends with a note saying so: the task's own prompt is before it.
    let text = messages
        .iter()
        .rev()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_str())
        .find(|c| !c.contains("started by a schedule"))
        .unwrap_or("")
        .to_string();
    let system = messages
        .iter()
        .find(|m| m["role"] == "system")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    if let Some(rest) = text.split("use-tool ").nth(1) {
        let (tool, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
        return json!({"choices": [{"message": {"content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": tool.trim(), "arguments": args.trim()}
        }]}}], "usage": {"prompt_tokens": 20, "completion_tokens": 8}});
    }
    if let Some(word) = text.split("recall ").nth(1) {
        let word = word.split_whitespace().next().unwrap_or("");
        let first = system.lines().next().unwrap_or("");
        return answer(&format!(
            "recall {word}: {}; persona: {first}",
            system.contains(word)
        ));
    }
    if text.contains("slow") {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let said = text.rsplit("] ").next().unwrap_or("");
    answer(&format!("ok: {}", said.trim_start_matches("@test_bot ")))
}
