//! How channels that hold a connection stand (`channel_status`), the pairing codes given to
//! unknown senders (`pairings`), and what a channel asks of the messages (which of its chats
//! have a turn running, whether an update is stored already).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{instances::instance_id, now_ms, Result, Store};

/// A channel's connection, as its daemon task last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelStatus {
    /// `starting`, `ok`, `failing` (retrying on its own) or `error` (needs the operator).
    pub state: String,
    /// What is wrong, and the fix.
    pub detail: Option<String>,
    /// The account the channel speaks as (a bot's `@username`).
    pub account: Option<String>,
    pub updated_at: i64,
}

/// A pairing code given to a sender the allow-list does not let in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pairing {
    pub code: String,
    pub instance: String,
    pub channel: String,
    /// The sender key it lets in (`telegram:<user id>`).
    pub sender: String,
    /// How the sender calls themself, for the operator to recognise.
    pub name: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// How long a pairing code stays good, and how long the bot stays quiet to a sender it gave
/// one before giving another.
pub const PAIRING_TTL_MS: i64 = 60 * 60 * 1000;

impl Store {
    /// Records how `channel` of `instance` stands. An instance removed meanwhile is no error.
    pub fn set_channel_status(
        &mut self,
        instance: &str,
        channel: &str,
        state: &str,
        detail: Option<&str>,
        account: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| {
            let Some(iid) = instance_id(tx, instance).ok() else {
                return Ok(());
            };
            tx.execute(
                "INSERT INTO channel_status (instance_id, channel, state, detail, account, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (instance_id, channel) DO UPDATE SET state = ?3, detail = ?4,
                    account = coalesce(?5, account), updated_at = ?6",
                params![iid, channel, state, detail, account, now_ms()],
            )?;
            Ok(())
        })
    }

    /// How `channel` of `instance` stood when its task last said (None: it never ran).
    pub fn channel_status(&self, instance: &str, channel: &str) -> Result<Option<ChannelStatus>> {
        let iid = instance_id(self.conn(), instance)?;
        Ok(self
            .conn()
            .query_row(
                "SELECT state, detail, account, updated_at FROM channel_status
                 WHERE instance_id = ?1 AND channel = ?2",
                params![iid, channel],
                |r| {
                    Ok(ChannelStatus {
                        state: r.get(0)?,
                        detail: r.get(1)?,
                        account: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// A pairing code for `sender`, who wrote to `instance` through `channel` and is not let
    /// in: a new one (drawn by `draw`), unless one was given in the last hour (then None: the
    /// bot answers once, not at every message).
    pub fn new_pairing(
        &mut self,
        instance: &str,
        channel: &str,
        sender: &str,
        name: &str,
        mut draw: impl FnMut() -> String,
    ) -> Result<Option<String>> {
        self.write(|tx| {
            let iid = instance_id(tx, instance)?;
            let now = now_ms();
            let recent: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM pairings WHERE instance_id = ?1 AND sender = ?2
                    AND created_at > ?3)",
                params![iid, sender, now - PAIRING_TTL_MS],
                |r| r.get(0),
            )?;
            if recent {
                return Ok(None);
            }
            tx.execute(
                "DELETE FROM pairings WHERE expires_at <= ?1 AND paired_at IS NULL",
                [now],
            )?;
            // A code already in use (a one-in-a-billion draw) is drawn again.
            for _ in 0..8 {
                let code = draw();
                let added = tx.execute(
                    "INSERT OR IGNORE INTO pairings (code, instance_id, channel, sender, name, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![code, iid, channel, sender, name, now, now + PAIRING_TTL_MS],
                )?;
                if added == 1 {
                    return Ok(Some(code));
                }
            }
            Ok(None)
        })
    }

    /// The pairing codes of `instance` still good and not used, newest first.
    pub fn pairings(&self, instance: &str) -> Result<Vec<Pairing>> {
        let iid = instance_id(self.conn(), instance)?;
        let mut stmt = self.conn().prepare(
            "SELECT p.code, i.name, p.channel, p.sender, p.name, p.created_at, p.expires_at
             FROM pairings p JOIN instances i ON i.id = p.instance_id
             WHERE p.instance_id = ?1 AND p.paired_at IS NULL AND p.expires_at > ?2
             ORDER BY p.created_at DESC",
        )?;
        let rows = stmt.query_map(params![iid, now_ms()], pairing_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Pairing `code` of `instance`, if it is good (not expired, not used).
    pub fn pairing(&self, instance: &str, code: &str) -> Result<Option<Pairing>> {
        let iid = instance_id(self.conn(), instance)?;
        Ok(self
            .conn()
            .query_row(
                "SELECT p.code, i.name, p.channel, p.sender, p.name, p.created_at, p.expires_at
                 FROM pairings p JOIN instances i ON i.id = p.instance_id
                 WHERE p.instance_id = ?1 AND p.code = ?2 AND p.paired_at IS NULL
                   AND p.expires_at > ?3",
                params![iid, code, now_ms()],
                pairing_row,
            )
            .optional()?)
    }

    /// Spends pairing `p` (its sender was let in by `actor`): it is never good again, and
    /// the audit log says who was let in.
    pub fn pairing_used(&mut self, p: &Pairing, actor: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE pairings SET paired_at = ?2 WHERE code = ?1",
                params![p.code, now_ms()],
            )?;
            let detail = serde_json::json!({"channel": p.channel, "sender": p.sender});
            super::events::record(
                tx,
                Some(&p.instance),
                actor,
                "channel.paired",
                Some(&detail),
            )
        })
    }

    /// The chats of `channel` of `instance` with a turn running now (its messages taken up by
    /// the agent and not answered yet).
    pub fn chats_in_turn(&self, instance: &str, channel: &str) -> Result<Vec<String>> {
        let iid = instance_id(self.conn(), instance)?;
        let mut stmt = self.conn().prepare(
            "SELECT DISTINCT chat FROM messages
             WHERE instance_id = ?1 AND direction = 'in' AND state = 'delivered' AND channel = ?2",
        )?;
        let rows = stmt.query_map(params![iid, channel], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether message `id` is stored.
    pub fn has_message(&self, id: &str) -> Result<bool> {
        Ok(self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?)
    }
}

fn pairing_row(r: &rusqlite::Row) -> rusqlite::Result<Pairing> {
    Ok(Pairing {
        code: r.get(0)?,
        instance: r.get(1)?,
        channel: r.get(2)?,
        sender: r.get(3)?,
        name: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::infra::store::test_store;

    #[test]
    fn a_sender_gets_one_code_an_hour_and_a_code_is_used_once() {
        let (_d, mut s) = test_store(&["alice", "bob"]);
        let code = s
            .new_pairing("alice", "telegram", "telegram:7", "Bo", || "ABCDEF".into())
            .unwrap();
        assert_eq!(code.as_deref(), Some("ABCDEF"));
        let again = s
            .new_pairing("alice", "telegram", "telegram:7", "Bo", || "GHJKMN".into())
            .unwrap();
        assert_eq!(again, None, "quiet for an hour");
        // A code drawn twice is drawn again.
        let mut draws = ["ABCDEF", "PQRSTU"].into_iter();
        let other = s
            .new_pairing("alice", "telegram", "telegram:8", "Cy", || {
                draws.next().unwrap().into()
            })
            .unwrap();
        assert_eq!(other.as_deref(), Some("PQRSTU"));
        assert_eq!(s.pairings("alice").unwrap().len(), 2);
        assert!(
            s.pairing("bob", "ABCDEF").unwrap().is_none(),
            "another instance's"
        );
        let p = s.pairing("alice", "ABCDEF").unwrap().unwrap();
        assert_eq!((p.sender.as_str(), p.name.as_str()), ("telegram:7", "Bo"));
        s.pairing_used(&p, "cli").unwrap();
        assert!(s.pairing("alice", "ABCDEF").unwrap().is_none(), "spent");
        assert_eq!(s.pairings("alice").unwrap().len(), 1);
    }

    #[test]
    fn a_channels_status_is_kept_with_its_account() {
        let (_d, mut s) = test_store(&["alice"]);
        assert_eq!(s.channel_status("alice", "telegram").unwrap(), None);
        s.set_channel_status("alice", "telegram", "ok", None, Some("@a_bot"))
            .unwrap();
        s.set_channel_status("alice", "telegram", "error", Some("401"), None)
            .unwrap();
        let st = s.channel_status("alice", "telegram").unwrap().unwrap();
        assert_eq!(
            (
                st.state.as_str(),
                st.detail.as_deref(),
                st.account.as_deref()
            ),
            ("error", Some("401"), Some("@a_bot"))
        );
        // An instance gone meanwhile is nothing to fail on.
        s.set_channel_status("nobody", "telegram", "ok", None, None)
            .unwrap();
    }
}
