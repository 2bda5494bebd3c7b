//! What the query side sees of the storage engine: [`DbStorage`], PromQL's [`Storage`] over
//! `ocelli-tsdb` (the server's queries and the rule manager's evaluations go through it), with
//! the engine's errors typed for the API ([`storage_error`]: a limit is a limit, not an
//! internal error), and [`MetadataStore`], the metric metadata (`TYPE`, `HELP`, `UNIT`) seen at
//! ingest and scrape time that `/api/v1/metadata` answers from, and [`ExemplarStore`]
//! ([`exemplars`]), the recent exemplars `/api/v1/query_exemplars` answers from.
//!
//! Architecture invariant: no HTTP and no domain; it joins the storage engine to the query
//! engine and nothing else.

pub mod exemplars;
pub mod scoped;

use std::collections::BTreeMap;

pub use exemplars::ExemplarStore;
pub use scoped::{Scoped, scope_matchers};

use ocelli_model::{Labels, Matcher, Sample};
use ocelli_promql::{Storage, StorageError};
use ocelli_tsdb::Db;
use parking_lot::RwLock;

/// The storage engine's error as the query engine reports it: the limits of a selection are
/// `Limit` (the API's 422, like the engine's own sample limit), an invalid selection is
/// `BadData`, a closed engine `Unavailable`; the message is the engine's.
pub fn storage_error(e: ocelli_tsdb::Error) -> StorageError {
    use ocelli_tsdb::Error as E;
    let text = e.to_string();
    match e {
        E::LimitExceeded { .. } => StorageError::Limit(text),
        E::InvalidSeries(_) | E::InvalidTimeRange { .. } => StorageError::BadData(text),
        E::Closed | E::WalPoisoned(_) => StorageError::Unavailable(text),
        _ => StorageError::Internal(text),
    }
}

/// The query engine over the storage engine; a query reads at most `max_samples` samples.
pub struct DbStorage<'a> {
    pub db: &'a Db,
    pub max_samples: usize,
}

impl std::fmt::Debug for DbStorage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStorage").field("max_samples", &self.max_samples).finish_non_exhaustive()
    }
}

impl DbStorage<'_> {
    fn limits(&self) -> ocelli_tsdb::Limits {
        ocelli_tsdb::Limits { max_series: usize::MAX, max_samples: self.max_samples }
    }
}

impl Storage for DbStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, StorageError> {
        match self.db.select_with_limits(matchers, mint, maxt, self.limits()) {
            Ok(v) => Ok(v.into_iter().map(|s| (s.labels, s.samples)).collect()),
            Err(e) => Err(storage_error(e)),
        }
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<(), StorageError> {
        self.db.select_each(matchers, mint, maxt, self.limits(), f).map_err(storage_error)
    }

    fn select_map_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        map: &(dyn Fn(Vec<Sample>) -> ocelli_promql::StepValues + Sync),
        f: &mut dyn FnMut(Labels, usize, ocelli_promql::StepValues) -> bool,
    ) -> Result<(), StorageError> {
        self.db.select_map_each(matchers, mint, maxt, self.limits(), map, f).map_err(storage_error)
    }

    fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        self.db.rollup_resolutions(mint, maxt)
    }

    fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        f: &mut dyn FnMut(Labels, Vec<ocelli_tsdb::Window>) -> bool,
    ) -> Result<(), StorageError> {
        self.db
            .select_windows_each(matchers, mint, maxt, res, self.limits(), f)
            .map_err(storage_error)
    }
}

/// Metric metadata (`TYPE`, `HELP`, `UNIT`) seen in exposition text, by metric family. Kept in
/// memory: it describes what is being ingested now, and is rebuilt as data arrives.
#[derive(Debug, Default)]
pub struct MetadataStore {
    families: RwLock<BTreeMap<String, (String, String, String)>>,
}

impl MetadataStore {
    pub fn record(&self, meta: &[ocelli_wire::exposition::Metadata]) {
        if meta.is_empty() {
            return;
        }
        let mut f = self.families.write();
        for m in meta {
            let kind = format!("{:?}", m.kind).to_lowercase();
            let kind = match kind.as_str() {
                "untyped" => "unknown".to_string(),
                "stateset" => "stateset".to_string(),
                "gaugehistogram" => "gaugehistogram".to_string(),
                _ => kind,
            };
            f.insert(
                m.family.clone(),
                (kind, m.help.clone().unwrap_or_default(), m.unit.clone().unwrap_or_default()),
            );
        }
    }

    /// Every family's `(type, help, unit)`, by family name.
    pub fn families(&self) -> BTreeMap<String, (String, String, String)> {
        self.families.read().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_their_kind_and_words() {
        let limit = ocelli_tsdb::Error::LimitExceeded { what: "samples", limit: 10 };
        let words = limit.to_string();
        assert_eq!(storage_error(limit), StorageError::Limit(words));
        assert!(matches!(storage_error(ocelli_tsdb::Error::Closed), StorageError::Unavailable(_)));
    }

    #[test]
    fn a_query_past_the_storage_limit_is_an_execution_error() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = Db::open(dir.path(), ocelli_tsdb::Options::default()).unwrap();
        let labels = Labels::from_pairs([("__name__", "m")]).unwrap();
        let samples: Vec<Sample> = (0..100).map(|i| Sample::new(i * 1000, i as f64)).collect();
        db.append(&[ocelli_tsdb::SeriesSamples { labels, samples }]).unwrap();
        let storage = DbStorage { db: &db, max_samples: 10 };
        let engine = ocelli_promql::Engine::new(ocelli_promql::Options::default());
        let e = engine.instant(&storage, "count_over_time(m[5m])", 100_000).unwrap_err();
        assert_eq!(e.error_type(), "execution", "{e}");
        let storage = DbStorage { db: &db, max_samples: 1000 };
        assert!(engine.instant(&storage, "count_over_time(m[5m])", 100_000).is_ok());
    }
}
