//! The Telegram Bot API over HTTPS: the one owner of that system. Each method is one POST of
//! JSON to `<api base>/bot<token>/<method>`, and every answer is sorted into what the caller
//! must do about it ([`BotError`]). The token is part of every URL, so no error carries a
//! URL (reqwest's are stripped of theirs) and the token is registered with the log redactor.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::telegram::{Bot, Place};

/// How long a call other than a long poll may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong with a call, by what is to be done about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotError {
    /// 401 or 404: the token is wrong or revoked. Nothing works until it is fixed.
    #[error("the Bot API refused the token (HTTP {0}): {1}")]
    Unauthorized(u16, String),
    /// 409: another program takes this bot's updates (a second poller, or a webhook).
    #[error("the Bot API answered 409 Conflict: {0}")]
    Conflict(String),
    /// 429: wait this many seconds.
    #[error("the Bot API asked to wait {0} s (429 Too Many Requests)")]
    RetryAfter(u64),
    /// Another 4xx: this request will never succeed as it is.
    #[error("the Bot API refused the request (HTTP {0}): {1}")]
    Refused(u16, String),
    /// 5xx, a network error, or an answer that is not the API's: try again later.
    #[error("the Bot API is unavailable: {0}")]
    Unavailable(String),
}

/// The envelope of every Bot API answer.
#[derive(Debug, Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error_code: Option<u16>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// A file `getFile` made ready for download.
#[derive(Debug, Clone, Deserialize)]
pub struct FileInfo {
    #[serde(default)]
    pub file_path: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// A bot's way to the Bot API.
#[derive(Clone)]
pub struct BotApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi").field("base", &self.base).finish()
    }
}

