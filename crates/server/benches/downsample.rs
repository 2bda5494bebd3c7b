//! Downsampling benchmark (a bench binary, not a timed test): long range queries over many
//! series, from raw samples against from rollups, and what each resolution costs on disk.
//!
//! Generates `--series` series (half gauges, half counters with the odd reset, values with
//! two decimals) sampled every `--interval` seconds over `--days` days ending now, appends
//! them in time order the way ingest would, with the engine's background maintenance on (head
//! cuts, compaction), then reopens the data and times one downsampling pass on its own, at the
//! default ages (5 m after 40 h, 1 h after 10 days).
//! Raw retention is set past the data so that raw and rollups can be compared on the same
//! days. Then it reports:
//!
//! - disk bytes per resolution (raw blocks, 5 m rollups, 1 h rollups) and per day of data;
//! - for each query, over the whole range at a 1 h step: the median of `--runs` evaluations
//!   with `resolution=raw` and with `auto`, the samples or windows each read, and the largest
//!   relative difference between the two answers.
//!
//! Run: `cargo bench -p ocelli-server --bench downsample -- [--series 10000] [--days 30]
//! [--interval 60] [--runs 3] [--data-dir DIR]`.
#![allow(clippy::unwrap_used)] // a benchmark: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ocelli_model::rollup::Window;
use ocelli_model::{Labels, Matcher, Sample};
use ocelli_promql::{Engine, Options as EngineOptions, QueryValue, Resolution, Storage};
use ocelli_tsdb::{Db, Limits, Options, SeriesSamples};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

/// The engine over the storage, counting what it reads.
struct Counted<'a> {
    db: &'a Db,
    read: AtomicUsize,
}

impl Storage for Counted<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ocelli_promql::StorageError> {
        let mut out = Vec::new();
        self.select_each(matchers, mint, maxt, &mut |l, s| {
            out.push((l, s));
            true
        })?;
        Ok(out)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<(), ocelli_promql::StorageError> {
        let lim = Limits { max_series: usize::MAX, max_samples: usize::MAX };
        self.db
            .select_each(matchers, mint, maxt, lim, &mut |l, s| {
                self.read.fetch_add(s.len(), Ordering::Relaxed);
                f(l, s)
            })
            .map_err(ocelli_storage::storage_error)
    }

    fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        self.db.rollup_resolutions(mint, maxt)
    }

    fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        f: &mut dyn FnMut(Labels, Vec<Window>) -> bool,
    ) -> Result<(), ocelli_promql::StorageError> {
        let lim = Limits { max_series: usize::MAX, max_samples: usize::MAX };
        self.db
            .select_windows_each(matchers, mint, maxt, res, lim, &mut |l, w| {
                self.read.fetch_add(w.len(), Ordering::Relaxed);
                f(l, w)
            })
            .map_err(ocelli_storage::storage_error)
    }
}

fn arg(name: &str, default: i64) -> i64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().map(|m| (m.is_dir(), m.len())).unwrap_or((false, 0));
        n += if m.0 { dir_bytes(&e.path()) } else { m.1 };
    }
    n
}

