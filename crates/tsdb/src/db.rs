//! The engine: opens a data directory, appends batches through the WAL into the head, cuts the
//! head into blocks, compacts and expires blocks, and answers selections over all of them.
//!
//! Write path: [`Db::append`] validates the whole batch first (all or nothing), then, under
//! the append lock, resolves series in the head, queues one WAL record and applies the samples;
//! outside the lock it waits for the WAL commit. When `append` returns the batch is in the WAL.
//!
//! Read priority, for samples of one series at one timestamp: the current head, then heads
//! being written out, then blocks from the highest sequence number down; the first one holding
//! the timestamp wins. Compaction always merges every block that overlaps the merged time
//! windows, so a compacted block never overlaps a block it does not contain, and that order
//! stays "last written wins".
//!
//! Maintenance (cut, compaction, retention) runs on one background thread and is serialised by
//! a mutex; the fsync-interval policy has its own small thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::borrow::Cow;

use ocelli_model::{Labels, Matcher, RawSeries, Sample};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::block::{Block, BlockWriter};
use crate::error::{Error, IoContext, Result};
use crate::filenames::{
    BLOCKS_DIR, DELETING_SUFFIX, LOCK_FILE, QUARANTINE_DIR, QUARANTINE_REASON, TMP_SUFFIX, WAL_DIR,
};
use crate::head::{AppendTally, Head, MemSeries, dedup_last};
use crate::index::ChunkRef;
use crate::record;
use crate::wal::{self, FsyncPolicy, ReplayReport, Wal};

mod downsample;
mod select;

pub use downsample::{ROLLUP_SPAN_MS, Rollup, RollupStats};
pub use ocelli_model::rollup::Window;

/// Run on the maintenance thread after a head cut or a compaction; see [`set_after_maintenance`].
static AFTER_MAINTENANCE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets a hook the maintenance thread runs after a head cut or a compaction (once; later calls
/// are ignored). Both allocate the whole head or block being written and free it at the end;
/// the binary uses this to hand that memory back to the system, which its allocator would
/// otherwise keep for the thread until it next runs (measured: about 190 MB resident after
/// ingesting 100k series with three cuts).
pub fn set_after_maintenance(f: fn()) {
    let _ = AFTER_MAINTENANCE.set(f);
}

/// A series of a batch being appended, as the head had it before the append lock was taken.
enum Resolved<'a> {
    Found(Arc<crate::head::MemSeries>),
    New(Cow<'a, Labels>),
}

/// Engine settings. `Options::default()` is what `ocelli server` uses unless configured.
#[derive(Clone, Debug)]
pub struct Options {
    /// When the WAL is synced to the device; see [`FsyncPolicy`]. Default: every 1000 ms.
    pub fsync: FsyncPolicy,
    /// A WAL segment is closed and a new one started past this size. Default 128 MiB.
    pub wal_segment_bytes: u64,
    /// The head is cut into blocks once its compressed sample data reaches this. Default 64 MiB.
    pub head_max_bytes: u64,
    /// ... or once this long has passed since the last cut. Default 30 minutes.
    pub head_max_age: Duration,
    /// Width of the time partitions blocks are cut into, in ms. Default 2 h.
    pub block_duration_ms: i64,
    /// Blocks whose newest sample is older than the newest sample stored minus this are
    /// deleted. Default 15 days.
    pub retention_ms: i64,
    /// Oldest blocks are deleted while blocks and WAL together exceed this. Default 15 GB.
    pub retention_bytes: u64,
    /// How often the background thread looks for work. Default 1 s.
    pub maintenance_interval: Duration,
    /// Run the background maintenance thread. Tests turn it off and call the steps directly.
    pub background: bool,
    /// Limits applied to every selection.
    pub limits: Limits,
    /// Resolutions to downsample to, ascending, each a multiple of the one before and a
    /// divisor of a day. Default [`Rollup::defaults`]: 5 m after 40 h (kept 90 days), 1 h after
    /// 10 days (kept a year). Empty: no downsampling.
    pub rollups: Vec<Rollup>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: FsyncPolicy::default(),
            wal_segment_bytes: 128 << 20,
            head_max_bytes: 64 << 20,
            head_max_age: Duration::from_secs(30 * 60),
            block_duration_ms: 2 * 3600 * 1000,
            retention_ms: 15 * 24 * 3600 * 1000,
            retention_bytes: 15_000_000_000,
            maintenance_interval: Duration::from_secs(1),
            background: true,
            limits: Limits::default(),
            rollups: Rollup::defaults(),
        }
    }
}

/// Bounds on what one selection may return.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Default 1,000,000 series.
    pub max_series: usize,
    /// Default 50,000,000 samples (Prometheus' `query.max-samples` default).
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_series: 1_000_000, max_samples: 50_000_000 }
    }
}

/// A series with samples, as appended and as selected.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// What opening the data directory found and did.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub wal: ReplayReport,
    pub samples_replayed: u64,
    pub blocks: usize,
    /// One line per block moved to quarantine, with the reason.
    pub quarantined: Vec<String>,
    /// Blocks removed because a compacted block already holds their data, and unfinished
    /// `.tmp` / `.deleting` folders removed.
    pub cleaned: Vec<String>,
}

/// Sizes and counts, for the server's own metrics and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub head_series: usize,
    pub head_samples: u64,
    pub head_bytes: u64,
    pub frozen_heads: usize,
    pub blocks: usize,
    pub block_samples: u64,
    pub block_bytes: u64,
    pub wal_bytes: u64,
    /// WAL records queued (one per append, plus a generation marker at open and at each head
    /// cut), `write` calls and `fdatasync` calls since open.
    pub wal_records: u64,
    pub wal_writes: u64,
    pub wal_syncs: u64,
    /// Samples appended (acknowledged) since open.
    pub appended_samples: u64,
    /// Seconds spent in WAL `fdatasync` since open.
    pub wal_sync_seconds: f64,
    /// Heads written out as blocks, and the seconds it took, since open.
    pub head_writes: u64,
    pub head_write_seconds: f64,
    /// Compaction passes that merged blocks, and the seconds all passes took, since open.
    pub compactions: u64,
    pub compaction_seconds: f64,
    pub min_t: Option<i64>,
    pub max_t: Option<i64>,
    /// Rollup blocks per resolution (not counted in `blocks` and `block_*`).
    pub rollups: Vec<RollupStats>,
}

