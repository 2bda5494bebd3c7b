//! The alarms' persistence: one redb file in the data directory, [`FILE_NAME`], with one table
//! from alarm id to the [`Stored`] alarm as JSON (`docs/format/alarms.md`).
//!
//! Every write commits with redb's immediate durability before it returns. The file is checked
//! whole when opened; a damaged one is refused with redb's error.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::Alarm;
use ocelli_http::{Error, Result};

/// The alarms' file in the data directory.
pub const FILE_NAME: &str = "alarms.redb";
/// The record version this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// Alarm id -> [`Stored`] as JSON.
const ALARMS: TableDefinition<&str, &[u8]> = TableDefinition::new("alarms");

/// An alarm as stored, with when it was made and last changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub v: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub alarm: Alarm,
}

pub struct Store {
    db: redb::Database,
}

ocelli_http::opaque_debug!(Store);

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("alarms {what} {FILE_NAME}: {e}"))
}

impl Store {
    /// Opens (or creates) the file and reads every alarm.
    pub fn open(data_dir: &Path) -> Result<(Store, Vec<Stored>)> {
        let db = ocelli_http::embedded::open(data_dir, FILE_NAME, 1 << 20)
            .map_err(|e| err("cannot open", e))?;
        let tx = db.begin_write().map_err(|e| err("cannot write", e))?;
        tx.open_table(ALARMS).map_err(|e| err("cannot write", e))?;
        tx.commit().map_err(|e| err("cannot write", e))?;
        let tx = db.begin_read().map_err(|e| err("cannot read", e))?;
        let table = tx.open_table(ALARMS).map_err(|e| err("cannot read", e))?;
        let mut all = Vec::new();
        for row in table.iter().map_err(|e| err("cannot read", e))? {
            let (k, v) = row.map_err(|e| err("cannot read", e))?;
            let id = k.value();
            let s: Stored = serde_json::from_slice(v.value())
                .map_err(|e| err(&format!("alarm {id:?} does not parse in"), e))?;
            if s.v != RECORD_VERSION || s.alarm.id != id {
                return Err(err(
                    &format!("alarm {id:?} is version {} of id {:?} in", s.v, s.alarm.id),
                    format!("this build reads version {RECORD_VERSION}"),
                ));
            }
            all.push(s);
        }
        drop(table);
        drop(tx);
        Ok((Store { db }, all))
    }

    /// Writes `put` and deletes `delete` in one transaction.
    pub fn write(&self, put: Option<&Stored>, delete: Option<&str>) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| err("cannot write", e))?;
        {
            let mut table = tx.open_table(ALARMS).map_err(|e| err("cannot write", e))?;
            if let Some(s) = put {
                let json = serde_json::to_vec(s).map_err(|e| err("cannot encode for", e))?;
                table
                    .insert(s.alarm.id.as_str(), json.as_slice())
                    .map_err(|e| err("cannot write", e))?;
            }
            if let Some(id) = delete {
                table.remove(id).map_err(|e| err("cannot write", e))?;
            }
        }
        tx.commit().map_err(|e| err("cannot write", e))
    }
}
