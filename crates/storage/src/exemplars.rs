//! Exemplars kept for `/api/v1/query_exemplars`: a fixed-size ring in memory, as Prometheus'
//! exemplar storage is (its `--storage.exemplars.exemplars-limit`, 100,000 by default here
//! too). The newest exemplars replace the oldest once the ring is full; an exemplar equal to the
//! newest one its series has (same labels, value and time: a client re-sending a batch) is not
//! kept twice.
//!
//! Deliberately absent: persistence. Exemplars are lost on restart, as in Prometheus without
//! its WAL feature; they point at traces, which have their own store and retention.

use std::collections::{HashMap, VecDeque};

use ocelli_model::{Labels, Matcher};
use ocelli_wire::Exemplar;
use parking_lot::RwLock;

/// How many exemplars the store keeps by default.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The exemplars of recent writes.
#[derive(Debug)]
pub struct ExemplarStore {
    capacity: usize,
    ring: RwLock<VecDeque<Exemplar>>,
}

impl Default for ExemplarStore {
    fn default() -> Self {
        ExemplarStore::new(DEFAULT_CAPACITY)
    }
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> ExemplarStore {
        ExemplarStore { capacity, ring: RwLock::new(VecDeque::new()) }
    }

    /// Keeps `exemplars`, dropping the oldest beyond the capacity.
    pub fn record(&self, exemplars: &[Exemplar]) {
        if exemplars.is_empty() || self.capacity == 0 {
            return;
        }
        let mut ring = self.ring.write();
        for e in exemplars {
            // a re-sent batch repeats what the ring's newest entries already hold
            let repeated = ring.iter().rev().take(64).any(|x| x == e);
            if repeated {
                continue;
            }
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(e.clone());
        }
    }

    /// The exemplars in `[start, end]` (milliseconds, inclusive) of the series that match all
    /// of any one of `selectors`, grouped by series in order of first label set, each series'
    /// exemplars by time.
    pub fn query(
        &self,
        selectors: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let ring = self.ring.read();
        let mut index: HashMap<&Labels, usize> = HashMap::new();
        let mut out: Vec<(Labels, Vec<Exemplar>)> = Vec::new();
        for e in ring.iter().filter(|e| (start..=end).contains(&e.timestamp)) {
            let matches =
                |m: &Vec<Matcher>| m.iter().all(|m| m.matches(e.series.get(&m.name).unwrap_or("")));
            if !selectors.iter().any(matches) {
                continue;
            }
            let i = *index.entry(&e.series).or_insert_with(|| {
                out.push((e.series.clone(), Vec::new()));
                out.len() - 1
            });
            out[i].1.push(e.clone());
        }
        for (_, v) in &mut out {
            v.sort_by_key(|e| e.timestamp);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(series: &str, trace: &str, v: f64, t: i64) -> Exemplar {
        Exemplar {
            series: Labels::from_pairs([("__name__", series)]).unwrap(),
            labels: Labels::from_pairs([("trace_id", trace)]).unwrap(),
            value: v,
            timestamp: t,
        }
    }

    #[test]
    fn keeps_the_newest_and_answers_by_series_and_time() {
        let s = ExemplarStore::new(3);
        s.record(&[ex("a", "1", 1.0, 10), ex("b", "2", 2.0, 20), ex("a", "3", 3.0, 5)]);
        s.record(&[ex("a", "3", 3.0, 5)]); // re-sent: not kept twice
        s.record(&[ex("a", "4", 4.0, 40)]); // the oldest ("1") goes
        let all =
            vec![vec![Matcher::new(ocelli_model::MatchOp::RegexMatch, "__name__", ".+").unwrap()]];
        let got = s.query(&all, 0, 100);
        let names: Vec<(&str, Vec<i64>)> = got
            .iter()
            .map(|(l, v)| (l.metric_name().unwrap(), v.iter().map(|e| e.timestamp).collect()))
            .collect();
        assert_eq!(names, [("a", vec![5, 40]), ("b", vec![20])]);
        let only_a = vec![vec![Matcher::equal("__name__", "a")]];
        assert_eq!(s.query(&only_a, 0, 10).len(), 1);
        assert_eq!(s.query(&only_a, 0, 10)[0].1.len(), 1);
        assert!(s.query(&only_a, 41, 100).is_empty());
    }
}
