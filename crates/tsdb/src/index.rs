//! A block's index file: symbol table, series entries (labels + chunk references), and
//! postings (one roaring bitmap of series numbers per label pair), closed by a table of
//! contents with checksums. Layout in `docs/format/index.md`.
//!
//! The writer takes series already sorted by label set (that order is the series number) and
//! keeps only interned symbol pairs in memory until `finish`. The reader works on the mapped
//! file: it loads the symbol table and the postings table at open and decodes series entries
//! and bitmaps on demand.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ocelli_model::{Label, Labels};
use roaring::RoaringBitmap;

use crate::encoding::{Decoder, put_bytes, put_uvarint};
use crate::error::{Error, Result};
use crate::postings::IndexReader;

pub(crate) const INDEX_MAGIC: [u8; 4] = *b"OCIX";
pub(crate) const INDEX_VERSION: u32 = 1;
/// Magic, version, and the base timestamp chunk times are stored relative to.
pub(crate) const HEADER_LEN: usize = 4 + 4 + 8;
/// Six u64 section offsets, then two crc32s.
pub(crate) const TOC_LEN: usize = 6 * 8 + 4 + 4;

/// Where one chunk of a series lives in the chunks file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub min_t: i64,
    pub max_t: i64,
    pub offset: u64,
    pub len: u32,
}

/// One series in the writer: interned label pairs and chunk references.
type SeriesEntry = (Vec<(u32, u32)>, Vec<ChunkRef>);

/// Builds an index in memory and serialises it.
#[derive(Debug, Default)]
pub(crate) struct IndexWriter {
    sym_ids: HashMap<String, u32>,
    syms: Vec<String>,
    series: Vec<SeriesEntry>,
    last: Option<Labels>,
}

impl IndexWriter {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.sym_ids.get(s) {
            return i;
        }
        let i = self.syms.len() as u32;
        self.syms.push(s.to_string());
        self.sym_ids.insert(s.to_string(), i);
        i
    }

    /// Adds the next series; label sets must come in strictly ascending order.
    pub(crate) fn add(&mut self, labels: &Labels, chunks: Vec<ChunkRef>) -> Result<()> {
        if let Some(last) = &self.last
            && last >= labels
        {
            return Err(Error::InvalidSeries(format!(
                "block writer got series out of order: {labels} after {last}"
            )));
        }
        let pairs = labels.iter().map(|l| (self.intern(&l.name), self.intern(&l.value))).collect();
        self.series.push((pairs, chunks));
        self.last = Some(labels.clone());
        Ok(())
    }

    pub(crate) fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Serialises the index. Symbol ids are assigned by descending use, so the labels every
    /// series carries cost one byte each in the series entries.
    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        let mut uses = vec![0u64; self.syms.len()];
        for (pairs, _) in &self.series {
            for &(n, v) in pairs {
                uses[n as usize] += 1;
                uses[v as usize] += 1;
            }
        }
        let mut order: Vec<u32> = (0..self.syms.len() as u32).collect();
        order.sort_by(|&a, &b| {
            uses[b as usize]
                .cmp(&uses[a as usize])
                .then_with(|| self.syms[a as usize].cmp(&self.syms[b as usize]))
        });
        let mut remap = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let base_t =
            self.series.iter().flat_map(|(_, c)| c.iter().map(|c| c.min_t)).min().unwrap_or(0);
        let mut out = Vec::new();
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&base_t.to_le_bytes());

        let symbols_off = out.len() as u64;
        put_uvarint(&mut out, order.len() as u64);
        for &old in &order {
            put_bytes(&mut out, self.syms[old as usize].as_bytes());
        }

        let series_off = out.len() as u64;
        let mut offsets = Vec::with_capacity(self.series.len());
        let mut postings: HashMap<(u32, u32), RoaringBitmap> = HashMap::new();
        for (i, (pairs, chunks)) in self.series.iter().enumerate() {
            let rel = u32::try_from(out.len() as u64 - series_off).map_err(|_| {
                Error::InvalidSeries(
                    "index series section exceeds 4 GiB; cut smaller blocks".into(),
                )
            })?;
            offsets.push(rel);
            put_uvarint(&mut out, pairs.len() as u64);
            for &(n, v) in pairs {
                let (n, v) = (remap[n as usize], remap[v as usize]);
                put_uvarint(&mut out, u64::from(n));
                put_uvarint(&mut out, u64::from(v));
                postings.entry((n, v)).or_default().insert(i as u32);
            }
            put_uvarint(&mut out, chunks.len() as u64);
            for c in chunks {
                put_uvarint(&mut out, c.min_t.wrapping_sub(base_t) as u64);
                put_uvarint(&mut out, c.max_t.wrapping_sub(c.min_t) as u64);
                put_uvarint(&mut out, c.offset);
                put_uvarint(&mut out, u64::from(c.len));
            }
        }

        let offsets_off = out.len() as u64;
        for o in offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }

        let postings_off = out.len() as u64;
        let mut pairs: Vec<((u32, u32), RoaringBitmap)> = postings.into_iter().collect();
        pairs.sort_unstable_by_key(|(k, _)| *k);
        let mut table = Vec::with_capacity(pairs.len());
        for ((n, v), bm) in &pairs {
            let start = out.len() as u64;
            // writing into a Vec cannot fail
            let _ = bm.serialize_into(&mut out);
            table.push((*n, *v, start, out.len() as u64 - start));
        }

        let table_off = out.len() as u64;
        put_uvarint(&mut out, table.len() as u64);
        for (n, v, off, len) in table {
            put_uvarint(&mut out, u64::from(n));
            put_uvarint(&mut out, u64::from(v));
            put_uvarint(&mut out, off);
            put_uvarint(&mut out, len);
        }

        let toc_off = out.len() as u64;
        let body_crc = crc32fast::hash(&out);
        for o in [symbols_off, series_off, offsets_off, postings_off, table_off, toc_off] {
            out.extend_from_slice(&o.to_le_bytes());
        }
        out.extend_from_slice(&body_crc.to_le_bytes());
        let toc_crc = crc32fast::hash(&out[toc_off as usize..]);
        out.extend_from_slice(&toc_crc.to_le_bytes());
        Ok(out)
    }
}

