//! Model providers, called by the host on the agents' behalf (the containers hold no keys
//! and have no network).

pub mod echo;

use supervisor_agent::protocol::{ModelMessage, ToolCall, ToolSpec, Usage};

use crate::instance::config::{ModelConfig, Provider};

/// A provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the {0} provider is not available in this version of supervisor; use `echo`")]
    Unavailable(&'static str),
}

/// One model call.
pub async fn complete(
    model: &ModelConfig,
    messages: &[ModelMessage],
    _tools: &[ToolSpec],
    _max_tokens: Option<u32>,
) -> Result<Answer, LlmError> {
    match model.provider {
        Provider::Echo => Ok(echo::complete(messages)),
        Provider::Openai => Err(LlmError::Unavailable("openai")),
        Provider::Anthropic => Err(LlmError::Unavailable("anthropic")),
    }
}
