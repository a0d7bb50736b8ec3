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

use crate::domain::instance::config::{ModelConfig, Provider};

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
    /// The same error with `key` replaced wherever a provider or transport put it: a proxy or
    /// provider may echo the request (headers included) in its error body, and these errors
    /// reach the daemon's log, the usage table and the agent, none of which may see a key.
    pub fn without_key(self, key: Option<&str>) -> Self {
        let Some(key) = key.filter(|k| k.len() >= crate::infra::logging::MIN_SECRET_LEN) else {
            return self;
        };
        let hide = |text: String| text.replace(key, crate::infra::logging::REDACTED);
        match self {
            LlmError::Status {
                provider,
                status,
                body,
                retry_after,
            } => LlmError::Status {
                provider,
                status,
                body: hide(body),
                retry_after,
            },
            LlmError::Transport { provider, message } => LlmError::Transport {
                provider,
                message: hide(message),
            },
            LlmError::Decode { provider, message } => LlmError::Decode {
                provider,
                message: hide(message),
            },
            missing @ LlmError::MissingKey(_) => missing,
        }
    }

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
        Some(var) => {
            let key = std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| LlmError::MissingKey(var.clone()))?;
            // The variable may have any name, so the log redactor, which only knows the
            // values of secret-looking names from its start, learns this key now.
            crate::infra::logging::protect(&key);
            Ok(Some(key))
        }
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
        // The key is scrubbed inside the retried call, before `retry` logs a failed attempt.
        Provider::Openai => {
            let key = api_key(model)?;
            let key = key.as_deref();
            retry::with_backoff(move || async move {
                let result = openai::complete(http, model, key, req).await;
                result.map_err(|e| e.without_key(key))
            })
            .await
        }
        Provider::Anthropic => {
            let key = api_key(model)?;
            let key = key.as_deref();
            retry::with_backoff(move || async move {
                let result = anthropic::complete(http, model, key, req).await;
                result.map_err(|e| e.without_key(key))
            })
            .await
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
            // Like transport errors: the URL may carry credentials or an `api_key=` parameter.
            message: e.without_url().to_string(),
        })
}

pub(crate) fn transport(provider: &'static str, e: reqwest::Error) -> LlmError {
    // reqwest's messages do not include headers, so the key cannot leak through here; the URL
    // is left out as it may hold credentials (`https://user:pass@…`, `?api_key=…`).
    LlmError::Transport {
        provider,
        message: e.without_url().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};

    #[test]
    fn errors_lose_the_key_wherever_it_was_echoed() {
        let key = "sk-live-0123456789abcdef";
        let status = LlmError::Status {
            provider: "openai",
            status: 401,
            body: format!("bad header Authorization: Bearer {key}"),
            retry_after: None,
        };
        let text = status.without_key(Some(key)).to_string();
        assert!(!text.contains(key), "{text}");
        assert!(text.contains("Bearer [REDACTED]"), "{text}");
        let transport = LlmError::Transport {
            provider: "openai",
            message: format!("refused {key}"),
        };
        assert_eq!(
            transport.without_key(Some(key)).to_string(),
            "calling openai failed: refused [REDACTED]"
        );
        // No key, or one too short to replace safely: the error is unchanged.
        let decode = || LlmError::Decode {
            provider: "anthropic",
            message: "abc".into(),
        };
        assert_eq!(decode().without_key(None).to_string(), decode().to_string());
        assert_eq!(
            decode().without_key(Some("abc")).to_string(),
            decode().to_string()
        );
    }

    /// A provider that echoes the request's credentials in its error, as some proxies do.
    async fn echoing_provider() -> String {
        async fn reject(headers: HeaderMap) -> (StatusCode, String) {
            let auth = headers
                .get("authorization")
                .or_else(|| headers.get("x-api-key"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (
                StatusCode::UNAUTHORIZED,
                format!("invalid credentials {auth}"),
            )
        }
        let app = axum::Router::new()
            .route("/chat/completions", axum::routing::post(reject))
            .route("/v1/messages", axum::routing::post(reject));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_provider_echoing_the_key_does_not_put_it_in_the_error() {
        let base = echoing_provider().await;
        let key = "llm-unit-test-key-0123456789";
        std::env::set_var("LLM_UNIT_TEST_ECHOED", key);
        for provider in [Provider::Openai, Provider::Anthropic] {
            let model = ModelConfig {
                provider,
                name: "m".into(),
                base_url: Some(base.clone()),
                api_key_env: Some("LLM_UNIT_TEST_ECHOED".into()),
            };
            let req = Request {
                messages: &[],
                tools: &[],
                max_tokens: None,
            };
            let err = complete(&http_client(), &model, req).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains("HTTP 401"), "{text}");
            assert!(text.contains("invalid credentials"), "{text}");
            assert!(!text.contains(key), "{text}");
        }
    }
}
