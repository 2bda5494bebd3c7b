use ocelli_model::{STALE_NAN, Sample as ModelSample, is_stale_nan};
use proptest::prelude::*;

use super::histogram::{Count, ZeroCount};
use super::*;
use crate::series::testing::{arb_series, same};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> DecodedSeries {
    DecodedSeries {
        labels: labels(pairs),
        samples: samples.iter().map(|&(t, v)| ModelSample::new(t, v)).collect(),
    }
}

/// A series with raw label pairs (in the order given, not checked) and samples.
fn ts(sym: &mut Symbols, pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels_refs: pairs.iter().flat_map(|(n, v)| [sym.intern(n), sym.intern(v)]).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
        ..TimeSeries::default()
    }
}

fn request(sym: Symbols, timeseries: Vec<TimeSeries>) -> Request {
    Request { symbols: sym.into_table(), timeseries }
}

fn dec(req: &Request) -> Result<Decoded> {
    decode(&encode(req), &Limits::default())
}

fn check_err(req: &Request, want: &str) {
    match dec(req) {
        Ok(d) => panic!("decoded {d:?}, want error {want:?}"),
        Err(e) => assert_eq!(e.to_string(), want),
    }
}

/// A histogram series named `name` with one histogram sample.
fn hist_request(name: &str, h: Histogram) -> Request {
    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", name), ("job", "j")], &[]);
    t.histograms = vec![h];
    request(sym, vec![t])
}

/// The classic series a histogram request decoded to, as (name, le, timestamp, value).
fn classic(d: &Decoded) -> Vec<(String, Option<String>, i64, f64)> {
    d.series
        .iter()
        .flat_map(|s| {
            assert_eq!(s.labels.get("job"), Some("j"));
            let name = s.labels.metric_name().unwrap().to_owned();
            let le = s.labels.get("le").map(str::to_owned);
            s.samples.iter().map(move |x| (name.clone(), le.clone(), x.t, x.v))
        })
        .collect()
}

fn expect(rows: &[(&str, Option<&str>, f64)], t: i64) -> Vec<(String, Option<String>, i64, f64)> {
    rows.iter().map(|&(n, le, v)| (n.to_owned(), le.map(str::to_owned), t, v)).collect()
}

fn span(offset: i32, length: u32) -> BucketSpan {
    BucketSpan { offset, length }
}

