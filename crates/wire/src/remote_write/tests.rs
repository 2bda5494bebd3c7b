use ocelli_model::{STALE_NAN, Sample as ModelSample};
use proptest::prelude::*;

use super::*;

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> DecodedSeries {
    DecodedSeries {
        labels: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        samples: samples.iter().map(|&(t, v)| ModelSample::new(t, v)).collect(),
    }
}

/// Compares by bits, so NaNs and -0.0 count as values.
fn assert_same(got: &[DecodedSeries], want: &[DecodedSeries]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.labels, w.labels);
        assert_eq!(g.samples.len(), w.samples.len(), "{}", w.labels);
        for (gs, ws) in g.samples.iter().zip(&w.samples) {
            assert!(gs.bit_eq(ws), "{}: got {gs:?}, want {ws:?}", w.labels);
        }
    }
}

/// A raw protobuf series, for requests `encode` would refuse to build.
fn raw(pairs: &[(&str, &str)]) -> TimeSeries {
    TimeSeries {
        labels: pairs.iter().map(|&(n, v)| Label { name: n.into(), value: v.into() }).collect(),
        samples: vec![Sample { value: 1.0, timestamp: 1 }],
    }
}

fn body(req: &impl prost::Message) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

fn request(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    body(&WriteRequest { timeseries, metadata: vec![] })
}

/// Decodes with `limits` and checks the exact error message.
fn check_err(body: &[u8], limits: &Limits, want: &str) {
    match decode(body, limits) {
        Ok(s) => panic!("decoded {} series, want error {want:?}", s.len()),
        Err(e) => assert_eq!(e.to_string(), want),
    }
}

#[test]
fn round_trip() {
    let want = vec![
        series(
            &[("__name__", "node_cpu_seconds_total"), ("cpu", "0"), ("mode", "idle")],
            &[(1_700_000_000_000, 1.5), (1_700_000_015_000, 2.25), (-5, f64::INFINITY)],
        ),
        series(&[("__name__", "up"), ("job", "ñode ☃")], &[(0, 0.0), (1, -0.0), (2, f64::NAN)]),
        series(&[("__name__", "no_samples")], &[]),
    ];
    let got = decode(&encode(&want).unwrap(), &Limits::default()).unwrap();
    assert_same(&got, &want);
    assert_eq!(got[1].samples[1].v.to_bits(), (-0.0f64).to_bits());
}

#[test]
fn stale_marker_bits_preserved() {
    let want = vec![series(&[("__name__", "up")], &[(10, 1.0), (20, STALE_NAN)])];
    let got = decode(&encode(&want).unwrap(), &Limits::default()).unwrap();
    assert_eq!(got[0].samples[1].v.to_bits(), 0x7ff0_0000_0000_0002);
    assert!(ocelli_model::is_stale_nan(got[0].samples[1].v));
}

#[test]
fn empty_request_decodes_to_nothing() {
    assert!(decode(&request(vec![]), &Limits::default()).unwrap().is_empty());
}

#[test]
fn labels_are_sorted_and_empty_values_dropped() {
    let b = request(vec![raw(&[("job", "x"), ("__name__", "up"), ("env", ""), ("a", "1")])]);
    let got = decode(&b, &Limits::default()).unwrap();
    assert_eq!(got[0].labels.to_string(), r#"up{a="1", job="x"}"#);
}

/// Pins the field numbers against Prometheus' `remote.proto` and `types.proto`.
#[test]
fn wire_bytes_match_the_proto() {
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label { name: "a".into(), value: "b".into() }],
            samples: vec![Sample { value: 1.0, timestamp: 5 }],
        }],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "x".into(),
            help: "h".into(),
            unit: "u".into(),
        }],
    };
    #[rustfmt::skip]
    let want: &[u8] = &[
        0x0a, 0x15,                                 // WriteRequest.timeseries (1), 21 bytes
          0x0a, 0x06,                               //   TimeSeries.labels (1), 6 bytes
            0x0a, 0x01, b'a', 0x12, 0x01, b'b',     //     Label.name (1), Label.value (2)
          0x12, 0x0b,                               //   TimeSeries.samples (2), 11 bytes
            0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,     //     Sample.value (1), double 1.0
            0x10, 0x05,                             //     Sample.timestamp (2), 5
        0x1a, 0x0b,                                 // WriteRequest.metadata (3), 11 bytes
          0x08, 0x01,                               //   type (1) COUNTER
          0x12, 0x01, b'x',                         //   metric_family_name (2)
          0x22, 0x01, b'h',                         //   help (4)
          0x2a, 0x01, b'u',                         //   unit (5)
    ];
    assert_eq!(req.encode_to_vec(), want);
    assert_eq!(WriteRequest::decode(want).unwrap(), req);
}

