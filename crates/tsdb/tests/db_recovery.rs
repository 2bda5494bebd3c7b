//! Bad data on disk: the engine opens anyway, says precisely what it dropped, and serves the
//! rest. Also: restart replays the WAL, and a second process cannot open a locked directory.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use ocelli_model::{Matcher, Sample};
use ocelli_tsdb::{Db, Error, SeriesSamples};

fn batch(name: &str, t0: i64, n: i64) -> Vec<SeriesSamples> {
    (0..3)
        .map(|h| SeriesSamples {
            labels: labels(&[("__name__", name), ("host", &format!("h{h}"))]),
            samples: (0..n).map(|i| Sample::new(t0 + i * 10, (h * 1000 + i) as f64)).collect(),
        })
        .collect()
}

fn count(db: &Db, name: &str) -> usize {
    db.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|s| s.samples.len())
        .sum()
}

fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        fs::read_dir(dir.join("blocks")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

#[test]
fn restart_replays_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), test_opts());
        db.append(&batch("a", 0, 50)).unwrap();
    }
    let (db, report) = Db::open(dir.path(), test_opts()).unwrap();
    assert_eq!(report.samples_replayed, 150);
    assert!(report.wal.truncations.is_empty());
    assert_eq!(count(&db, "a"), 150);
}

#[test]
fn truncated_wal_segment_keeps_the_records_before_the_tear() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), test_opts());
        for i in 0..10 {
            db.append(&batch("a", i * 1000, 10)).unwrap();
        }
    }
    let seg = wal_segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 7).unwrap();
    let (db, report) = Db::open(dir.path(), test_opts()).unwrap();
    // the last batch (one record) is torn; the nine before it are intact
    assert_eq!(report.samples_replayed, 9 * 30);
    assert_eq!(report.wal.truncations.len(), 1);
    let note = &report.wal.truncations[0];
    assert!(note.contains("torn record") && note.contains("bytes dropped"), "{note}");
    assert_eq!(count(&db, "a"), 270);
    // writes go on after recovery
    db.append(&batch("a", 99_000, 1)).unwrap();
    assert_eq!(count(&db, "a"), 273);
}

#[test]
fn flipped_byte_in_a_block_quarantines_only_that_block() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), test_opts());
        db.append(&batch("a", 0, 50)).unwrap(); // partition 0 (block duration 1000 ms)
        db.append(&batch("b", 5000, 50)).unwrap(); // partition 5
        db.flush().unwrap();
        db.append(&batch("c", 10_000, 5)).unwrap(); // stays in the WAL
    }
    let blocks = block_dirs(dir.path());
    assert_eq!(blocks.len(), 2);
    let victim = &blocks[0];
    let chunks = victim.join("chunks");
    let mut data = fs::read(&chunks).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x40;
    fs::write(&chunks, data).unwrap();

    let (db, report) = Db::open(dir.path(), test_opts()).unwrap();
    assert_eq!(report.quarantined.len(), 1, "{:?}", report.quarantined);
    let line = &report.quarantined[0];
    assert!(line.contains("chunks checksum mismatch"), "{line}");
    assert!(line.contains("(3 series, 150 samples, time 0..=490 ms)"), "{line}");
    let name = victim.file_name().unwrap().to_str().unwrap();
    let moved = dir.path().join("quarantine").join(name);
    assert!(moved.join("chunks").exists());
    let reason = fs::read_to_string(moved.join("REASON")).unwrap();
    assert!(reason.contains("checksum mismatch"), "{reason}");
    // the rest is served
    assert_eq!(count(&db, "a"), 0);
    assert_eq!(count(&db, "b"), 150);
    assert_eq!(count(&db, "c"), 15);
}

#[test]
fn missing_index_file_quarantines_the_block() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), test_opts());
        db.append(&batch("a", 0, 50)).unwrap();
        db.append(&batch("b", 5000, 50)).unwrap();
        db.flush().unwrap();
    }
    let blocks = block_dirs(dir.path());
    fs::remove_file(blocks[1].join("index")).unwrap();
    let (db, report) = Db::open(dir.path(), test_opts()).unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert!(report.quarantined[0].contains("index"), "{:?}", report.quarantined);
    assert_eq!(count(&db, "a"), 150);
    assert_eq!(count(&db, "b"), 0);
}

