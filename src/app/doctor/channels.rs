//! The `channels` rows: whether each instance's channels can work. The daemon reads the
//! Telegram token and the webhook secret from its own environment, which doctor may not
//! share: with a daemon running, its recorded word is judged; with none, what doctor itself
//! can see (its environment, and the Bot API asked with the token found there). A token or
//! secret is never put in a row: variables are named, and the Bot API's errors carry no URL.

use crate::app::channels::health::Health;
use crate::domain::channels::WebhookChannel;

use super::Check;

pub const CHANNELS: &str = "channels";

/// Where the fix for a token or a secret is described.
const DOCS: &str = "docs/channels.md";

/// What doctor found out about a Telegram channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelegramFact {
    /// A daemon runs: the channel as it recorded it.
    Daemon(Health),
    /// No daemon runs, and doctor asked the Bot API with the token in its own environment:
    /// the bot's username, or what went wrong.
    Asked(Result<String, AskError>),
    /// No daemon runs, and the variable is not set in doctor's environment.
    NoToken,
}

/// Why getMe did not name the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskError {
    pub message: String,
    /// The Bot API could not be reached or was unwell (the daemon would retry), rather than
    /// refusing the token or the request.
    pub transient: bool,
}

/// What doctor found out about a webhook channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookFact {
    /// A daemon runs (its environment is out of sight): the channel as the outbox shows it.
    Daemon(Health),
    /// No daemon runs: whether doctor's environment sets the secret, and the outbox.
    NoDaemon { secret_set: bool, health: Health },
}

pub fn telegram(instance: &str, token_env: &str, fact: &TelegramFact) -> Check {
    let set_it = format!(
        "set {token_env} to the bot's token (from @BotFather) in the daemon's environment, \
         then restart the daemon ({DOCS})"
    );
    match fact {
        TelegramFact::Daemon(h) => {
            let problem = h.problem().unwrap_or("no detail recorded");
            match h.state.as_str() {
                "ok" => Check::ok(
                    CHANNELS,
                    format!(
                        "{instance}: telegram works, as {}",
                        h.account.as_deref().unwrap_or("its bot")
                    ),
                ),
                // The recorded detail already says what to do.
                "error" => Check::fail(
                    CHANNELS,
                    format!("{instance}: telegram: {problem}"),
                    "see the message; `supervisor channels` shows the channel",
                ),
                "failing" => Check::warn(
                    CHANNELS,
                    format!("{instance}: telegram is failing (it retries on its own): {problem}"),
                    "see the message; `supervisor channels` shows the channel",
                ),
                "starting" => Check::warn(
                    CHANNELS,
                    format!("{instance}: telegram is starting: it has not reached the Bot API yet"),
                    "run `supervisor doctor` again in a moment",
                ),
                _ => Check::warn(
                    CHANNELS,
                    format!("{instance}: telegram: the running daemon has not reported on it yet"),
                    "restart the daemon if this lasts; its log says why the channel did not start",
                ),
            }
        }
        TelegramFact::Asked(Ok(username)) => Check::ok(
            CHANNELS,
            format!(
                "{instance}: telegram: the token in {token_env} is @{username}'s (no daemon \
                 runs; it must have {token_env} in its environment too)"
            ),
        ),
        TelegramFact::Asked(Err(e)) if e.transient => Check::warn(
            CHANNELS,
            format!(
                "{instance}: telegram: could not ask the Bot API who the token in {token_env} \
                 is: {}",
                e.message
            ),
            "check that this host reaches the channel's api_base (a proxy, a firewall); \
             the daemon retries on its own",
        ),
        TelegramFact::Asked(Err(e)) => Check::fail(
            CHANNELS,
            format!(
                "{instance}: telegram: with the token in {token_env}, {}",
                e.message
            ),
            format!(
                "check the token in {token_env} (@BotFather, /mybots, API Token) and the \
                 channel's api_base ({DOCS})"
            ),
        ),
        TelegramFact::NoToken => Check::warn(
            CHANNELS,
            format!(
                "{instance}: telegram: {token_env} is not set here; the daemon reads the bot's \
                 token from it, in its own environment"
            ),
            set_it,
        ),
    }
}

