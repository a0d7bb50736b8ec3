//! A bot's way in: `getMe` (who the bot is), `deleteWebhook` (long polling gets nothing while
//! a webhook is set), then `getUpdates` long polls for as long as the channel is configured.
//!
//! Nothing is lost and nothing is stored twice, whenever the daemon dies: an update's message
//! is stored under an id fixed by the update ([`stored_id`]), and the offset that tells
//! Telegram to forget updates is only sent, with the next poll, once every update before it is
//! committed. Updates read again after a restart find their id taken and are skipped.
//!
//! Faults are the channel's own: a refused token (401/404) or a second poller (409) put it in
//! `error` with the fix, the API down or flooded puts it in `failing` while it backs off; the
//! instance keeps serving its other channels all along.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Link;
use crate::app::accept::{self, AcceptError, Incoming};
use crate::app::channels::listen::{Context, Stop};
use crate::app::router::policy::{self, Addressed, Disposition};
use crate::domain::channels::TelegramChannel;
use crate::domain::format::bytes as shown_bytes;
use crate::domain::instance::InstanceName;
use crate::domain::telegram::{
    self, address, pairing_code, pairing_reply, sender_key, stored_id, Address, Attachment, Bot,
    Message, Place, Update, TELEGRAM,
};
use crate::infra::store::{Store, StoreError};
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

/// How often the chats with a turn running are looked up, and how often each is told again
/// that the bot is typing (Telegram shows it for five seconds).
const TYPING_LOOK: Duration = Duration::from_secs(1);
const TYPING_EVERY: Duration = Duration::from_secs(4);

