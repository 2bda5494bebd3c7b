//! The head: the in-memory part of the database that receives every append.
//!
//! It holds one [`MemSeries`] per label set, found by series id (a hash; label sets are
//! compared on a match), an inverted index from interned label pairs to series numbers, and
//! per series: sealed compressed chunks of 120 samples, one appendable Gorilla chunk, and a
//! small buffer for samples that arrive out of order or repeat a timestamp. Reading a series
//! merges them so that the last written value wins for each timestamp.
//!
//! A head lives for one WAL generation. When it is cut, the engine freezes it (it is still
//! read by queries), starts a fresh head, writes the frozen one out as blocks and drops it, so
//! series that stopped receiving samples disappear from memory on their own. The head does no
//! I/O; the WAL record for an append is written by [`crate::db`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use ocelli_model::{Label, Labels, Matcher, RawLabel, Sample, raw_series_id};
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::chunkenc::HeadChunk;
use crate::postings::{self, IndexReader};

/// One series in the head.
#[derive(Debug)]
pub(crate) struct MemSeries {
    pub(crate) series_ref: u32,
    /// Interned (name, value) symbol pairs, sorted by name.
    syms: Box<[(u32, u32)]>,
    /// Whether the WAL of this head's generation has the series' definition yet.
    pub(crate) wal_defined: AtomicBool,
    data: Mutex<SeriesData>,
}

/// In-order samples are appended to an open Gorilla chunk; every [`HEAD_CHUNK_SAMPLES`] the
/// open chunk is sealed (re-encoded with the block codecs, about a third of the size) so the
/// head holds more samples per byte.
pub(crate) const HEAD_CHUNK_SAMPLES: usize = 120;

/// A sealed head chunk: its time range and `chunkenc::encode_chunk` bytes.
#[derive(Debug)]
struct SealedChunk {
    min_t: i64,
    max_t: i64,
    data: Box<[u8]>,
}

#[derive(Debug)]
struct SeriesData {
    sealed: Vec<SealedChunk>,
    chunk: HeadChunk,
    /// Timestamp of the last in-order sample (sealed or open), `i64::MIN` if none.
    last_t: i64,
    /// Samples with a timestamp at or before `last_t`, in write order; they win over the
    /// chunks, and later entries over earlier ones.
    ooo: Vec<Sample>,
}

impl Default for SeriesData {
    fn default() -> Self {
        SeriesData {
            sealed: Vec::new(),
            chunk: HeadChunk::new(),
            last_t: i64::MIN,
            ooo: Vec::new(),
        }
    }
}

impl SeriesData {
    fn ooo_bytes(&self) -> usize {
        self.ooo.capacity() * std::mem::size_of::<Sample>()
    }

    fn sealed_bytes(&self) -> usize {
        self.sealed.capacity() * std::mem::size_of::<SealedChunk>()
            + self.sealed.iter().map(|c| c.data.len()).sum::<usize>()
    }

    fn seal(&mut self, ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
        ts.clear();
        vs.clear();
        self.chunk.decode_into(ts, vs);
        let (Some(&min_t), Some(&max_t)) = (ts.first(), ts.last()) else { return };
        let mut buf = Vec::new();
        crate::chunkenc::encode_chunk(ts, vs, &mut buf);
        if self.sealed.len() == self.sealed.capacity() {
            self.sealed.reserve_exact(self.sealed.len().max(2));
        }
        self.sealed.push(SealedChunk { min_t, max_t, data: buf.into_boxed_slice() });
        self.chunk = HeadChunk::new();
    }
}

#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strs: Vec<Arc<str>>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strs.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn str(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }
}

/// Hashes a series id by taking it as it is: it is already an xxh3 hash, so hashing it again
/// (SipHash, the default) only costs time on every lookup of the write path.
type IdHash = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Debug, Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // only u64 keys are hashed with this; anything else still gets a deterministic mix
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct HeadIndex {
    symbols: Symbols,
    /// series id -> the first series with that id; further ones (hash collisions, rare) are
    /// in `collisions`. Kept apart so the common case costs no allocation per series.
    by_id: HashMap<u64, u32, IdHash>,
    collisions: HashMap<u64, Vec<u32>>,
    series: Vec<Arc<MemSeries>>,
    /// name symbol -> value symbol -> series numbers
    postings: HashMap<u32, HashMap<u32, RoaringBitmap>>,
}

