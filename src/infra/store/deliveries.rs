//! The `deliveries` table: the outbox. Every answer (final or mid-turn) in a channel's chat
//! gets one row, committed with the answer itself, so an answer recorded is an answer that
//! will be sent: rows are taken in order per chat, retried with backoff until the channel
//! takes them, and once marked sent never taken again.

use rusqlite::{params, Row};
use serde::Serialize;

use super::{instances::instance_id, now_ms, Result, Store};
use crate::domain::channels::{channel_of, retry_delay_ms};

/// An answer waiting to be sent into a channel's chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: i64,
    /// The outbound message it sends (its id is the delivery's id on the wire too).
    pub message_id: String,
    pub instance: String,
    pub channel: String,
    pub chat: String,
    pub body: String,
    /// The inbound message the answer replies to, if any.
    pub reply_to: Option<String>,
    /// `final` (the turn's answer) or `extra` (a message during the turn).
    pub kind: String,
    pub attempts: u32,
    pub created_at: i64,
    /// How many of its parts went already (a channel that splits long answers goes on from
    /// the next one).
    pub parts_sent: u32,
}

/// How a channel's outbox stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    pub pending: u64,
    pub last_sent_at: Option<i64>,
    /// The last failure of a delivery still pending.
    pub last_error: Option<String>,
}

/// Queues `message_id` for sending when `chat` is a channel's, inside the caller's
/// transaction (the one that records the answer). The operator's conversation has no outbox.
pub(super) fn enqueue(
    tx: &rusqlite::Transaction,
    instance_id: i64,
    message_id: &str,
    chat: &str,
    now: i64,
) -> Result<()> {
    let Some(channel) = channel_of(chat) else {
        return Ok(());
    };
    // A group's answers go out through its instance's channel: the outbox is the instance's.
    let instance_id = super::groups::root_id(tx, instance_id)?;
    tx.execute(
        "INSERT OR IGNORE INTO deliveries (message_id, instance_id, channel, chat, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
        params![message_id, instance_id, channel, chat, now],
    )?;
    Ok(())
}

/// A pending delivery `d` is the oldest of its chat: only that one may go (order per chat).
const OLDEST_OF_ITS_CHAT: &str = "d.id = (SELECT min(e.id) FROM deliveries e \
     WHERE e.instance_id = d.instance_id AND e.chat = d.chat AND e.state = 'pending')";

fn from_row(r: &Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        message_id: r.get(1)?,
        instance: r.get(2)?,
        channel: r.get(3)?,
        chat: r.get(4)?,
        body: r.get(5)?,
        reply_to: r.get(6)?,
        kind: r.get(7)?,
        attempts: r.get(8)?,
        created_at: r.get(9)?,
        parts_sent: r.get(10)?,
    })
}

