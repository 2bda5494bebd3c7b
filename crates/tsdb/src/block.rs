//! Immutable on-disk blocks: writing one from sorted series, opening and verifying one, and
//! reading series out of it.
//!
//! A block is a folder `blocks/<id>/` with `meta.json` (time range, counts, lineage, file sizes
//! and checksums), `chunks` (compressed sealed chunks, each followed by its crc32) and `index`
//! (see [`crate::index`]). It is written under `<id>.tmp`, synced, and renamed into place, so a
//! crash leaves either a whole block or a `.tmp` folder that start-up removes. Opening checks
//! both files against the sizes and checksums in `meta.json`; any mismatch is an error that
//! the engine answers by moving the block to quarantine. Files are memory-mapped; pages are
//! read on demand. Layout in `docs/format/block.md` and `docs/format/chunks.md`.

#![allow(unsafe_code)] // memory maps; see the SAFETY note in `map`

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use ocelli_model::rollup::{Window, window_end};
use ocelli_model::{Labels, Matcher, Sample};
use serde::{Deserialize, Serialize};

use crate::chunkenc;
use crate::error::{Error, IoContext, Result};
use crate::filenames::{BLOCK_CHUNKS, BLOCK_INDEX, BLOCK_META, TMP_SUFFIX, block_dir_name};
use crate::index::{ChunkRef, IndexView, IndexWriter};
use crate::postings;
use crate::wal::sync_dir;

pub(crate) const CHUNKS_MAGIC: [u8; 4] = *b"OCCK";
pub(crate) const CHUNKS_VERSION: u32 = 1;
pub(crate) const META_FORMAT: u32 = 1;
/// A series' samples in a block are cut into chunks of at most this many samples.
pub(crate) const MAX_CHUNK_SAMPLES: usize = 4096;

/// Size and crc32 of one block file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub size: u64,
    pub crc32: u32,
}

/// The contents of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub format: u32,
    /// Block number: unique in the data directory, increasing in creation order.
    pub seq: u64,
    /// Inclusive time range of the samples, in ms.
    pub min_t: i64,
    pub max_t: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    /// 1 for a block cut from the head, 1 + the highest source level for a compacted one.
    pub level: u32,
    /// Blocks this one was compacted from (empty for a head cut).
    pub sources: Vec<u64>,
    pub index: FileMeta,
    pub chunks: FileMeta,
    /// 0 for a block of raw samples; for a rollup block, the width of its windows in ms. Its
    /// chunks then hold [`Window`]s ([`ROLLUP_COLUMNS`] value columns per chunk), stamped with
    /// each window's last raw sample, and all of them lie in one rollup span.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolution: i64,
    /// For a rollup block: the highest block `seq` in the directory when it was built. A raw
    /// (or finer rollup) block over its span with a higher `seq` holds data it lacks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub built_after: u64,
}

fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Value columns of a rollup chunk, in order: `count`, `sum`, `min`, `max`, `t - first_t`,
/// `first_v`, `t - last_t`, `last_v`, `counter_correction`, `resets`, `changes`.
pub(crate) const ROLLUP_COLUMNS: usize = 11;

/// Writes one block from series given in ascending label order.
#[derive(Debug)]
pub(crate) struct BlockWriter {
    tmp: PathBuf,
    dir: PathBuf,
    seq: u64,
    /// `None` once `finish` has taken it.
    chunks: Option<BufWriter<File>>,
    chunks_crc: crc32fast::Hasher,
    chunks_off: u64,
    index: IndexWriter,
    min_t: i64,
    max_t: i64,
    samples: u64,
    num_chunks: u64,
    scratch: Vec<u8>,
    ts: Vec<i64>,
    vs: Vec<f64>,
    finished: bool,
}

