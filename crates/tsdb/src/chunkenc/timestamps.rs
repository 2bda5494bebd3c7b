//! Timestamp column of the sealed chunk.
//!
//! This module owns the two timestamp codecs: `DoD` (first timestamp and first delta as
//! varints, then the delta-of-deltas through `bstream::pack_ints`, so a perfectly regular
//! series costs two bytes after the first two varints) and `Pco` (pcodec on the raw i64
//! column, which wins on jittered scrapes). `encode` tries `DoD` and only tries pco when the
//! delta-of-deltas are not all equal and the chunk has at least `PCO_MIN_SAMPLES` samples,
//! keeping the smaller.
//!
//! It hands off framing (sample count, column lengths, codec tags) to `mod.rs`; the column
//! never stores its own length or count. It deliberately does not validate that decoded
//! timestamps increase: corrupt input yields an error or different data, never a panic, and
//! ordering is the caller's invariant on the write side.
//!
//! Hand-written where no crate fits: the DoD layout is a few lines on top of `pack_ints`;
//! pco is used as a library for the other codec.

use super::bstream::{ByteReader, pack_ints, put_varint, unpack_ints};
use super::{ChunkError, Result};

/// Timestamp codec tag stored in the sealed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsCodec {
    DoD = 0,
    Pco = 1,
}

impl TsCodec {
    pub fn from_tag(tag: u8) -> Result<Self> {
        match tag {
            0 => Ok(TsCodec::DoD),
            1 => Ok(TsCodec::Pco),
            _ => Err(ChunkError::UnknownCodec { column: "timestamp", tag }),
        }
    }
}

fn encode_dod(ts: &[i64], out: &mut Vec<u8>) -> bool {
    let Some(&t0) = ts.first() else { return true };
    put_varint(out, t0);
    if ts.len() < 2 {
        return true;
    }
    let d1 = ts[1].wrapping_sub(t0);
    put_varint(out, d1);
    if ts.len() < 3 {
        return true;
    }
    let mut dods = Vec::with_capacity(ts.len() - 2);
    let mut prev = d1;
    for w in ts[1..].windows(2) {
        let d = w[1].wrapping_sub(w[0]);
        dods.push(d.wrapping_sub(prev));
        prev = d;
    }
    let regular = dods.iter().all(|&d| d == dods[0]);
    pack_ints(&dods, out);
    regular
}

/// Encode the timestamp column into `out`, returning the codec used.
pub fn encode(ts: &[i64], out: &mut Vec<u8>) -> TsCodec {
    let start = out.len();
    let regular = encode_dod(ts, out);
    if regular || ts.len() < super::values::PCO_MIN_SAMPLES {
        return TsCodec::DoD;
    }
    if let Ok(p) = pco::standalone::simple_compress(ts, &pco::ChunkConfig::default())
        && p.len() < out.len() - start
    {
        out.truncate(start);
        out.extend_from_slice(&p);
        return TsCodec::Pco;
    }
    TsCodec::DoD
}

/// Encode with a forced codec (for measurement).
pub fn encode_with(ts: &[i64], codec: TsCodec, out: &mut Vec<u8>) -> Option<()> {
    match codec {
        TsCodec::DoD => {
            encode_dod(ts, out);
        }
        TsCodec::Pco => {
            let p = pco::standalone::simple_compress(ts, &pco::ChunkConfig::default()).ok()?;
            out.extend_from_slice(&p);
        }
    }
    Some(())
}

/// Decode exactly `n` timestamps from `col` (the whole column) into `ts`.
pub fn decode(codec: TsCodec, col: &[u8], n: usize, ts: &mut Vec<i64>) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    match codec {
        TsCodec::DoD => {
            let mut r = ByteReader::new(col);
            let mut t = r.read_varint()?;
            ts.reserve(n.min(col.len() * 8));
            ts.push(t);
            if n >= 2 {
                let mut d = r.read_varint()?;
                t = t.wrapping_add(d);
                ts.push(t);
                if n >= 3 {
                    let mut dods = Vec::new();
                    unpack_ints(&mut r, n - 2, &mut dods)?;
                    for dod in dods {
                        d = d.wrapping_add(dod);
                        t = t.wrapping_add(d);
                        ts.push(t);
                    }
                }
            }
            if !r.remaining().is_empty() {
                return Err(ChunkError::TrailingBytes {
                    column: "timestamp",
                    extra: r.remaining().len(),
                });
            }
        }
        TsCodec::Pco => {
            let v: Vec<i64> = pco::standalone::simple_decompress(col)
                .map_err(|e| ChunkError::Pco { column: "timestamp", msg: e.to_string() })?;
            if v.len() != n {
                return Err(ChunkError::CountMismatch {
                    column: "timestamp",
                    expected: n,
                    found: v.len(),
                });
            }
            ts.extend_from_slice(&v);
        }
    }
    Ok(())
}
