//! "typing…" in every chat of a bot with a turn running, kept up while it runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{blocking, Link, Shared};
use crate::domain::telegram::{Place, TELEGRAM};

/// How often the chats with a turn running are looked up, and how often each is told again
/// that the bot is typing (Telegram shows it for five seconds).
const TYPING_LOOK: Duration = Duration::from_secs(1);
const TYPING_EVERY: Duration = Duration::from_secs(4);

/// Keeps "typing…" up in every chat of the bot with a turn running.
pub async fn keep_up(store: Shared, link: Arc<Link>, instance: String) {
    let mut told: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(TYPING_LOOK).await;
        let chats = {
            let (store, instance) = (store.clone(), instance.clone());
            blocking(move || {
                store
                    .lock()
                    .expect("telegram store")
                    .chats_in_turn(&instance, TELEGRAM)
            })
            .await
            .unwrap_or_default()
        };
        told.retain(|chat, _| chats.contains(chat));
        for chat in chats {
            if told.get(&chat).is_some_and(|t| t.elapsed() < TYPING_EVERY) {
                continue;
            }
            let Some(place) = Place::parse(&chat) else {
                continue;
            };
            if let Err(e) = link.api.send_typing(place).await {
                tracing::debug!(instance, error = %e, "typing could not be shown");
            }
            told.insert(chat, Instant::now());
        }
    }
}