#[test]
fn negotiation() {
    use Version::{V1, V2};
    let table: &[(Option<&str>, Option<Version>)] = &[
        (None, Some(V1)),
        (Some(""), Some(V1)),
        (Some("  "), Some(V1)),
        (Some("application/x-protobuf"), Some(V1)),
        (Some("Application/X-Protobuf"), Some(V1)),
        (Some("application/x-protobuf;proto=prometheus.WriteRequest"), Some(V1)),
        (Some("application/x-protobuf; proto=prometheus.WriteRequest"), Some(V1)),
        (Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"), Some(V2)),
        (Some("application/x-protobuf ; PROTO = io.prometheus.write.v2.Request"), Some(V2)),
        (Some("application/x-protobuf;proto=\"io.prometheus.write.v2.Request\""), Some(V2)),
        (
            Some("application/x-protobuf;charset=utf-8;proto=io.prometheus.write.v2.Request"),
            Some(V2),
        ),
        (
            Some("application/x-protobuf;note=\"a;proto=x\";proto=io.prometheus.write.v2.Request"),
            Some(V2),
        ),
        (Some("application/x-protobuf;"), Some(V1)),
        (Some("application/x-protobuf;charset=utf-8"), Some(V1)),
        (Some("application/x-protobuf;proto=io.prometheus.write.v2.request"), None),
        (Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"), None),
        (Some("application/x-protobuf;proto="), None),
        (Some("application/x-protobuf;proto"), None),
        (Some("application/x-protobuf;proto=\"io.prometheus.write.v2.Request"), None),
        (
            Some(
                "application/x-protobuf;proto=prometheus.WriteRequest;proto=io.prometheus.write.v2.Request",
            ),
            None,
        ),
        (Some("application/json"), None),
        (Some("application/x-protobuf-v2"), None),
        (Some("text/plain;proto=io.prometheus.write.v2.Request"), None),
    ];
    for (ct, want) in table {
        match (negotiate(*ct), want) {
            (Ok(got), Some(want)) => assert_eq!(got, *want, "{ct:?}"),
            (Err(e), None) => {
                assert!(e.contains(&format!("{:?}", ct.unwrap().trim())), "{e}");
                assert!(e.contains(CONTENT_TYPE_V1) && e.contains(CONTENT_TYPE_V2), "{e}");
            }
            (got, want) => panic!("{ct:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn encoding_check() {
    assert!(check_encoding(None).is_ok());
    assert!(check_encoding(Some("")).is_ok());
    assert!(check_encoding(Some("snappy")).is_ok());
    assert!(check_encoding(Some(" Snappy ")).is_ok());
    for bad in ["gzip", "identity", "snappy, gzip", "zstd"] {
        let e = check_encoding(Some(bad)).unwrap_err();
        assert!(e.contains(bad) && e.contains("snappy"), "{e}");
    }
}

#[test]
fn series_metadata_and_exemplars() {
    let mut sym = Symbols::new();
    let mut a = ts(
        &mut sym,
        &[("__name__", "http_requests_total"), ("job", "api"), ("code", "200")],
        &[(1000, 1.0), (2000, 2.0)],
    );
    a.metadata = Some(Metadata {
        r#type: MetricType::Counter as i32,
        help_ref: sym.intern("Requests served."),
        unit_ref: 0,
    });
    a.exemplars = vec![
        Exemplar {
            labels_refs: vec![sym.intern("trace_id"), sym.intern("abc")],
            value: 1.0,
            timestamp: 1500,
        },
        Exemplar { labels_refs: vec![], value: -0.5, timestamp: 0 },
    ];
    a.created_timestamp = 500;
    // same family, other metadata: the first one stays
    let mut b = ts(&mut sym, &[("__name__", "http_requests_total"), ("code", "500")], &[(0, 5.0)]);
    b.metadata = Some(Metadata { r#type: MetricType::Gauge as i32, help_ref: 0, unit_ref: 0 });
    // a series with the labels of the first one is merged into it
    let c = ts(
        &mut sym,
        &[("job", "api"), ("code", "200"), ("__name__", "http_requests_total")],
        &[(3000, 3.0)],
    );
    let mut d = ts(&mut sym, &[("__name__", "temp"), ("empty", "")], &[(7, STALE_NAN)]);
    let unit_ref = sym.intern("celsius");
    d.metadata = Some(Metadata { r#type: 0, help_ref: 0, unit_ref });
    let mut e = ts(&mut sym, &[("__name__", "no_metadata")], &[(1, -0.0)]);
    e.metadata = Some(Metadata::default());
    let got = dec(&request(sym, vec![a, b, c, d, e])).unwrap();
    let want = vec![
        series(
            &[("__name__", "http_requests_total"), ("job", "api"), ("code", "200")],
            &[(1000, 1.0), (2000, 2.0), (3000, 3.0)],
        ),
        series(&[("__name__", "http_requests_total"), ("code", "500")], &[(0, 5.0)]),
        series(&[("__name__", "temp")], &[(7, STALE_NAN)]),
        series(&[("__name__", "no_metadata")], &[(1, -0.0)]),
    ];
    assert!(same(&got.series, &want, false), "{:?}", got.series);
    assert_eq!(
        got.metadata,
        vec![
            exposition::Metadata {
                family: "http_requests_total".into(),
                kind: MetricKind::Counter,
                help: Some("Requests served.".into()),
                unit: None,
            },
            exposition::Metadata {
                family: "temp".into(),
                kind: MetricKind::Unknown,
                help: None,
                unit: Some("celsius".into()),
            },
        ]
    );
    let series_labels = want[0].labels.clone();
    assert_eq!(
        got.exemplars,
        vec![
            crate::Exemplar {
                series: series_labels.clone(),
                labels: labels(&[("trace_id", "abc")]),
                value: 1.0,
                timestamp: 1500,
            },
            crate::Exemplar {
                series: series_labels,
                labels: Labels::default(),
                value: -0.5,
                timestamp: 0
            },
        ]
    );
    assert_eq!((got.samples, got.histograms, got.exemplars_count), (6, 0, 2));
}

#[test]
fn metric_types_map_to_kinds() {
    let kinds = [
        (MetricType::Unspecified, MetricKind::Unknown),
        (MetricType::Counter, MetricKind::Counter),
        (MetricType::Gauge, MetricKind::Gauge),
        (MetricType::Histogram, MetricKind::Histogram),
        (MetricType::GaugeHistogram, MetricKind::GaugeHistogram),
        (MetricType::Summary, MetricKind::Summary),
        (MetricType::Info, MetricKind::Info),
        (MetricType::Stateset, MetricKind::StateSet),
    ];
    for (ty, kind) in kinds {
        let mut sym = Symbols::new();
        let mut t = ts(&mut sym, &[("__name__", "m")], &[(1, 1.0)]);
        let help_ref = sym.intern("h");
        t.metadata = Some(Metadata { r#type: ty as i32, help_ref, unit_ref: 0 });
        let got = dec(&request(sym, vec![t])).unwrap();
        assert_eq!(got.metadata[0].kind, kind);
    }
}

#[test]
fn empty_request_decodes_to_nothing() {
    assert_eq!(
        decode(&encode(&Request::default()), &Limits::default()).unwrap(),
        Decoded::default()
    );
    assert_eq!(dec(&request(Symbols::new(), vec![])).unwrap(), Decoded::default());
}

#[test]
fn symbols_may_follow_the_series() {
    let mut sym = Symbols::new();
    let t = ts(&mut sym, &[("__name__", "up")], &[(1, 1.0)]);
    let mut proto = Request { symbols: vec![], timeseries: vec![t] }.encode_to_vec();
    proto.extend(Request { symbols: sym.into_table(), timeseries: vec![] }.encode_to_vec());
    let got = decode_proto(&proto, &Limits::default()).unwrap();
    assert!(same(&got.series, &[series(&[("__name__", "up")], &[(1, 1.0)])], false));
}

#[test]
fn label_and_symbol_errors() {
    let bad = |pairs: &[(&str, &str)], want: &str| {
        let mut sym = Symbols::new();
        let good = ts(&mut sym, &[("__name__", "ok")], &[(1, 1.0)]);
        let t = ts(&mut sym, pairs, &[(1, 1.0)]);
        check_err(&request(sym, vec![good, t]), want);
    };
    bad(&[("job", "x")], "timeseries[1]: label set has no __name__ label");
    bad(&[("__name__", "1up")], "timeseries[1]: invalid metric name \"1up\"");
    bad(&[("__name__", "up"), ("bad-name", "x")], "timeseries[1]: invalid label name \"bad-name\"");
    bad(&[("__name__", "up"), ("bad-name", "")], "timeseries[1]: invalid label name \"bad-name\"");
    bad(&[("__name__", "up"), ("", "x")], "timeseries[1]: invalid label name \"\"");
    bad(&[("__name__", "up"), ("a", "1"), ("a", "")], "timeseries[1]: duplicate label name \"a\"");

    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "up"), ("a", "b")], &[(1, 1.0)]);
    let mut req = request(sym, vec![]);
    t.labels_refs.push(17);
    t.labels_refs.push(0);
    let n = req.symbols.len();
    req.timeseries = vec![t.clone()];
    check_err(
        &req,
        &format!(
            "remote write 2.0 request: timeseries[0]: labels_refs[4] = 17 is past the end of the \
             symbols table ({n} symbols)"
        ),
    );
    t.labels_refs.pop();
    req.timeseries = vec![t];
    check_err(
        &req,
        "remote write 2.0 request: timeseries[0]: labels_refs has 5 entries; it must hold name, \
         value pairs",
    );

    let mut sym = Symbols::new();
    let t = ts(&mut sym, &[("__name__", "up")], &[(1, 1.0)]);
    let mut req = request(sym, vec![t]);
    req.symbols[0] = "x".into();
    check_err(
        &req,
        "remote write 2.0 request: symbols[0]: is \"x\", but the symbols table must start with the \
         empty string",
    );
}

#[test]
fn metadata_and_exemplar_errors() {
    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "up")], &[(1, 1.0)]);
    let req = |t: &TimeSeries, sym: &Symbols| request(sym.clone(), vec![t.clone()]);
    t.metadata = Some(Metadata { r#type: 42, help_ref: 0, unit_ref: 0 });
    check_err(
        &req(&t, &sym),
        "remote write 2.0 request: timeseries[0].metadata: type 42 is not a known metric type",
    );
    t.metadata = Some(Metadata { r#type: 1, help_ref: 99, unit_ref: 0 });
    check_err(
        &req(&t, &sym),
        "remote write 2.0 request: timeseries[0].metadata: help_ref = 99 is past the end of the \
         symbols table (3 symbols)",
    );
    t.metadata = None;
    let (n, v) = (sym.intern("bad-name"), sym.intern("v"));
    t.exemplars = vec![Exemplar { labels_refs: vec![n, v], value: 1.0, timestamp: 1 }];
    check_err(
        &req(&t, &sym),
        "remote write 2.0 request: timeseries[0].exemplars[0]: invalid label name \"bad-name\"",
    );
    let a = sym.intern("a");
    t.exemplars = vec![Exemplar { labels_refs: vec![a, v, a, v], value: 1.0, timestamp: 1 }];
    check_err(
        &req(&t, &sym),
        "remote write 2.0 request: timeseries[0].exemplars[0]: duplicate label name \"a\"",
    );
    t.exemplars = vec![Exemplar { labels_refs: vec![a, 1000], value: 1.0, timestamp: 1 }];
    check_err(
        &req(&t, &sym),
        "remote write 2.0 request: timeseries[0].exemplars[0]: labels_refs[1] = 1000 is past the \
         end of the symbols table (6 symbols)",
    );
}

#[test]
fn samples_and_histograms_together_are_refused() {
    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "h")], &[(1, 1.0)]);
    t.histograms = vec![Histogram::default()];
    check_err(
        &request(sym, vec![t]),
        "remote write 2.0 request: timeseries[0]: has 1 samples and 1 histograms; a series carries \
         one or the other",
    );
}

#[test]
fn one_bad_series_among_good_ones_is_an_error() {
    let mut sym = Symbols::new();
    let mut all: Vec<TimeSeries> = (0..10)
        .map(|i| ts(&mut sym, &[("__name__", "ok"), ("i", &i.to_string())], &[(1, 1.0)]))
        .collect();
    all.insert(7, ts(&mut sym, &[("i", "bad")], &[(1, 1.0)]));
    let mut h = ts(&mut sym, &[("__name__", "h")], &[]);
    h.histograms = vec![Histogram { schema: 9, ..Histogram::default() }];
    let req = request(sym.clone(), all.clone());
    check_err(&req, "timeseries[7]: label set has no __name__ label");
    all.remove(7);
    all.insert(3, h);
    check_err(
        &request(sym, all),
        "remote write 2.0 request: timeseries[3].histograms[0]: schema 9 is not supported (-4 to \
         8, or -53 for custom buckets)",
    );
}

#[test]
fn malformed_protobuf_names_the_field() {
    let mut sym = Symbols::new();
    let t = ts(&mut sym, &[("__name__", "up")], &[(1, 1.0)]);
    let mut proto = request(sym, vec![t]).encode_to_vec();
    proto.truncate(proto.len() - 3);
    let e = decode_proto(&proto, &Limits::default()).unwrap_err().to_string();
    assert!(e.starts_with("remote write body: timeseries[0]: length"), "{e}");
    let e = decode(b"\x05abc", &Limits::default()).unwrap_err();
    assert!(matches!(e, Error::Snappy { .. }), "{e}");
}

#[test]
fn body_limits_as_v1() {
    let mut sym = Symbols::new();
    let t = ts(&mut sym, &[("__name__", "up")], &[(1, 1.0)]);
    let req = request(sym, vec![t]);
    let body = encode(&req);
    let small = Limits { max_body_bytes: body.len() - 1, max_decompressed_bytes: 1 << 20 };
    assert!(matches!(decode(&body, &small), Err(Error::BodyTooLarge { .. })));
    let proto = req.encode_to_vec();
    let small = Limits { max_body_bytes: 1 << 20, max_decompressed_bytes: proto.len() - 1 };
    assert!(matches!(decode(&body, &small), Err(Error::DecompressedTooLarge { .. })));
    assert!(matches!(decode_proto(&proto, &small), Err(Error::DecompressedTooLarge { .. })));
}

#[test]
fn schema_0_with_negative_and_zero_buckets() {
    let h = Histogram {
        count: Some(Count::CountInt(10)),
        sum: 12.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::ZeroCountInt(2)),
        // negative buckets 0 and 1: [-1, -0.5) holds 1, [-2, -1) holds 3
        negative_spans: vec![span(0, 2)],
        negative_deltas: vec![1, 2],
        // positive buckets 0, 1, 2: (0.5, 1] 1, (1, 2] 2, (2, 4] 1
        positive_spans: vec![span(0, 3)],
        positive_deltas: vec![1, 1, -1],
        timestamp: 5000,
        ..Histogram::default()
    };
    let got = dec(&hist_request("rpc_seconds", h)).unwrap();
    let b = "rpc_seconds_bucket";
    assert_eq!(
        classic(&got),
        expect(
            &[
                (b, Some("-1"), 3.0),
                (b, Some("-0.5"), 4.0),
                (b, Some("0.001"), 6.0),
                (b, Some("1"), 7.0),
                (b, Some("2"), 9.0),
                (b, Some("4"), 10.0),
                (b, Some("+Inf"), 10.0),
                ("rpc_seconds_count", None, 10.0),
                ("rpc_seconds_sum", None, 12.5),
            ],
            5000
        )
    );
    assert_eq!((got.samples, got.histograms), (0, 1));
}

#[test]
fn schema_3_and_negative_schema_bounds() {
    // schema 3: buckets 1 and 2, then a gap of 6 after bucket 2's end (index 3): bucket 9
    let h = Histogram {
        count: Some(Count::CountInt(6)),
        sum: 9.0,
        schema: 3,
        positive_spans: vec![span(1, 2), span(6, 1)],
        positive_deltas: vec![1, 1, 1],
        timestamp: 1,
        ..Histogram::default()
    };
    let b = "x_bucket";
    assert_eq!(
        classic(&dec(&hist_request("x", h)).unwrap()),
        expect(
            &[
                (b, Some("1.0905077326652577"), 1.0), // 2^(1/8)
                (b, Some("1.189207115002721"), 3.0),  // 2^(2/8)
                (b, Some("2.1810154653305154"), 6.0), // 2^(9/8)
                (b, Some("+Inf"), 6.0),
                ("x_count", None, 6.0),
                ("x_sum", None, 9.0),
            ],
            1
        )
    );
    // schema -2: base 16; buckets -1 (bound 1/16) and 1 (bound 16)
    let h = Histogram {
        count: Some(Count::CountInt(3)),
        schema: -2,
        positive_spans: vec![span(-1, 1), span(1, 1)],
        positive_deltas: vec![1, 1],
        ..Histogram::default()
    };
    assert_eq!(
        classic(&dec(&hist_request("x", h)).unwrap()),
        expect(
            &[
                (b, Some("0.0625"), 1.0),
                (b, Some("16"), 3.0),
                (b, Some("+Inf"), 3.0),
                ("x_count", None, 3.0),
                ("x_sum", None, 0.0),
            ],
            0
        )
    );
}

#[test]
fn float_histogram_and_gauge_reset_hint() {
    let h = Histogram {
        count: Some(Count::CountFloat(5.5)),
        sum: -1.25,
        schema: 0,
        zero_count: Some(ZeroCount::ZeroCountFloat(2.0)),
        positive_spans: vec![span(0, 3)],
        positive_counts: vec![1.5, 0.0, 2.0],
        reset_hint: ResetHint::Gauge as i32,
        timestamp: 3,
        ..Histogram::default()
    };
    let b = "g_bucket";
    assert_eq!(
        classic(&dec(&hist_request("g", h)).unwrap()),
        expect(
            &[
                (b, Some("0"), 2.0),
                (b, Some("1"), 3.5),
                (b, Some("2"), 3.5),
                (b, Some("4"), 5.5),
                (b, Some("+Inf"), 5.5),
                ("g_count", None, 5.5),
                ("g_sum", None, -1.25),
            ],
            3
        )
    );
}

#[test]
fn custom_buckets() {
    // buckets 0, 1 and 3 of bounds [0.1, 0.5, 1]: bucket 3 is the +Inf one
    let h = Histogram {
        count: Some(Count::CountInt(7)),
        sum: 4.0,
        schema: -53,
        positive_spans: vec![span(0, 2), span(1, 1)],
        positive_deltas: vec![2, -1, 3],
        custom_values: vec![0.1, 0.5, 1.0],
        timestamp: 9,
        ..Histogram::default()
    };
    let b = "c_bucket";
    assert_eq!(
        classic(&dec(&hist_request("c", h)).unwrap()),
        expect(
            &[
                (b, Some("0.1"), 2.0),
                (b, Some("0.5"), 3.0),
                (b, Some("+Inf"), 7.0),
                ("c_count", None, 7.0),
                ("c_sum", None, 4.0),
            ],
            9
        )
    );
}

#[test]
fn stale_histogram_writes_stale_markers() {
    let h = Histogram {
        count: Some(Count::CountInt(1)),
        sum: STALE_NAN,
        positive_spans: vec![span(0, 1)],
        positive_deltas: vec![1],
        timestamp: 4,
        ..Histogram::default()
    };
    let got = dec(&hist_request("s", h)).unwrap();
    let rows = classic(&got);
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.2 == 4 && is_stale_nan(r.3)), "{rows:?}");
}

#[test]
fn histogram_samples_of_one_series_share_classic_series() {
    let mk = |t: i64, n: u64| Histogram {
        count: Some(Count::CountInt(n)),
        sum: n as f64,
        positive_spans: vec![span(0, 1)],
        positive_deltas: vec![n as i64],
        timestamp: t,
        ..Histogram::default()
    };
    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "h"), ("job", "j")], &[]);
    t.histograms = vec![mk(1, 1), mk(2, 3)];
    let mut m = Metadata { r#type: MetricType::Histogram as i32, ..Metadata::default() };
    m.help_ref = sym.intern("Latency.");
    t.metadata = Some(m);
    let got = dec(&request(sym, vec![t])).unwrap();
    assert_eq!(got.series.len(), 4);
    assert!(got.series.iter().all(|s| s.samples.len() == 2));
    assert_eq!(got.series[0].samples[1], ModelSample::new(2, 3.0));
    assert_eq!(got.metadata[0].family, "h");
    assert_eq!(got.metadata[0].kind, MetricKind::Histogram);
    assert_eq!(got.histograms, 2);
}

#[test]
fn histogram_errors() {
    let check = |h: Histogram, want: &str| {
        check_err(
            &hist_request("h", h),
            &format!("remote write 2.0 request: timeseries[0].histograms[0]: {want}"),
        );
    };
    let base = || Histogram { count: Some(Count::CountInt(100)), ..Histogram::default() };
    check(
        Histogram { schema: -5, ..base() },
        "schema -5 is not supported (-4 to 8, or -53 for custom buckets)",
    );
    // a span claiming four billion buckets is refused before anything is allocated
    check(
        Histogram { positive_spans: vec![span(0, u32::MAX)], positive_deltas: vec![1], ..base() },
        "positive_spans cover 4294967295 buckets but positive_deltas has 1 entries",
    );
    check(
        Histogram { negative_spans: vec![span(0, 1)], ..base() },
        "negative_spans cover 1 buckets but negative_deltas has 0 entries",
    );
    check(
        Histogram {
            positive_spans: vec![span(0, 1), span(-2, 1)],
            positive_deltas: vec![1, 1],
            ..base()
        },
        "positive_spans[1].offset is -2; only the first span's offset may be negative",
    );
    check(
        Histogram { positive_spans: vec![span(0, 2)], positive_deltas: vec![1, -2], ..base() },
        "positive_deltas[1] = -2 makes a bucket count negative or overflow",
    );
    check(
        Histogram {
            count: Some(Count::CountFloat(1.0)),
            positive_spans: vec![span(0, 1)],
            positive_counts: vec![-1.0],
            ..base()
        },
        "positive_counts[0] is -1; counts must be non-negative numbers",
    );
    check(
        Histogram { count: Some(Count::CountFloat(f64::NAN)), ..base() },
        "count_float is NaN; counts must be non-negative numbers",
    );
    check(
        Histogram { zero_count: Some(ZeroCount::ZeroCountFloat(1.0)), ..base() },
        "an integer histogram (count_int) has zero_count_float",
    );
    check(
        Histogram { count: Some(Count::CountFloat(1.0)), positive_deltas: vec![1], ..base() },
        "a float histogram (count_float) has positive_deltas",
    );
    check(
        Histogram { negative_counts: vec![1.0], ..base() },
        "an integer histogram (count_int) has negative_counts",
    );
    check(
        Histogram {
            count: Some(Count::CountInt(1)),
            positive_spans: vec![span(0, 1)],
            positive_deltas: vec![2],
            ..base()
        },
        "its buckets hold 2 observations, more than its count 1",
    );
    check(
        Histogram { zero_threshold: -1.0, ..base() },
        "zero_threshold is -1; it must be a finite number, 0 or more",
    );
    check(
        Histogram { custom_values: vec![1.0], ..base() },
        "an exponential histogram (schema 0) has custom_values",
    );
    let custom = || Histogram { schema: -53, ..base() };
    check(
        Histogram { custom_values: vec![1.0, 1.0], ..custom() },
        "custom_values must be strictly increasing: [0] is 1, [1] is 1",
    );
    check(
        Histogram { custom_values: vec![1.0, f64::INFINITY], ..custom() },
        "custom_values[1] is inf; bounds must be numbers below +Inf (the +Inf bucket is implicit)",
    );
    check(
        Histogram {
            custom_values: vec![1.0],
            positive_spans: vec![span(2, 1)],
            positive_deltas: vec![1],
            ..custom()
        },
        "positive bucket 2 has no bound: custom_values has 1 entries",
    );
    check(
        Histogram { zero_count: Some(ZeroCount::ZeroCountInt(1)), ..custom() },
        "a custom-bucket histogram (schema -53) may have no zero bucket and no negative buckets",
    );

    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "h"), ("le", "1")], &[]);
    t.histograms = vec![base()];
    check_err(
        &request(sym, vec![t]),
        "remote write 2.0 request: timeseries[0].histograms[0]: a histogram series may not have an \
         le label: its classic _bucket series need it",
    );
}

