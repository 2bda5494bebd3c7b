//! The append observer sees every stored batch, in order, with full label sets, and nothing
//! from a batch that was refused.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use ocelli_model::{Labels, Sample};
use ocelli_tsdb::{AppendObserver, Db, Options, SeriesSamples};
use parking_lot::Mutex;

#[derive(Default)]
struct Seen(Mutex<Vec<(String, Vec<Sample>)>>);

impl AppendObserver for Seen {
    fn appended(&self, batch: &[(Labels, &[Sample])]) {
        let mut seen = self.0.lock();
        for (l, s) in batch {
            seen.push((l.to_string(), s.to_vec()));
        }
    }
}

fn series(name: &str, t: i64, v: f64) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::from_pairs([("__name__", name), ("job", "j")]).unwrap(),
        samples: vec![Sample::new(t, v)],
    }
}

#[test]
fn every_stored_batch_is_told_in_order_with_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) =
        Db::open(dir.path(), Options { background: false, ..Options::default() }).unwrap();
    db.append(&[series("before", 1, 1.0)]).unwrap();
    let seen = Arc::new(Seen::default());
    db.set_observer(Some(seen.clone()));
    db.append(&[series("a", 10, 1.0), series("before", 10, 2.0)]).unwrap();
    // a new head after the cut: series known before are looked up again
    db.flush().unwrap();
    db.append(&[series("a", 20, 3.0)]).unwrap();
    // an invalid batch is stored nowhere and told to no one
    let bad = SeriesSamples {
        labels: Labels::from_pairs([("__name__", "0bad")]).unwrap(),
        samples: vec![Sample::new(30, 1.0)],
    };
    assert!(db.append(&[series("a", 30, 4.0), bad]).is_err());
    db.set_observer(None);
    db.append(&[series("a", 40, 5.0)]).unwrap();
    let got: Vec<(String, i64, f64)> =
        seen.0.lock().iter().map(|(l, s)| (l.clone(), s[0].t, s[0].v)).collect();
    assert_eq!(
        got,
        [
            (r#"a{job="j"}"#.to_string(), 10, 1.0),
            (r#"before{job="j"}"#.to_string(), 10, 2.0),
            (r#"a{job="j"}"#.to_string(), 20, 3.0),
        ]
    );
}
