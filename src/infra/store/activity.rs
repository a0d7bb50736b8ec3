//! Per-instance figures for `status`, in three grouped queries whatever the instance count.

use std::collections::HashMap;

use super::{Result, Store};

/// What the store knows of an instance's work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Inbound messages not answered yet (waiting or in a turn).
    pub queued: i64,
    /// Model tokens (prompt + completion) since `since`.
    pub tokens: i64,
    /// The earliest next run of its active tasks (Unix ms).
    pub next_task_at: Option<i64>,
}

impl Store {
    /// Activity of every live instance; tokens are counted from `tokens_since` (Unix ms).
    pub fn activity(&self, tokens_since: i64) -> Result<HashMap<String, Activity>> {
        let mut out: HashMap<String, Activity> = HashMap::new();
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT i.name, count(*) FROM messages m JOIN instances i ON i.id = m.instance_id
             WHERE i.removed_at IS NULL AND m.direction = 'in'
               AND m.state IN ('queued', 'context', 'delivered')
             GROUP BY i.name",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
            let (name, n) = row?;
            out.entry(name).or_default().queued = n;
        }
        let mut stmt = conn.prepare(
            "SELECT i.name, coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
             FROM model_usage u JOIN instances i ON i.id = u.instance_id
             WHERE i.removed_at IS NULL AND u.at >= ?1 GROUP BY i.name",
        )?;
        for row in stmt.query_map([tokens_since], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
            let (name, n) = row?;
            out.entry(name).or_default().tokens = n;
        }
        let mut stmt = conn.prepare(
            "SELECT i.name, min(t.next_run_at) FROM tasks t JOIN instances i ON i.id = t.instance_id
             WHERE i.removed_at IS NULL AND t.status = 'active' AND t.next_run_at IS NOT NULL
             GROUP BY i.name",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
            let (name, at) = row?;
            out.entry(name).or_default().next_task_at = Some(at);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::store::messages::Inbound;
    use crate::infra::store::tasks::NewTask;
    use crate::infra::store::usage::UsageRecord;

    #[test]
    fn figures_per_instance() {
        let (_dir, mut s) = crate::infra::store::test_store(&["alice", "bob"]);
        for state in ["queued", "context", "refused"] {
            s.accept_message(&Inbound {
                instance: "alice",
                channel: "cli",
                sender: "local",
                body: "hi",
                state,
                chat: "",
                sender_name: None,
            })
            .unwrap();
        }
        s.record_usage(&UsageRecord {
            instance: "alice",
            request_id: "r1",
            provider: "echo",
            model: "echo",
            prompt_tokens: 30,
            completion_tokens: 12,
            latency_ms: 1,
            status: "ok",
            error: None,
        })
        .unwrap();
        s.insert_task(&NewTask {
            instance: "bob",
            kind: "user",
            schedule_kind: "every",
            schedule: "1m",
            tz: None,
            prompt: "p",
            context_mode: "isolated",
            next_run_at: 42,
            created_by: "cli",
        })
        .unwrap();
        let a = s.activity(0).unwrap();
        assert_eq!(
            a["alice"],
            Activity {
                queued: 2,
                tokens: 42,
                next_task_at: None
            }
        );
        assert_eq!(a["bob"].next_task_at, Some(42));
        assert_eq!(s.activity(i64::MAX).unwrap()["alice"].tokens, 0);
    }
}
