//! How each channel of an instance stands: the connection's state as its daemon task last
//! recorded it (`channel_status`) weighed with the outbox (`backlog`). One judgement, so that
//! `channels`, `status` and `doctor` never tell the operator two different things.

use crate::domain::channels::{Channels, WEBHOOK};
use crate::domain::telegram::TELEGRAM;
use crate::infra::store::channels::ChannelStatus;
use crate::infra::store::deliveries::Backlog;
use crate::infra::store::{Store, StoreError};

/// No daemon has run the channel (or none runs it now).
pub const NOT_RUNNING: &str = "not running";

/// One channel of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub channel: &'static str,
    /// `ok`, `starting`, `failing` (retrying on its own), `error` (needs the operator),
    /// `receive-only` (a webhook without url), or `not running`.
    pub state: String,
    /// What is wrong, and the fix.
    pub detail: Option<String>,
    /// The account it speaks as (a bot's `@username`).
    pub account: Option<String>,
    /// The environment variable the daemon reads its secret (or token) from.
    pub secret_env: String,
    pub url: Option<String>,
    pub backlog: Backlog,
}

impl Health {
    /// Whether the channel is in trouble: answers not going out, or a fault to fix.
    pub fn is_fault(&self) -> bool {
        is_fault(&self.state)
    }

    /// What is wrong in one text: the recorded detail, else the outbox's last failure.
    pub fn problem(&self) -> Option<&str> {
        self.detail
            .as_deref()
            .or(self.backlog.last_error.as_deref())
    }

    /// As it stands while no daemon runs: nothing receives or sends, whatever the daemon
    /// recorded before it stopped (the outbox's last failure still says what went wrong).
    pub fn without_daemon(mut self) -> Self {
        self.state = NOT_RUNNING.to_string();
        self.detail = None;
        self
    }
}

/// Whether `state` is one that needs attention (answers not going out, or a fault to fix).
pub fn is_fault(state: &str) -> bool {
    matches!(state, "failing" | "error")
}

/// A Telegram channel's (state, detail, account), from what its poller recorded: an `ok`
/// connection whose answers fail to go out is `failing` all the same.
pub fn telegram(
    status: Option<ChannelStatus>,
    backlog: &Backlog,
) -> (String, Option<String>, Option<String>) {
    match status {
        Some(s) if s.state == "ok" && backlog.last_error.is_some() => {
            ("failing".to_string(), s.detail, s.account)
        }
        Some(s) => (s.state, s.detail, s.account),
        None => (
            NOT_RUNNING.to_string(),
            Some("no daemon has run this channel yet: supervisor run".into()),
            None,
        ),
    }
}

/// A webhook channel's state: it holds no connection, so only its outbox can show a fault.
pub fn webhook(url: Option<&str>, backlog: &Backlog) -> &'static str {
    match (url, &backlog.last_error) {
        (None, _) => "receive-only",
        (Some(_), Some(_)) => "failing",
        (Some(_), None) => "ok",
    }
}

/// Every channel `channels` configures for `instance`, as it stands.
pub fn of_instance(
    store: &Store,
    instance: &str,
    channels: &Channels,
) -> Result<Vec<Health>, StoreError> {
    let mut out = Vec::new();
    if let Some(t) = &channels.telegram {
        let backlog = store.backlog(instance, TELEGRAM)?;
        let (state, detail, account) =
            telegram(store.channel_status(instance, TELEGRAM)?, &backlog);
        out.push(Health {
            channel: TELEGRAM,
            state,
            detail,
            account,
            secret_env: t.token_env.clone(),
            url: Some(t.api_base().to_string()),
            backlog,
        });
    }
    if let Some(w) = &channels.webhook {
        let backlog = store.backlog(instance, WEBHOOK)?;
        out.push(Health {
            channel: WEBHOOK,
            state: webhook(w.url.as_deref(), &backlog).to_string(),
            detail: None,
            account: None,
            secret_env: w.secret_env.clone(),
            url: w.url.clone(),
            backlog,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(state: &str, detail: Option<&str>) -> ChannelStatus {
        ChannelStatus {
            state: state.into(),
            detail: detail.map(str::to_string),
            account: Some("@bot".into()),
            updated_at: 0,
        }
    }

    fn backlog(pending: u64, error: Option<&str>) -> Backlog {
        Backlog {
            pending,
            last_sent_at: None,
            last_error: error.map(str::to_string),
        }
    }

    #[test]
    fn telegram_is_what_the_poller_recorded_unless_answers_fail() {
        let clear = backlog(0, None);
        assert_eq!(
            telegram(Some(recorded("ok", None)), &clear),
            ("ok".into(), None, Some("@bot".into()))
        );
        let (state, _, account) = telegram(Some(recorded("ok", None)), &backlog(2, Some("429")));
        assert_eq!(
            (state.as_str(), account.as_deref()),
            ("failing", Some("@bot"))
        );
        let (state, detail, _) = telegram(Some(recorded("error", Some("refused"))), &clear);
        assert_eq!(
            (state.as_str(), detail.as_deref()),
            ("error", Some("refused"))
        );
        let (state, detail, account) = telegram(None, &clear);
        assert_eq!((state.as_str(), account), (NOT_RUNNING, None));
        assert!(detail.unwrap().contains("supervisor run"));
    }

    #[test]
    fn a_webhook_fails_only_by_its_outbox() {
        assert_eq!(webhook(None, &backlog(0, Some("x"))), "receive-only");
        assert_eq!(webhook(Some("http://x"), &backlog(1, None)), "ok");
        assert_eq!(
            webhook(Some("http://x"), &backlog(1, Some("503"))),
            "failing"
        );
        assert!(is_fault("failing") && is_fault("error"));
        assert!(!is_fault("ok") && !is_fault(NOT_RUNNING) && !is_fault("starting"));
    }
}
