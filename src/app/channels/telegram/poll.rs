//! A bot's way in: `getMe` (who the bot is), then `deleteWebhook` (long polling gets nothing
//! while a webhook is set) and `getUpdates` long polls for as long as the channel is
//! configured; or, in webhook mode, `setWebhook` and the batches Telegram POSTs to the API
//! (`Hooks`), stored the same way.
//!
//! Nothing is lost and nothing is stored twice, whenever the daemon dies: an update's message
//! is stored under an id fixed by the update ([`stored_id`]), and the offset that tells
//! Telegram to forget updates is only sent, with the next poll, once every update before it is
//! committed. Updates read again after a restart find their id taken and are skipped.
//!
//! Faults are the channel's own: a refused token (401/404) or a second poller (409) put it in
//! `error` with the fix, the API down or flooded puts it in `failing` while it backs off; the
//! instance keeps serving its other channels all along.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{blocking, Shared};
use crate::app::channels::{Context, Stop};
use crate::domain::channels::TelegramChannel;
use crate::domain::telegram::{self, TELEGRAM};
use crate::infra::store::Store;
use crate::infra::telegram::BotError;

/// How long one `getUpdates` waits for an update (Telegram holds the request open).
const POLL_WAIT: Duration = Duration::from_secs(25);

/// How long a refused token waits before it is tried again (a restart with a new one is the
/// usual fix, but a token may also come back).
const UNAUTHORIZED_WAIT: Duration = Duration::from_secs(60);

/// How long a 409 waits: another poller holds the bot for as long as it runs.
const CONFLICT_WAIT: Duration = Duration::from_secs(10);

