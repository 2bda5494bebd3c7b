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

fn hist_series(
    pairs: &[(&str, &str)],
    samples: &[(i64, f64)],
    exemplars: Vec<Exemplar>,
    histograms: Vec<Histogram>,
) -> reference::FullSeries {
    reference::FullSeries {
        labels: pairs.iter().map(|&(n, v)| Label { name: n.into(), value: v.into() }).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| reference::Sample { value, timestamp })
            .collect(),
        exemplars,
        histograms,
    }
}

fn full_proto(timeseries: Vec<reference::FullSeries>) -> Vec<u8> {
    reference::FullRequest { timeseries, metadata: vec![] }.encode_to_vec()
}

fn span(offset: i32, length: u32) -> BucketSpan {
    BucketSpan { offset, length }
}

fn exemplar(pairs: &[(&str, &str)], value: f64, timestamp: i64) -> Exemplar {
    let labels = pairs.iter().map(|&(n, v)| Label { name: n.into(), value: v.into() }).collect();
    Exemplar { labels, value, timestamp }
}

/// remote_write_v2's `schema_0_with_negative_and_zero_buckets`, sent as 1.0.
fn schema_0_histogram() -> Histogram {
    Histogram {
        count: Some(histogram::Count::CountInt(10)),
        sum: 12.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(2)),
        // negative buckets 0 and 1: [-1, -0.5) holds 1, [-2, -1) holds 3
        negative_spans: vec![span(0, 2)],
        negative_deltas: vec![1, 2],
        // positive buckets 0, 1, 2: (0.5, 1] 1, (1, 2] 2, (2, 4] 1
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1, 1, -1],
        timestamp: 5000,
        ..Histogram::default()
    }
}

/// Exemplars (field 3) and native histograms (field 4) are decoded: histograms to classic
/// series after the float series, exemplars with their series' labels.
#[test]
fn histograms_and_exemplars_decode() {
    let h = schema_0_histogram();
    let later = Histogram { timestamp: 6000, sum: 13.0, ..h.clone() };
    let proto = full_proto(vec![
        hist_series(
            &[("__name__", "up"), ("job", "j")],
            &[(7, 1.0)],
            vec![exemplar(&[("trace_id", "abc"), ("span_id", ""), ("a", "b")], 1.0, 7)],
            vec![],
        ),
        // labels after the histograms, unsorted: fields may come in any order
        hist_series(
            &[("job", "j"), ("__name__", "rpc_seconds"), ("env", "")],
            &[],
            vec![exemplar(&[], 0.25, 5000)],
            vec![h, later],
        ),
    ]);
    let req = decode_raw(&proto).unwrap();
    assert_eq!(req.series().len(), 2);
    assert_eq!(req.histograms(), 2);
    let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied()).unwrap();
    assert_eq!(
        req.exemplars(),
        [
            crate::Exemplar {
                series: l(&[("__name__", "up"), ("job", "j")]),
                labels: l(&[("a", "b"), ("trace_id", "abc")]),
                value: 1.0,
                timestamp: 7,
            },
            crate::Exemplar {
                series: l(&[("__name__", "rpc_seconds"), ("job", "j")]),
                labels: Labels::default(),
                value: 0.25,
                timestamp: 5000,
            },
        ]
    );
    let b = |le: &str, v: [f64; 2]| {
        series(
            &[("__name__", "rpc_seconds_bucket"), ("job", "j"), ("le", le)],
            &[(5000, v[0]), (6000, v[1])],
        )
    };
    let classic = vec![
        b("-1", [3.0; 2]),
        b("-0.5", [4.0; 2]),
        b("0.001", [6.0; 2]),
        b("1", [7.0; 2]),
        b("2", [9.0; 2]),
        b("4", [10.0; 2]),
        b("+Inf", [10.0; 2]),
        series(&[("__name__", "rpc_seconds_count"), ("job", "j")], &[(5000, 10.0), (6000, 10.0)]),
        series(&[("__name__", "rpc_seconds_sum"), ("job", "j")], &[(5000, 12.5), (6000, 13.0)]),
    ];
    assert_same(req.histogram_series(), &classic);
    // `decode`: float series (the histogram series with none), then the classic series
    let got = decode(&snap::raw::Encoder::new().compress_vec(&proto).unwrap(), &Limits::default())
        .unwrap();
    let mut want = vec![
        series(&[("__name__", "up"), ("job", "j")], &[(7, 1.0)]),
        series(&[("__name__", "rpc_seconds"), ("job", "j")], &[]),
    ];
    want.extend(classic);
    assert_same(&got, &want);
}