impl HeadIndex {
    fn labels_of(&self, s: &MemSeries) -> Labels {
        Labels::from_sorted(
            s.syms
                .iter()
                .map(|&(n, v)| Label::new(self.symbols.str(n), self.symbols.str(v)))
                .collect(),
        )
    }

    fn same_labels(&self, s: &MemSeries, labels: &Labels) -> bool {
        s.syms.len() == labels.len()
            && s.syms
                .iter()
                .zip(labels.iter())
                .all(|(&(n, v), l)| self.symbols.str(n) == l.name && self.symbols.str(v) == l.value)
    }

    fn same_raw(&self, s: &MemSeries, raw: &[RawLabel<'_>]) -> bool {
        s.syms.len() == raw.len()
            && s.syms.iter().zip(raw).all(|(&(n, v), &(name, value))| {
                self.symbols.str(n).as_bytes() == name && self.symbols.str(v).as_bytes() == value
            })
    }

    fn find(&self, labels: &Labels, id: u64) -> Option<&Arc<MemSeries>> {
        self.find_by(id, |s| self.same_labels(s, labels))
    }

    /// The series with this id for which `same` holds.
    fn find_by(&self, id: u64, same: impl Fn(&MemSeries) -> bool) -> Option<&Arc<MemSeries>> {
        let first = &self.series[*self.by_id.get(&id)? as usize];
        if same(first) {
            return Some(first);
        }
        self.collisions.get(&id)?.iter().map(|&r| &self.series[r as usize]).find(|s| same(s))
    }
}

impl IndexReader for HeadIndex {
    fn postings(&self, name: &str, value: &str) -> RoaringBitmap {
        let (Some(n), Some(v)) = (self.symbols.get(name), self.symbols.get(value)) else {
            return RoaringBitmap::new();
        };
        self.postings.get(&n).and_then(|m| m.get(&v)).cloned().unwrap_or_default()
    }

    fn union_where(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> RoaringBitmap {
        let Some(vals) = self.symbols.get(name).and_then(|n| self.postings.get(&n)) else {
            return RoaringBitmap::new();
        };
        let mut acc = RoaringBitmap::new();
        for (v, p) in vals {
            if pred(self.symbols.str(*v)) {
                acc |= p;
            }
        }
        acc
    }

    fn all(&self) -> RoaringBitmap {
        let mut b = RoaringBitmap::new();
        b.insert_range(0..self.series.len() as u32);
        b
    }
}

/// The in-memory head of one WAL generation.
/// What appends added to a head: heap bytes (negative if sealing shrank it), samples, and
/// their time range.
#[derive(Debug)]
pub(crate) struct AppendTally {
    bytes: i64,
    samples: u64,
    min_t: i64,
    max_t: i64,
}

impl Default for AppendTally {
    fn default() -> Self {
        AppendTally { bytes: 0, samples: 0, min_t: i64::MAX, max_t: i64::MIN }
    }
}

#[derive(Debug)]
pub(crate) struct Head {
    index: RwLock<HeadIndex>,
    heap_bytes: AtomicU64,
    samples: AtomicU64,
    min_t: AtomicI64,
    max_t: AtomicI64,
}

impl Default for Head {
    fn default() -> Self {
        Head::new()
    }
}

impl Head {
    pub(crate) fn new() -> Head {
        Head {
            index: RwLock::new(HeadIndex::default()),
            heap_bytes: AtomicU64::new(0),
            samples: AtomicU64::new(0),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
        }
    }

    /// The series for `labels`, if the head has it.
    pub(crate) fn find(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        self.index.read().find(labels, labels.series_id().0).cloned()
    }