/// Exemplars (3) and native histograms (4) are not modelled; they must not break decoding.
#[test]
fn exemplars_and_histograms_are_skipped() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct FullSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        exemplars: Vec<TimeSeries>,
        #[prost(bytes = "vec", repeated, tag = "4")]
        histograms: Vec<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct FullRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<FullSeries>,
    }
    let req = FullRequest {
        timeseries: vec![FullSeries {
            labels: vec![Label { name: "__name__".into(), value: "up".into() }],
            samples: vec![Sample { value: 1.0, timestamp: 7 }],
            exemplars: vec![raw(&[("trace_id", "abc")])],
            histograms: vec![vec![0x08, 0x01, 0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]],
        }],
    };
    let got = decode(&body(&req), &Limits::default()).unwrap();
    assert_same(&got, &[series(&[("__name__", "up")], &[(7, 1.0)])]);
}

#[test]
fn limits_are_inclusive() {
    let b = encode(&[series(&[("__name__", "up")], &[(1, 1.0)])]).unwrap();
    let len = snap::raw::decompress_len(&b).unwrap();
    let limits = Limits { max_body_bytes: b.len(), max_decompressed_bytes: len };
    assert_eq!(decode(&b, &limits).unwrap().len(), 1);
}

#[test]
fn oversized_body() {
    let limits = Limits { max_body_bytes: 10, ..Limits::default() };
    check_err(&[0; 11], &limits, "remote write body is 11 bytes, over the limit of 10 bytes");
}

#[test]
fn snappy_garbage() {
    let l = Limits::default();
    check_err(&[], &l, "remote write body: snappy: corrupt input (empty)");
    // a length varint longer than five bytes
    check_err(&[0xff; 8], &l, "remote write body: snappy: corrupt input (invalid header)");
    // declares 4 bytes, then a copy with nothing before it to copy from
    check_err(
        &[0x04, 0x01, 0x00],
        &l,
        "remote write body: snappy: corrupt input (expected valid offset but got offset 0; \
         dst position: 0)",
    );
    // declares 10 bytes, holds a 3-byte literal
    check_err(
        &[0x0a, 0x08, b'a', b'b', b'c'],
        &l,
        "remote write body: snappy: corrupt input (header mismatch; expected 10 decompressed \
         bytes but got 3)",
    );
}

