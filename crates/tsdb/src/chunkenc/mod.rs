//! `chunkenc`: sample compression for the TSDB (head chunks and sealed block chunks).
//!
//! This module owns the byte formats of one series' samples: the appendable [`HeadChunk`]
//! (Gorilla bit stream, in `xor.rs`) and the sealed, columnar chunk written by
//! [`encode_chunk`]: a small self-describing header (format version, sample count, timestamp
//! codec, value codec, timestamp column length), then the timestamp column
//! (`timestamps.rs`), then the value column (`values.rs`). `encode_chunk` tries every
//! eligible value codec (Constant, Gorilla, DecimalDelta, and Pco from 256 samples on) and
//! keeps the smallest output;
//! the layout is specified in `docs/format/chunks.md`.
//!
//! It hands off everything around a chunk to the caller: series identity, chunk boundaries
//! (how many samples per chunk), checksums, and placement in block files or the WAL. It
//! deliberately does not sort, deduplicate or validate ordering of samples; callers
//! guarantee strictly increasing timestamps. Decoding never panics on corrupt bytes: it
//! returns a [`ChunkError`] (or, for undetectable corruption, different samples).
//!
//! Hand-written because the head chunk's memory layout and the decimal codec are specific to
//! this engine; pcodec (`pco`) is used as a library for its codec.

mod bstream;
mod timestamps;
mod values;
mod xor;

#[cfg(test)]
mod tests;

pub use timestamps::{TsCodec, encode_with as encode_timestamps_with};
pub use values::PCO_MIN_SAMPLES;
pub use xor::{HeadChunk, decode_head};

/// Version byte of the sealed chunk format written by this code.
pub const FORMAT_VERSION: u8 = 1;
/// Upper bound on samples per sealed chunk; protects decoders from allocation bombs.
pub const MAX_CHUNK_SAMPLES: usize = 1 << 20;

