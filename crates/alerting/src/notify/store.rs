//! The notifier's persistence: one redb file in the data directory, [`FILE_NAME`], with the
//! silences, the notification log and the alerts (`docs/format/notifier.md`). Values are JSON.
//!
//! Every call is synchronous and commits with redb's default (immediate) durability before it
//! returns. The file is checked whole when opened, so a damaged file fails the start with
//! redb's error instead of being trusted. This module knows nothing of routing or time.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::alert::StoredAlert;
use super::nflog::Entry;
use super::silence::Silence;
use ocelli_http::{Error, Result};

/// The notifier's file in the data directory.
pub const FILE_NAME: &str = "notifier.redb";

/// The layout version written to [`META`] under `version`.
pub const VERSION: &str = "1";

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Silence id -> [`Silence`] as JSON.
const SILENCES: TableDefinition<&str, &[u8]> = TableDefinition::new("silences");
/// Notification log key -> [`Entry`] as JSON.
const NFLOG: TableDefinition<&str, &[u8]> = TableDefinition::new("nflog");
/// Alert fingerprint -> [`StoredAlert`] as JSON.
const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");

const CACHE_BYTES: usize = 4 << 20;

/// What the file held when opened.
#[derive(Debug, Default)]
pub struct Loaded {
    pub silences: Vec<Silence>,
    pub nflog: Vec<(String, Entry)>,
    pub alerts: Vec<StoredAlert>,
}

/// The open file.
pub struct Store {
    db: redb::Database,
}

ocelli_http::opaque_debug!(Store);

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("notifier {what} {FILE_NAME}: {e}"))
}

/// Changes written in one transaction.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub silences: Vec<&'a Silence>,
    pub delete_silences: Vec<String>,
    pub nflog: Vec<(String, Entry)>,
    pub delete_nflog: Vec<String>,
    pub alerts: Vec<StoredAlert>,
    pub delete_alerts: Vec<u64>,
}

impl Batch<'_> {
    pub fn is_empty(&self) -> bool {
        self.silences.is_empty()
            && self.delete_silences.is_empty()
            && self.nflog.is_empty()
            && self.delete_nflog.is_empty()
            && self.alerts.is_empty()
            && self.delete_alerts.is_empty()
    }
}

impl Store {
    /// Opens (or creates) the file in `data_dir` and reads all of it.
    pub fn open(data_dir: &Path) -> Result<(Store, Loaded)> {
        let db = ocelli_http::embedded::open(data_dir, FILE_NAME, CACHE_BYTES)
            .map_err(|e| err("cannot open", e))?;
        let store = Store { db };
        let tx = store.db.begin_write().map_err(|e| err("cannot write", e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| err("cannot write", e))?;
            let version = meta
                .get("version")
                .map_err(|e| err("cannot read", e))?
                .map(|v| v.value().to_string());
            match version.as_deref() {
                None => {
                    meta.insert("version", VERSION).map_err(|e| err("cannot write", e))?;
                }
                Some(VERSION) => {}
                Some(v) => {
                    return Err(err(
                        "cannot read",
                        format!(
                            "layout version {v:?} is not {VERSION:?}, the one this build reads"
                        ),
                    ));
                }
            }
            tx.open_table(SILENCES).map_err(|e| err("cannot write", e))?;
            tx.open_table(NFLOG).map_err(|e| err("cannot write", e))?;
            tx.open_table(ALERTS).map_err(|e| err("cannot write", e))?;
        }
        tx.commit().map_err(|e| err("cannot write", e))?;
        let loaded = store.read_all().map_err(|e| err("cannot read", e))?;
        Ok((store, loaded))
    }

    fn read_all(&self) -> std::result::Result<Loaded, String> {
        let tx = self.db.begin_read().map_err(|e| e.to_string())?;
        let mut out = Loaded::default();
        let t = tx.open_table(SILENCES).map_err(|e| e.to_string())?;
        for row in t.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let s: Silence = serde_json::from_slice(v.value())
                .map_err(|e| format!("silence {:?}: does not parse: {e}", k.value()))?;
            out.silences.push(s);
        }
        let t = tx.open_table(NFLOG).map_err(|e| e.to_string())?;
        for row in t.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let e: Entry = serde_json::from_slice(v.value())
                .map_err(|e| format!("nflog entry {:?}: does not parse: {e}", k.value()))?;
            out.nflog.push((k.value().to_string(), e));
        }
        let t = tx.open_table(ALERTS).map_err(|e| e.to_string())?;
        for row in t.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            let a: StoredAlert = serde_json::from_slice(v.value())
                .map_err(|e| format!("alert {:016x}: does not parse: {e}", k.value()))?;
            out.alerts.push(a);
        }
        Ok(out)
    }

    /// Writes a batch of changes in one transaction.
    pub fn write(&self, b: &Batch<'_>) -> Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        let w = |e: &dyn std::fmt::Display| err("cannot write", e);
        let tx = self.db.begin_write().map_err(|e| w(&e))?;
        {
            let mut t = tx.open_table(SILENCES).map_err(|e| w(&e))?;
            for s in &b.silences {
                let json = serde_json::to_vec(s).map_err(|e| w(&e))?;
                t.insert(s.id.as_str(), json.as_slice()).map_err(|e| w(&e))?;
            }
            for id in &b.delete_silences {
                t.remove(id.as_str()).map_err(|e| w(&e))?;
            }
            let mut t = tx.open_table(NFLOG).map_err(|e| w(&e))?;
            for (k, e) in &b.nflog {
                let json = serde_json::to_vec(e).map_err(|e| w(&e))?;
                t.insert(k.as_str(), json.as_slice()).map_err(|e| w(&e))?;
            }
            for k in &b.delete_nflog {
                t.remove(k.as_str()).map_err(|e| w(&e))?;
            }
            let mut t = tx.open_table(ALERTS).map_err(|e| w(&e))?;
            for a in &b.alerts {
                let json = serde_json::to_vec(a).map_err(|e| w(&e))?;
                t.insert(a.fingerprint(), json.as_slice()).map_err(|e| w(&e))?;
            }
            for fp in &b.delete_alerts {
                t.remove(*fp).map_err(|e| w(&e))?;
            }
        }
        tx.commit().map_err(|e| w(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (s, l) = Store::open(dir.path()).unwrap();
        assert!(l.silences.is_empty() && l.nflog.is_empty() && l.alerts.is_empty());
        let sil = Silence {
            id: "s1".into(),
            matchers: vec![],
            starts_at_ms: 1,
            ends_at_ms: 2,
            updated_at_ms: 1,
            created_by: "me".into(),
            comment: "c".into(),
        };
        let alert = crate::notify::text::tests::alert(&[("alertname", "A")], 5);
        let entry = Entry { firing: [1, 2].into(), resolved: [3].into(), at_ms: 9 };
        s.write(&Batch {
            silences: vec![&sil],
            nflog: vec![("k".into(), entry.clone()), ("gone".into(), entry.clone())],
            alerts: vec![alert.clone()],
            ..Batch::default()
        })
        .unwrap();
        s.write(&Batch { delete_nflog: vec!["gone".into()], ..Batch::default() }).unwrap();
        drop(s);
        let (_s, l) = Store::open(dir.path()).unwrap();
        assert_eq!(l.silences, vec![sil]);
        assert_eq!(l.nflog, vec![("k".to_string(), entry)]);
        assert_eq!(l.alerts, vec![alert]);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a redb file").unwrap();
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("internal: notifier cannot open notifier.redb: "), "{e}");
    }
}
