//! The registry's persistence: one redb file in the data directory, [`FILE_NAME`], holding one
//! table from agent key to the agent's [`Record`] as JSON (`docs/format/registry.md`); or, for
//! servers that share one registry (`[registry] etcd`), etcd: one key per agent,
//! `{prefix}{agent key}`, holding the same JSON, written in one etcd transaction per change.
//!
//! Every call is synchronous and commits with redb's immediate durability (fsync) before it
//! returns, so a caller that answers after a successful call has the change on disk. The file
//! is checked whole when it is opened, so a damaged file is refused with redb's error rather
//! than trusted. This module knows nothing of health or HTTP.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::agent::{RECORD_VERSION, Record};
use ocelli_http::{Error, Result};

/// The registry's file in the data directory.
pub const FILE_NAME: &str = "registry.redb";

/// Agent key -> [`Record`] as JSON.
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");

/// redb keeps up to this many bytes of the file cached; the registry is small.
const CACHE_BYTES: usize = 4 << 20;

/// The open registry file, or the etcd cluster holding the registry.
pub enum Store {
    File { db: redb::Database },
    Etcd { etcd: ocelli_cluster::etcd::Etcd, prefix: String, handle: tokio::runtime::Handle },
}

ocelli_http::opaque_debug!(Store);

fn err(what: &str, path_or_key: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("registry {what} {path_or_key}: {e}"))
}

impl Store {
    /// Opens (or creates) the registry file in `data_dir` and reads every record.
    pub fn open(data_dir: &Path) -> Result<(Store, Vec<Record>)> {
        let path = data_dir.join(FILE_NAME);
        let shown = path.display().to_string();
        let db = ocelli_http::embedded::open(data_dir, FILE_NAME, CACHE_BYTES)
            .map_err(|e| err("cannot open", &shown, e))?;
        // make sure the table exists, so that reads of an empty registry find it
        let tx = db.begin_write().map_err(|e| err("cannot write", &shown, e))?;
        tx.open_table(AGENTS).map_err(|e| err("cannot write", &shown, e))?;
        tx.commit().map_err(|e| err("cannot write", &shown, e))?;
        let store = Store::File { db };
        let records = store.read_all().map_err(|e| err("cannot read", &shown, e))?;
        Ok((store, records))
    }

    /// Connects to etcd (blocking: from the blocking pool) and reads every record under
    /// `prefix`.
    pub fn open_etcd(
        endpoints: &[String],
        ca_file: Option<&Path>,
        prefix: &str,
        handle: tokio::runtime::Handle,
    ) -> Result<(Store, Vec<Record>)> {
        let etcd = ocelli_cluster::etcd::Etcd::new(endpoints, std::time::Duration::from_secs(5))
            .and_then(|e| e.with_ca_file(ca_file))
            .map_err(|e| Error::Config { path: "registry.etcd".into(), detail: e })?;
        let store = Store::Etcd { etcd, prefix: prefix.to_string(), handle };
        let records = store.read_all().map_err(|e| err("cannot read", "in etcd", e))?;
        Ok((store, records))
    }

    /// Whether other servers may change the registry too (so it is read again now and then).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Etcd { .. })
    }

    /// Every record, in key order.
    pub fn read_all(&self) -> std::result::Result<Vec<Record>, String> {
        let db = match self {
            Store::File { db } => db,
            Store::Etcd { etcd, prefix, handle } => {
                return handle
                    .block_on(etcd.get_prefix(prefix))?
                    .into_iter()
                    .map(|kv| {
                        let key = kv.key.strip_prefix(prefix.as_str()).unwrap_or(&kv.key);
                        parse_record(key, kv.value.as_bytes())
                    })
                    .collect();
            }
        };
        let tx = db.begin_read().map_err(|e| e.to_string())?;
        let table = tx.open_table(AGENTS).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| e.to_string())? {
            let (k, v) = row.map_err(|e| e.to_string())?;
            out.push(parse_record(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Writes `put` and deletes `delete` in one transaction.
    pub fn write(&self, put: &[&Record], delete: &[&str]) -> Result<()> {
        let what = "cannot write";
        let db = match self {
            Store::File { db } => db,
            Store::Etcd { etcd, prefix, handle } => {
                let mut puts = Vec::with_capacity(put.len());
                for r in put {
                    let key = r.key();
                    let json = serde_json::to_string(r).map_err(|e| err(what, &key, e))?;
                    puts.push((format!("{prefix}{key}"), json));
                }
                let deletes: Vec<String> = delete.iter().map(|k| format!("{prefix}{k}")).collect();
                return handle
                    .block_on(etcd.txn(&puts, &deletes))
                    .map_err(|e| err(what, "in etcd", e));
            }
        };
        let tx = db.begin_write().map_err(|e| err(what, FILE_NAME, e))?;
        {
            let mut table = tx.open_table(AGENTS).map_err(|e| err(what, FILE_NAME, e))?;
            for r in put {
                let key = r.key();
                let json = serde_json::to_vec(r).map_err(|e| err(what, &key, e))?;
                table.insert(key.as_str(), json.as_slice()).map_err(|e| err(what, &key, e))?;
            }
            for key in delete {
                table.remove(*key).map_err(|e| err(what, key, e))?;
            }
        }
        tx.commit().map_err(|e| err(what, FILE_NAME, e))
    }
}

/// A stored record, checked: it parses, has this build's version, and is under its own key.
fn parse_record(key: &str, json: &[u8]) -> std::result::Result<Record, String> {
    let r: Record = serde_json::from_slice(json)
        .map_err(|e| format!("agent {key:?}: record does not parse: {e}"))?;
    if r.v != RECORD_VERSION {
        return Err(format!(
            "agent {key:?}: record version {} is not {RECORD_VERSION}, the one this build reads",
            r.v
        ));
    }
    if r.key() != key {
        return Err(format!("agent {key:?}: record holds agent {:?}", r.key()));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{Heartbeat, Identity, Mode};

    fn record(vm: &str) -> Record {
        let hb = Heartbeat {
            identity: Identity {
                ns: "default".into(),
                service_type: "vm".into(),
                service_id: "s".into(),
                vm_id: vm.into(),
                csp: "aws".into(),
                region: "r".into(),
            },
            address: "127.0.0.1:1".into(),
            version: "0.1.0".into(),
            mode: Mode::Push,
            interval_seconds: 10,
        };
        Record::register(&hb, 1_700_000_000_000)
    }

    #[test]
    fn records_survive_reopening_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let (s, all) = Store::open(dir.path()).unwrap();
        assert!(all.is_empty());
        let (a, b) = (record("a"), record("b"));
        s.write(&[&a, &b], &[]).unwrap();
        let mut a2 = a.clone();
        a2.mode = Mode::Pull;
        a2.operator_set = true;
        s.write(&[&a2], &[&b.key()]).unwrap();
        drop(s);
        let (_s, all) = Store::open(dir.path()).unwrap();
        assert_eq!(all, vec![a2]);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a redb file at all, just text").unwrap();
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("internal: registry cannot open "), "{e}");
        assert!(e.contains(FILE_NAME), "{e}");
    }
}
