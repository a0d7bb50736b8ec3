//! Channels: how people and other systems reach an instance besides the operator's CLI and
//! API. The config's `channels` block, the conversation key a channel's messages carry, the
//! signature of the webhook channel, and the outbox's retry pacing. Pure and unit-tested.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::field_error::FieldError;
use crate::domain::sizes::is_env_var_name;

/// The header that carries a webhook body's signature, both ways.
pub const SIGNATURE_HEADER: &str = "X-Supervisor-Signature";

/// The webhook channel's name: its senders are `webhook:<sender>`, its chats `webhook:<chat>`.
pub const WEBHOOK: &str = "webhook";

/// The Telegram Bot API server when the config names none.
pub const TELEGRAM_API_BASE: &str = "https://api.telegram.org";

/// Telegram attachments up to this size are downloaded when the config says nothing.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 10 << 20;

/// The Bot API downloads no file larger than this.
pub const MAX_ATTACHMENT_BYTES: u64 = 20 << 20;

/// Most bytes a webhook sender or chat name may have.
pub const MAX_NAME_BYTES: usize = 128;

/// The `channels` block of an instance's config.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
}

impl Channels {
    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.telegram.is_none()
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(t) = &self.telegram {
            t.validate()?;
        }
        if let Some(w) = &self.webhook {
            w.validate()?;
        }
        Ok(())
    }
}

/// `channels.telegram`: a Telegram bot, reached by long polling (no public address needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramChannel {
    /// The host environment variable that holds the bot token (never the token itself).
    pub token_env: String,
    /// The Bot API server; absent or null: `https://api.telegram.org`.
    #[serde(default)]
    pub api_base: Option<String>,
    /// Photos and documents up to this size are downloaded into the workspace's `inbox/`;
    /// larger ones are named and skipped. Absent: 10 MiB. At most 20 MiB (the Bot API's own
    /// limit for downloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attachment_bytes: Option<u64>,
    /// Webhook mode instead of long polling: Telegram POSTs updates to `url` (this daemon's
    /// `/v1/channels/telegram/NAME`, reached from the internet), signed with the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<TelegramWebhook>,
}

/// `channels.telegram.webhook`: where Telegram sends updates, and the variable holding the
/// secret it sends with each (`X-Telegram-Bot-Api-Secret-Token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramWebhook {
    pub url: String,
    pub secret_env: String,
}

impl TelegramChannel {
    /// The Bot API server to talk to, without a trailing `/`.
    pub fn api_base(&self) -> &str {
        self.api_base
            .as_deref()
            .unwrap_or(TELEGRAM_API_BASE)
            .trim_end_matches('/')
    }

    /// The largest attachment that is downloaded.
    pub fn max_attachment_bytes(&self) -> u64 {
        self.max_attachment_bytes
            .unwrap_or(DEFAULT_MAX_ATTACHMENT_BYTES)
    }

    fn validate(&self) -> Result<(), FieldError> {
        env_var_field("channels.telegram.token_env", &self.token_env, "token")?;
        if let Some(base) = &self.api_base {
            if !is_http_url(base) {
                return Err(FieldError::new(
                    "channels.telegram.api_base",
                    format!("expected an http:// or https:// URL such as https://api.telegram.org, got {base:?}"),
                ));
            }
        }
        if let Some(w) = &self.webhook {
            if !w.url.starts_with("https://") || !is_http_url(&w.url) {
                return Err(FieldError::new(
                    "channels.telegram.webhook.url",
                    format!("expected an https:// URL (Telegram sends updates only over HTTPS), got {:?}", w.url),
                ));
            }
            env_var_field(
                "channels.telegram.webhook.secret_env",
                &w.secret_env,
                "secret",
            )?;
        }
        let most = MAX_ATTACHMENT_BYTES;
        if self.max_attachment_bytes.is_some_and(|b| b > most) {
            return Err(FieldError::new(
                "channels.telegram.max_attachment_bytes",
                format!("at most {most} (the Bot API downloads no larger file)"),
            ));
        }
        Ok(())
    }
}

/// `name` at config field `path` must name an environment variable holding a `what`.
fn env_var_field(path: &str, name: &str, what: &str) -> Result<(), FieldError> {
    if is_env_var_name(name) {
        return Ok(());
    }
    Err(FieldError::new(
        path,
        format!(
            "expected the name of an environment variable (letters, digits and _), got \
             {name:?}; the {what} itself never goes into the config"
        ),
    ))
}

/// Whether `url` is a plain http(s) URL fit for a config.
fn is_http_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `channels.webhook`: signed messages in on the daemon's listeners, answers out to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// The host environment variable that holds the signing secret (never the secret itself).
    pub secret_env: String,
    /// Where answers are POSTed; absent: answers are only stored (and shown in history).
    #[serde(default)]
    pub url: Option<String>,
}