impl Store {
    /// What `channel` of `instance` may send now: the oldest pending delivery of each chat,
    /// when it is due (a chat whose oldest waits for its retry waits whole: order per chat).
    pub fn due_deliveries(
        &self,
        instance: &str,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT d.id, d.message_id, i.name, d.channel, d.chat, m.body, m.reply_to, m.state, d.attempts, d.created_at, d.parts_sent
             FROM deliveries d
             JOIN instances i ON i.id = d.instance_id
             JOIN messages m ON m.id = d.message_id
             WHERE i.name = ?1 AND i.removed_at IS NULL AND d.channel = ?2 AND d.state = 'pending'
               AND {OLDEST_OF_ITS_CHAT}
               AND d.next_attempt_at <= ?3
             ORDER BY d.id LIMIT ?4"
        ))?;
        let rows = stmt.query_map(params![instance, channel, now_ms(), limit], from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The (instance, channel) pairs with a delivery due now, by the rule of
    /// [`Store::due_deliveries`] (a chat's oldest pending one, when its retry is due).
    pub fn due_channels(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT DISTINCT i.name, d.channel FROM deliveries d
             JOIN instances i ON i.id = d.instance_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 AND i.removed_at IS NULL
               AND {OLDEST_OF_ITS_CHAT}
             ORDER BY i.name, d.channel"
        ))?;
        let rows = stmt.query_map([now_ms()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that the channel took delivery `id`: it is never sent again.
    pub fn delivery_sent(&mut self, id: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1 AND state = 'pending'",
                params![id, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Records a failed try of delivery `id` (of which `parts_sent` parts went) and when to
    /// try again: after `retry_after_ms` when the channel said, else the backoff. Returns the
    /// attempts so far.
    pub fn delivery_failed(
        &mut self,
        id: i64,
        error: &str,
        parts_sent: u32,
        retry_after_ms: Option<i64>,
    ) -> Result<u32> {
        self.write(|tx| {
            let attempts: u32 = tx.query_row(
                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?2,
                    parts_sent = max(parts_sent, ?3) WHERE id = ?1
                 RETURNING attempts",
                params![id, error, parts_sent],
                |r| r.get(0),
            )?;
            let wait = retry_after_ms.unwrap_or_else(|| retry_delay_ms(attempts));
            tx.execute(
                "UPDATE deliveries SET next_attempt_at = ?2 WHERE id = ?1",
                params![id, now_ms() + wait],
            )?;
            Ok(attempts)
        })
    }

    /// Records that `parts_sent` parts of delivery `id` went and the rest waits `wait_ms` (the
    /// channel's pace, not a failure: no attempt is counted).
    pub fn delivery_progress(&mut self, id: i64, parts_sent: u32, wait_ms: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE deliveries SET parts_sent = max(parts_sent, ?2), next_attempt_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
                params![id, parts_sent, now_ms() + wait_ms.max(0)],
            )?;
            Ok(())
        })
    }

    /// How `channel`'s outbox of `instance` stands.
    pub fn backlog(&self, instance: &str, channel: &str) -> Result<Backlog> {
        let iid = instance_id(self.conn(), instance)?;
        Ok(self.conn().query_row(
            "SELECT
                (SELECT count(*) FROM deliveries WHERE instance_id = ?1 AND channel = ?2 AND state = 'pending'),
                (SELECT max(sent_at) FROM deliveries WHERE instance_id = ?1 AND channel = ?2),
                (SELECT last_error FROM deliveries WHERE instance_id = ?1 AND channel = ?2
                    AND state = 'pending' AND last_error IS NOT NULL ORDER BY id LIMIT 1)",
            params![iid, channel],
            |r| {
                Ok(Backlog {
                    pending: r.get::<_, i64>(0)?.max(0) as u64,
                    last_sent_at: r.get(1)?,
                    last_error: r.get(2)?,
                })
            },
        )?)
    }

    /// When `instance` last got a message through `channel` (Unix ms).
    pub fn last_inbound_at(&self, instance: &str, channel: &str) -> Result<Option<i64>> {
        let iid = instance_id(self.conn(), instance)?;
        Ok(self.conn().query_row(
            "SELECT max(created_at) FROM messages WHERE instance_id = ?1 AND channel = ?2 AND direction = 'in'",
            params![iid, channel],
            |r| r.get(0),
        )?)
    }

    /// Deliveries of `message_id`'s answer, for tests and `show`: (state, attempts).
    pub fn delivery_of(&self, message_id: &str) -> Result<Option<(String, u32)>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn()
            .query_row(
                "SELECT state, attempts FROM deliveries WHERE message_id = ?1",
                [message_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::infra::store::messages::Inbound;
    use crate::infra::store::test_store;

    fn inbound<'a>(body: &'a str, chat: &'a str) -> Inbound<'a> {
        Inbound {
            instance: "alice",
            channel: "webhook",
            sender: "webhook:bob",
            body,
            state: "queued",
            chat,
            sender_name: None,
        }
    }

    #[test]
    fn answers_into_a_channels_chat_are_queued_in_order_and_sent_once() {
        let (_d, mut s) = test_store(&["alice"]);
        let a = s.accept_message(&inbound("one", "webhook:a")).unwrap();
        let b = s.accept_message(&inbound("two", "webhook:b")).unwrap();
        let local = s
            .accept_message(&Inbound {
                chat: "",
                sender_name: None,
                channel: "cli",
                sender: "local",
                ..inbound("three", "")
            })
            .unwrap();
        s.begin_turn("t1", std::slice::from_ref(&a.id)).unwrap();
        s.record_extra(
            "alice",
            "t1",
            "x1",
            "working",
            &crate::app::router::policy::EXTRA_LIMIT,
        )
        .unwrap();
        s.record_final("alice", "t1", "f1", "done", None).unwrap();
        s.begin_turn("t2", std::slice::from_ref(&b.id)).unwrap();
        s.record_final("alice", "t2", "f2", "done b", None).unwrap();
        s.begin_turn("t3", std::slice::from_ref(&local.id)).unwrap();
        s.record_final("alice", "t3", "f3", "done local", None)
            .unwrap();
        assert_eq!(s.message("f1").unwrap().chat, "webhook:a");

        // One per chat, the oldest first; the operator's answer has no delivery.
        assert_eq!(
            s.due_channels().unwrap(),
            [("alice".to_string(), "webhook".to_string())]
        );
        let due = s.due_deliveries("alice", "webhook", 10).unwrap();
        let ids: Vec<_> = due.iter().map(|d| d.message_id.as_str()).collect();
        assert_eq!(ids, ["x1", "f2"]);
        assert_eq!(due[0].kind, "extra");
        assert_eq!(s.delivery_of("f3").unwrap(), None);

        // A failure holds its chat back; the other chat goes on.
        assert_eq!(
            s.delivery_failed(due[0].id, "HTTP 500", 0, None).unwrap(),
            1
        );
        s.delivery_sent(due[1].id).unwrap();
        assert!(s.due_deliveries("alice", "webhook", 10).unwrap().is_empty());
        assert!(
            s.due_channels().unwrap().is_empty(),
            "nothing due while a retry waits"
        );
        let backlog = s.backlog("alice", "webhook").unwrap();
        assert_eq!(backlog.pending, 2);
        assert_eq!(backlog.last_error.as_deref(), Some("HTTP 500"));
        assert!(backlog.last_sent_at.is_some());

        // Sent is for good: sending again changes nothing.
        s.delivery_sent(due[1].id).unwrap();
        assert_eq!(s.delivery_of("f2").unwrap(), Some(("sent".into(), 1)));
    }

    #[test]
    fn a_long_answer_goes_on_from_its_next_part_and_a_channels_wait_is_kept() {
        let (_d, mut s) = test_store(&["alice"]);
        let a = s.accept_message(&inbound("one", "telegram:7")).unwrap();
        s.begin_turn("t1", std::slice::from_ref(&a.id)).unwrap();
        s.record_final("alice", "t1", "f1", "long", None).unwrap();
        let due = s.due_deliveries("alice", "telegram", 10).unwrap();
        assert_eq!(due[0].parts_sent, 0);
        s.delivery_progress(due[0].id, 1, 0).unwrap();
        let due = s.due_deliveries("alice", "telegram", 10).unwrap();
        assert_eq!(
            (due[0].parts_sent, due[0].attempts),
            (1, 0),
            "pace is no attempt"
        );
        // Progress never goes back, and a channel's own wait replaces the backoff.
        s.delivery_failed(due[0].id, "429", 0, Some(60_000))
            .unwrap();
        assert!(s
            .due_deliveries("alice", "telegram", 10)
            .unwrap()
            .is_empty());
        let next: i64 = s
            .conn()
            .query_row(
                "SELECT next_attempt_at - created_at FROM deliveries",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(next >= 59_000, "{next}");
        let parts: u32 = s
            .conn()
            .query_row("SELECT parts_sent FROM deliveries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(parts, 1);
    }
}
