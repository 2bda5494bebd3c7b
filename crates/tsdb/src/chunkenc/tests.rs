//! Tests for `chunkenc`: unit tests of each layer plus proptest round-trips and corruption
//! fuzzing.
//!
//! Owns no production code. Round-trip properties compare values by bit pattern, so NaN
//! payloads, infinities and -0.0 are checked exactly; corruption properties only require that
//! decoding returns (error or data) without panicking.

use super::bstream::{BitReader, BitWriter, ByteReader, pack_ints, unpack_ints};
use super::*;
use proptest::prelude::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn bits(vs: &[f64]) -> Vec<u64> {
    vs.iter().map(|v| v.to_bits()).collect()
}

fn head_roundtrip(ts: &[i64], vs: &[f64]) {
    let mut h = HeadChunk::new();
    for (&t, &v) in ts.iter().zip(vs) {
        h.append(t, v);
    }
    assert_eq!(h.len(), ts.len());
    assert_eq!(h.is_empty(), ts.is_empty());
    assert_eq!(h.first_t(), ts.first().copied());
    let want = ts.last().zip(vs.last()).map(|(&t, &v)| (t, v.to_bits()));
    assert_eq!(h.last().map(|(t, v)| (t, v.to_bits())), want);
    let (mut dt, mut dv) = (vec![], vec![]);
    h.decode_into(&mut dt, &mut dv);
    assert_eq!(dt, ts);
    assert_eq!(bits(&dv), bits(vs));
}

fn sealed_roundtrip(ts: &[i64], vs: &[f64]) {
    let mut buf = vec![];
    encode_chunk(ts, vs, &mut buf);
    let (mut dt, mut dv) = (vec![], vec![]);
    decode_chunk(&buf, &mut dt, &mut dv).unwrap();
    assert_eq!(dt, ts);
    assert_eq!(bits(&dv), bits(vs));
    let chosen = chunk_value_codec(&buf).unwrap();
    for codec in
        [ValueCodec::Gorilla, ValueCodec::DecimalDelta, ValueCodec::Pco, ValueCodec::Constant]
    {
        let mut b = vec![];
        if encode_chunk_with(ts, vs, codec, &mut b).is_some() {
            assert_eq!(
                chunk_value_codec(&b).unwrap(),
                if ts.is_empty() { ValueCodec::Constant } else { codec }
            );
            let (mut dt, mut dv) = (vec![], vec![]);
            decode_chunk(&b, &mut dt, &mut dv).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(dt, ts, "{codec:?}");
            assert_eq!(bits(&dv), bits(vs), "{codec:?}");
            if !ts.is_empty() && (codec != ValueCodec::Pco || ts.len() >= PCO_MIN_SAMPLES) {
                assert!(
                    buf.len() <= b.len(),
                    "best {chosen:?} {} > {codec:?} {}",
                    buf.len(),
                    b.len()
                );
            }
        } else {
            assert!(b.is_empty());
            assert!(codec != ValueCodec::Gorilla);
        }
    }
}

#[test]
fn bit_io_roundtrip() {
    let mut buf = vec![];
    let mut w = BitWriter::resume(&mut buf, 0);
    w.write_bit(true);
    w.write_bits(0x1234_5678_9abc_def0, 64);
    w.write_bits(5, 3);
    w.write_bits(0, 0);
    w.write_uvarint(300);
    let mut r = BitReader::new(&buf);
    assert!(r.read_bit().unwrap());
    assert_eq!(r.read_bits(64).unwrap(), 0x1234_5678_9abc_def0);
    assert_eq!(r.read_bits(3).unwrap(), 5);
    assert_eq!(r.read_uvarint().unwrap(), 300);
    let err = r.read_bits(12).unwrap_err().to_string();
    assert!(err.starts_with("chunk truncated: wanted 12 more bits at bit"), "{err}");
}

#[test]
fn pack_ints_modes() {
    for vals in [
        vec![7i64; 10],
        vec![0, 4096, 8192, 4096 * 7],
        vec![i64::MIN, i64::MAX, 0, -1],
        vec![1, 300, -5000, 12],
        vec![42],
    ] {
        let mut buf = vec![];
        pack_ints(&vals, &mut buf);
        let mut out = vec![];
        let mut r = ByteReader::new(&buf);
        unpack_ints(&mut r, vals.len(), &mut out).unwrap();
        assert_eq!(out, vals);
        assert!(r.remaining().is_empty());
    }
}

