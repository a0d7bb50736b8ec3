//! From an update to a stored message: who sent it and whom it is for, its attachment, the
//! one accept path, and a pairing code for a stranger in a private chat. An update is stored
//! under an id fixed by the update, so reading it again (after a restart, or Telegram sending
//! a webhook update again) finds it stored and passes it over.

use std::sync::Arc;

use super::{blocking, Link, Shared};
use crate::app::accept::{self, AcceptError, Incoming};
use crate::app::channels::Context;
use crate::app::router::policy::{Addressed, Disposition};
use crate::domain::instance::InstanceName;
use crate::domain::telegram::{
    address, pairing_code, pairing_reply, sender_key, stored_id, Address, Bot, Message, Place,
    Update, TELEGRAM,
};
use crate::infra::store::StoreError;

/// Stores every update of a batch, in order. An error that may pass (the store busy) stops
/// the batch, so that none after it is confirmed; an update that can never be stored is
/// logged and passed over.
pub async fn take_all(
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
    let attachment = m.attachment();
    let place = Place::of(&m);
    let chat = place.key();
    let sender_name = from.shown_name();
    let title = m.chat.title.clone();
    let addressed = match address(&m, bot) {
        Address::Direct => Addressed::Yes,
        Address::Overheard => Addressed::No,
    };
    // Stored already: passed over (its attachment is not fetched again). Only a message with
    // an attachment needs to know before accept (which judges it too) whether its sender is
    // let in, and whose workspace it goes to (a chat group's, with "isolation": "chat").
    let known = {
        let (store, ctx, id, sender) = (store.clone(), ctx.clone(), id.clone(), sender.clone());
        let (name, words, chat, title) = (
            name.clone(),
            m.words().to_string(),
            chat.clone(),
            title.clone(),
        );
        let with_file = attachment.is_some();
        blocking(move || {
            let mut store = store.lock().expect("telegram store");
            if store.has_message(&id)? {
                return Ok(None);
            }
            if !with_file {
                return Ok(Some((false, None, ctx.home.instance_paths(&name))));
            }
            let probe = Incoming {
                instance: &name,
                channel: TELEGRAM,
                sender: &sender,
                text: if words.trim().is_empty() {
                    "(a file)"
                } else {
                    &words
                },
                chat: &chat,
                id: None,
                addressed,
                sender_name: None,
                title: title.as_deref(),
            };
            let Ok(dest) = accept::destination(&mut store, &ctx.home, &ctx.configs, &probe) else {
                return Ok(Some((false, None, ctx.home.instance_paths(&name))));
            };
            let allowed = dest.disposition != Disposition::Refused;
            let uid = dest.record.uid;
            let owner = nix::unistd::geteuid().is_root().then_some((uid, uid));
            let target = InstanceName::parse(&dest.record.name).unwrap_or(name);
            Ok(Some((allowed, owner, ctx.home.instance_paths(&target))))
        })
        .await
    }
    .or_else(|e| match e {
        StoreError::NoSuchInstance(_) => Ok(None),
        e => Err(e),
    })?;
    let Some((allowed, owner, paths)) = known else {
        return Ok(());
    };
    let mut text = m.words().to_string();
    if let Some(a) = attachment {
        let note = if allowed {
            super::attachments::fetch(link, &paths, owner, u.update_id, &a).await
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
    let accepted = {
        let (store, ctx, sender, sender_name) = (
            store.clone(),
            ctx.clone(),
            sender.clone(),
            sender_name.clone(),
        );
        let chat = chat.clone();
        let title = title.clone();
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
                sender_name: Some(&sender_name),
                title: title.as_deref(),
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
        // Passing: the store busy or full, the config unreadable for now, a group that could not
        // be made yet. Read again later.
        Err(e @ (AcceptError::Store(_) | AcceptError::Config(_) | AcceptError::Group { .. })) => {
            return Err(e.into())
        }
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
    let name = m.from.as_ref().map(|f| f.shown_name()).unwrap_or_default();
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
    tracing::info!(instance, %sender, %name, "someone not on the allow-list wrote to the bot; to let them in: supervisor channels pair {instance} {code}");
    if let Err(e) = link
        .api
        .send_message(place, &pairing_reply(instance, &code), None)
        .await
    {
        tracing::warn!(instance, error = %e, "the pairing code could not be sent");
    }
    Ok(())
}
