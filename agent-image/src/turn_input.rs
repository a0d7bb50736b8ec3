//! What a turn is given: the fields of the host's turn envelope. Both the prompt and the turn
//! loop read it, so it lives apart from both.

use crate::protocol::{Envelope, HistoryItem, Payload, TurnMessage};
use crate::web_tools::WebTools;

/// A [`Payload::Turn`]'s fields, and when the host sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub turn_id: String,
    pub messages: Vec<TurnMessage>,
    pub history: Vec<HistoryItem>,
    pub scheduled: bool,
    /// The host offers `web_fetch` on this turn.
    pub web: bool,
    /// The host offers `web_search` too.
    pub web_search: bool,
    /// The turn envelope's `ts`, Unix milliseconds: the "now" the model is told. Taken from
    /// the turn rather than the clock so that the prompt depends on the turn alone: a turn
    /// redone after a restart is shown the same one.
    pub now_ms: i64,
}

impl Turn {
    /// The turn in `envelope`, if it is one.
    pub fn from_envelope(envelope: &Envelope) -> Option<Turn> {
        match &envelope.payload {
            Payload::Turn {
                turn_id,
                messages,
                history,
                scheduled,
                web,
                web_search,
            } => Some(Turn {
                turn_id: turn_id.clone(),
                messages: messages.clone(),
                history: history.clone(),
                scheduled: *scheduled,
                web: *web,
                web_search: *web && *web_search,
                now_ms: envelope.ts,
            }),
            _ => None,
        }
    }

    /// The web tools this turn offers.
    pub fn web_tools(&self) -> WebTools {
        WebTools {
            fetch: self.web,
            search: self.web && self.web_search,
        }
    }

    /// The ids of the messages that triggered the turn: what a reply answers.
    pub fn reply_to(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.triggered)
            .map(|m| m.id.clone())
            .collect()
    }

    /// A `reply` payload for this turn.
    pub fn reply(&self, body: String) -> Payload {
        Payload::Reply {
            turn_id: self.turn_id.clone(),
            reply_to: self.reply_to(),
            body,
        }
    }

    /// A `turn_failed` payload for this turn.
    pub fn failed(&self, error: impl Into<String>) -> Payload {
        Payload::TurnFailed {
            turn_id: self.turn_id.clone(),
            error: error.into(),
        }
    }
}
