//! Ingest aggregation (`[[aggregation]]` in the server config, `docs/aggregation.md`): for
//! series that match a rule's selector, keeps only min / max / avg / last / sum / count per
//! aligned interval, grouped `by` or `without` labels, and stores those under derived names
//! `<metric>:<interval>[_by_<l1>_<l2>|_without_<l1>_<l2>]_<output>`.
//!
//! It owns the rules ([`config`]), the in-memory state of open intervals ([`state`]) and the hook
//! the ingest paths call: [`Aggregator::split`] before storing a validated batch (which takes
//! out the series that only feed aggregation), [`Aggregator::feed`] after storing it succeeded,
//! so a rejected request leaves no trace here either. A background task ([`run`]) closes the
//! intervals whose end plus the flush delay has passed, every second, and writes the results
//! with `Db::append`; at shutdown it closes every open interval early.
//!
//! Deliberately absent: persistence of open intervals (a crash loses them, and with
//! `keep_input = false` the raw samples they were made of), counter-aware outputs
//! (`total`, `increase`, `rate`), and aggregation of scraped and Pushgateway samples.

pub mod config;
pub mod state;

use std::sync::atomic::{AtomicU64, Ordering};

use ocelli_model::{Labels, RawSeries};
use ocelli_tsdb::{Db, SeriesSamples};
use parking_lot::Mutex;

pub use config::{AggregationConfig, Rule, compile};
use state::{Added, RuleState};

/// The rules and their open intervals. Cheap to ask when there are no rules
/// ([`Aggregator::is_empty`]).
#[derive(Debug, Default)]
pub struct Aggregator {
    rules: Vec<Rule>,
    states: Mutex<Vec<RuleState>>,
    input: AtomicU64,
    output: AtomicU64,
    late: AtomicU64,
    full: AtomicU64,
    write_failed: AtomicU64,
}

