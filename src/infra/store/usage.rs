//! The `model_usage` table: one row per model request.

use rusqlite::params;

use super::{now_ms, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct UsageRecord<'a> {
    pub instance: &'a str,
    pub request_id: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: i64,
    /// `ok` or `error`.
    pub status: &'a str,
    pub error: Option<&'a str>,
}

impl Store {
    pub fn record_usage(&mut self, u: &UsageRecord) -> Result<()> {
        self.write(|tx| {
            let iid: i64 = tx
                .query_row(
                    "SELECT id FROM instances WHERE name = ?1 AND removed_at IS NULL",
                    [u.instance],
                    |r| r.get(0),
                )
                .map_err(|_| StoreError::NoSuchInstance(u.instance.to_string()))?;
            tx.execute(
                "INSERT INTO model_usage (instance_id, at, request_id, provider, model, prompt_tokens,
                     completion_tokens, latency_ms, status, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    iid, now_ms(), u.request_id, u.provider, u.model, u.prompt_tokens as i64,
                    u.completion_tokens as i64, u.latency_ms, u.status, u.error
                ],
            )?;
            Ok(())
        })
    }
}

impl Store {
    /// Prompt + completion tokens an instance used since `since` (unix ms).
    pub fn tokens_since(&self, instance: &str, since: i64) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
             FROM model_usage u JOIN instances i ON i.id = u.instance_id
             WHERE i.name = ?1 AND i.removed_at IS NULL AND u.at >= ?2",
            params![instance, since],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Tokens used since `since` by `instance`'s whole family: the instance and all its chat
    /// groups (what its `budget.daily_tokens` covers), whichever of them `instance` names.
    pub fn family_tokens_since(&self, instance: &str, since: i64) -> Result<u64> {
        let root = super::groups::root_id(
            self.conn(),
            super::instances::instance_id(self.conn(), instance)?,
        )?;
        let n: i64 = self.conn().query_row(
            "SELECT coalesce(sum(u.prompt_tokens + u.completion_tokens), 0)
             FROM model_usage u JOIN instances i ON i.id = u.instance_id
             WHERE (i.id = ?1 OR i.parent_id = ?1) AND i.removed_at IS NULL AND u.at >= ?2",
            params![root, since],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
impl Store {
    /// Every usage row of an instance as (request id, status), oldest first.
    pub(crate) fn usage_statuses(&self, instance: &str) -> Result<Vec<(String, String)>> {
        let mut q = self.conn().prepare(
            "SELECT u.request_id, u.status FROM model_usage u
             JOIN instances i ON i.id = u.instance_id WHERE i.name = ?1 ORDER BY u.id",
        )?;
        let rows = q.query_map([instance], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