fn main() {
    let series = arg("--series", 10_000) as usize;
    let days = arg("--days", 30);
    let interval = arg("--interval", 60) * 1000;
    let runs = arg("--runs", 3) as usize;
    let args: Vec<String> = std::env::args().collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = args
        .iter()
        .position(|a| a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // loaded with background maintenance (head cuts, compaction) but no downsampling, which
    // is then timed on its own
    let opts = Options {
        retention_ms: (days + 30) * DAY,
        fsync: ocelli_tsdb::FsyncPolicy::Never,
        ..Options::default()
    };
    let (db, _) = Db::open(&dir, Options { rollups: Vec::new(), ..opts.clone() }).unwrap();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let end = now.div_euclid(H) * H;
    let start = end - days * DAY;
    let labels: Vec<Labels> = (0..series)
        .map(|i| {
            let (name, kind) =
                if i % 2 == 0 { ("cpu_usage", "cpu") } else { ("net_bytes_total", "dev") };
            let host = format!("h{}", i / 10);
            let k = format!("{}", (i % 10) / 2);
            Labels::from_pairs([("__name__", name), ("host", host.as_str()), (kind, k.as_str())])
                .unwrap()
        })
        .collect();
    let mut vals: Vec<f64> = (0..series).map(|i| (i % 100) as f64).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // an hour of samples per batch, all series
    let t0 = Instant::now();
    let mut total = 0u64;
    let mut t = start + 1000;
    while t <= end {
        let stop = (t + H).min(end + 1);
        let mut batch: Vec<SeriesSamples> = labels
            .iter()
            .map(|l| SeriesSamples { labels: l.clone(), samples: Vec::with_capacity(60) })
            .collect();
        let mut ts = t;
        while ts < stop {
            for (i, s) in batch.iter_mut().enumerate() {
                let r = rnd();
                let v = &mut vals[i];
                if i % 2 == 0 {
                    *v = ((*v + (r % 201) as f64 / 100.0 - 1.0).clamp(0.0, 100.0) * 100.0).round()
                        / 100.0;
                } else if r % 50_000 == 0 {
                    *v = 0.0;
                } else {
                    *v += (r % 10_000) as f64;
                }
                s.samples.push(Sample::new(ts, *v));
            }
            ts += interval;
        }
        total += batch.iter().map(|s| s.samples.len() as u64).sum::<u64>();
        db.append(&batch).unwrap();
        t = ts;
    }
    let load_s = t0.elapsed().as_secs_f64();
    db.flush().unwrap();
    drop(db);
    let (db, _) = Db::open(&dir, Options { background: false, ..opts }).unwrap();
    let t1 = Instant::now();
    let built = db.downsample().unwrap();
    let ds_s = t1.elapsed().as_secs_f64();
    let st = db.stats();
    // raw samples under the 5 m rollups (the 1 h ones are built from those)
    let days_5m = st.rollups.first().map_or(0, |r| r.blocks) as f64;
    let under = total as f64 * days_5m / days as f64;
    println!(
        "loaded {total} samples ({series} series, {days} days, every {} s) in {load_s:.1} s; \
         downsampling built {built} rollups in {ds_s:.1} s ({:.2}M raw samples/s)",
        interval / 1000,
        under / ds_s / 1e6
    );
    println!(
        "raw blocks: {} bytes ({:.2} bytes/sample, {:.1} MB/day)",
        st.block_bytes,
        st.block_bytes as f64 / total as f64,
        st.block_bytes as f64 / days as f64 / 1e6
    );
    for r in &st.rollups {
        let span_days = r.blocks.max(1) as f64;
        println!(
            "{} s rollups: {} blocks (days), {} windows, {} bytes ({:.1} MB/day, {:.1}x smaller than raw per day)",
            r.resolution_ms / 1000,
            r.blocks,
            r.windows,
            r.bytes,
            r.bytes as f64 / span_days / 1e6,
            (st.block_bytes as f64 / days as f64) / (r.bytes as f64 / span_days)
        );
    }
    println!("data directory: {} bytes", dir_bytes(&dir));
    let engine = Engine::new(EngineOptions { max_samples: usize::MAX, ..EngineOptions::default() });
    let (qs, qe) = (start + H, end);
    println!("queries over [{qs}, {qe}] ms ({days} days), step 1h, median of {runs}:");
    println!("| query | raw s | auto s | speed-up | read raw | read auto | max rel. diff |");
    println!("|---|---|---|---|---|---|---|");
    for q in [
        "avg_over_time(cpu_usage[1h])",
        "max_over_time(cpu_usage[1h])",
        "rate(net_bytes_total[1h])",
        "sum by (host) (increase(net_bytes_total[1d]))",
        "cpu_usage",
    ] {
        let time = |res: Resolution| {
            let mut ts = Vec::new();
            let mut last = None;
            let mut read = 0;
            for _ in 0..runs {
                let s = Counted { db: &db, read: AtomicUsize::new(0) };
                let t = Instant::now();
                let v = engine.range_at(&s, q, qs, qe, H, res).unwrap();
                ts.push(t.elapsed().as_secs_f64());
                read = s.read.load(Ordering::Relaxed);
                last = Some(v);
            }
            ts.sort_by(f64::total_cmp);
            (ts[ts.len() / 2], read, last.unwrap())
        };
        let (raw_s, raw_n, raw_v) = time(Resolution::Raw);
        let (auto_s, auto_n, auto_v) = time(Resolution::Auto);
        let mut diff = 0.0f64;
        if let (QueryValue::Matrix(a), QueryValue::Matrix(b)) = (&raw_v, &auto_v) {
            assert_eq!(a.len(), b.len(), "{q}: series differ");
            for ((la, sa), (lb, sb)) in a.iter().zip(b) {
                assert_eq!(la, lb);
                assert_eq!(sa.len(), sb.len(), "{q} {la}: steps differ");
                for (x, y) in sa.iter().zip(sb) {
                    let d = (x.v - y.v).abs() / x.v.abs().max(y.v.abs()).max(1e-300);
                    diff = diff.max(d);
                }
            }
        }
        println!(
            "| `{q}` | {raw_s:.3} | {auto_s:.3} | {:.1}x | {raw_n} | {auto_n} | {diff:.1e} |",
            raw_s / auto_s
        );
    }
}