/// A parsed index over borrowed (mapped) bytes.
#[derive(Debug)]
pub(crate) struct IndexView {
    path: PathBuf,
    syms: Vec<Box<str>>,
    sym_ids: HashMap<Box<str>, u32>,
    series_off: usize,
    offsets_off: usize,
    base_t: i64,
    num_series: u32,
    /// name symbol -> (value symbol, offset, len), sorted by value symbol
    postings: HashMap<u32, Vec<(u32, u64, u64)>>,
}

impl IndexView {
    /// Parses and fully verifies the index in `buf` (read from `path`, for messages).
    pub(crate) fn open(path: &Path, buf: &[u8]) -> Result<IndexView> {
        let corrupt = |offset: usize, detail: String| Error::Corrupt {
            what: "index",
            path: path.to_path_buf(),
            offset: offset as u64,
            detail,
        };
        if buf.len() < HEADER_LEN + TOC_LEN || buf[..4] != INDEX_MAGIC {
            return Err(corrupt(0, "missing index magic".into()));
        }
        if buf[4..8] != INDEX_VERSION.to_le_bytes() {
            return Err(corrupt(4, format!("unsupported index version {:?}", &buf[4..8])));
        }
        let toc_at = buf.len() - TOC_LEN;
        let mut d = Decoder::new(&buf[toc_at..]);
        let mut offs = [0u64; 6];
        for o in &mut offs {
            *o = d.u64_le().ok_or_else(|| corrupt(toc_at, "short table of contents".into()))?;
        }
        let body_crc = d.u32_le().unwrap_or_default();
        let toc_crc = d.u32_le().unwrap_or_default();
        if crc32fast::hash(&buf[toc_at..buf.len() - 4]) != toc_crc {
            return Err(corrupt(toc_at, "table of contents checksum mismatch".into()));
        }
        if offs[5] as usize != toc_at || offs.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt(toc_at, format!("inconsistent section offsets {offs:?}")));
        }
        // the body checksum is checked by `Block::open` through the file's checksum in
        // meta.json, read without the map; checking it here again would make every index page
        // resident
        let _ = body_crc;
        let base_t = i64::from_le_bytes([
            buf[8], buf[9], buf[10], buf[11], buf[12], buf[13], buf[14], buf[15],
        ]);
        let [symbols_off, series_off, offsets_off, _postings_off, table_off, _] =
            offs.map(|o| o as usize);

        let mut d = Decoder::new(&buf[symbols_off..series_off]);
        let n = d.uvarint().ok_or_else(|| corrupt(symbols_off, "bad symbol count".into()))?;
        let mut syms = Vec::new();
        for i in 0..n {
            let s =
                d.str().ok_or_else(|| corrupt(symbols_off + d.pos(), format!("bad symbol {i}")))?;
            syms.push(Box::<str>::from(s));
        }
        let sym_ids = syms.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();

        let num_series = ((_postings_off - offsets_off) / 4) as u32;
        let mut postings: HashMap<u32, Vec<(u32, u64, u64)>> = HashMap::new();
        let mut d = Decoder::new(&buf[table_off..toc_at]);
        let n = d.uvarint().ok_or_else(|| corrupt(table_off, "bad postings count".into()))?;
        for _ in 0..n {
            let e = (|| Some((d.uvarint()?, d.uvarint()?, d.uvarint()?, d.uvarint()?)))();
            let (nm, v, off, len) =
                e.ok_or_else(|| corrupt(table_off + d.pos(), "bad postings table entry".into()))?;
            if nm >= syms.len() as u64
                || v >= syms.len() as u64
                || off.checked_add(len).is_none_or(|end| end > table_off as u64)
            {
                return Err(corrupt(table_off + d.pos(), "postings entry out of range".into()));
            }
            postings.entry(nm as u32).or_default().push((v as u32, off, len));
        }
        Ok(IndexView {
            path: path.to_path_buf(),
            syms,
            sym_ids,
            series_off,
            offsets_off,
            base_t,
            num_series,
            postings,
        })
    }

    pub(crate) fn num_series(&self) -> u32 {
        self.num_series
    }

    fn corrupt(&self, offset: usize, detail: String) -> Error {
        Error::Corrupt { what: "index", path: self.path.clone(), offset: offset as u64, detail }
    }

    /// Labels and chunk references of series number `i`.
    pub(crate) fn series(&self, buf: &[u8], i: u32) -> Result<(Labels, Vec<ChunkRef>)> {
        let at = self.offsets_off + i as usize * 4;
        let off = buf
            .get(at..at + 4)
            .map(|b| self.series_off + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| self.corrupt(at, format!("no offset for series {i}")))?;
        let mut d = Decoder::new(buf.get(off..self.offsets_off).unwrap_or_default());
        let bad = |d: &Decoder<'_>| self.corrupt(off + d.pos(), format!("bad series entry {i}"));
        let n = d.uvarint().ok_or_else(|| bad(&d))?;
        let mut labels = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (nm, v) =
                (d.uvarint().ok_or_else(|| bad(&d))?, d.uvarint().ok_or_else(|| bad(&d))?);
            let (Some(nm), Some(v)) = (self.syms.get(nm as usize), self.syms.get(v as usize))
            else {
                return Err(bad(&d));
            };
            if v.is_empty() || labels.last().is_some_and(|l: &Label| *l.name >= **nm) {
                return Err(bad(&d));
            }
            labels.push(Label::new(&**nm, &**v));
        }
        let nc = d.uvarint().ok_or_else(|| bad(&d))?;
        let mut chunks = Vec::with_capacity(nc.min(1024) as usize);
        for _ in 0..nc {
            let min_t = self.base_t.wrapping_add(d.uvarint().ok_or_else(|| bad(&d))? as i64);
            let span = d.uvarint().ok_or_else(|| bad(&d))?;
            let offset = d.uvarint().ok_or_else(|| bad(&d))?;
            let len = d.uvarint().and_then(|l| u32::try_from(l).ok()).ok_or_else(|| bad(&d))?;
            chunks.push(ChunkRef { min_t, max_t: min_t.wrapping_add(span as i64), offset, len });
        }
        Ok((Labels::from_sorted(labels), chunks))
    }

    /// Label names present in the block, sorted.
    pub(crate) fn label_names(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.postings.keys().map(|&n| self.syms[n as usize].to_string()).collect();
        v.sort();
        v
    }

    /// Values of label `name`, sorted.
    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        let Some(list) = self.sym_ids.get(name).and_then(|n| self.postings.get(n)) else {
            return Vec::new();
        };
        let mut v: Vec<String> =
            list.iter().map(|&(v, _, _)| self.syms[v as usize].to_string()).collect();
        v.sort();
        v
    }

    /// A view that evaluates matchers on the mapped bytes.
    pub(crate) fn reader<'a>(&'a self, buf: &'a [u8]) -> MappedIndex<'a> {
        MappedIndex { ix: self, buf }
    }
}

