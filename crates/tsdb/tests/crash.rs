//! Crash test with a real process: a child process appends batches and prints each batch number
//! once `append` has returned; the parent SIGKILLs it at random moments (20 times, with head
//! cuts and compactions running in the child), and after each kill reopens the data directory
//! and finds every acknowledged sample.
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
use ocelli_tsdb::{Db, Options, SeriesSamples};

const SERIES: usize = 20;
/// Batch k writes every series at timestamp `t(k)`; the permutation makes them out of order.
const PRIME: i64 = 100_000_007;

fn t_of(k: i64) -> i64 {
    (k * 7919) % PRIME * 1000
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
        block_duration_ms: 3600 * 1000 * 24 * 30,
        retention_ms: i64::MAX / 4,
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
    // bounded, and paced so that a run lasts a few hundred ms whatever the machine
    for k in first..first + 2000 {
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
    for run in 0..20i64 {
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
                if line == "ready" {
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
        // SIGKILL: no destructor, no flush
        child.kill().unwrap();
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        // a kill can land before the first acknowledgement on a loaded machine; that run then
        // only checks recovery of the earlier ones (the total is checked at the end)
        acked.extend(&acks);
        // every run checks its own batches; the last run checks all of them
        let check = if run == 19 { acked.clone() } else { acks };

        // reopen and check every acknowledged batch so far
        let db = open(dir.path(), Options { background: false, ..child_opts() });
        let got =
            db.select(&[Matcher::equal("__name__", "crash_metric")], i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), SERIES);
        for series in &got {
            let s: usize = series.labels.get("id").unwrap().parse().unwrap();
            let have: std::collections::HashMap<i64, u64> =
                series.samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
            for &k in &check {
                assert_eq!(
                    have.get(&t_of(k)),
                    Some(&v_of(k, s).to_bits()),
                    "run {run}: acknowledged batch {k} missing for series {s}"
                );
            }
        }
    }
    assert!(acked.len() > 100, "too few acknowledged batches to mean anything: {}", acked.len());
}
