//! Threshold alarms, CB-Dragonfly's kind: defined over REST ([`api`]), checked ([`spec`]),
//! kept in one redb file in the data directory ([`store`]), and run as rule groups with
//! routes to their handlers.
//!
//! The alarms know the rest of alerting only through an [`Installer`]: it checks handler
//! names against the notifier's receivers, hands each alarm's rule group to the rule manager,
//! and gives the notifier one route per (alarm, handler) plus the inhibition that keeps a
//! warning quiet while the critical alert of the same alarm and target fires (set up by
//! whoever implements the installer; see [`inhibit_equal`]).
//!
//! A change is installed in the rule manager first (which refuses what it cannot run) and
//! then written to disk; the answer comes after both. At start every stored alarm is
//! installed again; one that no longer installs (a handler removed from the notifier's config)
//! is logged and kept on disk, so fixing the config brings it back.

pub mod api;
pub mod spec;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::GroupSpec;
use ocelli_http::{Error, Result};
pub use spec::{ALARM_ID_LABEL, Alarm, SEVERITY_LABEL, TARGET_LABELS};
use store::{Store, Stored};

/// The labels on which a critical alert inhibits a warning one: the alarm and its target.
pub fn inhibit_equal() -> Vec<String> {
    std::iter::once(ALARM_ID_LABEL).chain(TARGET_LABELS.iter().copied()).map(String::from).collect()
}

/// What alarms need from the rule manager and the notifier.
pub trait Installer: Send + Sync + 'static {
    /// The receivers a handler may name.
    fn receivers(&self) -> Vec<String>;
    /// Replaces the rule groups of `source` (`alarm:<id>`); an empty list removes them.
    fn set_groups(&self, source: &str, groups: Vec<GroupSpec>) -> std::result::Result<(), String>;
    /// Replaces every alarm route: (alarm id, receiver) pairs.
    fn set_routes(&self, routes: Vec<(String, String)>);
}

/// The alarms: cheap to clone. Every method blocks (disk writes): call from the blocking pool.
#[derive(Clone)]
pub struct Alarms {
    inner: Arc<Mutex<Inner>>,
    installer: Arc<dyn Installer>,
}

impl std::fmt::Debug for Alarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms").finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    alarms: BTreeMap<String, Stored>,
}

/// How a `PUT` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Replaced,
}

impl Alarms {
    /// Opens the alarms file and installs every stored alarm.
    pub fn open(data_dir: &Path, installer: Arc<dyn Installer>) -> Result<Alarms> {
        let (store, all) = Store::open(data_dir)?;
        let alarms: BTreeMap<String, Stored> =
            all.into_iter().map(|s| (s.alarm.id.clone(), s)).collect();
        let receivers = installer.receivers();
        for s in alarms.values() {
            let installed = s
                .alarm
                .check(&receivers)
                .and_then(|()| s.alarm.group())
                .and_then(|g| installer.set_groups(&g.source.clone(), vec![g]));
            if let Err(e) = installed {
                tracing::error!(alarm = %s.alarm.id, error = %e, "alarm not installed; fix it or the notifier's config");
            }
        }
        let me = Alarms { inner: Arc::new(Mutex::new(Inner { store, alarms })), installer };
        me.install_routes(&me.inner.lock());
        Ok(me)
    }

    fn install_routes(&self, inner: &Inner) {
        let routes = inner
            .alarms
            .values()
            .flat_map(|s| s.alarm.handlers.iter().map(|h| (s.alarm.id.clone(), h.clone())))
            .collect();
        self.installer.set_routes(routes);
    }

