//! Value column of the sealed chunk: the four value codecs and best-of selection.
//!
//! This module owns: `Constant` (all values bit-identical: 8 raw bytes), `Gorilla` (the XOR
//! stream from `xor.rs`), `DecimalDelta` (values that are exactly `m / 10^k` for integers
//! `m`, stored as k plus the integers differenced 0, 1 or 2 times and packed with
//! `bstream::pack_ints`), and `Pco` (pcodec on the f64 column, or on the decimal integers when
//! that is smaller). [`encode_best`] tries every eligible codec and keeps the smallest output.
//!
//! It hands off framing (count, codec tag, column boundaries) to `mod.rs`. It deliberately
//! does not do lossy encoding of any kind: every codec is bit-exact, including NaN payloads
//! (the Prometheus stale marker), infinities and -0.0; `DecimalDelta` simply refuses values it
//! cannot reproduce bit-for-bit, and a pco output holding NaNs is verified by decoding.
//!
//! Hand-written for the decimal codec (no crate does "exact decimal scale detection + delta"),
//! while pco is used as a library.

use super::bstream::{ByteReader, pack_ints, put_varint, unpack_ints};
use super::{ChunkError, Result, ValueCodec, xor};

/// Largest decimal exponent tried: values with up to 12 fractional digits.
pub const MAX_DECIMAL_EXP: u8 = 12;
/// Integers beyond 2^53 are not exactly representable as f64; refuse them.
const MAX_DECIMAL_INT: f64 = 9_007_199_254_740_992.0;

const POW10: [f64; MAX_DECIMAL_EXP as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12];

/// `encode_best` only tries pco from this many samples on: below it pco's fixed cost
/// (~100 µs per call) buys almost nothing (it won 84 of 60,000 120-sample chunks, see the RFC).
pub const PCO_MIN_SAMPLES: usize = 256;

const PCO_F64: u8 = 0;
/// Constant column tag for a raw 8-byte value (tags 0..=12 are decimal exponents).
const CONST_RAW: u8 = 0xff;
const PCO_DECIMAL: u8 = 1;

impl ValueCodec {
    pub(crate) fn tag(self) -> u8 {
        match self {
            ValueCodec::Gorilla => 0,
            ValueCodec::DecimalDelta => 1,
            ValueCodec::Pco => 2,
            ValueCodec::Constant => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Result<Self> {
        Ok(match tag {
            0 => ValueCodec::Gorilla,
            1 => ValueCodec::DecimalDelta,
            2 => ValueCodec::Pco,
            3 => ValueCodec::Constant,
            _ => {
                return Err(ChunkError::UnknownCodec { column: "value", tag });
            }
        })
    }
}

/// Smallest k such that every value is exactly `round(v * 10^k) / 10^k`, with the integers.
/// `None` for NaN, infinities, -0.0, or integers beyond 2^53.
pub fn decimal_scale(vs: &[f64]) -> Option<(u8, Vec<i64>)> {
    if vs.iter().any(|v| !v.is_finite() || (*v == 0.0 && v.is_sign_negative())) {
        return None;
    }
    'k: for (k, &s) in POW10.iter().enumerate() {
        for &v in vs {
            let m = (v * s).round();
            if m.abs() > MAX_DECIMAL_INT {
                return None;
            }
            if (m / s).to_bits() != v.to_bits() {
                continue 'k;
            }
        }
        let ints = vs.iter().map(|&v| (v * s).round() as i64).collect();
        return Some((k as u8, ints));
    }
    None
}

fn encode_decimal(k: u8, ints: &[i64], out: &mut Vec<u8>) {
    let mut best: Option<Vec<u8>> = None;
    let mut level = ints.to_vec();
    let mut heads = Vec::new();
    for order in 0..=2u8 {
        if usize::from(order) >= ints.len() {
            break;
        }
        if order > 0 {
            heads.push(level[0]);
            level = level.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        }
        let mut buf = vec![k, order];
        for &h in &heads {
            put_varint(&mut buf, h);
        }
        pack_ints(&level, &mut buf);
        if best.as_ref().is_none_or(|b| buf.len() < b.len()) {
            best = Some(buf);
        }
    }
    if let Some(b) = best {
        out.extend_from_slice(&b);
    }
}

fn decode_decimal(col: &[u8], n: usize, vs: &mut Vec<f64>) -> Result<()> {
    let mut r = ByteReader::new(col);
    let k = r.read_u8()?;
    let order = r.read_u8()?;
    let scale = *POW10
        .get(usize::from(k))
        .ok_or(ChunkError::BadField { field: "decimal exponent", value: u64::from(k) })?;
    if order > 2 || usize::from(order) >= n {
        return Err(ChunkError::BadField { field: "decimal delta order", value: u64::from(order) });
    }
    let mut heads = [0i64; 2];
    for h in heads.iter_mut().take(usize::from(order)) {
        *h = r.read_varint()?;
    }
    let mut level = Vec::new();
    unpack_ints(&mut r, n - usize::from(order), &mut level)?;
    for j in (0..usize::from(order)).rev() {
        let mut acc = heads[j];
        let mut next = Vec::with_capacity(level.len() + 1);
        next.push(acc);
        for d in level {
            acc = acc.wrapping_add(d);
            next.push(acc);
        }
        level = next;
    }
    if !r.remaining().is_empty() {
        return Err(ChunkError::TrailingBytes { column: "value", extra: r.remaining().len() });
    }
    vs.extend(level.iter().map(|&m| m as f64 / scale));
    Ok(())
}

fn pco_f64(vs: &[f64]) -> Option<Vec<u8>> {
    let p = pco::standalone::simple_compress(vs, &pco::ChunkConfig::default()).ok()?;
    if vs.iter().any(|v| v.is_nan()) {
        // pco is lossless on bits, but NaN payloads are what we must never lose: verify.
        let back: Vec<f64> = pco::standalone::simple_decompress(&p).ok()?;
        let same =
            back.len() == vs.len() && back.iter().zip(vs).all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            return None;
        }
    }
    Some(p)
}

