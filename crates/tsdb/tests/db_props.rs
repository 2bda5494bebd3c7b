//! Property test: random appends (out of order, repeated timestamps, stale markers) mixed with
//! head cuts, compactions and restarts always read back exactly what a simple model holds.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use ocelli_model::{MatchOp, Matcher, RawLabel, RawSeries, STALE_NAN, Sample};
use ocelli_tsdb::SeriesSamples;
use proptest::prelude::*;

const SERIES: &[&[(&str, &str)]] = &[
    &[("__name__", "cpu"), ("host", "a"), ("mode", "idle")],
    &[("__name__", "cpu"), ("host", "a"), ("mode", "user")],
    &[("__name__", "cpu"), ("host", "b"), ("mode", "idle")],
    &[("__name__", "mem"), ("host", "a")],
    &[("__name__", "mem"), ("host", "b"), ("zone", "z1")],
    &[("__name__", "up")],
];

#[derive(Debug, Clone)]
enum Op {
    /// A batch, and whether to append it through `append_raw` (the zero-copy ingest path).
    Append(Vec<(usize, Vec<(i64, f64)>)>, bool),
    Flush,
    Compact,
    Reopen,
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0i64..1000).prop_map(|i| i as f64),
        (0i64..100_000).prop_map(|i| i as f64 / 100.0),
        Just(STALE_NAN),
        Just(f64::NAN),
        any::<f64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let batch = prop::collection::vec(
        (0..SERIES.len(), prop::collection::vec((0i64..5000, value()), 1..20)),
        1..5,
    );
    prop_oneof![
        6 => (batch, any::<bool>()).prop_map(|(b, raw)| Op::Append(b, raw)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn matcher_sets() -> Vec<Vec<Matcher>> {
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    vec![
        vec![],
        vec![m(MatchOp::Equal, "__name__", "cpu")],
        vec![m(MatchOp::Equal, "__name__", "cpu"), m(MatchOp::NotEqual, "mode", "idle")],
        vec![m(MatchOp::RegexMatch, "host", "a|b"), m(MatchOp::Equal, "zone", "")],
        vec![m(MatchOp::RegexNoMatch, "__name__", "c.*")],
        vec![m(MatchOp::RegexMatch, "zone", ".+")],
        vec![m(MatchOp::Equal, "host", "nope")],
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reads_match_the_model(ops in prop::collection::vec(op(), 1..25), ranges in prop::collection::vec((0i64..5000, 0i64..3000), 3)) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Some(open(dir.path(), test_opts()));
        let mut model = Model::new();
        for op in ops {
            let d = db.as_ref().unwrap();
            match op {
                Op::Append(b, raw) => {
                    let batch: Vec<SeriesSamples> = b
                        .into_iter()
                        .map(|(i, s)| SeriesSamples {
                            labels: labels(SERIES[i]),
                            samples: s.into_iter().map(|(t, v)| Sample::new(t, v)).collect(),
                        })
                        .collect();
                    if raw {
                        let pairs: Vec<Vec<RawLabel<'_>>> = batch
                            .iter()
                            .map(|s| s.labels.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())).collect())
                            .collect();
                        let series: Vec<RawSeries<'_>> = batch
                            .iter()
                            .zip(&pairs)
                            .map(|(s, p)| RawSeries { labels: p, samples: &s.samples })
                            .collect();
                        d.append_raw(&series).unwrap();
                    } else {
                        d.append(&batch).unwrap();
                    }
                    apply(&mut model, &batch);
                }
                Op::Flush => d.flush().unwrap(),
                Op::Compact => { d.compact().unwrap(); }
                Op::Reopen => {
                    drop(db.take());
                    db = Some(open(dir.path(), test_opts()));
                }
            }
        }
        let d = db.as_ref().unwrap();
        for ms in matcher_sets() {
            prop_assert_eq!(got(d, &ms, i64::MIN, i64::MAX), expected(&model, &ms, i64::MIN, i64::MAX), "matchers {:?}", ms);
            for &(lo, w) in &ranges {
                prop_assert_eq!(got(d, &ms, lo, lo + w), expected(&model, &ms, lo, lo + w));
            }
        }
        // and the same once everything is compacted on disk and reopened
        d.flush().unwrap();
        d.compact().unwrap();
        drop(db.take());
        let d = open(dir.path(), test_opts());
        for ms in matcher_sets() {
            prop_assert_eq!(got(&d, &ms, i64::MIN, i64::MAX), expected(&model, &ms, i64::MIN, i64::MAX));
        }
    }
}
