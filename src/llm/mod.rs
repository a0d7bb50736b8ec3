//! Model providers, called by the host on the agents' behalf (the containers hold no keys
//! and have no network). Keys come from the host environment variable each instance's config
//! names; they are never logged and never written anywhere.

pub mod anthropic;
pub mod budget;
pub mod echo;
pub mod openai;
pub mod retry;

use std::time::Duration;

use supervisor_agent::protocol::{ModelMessage, ToolCall, ToolSpec, Usage};

use crate::instance::config::{ModelConfig, Provider};

/// A provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
}

/// How long one HTTP call to a provider may take. With the retries this stays under the
/// 300 s the agent waits for an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the host environment variable {0} (model.api_key_env) is not set")]
    MissingKey(String),
    #[error("{provider} answered HTTP {status}: {body}")]
    Status {
        provider: &'static str,
        status: u16,
        body: String,
        /// Seconds the provider asked us to wait (Retry-After).
        retry_after: Option<u64>,
    },
    #[error("calling {provider} failed: {message}")]
    Transport {
        provider: &'static str,
        message: String,
    },
    #[error("{provider} sent an answer that could not be read: {message}")]
    Decode {
        provider: &'static str,
        message: String,
    },
}

impl LlmError {
    /// Worth another try: rate limits, server errors, timeouts and dropped connections.
    pub fn is_transient(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Transport { .. } => true,
            LlmError::MissingKey(_) | LlmError::Decode { .. } => false,
        }
    }
}

/// One request to a provider, as the agent asked for it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub messages: &'a [ModelMessage],
    pub tools: &'a [ToolSpec],
    pub max_tokens: Option<u32>,
}

/// The API key for `model`, from the environment variable it names (if it names one).
pub fn api_key(model: &ModelConfig) -> Result<Option<String>, LlmError> {
    match &model.api_key_env {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Some)
            .ok_or_else(|| LlmError::MissingKey(var.clone())),
    }
}

/// One model call, retried within a bound when the failure is transient.
pub async fn complete(
    http: &reqwest::Client,
    model: &ModelConfig,
    req: Request<'_>,
) -> Result<Answer, LlmError> {
    match model.provider {
        Provider::Echo => Ok(echo::complete(req.messages)),
        Provider::Openai => {
            let key = api_key(model)?;
            retry::with_backoff(|| openai::complete(http, model, key.as_deref(), req)).await
        }
        Provider::Anthropic => {
            let key = api_key(model)?;
            retry::with_backoff(|| anthropic::complete(http, model, key.as_deref(), req)).await
        }
    }
}

/// The shared HTTP client (connection pooling across instances).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("supervisor/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client")
}

/// Turns a non-success response into an error carrying status, Retry-After and a short body.
pub(crate) async fn check_status(
    provider: &'static str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, LlmError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    Err(LlmError::Status {
        provider,
        status: status.as_u16(),
        body,
        retry_after,
    })
}

/// The provider's base URL: the instance's override, else the provider's public endpoint.
pub(crate) fn base_url<'a>(model: &'a ModelConfig, default: &'a str) -> &'a str {
    model
        .base_url
        .as_deref()
        .unwrap_or(default)
        .trim_end_matches('/')
}

/// Sends a prepared request and decodes the JSON answer, turning failures into [`LlmError`]s.
pub(crate) async fn send_json(
    provider: &'static str,
    call: reqwest::RequestBuilder,
) -> Result<serde_json::Value, LlmError> {
    let resp = call.send().await.map_err(|e| transport(provider, e))?;
    check_status(provider, resp)
        .await?
        .json()
        .await
        .map_err(|e| LlmError::Decode {
            provider,
            message: e.to_string(),
        })
}

pub(crate) fn transport(provider: &'static str, e: reqwest::Error) -> LlmError {
    // reqwest's messages do not include headers, so the key cannot leak through here.
    LlmError::Transport {
        provider,
        message: e.without_url().to_string(),
    }
}
