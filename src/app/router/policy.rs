//! Routing policy. Pure and unit-tested.

use regex::Regex;
use supervisor_agent::protocol::{HistoryItem, Role};

use crate::domain::instance::InstanceConfig;
use crate::infra::store::messages::{ExtraLimit, MessageRow};

/// What happens to an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Starts (or joins) the next turn.
    Queued,
    /// Allowed but did not match the trigger: context for the next triggered turn.
    Context,
    /// The sender is not on the allow-list: stored, never delivered.
    Refused,
}

impl Disposition {
    pub fn state(self) -> &'static str {
        match self {
            Disposition::Queued => "queued",
            Disposition::Context => "context",
            Disposition::Refused => "refused",
        }
    }
}

/// Whether `sender` may reach an instance with this allow-list. `"*"` is everyone,
/// `"local"` the operator; anything else must match exactly. An empty list (refused by
/// config validation) would let nobody in.
pub fn allowed(allow_from: &[String], sender: &str) -> bool {
    allow_from.iter().any(|a| a == "*" || a == sender)
}

/// Whom a message was said to, as its channel tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressed {
    /// The channel cannot tell (the CLI, the API, a webhook): the trigger decides, and
    /// without one every message starts a turn.
    ByTrigger,
    /// Said to the instance (a private chat, a mention of its bot, a reply to it): it starts
    /// a turn whatever the trigger.
    Yes,
    /// Said near it, in a group: the trigger decides, and without one it is context.
    No,
}

pub fn classify(
    config: &InstanceConfig,
    sender: &str,
    body: &str,
    addressed: Addressed,
) -> Disposition {
    if !allowed(&config.allow_from, sender) {
        return Disposition::Refused;
    }
    // The pattern was validated when the config was loaded.
    let triggered = config
        .trigger
        .as_deref()
        .map(|pattern| Regex::new(pattern).map_or(true, |re| re.is_match(body)));
    match (addressed, triggered) {
        (Addressed::Yes, _) | (_, Some(true)) | (Addressed::ByTrigger, None) => Disposition::Queued,
        _ => Disposition::Context,
    }
}

/// Most message text one turn carries; the rest waits for the next turn. Keeps every turn
/// envelope well under the protocol's size limit.
pub const TURN_BUDGET_BYTES: usize = 256 * 1024;

/// Most extra messages (`send_message`) one turn stores: enough to keep a person posted during
/// long work, too few for an agent to fill the database in one turn.
pub const MAX_EXTRA_MESSAGES_PER_TURN: u64 = 20;

/// Most text, in bytes, one turn's extra messages store in all (each is also at most an
/// envelope, 1 MiB).
pub const MAX_EXTRA_BYTES_PER_TURN: u64 = 256 * 1024;

/// The limit on a turn's extra messages; beyond it they are not stored and the turn goes on.
pub const EXTRA_LIMIT: ExtraLimit = ExtraLimit {
    messages: MAX_EXTRA_MESSAGES_PER_TURN,
    bytes: MAX_EXTRA_BYTES_PER_TURN,
};

/// The channel of the messages that scheduled tasks queue.
pub const TASK_CHANNEL: &str = "task";