    /// For each raw label set of a batch (sorted, no empty values), the series the head has
    /// with exactly those labels, if any. Equal bytes mean the labels are valid: the head holds
    /// only validated label sets. One read lock for the batch: taking it per series made
    /// concurrent writers bounce its cache line between cores.
    ///
    /// The work goes in passes over the whole batch: hash every label set, then look every id
    /// up, then compare labels. A lookup is a few cache misses (the id table, then the series);
    /// in a tight loop of independent lookups the processor overlaps the misses of several
    /// series, where one series at a time, with hashing and comparing in between, waited for
    /// each in turn (measured: about a tenth of the ingest CPU).
    pub(crate) fn find_raw_all(&self, raws: &[&[RawLabel<'_>]]) -> Vec<Option<Arc<MemSeries>>> {
        let ids: Vec<u64> = raws.iter().map(|raw| raw_series_id(raw).0).collect();
        let ix = self.index.read();
        let firsts: Vec<Option<&Arc<MemSeries>>> =
            ids.iter().map(|id| ix.by_id.get(id).map(|&r| &ix.series[r as usize])).collect();
        raws.iter()
            .zip(ids)
            .zip(firsts)
            .map(|((raw, id), first)| match first {
                Some(s) if ix.same_raw(s, raw) => Some(s.clone()),
                // a hash collision (rare): the other series with this id
                Some(_) => ix.find_by(id, |s| ix.same_raw(s, raw)).cloned(),
                None => None,
            })
            .collect()
    }

    /// The label set of a series of this head.
    pub(crate) fn labels_of(&self, s: &MemSeries) -> Labels {
        self.index.read().labels_of(s)
    }

    pub(crate) fn get_or_create(&self, labels: &Labels) -> Arc<MemSeries> {
        self.get_or_create_with_id(labels, labels.series_id().0)
    }

    /// [`Head::get_or_create`] with the id given; tests use it to force hash collisions.
    fn get_or_create_with_id(&self, labels: &Labels, id: u64) -> Arc<MemSeries> {
        if let Some(s) = self.index.read().find(labels, id) {
            return s.clone();
        }
        let mut ix = self.index.write();
        if let Some(s) = ix.find(labels, id) {
            return s.clone();
        }
        let r = ix.series.len() as u32;
        let syms: Box<[(u32, u32)]> = labels
            .iter()
            .map(|l| (ix.symbols.intern(&l.name), ix.symbols.intern(&l.value)))
            .collect();
        for &(n, v) in syms.iter() {
            ix.postings.entry(n).or_default().entry(v).or_default().insert(r);
        }
        let s = Arc::new(MemSeries {
            series_ref: r,
            syms,
            wal_defined: AtomicBool::new(false),
            data: Mutex::new(SeriesData::default()),
        });
        ix.series.push(s.clone());
        match ix.by_id.entry(id) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                ix.collisions.entry(id).or_default().push(r)
            }
        }
        s
    }

    /// Appends samples to a series. Any timestamp is accepted; see the module doc for how
    /// out-of-order samples and repeated timestamps are kept.
    #[cfg(test)]
    pub(crate) fn append(&self, s: &MemSeries, samples: impl IntoIterator<Item = Sample>) {
        let mut tally = AppendTally::default();
        self.append_tallied(s, samples, &mut tally);
        self.add(tally);
    }

    /// Appends samples to a series, with the head's totals left to [`Head::add`]: a batch of
    /// many series updates the shared counters once instead of once per series. Any timestamp
    /// is accepted; see the module doc for how out-of-order samples and repeated timestamps are
    /// kept.
    pub(crate) fn append_tallied(
        &self,
        s: &MemSeries,
        samples: impl IntoIterator<Item = Sample>,
        tally: &mut AppendTally,
    ) {
        let mut d = s.data.lock();
        // Only the open chunk and the out-of-order buffer change on most appends; the sealed
        // chunks (another allocation to read) are counted only around a seal.
        let mut bytes = -((d.chunk.heap_bytes() + d.ooo_bytes()) as i64);
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        for smp in samples {
            if smp.t <= d.last_t {
                d.ooo.push(smp);
            } else {
                d.chunk.append(smp.t, smp.v);
                d.last_t = smp.t;
                if d.chunk.len() >= HEAD_CHUNK_SAMPLES {
                    bytes -= d.sealed_bytes() as i64;
                    d.seal(&mut ts, &mut vs);
                    bytes += d.sealed_bytes() as i64;
                }
            }
            tally.samples += 1;
            tally.min_t = tally.min_t.min(smp.t);
            tally.max_t = tally.max_t.max(smp.t);
        }
        bytes += (d.chunk.heap_bytes() + d.ooo_bytes()) as i64;
        tally.bytes += bytes;
    }

    /// Adds what appends tallied to the head's totals.
    pub(crate) fn add(&self, tally: AppendTally) {
        if tally.bytes >= 0 {
            self.heap_bytes.fetch_add(tally.bytes as u64, Ordering::Relaxed);
        } else {
            self.heap_bytes.fetch_sub(tally.bytes.unsigned_abs(), Ordering::Relaxed);
        }
        self.samples.fetch_add(tally.samples, Ordering::Relaxed);
        if tally.samples > 0 {
            self.min_t.fetch_min(tally.min_t, Ordering::Relaxed);
            self.max_t.fetch_max(tally.max_t, Ordering::Relaxed);
        }
    }

