//! Query statistics as Prometheus' HTTP API returns them for `stats=all`.
//!
//! [`QueryStats`] serializes to Prometheus' `stats` member. The evaluator fills a [`Acc`] only
//! when one is asked for (`Engine::instant_with_stats` / `range_with_stats`); without it the
//! counting is a skipped branch per series.
//!
//! Samples are counted as Prometheus counts them, per step: an instant selector adds one for
//! each series with a value at a step, a range selector the samples in each step's window, so
//! a sample in the windows of several steps counts once per step. Selectors inside a subquery
//! count at the subquery's own steps: they add to the total but not to the per-step counts of
//! the query. Windows read from rollups (see `rollup`) are not counted; evaluate at
//! [`crate::Resolution::Raw`] to count every raw sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::value::Steps;

/// The `stats` member of a Prometheus query response.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueryStats {
    pub timings: QueryTimings,
    pub samples: QuerySamples,
}

/// Seconds spent on a query. The engine has no queue, and reads storage while it evaluates.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryTimings {
    /// Evaluation, result conversion and sorting: `inner_eval_time` + `result_sort_time` and
    /// the conversion to the result.
    pub eval_total_time: f64,
    /// Sorting the result series by labels.
    pub result_sort_time: f64,
    /// Parsing and checking the query before evaluation (Prometheus also counts opening the
    /// storage here; this engine reads storage during evaluation).
    pub query_preparation_time: f64,
    /// Evaluating the expression, storage reads included.
    pub inner_eval_time: f64,
    /// Always 0: queries are not queued.
    pub exec_queue_time: f64,
    /// The whole call, from the query text to the result.
    pub exec_total_time: f64,
}

/// Samples a query touched.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySamples {
    /// `[time in seconds, samples]` for each step of a range query (see the module doc);
    /// `None` for instant queries, and left out of the JSON then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_queryable_samples_per_step: Option<Vec<(f64, u64)>>,
    /// Samples the selectors returned in their windows, counted per step.
    pub total_queryable_samples: u64,
    /// The samples counted against `Options::max_samples` by the end of the query: every
    /// sample loaded from storage and every step value of an instant selector. The evaluator
    /// never gives those back during a query, so this is an upper bound of the samples held at
    /// once, which is what Prometheus reports.
    pub peak_samples: u64,
}

/// What the evaluator counts while a query with stats runs.
pub(crate) struct Acc {
    /// The query's own steps: counts at these steps go to `per_step` too.
    outer: Steps,
    total: AtomicU64,
    per_step: Vec<AtomicU64>,
    /// Nanoseconds of evaluation and of sorting the result; the peak samples.
    pub(crate) inner_eval: AtomicU64,
    pub(crate) sort: AtomicU64,
    pub(crate) peak: AtomicU64,
}

impl Acc {
    pub(crate) fn new(outer: Steps) -> Acc {
        Acc {
            outer,
            total: AtomicU64::new(0),
            per_step: (0..outer.n).map(|_| AtomicU64::new(0)).collect(),
            inner_eval: AtomicU64::new(0),
            sort: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Adds `counts[i]` samples at step `i` of `steps`.
    pub(crate) fn add(&self, steps: Steps, counts: &[u64]) {
        let sum: u64 = counts.iter().sum();
        self.total.fetch_add(sum, Ordering::Relaxed);
        if steps == self.outer {
            for (slot, &c) in self.per_step.iter().zip(counts) {
                if c > 0 {
                    slot.fetch_add(c, Ordering::Relaxed);
                }
            }
        }
    }

    /// Notes a duration in `slot`.
    pub(crate) fn set_time(slot: &AtomicU64, d: Duration) {
        slot.store(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Adds `n` samples without a step (an instant query's range-vector result).
    pub(crate) fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        if let Some(s) = self.per_step.first()
            && self.outer.n == 1
        {
            s.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn finish(
        &self,
        per_step: bool,
        preparation: Duration,
        eval_total: Duration,
        exec_total: Duration,
    ) -> QueryStats {
        let per = per_step.then(|| {
            self.per_step
                .iter()
                .enumerate()
                .map(|(i, c)| (self.outer.at(i) as f64 / 1000.0, c.load(Ordering::Relaxed)))
                .collect()
        });
        QueryStats {
            timings: QueryTimings {
                eval_total_time: eval_total.as_secs_f64(),
                result_sort_time: secs(&self.sort),
                query_preparation_time: preparation.as_secs_f64(),
                inner_eval_time: secs(&self.inner_eval),
                exec_queue_time: 0.0,
                exec_total_time: exec_total.as_secs_f64(),
            },
            samples: QuerySamples {
                total_queryable_samples_per_step: per,
                total_queryable_samples: self.total.load(Ordering::Relaxed),
                peak_samples: self.peak.load(Ordering::Relaxed),
            },
        }
    }
}

fn secs(nanos: &AtomicU64) -> f64 {
    nanos.load(Ordering::Relaxed) as f64 / 1e9
}
