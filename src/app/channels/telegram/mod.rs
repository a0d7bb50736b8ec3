//! The Telegram channel. Its way in is a long poll of `getUpdates` per bot ([`poll`]), its way
//! out `sendMessage` through the outbox ([`Sender`]); both go through the bot's one [`Link`],
//! which keeps the bot's pace (Telegram's flood limits) and identity for both.

mod attachments;
pub mod poll;
mod typing;
mod updates;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Outbound, Outcome, SendFuture};
use crate::domain::channels::TelegramChannel;
use crate::domain::telegram::{self, message_id_of, Bot, Pace, Place, TELEGRAM};
use crate::infra::store::deliveries::Delivery;
use crate::infra::telegram::{BotApi, BotError};

/// How long a delivery waits after the Bot API refused the token (the poller says why).
const UNAUTHORIZED_RETRY: Duration = Duration::from_secs(60);

/// One bot as one instance uses it.
pub struct Link {
    pub api: BotApi,
    pub config: TelegramChannel,
    pace: Mutex<Pace>,
    bot: Mutex<Option<Bot>>,
}

impl Link {
    /// The bot, once `getMe` told who it is.
    pub fn bot(&self) -> Option<Bot> {
        self.bot.lock().expect("bot").clone()
    }

    pub fn set_bot(&self, bot: Bot) {
        *self.bot.lock().expect("bot") = Some(bot);
    }

    /// Takes a place in the bot's pace for a message into `place` (0: go now).
    fn reserve(&self, place: Place) -> i64 {
        let now = crate::domain::clock::now_ms();
        self.pace.lock().expect("pace").reserve(place, now)
    }

    fn pause(&self, retry_after: Duration) {
        let now = crate::domain::clock::now_ms();
        self.pace
            .lock()
            .expect("pace")
            .pause(now, retry_after.as_millis() as i64);
    }
}

/// The links of every instance's bot, kept while their config and token stay the same.
#[derive(Clone, Default)]
pub struct Links(Arc<Mutex<HashMap<String, Arc<Link>>>>);

impl Links {
    /// `instance`'s link for `config`, with its token from the daemon's environment.
    pub fn link(
        &self,
        instance: &str,
        config: &TelegramChannel,
        http: &reqwest::Client,
    ) -> Result<Arc<Link>, String> {
        let token = token(config)?;
        let mut links = self.0.lock().expect("links");
        if let Some(l) = links.get(instance) {
            if &l.config == config && l.api.is_for(config.api_base(), &token) {
                return Ok(l.clone());
            }
        }
        let link = Arc::new(Link {
            api: BotApi::new(config.api_base(), &token, http.clone()),
            config: config.clone(),
            pace: Mutex::default(),
            bot: Mutex::default(),
        });
        links.insert(instance.to_string(), link.clone());
        Ok(link)
    }

    /// Forgets `instance`'s link (its channel is gone).
    pub fn forget(&self, instance: &str) {
        self.0.lock().expect("links").remove(instance);
    }
}

/// A batch of updates Telegram POSTed, and where to say whether it is stored.
pub type HookBatch = (
    Vec<serde_json::Value>,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// The instances whose bot takes updates by webhook: the secret Telegram sends with each,
/// and the way to the instance's channel task, which stores them.
#[derive(Clone, Default)]
pub struct Hooks(Arc<Mutex<HashMap<String, Hook>>>);

struct Hook {
    secret: String,
    tx: tokio::sync::mpsc::Sender<HookBatch>,
}

impl Hooks {
    /// Opens `instance`'s webhook with `secret`; the batches POSTed to it come out of the
    /// receiver.
    pub fn open(&self, instance: &str, secret: String) -> tokio::sync::mpsc::Receiver<HookBatch> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        self.0
            .lock()
            .expect("hooks")
            .insert(instance.to_string(), Hook { secret, tx });
        rx
    }

    pub fn close(&self, instance: &str) {
        self.0.lock().expect("hooks").remove(instance);
    }

    /// The way to `instance`'s channel task when `secret` is its webhook's (compared in
    /// constant time); None when it has no webhook open or the secret is wrong.
    pub fn admit(
        &self,
        instance: &str,
        secret: Option<&str>,
    ) -> Result<tokio::sync::mpsc::Sender<HookBatch>, HookRefusal> {
        use subtle::ConstantTimeEq;
        let hooks = self.0.lock().expect("hooks");
        let hook = hooks.get(instance).ok_or(HookRefusal::NotOpen)?;
        let given = secret.unwrap_or("").as_bytes();
        if bool::from(given.ct_eq(hook.secret.as_bytes())) {
            Ok(hook.tx.clone())
        } else {
            Err(HookRefusal::WrongSecret)
        }
    }
}

/// Why a webhook POST is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookRefusal {
    /// The instance has no Telegram webhook open (none configured, or it is not ready yet).
    NotOpen,
    WrongSecret,
}

/// The bot token `config` names, from the daemon's environment.
pub fn token(config: &TelegramChannel) -> Result<String, String> {
    std::env::var(&config.token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_string())
        .ok_or_else(|| {
            format!(
                "the daemon's environment does not set {}, the Telegram channel's bot token \
                 (from @BotFather; see docs/channels.md)",
                config.token_env
            )
        })
}

/// Sends answers through a bot: each in parts Telegram takes, at the bot's pace, as plain
/// text, the first part replying to the message the answer is for.
pub struct Sender {
    link: Arc<Link>,
}

impl Sender {
    pub fn new(link: Arc<Link>) -> Self {
        Self { link }
    }
}

impl Outbound for Sender {
    fn name(&self) -> &'static str {
        TELEGRAM
    }

    fn send<'a>(&'a self, _instance: &'a str, d: &'a Delivery) -> SendFuture<'a> {
        Box::pin(async move {
            let Some(place) = Place::parse(&d.chat) else {
                return Outcome::failed(format!("{:?} is not a Telegram chat", d.chat));
            };
            let parts = telegram::split(&d.body, telegram::MAX_MESSAGE_UNITS);
            let reply_to = d.reply_to.as_deref().and_then(message_id_of);
            let mut done = d.parts_sent;
            while let Some(part) = parts.get(done as usize) {
                let wait = self.link.reserve(place);
                if wait > 0 {
                    return Outcome::Later {
                        parts_sent: done,
                        wait: Duration::from_millis(wait as u64),
                    };
                }
                let reply = reply_to.filter(|_| done == 0);
                match self.link.api.send_message(place, part, reply).await {
                    Ok(_) => done += 1,
                    Err(e) => {
                        let retry_after = match &e {
                            BotError::RetryAfter(secs) => {
                                let wait = Duration::from_secs(*secs);
                                self.link.pause(wait);
                                Some(wait)
                            }
                            BotError::Unauthorized(..) => Some(UNAUTHORIZED_RETRY),
                            _ => None,
                        };
                        return Outcome::Failed {
                            error: e.to_string(),
                            parts_sent: done,
                            retry_after,
                        };
                    }
                }
            }
            Outcome::Sent
        })
    }
}

/// A channel task's own connection to the store.
type Shared = Arc<Mutex<crate::infra::store::Store>>;

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::infra::store::StoreError> + Send + 'static,
) -> Result<T, crate::infra::store::StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and this task with it.
        Err(_) => std::future::pending().await,
    }
}
