//! Key/value facts about the home itself (its id).

use super::{events, Result, Store};
use rusqlite::OptionalExtension;

const HOME_ID: &str = "home_id";

impl Store {
    /// The home's block of instance uids: `[first, first + 65,536)`.
    pub fn uid_block(&self) -> Result<(u32, u32)> {
        let base: String =
            self.conn()
                .query_row("SELECT value FROM meta WHERE key = 'uid_base'", [], |r| {
                    r.get(0)
                })?;
        let base: u32 = base.parse().map_err(|_| {
            super::StoreError::Corrupt(format!("meta uid_base is not a number: {base:?}"))
        })?;
        Ok((base, base.saturating_add(65_536)))
    }

    /// The home's stable id, created on first use. Container labels carry it so that two
    /// homes on one Docker engine never touch each other's containers.
    pub fn home_id(&mut self) -> Result<String> {
        self.write(|tx| {
            let existing: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [HOME_ID], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(id) = existing {
                return Ok(id);
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                [HOME_ID, id.as_str()],
            )?;
            Ok(id)
        })
    }

    /// Gives the home a new identity: a new home id and a new block of instance uids, each
    /// instance (removed ones too) keeping its place in the block. For a restored copy, so
    /// that it never takes the original's containers (labelled with the id) or files (owned
    /// by the block's uids) for its own. Recorded as a `home.reidentified` event.
    pub fn take_new_identity(&mut self, actor: &str) -> Result<NewIdentity> {
        self.write(|tx| {
            let get = |key: &str| -> Result<String> {
                Ok(tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))?)
            };
            let previous_id: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [HOME_ID], |r| {
                    r.get(0)
                })
                .optional()?;
            let old_base: i64 = get("uid_base")?
                .parse()
                .map_err(|_| super::StoreError::Corrupt("meta uid_base is not a number".into()))?;
            // Drawn as migration 7 draws a home's first block; never the block it had.
            let new_base: i64 = loop {
                let base: i64 = tx.query_row(
                    "SELECT 16777216 + (abs(random()) % 32000) * 65536",
                    [],
                    |r| r.get(0),
                )?;
                if base != old_base {
                    break base;
                }
            };
            let home_id = uuid::Uuid::new_v4().simple().to_string();
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                [HOME_ID, home_id.as_str()],
            )?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'uid_base'",
                [new_base.to_string()],
            )?;
            // Blocks are 65,536 apart and never overlap: no uid is ever taken twice.
            tx.execute(
                "UPDATE instances SET uid = uid - ?1 + ?2 WHERE uid IS NOT NULL",
                [old_base, new_base],
            )?;
            let detail = serde_json::json!({
                "previous_home_id": previous_id,
                "home_id": home_id,
                "uid_base": new_base,
            });
            events::record(tx, None, actor, "home.reidentified", Some(&detail))?;
            Ok(NewIdentity {
                previous_id,
                home_id,
            })
        })
    }
}

/// The ids before and after [`Store::take_new_identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdentity {
    /// None for a database that never had one.
    pub previous_id: Option<String>,
    pub home_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_identity_moves_every_uid_to_a_new_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db")).unwrap();
        let id = s.home_id().unwrap();
        s.write(|tx| {
            for name in ["a", "b"] {
                super::super::instances::insert(tx, name, "expert")?;
            }
            Ok(())
        })
        .unwrap();
        let (old_base, _) = s.uid_block().unwrap();
        let before: Vec<u32> = ["a", "b"]
            .iter()
            .map(|n| s.instance(n).unwrap().uid)
            .collect();

        let new = s.take_new_identity("restore").unwrap();
        assert_eq!(new.previous_id.as_deref(), Some(id.as_str()));
        assert_ne!(new.home_id, id);
        assert_eq!(s.home_id().unwrap(), new.home_id);
        let (new_base, end) = s.uid_block().unwrap();
        assert_ne!(new_base, old_base);
        let after: Vec<u32> = ["a", "b"]
            .iter()
            .map(|n| s.instance(n).unwrap().uid)
            .collect();
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b - old_base, a - new_base, "same place in the block");
            assert!(*a >= new_base && *a < end);
        }
        // The next instance still comes after the ones moved.
        s.write(|tx| super::super::instances::insert(tx, "c", "expert").map(drop))
            .unwrap();
        assert_eq!(s.instance("c").unwrap().uid, after[1] + 1);
    }
}