struct FrozenHead {
    head: Arc<Head>,
    /// The first WAL segment that may hold its samples; kept until its blocks are written.
    first_segment: u64,
}

struct Inner {
    dir: PathBuf,
    opts: Options,
    _lock: File,
    append_lock: Mutex<()>,
    head: RwLock<(Arc<Head>, u64)>,
    frozen: RwLock<Vec<Arc<FrozenHead>>>,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Rollup blocks of every resolution, by `seq`.
    rollups: RwLock<Vec<Arc<Block>>>,
    wal: Wal,
    next_seq: AtomicU64,
    maintenance: Mutex<()>,
    last_cut: Mutex<Instant>,
    closed: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    /// Counters for [`Stats`]: head write-outs, compactions, and their nanoseconds.
    appended_samples: AtomicU64,
    head_writes: AtomicU64,
    head_write_ns: AtomicU64,
    compactions: AtomicU64,
    compaction_ns: AtomicU64,
    /// Told of each batch written to the WAL ([`Db::set_observer`]).
    observer: RwLock<Option<Arc<dyn AppendObserver>>>,
}

/// Told of every batch as it goes into the WAL, in WAL order, with each series' full label
/// set: the feed of remote_write out. Called under the append lock, so it must return quickly
/// (hand the batch to a queue); it cannot refuse the batch, which is stored either way.
pub trait AppendObserver: Send + Sync {
    fn appended(&self, batch: &[(Labels, &[Sample])]);
}