/// The next turn from the waiting messages, oldest first.
///
/// A task run is a turn of its own (it may start without the chat history, and the agent is
/// told nobody is waiting), so chat messages and task runs never share a turn; whichever
/// kind was queued first goes first. Chat messages are batched once at least one triggers:
/// everything waiting, so messages that arrived during the previous turn are delivered
/// together, up to [`TURN_BUDGET_BYTES`] (always at least one message).
///
/// A turn belongs to one conversation ([`MessageRow::chat`]): only the messages of the first
/// triggered message's chat join it; two chats' messages never share a turn, and the other
/// chats' wait for turns of their own.
pub fn next_turn(waiting: &[MessageRow]) -> Option<Vec<String>> {
    let is_task = |m: &&MessageRow| m.channel == TASK_CHANNEL;
    let first_task = waiting.iter().find(is_task);
    let first_trigger = waiting.iter().find(|m| !is_task(m) && m.state == "queued");
    let chat: Vec<&MessageRow> = waiting
        .iter()
        .filter(|m| !is_task(m) && first_trigger.is_some_and(|t| t.chat == m.chat))
        .collect();
    match (first_trigger, first_task) {
        (Some(c), Some(t)) if (t.created_at, &t.id) < (c.created_at, &c.id) => {
            Some(vec![t.id.clone()])
        }
        (None, Some(t)) => Some(vec![t.id.clone()]),
        (None, None) => None,
        (Some(_), _) => {
            let mut used = 0;
            let mut ids = Vec::new();
            for m in chat {
                used += m.body.len();
                if used > TURN_BUDGET_BYTES && !ids.is_empty() {
                    break;
                }
                ids.push(m.id.clone());
            }
            Some(ids)
        }
    }
}

/// How many agent runs may take up a turn without answering it before the host sets the turn
/// aside ("parks" it) with a failure answer, so that a message that always kills the agent
/// cannot hold its instance up forever.
pub const MAX_TURN_ATTEMPTS: u32 = 3;

/// Whether a turn that `attempts` agent runs took up, none of which answered (each stopped
/// first), is parked instead of being taken up once more.
pub fn should_park(attempts: u32) -> bool {
    attempts >= MAX_TURN_ATTEMPTS
}

/// The answer a turn gets when it fails: the apology, then why.
pub fn apology(error: &str) -> String {
    format!("Sorry, I could not answer this time: {error}")
}

/// The error recorded for a parked turn; its answer is the [`apology`] for it, like any
/// failed turn.
pub fn parked_error(attempts: u32) -> String {
    format!(
        "this message was set aside after {attempts} attempts that did not finish \
         (the agent stopped each time)"
    )
}

/// Who wrote `m`, as the agent sees it: the sender key, and the name they gave where the
/// channel tells one, quoted (anyone may call themself anything): `telegram:7 "Ann (@ann)"`.
pub fn shown_sender(m: &MessageRow) -> String {
    match &m.sender_name {
        Some(name) => format!("{} {name:?}", m.sender),
        None => m.sender.clone(),
    }
}

/// Most characters of history a turn carries; the agent's long-term memory is its workspace.
pub const HISTORY_BUDGET_CHARS: usize = 16_000;

