//! The payloads of write-ahead-log records (framing and checksums are in [`crate::wal`]).
//!
//! One record is one appended batch, so a batch is replayed whole or not at all: it defines the
//! series the batch uses for the first time in this WAL generation (head reference + labels) and
//! then lists its samples by reference. Layout in `docs/format/wal.md`.

use ocelli_model::{Label, Labels};

use crate::encoding::{Decoder, put_bytes, put_uvarint, put_varint};

pub(crate) const RECORD_BATCH: u8 = 1;
/// Marks the start of a head generation: series references of earlier records mean nothing
/// after it (every generation defines its references anew before using them).
pub(crate) const RECORD_GENERATION: u8 = 2;

/// Encodes a generation marker payload into `out` (appending).
pub(crate) fn encode_generation(out: &mut Vec<u8>) {
    out.push(RECORD_GENERATION);
}

/// Whether a payload is a generation marker.
pub(crate) fn is_generation(payload: &[u8]) -> bool {
    payload == [RECORD_GENERATION]
}

/// A decoded batch record.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct BatchRecord {
    pub series: Vec<(u32, Labels)>,
    pub samples: Vec<(u32, i64, f64)>,
}

/// Encodes a batch record payload into `out` (appending).
pub(crate) fn encode_batch<'a>(
    out: &mut Vec<u8>,
    series: impl ExactSizeIterator<Item = (u32, &'a Labels)>,
    samples: impl ExactSizeIterator<Item = (u32, i64, f64)>,
) {
    out.push(RECORD_BATCH);
    put_uvarint(out, series.len() as u64);
    for (r, labels) in series {
        put_uvarint(out, u64::from(r));
        put_uvarint(out, labels.len() as u64);
        for l in labels.iter() {
            put_bytes(out, l.name.as_bytes());
            put_bytes(out, l.value.as_bytes());
        }
    }
    put_uvarint(out, samples.len() as u64);
    let mut prev_t = 0i64;
    for (r, t, v) in samples {
        put_uvarint(out, u64::from(r));
        put_varint(out, t.wrapping_sub(prev_t));
        prev_t = t;
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// Decodes a record payload; the error says which field was malformed.
pub(crate) fn decode(payload: &[u8]) -> Result<BatchRecord, String> {
    let mut d = Decoder::new(payload);
    match d.take(1) {
        Some([RECORD_BATCH]) => {}
        Some([t]) => return Err(format!("unknown record type {t}")),
        _ => return Err("empty record".into()),
    }
    let bad = |what: &str, d: &Decoder<'_>| format!("malformed {what} at payload byte {}", d.pos());
    let nseries = d.uvarint().ok_or_else(|| bad("series count", &d))?;
    let mut rec = BatchRecord::default();
    for _ in 0..nseries {
        let r =
            d.uvarint().and_then(|r| u32::try_from(r).ok()).ok_or_else(|| bad("series ref", &d))?;
        let n = d.uvarint().ok_or_else(|| bad("label count", &d))?;
        let mut labels = Vec::new();
        for _ in 0..n {
            let name = d.str().ok_or_else(|| bad("label name", &d))?;
            let value = d.str().ok_or_else(|| bad("label value", &d))?;
            labels.push(Label::new(name, value));
        }
        let labels = Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
            .map_err(|e| format!("series ref {r}: {e}"))?;
        rec.series.push((r, labels));
    }
    let nsamples = d.uvarint().ok_or_else(|| bad("sample count", &d))?;
    rec.samples.reserve(usize::try_from(nsamples.min(1 << 20)).unwrap_or(0));
    let mut t = 0i64;
    for _ in 0..nsamples {
        let r =
            d.uvarint().and_then(|r| u32::try_from(r).ok()).ok_or_else(|| bad("sample ref", &d))?;
        t = t.wrapping_add(d.varint().ok_or_else(|| bad("sample timestamp", &d))?);
        let v = f64::from_bits(d.u64_le().ok_or_else(|| bad("sample value", &d))?);
        rec.samples.push((r, t, v));
    }
    if !d.is_empty() {
        return Err(bad("trailing bytes", &d));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocelli_model::STALE_NAN;

    #[test]
    fn batch_round_trip() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]).unwrap();
        let samples = vec![(7u32, 1000i64, 1.5), (7, 990, STALE_NAN), (8, -5, f64::NAN)];
        let mut buf = Vec::new();
        encode_batch(&mut buf, [(7u32, &l)].into_iter(), samples.iter().copied());
        let rec = decode(&buf).unwrap();
        assert_eq!(rec.series, vec![(7, l)]);
        assert_eq!(rec.samples.len(), 3);
        for (a, b) in rec.samples.iter().zip(&samples) {
            assert_eq!((a.0, a.1, a.2.to_bits()), (b.0, b.1, b.2.to_bits()));
        }
        assert!(decode(&buf[..buf.len() - 1]).unwrap_err().contains("sample value"));
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_payloads_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
            let mut with_type = vec![RECORD_BATCH];
            with_type.extend_from_slice(&b);
            let _ = decode(&with_type);
        }
    }
}

#[cfg(test)]
mod generation {
    use super::*;

    #[test]
    fn marker_is_recognised_and_not_a_batch() {
        let mut b = Vec::new();
        encode_generation(&mut b);
        assert!(is_generation(&b));
        assert!(decode(&b).unwrap_err().contains("unknown record type 2"));
        assert!(!is_generation(&[RECORD_BATCH]));
    }
}
