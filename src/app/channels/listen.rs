//! The channels that hold a connection of their own (Telegram's long poll): one task per
//! instance and channel, started when an instance's config has the channel, started again
//! when its settings change (hot reload), stopped when the channel or the instance goes.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Context, Stop};
use crate::domain::channels::TelegramChannel;
use crate::domain::instance::InstanceName;

/// The listeners running, by instance.
pub struct Listeners {
    ctx: Arc<Context>,
    daemon_stop: watch::Receiver<bool>,
    telegram: HashMap<String, (TelegramChannel, watch::Sender<bool>)>,
}

impl Listeners {
    pub fn new(ctx: Context, daemon_stop: watch::Receiver<bool>) -> Self {
        Self {
            ctx: Arc::new(ctx),
            daemon_stop,
            telegram: HashMap::new(),
        }
    }

    /// Makes the listeners those of `live` instances' configs (their last valid ones).
    pub fn ensure(&mut self, live: &[String]) {
        let mut wanted: HashMap<String, TelegramChannel> = HashMap::new();
        for name in live {
            let Ok(iname) = InstanceName::parse(name) else {
                continue;
            };
            let config = self
                .ctx
                .configs
                .load(name, &self.ctx.home.instance_paths(&iname).config);
            if let Some(t) = config.ok().and_then(|c| c.into_config().channels.telegram) {
                wanted.insert(name.clone(), t);
            }
        }
        self.telegram.retain(|name, (config, stop)| {
            let keep = wanted.get(name) == Some(config);
            if !keep {
                let _ = stop.send(true);
                self.ctx.hub.telegram.forget(name);
                tracing::info!(instance = %name, "the Telegram channel stops (its settings changed or it was removed)");
            }
            keep
        });
        for (name, config) in wanted {
            if self.telegram.contains_key(&name) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            let stop = Stop::new(rx, self.daemon_stop.clone());
            tokio::spawn(super::telegram::poll::run(
                self.ctx.clone(),
                name.clone(),
                config.clone(),
                stop,
            ));
            self.telegram.insert(name, (config, tx));
        }
    }
}