#[test]
fn regular_timestamps_are_tiny() {
    let ts: Vec<i64> = (0..720).map(|i| 1_794_992_810_000 + i * 10_000).collect();
    let vs = vec![1.0; 720];
    let mut buf = vec![];
    encode_chunk(&ts, &vs, &mut buf);
    assert!(buf.len() <= 30, "{}", buf.len());
    assert_eq!(chunk_value_codec(&buf).unwrap(), ValueCodec::Constant);
}

#[test]
fn special_values() {
    let vs = [
        f64::from_bits(STALE_NAN),
        f64::NAN,
        -0.0,
        0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::from_bits(1),
        f64::from_bits(0xfff8_dead_beef_0001),
        1.5,
    ];
    let ts: Vec<i64> = (0..vs.len() as i64).map(|i| i * 15_000 + 3).collect();
    head_roundtrip(&ts, &vs);
    sealed_roundtrip(&ts, &vs);
}

#[test]
fn decimal_detection() {
    let (k, ints) = values::decimal_scale(&[1.25, 100.0, 0.01]).unwrap();
    assert_eq!((k, ints), (2, vec![125, 10000, 1]));
    assert!(
        values::decimal_scale(&[0.1 + 0.2]).is_none()
            || values::decimal_scale(&[0.1 + 0.2]).unwrap().0 > 12
    );
    assert!(values::decimal_scale(&[-0.0]).is_none());
    assert!(values::decimal_scale(&[f64::NAN]).is_none());
    assert!(values::decimal_scale(&[1e300]).is_none());
}

#[test]
fn counters_pick_decimal_or_pco() {
    let ts: Vec<i64> = (0..120).map(|i| i * 10_000).collect();
    let mut c = 1000.0f64;
    let vs: Vec<f64> = (0..120)
        .map(|i| {
            c = ((c * 100.0).round() + f64::from((i * 37) % 11 + 90)) / 100.0;
            c
        })
        .collect();
    let mut buf = vec![];
    encode_chunk(&ts, &vs, &mut buf);
    assert_ne!(chunk_value_codec(&buf).unwrap(), ValueCodec::Gorilla);
    sealed_roundtrip(&ts, &vs);
}

#[test]
fn head_memory_is_compact() {
    let mut h = HeadChunk::new();
    for i in 0..720 {
        h.append(1_794_992_810_000 + i * 10_000, (i % 7) as f64);
    }
    let used = h.as_bytes().len();
    assert!(h.heap_bytes() <= used + used / 8 + 64, "{} vs {}", h.heap_bytes(), used);
    assert!(std::mem::size_of::<HeadChunk>() <= 56);
}

#[test]
fn error_messages() {
    let e = decode_chunk(&[9], &mut vec![], &mut vec![]).unwrap_err();
    assert_eq!(e.to_string(), "unsupported chunk format version 9 (this build reads 1)");
    let e = decode_chunk(&[], &mut vec![], &mut vec![]).unwrap_err();
    assert!(e.to_string().starts_with("chunk truncated"));
    let e = decode_chunk(&[1, 0xff, 0xff, 0xff, 0x7f], &mut vec![], &mut vec![]).unwrap_err();
    assert!(matches!(e, ChunkError::TooManySamples { .. }), "{e}");
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-1_000_000i64..1_000_000, 0u32..4).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32)),
        2 => any::<f64>(),
        1 => any::<u64>().prop_map(f64::from_bits),
        1 => Just(f64::from_bits(STALE_NAN)),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => (0i64..1 << 40).prop_map(|x| (x * 4096) as f64),
        1 => Just(1e300),
    ]
}

