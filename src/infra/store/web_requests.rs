//! The `web_requests` table: one row per web request an agent made through the host.

use rusqlite::params;
use serde::Serialize;

use super::{now_ms, Result, Store, StoreError};

/// A web request to record. `url` must already be redacted (no credentials, no query values).
#[derive(Debug, Clone)]
pub struct WebRequestRecord<'a> {
    pub instance: &'a str,
    pub action: &'a str,
    pub url: &'a str,
    /// `ok`, `refused` or `failed`.
    pub result: &'a str,
    pub reason: Option<&'a str>,
    pub status: Option<u16>,
    pub bytes: u64,
    pub millis: u64,
}

/// A stored web request, as `supervisor egress` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebRequestRow {
    pub at: i64,
    pub action: String,
    pub url: String,
    pub result: String,
    pub reason: Option<String>,
    pub status: Option<i64>,
    pub bytes: i64,
    pub millis: i64,
}

impl Store {
    pub fn record_web_request(&mut self, r: &WebRequestRecord) -> Result<()> {
        self.write(|tx| {
            let iid: i64 = tx
                .query_row(
                    "SELECT id FROM instances WHERE name = ?1 AND removed_at IS NULL",
                    [r.instance],
                    |row| row.get(0),
                )
                .map_err(|_| StoreError::NoSuchInstance(r.instance.to_string()))?;
            tx.execute(
                "INSERT INTO web_requests (instance_id, at, action, url, result, reason, status,
                     bytes, millis)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    iid,
                    now_ms(),
                    r.action,
                    r.url,
                    r.result,
                    r.reason,
                    r.status.map(i64::from),
                    r.bytes as i64,
                    r.millis as i64
                ],
            )?;
            Ok(())
        })
    }

    /// An instance's newest `limit` web requests, oldest first.
    pub fn web_requests(&self, instance: &str, limit: u32) -> Result<Vec<WebRequestRow>> {
        let mut stmt = self.conn().prepare(
            "SELECT w.at, w.action, w.url, w.result, w.reason, w.status, w.bytes, w.millis
             FROM web_requests w JOIN instances i ON i.id = w.instance_id
             WHERE i.name = ?1 AND i.removed_at IS NULL
             ORDER BY w.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![instance, limit], |r| {
            Ok(WebRequestRow {
                at: r.get(0)?,
                action: r.get(1)?,
                url: r.get(2)?,
                result: r.get(3)?,
                reason: r.get(4)?,
                status: r.get(5)?,
                bytes: r.get(6)?,
                millis: r.get(7)?,
            })
        })?;
        let mut rows: Vec<WebRequestRow> = rows.collect::<rusqlite::Result<_>>()?;
        rows.reverse();
        Ok(rows)
    }

    /// How many web requests count against an instance's caps since `since` (unix ms): all
    /// but those refused by the caps themselves or for want of a policy or search backend.
    pub fn web_requests_since(&self, instance: &str, since: i64) -> Result<u64> {
        let n: i64 = self.conn().query_row(
            "SELECT count(*) FROM web_requests w JOIN instances i ON i.id = w.instance_id
             WHERE i.name = ?1 AND i.removed_at IS NULL AND w.at >= ?2
               AND coalesce(w.reason, '') NOT IN ('rate', 'no_policy', 'no_search')",
            params![instance, since],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reads_back() {
        let (_dir, mut store) = crate::infra::store::test_store(&["alice"]);
        for (result, reason) in [
            ("ok", None),
            ("refused", Some("not_listed")),
            ("refused", Some("rate")),
        ] {
            store
                .record_web_request(&WebRequestRecord {
                    instance: "alice",
                    action: "fetch",
                    url: "https://docs.rs/",
                    result,
                    reason,
                    status: (result == "ok").then_some(200),
                    bytes: 10,
                    millis: 5,
                })
                .unwrap();
        }
        let rows = store.web_requests("alice", 10).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].result, "ok");
        assert_eq!(rows[0].status, Some(200));
        assert_eq!(rows[2].reason.as_deref(), Some("rate"));
        assert_eq!(
            store.web_requests("alice", 1).unwrap()[0].reason.as_deref(),
            Some("rate")
        );
        assert_eq!(store.web_requests_since("alice", 0).unwrap(), 2);
        assert!(store
            .record_web_request(&WebRequestRecord {
                instance: "nobody",
                action: "fetch",
                url: "x",
                result: "ok",
                reason: None,
                status: None,
                bytes: 0,
                millis: 0,
            })
            .is_err());
    }
}