impl Drop for BlockWriter {
    /// A writer dropped before `finish` (an error while adding series) removes its folder.
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

impl BlockWriter {
    pub(crate) fn create(blocks_dir: &Path, seq: u64) -> Result<BlockWriter> {
        let dir = blocks_dir.join(block_dir_name(seq));
        let tmp = blocks_dir.join(format!("{}{TMP_SUFFIX}", block_dir_name(seq)));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).io_ctx("remove", &tmp)?;
        }
        fs::create_dir_all(&tmp).io_ctx("create dir", &tmp)?;
        let p = tmp.join(BLOCK_CHUNKS);
        let mut chunks = BufWriter::with_capacity(1 << 20, File::create(&p).io_ctx("create", &p)?);
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&CHUNKS_MAGIC);
        hdr.extend_from_slice(&CHUNKS_VERSION.to_le_bytes());
        chunks.write_all(&hdr).io_ctx("write", &p)?;
        let mut chunks_crc = crc32fast::Hasher::new();
        chunks_crc.update(&hdr);
        Ok(BlockWriter {
            tmp,
            dir,
            seq,
            chunks: Some(chunks),
            chunks_crc,
            chunks_off: hdr.len() as u64,
            index: IndexWriter::default(),
            min_t: i64::MAX,
            max_t: i64::MIN,
            samples: 0,
            num_chunks: 0,
            scratch: Vec::new(),
            ts: Vec::new(),
            vs: Vec::new(),
            finished: false,
        })
    }

    /// Adds a series; `samples` sorted by time with unique timestamps, not empty.
    pub(crate) fn add_series(&mut self, labels: &Labels, samples: &[Sample]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut refs = Vec::with_capacity(samples.len().div_ceil(MAX_CHUNK_SAMPLES));
        for part in samples.chunks(MAX_CHUNK_SAMPLES) {
            self.ts.clear();
            self.vs.clear();
            self.ts.extend(part.iter().map(|s| s.t));
            self.vs.extend(part.iter().map(|s| s.v));
            self.scratch.clear();
            chunkenc::encode_chunk(&self.ts, &self.vs, &mut self.scratch);
            refs.push(self.write_scratch(part[0].t, part[part.len() - 1].t)?);
        }
        self.samples += samples.len() as u64;
        self.index.add(labels, refs)
    }

    /// Adds a series of a rollup block: its windows, sorted by time, not empty.
    pub(crate) fn add_windows(&mut self, labels: &Labels, windows: &[Window]) -> Result<()> {
        if windows.is_empty() {
            return Ok(());
        }
        let mut refs = Vec::with_capacity(windows.len().div_ceil(MAX_CHUNK_SAMPLES));
        let mut cols: Vec<Vec<f64>> = vec![Vec::new(); ROLLUP_COLUMNS];
        for part in windows.chunks(MAX_CHUNK_SAMPLES) {
            self.ts.clear();
            self.ts.extend(part.iter().map(|w| w.t));
            for c in &mut cols {
                c.clear();
            }
            for w in part {
                let w = w.with_decimal_sums();
                let row = [
                    w.count as f64,
                    w.sum,
                    w.min,
                    w.max,
                    (w.t - w.first_t) as f64,
                    w.first_v,
                    (w.t - w.last_t) as f64,
                    w.last_v,
                    w.counter_correction,
                    w.resets as f64,
                    w.changes as f64,
                ];
                for (c, v) in cols.iter_mut().zip(row) {
                    c.push(v);
                }
            }
            let views: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
            self.scratch.clear();
            chunkenc::encode_columns(&self.ts, &views, &mut self.scratch);
            refs.push(self.write_scratch(part[0].t, part[part.len() - 1].t)?);
        }
        self.samples += windows.len() as u64;
        self.index.add(labels, refs)
    }

    /// Appends the chunk in `scratch` (spanning `[min_t, max_t]`) and its checksum.
    fn write_scratch(&mut self, min_t: i64, max_t: i64) -> Result<ChunkRef> {
        {
            let crc = crc32fast::hash(&self.scratch);
            let p = self.tmp.join(BLOCK_CHUNKS);
            let Some(w) = self.chunks.as_mut() else {
                return Err(Error::InvalidBlock {
                    path: p,
                    detail: "block writer already finished".into(),
                });
            };
            w.write_all(&self.scratch).io_ctx("write", &p)?;
            w.write_all(&crc.to_le_bytes()).io_ctx("write", &p)?;
            self.chunks_crc.update(&self.scratch);
            self.chunks_crc.update(&crc.to_le_bytes());
            let r =
                ChunkRef { min_t, max_t, offset: self.chunks_off, len: self.scratch.len() as u32 };
            self.chunks_off += self.scratch.len() as u64 + 4;
            self.min_t = self.min_t.min(min_t);
            self.max_t = self.max_t.max(max_t);
            self.num_chunks += 1;
            Ok(r)
        }
    }

    /// Writes the index and meta, syncs and publishes the block. Returns `None` (and removes
    /// the temporary folder) if no series was added.
    pub(crate) fn finish(self, level: u32, sources: Vec<u64>) -> Result<Option<Block>> {
        self.finish_with(level, sources, 0, 0)
    }

    /// [`BlockWriter::finish`] for a rollup block of `resolution` built after block `built_after`.
    pub(crate) fn finish_rollup(self, resolution: i64, built_after: u64) -> Result<Option<Block>> {
        self.finish_with(1, Vec::new(), resolution, built_after)
    }

    fn finish_with(
        self,
        level: u32,
        sources: Vec<u64>,
        resolution: i64,
        built_after: u64,
    ) -> Result<Option<Block>> {
        let mut this = self;
        this.finished = true;
        let tmp = this.tmp.clone();
        let res = this.finish_inner(level, sources, resolution, built_after);
        if res.is_err() {
            // never leave a half-written block behind; a retry starts from scratch
            let _ = fs::remove_dir_all(&tmp);
        }
        res
    }

    fn finish_inner(
        &mut self,
        level: u32,
        sources: Vec<u64>,
        resolution: i64,
        built_after: u64,
    ) -> Result<Option<Block>> {
        let (tmp, dir, seq, chunks_off) =
            (self.tmp.clone(), self.dir.clone(), self.seq, self.chunks_off);
        let index = std::mem::take(&mut self.index);
        let chunks_crc = std::mem::take(&mut self.chunks_crc);
        let Some(chunks) = self.chunks.take() else {
            return Err(Error::InvalidBlock {
                path: tmp,
                detail: "block writer finished twice".into(),
            });
        };
        if index.num_series() == 0 {
            drop(chunks);
            fs::remove_dir_all(&tmp).io_ctx("remove", &tmp)?;
            return Ok(None);
        }
        let p = tmp.join(BLOCK_CHUNKS);
        let file = chunks.into_inner().map_err(|e| e.into_error()).io_ctx("write", &p)?;
        file.sync_all().io_ctx("fsync", &p)?;
        let num_series = index.num_series() as u64;
        let ibuf = index.finish()?;
        let p = tmp.join(BLOCK_INDEX);
        write_synced(&p, &ibuf)?;
        let meta = BlockMeta {
            format: META_FORMAT,
            seq,
            min_t: self.min_t,
            max_t: self.max_t,
            num_series,
            num_samples: self.samples,
            num_chunks: self.num_chunks,
            level,
            sources,
            index: FileMeta { size: ibuf.len() as u64, crc32: crc32fast::hash(&ibuf) },
            chunks: FileMeta { size: chunks_off, crc32: chunks_crc.finalize() },
            resolution,
            built_after,
        };
        drop(ibuf);
        let p = tmp.join(BLOCK_META);
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::InvalidBlock {
            path: p.clone(),
            detail: format!("cannot serialise meta: {e}"),
        })?;
        write_synced(&p, &json)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &dir).io_ctx("rename", &tmp)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Block::open(&dir).map(Some)
    }
}