/// Samples: values drawn from one "regime" per series so decimal/constant paths get hit.
fn series_strategy() -> impl Strategy<Value = (Vec<i64>, Vec<f64>)> {
    (0usize..2000, any::<i64>(), 0u8..4)
        .prop_flat_map(|(n, start, regime)| {
            let gaps = prop::collection::vec(
                prop_oneof![
                    4 => Just(10_000i64),
                    2 => 9_990i64..10_010,
                    1 => 1i64..1_000_000_000,
                    1 => 1i64..i64::MAX / 4096,
                ],
                n,
            );
            let vals: BoxedStrategy<Vec<f64>> = match regime {
                0 => prop::collection::vec(value_strategy(), n).boxed(),
                1 => {
                    prop::collection::vec((0i64..100_000).prop_map(|m| m as f64 / 100.0), n).boxed()
                }
                2 => value_strategy().prop_map(move |v| vec![v; n]).boxed(),
                _ => prop::collection::vec((-5i64..50).prop_map(|d| d as f64), n)
                    .prop_map(|ds| {
                        let mut acc = 0.0;
                        ds.into_iter()
                            .map(|d| {
                                acc += d;
                                acc
                            })
                            .collect()
                    })
                    .boxed(),
            };
            (Just(start), gaps, vals)
        })
        .prop_map(|(start, gaps, vals)| {
            let mut t = start.clamp(i64::MIN / 2, i64::MAX / 2);
            let ts = gaps
                .into_iter()
                .map(|g| {
                    t = t.saturating_add(g);
                    t
                })
                .collect::<Vec<_>>();
            // Saturation could repeat i64::MAX; keep strictly increasing by truncating there.
            let n = ts.windows(2).position(|w| w[1] <= w[0]).map_or(ts.len(), |p| p + 1);
            (ts[..n].to_vec(), vals[..n].to_vec())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_head_roundtrip((ts, vs) in series_strategy()) {
        head_roundtrip(&ts, &vs);
    }

    #[test]
    fn prop_sealed_roundtrip((ts, vs) in series_strategy()) {
        sealed_roundtrip(&ts, &vs);
    }

    #[test]
    fn prop_corruption_never_panics(
        (ts, vs) in series_strategy(),
        codec in 0u8..5,
        flips in prop::collection::vec((any::<usize>(), 0u8..8), 0..8),
        cut in any::<usize>(),
        do_cut in any::<bool>(),
    ) {
        let mut buf = vec![];
        let codec = [ValueCodec::Gorilla, ValueCodec::DecimalDelta, ValueCodec::Pco,
            ValueCodec::Constant].get(usize::from(codec)).copied();
        match codec {
            Some(c) => { if encode_chunk_with(&ts, &vs, c, &mut buf).is_none() { return Ok(()); } }
            None => encode_chunk(&ts, &vs, &mut buf),
        }
        if buf.is_empty() { return Ok(()); }
        for (pos, bit) in flips {
            let i = pos % buf.len();
            buf[i] ^= 1 << bit;
        }
        if do_cut { buf.truncate(cut % (buf.len() + 1)); }
        let (mut dt, mut dv) = (vec![], vec![]);
        let _ = decode_chunk(&buf, &mut dt, &mut dv);
        let _ = chunk_value_codec(&buf);
        // Head stream corruption as well.
        let mut h = HeadChunk::new();
        for (&t, &v) in ts.iter().zip(&vs) { h.append(t, v); }
        let mut hb = h.as_bytes().to_vec();
        if !hb.is_empty() {
            let i = cut % hb.len();
            hb[i] ^= 0x5a;
            if do_cut { hb.truncate(i); }
        }
        let _ = decode_head(&hb, ts.len(), &mut dt, &mut dv);
    }

    #[test]
    fn prop_random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut b = buf.clone();
        if let Some(x) = b.first_mut() { *x = FORMAT_VERSION; }
        let _ = decode_chunk(&b, &mut vec![], &mut vec![]);
        let _ = decode_head(&buf, 500, &mut vec![], &mut vec![]);
    }

    #[test]
    fn prop_columns_roundtrip_and_corruption_never_panics(
        (ts, vs) in series_strategy(),
        flip in any::<usize>(),
    ) {
        let other: Vec<f64> = vs.iter().map(|v| v * 2.0 + 1.0).collect();
        let mut buf = vec![];
        encode_columns(&ts, &[&vs, &other], &mut buf);
        let (mut dt, mut cols) = (vec![], vec![vec![], vec![]]);
        decode_columns(&buf, &mut dt, &mut cols).unwrap();
        prop_assert_eq!(&dt, &ts);
        prop_assert_eq!(bits(&cols[0]), bits(&vs));
        prop_assert_eq!(bits(&cols[1]), bits(&other));
        // the wrong number of columns is an error, and damage never panics
        let mut one = vec![vec![]];
        prop_assert!(decode_columns(&buf, &mut vec![], &mut one).is_err());
        prop_assert!(one[0].is_empty());
        let i = flip % buf.len();
        buf[i] ^= 0x5a;
        let _ = decode_columns(&buf, &mut vec![], &mut cols);
        buf.truncate(i);
        let _ = decode_columns(&buf, &mut vec![], &mut cols);
    }
}