fn encode_pco(vs: &[f64], decimal: Option<&(u8, Vec<i64>)>, out: &mut Vec<u8>) -> Option<()> {
    let f = pco_f64(vs);
    let d = decimal.and_then(|(k, ints)| {
        pco::standalone::simple_compress(ints, &pco::ChunkConfig::default()).ok().map(|p| (*k, p))
    });
    match (f, d) {
        (Some(f), Some((k, d))) if d.len() + 1 < f.len() => {
            out.extend_from_slice(&[PCO_DECIMAL, k]);
            out.extend_from_slice(&d);
        }
        (Some(f), _) => {
            out.push(PCO_F64);
            out.extend_from_slice(&f);
        }
        (None, Some((k, d))) => {
            out.extend_from_slice(&[PCO_DECIMAL, k]);
            out.extend_from_slice(&d);
        }
        (None, None) => return None,
    }
    Some(())
}

fn decode_pco(col: &[u8], n: usize, vs: &mut Vec<f64>) -> Result<()> {
    // decoded straight into the caller's column (and, for decimals, a scratch column kept by
    // the thread), not into a fresh vector that is then copied: a query decodes one chunk per
    // series, tens of thousands in a row, and those copies and allocations cost a fifth of it
    thread_local! {
        static INTS: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut r = ByteReader::new(col);
    let pco_err =
        |e: pco::errors::PcoError| ChunkError::Pco { column: "value", msg: e.to_string() };
    // the column must hold exactly `n` values: all of `dst` filled and the end of data reached
    let check = |p: pco::Progress| {
        if p.finished && p.n_processed == n {
            Ok(())
        } else {
            Err(ChunkError::CountMismatch { column: "value", expected: n, found: p.n_processed })
        }
    };
    let start = vs.len();
    let res = match r.read_u8()? {
        PCO_F64 => {
            vs.resize(start + n, 0.0);
            pco::standalone::simple_decompress_into(r.remaining(), &mut vs[start..])
                .map_err(pco_err)
                .and_then(check)
        }
        PCO_DECIMAL => {
            let k = r.read_u8()?;
            let scale = *POW10
                .get(usize::from(k))
                .ok_or(ChunkError::BadField { field: "decimal exponent", value: u64::from(k) })?;
            INTS.with_borrow_mut(|ints| {
                ints.clear();
                ints.resize(n, 0);
                let res = pco::standalone::simple_decompress_into(r.remaining(), ints)
                    .map_err(pco_err)
                    .and_then(check);
                if res.is_ok() {
                    vs.extend(ints.iter().map(|&m| m as f64 / scale));
                }
                if ints.capacity() > 1 << 16 {
                    *ints = Vec::new();
                }
                res
            })
        }
        tag => Err(ChunkError::UnknownCodec { column: "pco value", tag }),
    };
    if res.is_err() {
        vs.truncate(start);
    }
    res
}

fn is_constant(vs: &[f64]) -> bool {
    vs.first().is_some_and(|f| vs.iter().all(|v| v.to_bits() == f.to_bits()))
}

/// Encode `vs` with one codec; `None` if that codec cannot represent the values exactly.
pub fn encode_with(vs: &[f64], codec: ValueCodec, out: &mut Vec<u8>) -> Option<()> {
    if vs.is_empty() {
        return Some(());
    }
    match codec {
        ValueCodec::Constant => {
            if !is_constant(vs) {
                return None;
            }
            // Decimal-exact constants are stored as (k, varint m), others as 8 raw bytes.
            match decimal_scale(&vs[..1]) {
                Some((k, m)) => {
                    out.push(k);
                    put_varint(out, m.first().copied().unwrap_or(0));
                }
                None => {
                    out.push(CONST_RAW);
                    out.extend_from_slice(&vs[0].to_bits().to_le_bytes());
                }
            }
        }
        ValueCodec::Gorilla => xor::encode_values(vs, out),
        ValueCodec::DecimalDelta => {
            let (k, ints) = decimal_scale(vs)?;
            encode_decimal(k, &ints, out);
        }
        ValueCodec::Pco => {
            let dec = decimal_scale(vs);
            encode_pco(vs, dec.as_ref(), out)?;
        }
    }
    Some(())
}

/// Try every eligible codec and append the smallest encoding; returns the codec chosen.
/// Constant wins outright when all values are bit-identical; pco is only tried for chunks of
/// at least [`PCO_MIN_SAMPLES`] values.
pub fn encode_best(vs: &[f64], out: &mut Vec<u8>) -> ValueCodec {
    encode_best_of(vs, out, 0)
}

/// [`encode_best`], with pco tried only where the other codecs take more than
/// `pco_above` bytes a value: pco's fixed cost per call dominates when many short columns are
/// encoded (rollup chunks: 11 columns of a few hundred windows), and pays only on noisy floats.
pub fn encode_best_of(vs: &[f64], out: &mut Vec<u8>, pco_above: usize) -> ValueCodec {
    if vs.is_empty() || is_constant(vs) {
        let _ = encode_with(vs, ValueCodec::Constant, out);
        return ValueCodec::Constant;
    }
    let mut best = Vec::with_capacity(vs.len() * 2);
    xor::encode_values(vs, &mut best);
    let mut codec = ValueCodec::Gorilla;
    let dec = decimal_scale(vs);
    let mut tmp = Vec::with_capacity(best.len());
    if let Some((k, ints)) = &dec {
        encode_decimal(*k, ints, &mut tmp);
        if tmp.len() < best.len() {
            std::mem::swap(&mut tmp, &mut best);
            codec = ValueCodec::DecimalDelta;
        }
    }
    tmp.clear();
    if best.len() > pco_above * vs.len()
        && vs.len() >= PCO_MIN_SAMPLES
        && encode_pco(vs, dec.as_ref(), &mut tmp).is_some()
        && tmp.len() < best.len()
    {
        std::mem::swap(&mut tmp, &mut best);
        codec = ValueCodec::Pco;
    }
    out.extend_from_slice(&best);
    codec
}

/// Decode exactly `n` values of column `col` encoded with `codec`.
pub fn decode(codec: ValueCodec, col: &[u8], n: usize, vs: &mut Vec<f64>) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    match codec {
        ValueCodec::Constant => {
            let mut r = ByteReader::new(col);
            let v = match r.read_u8()? {
                CONST_RAW => {
                    let b: [u8; 8] = r.read_bytes(8)?.try_into().map_err(|_| {
                        ChunkError::BadField { field: "constant value length", value: 0 }
                    })?;
                    f64::from_bits(u64::from_le_bytes(b))
                }
                k => {
                    let scale = *POW10.get(usize::from(k)).ok_or(ChunkError::BadField {
                        field: "decimal exponent",
                        value: u64::from(k),
                    })?;
                    r.read_varint()? as f64 / scale
                }
            };
            if !r.remaining().is_empty() {
                return Err(ChunkError::TrailingBytes {
                    column: "value",
                    extra: r.remaining().len(),
                });
            }
            vs.extend(std::iter::repeat_n(v, n));
        }
        ValueCodec::Gorilla => xor::decode_values(col, n, vs)?,
        ValueCodec::DecimalDelta => decode_decimal(col, n, vs)?,
        ValueCodec::Pco => decode_pco(col, n, vs)?,
    }
    Ok(())
}