/// A request without exemplars and histograms has none, and allocates nothing for them.
#[test]
fn plain_request_has_no_extras() {
    let b = encode(&[series(&[("__name__", "up")], &[(1, 1.0)])]).unwrap();
    let proto = decompress(&b, &Limits::default()).unwrap();
    let req = decode_raw(&proto).unwrap();
    assert_eq!((req.histograms(), req.histogram_series().len(), req.exemplars().len()), (0, 0, 0));
}

#[test]
fn histogram_and_exemplar_errors() {
    let check = |ts: Vec<reference::FullSeries>, limits: &Limits, want: &str| {
        let body = snap::raw::Encoder::new().compress_vec(&full_proto(ts)).unwrap();
        check_err(&body, limits, want);
    };
    let l = Limits::default();
    let ok = || hist_series(&[("__name__", "up")], &[(1, 1.0)], vec![], vec![]);
    let name = [("__name__", "h"), ("job", "j")];
    let bad_spans = Histogram {
        count: Some(histogram::Count::CountInt(100)),
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1, 1],
        ..Histogram::default()
    };
    check(
        vec![ok(), ok(), hist_series(&name, &[], vec![], vec![schema_0_histogram(), bad_spans])],
        &l,
        "remote write request: timeseries[2].histograms[1]: positive_spans cover 3 buckets but \
         positive_deltas has 2 entries",
    );
    check(
        vec![hist_series(
            &[("__name__", "h"), ("le", "1")],
            &[],
            vec![],
            vec![schema_0_histogram()],
        )],
        &l,
        "remote write request: timeseries[0].histograms[0]: a histogram series may not have an \
         le label: its classic _bucket series need it",
    );
    // the labels of a series with histograms or exemplars are validated as `decode` does
    check(
        vec![ok(), hist_series(&[("job", "j")], &[], vec![], vec![schema_0_histogram()])],
        &l,
        "timeseries[1]: label set has no __name__ label",
    );
    check(
        vec![hist_series(
            &[("__name__", "up"), ("1a", "x")],
            &[],
            vec![exemplar(&[], 1.0, 1)],
            vec![],
        )],
        &l,
        r#"timeseries[0]: invalid label name "1a""#,
    );
    check(
        vec![hist_series(
            &name,
            &[],
            vec![exemplar(&[], 1.0, 1), exemplar(&[("a", "x"), ("a", "y")], 1.0, 1)],
            vec![],
        )],
        &l,
        r#"remote write request: timeseries[0].exemplars[1]: duplicate label name "a""#,
    );
    check(
        vec![hist_series(&name, &[], vec![exemplar(&[("a-b", "x")], 1.0, 1)], vec![])],
        &l,
        r#"remote write request: timeseries[0].exemplars[0]: invalid label name "a-b""#,
    );
    // the classic series are counted against 16 times the decompressed cap
    let proto = full_proto(vec![hist_series(&name, &[], vec![], vec![schema_0_histogram()])]);
    let small = Limits { max_decompressed_bytes: proto.len(), ..Limits::default() };
    check(
        vec![hist_series(&name, &[], vec![], vec![schema_0_histogram()])],
        &small,
        &format!(
            "remote write request: decoded series take more than the limit of {} bytes",
            16 * proto.len()
        ),
    );
    assert!(
        decode_raw_with_limits(&proto, &Limits { max_decompressed_bytes: 1 << 16, ..l }).is_ok()
    );
    assert!(matches!(
        decode_raw_with_limits(&proto, &Limits { max_decompressed_bytes: proto.len() - 1, ..l }),
        Err(Error::DecompressedTooLarge { .. })
    ));
    let compress = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
    // an exemplar (3) and a histogram (4) with the varint wire type
    check_err(
        &compress(&[0x0a, 0x02, 0x18, 0x01]),
        &l,
        "remote write body: timeseries[0].exemplars[0]: wire type Varint, expected \
         LengthDelimited",
    );
    check_err(
        &compress(&[0x0a, 0x04, 0x22, 0x00, 0x20, 0x01]),
        &l,
        "remote write body: timeseries[0].histograms[1]: wire type Varint, expected \
         LengthDelimited",
    );
    // a histogram that is not a Histogram message: schema (4) as a double
    let mut t = hist_series(&name, &[], vec![], vec![]).encode_to_vec();
    t.extend([0x22, 0x09, 0x21, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut proto = Vec::new();
    prost::encoding::bytes::encode(1, &t, &mut proto);
    check_err(
        &compress(&proto),
        &l,
        "remote write body: timeseries[0].histograms[0]: Histogram.schema: invalid wire type: \
         SixtyFourBit (expected Varint)",
    );
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
    /// With exemplars (3) and native histograms (4).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FullRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<FullSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<super::MetricMetadata>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FullSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<super::Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<super::Exemplar>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<super::Histogram>,
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
/// accepts, and decodes it to the same series. Where the request has exemplars or histograms,
/// which prost's decoder only parses, ours may still refuse it (a bad histogram), and what it
/// decodes starts with the same float series.
fn check_decode_same_as_prost(proto: &[u8]) {
    let body = snap::raw::Encoder::new().compress_vec(proto).unwrap();
    let ours = decode(&body, &Limits::default());
    let theirs = reference::FullRequest::decode(proto).ok();
    let extras = theirs.as_ref().is_some_and(|r| {
        r.timeseries.iter().any(|t| !t.exemplars.is_empty() || !t.histograms.is_empty())
    });
    let theirs = theirs.and_then(|r| {
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
        (Ok(o), Some(t)) if extras => {
            assert!(o.len() >= t.len(), "input {proto:02x?}");
            assert_same(&o[..t.len()], &t);
        }
        (Ok(o), Some(t)) => assert_same(&o, &t),
        (Err(_), None) => {}
        (Err(_), Some(_)) if extras => {}
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

    /// Adding exemplars and histograms to a request's series leaves its float series as they
    /// were, and adds one classic series per bucket, `+Inf`, `_count` and `_sum`.
    #[test]
    fn extras_leave_float_series_alone(
        want in prop::collection::vec(arb_series(), 0..6),
        extra in prop::collection::vec((any::<bool>(), 0u64..50, 0u8..4), 6),
    ) {
        let plain = decode(&encode(&want).unwrap(), &Limits::default()).unwrap();
        // each series as our encoder writes it (bits kept), then its exemplars and histograms
        let mut n_hist = 0;
        let mut proto = Vec::new();
        for (s, &(ex, k, n_buckets)) in want.iter().zip(&extra) {
            let mut t = to_proto(s).encode_to_vec();
            if ex {
                let e = exemplar(&[("trace_id", "t")], k as f64, 1);
                prost::encoding::message::encode(3, &e, &mut t);
            }
            if s.labels.get("le").is_none() && n_buckets > 0 {
                n_hist += 1;
                let h = Histogram {
                    count: Some(histogram::Count::CountInt(k * u64::from(n_buckets))),
                    positive_spans: vec![span(0, n_buckets.into())],
                    positive_deltas: [k as i64].into_iter().chain((1..n_buckets).map(|_| 0)).collect(),
                    timestamp: 2,
                    ..Histogram::default()
                };
                prost::encoding::message::encode(4, &h, &mut t);
            }
            prost::encoding::bytes::encode(1, &t, &mut proto);
        }
        let req = decode_raw(&proto).unwrap();
        prop_assert_eq!(req.histograms(), n_hist);
        let floats: Vec<_> = req.series().map(|s| (s.labels.to_vec(), s.samples.to_vec())).collect();
        let plain_proto = decompress(&encode(&want).unwrap(), &Limits::default()).unwrap();
        let before = decode_raw(&plain_proto).unwrap();
        let before: Vec<_> = before.series().map(|s| (s.labels.to_vec(), s.samples.to_vec())).collect();
        prop_assert_eq!(floats.len(), before.len());
        for (a, b) in floats.iter().zip(&before) {
            prop_assert_eq!(&a.0, &b.0);
            prop_assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.bit_eq(y)) && a.1.len() == b.1.len());
        }
        let body = snap::raw::Encoder::new().compress_vec(&proto).unwrap();
        let got = decode(&body, &Limits::default()).unwrap();
        assert_same(&got[..plain.len()], &plain);
        for s in &got[plain.len()..] {
            let name = s.labels.metric_name().unwrap();
            prop_assert!(["_bucket", "_count", "_sum"].iter().any(|x| name.ends_with(x)));
        }
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