/// An open data directory. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Db {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Db {
    /// Opens (or creates) the data directory `dir`: takes its lock, opens the blocks (moving
    /// damaged ones to quarantine), replays the WAL, and starts the background threads.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<(Db, OpenReport)> {
        let dir = dir.as_ref().to_path_buf();
        if opts.block_duration_ms <= 0 || opts.retention_ms <= 0 {
            return Err(Error::InvalidOptions(
                "block duration and retention must be positive".into(),
            ));
        }
        for d in [&dir, &dir.join(WAL_DIR), &dir.join(BLOCKS_DIR)] {
            fs::create_dir_all(d).io_ctx("create dir", d)?;
        }
        let lp = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lp)
            .io_ctx("open", &lp)?;
        if lock.try_lock().is_err() {
            return Err(Error::Locked(dir));
        }
        downsample::validate(&opts.rollups)?;
        let mut report = OpenReport::default();
        let blocks = open_blocks(&dir, &mut report)?;
        let next_seq = blocks.iter().map(|b| b.meta.seq).max().unwrap_or(0) + 1;
        let (blocks, rollups) = downsample::split_rollups(blocks, &mut report.cleaned)?;

        let head = Arc::new(Head::new());
        let wal_dir = dir.join(WAL_DIR);
        let mut refs: HashMap<u32, Arc<crate::head::MemSeries>> = HashMap::new();
        let mut replayed = 0u64;
        let (wal_report, last_segment) =
            wal::replay(&wal_dir, |payload| {
                if record::is_generation(payload) {
                    // a new head generation: references restart; forgetting the old ones makes
                    // a reference whose definition was lost an error, not a wrong series
                    refs.clear();
                    return Ok(());
                }
                let rec = record::decode(payload)?;
                // check before applying anything, so that a bad record is skipped whole
                if let Some(&(r, _, _)) = rec.samples.iter().find(|(r, _, _)| {
                    !refs.contains_key(r) && !rec.series.iter().any(|(d, _)| d == r)
                }) {
                    return Err(format!("sample for undefined series ref {r}"));
                }
                for (r, labels) in rec.series {
                    refs.insert(r, head.get_or_create(&labels));
                }
                // group consecutive samples of one series
                let mut tally = AppendTally::default();
                let mut i = 0;
                while i < rec.samples.len() {
                    let r = rec.samples[i].0;
                    let mut j = i;
                    while j < rec.samples.len() && rec.samples[j].0 == r {
                        j += 1;
                    }
                    let Some(s) = refs.get(&r) else {
                        return Err(format!("sample for undefined series ref {r}"));
                    };
                    head.append_tallied(
                        s,
                        rec.samples[i..j].iter().map(|&(_, t, v)| Sample::new(t, v)),
                        &mut tally,
                    );
                    replayed += (j - i) as u64;
                    i = j;
                }
                head.add(tally);
                Ok(())
            })?;
        drop(refs);
        report.wal = wal_report;
        report.samples_replayed = replayed;
        report.blocks = blocks.len();
        let first_segment =
            wal::list_segments(&wal_dir)?.first().copied().unwrap_or(last_segment + 1);
        let wal = Wal::create(&wal_dir, last_segment + 1, opts.fsync, opts.wal_segment_bytes)?;
        // the replayed head numbers its series anew: a new generation
        wal.enqueue(record::encode_generation)?;
        tracing::info!(
            dir = %dir.display(),
            blocks = blocks.len(),
            samples_replayed = replayed,
            wal_records = report.wal.records,
            wal_truncations = report.wal.truncations.len(),
            quarantined = report.quarantined.len(),
            "storage opened"
        );

        let inner = Arc::new(Inner {
            dir,
            opts: opts.clone(),
            _lock: lock,
            append_lock: Mutex::new(()),
            head: RwLock::new((head, first_segment)),
            frozen: RwLock::new(Vec::new()),
            blocks: RwLock::new(blocks),
            rollups: RwLock::new(rollups),
            wal,
            next_seq: AtomicU64::new(next_seq),
            maintenance: Mutex::new(()),
            last_cut: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            appended_samples: AtomicU64::new(0),
            head_writes: AtomicU64::new(0),
            head_write_ns: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            compaction_ns: AtomicU64::new(0),
            observer: RwLock::new(None),
        });
        let mut threads = Vec::new();
        if opts.background {
            let i = inner.clone();
            threads.push(spawn("ocelli-tsdb-maint", move || i.maintenance_loop()));
        }
        if let FsyncPolicy::Interval(every) = opts.fsync {
            let i = inner.clone();
            threads.push(spawn("ocelli-wal-sync", move || i.sync_loop(every)));
        }
        Ok((Db { inner, threads }, report))
    }

    /// Installs (or, with `None`, removes) the observer told of every batch appended from now
    /// on.
    pub fn set_observer(&self, observer: Option<Arc<dyn AppendObserver>>) {
        *self.inner.observer.write() = observer;
    }

    /// Appends a batch. All series are validated first; on error nothing is written. When this
    /// returns `Ok`, every sample is in the WAL (see [`FsyncPolicy`] for what that survives).
    pub fn append(&self, batch: &[SeriesSamples]) -> Result<()> {
        self.inner.append(batch)
    }

    /// [`Db::append`] for series as a zero-copy decoder found them. A label set the head already
    /// has is found by its bytes, so only new series are validated and allocated; an invalid
    /// one fails the batch with [`Error::InvalidLabels`] naming its index.
    pub fn append_raw(&self, batch: &[RawSeries<'_>]) -> Result<()> {
        self.inner.append_raw(batch)
    }

    /// Series matching all `matchers` with their samples in `[mint, maxt]` (inclusive), sorted
    /// by label set, each with one sample per timestamp, under the configured limits.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<SeriesSamples>> {
        self.inner.select(matchers, mint, maxt, self.inner.opts.limits)
    }

    /// [`Db::select`] streamed: `f` gets each series in label order as soon as it is read, so
    /// that a caller reducing series one at a time (a range function, an aggregation) never
    /// holds them all. `f` returns `false` to stop early. Past the limits, the series seen so
    /// far have been handed over and the call returns [`Error::LimitExceeded`].
    pub fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Limits,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<()> {
        self.inner.select_each(matchers, mint, maxt, limits, f)
    }

    /// [`Db::select_each`] with `map` applied to each series' samples: `f` gets, in label
    /// order, each series' labels, its number of samples and what `map` made of them. A large
    /// selection is read by several threads, which also run `map`, so a caller reducing each
    /// series to little (a range function) does that work in parallel and on samples still in
    /// the reading core's cache; `f` runs on the calling thread.
    pub fn select_map_each<R: Send>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Limits,
        map: &(dyn Fn(Vec<Sample>) -> R + Sync),
        f: &mut dyn FnMut(Labels, usize, R) -> bool,
    ) -> Result<()> {
        self.inner.select_map_each(matchers, mint, maxt, limits, map, f)
    }

    /// The windows at resolution `res_ms` (a divisor of a day) of the series matching
    /// `matchers`, for every window holding a time in `[mint, maxt]`, streamed in label order:
    /// `f` returns `false` to stop. Read from rollups where up-to-date ones exist, computed
    /// from raw samples elsewhere; the answer is the same either way.
    pub fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res_ms: i64,
        limits: Limits,
        f: &mut dyn FnMut(Labels, Vec<Window>) -> bool,
    ) -> Result<()> {
        self.inner.select_windows_each(matchers, mint, maxt, res_ms, limits, f)
    }

    /// Resolutions (ascending) with up-to-date rollups over some of `[mint, maxt]`.
    pub fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        self.inner.rollup_resolutions(mint, maxt)
    }

    /// Builds every rollup that is due now (the background thread does this too); returns
    /// how many were written.
    pub fn downsample(&self) -> Result<usize> {
        let _m = self.inner.maintenance.lock();
        self.inner.downsample()
    }

    /// [`Db::select`] with explicit limits.
    pub fn select_with_limits(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Limits,
    ) -> Result<Vec<SeriesSamples>> {
        self.inner.select(matchers, mint, maxt, limits)
    }

    /// Label sets of series matching `matchers` in blocks overlapping `[mint, maxt]` and in the
    /// head, sorted, at most `limit` (0: no limit).
    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<Labels>> {
        self.inner.series(matchers, mint, maxt, limit)
    }

    /// Label names, sorted; with matchers, only of matching series.
    pub fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.inner.label_names(matchers, mint, maxt, limit)
    }

    /// Values of label `name`, sorted; with matchers, only of matching series.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.inner.label_values(name, matchers, mint, maxt, limit)
    }

    /// Cuts the head into blocks now (whatever its size) and deletes the WAL it came from.
    pub fn flush(&self) -> Result<()> {
        let _m = self.inner.maintenance.lock();
        self.inner.cut_head()
    }

    /// Runs compaction until nothing is left to merge; returns the number of merges.
    pub fn compact(&self) -> Result<usize> {
        let _m = self.inner.maintenance.lock();
        self.inner.compact(true)
    }

    /// Applies retention now; returns the number of blocks deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        let _m = self.inner.maintenance.lock();
        self.inner.retention()
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stops the background threads and syncs the WAL. Dropping the `Db` does the same.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        *self.inner.stop.0.lock() = true;
        self.inner.stop.1.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _a = self.inner.append_lock.lock();
        self.inner.wal.flush()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing storage");
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    match std::thread::Builder::new().name(name.into()).spawn(f) {
        Ok(h) => h,
        // Cannot run without the thread; same as std::thread::spawn's behaviour.
        Err(e) => panic!("cannot spawn {name}: {e}"),
    }
}