    /// Approximate heap bytes of sample data (chunks and out-of-order buffers).
    pub(crate) fn heap_bytes(&self) -> u64 {
        self.heap_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn num_samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }

    pub(crate) fn num_series(&self) -> usize {
        self.index.read().series.len()
    }

    /// (min, max) sample timestamps, or None if empty.
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        let (lo, hi) = (self.min_t.load(Ordering::Relaxed), self.max_t.load(Ordering::Relaxed));
        (lo <= hi).then_some((lo, hi))
    }

    /// Every series with its label set and samples in `[mint, maxt]` (none if empty there), in
    /// label order (the engine streams through [`Head::select_sorted`]; this is for tests).
    #[cfg(test)]
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Sample>)> {
        self.select_sorted(matchers)
            .into_iter()
            .map(|(l, s)| (l, series_samples(&s, mint, maxt)))
            .filter(|(_, samples)| !samples.is_empty())
            .collect()
    }

    /// The series matching `matchers`, sorted by label set, without their samples (read them
    /// with [`Head::samples`]).
    pub(crate) fn select_sorted(&self, matchers: &[Matcher]) -> Vec<(Labels, Arc<MemSeries>)> {
        let mut v: Vec<(Labels, Arc<MemSeries>)> = {
            let ix = self.index.read();
            postings::select(&*ix, matchers)
                .iter()
                .map(|r| {
                    let s = ix.series[r as usize].clone();
                    (ix.labels_of(&s), s)
                })
                .collect()
        };
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The samples of a series of this head in `[mint, maxt]`.
    pub(crate) fn samples(s: &MemSeries, mint: i64, maxt: i64) -> Vec<Sample> {
        series_samples(s, mint, maxt)
    }

    /// Label sets of the selected series (those with any sample at all).
    pub(crate) fn series_labels(&self, matchers: &[Matcher]) -> Vec<Labels> {
        let ix = self.index.read();
        postings::select(&*ix, matchers)
            .iter()
            .map(|r| ix.labels_of(&ix.series[r as usize]))
            .collect()
    }

    /// Calls `f` with every series' labels and all its samples, in ascending label order; for
    /// writing a frozen head out as blocks.
    pub(crate) fn for_each_series_sorted(
        &self,
        mut f: impl FnMut(&Labels, Vec<Sample>) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let order: Vec<Arc<MemSeries>> = {
            let ix = self.index.read();
            let mut v = ix.series.clone();
            // same order as `Labels`' `Ord`: pairwise by (name, value)
            v.sort_by(|a, b| {
                let (a, b) = (&a.syms, &b.syms);
                let sym = |&(n, v): &(u32, u32)| (ix.symbols.str(n), ix.symbols.str(v));
                a.iter().map(sym).cmp(b.iter().map(sym))
            });
            v
        };
        for s in order {
            let labels = self.index.read().labels_of(&s);
            let samples = series_samples(&s, i64::MIN, i64::MAX);
            if !samples.is_empty() {
                f(&labels, samples)?;
            }
        }
        Ok(())
    }

    /// Names of all labels in the head.
    pub(crate) fn label_names(&self) -> Vec<String> {
        let ix = self.index.read();
        ix.postings.keys().map(|&n| ix.symbols.str(n).to_string()).collect()
    }

    /// Values of label `name` in the head.
    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        let ix = self.index.read();
        let Some(vals) = ix.symbols.get(name).and_then(|n| ix.postings.get(&n)) else {
            return Vec::new();
        };
        vals.keys().map(|&v| ix.symbols.str(v).to_string()).collect()
    }
}

