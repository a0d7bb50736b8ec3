//! Channels: one file per channel, each behind [`Outbound`], so the next one (Slack, Discord,
//! Matrix, email) is a new file here and a line in [`outbound_for`], not a change of the
//! daemon. A channel's messages come in through the one accept path (`app::accept`) with
//! their conversation (`<channel>:<chat>`); the answers go out through the outbox
//! (`deliveries`), which the daemon's outbox loop hands to the channel's [`Outbound`].

pub mod webhook;

use std::future::Future;
use std::pin::Pin;

use crate::domain::instance::InstanceConfig;
use crate::infra::store::deliveries::Delivery;

/// Why a delivery did not go: it stays pending and is tried again after a pause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// How a channel sends an answer into one of its chats.
pub trait Outbound: Send + Sync {
    /// The channel's name: the first part of its chats' keys (`webhook`).
    fn name(&self) -> &'static str;
    /// Sends one delivery. Ok only once the other side took it: it is then never sent again.
    fn send<'a>(&'a self, instance: &'a str, delivery: &'a Delivery) -> SendFuture<'a>;
}

/// The senders `config` sets up, with why one could not be (a secret variable not set).
pub fn outbound_for(
    config: &InstanceConfig,
    http: &reqwest::Client,
) -> Vec<Result<Box<dyn Outbound>, String>> {
    let mut out = Vec::new();
    if let Some(w) = &config.channels.webhook {
        if w.url.is_some() {
            out.push(
                webhook::Sender::new(w, http.clone()).map(|s| Box::new(s) as Box<dyn Outbound>),
            );
        }
    }
    out
}