/// Backoff for an unavailable API: 1 s doubling to a minute.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Polls `instance`'s bot until `stop`.
pub async fn run(ctx: Arc<Context>, instance: String, config: TelegramChannel, mut stop: Stop) {
    let db = ctx.home.db_path();
    let store = match tokio::task::spawn_blocking(move || Store::open(&db)).await {
        Ok(Ok(s)) => Arc::new(Mutex::new(s)),
        Ok(Err(e)) => {
            return tracing::error!(instance, error = %e, "the Telegram channel cannot open the store")
        }
        Err(e) => {
            return tracing::error!(instance, error = %e, "the Telegram channel cannot open the store")
        }
    };
    let mut status = Status::new(store.clone(), &instance);
    let link = match ctx.hub.telegram.link(&instance, &config, &ctx.hub.http) {
        Ok(l) => l,
        Err(problem) => {
            tracing::warn!(instance, %problem, "the Telegram channel cannot start");
            status.set("error", Some(problem), None).await;
            return stop.wait().await;
        }
    };
    status.set("starting", None, None).await;
    // Webhook mode needs its secret before anything is asked of Telegram.
    let hook_secret = match &config.webhook {
        None => None,
        Some(w) => match std::env::var(&w.secret_env) {
            Ok(s) if telegram::is_valid_webhook_secret(&s) => {
                crate::infra::logging::protect(&s);
                Some(s)
            }
            _ => {
                let problem = format!(
                    "the daemon's environment must set {} to the webhook's secret: 1 to 256 \
                     letters, digits, _ or - (for example: openssl rand -hex 32)",
                    w.secret_env
                );
                tracing::warn!(instance, %problem, "the Telegram channel cannot start");
                status.set("error", Some(problem), None).await;
                return stop.wait().await;
            }
        },
    };
    let mut backoff = Backoff::default();
    let bot = loop {
        let hello = async {
            let bot = link.api.get_me().await?;
            match (&config.webhook, &hook_secret) {
                (Some(w), Some(secret)) => {
                    link.api
                        .set_webhook(&w.url, secret, telegram::ALLOWED_UPDATES)
                        .await?
                }
                // Long polling gets nothing while a webhook is set.
                _ => link.api.delete_webhook().await?,
            }
            Ok::<_, BotError>(bot)
        };
        let fault = tokio::select! {
            _ = stop.wait() => return,
            r = hello => match r {
                Ok(bot) => break bot,
                Err(e) => e,
            },
        };
        let wait = status.fault(&config, &fault, &mut backoff).await;
        if stop.sleep(wait).await {
            return;
        }
    };
    link.set_bot(bot.clone());
    let account = format!("@{}", bot.username);
    status.set("ok", None, Some(account.clone())).await;
    let typing = tokio::spawn(super::typing::keep_up(
        store.clone(),
        link.clone(),
        instance.clone(),
    ));
    if let Some(secret) = hook_secret {
        tracing::info!(instance, bot = %account, "the Telegram channel takes updates by webhook");
        let mut batches = ctx.hub.telegram_hooks.open(&instance, secret);
        loop {
            let batch = tokio::select! {
                _ = stop.wait() => break,
                b = batches.recv() => b,
            };
            let Some((updates, done)) = batch else { break };
            let taken =
                super::updates::take_all(&ctx, &store, &link, &bot, &instance, updates).await;
            // Telegram sends it again unless it is answered 2xx: only once it is stored.
            let _ = done.send(taken.map_err(|e| e.to_string()));
        }
        ctx.hub.telegram_hooks.close(&instance);
        typing.abort();
        return;
    }
    tracing::info!(instance, bot = %account, "the Telegram channel is polling for messages");
    let mut offset: Option<i64> = None;
    loop {
        let got = tokio::select! {
            _ = stop.wait() => break,
            r = link.api.get_updates(offset, POLL_WAIT, telegram::ALLOWED_UPDATES) => r,
        };
        match got {
            Ok(updates) => {
                backoff = Backoff::default();
                status.set("ok", None, Some(account.clone())).await;
                let next = updates
                    .iter()
                    .filter_map(|u| u["update_id"].as_i64())
                    .max()
                    .map(|m| m + 1);
                match super::updates::take_all(&ctx, &store, &link, &bot, &instance, updates).await
                {
                    // Only now may Telegram forget them: the next poll says so.
                    Ok(()) => offset = next.or(offset),
                    Err(e) => {
                        tracing::warn!(
                            instance,
                            error = format!("{e:#}"),
                            "Telegram updates could not be stored; they are read again"
                        );
                        if stop.sleep(Duration::from_secs(1)).await {
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                if matches!(&e, BotError::Conflict(d) if d.contains("webhook")) {
                    let _ = link.api.delete_webhook().await;
                }
                let wait = status.fault(&config, &e, &mut backoff).await;
                if stop.sleep(wait).await {
                    break;
                }
            }
        }
    }
    typing.abort();
}
/// How the channel stands, written to the store when it changes.
struct Status {
    store: Shared,
    instance: String,
    last: Option<(String, Option<String>)>,
}

impl Status {
    fn new(store: Shared, instance: &str) -> Self {
        Self {
            store,
            instance: instance.to_string(),
            last: None,
        }
    }

    async fn set(&mut self, state: &str, detail: Option<String>, account: Option<String>) {
        let now = (state.to_string(), detail.clone());
        if self.last.as_ref() == Some(&now) {
            return;
        }
        self.last = Some(now);
        let (store, instance, state) =
            (self.store.clone(), self.instance.clone(), state.to_string());
        let written = blocking(move || {
            store.lock().expect("telegram store").set_channel_status(
                &instance,
                TELEGRAM,
                &state,
                detail.as_deref(),
                account.as_deref(),
            )
        })
        .await;
        if let Err(e) = written {
            tracing::warn!(instance = %self.instance, error = %e, "the Telegram channel's state could not be recorded");
        }
    }

    /// Records fault `e` and returns how long to wait before trying again.
    async fn fault(
        &mut self,
        config: &TelegramChannel,
        e: &BotError,
        backoff: &mut Backoff,
    ) -> Duration {
        let (state, detail, wait) = match e {
            BotError::Unauthorized(..) => (
                "error",
                format!(
                    "{e}: the token in {} is wrong or was revoked; get it again from @BotFather \
                     (/mybots, API Token), set it in the daemon's environment and restart the daemon",
                    config.token_env
                ),
                UNAUTHORIZED_WAIT,
            ),
            BotError::Conflict(_) => (
                "error",
                format!(
                    "{e}: another program takes this bot's updates (a second supervisor or bot \
                     with the same token, or a webhook); stop it, or give this instance its own \
                     bot; retrying every {} s",
                    CONFLICT_WAIT.as_secs()
                ),
                CONFLICT_WAIT,
            ),
            BotError::RetryAfter(secs) => ("failing", e.to_string(), Duration::from_secs(*secs)),
            BotError::Refused(..) | BotError::Unavailable(_) => {
                let wait = backoff.next();
                (
                    "failing",
                    format!("{e}; retrying in {} s", wait.as_secs()),
                    wait,
                )
            }
        };
        if self.last.as_ref().map(|l| l.0.as_str()) != Some(state) {
            tracing::warn!(instance = %self.instance, error = %e, "the Telegram channel is {state}");
        }
        self.set(state, Some(detail), None).await;
        wait
    }
}

#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn next(&mut self) -> Duration {
        let wait = Duration::from_secs(1 << self.0.min(6)).min(BACKOFF_MAX);
        self.0 += 1;
        wait
    }
}