/// [`IndexReader`] over a mapped index. A bitmap that does not decode counts as empty; the
/// whole file was checksummed at open, so that only happens if the file changed under us.
#[derive(Debug)]
pub(crate) struct MappedIndex<'a> {
    ix: &'a IndexView,
    buf: &'a [u8],
}

impl MappedIndex<'_> {
    fn bitmap(&self, off: u64, len: u64) -> RoaringBitmap {
        let bytes = self.buf.get(off as usize..(off + len) as usize).unwrap_or_default();
        RoaringBitmap::deserialize_from(bytes).unwrap_or_default()
    }
}

impl IndexReader for MappedIndex<'_> {
    fn postings(&self, name: &str, value: &str) -> RoaringBitmap {
        let (Some(n), Some(v)) = (self.ix.sym_ids.get(name), self.ix.sym_ids.get(value)) else {
            return RoaringBitmap::new();
        };
        let Some(list) = self.ix.postings.get(n) else { return RoaringBitmap::new() };
        match list.binary_search_by_key(v, |e| e.0) {
            Ok(i) => self.bitmap(list[i].1, list[i].2),
            Err(_) => RoaringBitmap::new(),
        }
    }

    fn union_where(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> RoaringBitmap {
        let Some(list) = self.ix.sym_ids.get(name).and_then(|n| self.ix.postings.get(n)) else {
            return RoaringBitmap::new();
        };
        let mut acc = RoaringBitmap::new();
        for &(v, off, len) in list {
            if pred(&self.ix.syms[v as usize]) {
                acc |= self.bitmap(off, len);
            }
        }
        acc
    }

    fn all(&self) -> RoaringBitmap {
        let mut b = RoaringBitmap::new();
        b.insert_range(0..self.ix.num_series);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_index() -> Vec<u8> {
        let mut w = IndexWriter::default();
        for i in 0..20 {
            let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", format!("{i:02}"))])
                .unwrap();
            let c =
                ChunkRef { min_t: 1000 + i, max_t: 2000 + i, offset: 8 + 50 * i as u64, len: 46 };
            w.add(&l, vec![c]).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let buf = sample_index();
        let ix = IndexView::open(Path::new("index"), &buf).unwrap();
        assert_eq!(ix.num_series(), 20);
        let (l, c) = ix.series(&buf, 7).unwrap();
        assert_eq!(l.get("i"), Some("07"));
        assert_eq!(c, vec![ChunkRef { min_t: 1007, max_t: 2007, offset: 358, len: 46 }]);
        assert_eq!(ix.label_values("i").len(), 20);
        assert_eq!(ix.label_names(), ["__name__", "i"]);
        let r = ix.reader(&buf);
        assert_eq!(r.postings("i", "03").iter().collect::<Vec<_>>(), [3]);
        assert_eq!(r.postings("__name__", "m").len(), 20);
    }

    proptest! {
        /// A damaged index is an error or different data, never a panic.
        #[test]
        fn damaged_index_never_panics(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
            let mut buf = sample_index();
            for (at, x) in flips {
                let i = at.index(buf.len());
                buf[i] ^= x;
            }
            if let Ok(ix) = IndexView::open(Path::new("index"), &buf) {
                for i in 0..ix.num_series() {
                    let _ = ix.series(&buf, i);
                }
                let r = ix.reader(&buf);
                let _ = r.union_where("i", &|_| true);
                let _ = ix.label_values("i");
            }
            let short = &buf[..cut.index(buf.len())];
            let _ = IndexView::open(Path::new("index"), short);
        }
    }
}
