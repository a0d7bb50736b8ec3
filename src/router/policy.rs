//! Routing policy. Pure and unit-tested.

use regex::Regex;
use supervisor_agent::protocol::{HistoryItem, Role};

use crate::instance::InstanceConfig;
use crate::store::messages::MessageRow;

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

pub fn classify(config: &InstanceConfig, sender: &str, body: &str) -> Disposition {
    if !allowed(&config.allow_from, sender) {
        return Disposition::Refused;
    }
    match &config.trigger {
        // The pattern was validated when the config was loaded.
        Some(pattern) => match Regex::new(pattern) {
            Ok(re) if re.is_match(body) => Disposition::Queued,
            Ok(_) => Disposition::Context,
            Err(_) => Disposition::Queued,
        },
        None => Disposition::Queued,
    }
}

/// Most message text one turn carries; the rest waits for the next turn. Keeps every turn
/// envelope well under the protocol's size limit.
pub const TURN_BUDGET_BYTES: usize = 256 * 1024;

/// The next turn from the waiting messages, oldest first, once at least one triggers:
/// everything waiting, so messages that arrived during the previous turn are delivered
/// together, up to [`TURN_BUDGET_BYTES`] (always at least one message).
pub fn next_turn(waiting: &[MessageRow]) -> Option<Vec<String>> {
    if !waiting.iter().any(|m| m.state == "queued") {
        return None;
    }
    let mut used = 0;
    let mut ids = Vec::new();
    for m in waiting {
        used += m.body.len();
        if used > TURN_BUDGET_BYTES && !ids.is_empty() {
            break;
        }
        ids.push(m.id.clone());
    }
    Some(ids)
}

/// Most characters of history a turn carries; the agent's long-term memory is its workspace.
pub const HISTORY_BUDGET_CHARS: usize = 16_000;

/// Conversation history for a turn: the newest delivered and answered exchanges that fit the
/// budget, oldest first. Refused messages and those still waiting are never history.
pub fn history(rows: &[MessageRow], budget_chars: usize) -> Vec<HistoryItem> {
    let mut used = 0;
    let mut items = Vec::new();
    for m in rows.iter().rev() {
        let (role, content) = match (m.direction.as_str(), m.state.as_str()) {
            ("in", "answered") => (Role::User, format!("[{}] {}", m.sender, m.body)),
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
        }
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
        let c = config(Some(r"(?i)^@alice\b"), &["*"]);
        assert_eq!(classify(&c, "x:1", "@alice what's up"), Disposition::Queued);
        assert_eq!(classify(&c, "x:1", "just chatting"), Disposition::Context);
        let c = config(None, &["local"]);
        assert_eq!(classify(&c, "local", "anything"), Disposition::Queued);
        assert_eq!(classify(&c, "telegram:9", "anything"), Disposition::Refused);
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