    /// Every alarm, by id.
    pub fn list(&self) -> Vec<Stored> {
        self.inner.lock().alarms.values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Result<Stored> {
        spec::check_id(id).map_err(Error::BadData)?;
        self.inner.lock().alarms.get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// Adds a new alarm; one with the same id is a conflict.
    pub fn create(&self, alarm: Alarm, now_ms: i64) -> Result<Stored> {
        let mut inner = self.inner.lock();
        if inner.alarms.contains_key(&alarm.id) {
            return Err(Error::Conflict(format!(
                "alarm {:?} exists; PUT /api/v1/alarms/{} replaces it",
                alarm.id, alarm.id
            )));
        }
        self.put_locked(&mut inner, alarm, now_ms).map(|(s, _)| s)
    }

    /// Adds or replaces the alarm `alarm.id`.
    pub fn put(&self, alarm: Alarm, now_ms: i64) -> Result<(Stored, Put)> {
        let mut inner = self.inner.lock();
        self.put_locked(&mut inner, alarm, now_ms)
    }

    fn put_locked(&self, inner: &mut Inner, alarm: Alarm, now_ms: i64) -> Result<(Stored, Put)> {
        alarm.check(&self.installer.receivers()).map_err(Error::BadData)?;
        let group = alarm.group().map_err(Error::BadData)?;
        let source = group.source.clone();
        let old = inner.alarms.get(&alarm.id).cloned();
        self.installer
            .set_groups(&source, vec![group])
            .map_err(|e| Error::BadData(format!("alarm {:?} cannot run: {e}", alarm.id)))?;
        let stored = Stored {
            v: store::RECORD_VERSION,
            created_at_ms: old.as_ref().map_or(now_ms, |o| o.created_at_ms),
            updated_at_ms: now_ms,
            alarm,
        };
        if let Err(e) = inner.store.write(Some(&stored), None) {
            // put the rule manager back as it was
            let back = old.as_ref().and_then(|o| o.alarm.group().ok()).into_iter().collect();
            if let Err(e) = self.installer.set_groups(&source, back) {
                tracing::error!(error = %e, "alarm: cannot restore the previous rules");
            }
            return Err(e);
        }
        let how = if old.is_some() { Put::Replaced } else { Put::Created };
        inner.alarms.insert(stored.alarm.id.clone(), stored.clone());
        self.install_routes(inner);
        Ok((stored, how))
    }

    /// Deletes an alarm and stops its rules; its history stays.
    pub fn delete(&self, id: &str) -> Result<Stored> {
        spec::check_id(id).map_err(Error::BadData)?;
        let mut inner = self.inner.lock();
        let Some(old) = inner.alarms.get(id).cloned() else {
            return Err(not_found(id));
        };
        inner.store.write(None, Some(id))?;
        inner.alarms.remove(id);
        if let Err(e) = self.installer.set_groups(&spec::group_name(id), Vec::new()) {
            tracing::error!(alarm = %id, error = %e, "alarm deleted but its rules could not be removed");
        }
        self.install_routes(&inner);
        Ok(old)
    }
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no alarm {id:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what alarms install, as the rule manager and notifier would get it.
    #[derive(Default)]
    struct Recorder {
        groups: Mutex<BTreeMap<String, Vec<GroupSpec>>>,
        routes: Mutex<Vec<(String, String)>>,
    }

    impl Installer for Recorder {
        fn receivers(&self) -> Vec<String> {
            vec!["ops".into(), "mail".into()]
        }
        fn set_groups(
            &self,
            source: &str,
            groups: Vec<GroupSpec>,
        ) -> std::result::Result<(), String> {
            if groups.iter().any(|g| g.rules.is_empty()) {
                return Err("a group without rules".into());
            }
            let mut all = self.groups.lock();
            if groups.is_empty() {
                all.remove(source);
            } else {
                all.insert(source.into(), groups);
            }
            Ok(())
        }
        fn set_routes(&self, routes: Vec<(String, String)>) {
            *self.routes.lock() = routes;
        }
    }

    fn alarm(id: &str, handlers: &[&str]) -> Alarm {
        let mut a = spec::parse(
            br#"{"id":"x","metric":"load1","comparison":">","warning":1,"critical":2}"#,
        )
        .unwrap();
        a.id = id.into();
        a.handlers = handlers.iter().map(|h| h.to_string()).collect();
        a
    }

    #[test]
    fn alarms_install_persist_and_come_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::default());
        {
            let a = Alarms::open(dir.path(), rec.clone()).unwrap();
            a.create(alarm("a", &["ops"]), 1).unwrap();
            a.create(alarm("b", &["ops", "mail"]), 2).unwrap();
            let e = a.create(alarm("a", &[]), 3).unwrap_err();
            assert!(matches!(e, Error::Conflict(_)), "{e}");
            let (s, how) = a.put(alarm("a", &["mail"]), 4).unwrap();
            assert_eq!((how, s.created_at_ms, s.updated_at_ms), (Put::Replaced, 1, 4));
            let e = a.put(alarm("c", &["pager"]), 5).unwrap_err().to_string();
            assert!(e.starts_with("handlers: no receiver \"pager\""), "{e}");
            a.delete("b").unwrap();
            assert!(matches!(a.delete("b").unwrap_err(), Error::NotFound(_)));
            assert!(matches!(a.get("no such").unwrap_err(), Error::BadData(_)));
        }
        assert_eq!(rec.groups.lock().keys().collect::<Vec<_>>(), ["alarm:a"]);
        assert_eq!(*rec.routes.lock(), vec![("a".into(), "mail".into())]);

        let rec2 = Arc::new(Recorder::default());
        let a = Alarms::open(dir.path(), rec2.clone()).unwrap();
        let ids: Vec<String> = a.list().into_iter().map(|s| s.alarm.id).collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(a.get("a").unwrap().alarm.handlers, ["mail"]);
        assert_eq!(rec2.groups.lock().keys().collect::<Vec<_>>(), ["alarm:a"]);
        assert_eq!(*rec2.routes.lock(), vec![("a".into(), "mail".into())]);
    }
}
