//! The Anthropic messages API.

use serde_json::{json, Value};
use supervisor_agent::protocol::{Role, ToolCall, Usage};

use super::{Answer, LlmError, Request};
use crate::domain::instance::config::ModelConfig;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 4096;
const NAME: &str = "anthropic";

pub fn body(model: &str, req: Request<'_>) -> Value {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let mut messages: Vec<Value> = Vec::new();
    for m in req.messages.iter().filter(|m| m.role != Role::System) {
        let (role, blocks) = match m.role {
            Role::User => ("user", vec![json!({"type": "text", "text": m.content})]),
            Role::Tool => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}),
                ],
            ),
            _ => {
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}));
                }
                ("assistant", blocks)
            }
        };
        // Consecutive messages of one role are merged (the API wants them alternating).
        match messages.last_mut() {
            Some(last) if last["role"] == role => last["content"]
                .as_array_mut()
                .expect("content array")
                .extend(blocks),
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut body = json!({
        "model": model,
        "max_tokens": req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    body
}

pub fn parse(v: &Value) -> Result<Answer, LlmError> {
    let blocks = v["content"].as_array().ok_or(LlmError::Decode {
        provider: NAME,
        message: "no content blocks".into(),
    })?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => content.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: b["id"].as_str().unwrap_or_default().into(),
                name: b["name"].as_str().unwrap_or_default().into(),
                arguments: b["input"].clone(),
            }),
            _ => {}
        }
    }
    Ok(Answer {
        content,
        tool_calls,
        usage: Usage {
            input_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
        },
    })
}

pub async fn complete(
    http: &reqwest::Client,
    model: &ModelConfig,
    key: Option<&str>,
    req: Request<'_>,
) -> Result<Answer, LlmError> {
    let base = super::base_url(model, DEFAULT_BASE_URL);
    let mut call = http
        .post(format!("{base}/v1/messages"))
        .header("anthropic-version", API_VERSION)
        .json(&body(&model.name, req));
    if let Some(key) = key {
        call = call.header("x-api-key", key);
    }
    parse(&super::send_json(NAME, call).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_agent::protocol::ModelMessage;

    #[test]
    fn system_is_separate_and_tool_results_are_user_blocks() {
        let msgs = [
            ModelMessage {
                role: Role::System,
                content: "soul".into(),
                tool_calls: vec![],
                tool_call_id: None,
            },
            ModelMessage {
                role: Role::User,
                content: "hi".into(),
                tool_calls: vec![],
                tool_call_id: None,
            },
            ModelMessage {
                role: Role::Assistant,
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "t1".into(),
                    name: "list_dir".into(),
                    arguments: json!({}),
                }],
                tool_call_id: None,
            },
            ModelMessage {
                role: Role::Tool,
                content: "a.md".into(),
                tool_calls: vec![],
                tool_call_id: Some("t1".into()),
            },
        ];
        let b = body(
            "claude",
            Request {
                messages: &msgs,
                tools: &[],
                max_tokens: None,
            },
        );
        assert_eq!(b["system"], "soul");
        assert_eq!(b["messages"].as_array().unwrap().len(), 3);
        assert_eq!(b["messages"][1]["content"][0]["type"], "tool_use");
        assert_eq!(b["messages"][2]["content"][0]["tool_use_id"], "t1");
        let a = parse(&json!({"content": [{"type": "text", "text": "ok "}, {"type": "tool_use", "id": "u", "name": "n", "input": {"a": 1}}],
            "usage": {"input_tokens": 7, "output_tokens": 2}})).unwrap();
        assert_eq!(a.content, "ok ");
        assert_eq!(a.tool_calls[0].arguments["a"], 1);
        assert_eq!(a.usage.input_tokens, 7);
    }
}
