//! OpenAI-compatible chat completions (OpenAI, OpenRouter, DeepSeek, vLLM, Ollama, …).

use serde_json::{json, Value};
use supervisor_agent::protocol::{ModelMessage, Role, ToolCall, Usage};

use super::{Answer, LlmError, Request};
use crate::domain::instance::config::ModelConfig;

pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
const NAME: &str = "openai";

pub fn body(model: &str, req: Request<'_>) -> Value {
    let messages: Vec<Value> = req.messages.iter().map(message).collect();
    let mut body = json!({ "model": model, "messages": messages });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
    }
    if let Some(n) = req.max_tokens {
        body["max_tokens"] = n.into();
    }
    body
}

fn message(m: &ModelMessage) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut v = json!({ "role": role, "content": m.content });
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = id.clone().into();
    }
    v
}

pub fn parse(v: &Value) -> Result<Answer, LlmError> {
    let decode = |message: &str| LlmError::Decode {
        provider: NAME,
        message: message.into(),
    };
    let msg = &v["choices"][0]["message"];
    if msg.is_null() {
        return Err(decode("no choices[0].message"));
    }
    let tool_calls = msg["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let raw = &c["function"]["arguments"];
                    // Arguments arrive as a JSON string; keep it as text if it is not JSON.
                    let arguments = match raw.as_str() {
                        Some(s) => {
                            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.into()))
                        }
                        None => raw.clone(),
                    };
                    ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_string(),
                        name: c["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        arguments,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Answer {
        content: msg["content"].as_str().unwrap_or_default().to_string(),
        tool_calls,
        usage: Usage {
            input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            output_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
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
        .post(format!("{base}/chat/completions"))
        .json(&body(&model.name, req));
    if let Some(key) = key {
        call = call.bearer_auth(key);
    }
    parse(&super::send_json(NAME, call).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_agent::protocol::ToolSpec;

    #[test]
    fn request_carries_tools_and_tool_turns() {
        let messages = [
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
                    id: "c1".into(),
                    name: "read_file".into(),
                    arguments: json!({"path": "a"}),
                }],
                tool_call_id: None,
            },
            ModelMessage {
                role: Role::Tool,
                content: "text".into(),
                tool_calls: vec![],
                tool_call_id: Some("c1".into()),
            },
        ];
        let tools = [ToolSpec {
            name: "read_file".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        }];
        let b = body(
            "m",
            Request {
                messages: &messages,
                tools: &tools,
                max_tokens: Some(5),
            },
        );
        assert_eq!(b["tools"][0]["function"]["name"], "read_file");
        assert_eq!(
            b["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"path\":\"a\"}"
        );
        assert_eq!(b["messages"][2]["tool_call_id"], "c1");
        assert_eq!(b["max_tokens"], 5);
    }

    #[test]
    fn response_with_tool_calls_and_usage() {
        let v = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "c9", "type": "function", "function": {"name": "write_file", "arguments": "{\"path\":\"x\",\"content\":\"y\"}"}}]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}});
        let a = parse(&v).unwrap();
        assert_eq!(a.content, "");
        assert_eq!(a.tool_calls[0].arguments["content"], "y");
        assert_eq!((a.usage.input_tokens, a.usage.output_tokens), (12, 3));
        assert!(parse(&json!({"error": "x"})).is_err());
    }
}