/// Conversation history for a turn: the newest delivered and answered exchanges that fit the
/// budget, oldest first. Refused messages, those still waiting, and task runs kept out of the
/// conversation (isolated or silent) are never history.
pub fn history(rows: &[MessageRow], budget_chars: usize) -> Vec<HistoryItem> {
    let mut used = 0;
    let mut items = Vec::new();
    for m in rows.iter().rev().filter(|m| m.scope == "conversation") {
        let (role, content) = match (m.direction.as_str(), m.state.as_str()) {
            ("in", "answered") => (Role::User, format!("[{}] {}", shown_sender(m), m.body)),
            ("out", "final") | ("out", "extra") => (Role::Assistant, m.body.clone()),
            _ => continue,
        };
        used += content.len();
        if used > budget_chars {
            break;
        }
        items.push(HistoryItem { role, content });
    }
    items.reverse();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(trigger: Option<&str>, allow: &[&str]) -> InstanceConfig {
        InstanceConfig {
            trigger: trigger.map(str::to_string),
            allow_from: allow.iter().map(|s| s.to_string()).collect(),
            ..InstanceConfig::default()
        }
    }

    fn row(id: &str, direction: &str, state: &str, body: &str) -> MessageRow {
        MessageRow {
            id: id.into(),
            instance: "alice".into(),
            direction: direction.into(),
            channel: "cli".into(),
            sender: "local".into(),
            body: body.into(),
            state: state.into(),
            reply_to: None,
            turn_id: None,
            error: None,
            created_at: 0,
            updated_at: 0,
            triggered: state == "queued",
            scope: "conversation".into(),
            chat: String::new(),
            sender_name: None,
        }
    }

    #[test]
    fn a_senders_name_stands_quoted_beside_their_key() {
        let mut m = row("m1", "in", "answered", "hi");
        assert_eq!(shown_sender(&m), "local");
        m.sender = "telegram:7".into();
        m.sender_name = Some("Ann \"the boss\" (@ann)".into());
        assert_eq!(shown_sender(&m), r#"telegram:7 "Ann \"the boss\" (@ann)""#);
        let h = history(&[m], HISTORY_BUDGET_CHARS);
        assert_eq!(h[0].content, r#"[telegram:7 "Ann \"the boss\" (@ann)"] hi"#);
    }

    #[test]
    fn allow_list_is_explicit() {
        assert!(allowed(&["local".into()], "local"));
        assert!(!allowed(&["local".into()], "telegram:1"));
        assert!(allowed(&["*".into()], "telegram:1"));
        assert!(allowed(&["telegram:1".into()], "telegram:1"));
        assert!(!allowed(&[], "local"), "empty means nobody, never everyone");
    }

    #[test]
    fn trigger_decides_between_turn_and_context() {
        use Addressed::*;
        let c = config(Some(r"(?i)^@alice\b"), &["*"]);
        assert_eq!(
            classify(&c, "x:1", "@alice what's up", ByTrigger),
            Disposition::Queued
        );
        assert_eq!(
            classify(&c, "x:1", "just chatting", ByTrigger),
            Disposition::Context
        );
        let c = config(None, &["local"]);
        assert_eq!(
            classify(&c, "local", "anything", ByTrigger),
            Disposition::Queued
        );
        assert_eq!(
            classify(&c, "telegram:9", "anything", Yes),
            Disposition::Refused
        );
    }

    #[test]
    fn said_to_the_instance_starts_a_turn_said_near_it_is_context_unless_triggered() {
        use Addressed::*;
        let open = config(None, &["*"]);
        assert_eq!(
            classify(&open, "telegram:1", "hi", Yes),
            Disposition::Queued
        );
        assert_eq!(
            classify(&open, "telegram:1", "hi", No),
            Disposition::Context
        );
        let triggered = config(Some(r"(?i)\bdeploy\b"), &["*"]);
        assert_eq!(
            classify(&triggered, "telegram:1", "hi", Yes),
            Disposition::Queued
        );
        assert_eq!(
            classify(&triggered, "telegram:1", "please deploy", No),
            Disposition::Queued
        );
        assert_eq!(
            classify(&triggered, "telegram:1", "hi", No),
            Disposition::Context
        );
    }

    #[test]
    fn a_turn_takes_everything_waiting_once_something_triggers() {
        assert_eq!(next_turn(&[row("a", "in", "context", "x")]), None);
        let waiting = [
            row("a", "in", "context", "x"),
            row("b", "in", "queued", "y"),
            row("c", "in", "context", "z"),
        ];
        assert_eq!(next_turn(&waiting).unwrap(), ["a", "b", "c"]);
        assert_eq!(next_turn(&[]), None);
        let big = "x".repeat(TURN_BUDGET_BYTES / 2 + 1);
        let waiting = [
            row("a", "in", "queued", &big),
            row("b", "in", "queued", &big),
            row("c", "in", "queued", "z"),
        ];
        assert_eq!(
            next_turn(&waiting).unwrap(),
            ["a"],
            "the rest waits for the next turn"
        );
    }

    #[test]
    fn two_chats_never_share_a_turn() {
        let in_chat = |id: &str, chat: &str, state: &str| MessageRow {
            chat: chat.into(),
            ..row(id, "in", state, "hi")
        };
        let waiting = [
            in_chat("a", "webhook:x", "context"),
            in_chat("b", "webhook:y", "queued"),
            in_chat("c", "webhook:x", "queued"),
            in_chat("d", "webhook:y", "context"),
            in_chat("e", "", "queued"),
        ];
        assert_eq!(next_turn(&waiting).unwrap(), ["b", "d"]);
        assert_eq!(
            next_turn(&waiting[..1]),
            None,
            "context alone starts nothing"
        );
        assert_eq!(
            next_turn(&[waiting[0].clone(), waiting[2].clone()]).unwrap(),
            ["a", "c"]
        );
        assert_eq!(next_turn(&waiting[4..]).unwrap(), ["e"]);
    }

    fn task_row(id: &str, at: i64, scope: &str) -> MessageRow {
        MessageRow {
            channel: TASK_CHANNEL.into(),
            sender: "task:1".into(),
            created_at: at,
            scope: scope.into(),
            ..row(id, "in", "queued", "run the report")
        }
    }

    #[test]
    fn a_task_run_is_a_turn_of_its_own_in_arrival_order() {
        let chat = |id: &str, at: i64, state: &str| MessageRow {
            created_at: at,
            ..row(id, "in", state, "hi")
        };
        // Chat first: the chat batch goes, the task waits.
        let waiting = [
            chat("a", 1, "queued"),
            task_row("t", 2, "isolated"),
            chat("b", 3, "queued"),
        ];
        assert_eq!(next_turn(&waiting).unwrap(), ["a", "b"]);
        // Task first: it goes alone.
        let waiting = [task_row("t", 1, "isolated"), chat("a", 2, "queued")];
        assert_eq!(next_turn(&waiting).unwrap(), ["t"]);
        // Only untriggered chat: the task still runs, and the chat stays as context.
        let waiting = [chat("c", 1, "context"), task_row("t", 2, "isolated")];
        assert_eq!(next_turn(&waiting).unwrap(), ["t"]);
    }

    #[test]
    fn a_turn_is_parked_after_three_unfinished_attempts() {
        assert!(!should_park(0));
        assert!(!should_park(1));
        assert!(!should_park(MAX_TURN_ATTEMPTS - 1));
        assert!(should_park(MAX_TURN_ATTEMPTS));
        assert!(should_park(MAX_TURN_ATTEMPTS + 5), "late counts still park");
        assert_eq!(MAX_TURN_ATTEMPTS, 3);
        assert_eq!(
            parked_error(3),
            "this message was set aside after 3 attempts that did not finish \
             (the agent stopped each time)"
        );
    }

    #[test]
    fn isolated_and_silent_runs_stay_out_of_history() {
        let answered = |id: &str, scope: &str| MessageRow {
            scope: scope.into(),
            ..row(id, "in", "answered", id)
        };
        let rows = [
            answered("chat", "conversation"),
            answered("iso", "isolated"),
            answered("quiet", "silent"),
            answered("cont", "conversation"),
        ];
        let h: Vec<String> = history(&rows, 1_000)
            .into_iter()
            .map(|i| i.content)
            .collect();
        assert_eq!(h, ["[local] chat", "[local] cont"]);
    }

    #[test]
    fn history_keeps_the_newest_exchanges_within_budget() {
        let rows = [
            row("1", "in", "answered", &"old ".repeat(10)),
            row("2", "out", "final", "old answer"),
            row("3", "in", "refused", "never"),
            row("4", "in", "answered", "new"),
            row("5", "out", "final", "new answer"),
            row("6", "in", "queued", "not yet"),
        ];
        let h = history(&rows, 1_000);
        let contents: Vec<&str> = h.iter().map(|i| i.content.as_str()).collect();
        assert_eq!(contents.len(), 4);
        assert_eq!(contents[2], "[local] new");
        assert_eq!(h[3].role, Role::Assistant);
        let short = history(&rows, 30);
        assert_eq!(short.len(), 2, "only the newest exchange fits");
    }
}