#[test]
fn flipped_byte_in_the_index_is_caught_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path(), test_opts());
        db.append(&batch("a", 0, 50)).unwrap();
        db.flush().unwrap();
    }
    let ix = block_dirs(dir.path())[0].join("index");
    let mut data = fs::read(&ix).unwrap();
    data[10] ^= 1;
    fs::write(&ix, data).unwrap();
    let (db, report) = Db::open(dir.path(), test_opts()).unwrap();
    assert!(report.quarantined[0].contains("index checksum mismatch"), "{:?}", report.quarantined);
    assert_eq!(count(&db, "a"), 0);
    // and the engine still takes writes
    db.append(&batch("a", 0, 1)).unwrap();
    assert_eq!(count(&db, "a"), 3);
}

#[test]
fn leftover_tmp_block_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), test_opts()));
    fs::create_dir_all(dir.path().join("blocks/0000000000000009.tmp")).unwrap();
    fs::write(dir.path().join("blocks/notes.txt"), "not a block").unwrap();
    let (_db, report) = Db::open(dir.path(), test_opts()).unwrap();
    assert_eq!(report.cleaned.len(), 1, "{:?}", report.cleaned);
    assert!(dir.path().join("blocks/notes.txt").exists(), "stray files are left alone");
    assert!(!dir.path().join("blocks/0000000000000009.tmp").exists());
}

#[test]
fn second_open_of_a_locked_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _db = open(dir.path(), test_opts());
    match Db::open(dir.path(), test_opts()) {
        Err(e @ Error::Locked(_)) => assert!(e.to_string().contains("locked by another process")),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn invalid_batch_is_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), test_opts());
    let mut b = batch("a", 0, 5);
    b.push(SeriesSamples { labels: labels(&[("host", "x")]), samples: vec![Sample::new(1, 1.0)] });
    let e = db.append(&b).unwrap_err().to_string();
    assert!(e.contains("no __name__"), "{e}");
    assert_eq!(count(&db, "a"), 0);
}

#[test]
fn retention_by_age_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let opts =
        ocelli_tsdb::Options { block_duration_ms: hour, retention_ms: 24 * hour, ..test_opts() };
    let db = open(dir.path(), opts.clone());
    db.append(&batch("old", now - 48 * hour, 10)).unwrap();
    db.append(&batch("new", now - hour, 10)).unwrap();
    db.flush().unwrap();
    assert_eq!(db.apply_retention().unwrap(), 1);
    assert_eq!((count(&db, "old"), count(&db, "new")), (0, 30));
    drop(db);

    // size: a limit below one block keeps deleting oldest blocks
    let db = open(dir.path(), ocelli_tsdb::Options { retention_bytes: 1, ..opts });
    db.append(&batch("newer", now, 10)).unwrap();
    db.flush().unwrap();
    assert!(db.apply_retention().unwrap() >= 1);
    assert_eq!(db.stats().blocks, 0);
}

#[test]
fn concurrent_appends_are_group_committed_under_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ocelli_tsdb::Options { fsync: ocelli_tsdb::FsyncPolicy::Always, ..test_opts() };
    let db = std::sync::Arc::new(open(dir.path(), opts.clone()));
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    db.append(&batch(&format!("w{w}"), i * 100, 1)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = db.stats();
    assert_eq!(st.wal_records, 801, "800 appends and the generation marker written at open");
    // every append waited for a sync, but syncs were shared between concurrent appenders
    assert!(st.wal_syncs >= 1 && st.wal_syncs < st.wal_records, "{st:?}");
    assert_eq!(st.wal_writes, st.wal_syncs);
    drop(db);
    let db = open(dir.path(), opts);
    for w in 0..8 {
        assert_eq!(count(&db, &format!("w{w}")), 300);
    }
}
