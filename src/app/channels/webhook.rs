//! The webhook channel's way out: each answer is POSTed to the channel's `url` as JSON, with
//! the same signature header the way in demands, and tried again (the outbox's backoff)
//! until the receiver answers 2xx. The answer's `id` stays the same across tries, so a
//! receiver that got it but whose 2xx was lost can tell a repeat.

use std::time::Duration;

use super::{Outbound, Outcome, SendFuture};
use crate::domain::channels::{self, WebhookChannel, SIGNATURE_HEADER, WEBHOOK};
use crate::infra::store::deliveries::Delivery;

/// How long one POST may take before it counts as failed.
const POST_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Sender {
    url: String,
    secret: Vec<u8>,
    http: reqwest::Client,
}

impl Sender {
    /// A sender for `config`, whose secret is read from the daemon's environment.
    pub fn new(config: &WebhookChannel, http: reqwest::Client) -> Result<Self, String> {
        let url = config.url.clone().ok_or("the webhook channel has no url")?;
        let secret = std::env::var_os(&config.secret_env)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "the daemon's environment does not set {}, the webhook channel's secret",
                    config.secret_env
                )
            })?;
        Ok(Self {
            url,
            secret: secret.into_encoded_bytes(),
            http,
        })
    }
}

/// Most bytes a sender's message id may have (it is kept, prefixed, as the message's id).
pub const MAX_ID_BYTES: usize = 40;

/// The stored id of webhook message `id` to `instance`: the sender's id, kept readable, under
/// a prefix of the instance's own, so that two instances' senders never collide.
pub fn stored_id(instance: &str, id: &str) -> String {
    use sha2::Digest;
    let tag = hex::encode(sha2::Sha256::digest(instance.as_bytes()));
    format!("wh-{}-{id}", &tag[..8])
}

/// The sender's own id of a stored webhook message id, if it is one.
pub fn sender_id(stored: &str) -> Option<&str> {
    stored.strip_prefix("wh-").and_then(|s| s.get(9..))
}

/// The JSON an answer is POSTed as.
pub fn body(instance: &str, d: &Delivery) -> Vec<u8> {
    let chat = d.chat.strip_prefix("webhook:").unwrap_or(&d.chat);
    let reply_to = d.reply_to.as_deref().and_then(sender_id);
    serde_json::to_vec(&serde_json::json!({
        "id": d.message_id,
        "instance": instance,
        "chat": chat,
        "text": d.body,
        "kind": d.kind,
        "reply_to": reply_to,
    }))
    .expect("JSON of strings")
}

impl Outbound for Sender {
    fn name(&self) -> &'static str {
        WEBHOOK
    }

    fn send<'a>(&'a self, instance: &'a str, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(async move {
            let body = body(instance, d);
            let signature = channels::sign(&self.secret, &body);
            let answer = self
                .http
                .post(&self.url)
                .timeout(POST_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await;
            match answer {
                Err(e) => {
                    Outcome::failed(crate::domain::error_text::one_line(&e.without_url().into()))
                }
                Ok(a) if a.status().is_success() => Outcome::Sent,
                Ok(a) => Outcome::failed(format!(
                    "the receiver answered HTTP {}",
                    a.status().as_u16()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_ids_keep_the_senders_id_and_fit() {
        let long = "x".repeat(MAX_ID_BYTES);
        let id = stored_id("alice", &long);
        assert!(
            crate::infra::store::messages::is_valid_message_id(&id),
            "{id}"
        );
        assert_eq!(sender_id(&id), Some(long.as_str()));
        assert_ne!(stored_id("alice", "1"), stored_id("bob", "1"));
        assert_eq!(sender_id("0190-abc"), None);
    }
}
