//! Channels: one file (or directory) per channel, each behind [`Outbound`] for its way out and,
//! when it holds a connection of its own (Telegram's long poll), started by [`listen`], so the
//! next one (Slack, Discord, Matrix, email) is a new file here and a line in [`outbound_for`]
//! and [`listen::Listeners`], not a change of the daemon. A channel's messages come in through
//! the one accept path (`app::accept`) with their conversation (`<channel>:<chat>`); the
//! answers go out through the outbox (`deliveries`), which the daemon's outbox loop hands to
//! the channel's [`Outbound`].

pub mod health;
pub mod listen;
pub mod telegram;
pub mod webhook;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::accept::Courier;
use crate::app::instances::last_good::LastGoodConfigs;
use crate::domain::instance::InstanceConfig;
use crate::infra::home::Home;
use crate::infra::store::deliveries::Delivery;

/// How a try at a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All of it went: it is never sent again.
    Sent,
    /// `parts_sent` of its parts went in all; the rest waits `wait` (the channel's pace, not a
    /// failure: no attempt is counted).
    Later { parts_sent: u32, wait: Duration },
    /// It did not go (or only `parts_sent` parts did): tried again after `retry_after` when
    /// the other side said how long, else after the outbox's backoff.
    Failed {
        error: String,
        parts_sent: u32,
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// A failure with nothing sent, retried on the outbox's backoff.
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome::Failed {
            error: error.into(),
            parts_sent: 0,
            retry_after: None,
        }
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// How a channel sends an answer into one of its chats.
pub trait Outbound: Send + Sync {
    /// The channel's name: the first part of its chats' keys (`webhook`).
    fn name(&self) -> &'static str;
    /// Sends one delivery (from its part `parts_sent` on). [`Outcome::Sent`] only once the
    /// other side took all of it: it is then never sent again.
    fn send<'a>(&'a self, instance: &'a str, delivery: &'a Delivery) -> SendFuture<'a>;
}

/// What channels share across the daemon: one HTTP client, and each Telegram bot's link
/// (its pace and identity), which its poller and its sender use alike.
#[derive(Clone, Default)]
pub struct Hub {
    pub http: reqwest::Client,
    pub telegram: telegram::Links,
    /// Bots that take updates by webhook (`POST /v1/channels/telegram/NAME`).
    pub telegram_hooks: telegram::Hooks,
}

/// The senders `config` of `instance` sets up, with why one could not be (a secret variable
/// not set).
pub fn outbound_for(
    instance: &str,
    config: &InstanceConfig,
    hub: &Hub,
) -> Vec<Result<Box<dyn Outbound>, String>> {
    let mut out = Vec::new();
    if let Some(t) = &config.channels.telegram {
        out.push(
            hub.telegram
                .link(instance, t, &hub.http)
                .map(|link| Box::new(telegram::Sender::new(link)) as Box<dyn Outbound>),
        );
    }
    if let Some(w) = &config.channels.webhook {
        if w.url.is_some() {
            out.push(
                webhook::Sender::new(w, hub.http.clone()).map(|s| Box::new(s) as Box<dyn Outbound>),
            );
        }
    }
    out
}

/// Counts a message in: (instance, channel).
pub type MessageCounter = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What a listening channel needs of the daemon.
pub struct Context {
    pub home: Home,
    pub configs: LastGoodConfigs,
    /// Hands accepted messages to their instance's messaging actor.
    pub courier: Arc<dyn Courier + Send + Sync>,
    pub hub: Hub,
    pub on_message: MessageCounter,
}

/// When a listener must stop: its own channel went, or the daemon stops.
pub struct Stop {
    own: watch::Receiver<bool>,
    daemon: watch::Receiver<bool>,
}

impl Stop {
    pub fn new(own: watch::Receiver<bool>, daemon: watch::Receiver<bool>) -> Self {
        Self { own, daemon }
    }

    /// Resolves once either says stop.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.own.wait_for(|s| *s) => {}
            _ = self.daemon.wait_for(|s| *s) => {}
        }
    }

    /// Sleeps `d`; true when told to stop meanwhile.
    pub async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = self.wait() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }
}
