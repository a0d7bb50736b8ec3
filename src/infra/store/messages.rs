//! The `messages` table: inbound messages and their journey through turns, and the answers.
//!
//! Inbound states: `queued` (waiting for a turn), `context` (did not match the trigger: given
//! to the next turn as context), `refused` (sender not allowed; never delivered),
//! `delivered` (part of a turn in flight), `answered` (its turn has a final answer).
//! Outbound states: `final` (the turn's answer, or the notice that it failed) and `extra`
//! (a `send_message` during the turn).

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::instances::instance_id;
use super::{now_ms, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRow {
    pub id: String,
    pub instance: String,
    pub direction: String,
    pub channel: String,
    pub sender: String,
    pub body: String,
    pub state: String,
    pub reply_to: Option<String>,
    pub turn_id: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub triggered: bool,
    /// `conversation`, `isolated` (a task run kept out of the chat history) or `silent`.
    pub scope: String,
    /// The conversation: `""` for the operator's own, `<channel>:<chat>` for a channel's.
    pub chat: String,
    /// How the sender calls themself, where the channel tells (a Telegram user's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
}

const COLUMNS: &str = "m.id, i.name, m.direction, m.channel, m.sender, m.body, m.state, \
     m.reply_to, m.turn_id, m.error, m.created_at, m.updated_at, m.triggered, m.scope, m.chat, \
     m.sender_name";

/// How many columns [`COLUMNS`] has: a query that selects more reads them from here on.
const COLUMN_COUNT: usize = 16;

fn from_row(r: &Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        instance: r.get(1)?,
        direction: r.get(2)?,
        channel: r.get(3)?,
        sender: r.get(4)?,
        body: r.get(5)?,
        state: r.get(6)?,
        reply_to: r.get(7)?,
        turn_id: r.get(8)?,
        error: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        triggered: r.get(12)?,
        scope: r.get(13)?,
        chat: r.get(14)?,
        sender_name: r.get(15)?,
    })
}

/// Where a follower of a conversation is: after the last message it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(i64);

/// A new inbound message, before it is committed.
#[derive(Debug, Clone)]
pub struct Inbound<'a> {
    pub instance: &'a str,
    pub channel: &'a str,
    pub sender: &'a str,
    pub body: &'a str,
    /// `queued`, `context` or `refused`, as the router's policy decided.
    pub state: &'a str,
    /// Its conversation (see [`MessageRow::chat`]).
    pub chat: &'a str,
    /// How the sender calls themself (see [`MessageRow::sender_name`]).
    pub sender_name: Option<&'a str>,
}

/// How many extra messages (`send_message`) one turn may store, and how many bytes of text
/// in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraLimit {
    pub messages: u64,
    pub bytes: u64,
}

/// The extra messages a turn has stored so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraTotals {
    pub messages: u64,
    pub bytes: u64,
}

impl ExtraLimit {
    /// Whether one more extra message of `len` bytes fits after `so_far`.
    pub fn admits(&self, so_far: ExtraTotals, len: usize) -> bool {
        so_far.messages < self.messages && so_far.bytes.saturating_add(len as u64) <= self.bytes
    }
}

/// What became of an extra message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    Recorded,
    /// The same envelope was recorded before (its file read twice).
    AlreadyRecorded,
    /// Not stored; `first` when it is the turn's first dropped one (the event was recorded).
    Dropped {
        reason: DropReason,
        first: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The turn already stored as many extra messages or bytes as its limit allows.
    OverLimit,
    /// The turn has its final answer: it is over.
    Answered,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OverLimit => "over the limit",
            DropReason::Answered => "the turn has its answer",
        }
    }
}