impl BotApi {
    /// A client of the Bot API at `base` (no trailing `/`) for the bot of `token`.
    pub fn new(base: &str, token: &str, http: reqwest::Client) -> Self {
        crate::infra::logging::protect(token);
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        }
    }

    /// Whether this client is for the bot of `token` at `base`.
    pub fn is_for(&self, base: &str, token: &str) -> bool {
        self.base == base.trim_end_matches('/') && self.token == token
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<T, BotError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token);
        let answer = self
            .http
            .post(url)
            .timeout(timeout)
            .json(&params)
            .send()
            .await
            .map_err(|e| BotError::Unavailable(network_error(e)))?;
        let status = answer.status().as_u16();
        let body = answer
            .bytes()
            .await
            .map_err(|e| BotError::Unavailable(network_error(e)))?;
        let parsed: Answer = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(_) if status >= 500 || status == 429 => {
                return Err(BotError::Unavailable(format!("HTTP {status}")))
            }
            Err(_) => {
                return Err(BotError::Unavailable(format!(
                    "HTTP {status} with an answer that is not the Bot API's"
                )))
            }
        };
        if parsed.ok {
            let result = parsed.result.unwrap_or(Value::Null);
            return serde_json::from_value(result).map_err(|e| {
                BotError::Unavailable(format!("an answer to {method} of an unexpected shape: {e}"))
            });
        }
        let code = parsed.error_code.unwrap_or(status);
        let desc = parsed
            .description
            .map(|d| crate::domain::escape::line(&d).chars().take(300).collect())
            .unwrap_or_else(|| format!("HTTP {code}"));
        Err(match code {
            401 | 404 => BotError::Unauthorized(code, desc),
            409 => BotError::Conflict(desc),
            429 => BotError::RetryAfter(
                parsed
                    .parameters
                    .and_then(|p| p.retry_after)
                    .unwrap_or(1)
                    .clamp(1, 3600),
            ),
            c if c >= 500 => BotError::Unavailable(format!("HTTP {c}: {desc}")),
            c => BotError::Refused(c, desc),
        })
    }

    /// The bot itself.
    pub async fn get_me(&self) -> Result<Bot, BotError> {
        self.call("getMe", json!({}), CALL_TIMEOUT).await
    }

    /// Removes a webhook, if one is set: long polling gets nothing while one is.
    pub async fn delete_webhook(&self) -> Result<(), BotError> {
        self.call::<Value>("deleteWebhook", json!({}), CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// Has Telegram POST updates to `url`, each with `secret` in the
    /// `X-Telegram-Bot-Api-Secret-Token` header.
    pub async fn set_webhook(
        &self,
        url: &str,
        secret: &str,
        allowed: &[&str],
    ) -> Result<(), BotError> {
        let params = json!({"url": url, "secret_token": secret, "allowed_updates": allowed});
        self.call::<Value>("setWebhook", params, CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// The updates from `offset` on (which confirms every earlier one), waiting up to
    /// `wait` for one. Each comes raw, so that one the channel cannot read is skipped alone.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        wait: Duration,
        allowed: &[&str],
    ) -> Result<Vec<Value>, BotError> {
        let mut params = json!({"timeout": wait.as_secs(), "allowed_updates": allowed});
        if let Some(o) = offset {
            params["offset"] = json!(o);
        }
        self.call("getUpdates", params, wait + CALL_TIMEOUT).await
    }

    /// Sends `text` as plain text (no `parse_mode`: nothing in it is markup, so every `<`,
    /// `&`, `_`, `*` arrives as written) into `place`, replying to `reply_to` if it is still
    /// there. Returns the new message's id.
    pub async fn send_message(
        &self,
        place: Place,
        text: &str,
        reply_to: Option<i64>,
    ) -> Result<i64, BotError> {
        #[derive(Deserialize)]
        struct Sent {
            message_id: i64,
        }
        let mut params = json!({
            "chat_id": place.chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": true},
        });
        if let Some(t) = place.topic {
            params["message_thread_id"] = json!(t);
        }
        if let Some(m) = reply_to {
            params["reply_parameters"] =
                json!({"message_id": m, "allow_sending_without_reply": true});
        }
        let sent: Sent = self.call("sendMessage", params, CALL_TIMEOUT).await?;
        Ok(sent.message_id)
    }

    /// Shows "typing…" in `place` (for five seconds, or until the bot's next message).
    pub async fn send_typing(&self, place: Place) -> Result<(), BotError> {
        let mut params = json!({"chat_id": place.chat_id, "action": "typing"});
        if let Some(t) = place.topic {
            params["message_thread_id"] = json!(t);
        }
        self.call::<Value>("sendChatAction", params, CALL_TIMEOUT)
            .await
            .map(drop)
    }

    /// Makes file `file_id` ready for download.
    pub async fn get_file(&self, file_id: &str) -> Result<FileInfo, BotError> {
        self.call("getFile", json!({"file_id": file_id}), CALL_TIMEOUT)
            .await
    }

    /// Downloads `file_path` (from [`BotApi::get_file`]), refusing it past `max` bytes.
    pub async fn download(&self, file_path: &str, max: u64) -> Result<Vec<u8>, BotError> {
        let url = format!("{}/file/bot{}/{file_path}", self.base, self.token);
        let mut answer = self
            .http
            .get(url)
            .timeout(CALL_TIMEOUT * 4)
            .send()
            .await
            .map_err(|e| BotError::Unavailable(network_error(e)))?;
        let status = answer.status().as_u16();
        if status != 200 {
            return Err(match status {
                401 => BotError::Unauthorized(status, "the file download was refused".into()),
                s if s >= 500 => BotError::Unavailable(format!("HTTP {s}")),
                s => BotError::Refused(s, "the file cannot be downloaded".into()),
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| BotError::Unavailable(network_error(e)))?
        {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(BotError::Refused(
                    413,
                    format!("the file is larger than {max} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }
}

/// A network error without its URL (which holds the token), on one line.
fn network_error(e: reqwest::Error) -> String {
    crate::domain::error_text::one_line(&e.without_url().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_error_names_the_token() {
        // Nothing listens on port 9 of loopback: a network error, whose text must not carry
        // the URL and with it the token.
        let api = BotApi::new(
            "http://127.0.0.1:9",
            "123:SECRET-token",
            reqwest::Client::new(),
        );
        let e = api.get_me().await.unwrap_err();
        assert!(matches!(e, BotError::Unavailable(_)), "{e:?}");
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(!format!("{api:?}").contains("SECRET"));
    }
}
