//! Downsampling: rollups read back as the same windows the raw samples give, whether the
//! windows come from a rollup at the asked resolution, from a finer rollup coarsened, or from
//! raw samples; late samples make a rollup out of date until it is rebuilt; rollups survive a
//! restart and expire on their own retention.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{labels, open, test_opts};
use ocelli_model::rollup::{Window, from_samples, window_end};
use ocelli_model::{Labels, STALE_NAN, Sample};
use ocelli_tsdb::{Db, Limits, Options, Rollup, SeriesSamples};
use proptest::prelude::*;

const M5: i64 = 300_000;
const H: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn opts() -> Options {
    Options {
        block_duration_ms: 2 * H,
        rollups: vec![
            Rollup { resolution_ms: M5, after_ms: 0, retention_ms: i64::MAX / 4 },
            Rollup { resolution_ms: H, after_ms: DAY, retention_ms: i64::MAX / 4 },
        ],
        ..test_opts()
    }
}

fn windows(db: &Db, mint: i64, maxt: i64, res: i64) -> Vec<(Labels, Vec<Window>)> {
    let mut out = Vec::new();
    db.select_windows_each(&[], mint, maxt, res, Limits::default(), &mut |l, w| {
        out.push((l, w));
        true
    })
    .unwrap();
    out
}

/// The windows computed here from the raw samples `select` returns.
fn from_raw(db: &Db, mint: i64, maxt: i64, res: i64) -> Vec<(Labels, Vec<Window>)> {
    let (e_lo, e_hi) = (window_end(mint, res), window_end(maxt, res));
    db.select(&[], e_lo - res + 1, e_hi)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, from_samples(&s.samples, res)))
        .filter(|(_, w)| !w.is_empty())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn assert_same(got: &[(Labels, Vec<Window>)], want: &[(Labels, Vec<Window>)]) {
    assert_eq!(got.len(), want.len(), "series differ");
    for ((gl, gw), (wl, ww)) in got.iter().zip(want) {
        assert_eq!(gl, wl);
        assert_eq!(gw.len(), ww.len(), "{gl:?}: window counts differ");
        for (g, w) in gw.iter().zip(ww) {
            let ok = (g.t, g.count, g.first_t, g.last_t, g.resets, g.changes)
                == (w.t, w.count, w.first_t, w.last_t, w.resets, w.changes)
                && [
                    (g.sum, w.sum),
                    (g.min, w.min),
                    (g.max, w.max),
                    (g.first_v, w.first_v),
                    (g.last_v, w.last_v),
                    (g.counter_correction, w.counter_correction),
                ]
                .iter()
                .all(|&(a, b)| close(a, b) || (a.is_nan() && b.is_nan()));
            assert!(ok, "{gl:?}: {g:?} != {w:?}");
        }
    }
}

/// A counter with resets and a gauge, sampled at irregular times over `days` days, with a
/// stale marker now and then.
fn generate(seed: u64, days: i64) -> Vec<SeriesSamples> {
    let mut x = seed | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut out = Vec::new();
    for (name, counter) in [("c", true), ("g", false)] {
        for host in ["a", "b"] {
            let mut t = 0i64;
            let mut v = 0.0f64;
            let mut samples = Vec::new();
            loop {
                t += 15_000 * (1 + rnd(40) as i64);
                if t >= days * DAY {
                    break;
                }
                if rnd(50) == 0 {
                    samples.push(Sample::new(t, STALE_NAN));
                    continue;
                }
                v = if counter {
                    if rnd(30) == 0 { rnd(5) as f64 } else { v + rnd(100) as f64 / 4.0 }
                } else {
                    (rnd(2000) as f64 - 1000.0) / 8.0
                };
                samples.push(Sample::new(t, v));
            }
            out.push(SeriesSamples {
                labels: labels(&[("__name__", name), ("host", host)]),
                samples,
            });
        }
    }
    out
}

#[test]
fn rollups_give_the_windows_raw_data_gives() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts());
    db.append(&generate(7, 3)).unwrap();
    db.flush().unwrap();
    let before: Vec<_> = [M5, H].iter().map(|&r| from_raw(&db, 0, 3 * DAY, r)).collect();
    let built = db.downsample().unwrap();
    // 5 m: every day whose end is behind the newest sample (days 1, 2 and 3 with the newest
    // sample in day 3 -> the first two, plus the span ending at 0 holds nothing); 1 h: day 1
    let st = db.stats();
    let per: Vec<(i64, usize)> = st.rollups.iter().map(|r| (r.resolution_ms, r.blocks)).collect();
    assert_eq!(per, vec![(M5, 2), (H, 1)], "built {built}");
    assert_eq!(db.rollup_resolutions(0, DAY), vec![M5, H]);
    assert_eq!(db.rollup_resolutions(2 * DAY + 1, 3 * DAY), Vec::<i64>::new());
    for (k, &r) in [M5, H].iter().enumerate() {
        assert_same(&windows(&db, 0, 3 * DAY, r), &before[k]);
        assert_same(&windows(&db, 0, 3 * DAY, r), &from_raw(&db, 0, 3 * DAY, r));
    }
    // a coarser resolution than any rollup is answered from the finer rollups and raw data
    assert_same(&windows(&db, 0, 3 * DAY, 6 * H), &from_raw(&db, 0, 3 * DAY, 6 * H));
    // ranges that start and end inside a span
    for (a, b) in [(7 * H, 30 * H), (DAY, DAY), (DAY - M5, DAY + M5), (5, 17 * M5 + 3)] {
        for r in [M5, H] {
            assert_same(&windows(&db, a, b, r), &from_raw(&db, a, b, r));
        }
    }
}