impl WebhookChannel {
    fn validate(&self) -> Result<(), FieldError> {
        env_var_field("channels.webhook.secret_env", &self.secret_env, "secret")?;
        if let Some(url) = &self.url {
            if !is_http_url(url) {
                return Err(FieldError::new(
                    "channels.webhook.url",
                    format!("expected an http:// or https:// URL, got {url:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// The header value signing `body` with `secret`: `sha256=<hex HMAC-SHA256>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` with `secret` (compared in constant time).
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    let mut mac = <hmac::Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The conversation a message belongs to: `""` for the operator's own (the CLI, the API,
/// tasks), `<channel>:<chat>` for a channel's chat. Turns and their history never mix two.
pub fn chat_key(channel: &str, chat: &str) -> String {
    format!("{channel}:{chat}")
}

/// The channel that delivers answers into the conversation `chat`, if any: the part of the
/// key before its first `:`.
pub fn channel_of(chat: &str) -> Option<&str> {
    chat.split_once(':')
        .map(|(c, _)| c)
        .filter(|c| !c.is_empty())
}

/// Whether `name` may be a webhook sender or chat: 1 to [`MAX_NAME_BYTES`] bytes, no control
/// characters and no whitespace at either end (it is shown in history and in the prompt).
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && !name.chars().any(char::is_control)
        && name.trim() == name
}

/// How long an outbound delivery waits after `attempts` failed tries: 1 s doubling, at most
/// five minutes. It is tried until it succeeds.
pub fn retry_delay_ms(attempts: u32) -> i64 {
    let secs = 1i64 << attempts.saturating_sub(1).min(9);
    secs.min(300) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let sig = sign(b"s3cret", br#"{"id":"1"}"#);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"s3cret", br#"{"id":"1"}"#, Some(&sig)));
        assert!(!verify(b"s3cret", br#"{"id":"2"}"#, Some(&sig)));
        assert!(!verify(b"other", br#"{"id":"1"}"#, Some(&sig)));
        assert!(!verify(b"s3cret", br#"{"id":"1"}"#, None));
        assert!(!verify(b"s3cret", br#"{"id":"1"}"#, Some(&sig[7..])));
        assert!(!verify(b"s3cret", br#"{"id":"1"}"#, Some("sha256=zz")));
        // A known vector (RFC 4231 case 2).
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn chat_keys_name_their_channel() {
        assert_eq!(chat_key(WEBHOOK, "room 1"), "webhook:room 1");
        assert_eq!(channel_of("webhook:room 1"), Some("webhook"));
        assert_eq!(channel_of(""), None);
        assert_eq!(channel_of(":x"), None);
    }

    #[test]
    fn names_are_plain_and_short() {
        assert!(is_valid_name("bob"));
        assert!(is_valid_name("ops room"));
        for bad in ["", " bob", "bob\n", "a\u{7}b", &"x".repeat(129)] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let d: Vec<_> = [0, 1, 2, 3, 9, 10, 50].map(retry_delay_ms).into();
        assert_eq!(d, [1000, 1000, 2000, 4000, 256_000, 300_000, 300_000]);
    }

    #[test]
    fn the_telegram_config_names_a_variable_and_a_server() {
        let ok = TelegramChannel {
            token_env: "ALICE_TELEGRAM_TOKEN".into(),
            api_base: None,
            max_attachment_bytes: None,
            webhook: None,
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.api_base(), "https://api.telegram.org");
        let own = TelegramChannel {
            api_base: Some("http://127.0.0.1:8081/".into()),
            ..ok.clone()
        };
        assert_eq!(own.api_base(), "http://127.0.0.1:8081");
        for (bad, path) in [
            (
                TelegramChannel {
                    token_env: "123:abc".into(),
                    ..ok.clone()
                },
                "channels.telegram.token_env",
            ),
            (
                TelegramChannel {
                    api_base: Some("api.telegram.org".into()),
                    ..ok.clone()
                },
                "channels.telegram.api_base",
            ),
            (
                TelegramChannel {
                    max_attachment_bytes: Some(21 << 20),
                    ..ok.clone()
                },
                "channels.telegram.max_attachment_bytes",
            ),
            (
                TelegramChannel {
                    webhook: Some(TelegramWebhook {
                        url: "http://bot.example.org/hook".into(),
                        secret_env: "HOOK_SECRET".into(),
                    }),
                    ..ok.clone()
                },
                "channels.telegram.webhook.url",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().path, path);
        }
    }

    #[test]
    fn the_config_names_variables_and_urls() {
        let ok = WebhookChannel {
            secret_env: "ALICE_WEBHOOK_SECRET".into(),
            url: Some("https://example.org/out".into()),
        };
        assert!(ok.validate().is_ok());
        let bad = WebhookChannel {
            secret_env: "not a var".into(),
            ..ok.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err().path,
            "channels.webhook.secret_env"
        );
        let bad = WebhookChannel {
            url: Some("ftp://x".into()),
            ..ok
        };
        assert_eq!(bad.validate().unwrap_err().path, "channels.webhook.url");
    }
}
