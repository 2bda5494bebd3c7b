//! Crash test with a real process: a child process appends batches and prints each batch number
//! once `append` has returned; the parent SIGKILLs it at random moments (20 times, with head
//! cuts, compactions and downsampling running in the child), and after each kill reopens the
//! data directory, finds no damaged block and every sample acknowledged so far, by this run
//! or an earlier one. At the end it checks that the children did compact and downsample.
//!
//! The samples lie within a few days (a handful of blocks and rollup spans), so every run
//! recovers, compacts and downsamples about as much as the one before, not an ever longer
//! history; each run writes in order from its own place in that range, which later runs
//! partly overlap (out of order).
//!
//! The child is this same test binary, re-run with `OCELLI_CRASH_CHILD` set, running only
//! `crash_child`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ocelli_model::{Matcher, Sample};
use ocelli_tsdb::{BlockMeta, Db, Options, Rollup, SeriesSamples};

const SERIES: usize = 20;
const RUNS: i64 = 20;
const DAY: i64 = 24 * 3600 * 1000;
/// Batch k writes every series at timestamp `t(k)`; the permutation makes them out of order.
/// Batch numbers stay below it, so no two batches share a timestamp.
const PRIME: i64 = 20_000_003;

/// In 20 ms steps: about 4.6 days.
fn t_of(k: i64) -> i64 {
    (k * 1009) % PRIME * 20
}

fn v_of(k: i64, s: usize) -> f64 {
    k as f64 + s as f64 / 1000.0
}

fn series_labels(s: usize) -> ocelli_model::Labels {
    let host = format!("h{}", s % 7);
    let id = format!("{s}");
    labels(&[("__name__", "crash_metric"), ("host", &host), ("id", &id)])
}

fn child_opts() -> Options {
    Options {
        head_max_bytes: 64 << 10,
        maintenance_interval: Duration::from_millis(20),
        block_duration_ms: DAY,
        retention_ms: i64::MAX / 4,
        // rollups of the older days, 5 m ones and 1 h ones built from them
        rollups: vec![
            Rollup { resolution_ms: 5 * 60_000, after_ms: DAY / 2, retention_ms: 90 * DAY },
            Rollup { resolution_ms: 3_600_000, after_ms: DAY, retention_ms: 365 * DAY },
        ],
        ..Options::default()
    }
}

/// The child: appends forever from batch `OCELLI_CRASH_FIRST` on.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("OCELLI_CRASH_CHILD") else { return };
    let first: i64 = std::env::var("OCELLI_CRASH_FIRST").unwrap().parse().unwrap();
    let (db, _) = Db::open(&dir, child_opts()).unwrap();
    println!("ready");
    // bounded, and paced so that it is still appending when the kill comes (at most 430 ms
    // after "ready"), whatever the machine
    for k in first..first + 20_000 {
        if k % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let batch: Vec<SeriesSamples> = (0..SERIES)
            .map(|s| SeriesSamples {
                labels: series_labels(s),
                samples: vec![Sample::new(t_of(k), v_of(k, s))],
            })
            .collect();
        db.append(&batch).unwrap();
        println!("ack {k}");
    }
}

#[test]
fn sigkill_loses_no_acknowledged_sample() {
    if std::env::var("OCELLI_CRASH_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<i64> = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for run in 0..RUNS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("OCELLI_CRASH_CHILD", dir.path())
            .env("OCELLI_CRASH_FIRST", (run * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let kill_after = Duration::from_millis(30 + rng % 400);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest has printed `test crash_child ... ` on the same line
                if line.ends_with("ready") {
                    let _ = ready_tx.send(());
                } else if let Some(k) = line.strip_prefix("ack ") {
                    acks.push(k.parse::<i64>().unwrap());
                }
            }
            acks
        });
        // the kill clock starts once the child has opened (and so recovered) the data
        let _ = ready_rx.recv_timeout(Duration::from_secs(60));
        let start = Instant::now();
        while start.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SIGKILL: no destructor, no flush; and it lands while the child appends
        assert!(
            child.try_wait().unwrap().is_none(),
            "run {run}: the child stopped before the kill"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // a kill can land before the first acknowledgement on a loaded machine; that run then
        // only checks recovery of the earlier ones (the total is checked at the end)
        acked.extend(reader.join().unwrap());

        // reopen and check every batch acknowledged so far, by this run or an earlier one
        let (db, report) =
            Db::open(dir.path(), Options { background: false, ..child_opts() }).unwrap();
        assert!(
            report.quarantined.is_empty(),
            "run {run}: damaged blocks {:?}",
            report.quarantined
        );
        let got =
            db.select(&[Matcher::equal("__name__", "crash_metric")], i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), SERIES);
        for series in &got {
            let s: usize = series.labels.get("id").unwrap().parse().unwrap();
            let have: std::collections::HashMap<i64, u64> =
                series.samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
            for &k in &acked {
                assert_eq!(
                    have.get(&t_of(k)),
                    Some(&v_of(k, s).to_bits()),
                    "run {run}: acknowledged batch {k} missing for series {s}"
                );
            }
        }
    }
    assert!(acked.len() > 100, "too few acknowledged batches to mean anything: {}", acked.len());

    // the kills hit children that compacted and downsampled, not only ones that cut heads
    let db = open(dir.path(), Options { background: false, ..child_opts() });
    let rollups: Vec<(i64, usize)> =
        db.stats().rollups.iter().map(|r| (r.resolution_ms, r.blocks)).collect();
    assert!(
        rollups.len() == child_opts().rollups.len() && rollups.iter().all(|r| r.1 > 0),
        "not every resolution was downsampled: {rollups:?}"
    );
    let levels: Vec<u32> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| {
            let meta = std::fs::read(e.unwrap().path().join("meta.json")).unwrap();
            serde_json::from_slice::<BlockMeta>(&meta).unwrap().level
        })
        .collect();
    assert!(levels.iter().any(|&l| l > 1), "no compacted block: levels {levels:?}");
}