/// Opens every block folder; damaged ones go to quarantine. Sorted by sequence number.
fn open_blocks(dir: &Path, report: &mut OpenReport) -> Result<Vec<Arc<Block>>> {
    let bdir = dir.join(BLOCKS_DIR);
    let mut blocks = Vec::new();
    let mut entries: Vec<PathBuf> = Vec::new();
    for e in fs::read_dir(&bdir).io_ctx("read dir", &bdir)? {
        entries.push(e.io_ctx("read dir", &bdir)?.path());
    }
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !p.is_dir() {
            tracing::warn!(file = %p.display(), "ignoring a file that is not a block folder");
            continue;
        }
        if name.ends_with(TMP_SUFFIX) || name.ends_with(DELETING_SUFFIX) {
            fs::remove_dir_all(&p).io_ctx("remove", &p)?;
            report.cleaned.push(format!("removed unfinished {name}"));
            continue;
        }
        match Block::open(&p) {
            Ok(b) => blocks.push(Arc::new(b)),
            // not damage: refuse to start rather than move good data aside
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => {
                // say what is being dropped, if the meta is still readable
                let what = fs::read(p.join(crate::filenames::BLOCK_META))
                    .ok()
                    .and_then(|m| serde_json::from_slice::<crate::BlockMeta>(&m).ok())
                    .map(|m| {
                        format!(
                            " ({} series, {} samples, time {}..={} ms)",
                            m.num_series, m.num_samples, m.min_t, m.max_t
                        )
                    })
                    .unwrap_or_default();
                let line = format!("block {name}{what}: {e}");
                tracing::error!(block = %name, error = %e, "moving damaged block to quarantine");
                quarantine(dir, &p, &name, &e.to_string())?;
                report.quarantined.push(line);
            }
        }
    }
    // a compaction that finished but did not delete its sources
    let replaced: BTreeSet<u64> =
        blocks.iter().flat_map(|b| b.meta.sources.iter().copied()).collect();
    let (gone, keep): (Vec<_>, Vec<_>) =
        blocks.into_iter().partition(|b| replaced.contains(&b.meta.seq));
    for b in gone {
        report.cleaned.push(format!("removed {} (already compacted)", b.dir.display()));
        delete_block_dir(&b.dir)?;
    }
    let mut keep = keep;
    keep.sort_by_key(|b| b.meta.seq);
    Ok(keep)
}

fn quarantine(dir: &Path, p: &Path, name: &str, reason: &str) -> Result<()> {
    let q = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&q).io_ctx("create dir", &q)?;
    let mut dest = q.join(name);
    let mut n = 1;
    while dest.exists() {
        dest = q.join(format!("{name}.{n}"));
        n += 1;
    }
    fs::rename(p, &dest).io_ctx("rename", p)?;
    fs::write(dest.join(QUARANTINE_REASON), format!("{reason}\n")).io_ctx("write", &dest)?;
    Ok(())
}

fn delete_block_dir(p: &Path) -> Result<()> {
    let mut del = p.as_os_str().to_owned();
    del.push(DELETING_SUFFIX);
    let del = PathBuf::from(del);
    fs::rename(p, &del).io_ctx("rename", p)?;
    fs::remove_dir_all(&del).io_ctx("remove", &del)
}

/// One source of a streaming selection: a block's or a head's matching series in label order,
/// each read only when the merge reaches it.
enum SourceCursor {
    Block {
        block: Arc<Block>,
        ids: roaring::bitmap::IntoIter,
        next: Option<(Labels, Vec<ChunkRef>)>,
    },
    Head {
        series: std::vec::IntoIter<(Labels, Arc<MemSeries>)>,
        next: Option<(Labels, Arc<MemSeries>)>,
    },
}

impl SourceCursor {
    fn block(block: Arc<Block>, matchers: &[Matcher]) -> Result<SourceCursor> {
        let ids = block.select_ids(matchers).into_iter();
        let mut c = SourceCursor::Block { block, ids, next: None };
        c.advance()?;
        Ok(c)
    }

    fn head(head: &Head, matchers: &[Matcher]) -> SourceCursor {
        let mut series = head.select_sorted(matchers).into_iter();
        let next = series.next();
        SourceCursor::Head { series, next }
    }

    /// The label set of the series this cursor is at, if any.
    fn peek(&self) -> Option<&Labels> {
        match self {
            SourceCursor::Block { next, .. } => next.as_ref().map(|n| &n.0),
            SourceCursor::Head { next, .. } => next.as_ref().map(|n| &n.0),
        }
    }

    /// Moves to the next series.
    fn advance(&mut self) -> Result<()> {
        match self {
            SourceCursor::Block { block, ids, next } => {
                *next = ids.next().map(|i| block.series_chunks(i)).transpose()?;
            }
            SourceCursor::Head { series, next } => *next = series.next(),
        }
        Ok(())
    }

    /// The current series' samples in the inclusive intervals `within` (sorted, disjoint);
    /// moves to the next series.
    fn take_in(&mut self, within: &[(i64, i64)]) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        match self {
            SourceCursor::Block { block, next, .. } => {
                if let Some((_, chunks)) = next.take() {
                    for &(a, b) in within.iter().filter(|&&(a, b)| block.overlaps(a, b)) {
                        out.extend(block.read_chunks(&chunks, a, b)?);
                    }
                }
            }
            SourceCursor::Head { next, .. } => {
                if let Some((_, s)) = next.take() {
                    for &(a, b) in within {
                        out.extend(Head::samples(&s, a, b));
                    }
                }
            }
        }
        self.advance()?;
        Ok(out)
    }

    /// The current series' windows ending in `[e_lo, e_hi]`, of a rollup block; moves to the
    /// next series.
    fn take_windows(&mut self, e_lo: i64, e_hi: i64) -> Result<Vec<Window>> {
        let out = match self {
            SourceCursor::Block { block, next, .. } => match next.take() {
                Some((_, chunks)) => block.read_windows(&chunks, e_lo, e_hi)?,
                None => Vec::new(),
            },
            SourceCursor::Head { next, .. } => {
                next.take();
                Vec::new()
            }
        };
        self.advance()?;
        Ok(out)
    }

    /// The current series' labels and where its samples are, without reading them; moves to
    /// the next series.
    fn take_piece(&mut self) -> Result<Option<(Labels, select::Piece)>> {
        let out = match self {
            SourceCursor::Block { block, next, .. } => next
                .take()
                .map(|(labels, chunks)| (labels, select::Piece::Block(block.clone(), chunks))),
            SourceCursor::Head { next, .. } => {
                next.take().map(|(labels, s)| (labels, select::Piece::Head(s)))
            }
        };
        self.advance()?;
        Ok(out)
    }

    /// How many series this cursor may still yield (an upper bound).
    fn remaining(&self) -> usize {
        let next = usize::from(self.peek().is_some());
        match self {
            SourceCursor::Block { ids, .. } => ids.len() + next,
            SourceCursor::Head { series, .. } => series.len() + next,
        }
    }
}

