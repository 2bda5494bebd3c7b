//! The open intervals of one aggregation rule: per interval start, per output label set, the
//! running min, max, sum, count and last value. Closing an interval turns each group into one
//! sample per output, stamped with the interval's end.

use std::collections::{BTreeMap, HashMap};

use ocelli_model::{Label, Labels, METRIC_NAME, Sample};
use ocelli_tsdb::SeriesSamples;

use super::config::{Output, Rule};

/// Running figures of one group in one interval.
#[derive(Clone, Copy, Debug)]
pub struct Acc {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    /// Timestamp and value of the latest sample; on equal timestamps, the one added last.
    pub last: (i64, f64),
}

impl Acc {
    fn new(t: i64, v: f64) -> Acc {
        Acc { min: v, max: v, sum: v, count: 1, last: (t, v) }
    }

    fn add(&mut self, t: i64, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
        if t >= self.last.0 {
            self.last = (t, v);
        }
    }

    pub fn value(&self, o: Output) -> f64 {
        match o {
            Output::Min => self.min,
            Output::Max => self.max,
            Output::Avg => self.sum / self.count as f64,
            Output::Last => self.last.1,
            Output::Sum => self.sum,
            Output::Count => self.count as f64,
        }
    }
}

/// The open intervals of one rule, by start.
#[derive(Debug)]
pub struct RuleState {
    open: BTreeMap<i64, HashMap<Labels, Acc>>,
    /// Intervals starting before this have been closed; their samples are late.
    closed_before: i64,
    /// Groups over all open intervals, held under the rule's `max_series`.
    groups: usize,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState { open: BTreeMap::new(), closed_before: i64::MIN, groups: 0 }
    }
}

/// What became of a sample offered to a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    Yes,
    /// Its interval is closed or due.
    Late,
    /// It would open a group over the rule's `max_series`.
    Full,
}

impl RuleState {
    /// The start of the aligned interval holding `t`.
    fn start(rule: &Rule, t: i64) -> i64 {
        t.div_euclid(rule.interval_ms) * rule.interval_ms
    }

    /// Adds a sample under `key`, unless its interval is closed or due to close (end plus the
    /// flush delay not after `now`) or it would open a group over `max_series`.
    pub fn add(&mut self, rule: &Rule, key: &Labels, t: i64, v: f64, now: i64) -> Added {
        let start = Self::start(rule, t);
        let due = start.saturating_add(rule.interval_ms).saturating_add(rule.delay_ms);
        if start < self.closed_before || due <= now {
            return Added::Late;
        }
        let full = self.groups >= rule.max_series;
        let groups = self.open.entry(start).or_default();
        match groups.get_mut(key) {
            Some(acc) => acc.add(t, v),
            None if full => {
                if groups.is_empty() {
                    self.open.remove(&start);
                }
                return Added::Full;
            }
            None => {
                groups.insert(key.clone(), Acc::new(t, v));
                self.groups += 1;
            }
        }
        Added::Yes
    }

    /// Closes the intervals due at `now` (every open one when `all`), pushing one series per
    /// group and output, each with one sample at the interval's end.
    pub fn close(&mut self, rule: &Rule, now: i64, all: bool, out: &mut Vec<SeriesSamples>) {
        while let Some(entry) = self.open.first_entry() {
            let start = *entry.key();
            let end = start.saturating_add(rule.interval_ms);
            if !all && end.saturating_add(rule.delay_ms) > now {
                break;
            }
            let groups = entry.remove();
            self.groups -= groups.len();
            self.closed_before = self.closed_before.max(end);
            let mut keys: Vec<_> = groups.into_iter().collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, acc) in keys {
                let metric = labels.metric_name().unwrap_or_default().to_owned();
                for &o in &rule.outputs {
                    let name = rule.output_name(&metric, o);
                    let labels = renamed(&labels, &name);
                    out.push(SeriesSamples {
                        labels,
                        samples: vec![Sample::new(end, acc.value(o))],
                    });
                }
            }
        }
    }
}

/// `labels` with the metric name replaced.
fn renamed(labels: &Labels, name: &str) -> Labels {
    let v = labels
        .iter()
        .map(|l| if l.name == METRIC_NAME { Label::new(METRIC_NAME, name) } else { l.clone() })
        .collect();
    Labels::from_sorted(v)
}