/// Inserts a turn's final message and marks its inbound messages answered, inside the
/// caller's transaction. False when the turn already has its final answer.
fn insert_final(
    tx: &rusqlite::Transaction,
    instance: &str,
    turn_id: &str,
    envelope_id: &str,
    body: &str,
    error: Option<&str>,
) -> Result<bool> {
    let iid = instance_id(tx, instance)?;
    let exists: Option<String> = tx
        .query_row(
            "SELECT id FROM messages WHERE turn_id = ?1 AND direction = 'out' AND state = 'final'",
            [turn_id],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Ok(false);
    }
    // Only a turn of this instance can be answered from its directory.
    let first: Option<(String, String)> = tx
        .query_row(
            "SELECT id, chat FROM messages WHERE turn_id = ?1 AND instance_id = ?2 AND direction = 'in'
             ORDER BY triggered DESC, created_at LIMIT 1",
            params![turn_id, iid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((first, chat)) = first else {
        return Err(StoreError::UnknownTurn(turn_id.to_string()));
    };
    let now = now_ms();
    tx.execute(
        "INSERT INTO messages (id, instance_id, direction, channel, sender, body, state, reply_to, turn_id, error, created_at, updated_at, chat)
         VALUES (?1, ?2, 'out', 'agent', ?3, ?4, 'final', ?5, ?6, ?7, ?8, ?8, ?9)",
        params![envelope_id, iid, instance, body, first, turn_id, error, now, chat],
    )?;
    // An empty answer (a task run with nothing to say) is not sent anywhere.
    if !body.trim().is_empty() {
        super::deliveries::enqueue(tx, iid, envelope_id, &chat, now)?;
    }
    tx.execute(
        "UPDATE messages SET state = 'answered', updated_at = ?2
         WHERE turn_id = ?1 AND direction = 'in' AND state = 'delivered'",
        params![turn_id, now],
    )?;
    tx.execute(
        "UPDATE instances SET last_activity_at = ?2 WHERE id = ?1",
        params![iid, now],
    )?;
    super::tasks::finish_runs(tx, turn_id, body, error, now)?;
    Ok(true)
}

/// Whether a sender-chosen message id is acceptable: 1 to 64 ASCII letters, digits, `-` or
/// `_` (it names files in IPC directories, so nothing else).
pub fn is_valid_message_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    /// Commits an inbound message (the first thing that happens to it). Starting work also
    /// counts as activity, so an on-demand instance's container is started for it.
    pub fn accept_message(&mut self, m: &Inbound) -> Result<MessageRow> {
        let id = crate::domain::ids::new_id();
        self.accept_message_once(&id, m)
    }

    /// Like [`Store::accept_message`] under an id the sender chose, so that sending again
    /// after a lost answer (a daemon that died mid-request) stores nothing new: the same id
    /// with the same instance, sender, channel and text returns the message already stored.
    /// The same id with anything else is refused.
    pub fn accept_message_once(&mut self, id: &str, m: &Inbound) -> Result<MessageRow> {
        self.write(|tx| {
            let iid = instance_id(tx, m.instance)?;
            let stored: Option<(i64, String, String, String, String, String)> = tx
                .query_row(
                    "SELECT instance_id, direction, channel, sender, body, chat FROM messages WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            if let Some(mut stored) = stored {
                // Sent again after its chat got a group (which took the context parked on the
                // instance), it is still the same message: judged by the instance it came to.
                stored.0 = super::groups::root_id(tx, stored.0)?;
                let same = (super::groups::root_id(tx, iid)?, "in".to_string(), m.channel.to_string(), m.sender.to_string(), m.body.to_string(), m.chat.to_string());
                return if stored == same {
                    Ok(())
                } else {
                    Err(StoreError::MessageIdTaken(id.to_string()))
                };
            }
            let now = now_ms();
            tx.execute(
                "INSERT INTO messages (id, instance_id, direction, channel, sender, body, state, triggered, created_at, updated_at, chat, sender_name)
                 VALUES (?1, ?2, 'in', ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
                params![id, iid, m.channel, m.sender, m.body, m.state, m.state == "queued", now, m.chat, m.sender_name],
            )?;
            // Only a message that starts a turn is work: context waits for one, and a refused
            // message is only kept. Neither starts an on-demand container.
            if m.state == "queued" {
                tx.execute("UPDATE instances SET last_activity_at = ?2 WHERE id = ?1", params![iid, now])?;
            }
            Ok(())
        })?;
        self.message(id)
    }

    pub fn message(&self, id: &str) -> Result<MessageRow> {
        Ok(self.conn().query_row(
            &format!("SELECT {COLUMNS} FROM messages m JOIN instances i ON i.id = m.instance_id WHERE m.id = ?1"),
            [id],
            from_row,
        )?)
    }

    /// Live instances with work: a message waiting for a turn, or a turn for its answer.
    pub fn instances_with_work(&self) -> Result<std::collections::HashSet<String>> {
        let mut stmt = self.conn().prepare(
            "SELECT DISTINCT i.name FROM messages m JOIN instances i ON i.id = m.instance_id
             WHERE m.state IN ('queued', 'delivered') AND m.direction = 'in'
               AND i.removed_at IS NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Inbound messages waiting for a turn (queued and context), oldest first.
    pub fn waiting_messages(&self, instance: &str) -> Result<Vec<MessageRow>> {
        self.select(
            "WHERE i.name = ?1 AND i.removed_at IS NULL AND m.direction = 'in'
               AND m.state IN ('queued', 'context') ORDER BY m.created_at, m.id",
            params![instance],
        )
    }

    /// Puts `ids` into turn `turn_id` (state `delivered`).
    pub fn begin_turn(&mut self, turn_id: &str, ids: &[String]) -> Result<()> {
        self.write(|tx| {
            let now = now_ms();
            for id in ids {
                tx.execute(
                    "UPDATE messages SET state = 'delivered', turn_id = ?2, attempts = attempts + 1, updated_at = ?3
                     WHERE id = ?1 AND state IN ('queued', 'context')",
                    params![id, turn_id, now],
                )?;
            }
            super::tasks::start_runs(tx, turn_id, now)?;
            Ok(())
        })
    }

    /// The inbound messages of a turn, oldest first.
    pub fn turn_messages(&self, turn_id: &str) -> Result<Vec<MessageRow>> {
        self.select(
            "WHERE m.turn_id = ?1 AND m.direction = 'in' ORDER BY m.created_at, m.id",
            params![turn_id],
        )
    }

    /// Turns in flight (delivered, no final answer yet) of an instance, oldest first.
    pub fn open_turns(&self, instance: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare(
            "SELECT m.turn_id FROM messages m JOIN instances i ON i.id = m.instance_id
             WHERE i.name = ?1 AND i.removed_at IS NULL AND m.direction = 'in' AND m.state = 'delivered'
             GROUP BY m.turn_id ORDER BY min(m.created_at)",
        )?;
        let rows = stmt.query_map([instance], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a turn's final answer (or failure notice) and marks its messages answered.
    /// Idempotent: a turn that already has its final answer keeps it, and None is returned.
    pub fn record_final(
        &mut self,
        instance: &str,
        turn_id: &str,
        envelope_id: &str,
        body: &str,
        error: Option<&str>,
    ) -> Result<Option<MessageRow>> {
        let inserted =
            self.write(|tx| insert_final(tx, instance, turn_id, envelope_id, body, error))?;
        if inserted {
            Ok(Some(self.message(envelope_id)?))
        } else {
            Ok(None)
        }
    }

    /// How many agent runs have taken up a turn so far (the `attempts` of its messages).
    pub fn turn_attempts(&self, turn_id: &str) -> Result<u32> {
        Ok(self.conn().query_row(
            "SELECT coalesce(max(attempts), 0) FROM messages WHERE turn_id = ?1 AND direction = 'in'",
            [turn_id],
            |r| r.get(0),
        )?)
    }

    /// Counts one more agent run taking up an open turn; returns the new count.
    pub fn count_attempt(&mut self, turn_id: &str) -> Result<u32> {
        self.write(|tx| {
            tx.execute(
                "UPDATE messages SET attempts = attempts + 1, updated_at = ?2
                 WHERE turn_id = ?1 AND direction = 'in' AND state = 'delivered'",
                params![turn_id, now_ms()],
            )?;
            Ok(tx.query_row(
                "SELECT coalesce(max(attempts), 0) FROM messages WHERE turn_id = ?1 AND direction = 'in'",
                [turn_id],
                |r| r.get(0),
            )?)
        })
    }

    /// Sets aside (parks) a turn that `attempts` agent runs took up without answering: its
    /// failure answer is recorded as its final message with `error`, and a `message.parked`
    /// event with it, in one transaction. None when the turn already had its answer.
    pub fn park_turn(
        &mut self,
        instance: &str,
        turn_id: &str,
        envelope_id: &str,
        body: &str,
        error: &str,
        attempts: u32,
    ) -> Result<Option<MessageRow>> {
        let inserted = self.write(|tx| {
            let ids: Vec<String> = tx
                .prepare(
                    "SELECT id FROM messages WHERE turn_id = ?1 AND direction = 'in' ORDER BY created_at, id",
                )?
                .query_map([turn_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !insert_final(tx, instance, turn_id, envelope_id, body, Some(error))? {
                return Ok(false);
            }
            let detail = serde_json::json!({
                "turn_id": turn_id, "messages": ids, "attempts": attempts, "error": error,
            });
            super::events::record(tx, Some(instance), "daemon", "message.parked", Some(&detail))?;
            Ok(true)
        })?;
        if inserted {
            Ok(Some(self.message(envelope_id)?))
        } else {
            Ok(None)
        }
    }

    /// Records an extra message sent during a turn, within `limit`; a re-delivered envelope
    /// is ignored. One that is over the limit, or comes after the turn's final answer, is not
    /// stored; the first of those per turn is recorded as a `message.extra_dropped` event (the
    /// event is also how later ones know they are not the first), so a flood of them costs
    /// one row, not one per message.
    pub fn record_extra(
        &mut self,
        instance: &str,
        turn_id: &str,
        envelope_id: &str,
        body: &str,
        limit: &ExtraLimit,
    ) -> Result<Extra> {
        self.write(|tx| {
            let iid = instance_id(tx, instance)?;
            let (started, chat): (Option<i64>, Option<String>) = tx.query_row(
                "SELECT min(created_at), min(chat) FROM messages WHERE turn_id = ?1 AND instance_id = ?2 AND direction = 'in'",
                params![turn_id, iid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let chat = chat.unwrap_or_default();
            let Some(started) = started else {
                return Err(StoreError::UnknownTurn(turn_id.to_string()));
            };
            let stored: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
                [envelope_id],
                |r| r.get(0),
            )?;
            if stored {
                return Ok(Extra::AlreadyRecorded);
            }
            let answered: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE turn_id = ?1 AND direction = 'out' AND state = 'final')",
                [turn_id],
                |r| r.get(0),
            )?;
            let (count, bytes): (i64, i64) = tx.query_row(
                "SELECT count(*), coalesce(sum(length(CAST(body AS BLOB))), 0) FROM messages
                 WHERE turn_id = ?1 AND direction = 'out' AND state = 'extra'",
                [turn_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let so_far = ExtraTotals {
                messages: count.max(0) as u64,
                bytes: bytes.max(0) as u64,
            };
            let why = if answered {
                DropReason::Answered
            } else if limit.admits(so_far, body.len()) {
                let now = now_ms();
                tx.execute(
                    "INSERT INTO messages (id, instance_id, direction, channel, sender, body, state, turn_id, created_at, updated_at, chat)
                     VALUES (?1, ?2, 'out', 'agent', ?3, ?4, 'extra', ?5, ?6, ?6, ?7)",
                    params![envelope_id, iid, instance, body, turn_id, now, chat],
                )?;
                super::deliveries::enqueue(tx, iid, envelope_id, &chat, now)?;
                return Ok(Extra::Recorded);
            } else {
                DropReason::OverLimit
            };
            // Events after the turn began that name it: the turn's first drop, if any.
            let dropped_before: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE instance = ?1 AND at >= ?2
                     AND kind = 'message.extra_dropped' AND json_extract(detail, '$.turn_id') = ?3)",
                params![instance, started, turn_id],
                |r| r.get(0),
            )?;
            if !dropped_before {
                let detail = serde_json::json!({
                    "turn_id": turn_id,
                    "reason": why.as_str(),
                    "stored_messages": so_far.messages,
                    "stored_bytes": so_far.bytes,
                    "max_messages": limit.messages,
                    "max_bytes": limit.bytes,
                });
                super::events::record(tx, Some(instance), "daemon", "message.extra_dropped", Some(&detail))?;
            }
            Ok(Extra::Dropped {
                reason: why,
                first: !dropped_before,
            })
        })
    }

    /// The final answer of the turn a message belongs to, if it has one.
    pub fn answer_to(&self, message_id: &str) -> Result<Option<MessageRow>> {
        Ok(self
            .select(
                "WHERE m.direction = 'out' AND m.state = 'final'
                   AND m.turn_id = (SELECT turn_id FROM messages WHERE id = ?1)",
                params![message_id],
            )?
            .into_iter()
            .next())
    }

    /// The last `limit` messages of an instance (both directions), oldest first.
    pub fn history(&self, instance: &str, limit: u32) -> Result<Vec<MessageRow>> {
        let mut rows = self.select(
            "WHERE i.name = ?1 AND i.removed_at IS NULL ORDER BY m.created_at DESC, m.id DESC LIMIT ?2",
            params![instance, limit],
        )?;
        rows.reverse();
        Ok(rows)
    }

    /// The last `limit` messages of one conversation of an instance, oldest first.
    pub fn chat_history(&self, instance: &str, chat: &str, limit: u32) -> Result<Vec<MessageRow>> {
        let mut rows = self.select(
            "WHERE i.name = ?1 AND i.removed_at IS NULL AND m.chat = ?2
             ORDER BY m.created_at DESC, m.id DESC LIMIT ?3",
            params![instance, chat, limit],
        )?;
        rows.reverse();
        Ok(rows)
    }

    /// The messages of an instance stored after `after` (a [`Cursor`]), oldest first, at
    /// most `limit`, and the cursor to ask with next time. With no cursor: the last `limit`
    /// messages, as [`Store::history`]. A message is stored once and then only changes state,
    /// so a follower that asks again with the cursor it got sees each new message once.
    pub fn history_after(
        &self,
        instance: &str,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<(Vec<MessageRow>, Cursor)> {
        // The row id orders messages as they were committed (created_at can tie).
        let (tail, bound, start) = match after {
            Some(c) => (
                "WHERE i.name = ?1 AND i.removed_at IS NULL AND m.rowid > ?2 \
                 ORDER BY m.rowid LIMIT ?3",
                c.0,
                c.0,
            ),
            // The newest message is where following starts, even when fewer are asked for
            // (none, say); read before the rows, so that one stored in between is not lost.
            None => (
                "WHERE i.name = ?1 AND i.removed_at IS NULL AND m.rowid > ?2 \
                 ORDER BY m.rowid DESC LIMIT ?3",
                0,
                self.conn().query_row(
                    "SELECT coalesce(max(m.rowid), 0) FROM messages m \
                     JOIN instances i ON i.id = m.instance_id \
                     WHERE i.name = ?1 AND i.removed_at IS NULL",
                    [instance],
                    |r| r.get::<_, i64>(0),
                )?,
            ),
        };
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {COLUMNS}, m.rowid FROM messages m JOIN instances i ON i.id = m.instance_id {tail}"
        ))?;
        let mut rows = stmt
            .query_map(params![instance, bound, limit], |r| {
                Ok((from_row(r)?, r.get::<_, i64>(COLUMN_COUNT)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.sort_by_key(|(_, rowid)| *rowid);
        let next = rows.last().map_or(start, |(_, rowid)| (*rowid).max(start));
        Ok((rows.into_iter().map(|(m, _)| m).collect(), Cursor(next)))
    }

    fn select(&self, tail: &str, p: impl rusqlite::Params) -> Result<Vec<MessageRow>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM messages m JOIN instances i ON i.id = m.instance_id {tail}"
        ))?;
        let rows = stmt.query_map(p, from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::instances;

    fn store() -> (tempfile::TempDir, Store) {
        crate::infra::store::test_store(&["alice"])
    }

    fn inbound<'a>(body: &'a str, state: &'a str) -> Inbound<'a> {
        Inbound {
            instance: "alice",
            channel: "cli",
            sender: "local",
            body,
            state,
            chat: "",
            sender_name: None,
        }
    }

    #[test]
    fn a_message_sent_again_under_its_id_is_stored_once() {
        let (_d, mut s) = store();
        let first = s
            .accept_message_once("m-0001", &inbound("hi", "queued"))
            .unwrap();
        let again = s
            .accept_message_once("m-0001", &inbound("hi", "queued"))
            .unwrap();
        assert_eq!((first.id.as_str(), again.id.as_str()), ("m-0001", "m-0001"));
        assert_eq!(s.waiting_messages("alice").unwrap().len(), 1);
        // The same id for different text is refused, and the first stays as it was.
        let err = s
            .accept_message_once("m-0001", &inbound("other", "queued"))
            .unwrap_err();
        assert!(matches!(err, StoreError::MessageIdTaken(_)), "{err}");
        assert_eq!(s.message("m-0001").unwrap().body, "hi");
    }

    #[test]
    fn sender_chosen_ids_are_plain_names() {
        for good in [
            "a",
            "m-0001",
            "0123456789abcdef0123456789abcdef",
            &"x".repeat(64),
        ] {
            assert!(is_valid_message_id(good), "{good}");
        }
        for bad in ["", "../x", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!is_valid_message_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_turn_gets_exactly_one_final_answer() {
        let (_d, mut s) = store();
        let a = s.accept_message(&inbound("hi", "queued")).unwrap();
        let b = s.accept_message(&inbound("fyi", "context")).unwrap();
        s.accept_message(&inbound("spam", "refused")).unwrap();
        let waiting: Vec<_> = s
            .waiting_messages("alice")
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(waiting, [a.id.clone(), b.id.clone()]);

        s.begin_turn("t1", &waiting).unwrap();
        assert_eq!(s.open_turns("alice").unwrap(), ["t1"]);
        assert!(s.waiting_messages("alice").unwrap().is_empty());
        let first = s
            .record_final("alice", "t1", "r1", "hello", None)
            .unwrap()
            .unwrap();
        assert_eq!(first.reply_to.as_deref(), Some(a.id.as_str()));
        // A re-produced answer (agent redid the turn after a crash) is not recorded again.
        assert!(s
            .record_final("alice", "t1", "r2", "hello again", None)
            .unwrap()
            .is_none());
        assert!(s.open_turns("alice").unwrap().is_empty());
        assert_eq!(s.answer_to(&b.id).unwrap().unwrap().body, "hello");
        assert_eq!(s.message(&a.id).unwrap().state, "answered");
        let finals = s
            .history("alice", 50)
            .unwrap()
            .into_iter()
            .filter(|m| m.state == "final")
            .count();
        assert_eq!(finals, 1);
    }

    #[test]
    fn a_follower_gets_each_new_message_once() {
        let (_d, mut s) = store();
        let a = s.accept_message(&inbound("one", "queued")).unwrap();
        let (first, cursor) = s.history_after("alice", None, 20).unwrap();
        assert_eq!(first, vec![a.clone()]);
        let (none, same) = s.history_after("alice", Some(cursor), 20).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, cursor);
        s.begin_turn("t1", std::slice::from_ref(&a.id)).unwrap();
        s.record_final("alice", "t1", "r1", "hello", None).unwrap();
        let b = s.accept_message(&inbound("two", "queued")).unwrap();
        let (new, cursor) = s.history_after("alice", Some(cursor), 20).unwrap();
        let bodies: Vec<_> = new.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["hello", "two"]);
        assert_eq!(new[1], b);
        assert!(s
            .history_after("alice", Some(cursor), 20)
            .unwrap()
            .0
            .is_empty());
        // Without a cursor: the newest, oldest first.
        let (last_two, _) = s.history_after("alice", None, 2).unwrap();
        assert_eq!(last_two[0].body, "hello");
        // Asking for none still starts after the newest.
        let (none, from_now) = s.history_after("alice", None, 0).unwrap();
        assert!(none.is_empty());
        assert_eq!(from_now, cursor);
    }

    #[test]
    fn a_parked_turn_is_answered_once_with_its_error_and_an_event() {
        let (_d, mut s) = store();
        let a = s.accept_message(&inbound("crash me", "queued")).unwrap();
        let b = s.accept_message(&inbound("fyi", "context")).unwrap();
        s.begin_turn("t1", &[a.id.clone(), b.id.clone()]).unwrap();
        assert_eq!(s.turn_attempts("t1").unwrap(), 1);
        assert_eq!(s.count_attempt("t1").unwrap(), 2);
        assert_eq!(s.count_attempt("t1").unwrap(), 3);
        assert_eq!(s.turn_attempts("t1").unwrap(), 3);
        assert_eq!(s.turn_attempts("no-such-turn").unwrap(), 0);

        let parked = s
            .park_turn("alice", "t1", "p1", "Sorry: set aside", "set aside", 3)
            .unwrap()
            .unwrap();
        assert_eq!(
            (parked.state.as_str(), parked.error.as_deref()),
            ("final", Some("set aside"))
        );
        assert_eq!(parked.reply_to.as_deref(), Some(a.id.as_str()));
        assert!(s.open_turns("alice").unwrap().is_empty());
        assert_eq!(s.message(&b.id).unwrap().state, "answered");
        // Once parked, a late answer (or a second parking) changes nothing.
        assert!(s
            .record_final("alice", "t1", "r1", "late", None)
            .unwrap()
            .is_none());
        assert!(s
            .park_turn("alice", "t1", "p2", "again", "again", 4)
            .unwrap()
            .is_none());
        // Counting stops with the turn: its messages are no longer delivered.
        assert_eq!(s.count_attempt("t1").unwrap(), 3);
        let events: Vec<_> = s
            .recent_events(Some("alice"), 10)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "message.parked")
            .collect();
        assert_eq!(events.len(), 1);
        let detail = events[0].detail.clone().unwrap();
        assert_eq!(detail["turn_id"], "t1");
        assert_eq!(detail["attempts"], 3);
        assert_eq!(detail["messages"], serde_json::json!([a.id, b.id]));
    }

    #[test]
    fn answers_only_for_this_instances_own_turns() {
        let (_d, mut s) = store();
        s.write(|tx| instances::insert(tx, "bob", "expert").map(drop))
            .unwrap();
        let a = s.accept_message(&inbound("for alice", "queued")).unwrap();
        s.begin_turn("t-alice", std::slice::from_ref(&a.id))
            .unwrap();
        for r in [
            s.record_final("bob", "t-alice", "x1", "spoofed", None)
                .map(drop),
            s.record_extra(
                "bob",
                "t-alice",
                "x2",
                "spoofed",
                &crate::app::router::policy::EXTRA_LIMIT,
            )
            .map(drop),
            s.record_final("alice", "t-unknown", "x3", "orphan", None)
                .map(drop),
        ] {
            assert!(matches!(r, Err(StoreError::UnknownTurn(_))), "{r:?}");
        }
        assert_eq!(s.open_turns("alice").unwrap(), ["t-alice"]);
    }

    #[test]
    fn extras_are_recorded_once_and_history_is_ordered() {
        let (_d, mut s) = store();
        let a = s.accept_message(&inbound("one", "queued")).unwrap();
        s.begin_turn("t1", std::slice::from_ref(&a.id)).unwrap();
        let limit = crate::app::router::policy::EXTRA_LIMIT;
        assert_eq!(
            s.record_extra("alice", "t1", "e1", "working on it", &limit)
                .unwrap(),
            Extra::Recorded
        );
        assert_eq!(
            s.record_extra("alice", "t1", "e1", "working on it", &limit)
                .unwrap(),
            Extra::AlreadyRecorded
        );
        s.record_final("alice", "t1", "r1", "done", None).unwrap();
        let bodies: Vec<_> = s
            .history("alice", 10)
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, ["one", "working on it", "done"]);
        assert_eq!(s.history("alice", 1).unwrap()[0].body, "done");
    }

    #[test]
    fn the_extra_limit_counts_messages_and_bytes() {
        let limit = ExtraLimit {
            messages: 3,
            bytes: 100,
        };
        let so_far = |messages, bytes| ExtraTotals { messages, bytes };
        assert!(limit.admits(so_far(0, 0), 100));
        assert!(
            !limit.admits(so_far(0, 0), 101),
            "one message over the bytes"
        );
        assert!(limit.admits(so_far(2, 50), 50));
        assert!(!limit.admits(so_far(2, 50), 51));
        assert!(!limit.admits(so_far(3, 0), 0), "the count is reached");
        assert!(!limit.admits(so_far(0, u64::MAX), 1), "no overflow");
    }

    fn extra_events(s: &Store) -> Vec<serde_json::Value> {
        s.recent_events(Some("alice"), 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "message.extra_dropped")
            .map(|e| e.detail.unwrap())
            .collect()
    }

    #[test]
    fn extras_beyond_the_limit_are_dropped_with_one_event_per_turn() {
        let (_d, mut s) = store();
        let limit = ExtraLimit {
            messages: 3,
            bytes: 10,
        };
        let a = s.accept_message(&inbound("one", "queued")).unwrap();
        s.begin_turn("t1", std::slice::from_ref(&a.id)).unwrap();
        let mut outcomes = Vec::new();
        for (i, body) in ["aaaa", "bbbb", "cccccc", "cc", "d", "e"]
            .iter()
            .enumerate()
        {
            outcomes.push(
                s.record_extra("alice", "t1", &format!("e{i}"), body, &limit)
                    .unwrap(),
            );
        }
        let over = |first| Extra::Dropped {
            reason: DropReason::OverLimit,
            first,
        };
        // 4 + 4 bytes stored; 6 more would pass 10; 2 fit; then the count of 3 is reached.
        assert_eq!(
            outcomes,
            [
                Extra::Recorded,
                Extra::Recorded,
                over(true),
                Extra::Recorded,
                over(false),
                over(false)
            ]
        );
        let extras: Vec<_> = s
            .history("alice", 50)
            .unwrap()
            .into_iter()
            .filter(|m| m.state == "extra")
            .map(|m| m.body)
            .collect();
        assert_eq!(extras, ["aaaa", "bbbb", "cc"]);
        let events = extra_events(&s);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["turn_id"], "t1");
        assert_eq!(events[0]["reason"], "over the limit");
        assert_eq!(
            (
                events[0]["max_messages"].as_u64(),
                events[0]["max_bytes"].as_u64()
            ),
            (Some(3), Some(10))
        );

        // Another turn has a limit of its own, and its own event.
        let b = s.accept_message(&inbound("two", "queued")).unwrap();
        s.begin_turn("t2", std::slice::from_ref(&b.id)).unwrap();
        assert_eq!(
            s.record_extra("alice", "t2", "f1", "ffff", &limit).unwrap(),
            Extra::Recorded
        );
        assert_eq!(
            s.record_extra("alice", "t2", "f2", "x".repeat(11).as_str(), &limit)
                .unwrap(),
            over(true)
        );
        assert_eq!(extra_events(&s).len(), 2);
    }

    #[test]
    fn an_extra_after_the_turns_answer_is_not_stored() {
        let (_d, mut s) = store();
        let limit = crate::app::router::policy::EXTRA_LIMIT;
        let a = s.accept_message(&inbound("one", "queued")).unwrap();
        s.begin_turn("t1", std::slice::from_ref(&a.id)).unwrap();
        s.record_final("alice", "t1", "r1", "done", None).unwrap();
        for (id, first) in [("late1", true), ("late2", false)] {
            assert_eq!(
                s.record_extra("alice", "t1", id, "too late", &limit)
                    .unwrap(),
                Extra::Dropped {
                    reason: DropReason::Answered,
                    first
                }
            );
        }
        assert!(s
            .history("alice", 10)
            .unwrap()
            .iter()
            .all(|m| m.state != "extra"));
        let events = extra_events(&s);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["reason"], "the turn has its answer");
    }
}