#[test]
fn decoded_memory_is_capped() {
    // 2000 buckets in a few kilobytes make 2000 series with the labels repeated
    let h = Histogram {
        count: Some(Count::CountInt(2000)),
        positive_spans: vec![span(-1000, 2000)],
        positive_deltas: [1].into_iter().chain(std::iter::repeat_n(0, 1999)).collect(),
        ..Histogram::default()
    };
    let mut sym = Symbols::new();
    let long = "x".repeat(200);
    let mut t = ts(&mut sym, &[("__name__", "h"), ("job", &long)], &[]);
    t.histograms = vec![h];
    let proto = request(sym, vec![t]).encode_to_vec();
    let limits = Limits { max_body_bytes: 1 << 20, max_decompressed_bytes: proto.len() };
    let max = proto.len() * DECODED_BYTES_PER_PROTO_BYTE;
    match decode_proto(&proto, &limits) {
        Err(Error::RemoteWriteV2DecodedTooLarge { max: m }) => assert_eq!(m, max),
        other => panic!("{other:?}"),
    }
    let roomy = Limits { max_body_bytes: 1 << 20, max_decompressed_bytes: proto.len() * 100 };
    assert_eq!(decode_proto(&proto, &roomy).unwrap().series.len(), 2003);
}

#[test]
fn bounds() {
    assert_eq!(exp_bound(0, 0), 1.0);
    assert_eq!(exp_bound(-1, 0), 0.5);
    assert_eq!(exp_bound(8, 3), 2.0);
    assert_eq!(exp_bound(-8, 3), 0.5);
    assert_eq!(exp_bound(1, -4), 65536.0);
    assert_eq!(exp_bound(1024, 0), f64::INFINITY);
    assert_eq!(exp_bound(1023, 0), 2f64.powi(1023));
    assert_eq!(exp_bound(-1074, 0), f64::from_bits(1));
    assert_eq!(exp_bound(-1100, 0), 0.0);
    assert_eq!(exp_bound(i64::MAX / 2, -4), f64::INFINITY);
    assert_eq!(exp_bound(i64::MIN / 2, 8), 0.0);
}