/// Errors from decoding chunk bytes.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk truncated: wanted {wanted_bits} more bits at bit {at_bit}")]
    Truncated { wanted_bits: u32, at_bit: usize },
    #[error("unsupported chunk format version {found} (this build reads {supported})")]
    Version { found: u8, supported: u8 },
    #[error("unknown {column} codec tag {tag}")]
    UnknownCodec { column: &'static str, tag: u8 },
    #[error("varint longer than 10 bytes at byte {at}")]
    VarintOverflow { at: usize },
    #[error("invalid {field}: {value}")]
    BadField { field: &'static str, value: u64 },
    #[error("chunk claims {count} samples, more than the limit of {limit}")]
    TooManySamples { count: u64, limit: usize },
    #[error("{column} column decoded {found} samples, header says {expected}")]
    CountMismatch { column: &'static str, expected: usize, found: usize },
    #[error("{extra} unexpected trailing bytes after the {column} column")]
    TrailingBytes { column: &'static str, extra: usize },
    #[error("pco decode of the {column} column failed: {msg}")]
    Pco { column: &'static str, msg: String },
}

pub type Result<T, E = ChunkError> = std::result::Result<T, E>;

/// Value codec of a sealed chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueCodec {
    /// Gorilla XOR stream, same coder as the head chunk.
    Gorilla,
    /// Exact decimal scaling to integers, then 0/1/2-order differences, bit-packed.
    DecimalDelta,
    /// pcodec on the f64 column or on the exact decimal integers.
    Pco,
    /// All values bit-identical: stored once.
    Constant,
}

fn write_chunk(
    ts: &[i64],
    out: &mut Vec<u8>,
    values: impl FnOnce(&mut Vec<u8>) -> Option<ValueCodec>,
) -> Option<()> {
    assert!(ts.len() <= MAX_CHUNK_SAMPLES, "chunk of {} samples exceeds limit", ts.len());
    let mut tcol = Vec::with_capacity(16);
    let tcodec = timestamps::encode(ts, &mut tcol);
    let mut vcol = Vec::with_capacity(ts.len() * 2);
    let vcodec = values(&mut vcol)?;
    out.push(FORMAT_VERSION);
    bstream::put_uvarint(out, ts.len() as u64);
    if ts.is_empty() {
        return Some(());
    }
    out.push(tcodec as u8);
    out.push(vcodec.tag());
    bstream::put_uvarint(out, tcol.len() as u64);
    out.extend_from_slice(&tcol);
    out.extend_from_slice(&vcol);
    Some(())
}

/// Sealed, columnar chunk for on-disk blocks. Encodes timestamps (delta-of-delta, a regular
/// interval costs ~0 bits) and values with the best codec for this chunk: every eligible
/// codec is tried and the smallest encoding is kept (pco only for chunks of at least
/// [`PCO_MIN_SAMPLES`] samples, where its fixed per-call cost pays off).
///
/// `ts` must be strictly increasing and as long as `vs`; panics if the lengths differ or
/// exceed [`MAX_CHUNK_SAMPLES`].
pub fn encode_chunk(ts: &[i64], vs: &[f64], out: &mut Vec<u8>) {
    assert_eq!(ts.len(), vs.len(), "timestamp and value columns differ in length");
    let _ = write_chunk(ts, out, |col| Some(values::encode_best(vs, col)));
}

/// Encode with a forced value codec (for measurement); returns None if the codec can't
/// represent the values exactly (then nothing is written to `out`).
pub fn encode_chunk_with(
    ts: &[i64],
    vs: &[f64],
    codec: ValueCodec,
    out: &mut Vec<u8>,
) -> Option<()> {
    assert_eq!(ts.len(), vs.len(), "timestamp and value columns differ in length");
    write_chunk(ts, out, |col| values::encode_with(vs, codec, col).map(|()| codec))
}

struct Header<'a> {
    n: usize,
    tcodec: TsCodec,
    vcodec: ValueCodec,
    tcol: &'a [u8],
    vcol: &'a [u8],
}

/// The start every chunk shares: the format version, then the sample count (checked against
/// [`MAX_CHUNK_SAMPLES`]).
fn read_version_and_count(r: &mut bstream::ByteReader<'_>) -> Result<usize> {
    let version = r.read_u8()?;
    if version != FORMAT_VERSION {
        return Err(ChunkError::Version { found: version, supported: FORMAT_VERSION });
    }
    let count = r.read_uvarint()?;
    if count > MAX_CHUNK_SAMPLES as u64 {
        return Err(ChunkError::TooManySamples { count, limit: MAX_CHUNK_SAMPLES });
    }
    Ok(count as usize)
}

fn parse_header(buf: &[u8]) -> Result<Header<'_>> {
    let mut r = bstream::ByteReader::new(buf);
    let n = read_version_and_count(&mut r)?;
    if n == 0 {
        if !r.remaining().is_empty() {
            return Err(ChunkError::TrailingBytes { column: "header", extra: r.remaining().len() });
        }
        return Ok(Header {
            n,
            tcodec: TsCodec::DoD,
            vcodec: ValueCodec::Constant,
            tcol: &[],
            vcol: &[],
        });
    }
    let tcodec = TsCodec::from_tag(r.read_u8()?)?;
    let vcodec = ValueCodec::from_tag(r.read_u8()?)?;
    let tlen = r.read_uvarint()?;
    let tlen = usize::try_from(tlen)
        .map_err(|_| ChunkError::BadField { field: "timestamp column length", value: tlen })?;
    let tcol = r.read_bytes(tlen)?;
    Ok(Header { n, tcodec, vcodec, tcol, vcol: r.remaining() })
}

/// Decode a sealed chunk, appending its samples to `ts` and `vs`. On error, the vectors are
/// restored to their lengths on entry.
pub fn decode_chunk(buf: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
    let (t0, v0) = (ts.len(), vs.len());
    let res = (|| {
        let h = parse_header(buf)?;
        timestamps::decode(h.tcodec, h.tcol, h.n, ts)?;
        values::decode(h.vcodec, h.vcol, h.n, vs)?;
        let (nt, nv) = (ts.len() - t0, vs.len() - v0);
        if nt != h.n || nv != h.n {
            return Err(ChunkError::CountMismatch {
                column: if nt != h.n { "timestamp" } else { "value" },
                expected: h.n,
                found: if nt != h.n { nt } else { nv },
            });
        }
        Ok(())
    })();
    if res.is_err() {
        ts.truncate(t0);
        vs.truncate(v0);
    }
    res
}

/// Which value codec encode_chunk picked for a buffer (for stats/docs).
pub fn chunk_value_codec(buf: &[u8]) -> Result<ValueCodec> {
    Ok(parse_header(buf)?.vcodec)
}

/// Which timestamp codec a sealed chunk uses (for stats/docs).
pub fn chunk_ts_codec(buf: &[u8]) -> Result<TsCodec> {
    Ok(parse_header(buf)?.tcodec)
}

/// Most value columns a multi-column chunk may have.
pub const MAX_COLUMNS: usize = 32;

/// Multi-column chunk, for rollup blocks: one timestamp column and several value columns of
/// the same length, each value column with the smallest of the constant, Gorilla and decimal
/// codecs, and pco where those stay above 4 bytes a value.
/// Layout: version, `n`, timestamp codec, timestamp column length and bytes, the number of
/// value columns, then per column its codec, length and bytes (`docs/format/chunks.md`).
///
/// Panics if a column's length differs from `ts`', or on more than [`MAX_COLUMNS`] columns or
/// [`MAX_CHUNK_SAMPLES`] samples.
pub fn encode_columns(ts: &[i64], cols: &[&[f64]], out: &mut Vec<u8>) {
    assert!(ts.len() <= MAX_CHUNK_SAMPLES, "chunk of {} samples exceeds limit", ts.len());
    assert!(cols.len() <= MAX_COLUMNS, "{} columns exceed the limit", cols.len());
    out.push(FORMAT_VERSION);
    bstream::put_uvarint(out, ts.len() as u64);
    let mut tcol = Vec::with_capacity(16);
    let tcodec = timestamps::encode(ts, &mut tcol);
    out.push(tcodec as u8);
    bstream::put_uvarint(out, tcol.len() as u64);
    out.extend_from_slice(&tcol);
    out.push(cols.len() as u8);
    let mut vcol = Vec::with_capacity(ts.len() * 2);
    for c in cols {
        assert_eq!(c.len(), ts.len(), "timestamp and value columns differ in length");
        vcol.clear();
        // pco only where the others stay above 4 bytes a value (noisy floats): on columns this
        // short its fixed cost per call dominated downsampling, which ran 3x slower with pco
        // tried above 2 bytes a value, for 10% less disk
        let codec = values::encode_best_of(c, &mut vcol, 4);
        out.push(codec.tag());
        bstream::put_uvarint(out, vcol.len() as u64);
        out.extend_from_slice(&vcol);
    }
}

/// Decodes a chunk written by [`encode_columns`] with exactly `cols.len()` value columns,
/// appending to `ts` and each column. On error every vector is restored to its length on entry.
pub fn decode_columns(buf: &[u8], ts: &mut Vec<i64>, cols: &mut [Vec<f64>]) -> Result<()> {
    let t0 = ts.len();
    let lens: Vec<usize> = cols.iter().map(Vec::len).collect();
    let res = (|| {
        let mut r = bstream::ByteReader::new(buf);
        let n = read_version_and_count(&mut r)?;
        let tcodec = TsCodec::from_tag(r.read_u8()?)?;
        let tlen = r.read_uvarint()?;
        let tlen = usize::try_from(tlen)
            .map_err(|_| ChunkError::BadField { field: "timestamp column length", value: tlen })?;
        timestamps::decode(tcodec, r.read_bytes(tlen)?, n, ts)?;
        if ts.len() - t0 != n {
            return Err(ChunkError::CountMismatch {
                column: "timestamp",
                expected: n,
                found: ts.len() - t0,
            });
        }
        let ncols = r.read_u8()?;
        if usize::from(ncols) != cols.len() {
            return Err(ChunkError::BadField { field: "column count", value: u64::from(ncols) });
        }
        for (c, &l0) in cols.iter_mut().zip(&lens) {
            let codec = ValueCodec::from_tag(r.read_u8()?)?;
            let len = r.read_uvarint()?;
            let len = usize::try_from(len)
                .map_err(|_| ChunkError::BadField { field: "value column length", value: len })?;
            values::decode(codec, r.read_bytes(len)?, n, c)?;
            if c.len() - l0 != n {
                return Err(ChunkError::CountMismatch {
                    column: "value",
                    expected: n,
                    found: c.len() - l0,
                });
            }
        }
        if !r.remaining().is_empty() {
            return Err(ChunkError::TrailingBytes { column: "value", extra: r.remaining().len() });
        }
        Ok(())
    })();
    if res.is_err() {
        ts.truncate(t0);
        for (c, l0) in cols.iter_mut().zip(lens) {
            c.truncate(l0);
        }
    }
    res
}
