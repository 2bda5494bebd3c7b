//! Helpers shared by the storage engine's integration tests.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
#![allow(dead_code)]

use std::collections::BTreeMap;

use ocelli_model::{Labels, Matcher, Sample};
use ocelli_tsdb::{Db, Options, SeriesSamples};

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

/// Options for tests: no background thread, small partitions.
pub fn test_opts() -> Options {
    Options {
        background: false,
        block_duration_ms: 1000,
        retention_ms: i64::MAX / 4,
        ..Options::default()
    }
}

pub fn open(dir: &std::path::Path, opts: Options) -> Db {
    Db::open(dir, opts).unwrap().0
}

/// The expected contents: labels -> timestamp -> value bits (last write wins).
pub type Model = BTreeMap<Labels, BTreeMap<i64, u64>>;

pub fn apply(model: &mut Model, batch: &[SeriesSamples]) {
    for s in batch {
        let m = model.entry(s.labels.clone()).or_default();
        for x in &s.samples {
            m.insert(x.t, x.v.to_bits());
        }
    }
}

/// What `select` should return according to the model.
pub fn expected(
    model: &Model,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(Labels, Vec<(i64, u64)>)> {
    model
        .iter()
        .filter(|(l, _)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
        .map(|(l, m)| (l.clone(), m.range(mint..=maxt).map(|(t, v)| (*t, *v)).collect::<Vec<_>>()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

pub fn got(db: &Db, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, u64)>)> {
    db.select(matchers, mint, maxt)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples.iter().map(|x: &Sample| (x.t, x.v.to_bits())).collect()))
        .collect()
}