/// A series, its metadata (type, help, unit) and its exemplars.
type Case = (DecodedSeries, Option<(i32, String, String)>, Vec<crate::Exemplar>);

/// Series with distinct label sets, each with optional metadata and some exemplars.
fn arb_request() -> impl Strategy<Value = Vec<Case>> {
    let meta = prop::option::of((0..8i32, ".{0,6}", "[a-z]{0,3}"));
    let ex = prop::collection::vec(
        (prop::collection::btree_map("[a-z_]{1,4}", ".{0,4}", 0..3), any::<f64>(), any::<i64>()),
        0..3,
    );
    prop::collection::vec(
        (
            arb_series(
                "[a-z_:][a-z0-9_:]{0,6}",
                "[a-z_][a-z0-9_]{0,4}",
                any::<i64>(),
                any::<f64>(),
            ),
            meta,
            ex,
        ),
        0..8,
    )
    .prop_map(|v| {
        let mut seen = HashSet::new();
        v.into_iter()
            .filter(|(s, _, _)| seen.insert(s.labels.clone()))
            .map(|(s, m, ex)| {
                let ex = ex
                    .into_iter()
                    .map(|(l, value, timestamp)| crate::Exemplar {
                        series: s.labels.clone(),
                        labels: Labels::from_pairs(l).unwrap(),
                        value,
                        timestamp,
                    })
                    .collect();
                (s, m, ex)
            })
            .collect()
    })
}