type Shared = Arc<Mutex<Store>>;

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
            Ok(s) if telegram::is_valid_webhook_secret(&s) => Some(s),
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
    let typing = tokio::spawn(keep_typing(store.clone(), link.clone(), instance.clone()));
    if let Some(secret) = hook_secret {
        tracing::info!(instance, bot = %account, "the Telegram channel takes updates by webhook");
        let mut batches = ctx.hub.telegram_hooks.open(&instance, secret);
        loop {
            let batch = tokio::select! {
                _ = stop.wait() => break,
                b = batches.recv() => b,
            };
            let Some((updates, done)) = batch else { break };
            let taken = take_all(&ctx, &store, &link, &bot, &instance, updates).await;
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
                match take_all(&ctx, &store, &link, &bot, &instance, updates).await {
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

/// Stores every update of a batch, in order. An error that may pass (the store busy) stops
/// the batch, so that none after it is confirmed; an update that can never be stored is
/// logged and passed over.
async fn take_all(
    ctx: &Arc<Context>,
    store: &Shared,
    link: &Arc<Link>,
    bot: &Bot,
    instance: &str,
    updates: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    for raw in updates {
        match serde_json::from_value::<Update>(raw) {
            Ok(u) => take(ctx, store, link, bot, instance, u).await?,
            Err(e) => {
                tracing::warn!(instance, error = %e, "a Telegram update this channel cannot read was passed over")
            }
        }
    }
    Ok(())
}

async fn take(
    ctx: &Arc<Context>,
    store: &Shared,
    link: &Arc<Link>,
    bot: &Bot,
    instance: &str,
    u: Update,
) -> anyhow::Result<()> {
    let Some(m) = u.message else { return Ok(()) };
    // Channel posts have no sender; other bots are not people to answer.
    let Some(from) = m.from.clone().filter(|f| !f.is_bot) else {
        return Ok(());
    };
    let id = stored_id(instance, bot.id, u.update_id, m.message_id);
    let sender = sender_key(from.id);
    let Ok(name) = InstanceName::parse(instance) else {
        return Ok(());
    };
    let paths = ctx.home.instance_paths(&name);
    let (known, allowed, owner) = {
        let (store, ctx, id, sender) = (store.clone(), ctx.clone(), id.clone(), sender.clone());
        let paths = paths.clone();
        let instance = instance.to_string();
        blocking(move || {
            let store = store.lock().expect("telegram store");
            if store.has_message(&id)? {
                return Ok((true, false, None));
            }
            let allowed = ctx
                .configs
                .load(&instance, &paths.config)
                .map(|c| policy::allowed(&c.into_config().allow_from, &sender))
                .unwrap_or(false);
            let uid = store.instance(&instance)?.uid;
            let owner = nix::unistd::geteuid().is_root().then_some((uid, uid));
            Ok((false, allowed, owner))
        })
        .await
    }
    .or_else(|e| match e {
        StoreError::NoSuchInstance(_) => Ok((true, false, None)),
        e => Err(e),
    })?;
    if known {
        return Ok(());
    }
    let mut text = m.words().to_string();
    if let Some(a) = m.attachment() {
        let note = if allowed {
            fetch_attachment(link, &paths, owner, u.update_id, &a).await
        } else {
            format!(
                "[{} not downloaded: its sender is not let in]",
                a.shown_name()
            )
        };
        text = if text.trim().is_empty() {
            note
        } else {
            format!("{note}\n{text}")
        };
    }
    if text.trim().is_empty() {
        // A sticker, a poll, a member joining: nothing to answer.
        return Ok(());
    }
    let place = Place::of(&m);
    let addressed = match address(&m, bot) {
        Address::Direct => Addressed::Yes,
        Address::Overheard => Addressed::No,
    };
    let accepted = {
        let (store, ctx, sender) = (store.clone(), ctx.clone(), sender.clone());
        let chat = place.key();
        blocking(move || {
            let mut store = store.lock().expect("telegram store");
            let incoming = Incoming {
                instance: &name,
                channel: TELEGRAM,
                sender: &sender,
                text: &text,
                chat: &chat,
                id: Some(&id),
                addressed,
            };
            Ok(accept::accept(
                &mut store,
                &ctx.home,
                &ctx.configs,
                &incoming,
            ))
        })
        .await?
    };
    let accepted = match accepted {
        Ok(a) => a,
        // Passing: the store busy or full, the config unreadable for now. Read again later.
        Err(e @ (AcceptError::Store(_) | AcceptError::Config(_))) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(instance, update = u.update_id, error = %e, "a Telegram message was not stored");
            return Ok(());
        }
    };
    accept::deliver(ctx.courier.as_ref(), &accepted);
    (ctx.on_message)(instance, TELEGRAM);
    if accepted.disposition == Disposition::Refused && m.is_private() {
        offer_pairing(store, link, instance, &sender, &m, place).await?;
    }
    Ok(())
}

/// Gives an unknown sender in a private chat a pairing code, once an hour at most.
async fn offer_pairing(
    store: &Shared,
    link: &Arc<Link>,
    instance: &str,
    sender: &str,
    m: &Message,
    place: Place,
) -> anyhow::Result<()> {
    let from = m.from.as_ref().expect("a sender");
    let name = match &from.username {
        Some(u) => format!("{} (@{u})", from.first_name),
        None => from.first_name.clone(),
    };
    let code = {
        let (store, instance, sender, name) = (
            store.clone(),
            instance.to_string(),
            sender.to_string(),
            name.clone(),
        );
        blocking(move || {
            store.lock().expect("telegram store").new_pairing(
                &instance,
                TELEGRAM,
                &sender,
                &name,
                || pairing_code(uuid::Uuid::new_v4().as_u128()),
            )
        })
        .await?
    };
    let Some(code) = code else { return Ok(()) };
    tracing::info!(instance, %sender, name = %crate::domain::escape::line(&name), "someone not on the allow-list wrote to the bot; to let them in: supervisor channels pair {instance} {code}");
    if let Err(e) = link
        .api
        .send_message(place, &pairing_reply(instance, &code), None)
        .await
    {
        tracing::warn!(instance, error = %e, "the pairing code could not be sent");
    }
    Ok(())
}

/// Downloads `a` into the workspace's inbox; the note the agent sees about it.
async fn fetch_attachment(
    link: &Arc<Link>,
    paths: &crate::infra::home::InstancePaths,
    owner: Option<(u32, u32)>,
    update_id: i64,
    a: &Attachment,
) -> String {
    let limit = link.config.max_attachment_bytes();
    let what = a.shown_name();
    let too_large = |size: u64| {
        format!(
            "[{what}, {}, not downloaded: larger than the {} limit]",
            shown_bytes(size),
            shown_bytes(limit)
        )
    };
    if let Some(size) = a.size.filter(|&s| s > limit) {
        return too_large(size);
    }
    let file = match link.api.get_file(&a.file_id).await {
        Ok(f) => f,
        Err(BotError::Refused(_, d)) if d.contains("too big") => {
            return too_large(a.size.unwrap_or(limit + 1))
        }
        Err(e) => return format!("[{what} could not be downloaded: {e}]"),
    };
    if let Some(size) = file.file_size.filter(|&s| s > limit) {
        return too_large(size);
    }
    let Some(path) = file.file_path else {
        return format!("[{what} could not be downloaded: the Bot API gave no file path]");
    };
    let bytes = match link.api.download(&path, limit).await {
        Ok(b) => b,
        Err(BotError::Refused(413, _)) => return too_large(limit + 1),
        Err(e) => return format!("[{what} could not be downloaded: {e}]"),
    };
    let name = a.inbox_name(update_id, Some(&path));
    let size = bytes.len() as u64;
    let paths = paths.clone();
    match tokio::task::spawn_blocking(move || {
        crate::infra::inbox::save(&paths, owner, &name, &bytes)
    })
    .await
    {
        Ok(Ok(shown)) => format!(
            "[{what}, {}, saved as /workspace/{shown}]",
            shown_bytes(size)
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "an attachment could not be saved in the workspace");
            format!("[{what} could not be saved in the workspace's inbox/]")
        }
        Err(e) => format!("[{what} could not be saved: {e}]"),
    }
}

/// Keeps "typing…" up in every chat of the bot with a turn running.
async fn keep_typing(store: Shared, link: Arc<Link>, instance: String) {
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

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and this task with it.
        Err(_) => std::future::pending().await,
    }
}