fn write_synced(p: &Path, data: &[u8]) -> Result<()> {
    let mut f = File::create(p).io_ctx("create", p)?;
    f.write_all(data).io_ctx("write", p)?;
    f.sync_all().io_ctx("fsync", p)
}

/// An open, verified block.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) dir: PathBuf,
    pub(crate) meta: BlockMeta,
    index_map: Mmap,
    chunks_map: Mmap,
    index: IndexView,
}

fn file_crc(p: &Path) -> Result<u32> {
    use std::io::Read;
    let mut f = File::open(p).io_ctx("open", p)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).io_ctx("read", p)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

fn map(p: &Path) -> Result<Mmap> {
    let f = File::open(p).io_ctx("open", p)?;
    // SAFETY: block files are immutable once published and only this process (holding the
    // data directory lock) deletes them, by unlinking, which keeps existing maps valid.
    unsafe { Mmap::map(&f) }.io_ctx("mmap", p)
}

impl Block {
    /// Opens a block folder and verifies its files against `meta.json`.
    pub(crate) fn open(dir: &Path) -> Result<Block> {
        let invalid = |detail: String| Error::InvalidBlock { path: dir.to_path_buf(), detail };
        let mp = dir.join(BLOCK_META);
        // a missing file is damage; any other I/O error (permissions, too many open files) is
        // not the block's fault and is returned as is, so the block is not quarantined for it
        let damaged_or_io = |name: &str, e: Error| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                invalid(format!("{name} is missing"))
            }
            e => e,
        };
        let meta_bytes =
            fs::read(&mp).io_ctx("read", &mp).map_err(|e| damaged_or_io(BLOCK_META, e))?;
        let meta: BlockMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|e| invalid(format!("{BLOCK_META} does not parse: {e}")))?;
        if meta.format != META_FORMAT {
            return Err(invalid(format!("unsupported block format {}", meta.format)));
        }
        let ip = dir.join(BLOCK_INDEX);
        let cp = dir.join(BLOCK_CHUNKS);
        let index_map = map(&ip).map_err(|e| damaged_or_io(BLOCK_INDEX, e))?;
        let chunks_map = map(&cp).map_err(|e| damaged_or_io(BLOCK_CHUNKS, e))?;
        for (name, m, fm) in
            [(BLOCK_INDEX, &index_map, &meta.index), (BLOCK_CHUNKS, &chunks_map, &meta.chunks)]
        {
            if m.len() as u64 != fm.size {
                return Err(invalid(format!(
                    "{name} is {} bytes, {BLOCK_META} says {}",
                    m.len(),
                    fm.size
                )));
            }
            // read through the file, not the map: pages touched through a map count as the
            // process' resident memory for as long as the map lives
            let crc = file_crc(&dir.join(name)).map_err(|e| damaged_or_io(name, e))?;
            if crc != fm.crc32 {
                return Err(invalid(format!(
                    "{name} checksum mismatch: computed {crc:08x}, {BLOCK_META} says {:08x}",
                    fm.crc32
                )));
            }
        }
        if chunks_map.len() < 8 || chunks_map[..4] != CHUNKS_MAGIC {
            return Err(invalid(format!("{BLOCK_CHUNKS} has no chunks magic")));
        }
        if chunks_map[4..8] != CHUNKS_VERSION.to_le_bytes() {
            return Err(invalid(format!(
                "{BLOCK_CHUNKS} has unsupported version {:?}",
                &chunks_map[4..8]
            )));
        }
        let index = IndexView::open(&ip, &index_map)?;
        if u64::from(index.num_series()) != meta.num_series {
            return Err(invalid(format!(
                "index holds {} series, {BLOCK_META} says {}",
                index.num_series(),
                meta.num_series
            )));
        }
        Ok(Block { dir: dir.to_path_buf(), meta, index_map, chunks_map, index })
    }

    pub(crate) fn disk_bytes(&self) -> u64 {
        self.meta.index.size + self.meta.chunks.size
    }

    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_t <= maxt && mint <= self.meta.max_t
    }

    /// The numbers of the series matching `matchers`; ascending numbers are in label order.
    pub(crate) fn select_ids(&self, matchers: &[Matcher]) -> roaring::RoaringBitmap {
        postings::select(&self.index.reader(&self.index_map), matchers)
    }

    /// Series number `i`: its labels and chunk references.
    pub(crate) fn series_chunks(&self, i: u32) -> Result<(Labels, Vec<ChunkRef>)> {
        self.index.series(&self.index_map, i)
    }

    /// The samples in `[mint, maxt]` of the chunks of one series.
    pub(crate) fn read_chunks(
        &self,
        chunks: &[ChunkRef],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Sample>> {
        // decoding scratch reused across series: a selection reads thousands of series in a
        // row, and fresh column buffers for each cost more than their decoding (measured)
        thread_local! {
            static SCRATCH: std::cell::RefCell<(Vec<i64>, Vec<f64>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        SCRATCH.with_borrow_mut(|(ts, vs)| {
            let r = self.read_chunks_with(chunks, mint, maxt, ts, vs);
            // a rare huge series must not pin its buffers to the thread
            if ts.capacity() > 1 << 16 {
                *ts = Vec::new();
                *vs = Vec::new();
            }
            r
        })
    }

    fn read_chunks_with(
        &self,
        chunks: &[ChunkRef],
        mint: i64,
        maxt: i64,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| c.min_t <= maxt && mint <= c.max_t) {
            let data = self.chunk_bytes(c)?;
            let corrupt = |detail: String| Error::Corrupt {
                what: "chunk",
                path: self.dir.join(BLOCK_CHUNKS),
                offset: c.offset,
                detail,
            };
            ts.clear();
            vs.clear();
            chunkenc::decode_chunk(data, ts, vs).map_err(|e| corrupt(e.to_string()))?;
            // timestamps ascend: the samples in range are one run of them
            let lo = ts.partition_point(|&t| t < mint);
            let hi = ts.partition_point(|&t| t <= maxt).max(lo);
            out.reserve(hi - lo);
            out.extend(ts[lo..hi].iter().zip(&vs[lo..hi]).map(|(&t, &v)| Sample::new(t, v)));
        }
        Ok(out)
    }

    /// The windows of one series of a rollup block whose window ends lie in `[e_lo, e_hi]`.
    pub(crate) fn read_windows(
        &self,
        chunks: &[ChunkRef],
        e_lo: i64,
        e_hi: i64,
    ) -> Result<Vec<Window>> {
        let res = self.meta.resolution;
        let mut out = Vec::new();
        let mut ts = Vec::new();
        let mut cols: Vec<Vec<f64>> = vec![Vec::new(); ROLLUP_COLUMNS];
        for c in chunks.iter().filter(|c| c.min_t <= e_hi && e_lo - res < c.max_t) {
            let data = self.chunk_bytes(c)?;
            ts.clear();
            for col in &mut cols {
                col.clear();
            }
            chunkenc::decode_columns(data, &mut ts, &mut cols).map_err(|e| Error::Corrupt {
                what: "chunk",
                path: self.dir.join(BLOCK_CHUNKS),
                offset: c.offset,
                detail: e.to_string(),
            })?;
            for (i, &t) in ts.iter().enumerate() {
                let e = window_end(t, res);
                if e < e_lo || e > e_hi {
                    continue;
                }
                let col = |k: usize| cols[k][i];
                out.push(Window {
                    t,
                    count: col(0) as u64,
                    sum: col(1),
                    min: col(2),
                    max: col(3),
                    first_t: t - col(4) as i64,
                    first_v: col(5),
                    last_t: t - col(6) as i64,
                    last_v: col(7),
                    counter_correction: col(8),
                    resets: col(9) as u64,
                    changes: col(10) as u64,
                });
            }
        }
        Ok(out)
    }

    /// A chunk's bytes, checked against its checksum.
    fn chunk_bytes(&self, c: &ChunkRef) -> Result<&[u8]> {
        let (start, end) = (c.offset as usize, c.offset as usize + c.len as usize);
        let corrupt = |detail: &str| Error::Corrupt {
            what: "chunk",
            path: self.dir.join(BLOCK_CHUNKS),
            offset: c.offset,
            detail: detail.into(),
        };
        let (Some(data), Some(crc)) =
            (self.chunks_map.get(start..end), self.chunks_map.get(end..end + 4))
        else {
            return Err(corrupt("chunk reference past the end of the file"));
        };
        if crc32fast::hash(data).to_le_bytes() != crc {
            return Err(corrupt("chunk checksum mismatch"));
        }
        Ok(data)
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`, in label order (the
    /// engine streams instead; this is for tests).
    #[cfg(test)]
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>> {
        let ids = self.select_ids(matchers);
        let mut out = Vec::with_capacity(ids.len() as usize);
        for i in ids {
            let (labels, chunks) = self.series_chunks(i)?;
            let samples = self.read_chunks(&chunks, mint, maxt)?;
            if !samples.is_empty() {
                out.push((labels, samples));
            }
        }
        Ok(out)
    }

    /// Label sets of the series matching `matchers`.
    pub(crate) fn series_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>> {
        let ids = postings::select(&self.index.reader(&self.index_map), matchers);
        ids.iter().map(|i| self.index.series(&self.index_map, i).map(|(l, _)| l)).collect()
    }

    pub(crate) fn label_names(&self) -> Vec<String> {
        self.index.label_names()
    }

    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        self.index.label_values(name)
    }

    pub(crate) fn num_series(&self) -> u32 {
        self.index.num_series()
    }

    /// Series number `i` with all its samples (for compaction).
    pub(crate) fn read_series(&self, i: u32) -> Result<(Labels, Vec<Sample>)> {
        let (labels, chunks) = self.index.series(&self.index_map, i)?;
        let samples = self.read_chunks(&chunks, i64::MIN, i64::MAX)?;
        Ok((labels, samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lbl(v: &str) -> Labels {
        Labels::from_pairs([("__name__", v)]).unwrap()
    }

    #[test]
    fn failed_write_leaves_no_folder() {
        let d = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(d.path(), 1).unwrap();
        w.add_series(&lbl("b"), &[Sample::new(1, 1.0)]).unwrap();
        let e = w.add_series(&lbl("a"), &[Sample::new(1, 1.0)]).unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
        drop(w);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn written_block_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(d.path(), 3).unwrap();
        let samples: Vec<Sample> = (0..5000).map(|i| Sample::new(i * 15, i as f64)).collect();
        w.add_series(&lbl("a"), &samples).unwrap();
        let b = w.finish(1, vec![]).unwrap().unwrap();
        assert_eq!((b.meta.num_series, b.meta.num_samples, b.meta.num_chunks), (1, 5000, 2));
        let got = b.select(&[], 15 * 4000, 15 * 4100).unwrap();
        assert_eq!(got[0].1, samples[4000..=4100].to_vec());
        assert!(d.path().join(block_dir_name(3)).join(BLOCK_META).exists());
    }
}