fn build(v: &[Case]) -> Request {
    let mut sym = Symbols::new();
    let timeseries = v
        .iter()
        .map(|(s, m, ex)| TimeSeries {
            labels_refs: sym.labels_refs(&s.labels),
            samples: s.samples.iter().map(|x| Sample { value: x.v, timestamp: x.t }).collect(),
            histograms: vec![],
            exemplars: ex
                .iter()
                .map(|e| Exemplar {
                    labels_refs: sym.labels_refs(&e.labels),
                    value: e.value,
                    timestamp: e.timestamp,
                })
                .collect(),
            metadata: m.as_ref().map(|(ty, help, unit)| Metadata {
                r#type: *ty,
                help_ref: sym.intern(help),
                unit_ref: sym.intern(unit),
            }),
            created_timestamp: 0,
        })
        .collect();
    request(sym, timeseries)
}

/// A request with histograms of every kind, for the corruption test.
fn histogram_request() -> Request {
    let mut sym = Symbols::new();
    let mut a = ts(&mut sym, &[("__name__", "a"), ("job", "j")], &[]);
    a.histograms = vec![
        Histogram {
            count: Some(Count::CountInt(10)),
            sum: 12.5,
            zero_threshold: 0.001,
            zero_count: Some(ZeroCount::ZeroCountInt(2)),
            negative_spans: vec![span(0, 2)],
            negative_deltas: vec![1, 2],
            positive_spans: vec![span(0, 3)],
            positive_deltas: vec![1, 1, -1],
            ..Histogram::default()
        },
        Histogram {
            count: Some(Count::CountFloat(5.5)),
            schema: 3,
            positive_spans: vec![span(0, 3)],
            positive_counts: vec![1.5, 0.0, 2.0],
            ..Histogram::default()
        },
    ];
    let mut c = ts(&mut sym, &[("__name__", "c")], &[]);
    c.histograms = vec![Histogram {
        count: Some(Count::CountInt(7)),
        schema: -53,
        positive_spans: vec![span(0, 2), span(1, 1)],
        positive_deltas: vec![2, -1, 3],
        custom_values: vec![0.1, 0.5, 1.0],
        ..Histogram::default()
    }];
    request(sym, vec![a, c])
}

