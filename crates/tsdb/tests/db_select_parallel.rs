//! Large selections are read by several threads (`db/select.rs`): what `f` sees must be what a
//! sequential read gives. Each series is checked against a selection of that series alone
//! (one candidate: read on the calling thread) and against a model of what was written, over
//! blocks and heads holding overlapping copies of the same timestamps; and the limits and an
//! early stop must cut the sequence at the same series.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use ocelli_model::{Labels, Matcher, Sample};
use ocelli_tsdb::{Db, Error, Limits, SeriesSamples};

const SERIES: usize = 700;

/// Writes `SERIES` series in three rounds (two flushed into blocks, one left in the head) so
/// that most series have pieces in several sources, some of them at the same timestamps, and
/// some series have samples only outside the range read. Returns the model.
fn fill(db: &Db) -> Model {
    fill_n(db, SERIES)
}

/// [`fill`] with `series` series.
fn fill_n(db: &Db, series: usize) -> Model {
    let mut model = Model::new();
    for round in 0..3i64 {
        let mut batch = Vec::new();
        for i in 0..series {
            // every 7th series skips a round; every 11th lives only outside [0, 5000]
            if (i as i64 + round) % 7 == 0 {
                continue;
            }
            let base = if i % 11 == 0 { 10_000 } else { round * 900 };
            let samples = (0..40)
                .map(|k| Sample::new(base + k * 50, (i as f64) * 1e3 + (round * 100 + k) as f64))
                .collect();
            let host = format!("h{i:04}");
            batch.push(SeriesSamples {
                labels: labels(&[("__name__", "m"), ("host", &host)]),
                samples,
            });
        }
        db.append(&batch).unwrap();
        apply(&mut model, &batch);
        if round < 2 {
            db.flush().unwrap();
        }
    }
    model
}

type Seen = Vec<(Labels, Vec<(i64, u64)>)>;

fn select_each(db: &Db, limits: Limits, stop_after: usize) -> (Seen, Result<(), Error>) {
    let mut seen = Vec::new();
    let all = [Matcher::equal("__name__", "m")];
    let r = db.select_each(&all, 0, 5000, limits, &mut |l, s| {
        seen.push((l, s.iter().map(|x| (x.t, x.v.to_bits())).collect()));
        seen.len() < stop_after
    });
    (seen, r)
}

const NO_LIMITS: Limits = Limits { max_series: usize::MAX, max_samples: usize::MAX };

#[test]
fn a_parallel_selection_is_the_sequential_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    let model = fill(&db);
    let (seen, r) = select_each(&db, NO_LIMITS, usize::MAX);
    r.unwrap();
    let want = expected(&model, &[Matcher::equal("__name__", "m")], 0, 5000);
    assert!(want.len() > 64, "enough series to be read in parallel: {}", want.len());
    assert_eq!(seen.len(), want.len());
    for ((l, s), (wl, ws)) in seen.iter().zip(&want) {
        assert_eq!(l, wl);
        assert_eq!(s, ws, "{l}");
        // the same series selected alone, on the calling thread
        let one: Vec<Matcher> = l.iter().map(|p| Matcher::equal(&p.name, &p.value)).collect();
        assert_eq!(got(&db, &one, 0, 5000), vec![(l.clone(), s.clone())]);
    }
}

#[test]
fn map_runs_on_every_series_and_results_come_in_label_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    let model = fill(&db);
    let want = expected(&model, &[Matcher::equal("__name__", "m")], 0, 5000);
    let mut seen = Vec::new();
    let map = |s: Vec<Sample>| (s.len(), s.iter().map(|x| x.v).sum::<f64>());
    db.select_map_each(
        &[Matcher::equal("__name__", "m")],
        0,
        5000,
        NO_LIMITS,
        &map,
        &mut |l, n, m| {
            seen.push((l, n, m));
            true
        },
    )
    .unwrap();
    assert_eq!(seen.len(), want.len());
    for ((l, n, (len, sum)), (wl, ws)) in seen.iter().zip(&want) {
        assert_eq!(l, wl);
        assert_eq!((*n, *len), (ws.len(), ws.len()));
        assert_eq!(*sum, ws.iter().map(|&(_, v)| f64::from_bits(v)).sum::<f64>());
    }
}

#[test]
fn limits_and_early_stops_cut_at_the_same_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    fill(&db);
    let (all, _) = select_each(&db, NO_LIMITS, usize::MAX);

    // f says stop: exactly that many series, and no error
    let (seen, r) = select_each(&db, NO_LIMITS, 300);
    r.unwrap();
    assert_eq!(seen, all[..300]);

    // the series limit: the series up to the limit are handed over, then the error
    let (seen, r) =
        select_each(&db, Limits { max_series: 400, max_samples: usize::MAX }, usize::MAX);
    assert_eq!(r.unwrap_err().to_string(), "query exceeds the limit of 400 series");
    assert_eq!(seen, all[..400]);

    // the sample limit: every series whose samples fit is handed over
    let total: usize = all.iter().map(|(_, s)| s.len()).sum();
    let limit = total / 2;
    let fit = all
        .iter()
        .scan(0usize, |n, (_, s)| {
            *n += s.len();
            Some(*n)
        })
        .take_while(|&n| n <= limit)
        .count();
    let (seen, r) =
        select_each(&db, Limits { max_series: usize::MAX, max_samples: limit }, usize::MAX);
    assert_eq!(r.unwrap_err().to_string(), format!("query exceeds the limit of {limit} samples"));
    assert_eq!(seen, all[..fit]);
}

#[test]
fn a_panic_in_map_reaches_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open(dir.path(), test_opts()));
    // more batches than may be in flight at once, so that the other batches wait for the one
    // that failed
    fill_n(&db, 2000);
    let (tx, rx) = std::sync::mpsc::channel();
    let db2 = db.clone();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let map = |s: Vec<Sample>| {
                // one series fails: the other reader goes on
                let v = s.first().map_or(0.0, |x| x.v);
                assert!(!(500_000.0..501_000.0).contains(&v), "map failed on purpose");
                s.len()
            };
            let all = [Matcher::equal("__name__", "m")];
            db2.select_map_each(&all, 0, 5000, NO_LIMITS, &map, &mut |_, _, _| true)
        }));
        let _ = tx.send(r.is_err());
    });
    let panicked = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the selection neither returned nor panicked within 60 s");
    assert!(panicked, "the panic in map was lost");
}
