//! Answers from downsampled windows equal answers from raw samples: every function the engine
//! answers from windows, over generated counters (with resets) and gauges sampled at irregular
//! times with stale markers, at random aligned starts, steps, ranges and offsets.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ocelli_model::rollup::Window;
use ocelli_model::{Labels, Matcher, STALE_NAN, Sample};
use ocelli_promql::{Engine, Options, QueryValue, Resolution, Storage};
use proptest::prelude::*;

const M5: i64 = 300_000;
const H: i64 = 3_600_000;

/// Raw samples in memory; windows computed from them by the trait's default, and reported as
/// a rollup resolution so that `Auto` reads them.
struct Mem(BTreeMap<Labels, Vec<Sample>>, Vec<i64>);

impl Storage for Mem {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ocelli_promql::StorageError> {
        Ok(common::select(&self.0, matchers, mint, maxt))
    }

    fn rollup_resolutions(&self, _mint: i64, _maxt: i64) -> Vec<i64> {
        self.1.clone()
    }
}

/// Counts the windows read, to prove the windows path ran.
struct Counting<'a>(&'a Mem, AtomicUsize);

impl Storage for Counting<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ocelli_promql::StorageError> {
        self.0.select(matchers, mint, maxt)
    }

    fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        self.0.rollup_resolutions(mint, maxt)
    }

    fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        f: &mut dyn FnMut(Labels, Vec<Window>) -> bool,
    ) -> Result<(), ocelli_promql::StorageError> {
        self.0.select_windows_each(matchers, mint, maxt, res, &mut |l, w| {
            self.1.fetch_add(w.len(), Ordering::Relaxed);
            f(l, w)
        })
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
        for host in ["a", "b", "c"] {
            let mut t = 0i64;
            let mut v = 0.0f64;
            let mut samples = Vec::new();
            while t < 2 * 86_400_000 {
                // mostly regular with jitter, now and then a gap
                // (never twice the same time: storage keeps one sample per timestamp)
                t += if rnd(20) == 0 {
                    60_000 * (1 + rnd(90) as i64)
                } else {
                    10_000 + rnd(50) as i64 * 1000
                };
                if rnd(60) == 0 {
                    samples.push(Sample::new(t, STALE_NAN));
                    continue;
                }
                v = if counter {
                    if rnd(200) == 0 { rnd(10) as f64 } else { v + rnd(1000) as f64 / 8.0 }
                } else {
                    (rnd(4000) as f64 - 2000.0) / 16.0
                };
                samples.push(Sample::new(t, v));
            }
            let labels = Labels::from_pairs([("__name__", name), ("host", host)]).unwrap();
            m.insert(labels, samples);
        }
    }
    Mem(m, vec![M5, H])
}

/// Equal up to rounding. The floor of 1.0 on the scale matters where a sum
/// cancels to about zero: summed in another order, `avg_over_time` of values
/// in ±125 can come out as 1e-15 one way and 0 the other, which no relative
/// tolerance accepts.
fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_same(q: &str, raw: &QueryValue, got: &QueryValue) {
    let (QueryValue::Matrix(a), QueryValue::Matrix(b)) = (raw, got) else {
        panic!("{q}: not matrices")
    };
    assert_eq!(
        a.len(),
        b.len(),
        "{q}: series {:?} vs {:?}",
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((la, sa), (lb, sb)) in a.iter().zip(b) {
        assert_eq!(la, lb, "{q}");
        assert_eq!(
            sa.iter().map(|s| s.t).collect::<Vec<_>>(),
            sb.iter().map(|s| s.t).collect::<Vec<_>>(),
            "{q} {la:?}: steps differ"
        );
        for (x, y) in sa.iter().zip(sb) {
            assert!(close(x.v, y.v), "{q} {la:?} at {}: raw {} rollup {}", x.t, x.v, y.v);
        }
    }
}

const FUNCS: [&str; 12] = [
    "rate",
    "increase",
    "delta",
    "resets",
    "changes",
    "sum_over_time",
    "count_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "present_over_time",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn windows_answer_like_raw_samples(
        seed in 1u64..u64::MAX,
        hourly in any::<bool>(),
        start_k in 0i64..30,
        steps in 1i64..4,
        points in 1i64..40,
        range_k in 1i64..6,
        offset_k in 0i64..3,
    ) {
        let mem = generate(seed);
        let r = if hourly { H } else { M5 };
        let engine = Engine::new(Options::default());
        let start = start_k * r;
        let step = steps * r;
        let end = start + points * step;
        let range = format!("{}m", range_k * r / 60_000);
        let offset = if offset_k == 0 { String::new() } else { format!(" offset {}m", offset_k * r / 60_000) };
        let mut queries: Vec<String> =
            FUNCS.iter().flat_map(|f| ["c", "g"].map(|m| format!("{f}({m}[{range}]{offset})"))).collect();
        queries.push(format!("c{offset}"));
        queries.push(format!("timestamp(g{offset})"));
        queries.push(format!("sum by (__name__) (rate(c[{range}]{offset}))"));
        queries.push(format!("max_over_time(rate(c[{range}])[{}m:{}m])", 2 * range_k * r / 60_000, r / 60_000));
        for q in &queries {
            let raw = engine.range_at(&mem, q, start, end, step, Resolution::Raw).unwrap();
            let counting = Counting(&mem, AtomicUsize::new(0));
            let fixed = engine.range_at(&counting, q, start, end, step, Resolution::Fixed(r)).unwrap();
            prop_assert!(counting.1.load(Ordering::Relaxed) > 0 || matches!(&raw, QueryValue::Matrix(m) if m.is_empty()), "{}: no windows read", q);
            assert_same(q, &raw, &fixed);
            let auto = engine.range_at(&mem, q, start, end, step, Resolution::Auto).unwrap();
            assert_same(q, &raw, &auto);
        }
    }
}

#[test]
fn a_forced_resolution_refuses_what_it_cannot_answer() {
    let mem = generate(5);
    let engine = Engine::new(Options::default());
    let fixed = Resolution::Fixed(H);
    let err = |q: &str, start: i64, step: i64| {
        engine.range_at(&mem, q, start, start + 10 * step, step, fixed).unwrap_err().to_string()
    };
    let e = err("deriv(g[1h])", 0, H);
    assert!(e.contains("deriv() cannot be answered from rollups"), "{e}");
    let e = err("rate(c[30m])", 0, H);
    assert!(e.contains("the range 30m is not a multiple of it"), "{e}");
    let e = err("rate(c[1h])", 0, 30 * 60_000);
    assert!(e.contains("the step 30m is not a multiple of it"), "{e}");
    let e = err("c", 60_000, H);
    assert!(e.contains("is not a multiple of 1h"), "{e}");
    // auto falls back to raw samples for all of these
    for (q, start, step) in [("deriv(g[1h])", 0, H), ("rate(c[30m])", 0, H), ("c", 60_000, H)] {
        let raw =
            engine.range_at(&mem, q, start, start + 10 * step, step, Resolution::Raw).unwrap();
        let auto =
            engine.range_at(&mem, q, start, start + 10 * step, step, Resolution::Auto).unwrap();
        assert_same(q, &raw, &auto);
    }
}
