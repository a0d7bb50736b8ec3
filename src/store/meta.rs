//! Key/value facts about the home itself (its id).

use super::{Result, Store};
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
}