proptest! {
    #[test]
    fn round_trip(v in arb_request()) {
        let got = dec(&build(&v)).unwrap();
        let want: Vec<DecodedSeries> = v.iter().map(|x| x.0.clone()).collect();
        prop_assert!(same(&got.series, &want, false));
        let mut families = HashSet::new();
        let metadata: Vec<exposition::Metadata> = v
            .iter()
            .filter_map(|(s, m, _)| {
                let (ty, help, unit) = m.as_ref()?;
                let family = s.labels.metric_name().unwrap().to_owned();
                let some = |s: &String| (!s.is_empty()).then(|| s.clone());
                (*ty != 0 || !help.is_empty() || !unit.is_empty())
                    .then(|| exposition::Metadata {
                        family,
                        kind: MetricType::try_from(*ty).unwrap().kind(),
                        help: some(help),
                        unit: some(unit),
                    })
            })
            .filter(|m| families.insert(m.family.clone()))
            .collect();
        prop_assert_eq!(&got.metadata, &metadata);
        let exemplars: Vec<&crate::Exemplar> = v.iter().flat_map(|x| &x.2).collect();
        prop_assert_eq!(got.exemplars.len(), exemplars.len());
        for (g, w) in got.exemplars.iter().zip(exemplars) {
            prop_assert_eq!(&g.series, &w.series);
            prop_assert_eq!(&g.labels, &w.labels);
            prop_assert_eq!(g.timestamp, w.timestamp);
            // prost's derived encoder writes -0.0 as 0.0
            prop_assert!(g.value.to_bits() == w.value.to_bits() || (g.value == 0.0 && w.value == 0.0));
        }
        prop_assert_eq!(got.samples, want.iter().map(|s| s.samples.len()).sum::<usize>());
        prop_assert_eq!(got.exemplars_count, got.exemplars.len());
    }

    /// Damaged or cut requests: no panic, and either an error or a result that is valid.
    #[test]
    fn corrupted_bodies_never_panic(
        v in arb_request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut req = build(&v);
        req.timeseries.extend(histogram_request().timeseries.into_iter().map(|mut t| {
            // histogram_request's refs point into its own table: move them past ours
            let offset = req.symbols.len() as u32 - 1;
            for r in &mut t.labels_refs { if *r != 0 { *r += offset } }
            t
        }));
        req.symbols.extend(histogram_request().symbols.into_iter().skip(1));
        prop_assert!(dec(&req).is_ok());
        let proto = req.encode_to_vec();
        let mut bad = proto.clone();
        for (i, x) in &flips {
            let i = i.index(bad.len());
            bad[i] ^= x;
        }
        for p in [&bad[..], &proto[..cut.index(proto.len())]] {
            if let Ok(d) = decode_proto(p, &Limits::default()) {
                for s in &d.series {
                    prop_assert!(s.labels.validate().is_ok());
                }
                prop_assert_eq!(d.exemplars_count, d.exemplars.len());
            }
            let _ = decode(&snap::raw::Encoder::new().compress_vec(p).unwrap(), &Limits::default());
        }
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&b, &Limits::default());
        let _ = decode_proto(&b, &Limits::default());
    }
}

