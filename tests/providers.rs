//! The provider clients against a small OpenAI/Anthropic-compatible server on loopback.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use supervisor::domain::instance::config::{ModelConfig, Provider};
use supervisor::infra::llm::{self, LlmError, Request};
use supervisor_agent::protocol::{ModelMessage, Role};

#[derive(Clone, Default)]
struct Fake {
    calls: Arc<AtomicU32>,
    fail_first: u32,
}

async fn chat(
    State(f): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = f.calls.fetch_add(1, Ordering::SeqCst);
    if n < f.fail_first {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": "slow down"})),
        );
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let last = body["messages"].as_array().unwrap().last().unwrap()["content"].clone();
    (
        StatusCode::OK,
        Json(json!({
            "choices": [{"message": {"content": format!("{auth} | {}", last.as_str().unwrap_or("")), "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"notes.md\"}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4}
        })),
    )
}

async fn messages(headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    Json(json!({
        "content": [{"type": "text", "text": format!("{key} | {}", body["system"].as_str().unwrap_or(""))}],
        "usage": {"input_tokens": 5, "output_tokens": 1}
    }))
}

async fn serve(fake: Fake) -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn msgs() -> Vec<ModelMessage> {
    vec![
        ModelMessage {
            role: Role::System,
            content: "soul".into(),
            tool_calls: vec![],
            tool_call_id: None,
        },
        ModelMessage {
            role: Role::User,
            content: "[local] hi".into(),
            tool_calls: vec![],
            tool_call_id: None,
        },
    ]
}

#[tokio::test]
async fn openai_compatible_with_key_retry_and_tool_calls() {
    let fake = Fake {
        fail_first: 2,
        ..Fake::default()
    };
    let base = serve(fake.clone()).await;
    std::env::set_var("PROVIDER_TEST_OPENAI_KEY", "sk-test-123");
    let model = ModelConfig {
        provider: Provider::Openai,
        name: "gpt-test".into(),
        base_url: Some(format!("{base}/v1")),
        api_key_env: Some("PROVIDER_TEST_OPENAI_KEY".into()),
    };
    let m = msgs();
    let a = llm::complete(
        &llm::http_client(),
        &model,
        Request {
            messages: &m,
            tools: &[],
            max_tokens: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        3,
        "two 429s retried, then success"
    );
    assert_eq!(a.content, "Bearer sk-test-123 | [local] hi");
    assert_eq!(a.tool_calls[0].name, "read_file");
    assert_eq!(a.tool_calls[0].arguments["path"], "notes.md");
    assert_eq!((a.usage.input_tokens, a.usage.output_tokens), (10, 4));
}

#[tokio::test]
async fn persistent_rate_limits_end_in_a_clear_error_and_a_missing_key_in_no_call() {
    let fake = Fake {
        fail_first: 100,
        ..Fake::default()
    };
    let base = serve(fake.clone()).await;
    let mut model = ModelConfig {
        provider: Provider::Openai,
        name: "gpt-test".into(),
        base_url: Some(format!("{base}/v1")),
        api_key_env: None,
    };
    let m = msgs();
    let req = Request {
        messages: &m,
        tools: &[],
        max_tokens: None,
    };
    let e = llm::complete(&llm::http_client(), &model, req)
        .await
        .unwrap_err();
    assert!(matches!(e, LlmError::Status { status: 429, .. }), "{e}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), llm::retry::ATTEMPTS);

    model.api_key_env = Some("PROVIDER_TEST_UNSET_KEY".into());
    let before = fake.calls.load(Ordering::SeqCst);
    let e = llm::complete(&llm::http_client(), &model, req)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("PROVIDER_TEST_UNSET_KEY"), "{e}");
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        before,
        "no request goes out without its key"
    );
}

#[tokio::test]
async fn anthropic_messages() {
    let base = serve(Fake::default()).await;
    std::env::set_var("PROVIDER_TEST_ANTHROPIC_KEY", "ak-test");
    let model = ModelConfig {
        provider: Provider::Anthropic,
        name: "claude-test".into(),
        base_url: Some(base),
        api_key_env: Some("PROVIDER_TEST_ANTHROPIC_KEY".into()),
    };
    let m = msgs();
    let a = llm::complete(
        &llm::http_client(),
        &model,
        Request {
            messages: &m,
            tools: &[],
            max_tokens: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(a.content, "ak-test | soul");
    assert_eq!(a.usage.input_tokens, 5);
}
