//! The read path's other questions: series, label names, label values (with matchers, time
//! ranges and limits) across head and blocks, and selection limits.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use ocelli_model::{MatchOp, Matcher, Sample};
use ocelli_tsdb::{Error, Limits, SeriesSamples};

fn put(db: &ocelli_tsdb::Db, pairs: &[(&str, &str)], t: i64) {
    db.append(&[SeriesSamples { labels: labels(pairs), samples: vec![Sample::new(t, 1.0)] }])
        .unwrap();
}

#[test]
fn label_apis_over_head_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    put(&db, &[("__name__", "cpu"), ("host", "a"), ("csp", "aws")], 100);
    put(&db, &[("__name__", "cpu"), ("host", "b"), ("csp", "gcp")], 100);
    db.flush().unwrap(); // these two now live in a block for partition 0
    put(&db, &[("__name__", "mem"), ("host", "c"), ("zone", "z")], 5000);

    assert_eq!(db.label_names(&[], 0, 10_000, 0).unwrap(), ["__name__", "csp", "host", "zone"]);
    assert_eq!(db.label_values("host", &[], 0, 10_000, 0).unwrap(), ["a", "b", "c"]);
    assert_eq!(db.label_values("host", &[], 0, 10_000, 2).unwrap(), ["a", "b"]);
    let cpu = [Matcher::equal("__name__", "cpu")];
    assert_eq!(db.label_names(&cpu, 0, 10_000, 0).unwrap(), ["__name__", "csp", "host"]);
    assert_eq!(db.label_values("csp", &cpu, 0, 10_000, 0).unwrap(), ["aws", "gcp"]);
    let not_aws = [Matcher::new(MatchOp::NotEqual, "csp", "aws").unwrap()];
    let series = db.series(&not_aws, 0, 10_000, 0).unwrap();
    let hosts: Vec<&str> = series.iter().map(|l| l.get("host").unwrap()).collect();
    assert_eq!(hosts, ["b", "c"]);
    // a time range that misses the block leaves only the head
    assert_eq!(db.label_values("host", &[], 4000, 6000, 0).unwrap(), ["c"]);
    assert!(matches!(
        db.label_names(&[], 10, 5, 0),
        Err(Error::InvalidTimeRange { mint: 10, maxt: 5 })
    ));
}

#[test]
fn selection_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    for i in 0..10 {
        let host = format!("h{i}");
        db.append(&[SeriesSamples {
            labels: labels(&[("__name__", "m"), ("host", &host)]),
            samples: (0..10).map(|t| Sample::new(t, 0.0)).collect(),
        }])
        .unwrap();
    }
    let all = [Matcher::equal("__name__", "m")];
    let lim = |max_series, max_samples| Limits { max_series, max_samples };
    assert_eq!(db.select_with_limits(&all, 0, 100, lim(10, 100)).unwrap().len(), 10);
    let e = db.select_with_limits(&all, 0, 100, lim(9, 100)).unwrap_err();
    assert_eq!(e.to_string(), "query exceeds the limit of 9 series");
    let e = db.select_with_limits(&all, 0, 100, lim(10, 99)).unwrap_err();
    assert_eq!(e.to_string(), "query exceeds the limit of 99 samples");
}

#[test]
fn a_series_without_samples_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    db.append(&[
        SeriesSamples { labels: labels(&[("__name__", "empty"), ("host", "x")]), samples: vec![] },
        SeriesSamples {
            labels: labels(&[("__name__", "full"), ("host", "y")]),
            samples: vec![Sample::new(1, 1.0)],
        },
    ])
    .unwrap();
    assert_eq!(db.label_values("__name__", &[], 0, 10, 0).unwrap(), ["full"]);
    assert_eq!(db.label_values("host", &[], 0, 10, 0).unwrap(), ["y"]);
}

#[test]
fn raw_appends_validate_only_new_series_and_name_the_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    let smp = [Sample::new(1, 1.0)];
    let raw = |labels: &'static [(&'static [u8], &'static [u8])]| ocelli_model::RawSeries {
        labels,
        samples: &smp,
    };
    let good = raw(&[(b"__name__", b"up"), (b"job", b"a")]);
    db.append_raw(&[good]).unwrap();
    // the second series is new and invalid: nothing of the batch is stored
    let other = raw(&[(b"__name__", b"up"), (b"job", b"b")]);
    let bad = raw(&[(b"__name__", b"up"), (b"job", b"\xff")]);
    let err = db.append_raw(&[other, bad]).unwrap_err();
    assert!(matches!(err, Error::InvalidLabels { index: 1, .. }), "{err}");
    assert_eq!(err.to_string(), r#"series 1: value of label "job" is not valid UTF-8"#);
    let all = db.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].labels, labels(&[("__name__", "up"), ("job", "a")]));
    // a known series found by its bytes gets the samples
    db.append_raw(&[ocelli_model::RawSeries {
        labels: good.labels,
        samples: &[Sample::new(2, 2.0)],
    }])
    .unwrap();
    let all = db.select(&[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(all[0].samples, [Sample::new(1, 1.0), Sample::new(2, 2.0)]);
}