#[test]
fn many_tiny_messages_are_capped() {
    // 100k empty histograms take 2 bytes each on the wire and far more decoded
    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "h")], &[]);
    t.histograms = vec![Histogram::default(); 100_000];
    let proto = request(sym, vec![t]).encode_to_vec();
    let limits = Limits { max_body_bytes: 1 << 20, max_decompressed_bytes: proto.len() };
    assert!(matches!(
        decode_proto(&proto, &limits),
        Err(Error::RemoteWriteV2DecodedTooLarge { .. })
    ));
}

#[test]
fn created_timestamp_is_checked_not_kept() {
    let mut sym = Symbols::new();
    let mut t = ts(&mut sym, &[("__name__", "c_total")], &[(10, 1.0)]);
    t.created_timestamp = 5;
    let req = request(sym, vec![t]);
    let got = dec(&req).unwrap();
    assert!(same(&got.series, &[series(&[("__name__", "c_total")], &[(10, 1.0)])], false));
    // the same series with created_timestamp as a length-delimited field (6, wire type 2)
    let mut proto = Request { symbols: req.symbols.clone(), timeseries: vec![] }.encode_to_vec();
    let series = [0x0a, 0x02, 0x01, 0x02, 0x32, 0x00];
    proto.extend([0x2a, series.len() as u8]);
    proto.extend(series);
    let e = decode_proto(&proto, &Limits::default()).unwrap_err().to_string();
    assert!(e.starts_with("remote write body: timeseries[0].created_timestamp: "), "{e}");
}