/// Series taken out of (or copied from) a batch to feed aggregation once the batch is stored:
/// each with the indices of the rules it matches.
#[derive(Debug, Default)]
pub struct Pending(Vec<(Vec<usize>, SeriesSamples)>);

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Aggregator {
    pub fn new(rules: Vec<Rule>) -> Aggregator {
        let states = rules.iter().map(|_| RuleState::default()).collect();
        Aggregator { rules, states: Mutex::new(states), ..Aggregator::default() }
    }

    /// No rules: the ingest paths skip matching altogether.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Indices of the rules whose selector matches a series, given a label lookup (absent
    /// labels are empty, as in PromQL). A series without a metric name matches no rule: the
    /// derived names are made from it.
    fn matching<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> Vec<usize> {
        if get(ocelli_model::METRIC_NAME).is_none() {
            return Vec::new();
        }
        (0..self.rules.len()).filter(|&i| self.rules[i].matches(&get)).collect()
    }

    /// Whether a series matching `rules` is also stored raw: when any of them keeps input.
    fn keeps_raw(&self, rules: &[usize]) -> bool {
        rules.iter().any(|&i| self.rules[i].keep_input)
    }

    /// Splits a batch into what to store and what to aggregate once it is stored. A series
    /// that matches no rule is stored; one whose matching rules all have `keep_input = false`
    /// is only aggregated; otherwise it goes to both.
    pub fn split(&self, batch: Vec<SeriesSamples>) -> (Vec<SeriesSamples>, Pending) {
        if self.is_empty() {
            return (batch, Pending::default());
        }
        let mut store = Vec::with_capacity(batch.len());
        let mut pending = Vec::new();
        for s in batch {
            let rules = self.matching(|n| s.labels.get(n));
            if rules.is_empty() {
                store.push(s);
            } else if self.keeps_raw(&rules) {
                pending.push((rules, s.clone()));
                store.push(s);
            } else {
                pending.push((rules, s));
            }
        }
        (store, Pending(pending))
    }

    /// Adds stored (or consumed) series to the open intervals of the rules they match, as of
    /// wall-clock `now` (ms). Stale markers are skipped; a sample whose interval has closed
    /// (its end plus the flush delay is not after `now`) is dropped and counted as late, one
    /// that would open a group over the rule's `max_series` as `too_many_series`.
    pub fn feed(&self, pending: Pending, now: i64) {
        if pending.is_empty() {
            return;
        }
        let mut states = self.states.lock();
        let (mut input, mut late, mut full) = (0u64, 0u64, 0u64);
        for (rules, s) in &pending.0 {
            for &i in rules {
                let (rule, st) = (&self.rules[i], &mut states[i]);
                let key = rule.output_labels(&s.labels);
                for smp in &s.samples {
                    if ocelli_model::is_stale_nan(smp.v) {
                        continue;
                    }
                    match st.add(rule, &key, smp.t, smp.v, now) {
                        Added::Yes => input += 1,
                        Added::Late => late += 1,
                        Added::Full => full += 1,
                    }
                }
            }
        }
        self.input.fetch_add(input, Ordering::Relaxed);
        self.late.fetch_add(late, Ordering::Relaxed);
        self.full.fetch_add(full, Ordering::Relaxed);
    }

    /// Closes the intervals whose end plus flush delay is not after `now` (all open ones when
    /// `all`) and returns their outputs, one sample per output series at the interval's end.
    pub fn flush(&self, now: i64, all: bool) -> Vec<SeriesSamples> {
        let mut states = self.states.lock();
        let mut out = Vec::new();
        for (rule, st) in self.rules.iter().zip(states.iter_mut()) {
            st.close(rule, now, all, &mut out);
        }
        out
    }

    /// Flushes as [`Aggregator::flush`] and appends the outputs; a failed append is logged
    /// and its samples are counted as dropped (`reason="write_failed"`).
    pub fn flush_into(&self, db: &Db, now: i64, all: bool) {
        let out = self.flush(now, all);
        if out.is_empty() {
            return;
        }
        let n: usize = out.iter().map(|s| s.samples.len()).sum();
        match db.append(&out) {
            Ok(()) => self.output.fetch_add(n as u64, Ordering::Relaxed),
            Err(e) => {
                tracing::error!(error = %e, samples = n, "storing aggregation outputs failed");
                self.write_failed.fetch_add(n as u64, Ordering::Relaxed)
            }
        };
    }

    /// Appends a remote_write batch as the decoder found it: when no rule exists, straight
    /// through `Db::append_raw`; otherwise the series that only feed aggregation are validated
    /// and taken out, the rest appended raw, and aggregation fed only if that succeeded. An
    /// invalid series is reported with its index in `batch`.
    pub fn append_raw(
        &self,
        db: &Db,
        batch: &[RawSeries<'_>],
        now: i64,
    ) -> Result<(), ocelli_tsdb::Error> {
        if self.is_empty() {
            return db.append_raw(batch);
        }
        let mut keep = Vec::with_capacity(batch.len());
        let mut index = Vec::with_capacity(batch.len());
        let mut pending = Vec::new();
        for (i, s) in batch.iter().enumerate() {
            let rules = self.matching(|n| {
                let (_, v) = s.labels.iter().find(|(k, _)| *k == n.as_bytes())?;
                std::str::from_utf8(v).ok()
            });
            if rules.is_empty() {
                keep.push(*s);
                index.push(i);
                continue;
            }
            let labels = Labels::from_raw(s.labels)
                .map_err(|source| ocelli_tsdb::Error::InvalidLabels { index: i, source })?;
            let copy = SeriesSamples { labels, samples: s.samples.to_vec() };
            if self.keeps_raw(&rules) {
                keep.push(*s);
                index.push(i);
            }
            pending.push((rules, copy));
        }
        if !keep.is_empty() {
            db.append_raw(&keep).map_err(|e| match e {
                ocelli_tsdb::Error::InvalidLabels { index: k, source } => {
                    ocelli_tsdb::Error::InvalidLabels { index: index[k], source }
                }
                e => e,
            })?;
        }
        self.feed(Pending(pending), now);
        Ok(())
    }

    /// Appends a decoded batch (all or nothing), then feeds aggregation.
    pub fn append(&self, db: &Db, batch: Vec<SeriesSamples>, now: i64) -> ocelli_http::Result<()> {
        let (store, pending) = self.split(batch);
        if !store.is_empty() {
            db.append(&store)?;
        }
        self.feed(pending, now);
        Ok(())
    }

    /// The aggregation counters as exposition text, for `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP ocelli_aggregation_input_samples_total Samples added to ingest aggregation.\n\
             # TYPE ocelli_aggregation_input_samples_total counter\n\
             ocelli_aggregation_input_samples_total {}\n\
             # HELP ocelli_aggregation_output_samples_total Aggregated samples stored.\n\
             # TYPE ocelli_aggregation_output_samples_total counter\n\
             ocelli_aggregation_output_samples_total {}\n\
             # HELP ocelli_aggregation_dropped_samples_total Samples ingest aggregation dropped, by reason.\n\
             # TYPE ocelli_aggregation_dropped_samples_total counter\n\
             ocelli_aggregation_dropped_samples_total{{reason=\"late\"}} {}\n\
             ocelli_aggregation_dropped_samples_total{{reason=\"too_many_series\"}} {}\n\
             ocelli_aggregation_dropped_samples_total{{reason=\"write_failed\"}} {}\n",
            get(&self.input),
            get(&self.output),
            get(&self.late),
            get(&self.full),
            get(&self.write_failed),
        );
    }
}

/// Closes due intervals every second until `stop` turns true, then closes every open interval
/// (early: a partial last interval is written rather than lost) and returns.
pub async fn run(
    agg: std::sync::Arc<Aggregator>,
    db: std::sync::Arc<Db>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if agg.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let (a, d) = (agg.clone(), db.clone());
        let now = ocelli_model::time::now_ms();
        let _ = tokio::task::spawn_blocking(move || a.flush_into(&d, now, stopping)).await;
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
