//! `echo`: a deterministic, offline provider, so the quickstart and the tests need no key.
//! It answers with the last user message, and counts tokens as characters / 4.

use supervisor_agent::protocol::{ModelMessage, Role, Usage};

use super::Answer;

pub fn complete(messages: &[ModelMessage]) -> Answer {
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let content = format!("echo: {last}");
    let input: usize = messages.iter().map(|m| m.content.len()).sum();
    Answer {
        usage: Usage {
            input_tokens: (input / 4) as u64,
            output_tokens: (content.len() / 4) as u64,
        },
        content,
        tool_calls: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ModelMessage {
        ModelMessage {
            role,
            content: content.into(),
            tool_calls: vec![],
            tool_call_id: None,
        }
    }

    #[test]
    fn echoes_the_last_user_message() {
        let a = complete(&[
            msg(Role::System, "soul"),
            msg(Role::User, "[local] one"),
            msg(Role::Assistant, "x"),
            msg(Role::User, "[local] two"),
        ]);
        assert_eq!(a.content, "echo: [local] two");
        assert!(a.tool_calls.is_empty());
        assert!(a.usage.input_tokens > 0);
    }
}
