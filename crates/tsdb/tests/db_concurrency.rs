//! Reads during writes, head cuts and compactions: a reader never sees a sample disappear, and
//! at the end sees exactly what was written.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use ocelli_model::{Matcher, Sample};
use ocelli_tsdb::{Options, SeriesSamples};

#[test]
fn readers_never_lose_samples_across_cuts_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        background: true,
        maintenance_interval: Duration::from_millis(5),
        head_max_bytes: 1024,
        block_duration_ms: 10_000,
        ..test_opts()
    };
    let db = Arc::new(open(dir.path(), opts));
    let done = Arc::new(AtomicBool::new(false));
    let series = 20;
    let steps = 600i64;

    let writer = {
        let db = db.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for t in 0..steps {
                let batch: Vec<SeriesSamples> = (0..series)
                    .map(|s| SeriesSamples {
                        labels: labels(&[("__name__", "c"), ("s", &format!("{s:02}"))]),
                        samples: vec![Sample::new(t * 100, (t * s) as f64)],
                    })
                    .collect();
                db.append(&batch).unwrap();
                if t % 10 == 0 {
                    // give the maintenance thread time to cut and compact in between
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    let m = [Matcher::equal("__name__", "c")];
    let mut last = 0usize;
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) || reads == 0 {
        let got = db.select(&m, i64::MIN, i64::MAX).unwrap();
        let n: usize = got.iter().map(|s| s.samples.len()).sum();
        assert!(n >= last, "a read saw {n} samples after an earlier one saw {last}");
        for s in &got {
            assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t), "unsorted or duplicate samples");
        }
        last = n;
        reads += 1;
    }
    writer.join().unwrap();
    let got = db.select(&m, i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), series as usize);
    for s in &got {
        let k: i64 = s.labels.get("s").unwrap().parse().unwrap();
        let want: Vec<Sample> = (0..steps).map(|t| Sample::new(t * 100, (t * k) as f64)).collect();
        assert_eq!(s.samples, want);
    }
    let st = db.stats();
    assert!(
        st.blocks >= 1 && st.block_samples > 0,
        "expected cuts to have produced blocks: {st:?}"
    );
}