impl Inner {
    fn append(&self, batch: &[SeriesSamples]) -> Result<()> {
        // Outside the append lock (so concurrent appenders do it in parallel): find the series
        // the head already has, and validate the others. A series found in the head was
        // validated when it was created. Nothing is written unless the whole batch is valid.
        let looked_in = self.open_head()?;
        let mut items = Vec::with_capacity(batch.len());
        for s in batch {
            let r = match looked_in.find(&s.labels) {
                Some(f) => Resolved::Found(f),
                None => {
                    s.labels
                        .validate()
                        .map_err(|e| Error::InvalidSeries(format!("{}: {e}", s.labels)))?;
                    Resolved::New(Cow::Borrowed(&s.labels))
                }
            };
            items.push((r, &s.samples[..]));
        }
        self.commit(&looked_in, items)
    }

    fn append_raw(&self, batch: &[RawSeries<'_>]) -> Result<()> {
        // as `append`, but only a series the head does not have yet gets a `Labels` built
        let looked_in = self.open_head()?;
        let raws: Vec<_> = batch.iter().map(|s| s.labels).collect();
        let found = looked_in.find_raw_all(&raws);
        let mut items = Vec::with_capacity(batch.len());
        for (index, (s, found)) in batch.iter().zip(found).enumerate() {
            let r = match found {
                Some(f) => Resolved::Found(f),
                None => Resolved::New(Cow::Owned(
                    Labels::from_raw(s.labels)
                        .map_err(|source| Error::InvalidLabels { index, source })?,
                )),
            };
            items.push((r, s.samples));
        }
        self.commit(&looked_in, items)
    }

    /// The current head, unless the engine is closed.
    fn open_head(&self) -> Result<Arc<Head>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(self.head.read().0.clone())
    }