/// The series' samples in `[mint, maxt]`, sorted, one per timestamp (the last written).
fn series_samples(s: &MemSeries, mint: i64, maxt: i64) -> Vec<Sample> {
    let d = s.data.lock();
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let (mut cts, mut cvs) = (Vec::new(), Vec::new());
    for c in d.sealed.iter().filter(|c| c.min_t <= maxt && mint <= c.max_t) {
        cts.clear();
        cvs.clear();
        match crate::chunkenc::decode_chunk(&c.data, &mut cts, &mut cvs) {
            Ok(()) => {
                ts.extend_from_slice(&cts);
                vs.extend_from_slice(&cvs);
            }
            // sealed by this process; failing to decode would be a codec bug, not bad input
            Err(e) => {
                tracing::error!(error = %e, "head chunk does not decode; its samples are skipped")
            }
        }
    }
    d.chunk.decode_into(&mut ts, &mut vs);
    let mut out: Vec<Sample> = ts
        .iter()
        .zip(&vs)
        .filter(|(t, _)| (mint..=maxt).contains(*t))
        .map(|(&t, &v)| Sample::new(t, v))
        .collect();
    if d.ooo.is_empty() {
        return out;
    }
    // in-order samples first, then out-of-order ones in write order; a stable sort by
    // timestamp keeps that order among equal timestamps, so keeping the last of each run is
    // "last write wins"
    out.extend(d.ooo.iter().filter(|s| (mint..=maxt).contains(&s.t)));
    drop(d);
    out.sort_by_key(|s| s.t);
    dedup_last(&mut out);
    out
}