#[test]
fn late_samples_make_a_rollup_out_of_date_until_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), opts());
    db.append(&generate(11, 3)).unwrap();
    db.flush().unwrap();
    db.downsample().unwrap();
    let l = labels(&[("__name__", "g"), ("host", "late")]);
    db.append(&[SeriesSamples { labels: l.clone(), samples: vec![Sample::new(DAY / 2, 42.0)] }])
        .unwrap();
    // in the head: the span's rollups are not used, the sample is seen
    assert_eq!(db.rollup_resolutions(0, DAY), Vec::<i64>::new());
    let got = windows(&db, 0, DAY, M5);
    assert!(got.iter().any(|(x, w)| *x == l && w.len() == 1 && w[0].sum == 42.0));
    // written out to a block: still not used, and then rebuilt
    db.flush().unwrap();
    assert_eq!(db.rollup_resolutions(0, DAY), Vec::<i64>::new());
    assert_same(&windows(&db, 0, 3 * DAY, M5), &from_raw(&db, 0, 3 * DAY, M5));
    assert!(db.downsample().unwrap() >= 2, "the 5 m and 1 h rollups of day 1 are rebuilt");
    assert_eq!(db.rollup_resolutions(0, DAY), vec![M5, H]);
    let per: Vec<(i64, usize)> =
        db.stats().rollups.iter().map(|r| (r.resolution_ms, r.blocks)).collect();
    assert_eq!(per, vec![(M5, 2), (H, 1)], "the rebuilt rollups replace the old ones");
    for r in [M5, H] {
        assert_same(&windows(&db, 0, 3 * DAY, r), &from_raw(&db, 0, 3 * DAY, r));
    }
}

#[test]
fn rollups_outlive_raw_data_and_a_restart_and_expire_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let db = open(dir.path(), opts());
        db.append(&generate(3, 3)).unwrap();
        db.flush().unwrap();
        db.downsample().unwrap();
        let w = windows(&db, 0, DAY, H);
        db.close().unwrap();
        w
    };
    assert!(!want.is_empty());
    // raw retention of one day: day 1's raw blocks go, its rollups stay and answer
    let short = Options { retention_ms: DAY - 1, ..opts() };
    let db = open(dir.path(), short.clone());
    db.apply_retention().unwrap();
    assert!(db.select(&[], 0, DAY - 1).unwrap().is_empty(), "raw data of day 1 expired");
    assert_same(&windows(&db, 0, DAY, H), &want);
    db.close().unwrap();
    // the 1 h rollups' own retention
    let mut expire = short;
    expire.rollups[1].retention_ms = DAY;
    expire.rollups[0].retention_ms = DAY;
    let db = open(dir.path(), expire);
    db.apply_retention().unwrap();
    assert!(windows(&db, 0, DAY, H).is_empty());
    let per: Vec<(i64, usize)> =
        db.stats().rollups.iter().map(|r| (r.resolution_ms, r.blocks)).collect();
    assert_eq!(per, vec![(M5, 1)], "only the 5 m rollup of day 2 is young enough");
}

#[test]
fn bad_resolutions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        vec![Rollup { resolution_ms: 7 * 60_000, after_ms: 0, retention_ms: DAY }],
        vec![
            Rollup { resolution_ms: H, after_ms: 0, retention_ms: DAY },
            Rollup { resolution_ms: M5, after_ms: 0, retention_ms: DAY },
        ],
    ] {
        let e = Db::open(dir.path(), Options { rollups: bad, ..test_opts() }).unwrap_err();
        assert!(e.to_string().contains("rollup resolution"), "{e}");
    }
    let db = open(dir.path(), opts());
    let e = db
        .select_windows_each(&[], 0, DAY, 7 * 60_000, Limits::default(), &mut |_, _| true)
        .unwrap_err();
    assert!(e.to_string().contains("does not divide a day"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn any_range_reads_the_same_windows(seed in 1u64..u64::MAX, a in 0i64..3 * DAY, len in 0i64..2 * DAY) {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), opts());
        db.append(&generate(seed, 3)).unwrap();
        db.flush().unwrap();
        db.downsample().unwrap();
        for r in [M5, H, 2 * H] {
            assert_same(&windows(&db, a, a + len, r), &from_raw(&db, a, a + len, r));
        }
    }
}