#[test]
fn decompression_bomb() {
    // six bytes declaring 1 GiB: refused from the header, before allocating
    check_err(
        &[0x80, 0x80, 0x80, 0x80, 0x04, 0x00],
        &Limits::default(),
        "remote write body decompresses to 1073741824 bytes, over the limit of 67108864 bytes",
    );
    // over snappy's own 4 GiB cap: still reported as a bomb
    check_err(
        &[0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
        &Limits::default(),
        "remote write body decompresses to 8589934591 bytes, over the limit of 67108864 bytes",
    );
    // one byte over a small limit
    let b = encode(&[series(&[("__name__", "up")], &[(1, 1.0)])]).unwrap();
    let len = snap::raw::decompress_len(&b).unwrap();
    let limits = Limits { max_decompressed_bytes: len - 1, ..Limits::default() };
    check_err(
        &b,
        &limits,
        &format!(
            "remote write body decompresses to {len} bytes, over the limit of {} bytes",
            len - 1
        ),
    );
}

#[test]
fn protobuf_garbage() {
    let compress = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
    let l = Limits::default();
    // timeseries (1) declaring 5 bytes with 1 left
    check_err(
        &compress(&[0x0a, 0x05, 0x0a]),
        &l,
        "remote write body: timeseries[0]: length 5 runs past the end (1 bytes left)",
    );
    // a label name that is not UTF-8
    check_err(
        &compress(&[0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff]),
        &l,
        "timeseries[0]: invalid label name \"\u{fffd}\"",
    );
    // a label value that is not UTF-8
    check_err(
        &compress(&[
            0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_',
            0x12, 0x01, 0xff,
        ]),
        &l,
        "timeseries[0]: value of label \"__name__\" is not valid UTF-8",
    );
    // an overwritten label name that is not UTF-8 is still an error, as protobuf says
    check_err(
        &compress(&[0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, 0xff, 0x0a, 0x01, b'a']),
        &l,
        "remote write body: timeseries[0].labels[0].name: invalid string value: data is not \
         UTF-8 encoded",
    );
    // a sample value with the varint wire type instead of fixed64
    check_err(
        &compress(&[0x0a, 0x04, 0x12, 0x02, 0x08, 0x01]),
        &l,
        "remote write body: timeseries[0].samples[0].value: invalid wire type: Varint \
         (expected SixtyFourBit)",
    );
}

#[test]
fn missing_metric_name() {
    let b = request(vec![raw(&[("__name__", "up")]), raw(&[("job", "x")])]);
    check_err(&b, &Limits::default(), "timeseries[1]: label set has no __name__ label");
    // an empty value is an absent label
    let b = request(vec![raw(&[("__name__", ""), ("job", "x")])]);
    check_err(&b, &Limits::default(), "timeseries[0]: label set has no __name__ label");
}

#[test]
fn bad_names() {
    let ok = raw(&[("__name__", "up")]);
    let b = request(vec![ok.clone(), ok.clone(), ok, raw(&[("__name__", "up"), ("1a", "x")])]);
    check_err(&b, &Limits::default(), r#"timeseries[3]: invalid label name "1a""#);
    // checked even when the empty value would drop the label
    let b = request(vec![raw(&[("__name__", "up"), ("a-b", "")])]);
    check_err(&b, &Limits::default(), r#"timeseries[0]: invalid label name "a-b""#);
    let b = request(vec![raw(&[("__name__", "1up")])]);
    check_err(&b, &Limits::default(), r#"timeseries[0]: invalid metric name "1up""#);
}

#[test]
fn duplicate_label() {
    let b = request(vec![raw(&[("job", "x"), ("__name__", "up"), ("job", "y")])]);
    check_err(&b, &Limits::default(), r#"timeseries[0]: duplicate label name "job""#);
    // a duplicate with an empty value is still a duplicate
    let b = request(vec![raw(&[("__name__", "up"), ("job", "x"), ("job", "")])]);
    check_err(&b, &Limits::default(), r#"timeseries[0]: duplicate label name "job""#);
}

/// prost's derived decoder for the same schema, to check [`canonical_sample`] against.
mod reference {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<Series>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<super::MetricMetadata>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Series {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<super::Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Decodes `proto` with [`WriteRequest`] and with prost's derived decoder; they must agree.
fn check_same_as_prost(proto: &[u8]) {
    let ours = WriteRequest::decode(proto);
    let theirs = reference::Request::decode(proto);
    let (ours, theirs) = match (ours, theirs) {
        (Ok(o), Ok(t)) => (o, t),
        (Err(_), Err(_)) => return,
        (o, t) => panic!("ours {o:?}, prost's {t:?}, input {proto:02x?}"),
    };
    assert_eq!(ours.metadata, theirs.metadata);
    assert_eq!(ours.timeseries.len(), theirs.timeseries.len());
    for (o, t) in ours.timeseries.iter().zip(&theirs.timeseries) {
        assert_eq!(o.labels, t.labels);
        let o: Vec<_> = o.samples.iter().map(|s| (s.value.to_bits(), s.timestamp)).collect();
        let t: Vec<_> = t.samples.iter().map(|s| (s.value.to_bits(), s.timestamp)).collect();
        assert_eq!(o, t, "input {proto:02x?}");
    }
}

/// [`decode_raw`] plus validation accepts exactly what prost's derived decoder plus validation
/// accepts, and decodes it to the same series.
fn check_decode_same_as_prost(proto: &[u8]) {
    let body = snap::raw::Encoder::new().compress_vec(proto).unwrap();
    let ours = decode(&body, &Limits::default());
    let theirs = reference::Request::decode(proto).ok().and_then(|r| {
        r.timeseries
            .into_iter()
            .map(|ts| {
                let mut pairs: Vec<(String, String)> =
                    ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                if pairs.windows(2).any(|w| w[0].0 == w[1].0)
                    || pairs.iter().any(|p| !is_valid_label_name(&p.0))
                {
                    return None;
                }
                let labels = Labels::from_pairs(pairs).ok()?;
                labels.validate().ok()?;
                let samples =
                    ts.samples.iter().map(|s| ModelSample::new(s.timestamp, s.value)).collect();
                Some(DecodedSeries { labels, samples })
            })
            .collect::<Option<Vec<_>>>()
    });
    match (ours, theirs) {
        (Ok(o), Some(t)) => assert_same(&o, &t),
        (Err(_), None) => {}
        (o, t) => panic!("ours {o:?}, prost's {t:?}, input {proto:02x?}"),
    }
}

/// Samples laid out in ways the fast path does not take must still decode as prost would.
#[test]
fn non_canonical_samples_decode_as_prost_does() {
    let one = |sample: &[u8]| {
        let mut series = vec![0x12, sample.len() as u8];
        series.extend_from_slice(sample);
        let mut req = vec![0x0a, series.len() as u8];
        req.extend_from_slice(&series);
        req
    };
    let v = 2.5f64.to_le_bytes();
    let cases: Vec<Vec<u8>> = vec![
        // both fields default
        vec![],
        // timestamp before value
        [&[0x10, 0x07, 0x09][..], &v].concat(),
        // value twice
        [&[0x09][..], &v, &[0x09], &v, &[0x10, 0x01]].concat(),
        // an unknown varint field
        [&[0x09][..], &v, &[0x18, 0x05]].concat(),
        // an overlong varint
        vec![0x10, 0x81, 0x80, 0x80, 0x00],
        // -1, the longest varint
        vec![0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        // too long for a varint
        vec![0x10; 11],
        // a truncated double
        vec![0x09, 0x01],
        // value as fixed32
        vec![0x0d, 1, 2, 3, 4],
    ];
    for c in &cases {
        check_same_as_prost(&one(c));
        check_decode_same_as_prost(&one(c));
    }
    // a sample with a two-byte length prefix (an unknown 120-byte field makes it long)
    let mut sample = [&[0x09][..], &v].concat();
    sample.extend([0x1a, 120]);
    sample.extend([0u8; 120]);
    let mut series = vec![0x12, 0x80 | (sample.len() as u8 & 0x7f), (sample.len() >> 7) as u8];
    series.extend_from_slice(&sample);
    let mut req = vec![0x0a, 0x80 | (series.len() as u8 & 0x7f), (series.len() >> 7) as u8];
    req.extend_from_slice(&series);
    check_same_as_prost(&req);
    let got = WriteRequest::decode(req.as_slice()).unwrap();
    assert_eq!(got.timeseries[0].samples, [Sample { value: 2.5, timestamp: 0 }]);
}

fn arb_series() -> impl Strategy<Value = DecodedSeries> {
    let name = "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}";
    let labels = prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,12}", ".{1,12}", 0..6);
    let value = prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        Just(STALE_NAN),
        Just(-0.0),
        Just(0.0),
        any::<f64>(),
    ];
    let samples = prop::collection::vec((any::<i64>(), value), 0..20);
    (name, labels, samples).prop_map(|(name, mut labels, samples)| {
        labels.insert("__name__".to_string(), name);
        DecodedSeries {
            labels: Labels::from_pairs(labels).unwrap(),
            samples: samples.into_iter().map(|(t, v)| ModelSample::new(t, v)).collect(),
        }
    })
}

proptest! {
    #[test]
    fn random_series_round_trip(want in prop::collection::vec(arb_series(), 0..8)) {
        let got = decode(&encode(&want).unwrap(), &Limits::default()).unwrap();
        assert_same(&got, &want);
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&b, &Limits::default());
        // valid snappy around random bytes reaches the protobuf decoder
        let _ = decode(&snap::raw::Encoder::new().compress_vec(&b).unwrap(), &Limits::default());
        check_same_as_prost(&b);
        check_decode_same_as_prost(&b);
    }

    /// Damaged protobuf: no panic, and the sample fast path agrees with prost.
    #[test]
    fn corrupted_bodies_never_panic(
        want in prop::collection::vec(arb_series(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let timeseries = want.iter().map(to_proto).collect();
        let mut proto = WriteRequest { timeseries, metadata: vec![] }.encode_to_vec();
        for (i, x) in &flips {
            let i = i.index(proto.len());
            proto[i] ^= x;
        }
        check_same_as_prost(&proto);
        check_decode_same_as_prost(&proto);
        let body = snap::raw::Encoder::new().compress_vec(&proto).unwrap();
        let _ = decode(&body, &Limits::default());
    }
}