/// Keeps, of each run of equal timestamps, the last sample.
pub(crate) fn dedup_last(v: &mut Vec<Sample>) {
    if v.len() < 2 {
        return;
    }
    let mut w = 0;
    for i in 0..v.len() {
        if i + 1 < v.len() && v[i + 1].t == v[i].t {
            continue;
        }
        v[w] = v[i];
        w += 1;
    }
    v.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocelli_model::{MatchOp, STALE_NAN};

    fn lbl(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn out_of_order_and_duplicates_last_write_wins() {
        let h = Head::new();
        let s = h.get_or_create(&lbl(&[("__name__", "m")]));
        h.append(&s, [10, 20, 30].map(|t| Sample::new(t, t as f64)));
        h.append(&s, [Sample::new(5, 0.5), Sample::new(20, 2.0), Sample::new(20, 2.5)]);
        h.append(&s, [Sample::new(40, STALE_NAN)]);
        let got = h.select(&[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX);
        let got: Vec<(i64, u64)> = got[0].1.iter().map(|s| (s.t, s.v.to_bits())).collect();
        let want: Vec<(i64, u64)> = [(5, 0.5), (10, 10.0), (20, 2.5), (30, 30.0)]
            .iter()
            .map(|&(t, v): &(i64, f64)| (t, v.to_bits()))
            .chain([(40, STALE_NAN.to_bits())])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sealed_chunks_read_back_with_out_of_order_overrides() {
        let h = Head::new();
        let s = h.get_or_create(&lbl(&[("__name__", "m")]));
        let n = HEAD_CHUNK_SAMPLES as i64 * 3 + 7;
        h.append(&s, (0..n).map(|i| Sample::new(i * 10, (i % 13) as f64 * 0.25)));
        // overwrite one sample inside a sealed chunk, and add one before everything
        h.append(&s, [Sample::new(500, -1.0), Sample::new(-10, 9.0)]);
        assert_eq!(s.data.lock().sealed.len(), 3);
        let got = &h.select(&[], i64::MIN, i64::MAX)[0].1;
        assert_eq!(got.len() as i64, n + 1);
        assert_eq!(got[0], Sample::new(-10, 9.0));
        assert_eq!(got[51], Sample::new(500, -1.0));
        assert_eq!(got[200], Sample::new(1990, (199 % 13) as f64 * 0.25));
        // a range inside one sealed chunk
        let part = &h.select(&[], 1205, 1400)[0].1;
        assert_eq!(part.first().map(|s| s.t), Some(1210));
        assert_eq!(part.len(), 20);
    }

    #[test]
    fn hash_collisions_keep_series_apart() {
        let h = Head::new();
        let (a, b) = (lbl(&[("__name__", "a")]), lbl(&[("__name__", "b")]));
        let sa = h.get_or_create_with_id(&a, 7);
        let sb = h.get_or_create_with_id(&b, 7);
        assert_ne!(sa.series_ref, sb.series_ref);
        assert_eq!(h.get_or_create_with_id(&b, 7).series_ref, sb.series_ref);
        assert_eq!(h.get_or_create_with_id(&a, 7).series_ref, sa.series_ref);
        assert_eq!(h.num_series(), 2);
    }

    #[test]
    fn matchers_select_series() {
        let h = Head::new();
        for (job, inst) in [("a", "1"), ("a", "2"), ("b", "1")] {
            let s = h.get_or_create(&lbl(&[("__name__", "up"), ("job", job), ("inst", inst)]));
            h.append(&s, [Sample::new(1, 1.0)]);
        }
        let s = h.get_or_create(&lbl(&[("__name__", "up"), ("job", "c")]));
        h.append(&s, [Sample::new(1, 1.0)]);
        let count = |ms: Vec<Matcher>| h.select(&ms, 0, 10).len();
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        assert_eq!(count(vec![m(MatchOp::Equal, "job", "a")]), 2);
        assert_eq!(count(vec![m(MatchOp::NotEqual, "job", "a")]), 2);
        assert_eq!(count(vec![m(MatchOp::Equal, "inst", "")]), 1);
        assert_eq!(count(vec![m(MatchOp::RegexMatch, "job", "a|b")]), 3);
        assert_eq!(count(vec![m(MatchOp::RegexNoMatch, "inst", "1")]), 2);
        assert_eq!(
            count(vec![m(MatchOp::Equal, "__name__", "up"), m(MatchOp::Equal, "inst", "1")]),
            2
        );
        assert_eq!(count(vec![m(MatchOp::Equal, "job", "zzz")]), 0);
        assert_eq!(count(vec![]), 4);
        // the same labels find the same series
        assert_eq!(h.num_series(), 4);
        h.get_or_create(&lbl(&[("job", "c"), ("__name__", "up")]));
        assert_eq!(h.num_series(), 4);
    }

    /// The heap bytes the head keeps as a running total equal those counted from every
    /// series, through seals, out-of-order samples and batched tallies.
    #[test]
    fn heap_bytes_total_matches_the_series() {
        let h = Head::new();
        let series: Vec<_> =
            (0..5).map(|i| h.get_or_create(&lbl(&[("__name__", &format!("m{i}"))]))).collect();
        let counted = |h: &Head| {
            h.index
                .read()
                .series
                .iter()
                .map(|s| {
                    let d = s.data.lock();
                    (d.chunk.heap_bytes() + d.ooo_bytes() + d.sealed_bytes()) as u64
                })
                .sum::<u64>()
        };
        for round in 0..400i64 {
            let mut tally = AppendTally::default();
            for (i, s) in series.iter().enumerate() {
                let t = round * 10 + i as i64;
                // every seventh round also rewrites an older sample (out of order)
                let extra = (round % 7 == 0 && round > 0).then(|| Sample::new(t - 15, 0.5));
                let batch = [Sample::new(t, (round * 3 % 11) as f64)].into_iter().chain(extra);
                if i % 2 == 0 {
                    h.append(s, batch);
                } else {
                    h.append_tallied(s, batch, &mut tally);
                }
            }
            h.add(tally);
            assert_eq!(h.heap_bytes(), counted(&h), "round {round}");
        }
        assert!(series[0].data.lock().sealed.len() >= 3);
        assert_eq!(h.num_samples(), 5 * 400 + 5 * 57);
        assert_eq!(h.time_range(), Some((0, 3994)));
    }

    #[test]
    fn find_raw_all_finds_each_label_set() {
        let h = Head::new();
        let a = h.get_or_create(&lbl(&[("__name__", "a"), ("x", "1")]));
        let b = h.get_or_create(&lbl(&[("__name__", "b")]));
        let raw_a: &[RawLabel<'_>] = &[(b"__name__", b"a"), (b"x", b"1")];
        let raw_b: &[RawLabel<'_>] = &[(b"__name__", b"b")];
        let raw_c: &[RawLabel<'_>] = &[(b"__name__", b"a"), (b"x", b"2")];
        // d's id is taken by a series with other labels: d is found past the collision
        let raw_d: &[RawLabel<'_>] = &[(b"__name__", b"d")];
        let c = h.get_or_create_with_id(&lbl(&[("__name__", "c")]), raw_series_id(raw_d).0);
        let d = h.get_or_create(&lbl(&[("__name__", "d")]));
        assert_ne!(c.series_ref, d.series_ref);
        let got = h.find_raw_all(&[raw_b, raw_c, raw_d, raw_a]);
        let refs: Vec<_> = got.iter().map(|s| s.as_ref().map(|s| s.series_ref)).collect();
        assert_eq!(refs, vec![Some(b.series_ref), None, Some(d.series_ref), Some(a.series_ref)]);
    }
}
