//! Aggregations computed while their input streams in (`aggregate::Stream`) answer exactly as
//! those computed over the materialised input vector. `E or absent_metric` is the same vector
//! as `E` but is a binary expression, which the engine never streams; the two answers must be
//! bit-identical (NaN equal to NaN), over generated gauges with NaN, infinities and stale
//! markers and counters with resets, for every streamed operator, several groupings, instant
//! and range queries.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;

use ocelli_model::{Labels, Matcher, STALE_NAN, Sample};
use ocelli_promql::{Engine, Options, QueryValue, Storage};
use proptest::prelude::*;

struct Mem(BTreeMap<Labels, Vec<Sample>>);

impl Storage for Mem {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ocelli_promql::StorageError> {
        Ok(common::select(&self.0, matchers, mint, maxt))
    }
}

fn generate(seed: u64) -> Mem {
    let mut x = seed | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut m = BTreeMap::new();
    for (name, counter) in [("c", true), ("g", false)] {
        for host in ["a", "b", "c", "d"] {
            for mode in ["x", "y", "z"] {
                if rnd(5) == 0 {
                    continue;
                }
                let labels =
                    Labels::from_pairs([("__name__", name), ("host", host), ("mode", mode)])
                        .unwrap();
                let mut t = rnd(120_000) as i64;
                let mut v = 0.0f64;
                let mut samples = Vec::new();
                while t < 3_600_000 {
                    let val = if counter {
                        if rnd(80) == 0 {
                            v = 0.0;
                        }
                        v += rnd(1000) as f64 / 7.0;
                        v
                    } else {
                        match rnd(60) {
                            0 => f64::NAN,
                            1 => f64::INFINITY,
                            2 => f64::NEG_INFINITY,
                            3 => STALE_NAN,
                            4 => -0.0,
                            _ => (rnd(2000) as f64 - 1000.0) / 3.0,
                        }
                    };
                    samples.push(Sample { t, v: val });
                    t += 5_000 + rnd(40_000) as i64;
                }
                m.insert(labels, samples);
            }
        }
    }
    Mem(m)
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same(q: &str, streamed: &QueryValue, full: &QueryValue) {
    match (streamed, full) {
        (QueryValue::Vector(a), QueryValue::Vector(b)) => {
            assert_eq!(a.len(), b.len(), "{q}: {a:?} vs {b:?}");
            for (x, y) in a.iter().zip(b) {
                assert!(x.0 == y.0 && x.1 == y.1 && same(x.2, y.2), "{q}: {x:?} vs {y:?}");
            }
        }
        (QueryValue::Matrix(a), QueryValue::Matrix(b)) => {
            assert_eq!(a.len(), b.len(), "{q}: {a:?} vs {b:?}");
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.0, y.0, "{q}");
                assert_eq!(x.1.len(), y.1.len(), "{q}: {x:?} vs {y:?}");
                for (s, t) in x.1.iter().zip(&y.1) {
                    assert!(s.t == t.t && same(s.v, t.v), "{q} {:?}: {s:?} vs {t:?}", x.0);
                }
            }
        }
        _ => panic!("{q}: {streamed:?} vs {full:?}"),
    }
}

const OPS: &[&str] = &["sum", "avg", "count", "group", "min", "max", "stddev", "stdvar"];
const GROUPINGS: &[&str] = &["", " by (host)", " without (mode)", " by (__name__, host)"];
const INNER: &[&str] = &[
    "g",
    "c{mode!=\"z\"}",
    "rate(c[5m])",
    "increase(c[3m])",
    "irate(c[2m])",
    "deriv(g[5m])",
    "changes(g[4m])",
    "resets(c[10m])",
    "avg_over_time(g[3m])",
    "max_over_time(g[2m])",
    "last_over_time(g[2m])",
    "stddev_over_time(g[5m])",
    "count_over_time({__name__=\"g\"}[1m])",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn streamed_aggregations_equal_materialised_ones(
        seed in any::<u64>(),
        op in 0..OPS.len(),
        grouping in 0..GROUPINGS.len(),
        start in 0i64..1_800_000,
        step in 1_000i64..400_000,
    ) {
        let mem = generate(seed);
        let engine = Engine::new(Options::default());
        for inner in INNER {
            let streamed = format!("{}{}({inner})", OPS[op], GROUPINGS[grouping]);
            let full = format!("{}{}({inner} or absent_metric)", OPS[op], GROUPINGS[grouping]);
            let end = start + 1_800_000;
            let a = engine.range(&mem, &streamed, start, end, step).unwrap();
            let b = engine.range(&mem, &full, start, end, step).unwrap();
            assert_same(&streamed, &a, &b);
            let a = engine.instant(&mem, &streamed, end).unwrap();
            let b = engine.instant(&mem, &full, end).unwrap();
            assert_same(&streamed, &a, &b);
        }
    }
}