    /// Writes a validated batch, resolved against `looked_in`, to the WAL and the head.
    fn commit(&self, looked_in: &Arc<Head>, items: Vec<(Resolved<'_>, &[Sample])>) -> Result<()> {
        // a series without samples is not created: it would show in label queries with no data
        let items: Vec<_> = items.into_iter().filter(|(_, s)| !s.is_empty()).collect();
        if items.is_empty() {
            return Ok(());
        }
        let nsamples: usize = items.iter().map(|(_, s)| s.len()).sum();
        let seq = {
            let _a = self.append_lock.lock();
            let head = self.head.read().0.clone();
            // a cut in between started a new head: look everything up again there
            let same_head = Arc::ptr_eq(&head, looked_in);
            let series: Vec<_> = items
                .iter()
                .map(|(r, _)| match r {
                    Resolved::Found(f) if same_head => f.clone(),
                    Resolved::Found(f) => head.get_or_create(&looked_in.labels_of(f)),
                    Resolved::New(labels) => head.get_or_create(labels),
                })
                .collect();
            let defs: Vec<(u32, Cow<'_, Labels>)> = items
                .iter()
                .zip(&series)
                .filter(|(_, s)| !s.wal_defined.load(Ordering::Relaxed))
                .map(|((r, _), s)| {
                    let labels = match r {
                        Resolved::New(l) => Cow::Borrowed(&**l),
                        Resolved::Found(_) => Cow::Owned(head.labels_of(s)),
                    };
                    (s.series_ref, labels)
                })
                .collect();
            let seq = self.wal.enqueue(|buf| {
                record::encode_batch(
                    buf,
                    defs.iter().map(|(r, l)| (*r, &**l)),
                    ExactLen(
                        items
                            .iter()
                            .zip(&series)
                            .flat_map(|((_, b), s)| b.iter().map(|x| (s.series_ref, x.t, x.v))),
                        nsamples,
                    ),
                )
            })?;
            for s in &series {
                s.wal_defined.store(true, Ordering::Relaxed);
            }
            let mut tally = AppendTally::default();
            for ((_, b), s) in items.iter().zip(&series) {
                head.append_tallied(s, b.iter().copied(), &mut tally);
            }
            head.add(tally);
            // still under the lock: the observer sees batches in WAL order
            if let Some(o) = self.observer.read().as_ref() {
                let told: Vec<(Labels, &[Sample])> = items
                    .iter()
                    .zip(&series)
                    .map(|((r, b), s)| match r {
                        Resolved::New(l) => ((**l).clone(), *b),
                        Resolved::Found(_) => (head.labels_of(s), *b),
                    })
                    .collect();
                o.appended(&told);
            }
            seq
        };
        self.wal.commit(seq)?;
        self.appended_samples.fetch_add(nsamples as u64, Ordering::Relaxed);
        Ok(())
    }

    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Limits,
    ) -> Result<Vec<SeriesSamples>> {
        let mut out = Vec::new();
        self.select_each(matchers, mint, maxt, limits, &mut |labels, samples| {
            out.push(SeriesSamples { labels, samples });
            true
        })?;
        Ok(out)
    }

    /// The selection, streamed: the sources are merged series by series in label order, and a
    /// series' samples are read only when the merge reaches it. A series in several sources
    /// gets their samples in source order (blocks oldest first, then heads), then sorted by
    /// time with the last copy of a timestamp kept: the read priority of the module doc.
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Limits,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<()> {
        self.select_map_each(matchers, mint, maxt, limits, &|s| s, &mut |l, _, s| f(l, s))
    }

    /// [`Inner::select_each`] with `map` applied to each series' samples, on the threads that
    /// read them ([`select`]).
    fn select_map_each<R: Send>(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limits: Limits,
        map: &(dyn Fn(Vec<Sample>) -> R + Sync),
        f: &mut dyn FnMut(Labels, usize, R) -> bool,
    ) -> Result<()> {
        if mint > maxt {
            return Err(Error::InvalidTimeRange { mint, maxt });
        }
        let (blocks, frozen, head) = self.sources(mint, maxt);
        let mut cursors = Vec::with_capacity(blocks.len() + frozen.len() + 1);
        for b in blocks {
            cursors.push(SourceCursor::block(b, matchers)?);
        }
        for h in frozen.iter().chain([&head]) {
            cursors.push(SourceCursor::head(h, matchers));
        }
        cursors.retain(|c| c.peek().is_some());
        select::run(select::Merge::new(cursors), mint, maxt, limits, map, f)
    }

    /// Blocks overlapping the range (oldest first), frozen heads (oldest first), the head.
    fn sources(&self, mint: i64, maxt: i64) -> (Vec<Arc<Block>>, Vec<Arc<Head>>, Arc<Head>) {
        // take the head first: a cut in between then shows data twice, never not at all
        let head = self.head.read().0.clone();
        let frozen = self.frozen.read().iter().map(|f| f.head.clone()).collect();
        let blocks =
            self.blocks.read().iter().filter(|b| b.overlaps(mint, maxt)).cloned().collect();
        (blocks, frozen, head)
    }

    /// The sorted union, over blocks overlapping the range and the heads, of what
    /// `from_block` / `from_head` return, at most `limit` (0: no limit).
    fn union_of_sources<T: Ord>(
        &self,
        mint: i64,
        maxt: i64,
        limit: usize,
        from_block: impl Fn(&Block) -> Result<Vec<T>>,
        from_head: impl Fn(&Head) -> Vec<T>,
    ) -> Result<Vec<T>> {
        if mint > maxt {
            return Err(Error::InvalidTimeRange { mint, maxt });
        }
        let (blocks, frozen, head) = self.sources(mint, maxt);
        let rollups: Vec<Arc<Block>> =
            self.rollups.read().iter().filter(|b| b.overlaps(mint, maxt)).cloned().collect();
        let mut set = BTreeSet::new();
        for b in blocks.iter().chain(&rollups) {
            set.extend(from_block(b)?);
        }
        for h in frozen.iter().chain([&head]) {
            set.extend(from_head(h));
        }
        Ok(truncate(set.into_iter(), limit))
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<Labels>> {
        self.union_of_sources(
            mint,
            maxt,
            limit,
            |b| b.series_labels(matchers),
            |h| h.series_labels(matchers),
        )
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        if !matchers.is_empty() {
            let names: BTreeSet<String> = self
                .series(matchers, mint, maxt, 0)?
                .iter()
                .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
                .collect();
            return Ok(truncate(names.into_iter(), limit));
        }
        self.union_of_sources(mint, maxt, limit, |b| Ok(b.label_names()), |h| h.label_names())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        limit: usize,
    ) -> Result<Vec<String>> {
        if !matchers.is_empty() {
            let vals: BTreeSet<String> = self
                .series(matchers, mint, maxt, 0)?
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect();
            return Ok(truncate(vals.into_iter(), limit));
        }
        self.union_of_sources(
            mint,
            maxt,
            limit,
            |b| Ok(b.label_values(name)),
            |h| h.label_values(name),
        )
    }

    fn stats(&self) -> Stats {
        let (head, _) = self.head.read().clone();
        let frozen = self.frozen.read().len();
        let blocks = self.blocks.read();
        let mut st = Stats {
            head_series: head.num_series(),
            head_samples: head.num_samples(),
            head_bytes: head.heap_bytes(),
            frozen_heads: frozen,
            blocks: blocks.len(),
            block_samples: blocks.iter().map(|b| b.meta.num_samples).sum(),
            block_bytes: blocks.iter().map(|b| b.disk_bytes()).sum(),
            wal_bytes: self.wal.disk_bytes(),
            wal_records: self.wal.records.load(Ordering::Relaxed),
            wal_writes: self.wal.writes.load(Ordering::Relaxed),
            wal_syncs: self.wal.syncs.load(Ordering::Relaxed),
            appended_samples: self.appended_samples.load(Ordering::Relaxed),
            wal_sync_seconds: self.wal.sync_ns.load(Ordering::Relaxed) as f64 / 1e9,
            head_writes: self.head_writes.load(Ordering::Relaxed),
            head_write_seconds: self.head_write_ns.load(Ordering::Relaxed) as f64 / 1e9,
            compactions: self.compactions.load(Ordering::Relaxed),
            compaction_seconds: self.compaction_ns.load(Ordering::Relaxed) as f64 / 1e9,
            min_t: blocks.iter().map(|b| b.meta.min_t).min(),
            max_t: blocks.iter().map(|b| b.meta.max_t).max(),
            rollups: self.rollup_stats(),
        };
        if let Some((lo, hi)) = head.time_range() {
            st.min_t = Some(st.min_t.map_or(lo, |m| m.min(lo)));
            st.max_t = Some(st.max_t.map_or(hi, |m| m.max(hi)));
        }
        st
    }

    fn maintenance_loop(&self) {
        loop {
            {
                let mut stop = self.stop.0.lock();
                if !*stop {
                    self.stop.1.wait_for(&mut stop, self.opts.maintenance_interval);
                }
                if *stop {
                    return;
                }
            }
            let _m = self.maintenance.lock();
            let head = self.head.read().0.clone();
            let due = head.heap_bytes() >= self.opts.head_max_bytes
                || (head.num_samples() > 0
                    && self.last_cut.lock().elapsed() >= self.opts.head_max_age);
            drop(head);
            // each step on its own: a failing cut or merge (say, a full disk) must not stop
            // retention from freeing space
            let mut worked = due;
            if due && let Err(e) = self.cut_head() {
                tracing::error!(error = %e, "head cut failed; will retry");
            }
            match self.compact(false) {
                Ok(n) => worked |= n > 0,
                Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
            }
            match self.downsample() {
                Ok(n) => worked |= n > 0,
                Err(e) => tracing::error!(error = %e, "downsampling failed; will retry"),
            }
            if worked && let Some(f) = AFTER_MAINTENANCE.get() {
                f();
            }
            if let Err(e) = self.retention() {
                tracing::error!(error = %e, "retention failed; will retry");
            }
        }
    }

    fn sync_loop(&self, every: Duration) {
        loop {
            {
                let mut stop = self.stop.0.lock();
                if !*stop {
                    self.stop.1.wait_for(&mut stop, every);
                }
                if *stop {
                    return;
                }
            }
            if let Err(e) = self.wal.sync() {
                // after a failed fsync the kernel may have dropped the dirty pages: refuse
                // further writes rather than acknowledge data that may not reach the disk
                tracing::error!(error = %e, "WAL fsync failed; refusing writes until restart");
                self.wal.poison(&e.to_string());
            }
        }
    }

    /// Freezes the head, starts a new one and a new WAL segment, writes the frozen head out as
    /// blocks (one per time partition) and drops the WAL it no longer needs. Call with the
    /// maintenance lock held.
    fn cut_head(&self) -> Result<()> {
        // a head whose blocks failed to write earlier goes out first, so that blocks keep
        // being created in write order
        self.write_frozen()?;
        {
            let _a = self.append_lock.lock();
            let next_segment = self.wal.rotate()?;
            // first record of the new segment, before any append of the new head
            self.wal.enqueue(record::encode_generation)?;
            let mut h = self.head.write();
            let (old, first_segment) =
                std::mem::replace(&mut *h, (Arc::new(Head::new()), next_segment));
            self.frozen.write().push(Arc::new(FrozenHead { head: old, first_segment }));
        }
        *self.last_cut.lock() = Instant::now();
        self.write_frozen()
    }

    /// Writes every frozen head out as blocks, oldest first, then deletes the WAL segments no
    /// head needs any more. On error the head stays frozen (still read, still in the WAL) and
    /// the next cut retries it before anything else.
    fn write_frozen(&self) -> Result<()> {
        loop {
            let Some(frozen) = self.frozen.read().first().cloned() else { break };
            let t0 = Instant::now();
            let new_blocks = self.write_head_blocks(&frozen.head).inspect_err(|e| {
                tracing::error!(error = %e, "writing head blocks failed; data stays in the WAL and in memory");
            })?;
            let n = new_blocks.len();
            {
                let mut bl = self.blocks.write();
                bl.extend(new_blocks);
                bl.sort_by_key(|b| b.meta.seq);
            }
            self.frozen.write().retain(|f| !Arc::ptr_eq(f, &frozen));
            self.head_writes.fetch_add(1, Ordering::Relaxed);
            self.head_write_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            tracing::info!(
                blocks = n,
                samples = frozen.head.num_samples(),
                series = frozen.head.num_series(),
                elapsed_ms = t0.elapsed().as_millis() as u64,
                "head written out"
            );
        }
        let keep_from = {
            let fr = self.frozen.read();
            let cur = self.head.read().1;
            fr.iter().map(|f| f.first_segment).min().unwrap_or(cur).min(cur)
        };
        // old segments are only garbage now: failing to delete them must not stop cuts
        if let Err(e) = self.wal.remove_before(keep_from) {
            tracing::error!(error = %e, "cannot delete old WAL segments; will retry at the next cut");
        }
        Ok(())
    }

    fn write_head_blocks(&self, head: &Head) -> Result<Vec<Arc<Block>>> {
        let d = self.opts.block_duration_ms;
        let bdir = self.dir.join(BLOCKS_DIR);
        let mut writers: BTreeMap<i64, BlockWriter> = BTreeMap::new();
        head.for_each_series_sorted(|labels, samples| {
            let mut i = 0;
            while i < samples.len() {
                let part = samples[i].t.div_euclid(d);
                let mut j = i;
                while j < samples.len() && samples[j].t.div_euclid(d) == part {
                    j += 1;
                }
                let w = match writers.entry(part) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
                        e.insert(BlockWriter::create(&bdir, seq)?)
                    }
                };
                w.add_series(labels, &samples[i..j])?;
                i = j;
            }
            Ok(())
        })?;
        let mut out: Vec<Arc<Block>> = Vec::new();
        let mut failed = None;
        for (_, w) in writers {
            match w.finish(1, Vec::new()) {
                Ok(Some(b)) => out.push(Arc::new(b)),
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            // all or nothing: the frozen head will be written again as a whole
            for b in &out {
                let _ = delete_block_dir(&b.dir);
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Merges blocks. For each window width (the block duration, then six times wider, up
    /// to a tenth of the retention), blocks whose windows overlap form groups, and a group of
    /// two or more is merged once all its windows lie a block duration behind the newest data
    /// (or always, with `force`); at the smallest width four or more blocks are merged
    /// anyway. A group holds every block overlapping its windows, so the merged block never
    /// overlaps a block it does not contain. Call with the maintenance lock held.
    fn compact(&self, force: bool) -> Result<usize> {
        let t0 = Instant::now();
        let merged = self.compact_untimed(force);
        self.compaction_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if matches!(merged, Ok(n) if n > 0) {
            self.compactions.fetch_add(1, Ordering::Relaxed);
        }
        merged
    }

    fn compact_untimed(&self, force: bool) -> Result<usize> {
        let d = self.opts.block_duration_ms;
        let max_width = (self.opts.retention_ms / 10).max(d);
        let mut widths = vec![d];
        while let Some(w) = widths.last().and_then(|w| w.checked_mul(6)).filter(|w| *w <= max_width)
        {
            widths.push(w);
        }
        let mut merges = 0;
        'again: loop {
            if !self.frozen.read().is_empty() {
                // blocks must be created in write order; the frozen head goes first
                return Ok(merges);
            }
            let blocks = self.blocks.read().clone();
            let newest = self.stats().max_t.unwrap_or(i64::MIN).min(now_ms());
            for &w in &widths {
                for (hi_window, group) in overlap_groups(&blocks, w) {
                    let closed =
                        hi_window.saturating_add(1).saturating_mul(w) <= newest.saturating_sub(d);
                    let eligible = force || closed || (w == d && group.len() >= 4);
                    if group.len() >= 2 && eligible {
                        self.merge_blocks(&group)?;
                        merges += 1;
                        continue 'again;
                    }
                }
            }
            return Ok(merges);
        }
    }

    fn merge_blocks(&self, group: &[Arc<Block>]) -> Result<()> {
        let t0 = Instant::now();
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut w = BlockWriter::create(&self.dir.join(BLOCKS_DIR), seq)?;
        // group is sorted by seq (oldest first), which is the merge priority
        let mut cursors: Vec<Cursor> = vec![(0, None); group.len()];
        loop {
            for (k, b) in group.iter().enumerate() {
                let c = &mut cursors[k];
                if c.1.is_none() && c.0 < b.num_series() {
                    c.1 = Some(b.read_series(c.0)?);
                    c.0 += 1;
                }
            }
            let Some(min) =
                cursors.iter().filter_map(|c| c.1.as_ref().map(|x| &x.0)).min().cloned()
            else {
                break;
            };
            let mut samples = Vec::new();
            let mut parts = 0;
            for c in cursors.iter_mut() {
                if c.1.as_ref().is_some_and(|x| x.0 == min)
                    && let Some((_, s)) = c.1.take()
                {
                    samples.extend(s);
                    parts += 1;
                }
            }
            if parts > 1 {
                samples.sort_by_key(|s| s.t);
                dedup_last(&mut samples);
            }
            w.add_series(&min, &samples)?;
        }
        let level = group.iter().map(|b| b.meta.level).max().unwrap_or(0) + 1;
        let sources = group.iter().map(|b| b.meta.seq).collect();
        let new = w.finish(level, sources)?;
        {
            let mut bl = self.blocks.write();
            bl.retain(|b| !group.iter().any(|g| Arc::ptr_eq(g, b)));
            if let Some(n) = new {
                bl.push(Arc::new(n));
            }
            bl.sort_by_key(|b| b.meta.seq);
        }
        for b in group {
            delete_block_dir(&b.dir)?;
        }
        tracing::info!(
            sources = group.len(),
            seq,
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "blocks compacted"
        );
        Ok(())
    }

    /// Deletes blocks past the age limit (relative to the newest sample stored) and then the
    /// oldest blocks while over the size limit. Call with the maintenance lock held.
    fn retention(&self) -> Result<usize> {
        // a sample stamped far in the future must not expire everything else
        let newest = self.stats().max_t.unwrap_or(i64::MIN).min(now_ms());
        let cutoff = newest.saturating_sub(self.opts.retention_ms);
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let mut bl = self.blocks.write();
            bl.retain(|b| {
                let old = b.meta.max_t < cutoff;
                if old {
                    doomed.push(b.clone());
                }
                !old
            });
            let mut total: u64 =
                bl.iter().map(|b| b.disk_bytes()).sum::<u64>() + self.wal.disk_bytes();
            while total > self.opts.retention_bytes && !bl.is_empty() {
                let (i, _) = bl
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| (b.meta.min_t, b.meta.seq))
                    .unwrap_or((0, &bl[0]));
                let b = bl.remove(i);
                total -= b.disk_bytes();
                doomed.push(b);
            }
        }
        for b in &doomed {
            tracing::info!(block = %b.dir.display(), max_t = b.meta.max_t, "retention deletes block");
            delete_block_dir(&b.dir)?;
        }
        Ok(doomed.len() + self.rollup_retention(newest)?)
    }
}

/// Groups blocks whose `width`-wide windows overlap (interval merging over window numbers);
/// returns each group, sorted by sequence number, with its last window number.
fn overlap_groups(blocks: &[Arc<Block>], width: i64) -> Vec<(i64, Vec<Arc<Block>>)> {
    let mut v: Vec<(i64, i64, Arc<Block>)> = blocks
        .iter()
        .map(|b| (b.meta.min_t.div_euclid(width), b.meta.max_t.div_euclid(width), b.clone()))
        .collect();
    v.sort_by_key(|x| (x.0, x.1));
    let mut out: Vec<(i64, Vec<Arc<Block>>)> = Vec::new();
    for (lo, hi, b) in v {
        match out.last_mut() {
            Some((end, g)) if lo <= *end => {
                *end = (*end).max(hi);
                g.push(b);
            }
            _ => out.push((hi, vec![b])),
        }
    }
    for (_, g) in &mut out {
        g.sort_by_key(|b| b.meta.seq);
    }
    out
}

/// A merge cursor over one block: next series number, and the series read but not merged yet.
type Cursor = (u32, Option<(Labels, Vec<Sample>)>);

fn truncate<T>(it: impl Iterator<Item = T>, limit: usize) -> Vec<T> {
    if limit == 0 { it.collect() } else { it.take(limit).collect() }
}

/// An iterator with a known length (for the WAL encoder, which writes the count first).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let x = self.0.next();
        if x.is_some() {
            self.1 -= 1;
        }
        x
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}