pub fn webhook(instance: &str, config: &WebhookChannel, fact: &WebhookFact) -> Check {
    let var = &config.secret_env;
    let where_to = match &config.url {
        Some(url) => format!("answers go to {}", crate::domain::escape::line(url)),
        None => "receive-only (no url: answers are only stored)".to_string(),
    };
    let (health, daemon) = match fact {
        WebhookFact::NoDaemon {
            secret_set: false, ..
        } => {
            return Check::warn(
                CHANNELS,
                format!(
                    "{instance}: webhook: {var} is not set here; the daemon reads the signing \
                     secret from it, in its own environment, and refuses every message without it"
                ),
                format!("set {var} in the daemon's environment, then restart the daemon ({DOCS})"),
            )
        }
        WebhookFact::NoDaemon { health, .. } => (health, false),
        WebhookFact::Daemon(health) => (health, true),
    };
    match &health.backlog.last_error {
        Some(e) => Check::warn(
            CHANNELS,
            format!(
                "{instance}: webhook: {} answer{} waiting, the last try failed: {}{}",
                health.backlog.pending,
                if health.backlog.pending == 1 { "" } else { "s" },
                crate::domain::escape::line(e),
                if daemon {
                    format!(
                        " (the daemon reads {var} from its own environment, which doctor cannot see)"
                    )
                } else {
                    String::new()
                }
            ),
            "make the receiver at url answer 2xx; the outbox retries on its own (`supervisor channels`)",
        ),
        None => Check::ok(CHANNELS, format!("{instance}: webhook: {where_to}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Status;
    use crate::infra::store::deliveries::Backlog;

    fn health(channel: &'static str, state: &str, detail: Option<&str>) -> Health {
        Health {
            channel,
            state: state.into(),
            detail: detail.map(str::to_string),
            account: Some("@alice_bot".into()),
            secret_env: "VAR".into(),
            url: None,
            backlog: Backlog::default(),
        }
    }

    #[test]
    fn with_a_daemon_its_record_is_judged() {
        let c = telegram(
            "alice",
            "TG",
            &TelegramFact::Daemon(health("telegram", "ok", None)),
        );
        assert_eq!(c.status, Status::Ok);
        assert!(c.message.contains("@alice_bot"), "{}", c.message);
        let refused = "the Bot API refused the token (HTTP 401): Unauthorized: get it again";
        let c = telegram(
            "alice",
            "TG",
            &TelegramFact::Daemon(health("telegram", "error", Some(refused))),
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains(refused), "{}", c.message);
        let c = telegram(
            "alice",
            "TG",
            &TelegramFact::Daemon(health("telegram", "failing", Some("HTTP 502"))),
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("HTTP 502"), "{}", c.message);
        for state in ["starting", "not running"] {
            let c = telegram(
                "alice",
                "TG",
                &TelegramFact::Daemon(health("telegram", state, None)),
            );
            assert_eq!(c.status, Status::Warn, "{state}");
        }
    }

    #[test]
    fn without_a_daemon_the_token_here_is_tried_or_its_variable_named() {
        let c = telegram("alice", "TG", &TelegramFact::Asked(Ok("test_bot".into())));
        assert_eq!(c.status, Status::Ok);
        assert!(c.message.contains("@test_bot"), "{}", c.message);
        let asked = |message: &str, transient| {
            TelegramFact::Asked(Err(AskError {
                message: message.into(),
                transient,
            }))
        };
        let c = telegram(
            "alice",
            "TG",
            &asked("the Bot API refused the token (HTTP 401)", false),
        );
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("401") && c.message.contains("TG"));
        let c = telegram(
            "alice",
            "TG",
            &asked("the Bot API is unavailable: HTTP 502", true),
        );
        assert_eq!(c.status, Status::Warn, "the daemon would retry");
        assert!(c.message.contains("HTTP 502"), "{}", c.message);
        let c = telegram("alice", "TG", &TelegramFact::NoToken);
        assert_eq!(c.status, Status::Warn);
        let fix = c.fix.unwrap();
        assert!(
            fix.contains("TG") && fix.contains("docs/channels.md"),
            "{fix}"
        );
    }

    #[test]
    fn a_webhook_warns_on_a_missing_secret_here_or_a_failing_outbox() {
        let config = WebhookChannel {
            secret_env: "HOOK".into(),
            url: Some("http://127.0.0.1:9/out".into()),
        };
        let clear = health("webhook", "ok", None);
        let c = webhook(
            "alice",
            &config,
            &WebhookFact::NoDaemon {
                secret_set: false,
                health: clear.clone(),
            },
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.message.contains("HOOK") && c.fix.unwrap().contains("HOOK"));
        let c = webhook(
            "alice",
            &config,
            &WebhookFact::NoDaemon {
                secret_set: true,
                health: clear.clone(),
            },
        );
        assert_eq!(c.status, Status::Ok, "{}", c.message);
        // With a daemon its environment is out of sight: only a fault is worth a word.
        let c = webhook("alice", &config, &WebhookFact::Daemon(clear.clone()));
        assert_eq!(c.status, Status::Ok);
        assert!(!c.message.contains("environment"), "{}", c.message);
        let mut failing = clear;
        failing.backlog = Backlog {
            pending: 2,
            last_sent_at: None,
            last_error: Some("HTTP 503".into()),
        };
        let c = webhook("alice", &config, &WebhookFact::Daemon(failing));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.message.contains("2 answers waiting") && c.message.contains("HTTP 503"),
            "{}",
            c.message
        );
        assert!(c.message.contains("HOOK"), "{}", c.message);
    }
}
