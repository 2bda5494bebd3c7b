#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use ocelli_model::is_stale_nan;
use proptest::prelude::*;

use super::proto::*;
use super::*;

fn s(v: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.to_owned())) })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value }
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|&(k, v)| kv(k, s(v))).collect()
}

fn number(attributes: Vec<KeyValue>, time_unix_nano: u64, value: Option<Value>) -> NumberDataPoint {
    NumberDataPoint { attributes, time_unix_nano, value, exemplars: vec![], flags: 0 }
}

fn double(attributes: &[(&str, &str)], t_ms: u64, v: f64) -> NumberDataPoint {
    number(attrs(attributes), t_ms * 1_000_000, Some(Value::AsDouble(v)))
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.to_owned(),
        description: String::new(),
        unit: unit.to_owned(),
        data: Some(data),
    }
}

fn gauge(name: &str, unit: &str, data_points: Vec<NumberDataPoint>) -> Metric {
    metric(name, unit, Data::Gauge(Gauge { data_points }))
}

fn sum(
    name: &str,
    unit: &str,
    monotonic: bool,
    t: AggregationTemporality,
    data_points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Sum(Sum { data_points, aggregation_temporality: t as i32, is_monotonic: monotonic }),
    )
}

fn histogram(
    name: &str,
    unit: &str,
    t: AggregationTemporality,
    data_points: Vec<HistogramDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        Data::Histogram(Histogram { data_points, aggregation_temporality: t as i32 }),
    )
}

fn hpoint(
    attributes: &[(&str, &str)],
    t_ms: u64,
    count: u64,
    sum: Option<f64>,
    counts: &[u64],
    bounds: &[f64],
) -> HistogramDataPoint {
    HistogramDataPoint {
        attributes: attrs(attributes),
        time_unix_nano: t_ms * 1_000_000,
        count,
        sum,
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        exemplars: vec![],
        flags: 0,
    }
}

fn resource(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource { attributes }),
        scope_metrics: vec![ScopeMetrics { scope: None, metrics }],
    }
}

fn request(resource_metrics: Vec<ResourceMetrics>) -> Vec<u8> {
    ExportMetricsServiceRequest { resource_metrics }.encode_to_vec()
}

/// One resource without attributes.
fn metrics(metrics: Vec<Metric>) -> Vec<u8> {
    request(vec![resource(vec![], metrics)])
}

/// Decodes `body` and renders its series, one line each: labels, then `value@ms` per sample.
fn render(body: &[u8]) -> String {
    let got = decode(body, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut text = String::new();
    crate::text::render(&got.series, &mut text);
    text
}

/// Decodes `body` and compares against `want`: one line per series (its labels, then
/// `value@ms` per sample), then `rejected N` and one line per rejection if any were.
fn check(body: &[u8], want: &str) {
    let got = decode(body, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut text = String::new();
    crate::text::render(&got.series, &mut text);
    if got.rejected_data_points > 0 {
        text.push_str(&format!("rejected {}\n", got.rejected_data_points));
        for r in &got.rejections {
            text.push_str(&format!("{r}\n"));
        }
    }
    crate::text::assert_golden(&text, want, "(see the case)");
}

#[test]
fn names_and_units() {
    use AggregationTemporality::*;
    let p = || vec![double(&[], 1, 1.0)];
    #[rustfmt::skip]
    let cases: Vec<(Metric, &str)> = vec![
        (gauge("process.memory.usage", "By", p()), "process_memory_usage_bytes{} 1.0@1"),
        (gauge("system.cpu.utilization", "1", p()), "system_cpu_utilization_ratio{} 1.0@1"),
        (gauge("hit_ratio", "1", p()), "hit_ratio{} 1.0@1"),
        (sum("http.server.requests", "{request}", true, Cumulative, p()), "http_server_requests_total{} 1.0@1"),
        (sum("requests_total", "s", true, Cumulative, p()), "requests_seconds_total{} 1.0@1"),
        (sum("io.time", "s", true, Cumulative, p()), "io_time_seconds_total{} 1.0@1"),
        (sum("errors", "1", true, Cumulative, p()), "errors_total{} 1.0@1"),
        // non-monotonic: a gauge, without _total and without _ratio
        (sum("queue.size", "1", false, Cumulative, p()), "queue_size{} 1.0@1"),
        (sum("db.connections", "{connection}", false, Cumulative, p()), "db_connections{} 1.0@1"),
        (gauge("net.io", "By/s", p()), "net_io_bytes_per_second{} 1.0@1"),
        (gauge("net.packets", "{packet}/s", p()), "net_packets_per_second{} 1.0@1"),
        (gauge("throughput_bytes", "By/s", p()), "throughput_bytes_per_second{} 1.0@1"),
        (gauge("rate_bytes_per_second", "By/s", p()), "rate_bytes_per_second{} 1.0@1"),
        (gauge("speed", "m/h", p()), "speed_meters_per_hour{} 1.0@1"),
        (gauge("x", "/s", p()), "x_per_second{} 1.0@1"),
        (gauge("request.duration_seconds", "s", p()), "request_duration_seconds{} 1.0@1"),
        (gauge("temp", "Cel", p()), "temp_celsius{} 1.0@1"),
        (gauge("disk", "KiBy", p()), "disk_kibibytes{} 1.0@1"),
        (gauge("load", "%", p()), "load_percent{} 1.0@1"),
        // unknown units are kept, sanitised
        (gauge("x", "foo.bar", p()), "x_foo_bar{} 1.0@1"),
        (gauge("x", " s ", p()), "x_seconds{} 1.0@1"),
        // sanitising: runs of invalid characters and underscores make one _; colons stay
        (gauge("a..b__c--d", "", p()), "a_b_c_d{} 1.0@1"),
        (gauge("_private.", "", p()), "private{} 1.0@1"),
        (gauge("job:rate5m", "", p()), "job:rate5m{} 1.0@1"),
        (gauge("1m.load", "", p()), "_1m_load{} 1.0@1"),
        (gauge("héllo wörld", "", p()), "h_llo_w_rld{} 1.0@1"),
        (gauge("...", "s", p()), "seconds{} 1.0@1"),
        (sum("", "", true, Cumulative, p()), "total{} 1.0@1"),
    ];
    for (m, want) in cases {
        let name = m.name.clone();
        let body = metrics(vec![m]);
        assert_eq!(render(&body).trim_end(), want, "metric {name:?}");
    }
}

#[test]
fn number_values_and_timestamps() {
    use AggregationTemporality::*;
    let stale = NumberDataPoint { flags: FLAG_NO_RECORDED_VALUE, ..double(&[("a", "1")], 3, 9.0) };
    let body = metrics(vec![
        gauge(
            "g",
            "",
            vec![
                double(&[("a", "1")], 1, 0.5),
                number(attrs(&[("a", "1")]), 2_999_999, Some(Value::AsInt(-7))),
                stale,
                number(attrs(&[("a", "2")]), 0, None),
                double(&[("a", "2")], 5, f64::NEG_INFINITY),
            ],
        ),
        sum(
            "c",
            "",
            true,
            Cumulative,
            vec![number(vec![], u64::MAX, Some(Value::AsInt(i64::MAX)))],
        ),
    ]);
    check(
        &body,
        r#"
        g{a="1"} 0.5@1 -7.0@2 NaN@3
        g{a="2"} 0.0@0 -inf@5
        c_total{} 9.223372036854776e18@18446744073709"#,
    );
    let got = decode(&body, &Limits::default()).unwrap();
    assert!(is_stale_nan(got.series[0].samples[2].v));
}

#[test]
fn histograms_and_summaries() {
    use AggregationTemporality::*;
    let mut stale = hpoint(&[("x", "1")], 20, 0, Some(0.0), &[], &[]);
    stale.flags = FLAG_NO_RECORDED_VALUE;
    let body = metrics(vec![
        histogram(
            "rpc.duration",
            "ms",
            Cumulative,
            vec![
                hpoint(
                    &[("method", "get"), ("le", "ignored")],
                    10,
                    10,
                    Some(5.5),
                    &[1, 2, 3, 4],
                    &[0.005, 0.1, 1.0],
                ),
                hpoint(&[("x", "1")], 10, 3, None, &[], &[]),
                stale,
                hpoint(&[], 30, 2, Some(-1.0), &[2, 0], &[-5.0]),
            ],
        ),
        metric(
            "latency",
            "s",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attrs(&[("quantile", "ignored"), ("path", "/")]),
                    time_unix_nano: 7_000_000,
                    count: 4,
                    sum: 2.5,
                    quantile_values: vec![
                        ValueAtQuantile { quantile: 0.5, value: 0.25 },
                        ValueAtQuantile { quantile: 0.99, value: 1.5 },
                        ValueAtQuantile { quantile: 1.0, value: 2.0 },
                    ],
                    flags: 0,
                }],
            }),
        ),
    ]);
    check(
        &body,
        r#"
        rpc_duration_milliseconds_bucket{le="0.005", method="get"} 1.0@10
        rpc_duration_milliseconds_bucket{le="0.1", method="get"} 3.0@10
        rpc_duration_milliseconds_bucket{le="1", method="get"} 6.0@10
        rpc_duration_milliseconds_bucket{le="+Inf", method="get"} 10.0@10
        rpc_duration_milliseconds_sum{le="ignored", method="get"} 5.5@10
        rpc_duration_milliseconds_count{le="ignored", method="get"} 10.0@10
        rpc_duration_milliseconds_bucket{le="+Inf", x="1"} 3.0@10 NaN@20
        rpc_duration_milliseconds_count{x="1"} 3.0@10 NaN@20
        rpc_duration_milliseconds_sum{x="1"} NaN@20
        rpc_duration_milliseconds_bucket{le="-5"} 2.0@30
        rpc_duration_milliseconds_bucket{le="+Inf"} 2.0@30
        rpc_duration_milliseconds_sum{} -1.0@30
        rpc_duration_milliseconds_count{} 2.0@30
        latency_seconds{path="/", quantile="0.5"} 0.25@7
        latency_seconds{path="/", quantile="0.99"} 1.5@7
        latency_seconds{path="/", quantile="1"} 2.0@7
        latency_seconds_sum{path="/", quantile="ignored"} 2.5@7
        latency_seconds_count{path="/", quantile="ignored"} 4.0@7"#,
    );
    let got = decode(&body, &Limits::default()).unwrap();
    assert!(got.series[6..9].iter().all(|s| is_stale_nan(s.samples.last().unwrap().v)));
}

#[test]
fn resources_become_job_instance_and_target_info() {
    let body = request(vec![
        resource(
            vec![
                kv("service.name", s("checkout")),
                kv("service.namespace", s("shop")),
                kv("service.instance.id", s("pod-1")),
                kv("host.name", s("node-a")),
                kv("host.cpus", Some(AnyValue { value: Some(any_value::Value::IntValue(8)) })),
            ],
            vec![
                gauge("up", "", vec![double(&[("job", "mine"), ("instance", "mine")], 5, 1.0)]),
                gauge("temp", "", vec![double(&[], 9, 20.0), double(&[], 7, 21.0)]),
            ],
        ),
        // no namespace; no other attributes: no target_info
        resource(
            vec![kv("service.name", s("cart"))],
            vec![gauge("up", "", vec![double(&[], 5, 1.0)])],
        ),
        // no service.name: points keep their job; service.* attributes never go to target_info
        resource(
            vec![kv("service.namespace", s("ns")), kv("cloud.region", s("eu"))],
            vec![gauge("up", "", vec![double(&[("job", "own")], 6, 1.0)])],
        ),
        // attributes but no points: no target_info
        resource(vec![kv("host.name", s("idle"))], vec![]),
    ]);
    check(
        &body,
        r#"
        up{instance="pod-1", job="shop/checkout"} 1.0@5
        temp{instance="pod-1", job="shop/checkout"} 20.0@9 21.0@7
        target_info{host_cpus="8", host_name="node-a", instance="pod-1", job="shop/checkout"} 1.0@9
        up{job="cart"} 1.0@5
        up{job="own"} 1.0@6
        target_info{cloud_region="eu"} 1.0@6"#,
    );
}

#[test]
fn attributes() {
    use any_value::Value as V;
    let any = |v: V| Some(AnyValue { value: Some(v) });
    let point = NumberDataPoint {
        attributes: vec![
            kv("a_b", s("2")),
            kv("a.b", s("1")),
            kv("a-b", s("")),
            kv("1st", s("x")),
            kv("__name__", s("n")),
            kv("http.method", s("GET")),
            kv("ok", any(V::BoolValue(true))),
            kv("n", any(V::IntValue(-3))),
            kv("d", any(V::DoubleValue(1.5))),
            kv("nan", any(V::DoubleValue(f64::NAN))),
            kv("inf", any(V::DoubleValue(f64::NEG_INFINITY))),
            kv("bytes", any(V::BytesValue(b"hi!".to_vec()))),
            kv(
                "arr",
                any(V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue { value: Some(V::IntValue(1)) },
                        AnyValue { value: Some(V::StringValue("x".into())) },
                        AnyValue { value: None },
                        AnyValue { value: Some(V::DoubleValue(f64::INFINITY)) },
                    ],
                })),
            ),
            kv(
                "map",
                any(V::KvlistValue(KeyValueList {
                    values: vec![kv("k", any(V::BoolValue(false)))],
                })),
            ),
            kv("empty", None),
        ],
        ..double(&[], 1, 1.0)
    };
    check(
        &metrics(vec![gauge("m", "", vec![point])]),
        r#"
        m{_name_="n", a_b="1;2", arr="[1,\"x\",null,\"Infinity\"]", bytes="aGkh", d="1.5", http_method="GET", inf="-Infinity", key_1st="x", map="{\"k\":false}", n="-3", nan="NaN", ok="true"} 1.0@1"#,
    );
}

#[test]
fn unsupported_points_are_dropped_and_reported() {
    use AggregationTemporality::*;
    let body = metrics(vec![
        sum("delta.requests", "", true, Delta, vec![double(&[], 1, 1.0), double(&[], 2, 1.0)]),
        gauge("kept", "", vec![double(&[], 1, 1.0)]),
        histogram("h", "", Unspecified, vec![hpoint(&[], 1, 1, None, &[], &[])]),
        metric(
            "e",
            "",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {}; 3],
                aggregation_temporality: Cumulative as i32,
            }),
        ),
        // no points: nothing to report
        sum("empty.delta", "", true, Delta, vec![]),
        // a delta metric is dropped before its name is looked at
        sum("...", "", true, Delta, vec![double(&[], 1, 1.0)]),
    ]);
    check(
        &body,
        r#"
        kept{} 1.0@1
        rejected 7
        metric "delta.requests" (resource_metrics[0].scope_metrics[0].metrics[0]): 2 data points dropped: delta aggregation temporality is not supported; configure the exporter for cumulative temporality
        metric "h" (resource_metrics[0].scope_metrics[0].metrics[2]): 1 data points dropped: the aggregation temporality is unspecified
        metric "e" (resource_metrics[0].scope_metrics[0].metrics[3]): 3 data points dropped: exponential histograms are not supported
        metric "..." (resource_metrics[0].scope_metrics[0].metrics[5]): 1 data points dropped: delta aggregation temporality is not supported; configure the exporter for cumulative temporality"#,
    );
    let got = decode(&body, &Limits::default()).unwrap();
    let ps = got.partial_success().unwrap();
    assert_eq!(ps.rejected_data_points, 7);
    assert_eq!(ps.error_message, got.rejections.join("; "));
    // nothing dropped: no partial success
    assert_eq!(decode(&metrics(vec![]), &Limits::default()).unwrap().partial_success(), None);

    // many metrics dropped: the first ten are named, the rest counted
    let many = (0..13).map(|i| sum(&format!("d{i}"), "", true, Delta, vec![double(&[], 1, 1.0)]));
    let got = decode(&metrics(many.collect()), &Limits::default()).unwrap();
    assert_eq!(got.rejected_data_points, 13);
    assert_eq!(got.rejections.len(), 11);
    assert_eq!(got.rejections[10], "and 3 more metrics");
}

#[test]
fn empty_and_typeless() {
    check(&request(vec![]), "");
    check(&[], "");
    let typeless =
        Metric { name: "m".into(), description: String::new(), unit: String::new(), data: None };
    check(&metrics(vec![typeless]), "");
    check(&request(vec![ResourceMetrics { resource: None, scope_metrics: vec![] }]), "");
}

#[test]
fn metadata_per_family() {
    use AggregationTemporality::*;
    let p = || vec![double(&[], 1, 1.0)];
    let described = |mut m: Metric, d: &str| {
        m.description = d.to_owned();
        m
    };
    let body = request(vec![
        resource(
            vec![kv("service.name", s("a"))],
            vec![
                described(gauge("process.memory.usage", "By", p()), "Resident memory."),
                gauge("cpu.utilization", "1", p()),
                sum("http.requests", "{request}", true, Cumulative, p()),
                sum("io", "By", true, Cumulative, p()),
                sum("queue", "", false, Cumulative, p()),
                histogram("rpc.duration", "ms", Cumulative, vec![]),
                metric("lat", "s", Data::Summary(Summary { data_points: vec![] })),
                gauge("net.io", "By/s", p()),
                gauge("packets", "{packet}/s", p()),
                // dropped or typeless: no family
                sum("delta", "s", true, Delta, p()),
                Metric { name: "t".into(), description: "d".into(), unit: "s".into(), data: None },
            ],
        ),
        // the same family again: the first description stays
        resource(vec![], vec![described(gauge("process.memory.usage", "By", p()), "other")]),
    ]);
    let got = decode(&body, &Limits::default()).unwrap();
    let text: Vec<String> = got
        .metadata
        .iter()
        .map(|m| format!("{} {} {:?} {:?}", m.family, m.kind, m.help, m.unit))
        .collect();
    assert_eq!(
        text,
        [
            r#"process_memory_usage_bytes gauge Some("Resident memory.") Some("bytes")"#,
            "cpu_utilization_ratio gauge None None",
            "http_requests_total counter None None",
            r#"io_bytes_total counter None Some("bytes")"#,
            "queue gauge None None",
            r#"rpc_duration_milliseconds histogram None Some("milliseconds")"#,
            r#"lat_seconds summary None Some("seconds")"#,
            r#"net_io_bytes_per_second gauge None Some("bytes_per_second")"#,
            r#"packets_per_second gauge None Some("per_second")"#,
        ]
    );
}

fn exemplar(
    attributes: &[(&str, &str)],
    t_ns: u64,
    value: Option<ExemplarValue>,
    trace_id: &[u8],
    span_id: &[u8],
) -> proto::Exemplar {
    proto::Exemplar {
        filtered_attributes: attrs(attributes),
        time_unix_nano: t_ns,
        value,
        span_id: span_id.to_vec(),
        trace_id: trace_id.to_vec(),
    }
}

/// Renders exemplars one a line: series, labels, `value@ms`.
fn render_exemplars(got: &Decoded) -> String {
    got.exemplars
        .iter()
        .map(|e| format!("{} {} {}@{}\n", e.series, e.labels, e.value, e.timestamp))
        .collect()
}

#[test]
fn exemplars_attach_to_the_series_their_point_wrote() {
    use AggregationTemporality::*;
    use ExemplarValue::*;
    let trace: Vec<u8> = (0..16).collect();
    let span = [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff];
    let mut g = double(&[("a", "1")], 1, 1.0);
    g.exemplars = vec![
        exemplar(
            &[("user.id", "7"), ("trace_id", "spoof")],
            2_999_999,
            Some(AsDouble(0.5)),
            &trace,
            &span,
        ),
        exemplar(&[], 0, None, &[], &[]),
    ];
    let mut c = number(vec![], 5_000_000, Some(Value::AsInt(3)));
    c.exemplars = vec![exemplar(&[("trace.id", "x")], 4_000_000, Some(AsInt(-2)), &[], &[0xab])];
    let mut stale = double(&[("a", "2")], 6, 0.0);
    stale.flags = FLAG_NO_RECORDED_VALUE;
    stale.exemplars = vec![exemplar(&[], 6_000_000, Some(AsDouble(1.0)), &[], &[])];
    let mut h = hpoint(&[("m", "get")], 10, 6, Some(3.0), &[1, 2, 3], &[0.1, 1.0]);
    h.exemplars = [0.05, 0.1, 0.5, 1.0, 5.0, f64::NAN, f64::NEG_INFINITY]
        .iter()
        .map(|v| exemplar(&[], 9_000_000, Some(AsDouble(*v)), &[], &[]))
        .collect();
    let mut bare = hpoint(&[], 11, 2, None, &[], &[]);
    bare.exemplars = vec![exemplar(&[], 11_000_000, Some(AsDouble(0.0)), &[], &[])];
    let body = metrics(vec![
        gauge("g", "", vec![g, stale]),
        sum("c", "", true, Cumulative, vec![c]),
        histogram("h", "s", Cumulative, vec![h, bare]),
    ]);
    let got = decode(&body, &Limits::default()).unwrap();
    crate::text::assert_golden(
        &render_exemplars(&got),
        r#"
        g{a="1"} {span_id="deadbeef000102ff", trace_id="000102030405060708090a0b0c0d0e0f", user_id="7"} 0.5@2
        g{a="1"} {} 0@0
        g{a="2"} {} 1@6
        c_total{} {span_id="ab", trace_id="x"} -2@4
        h_seconds_bucket{le="0.1", m="get"} {} 0.05@9
        h_seconds_bucket{le="0.1", m="get"} {} 0.1@9
        h_seconds_bucket{le="1", m="get"} {} 0.5@9
        h_seconds_bucket{le="1", m="get"} {} 1@9
        h_seconds_bucket{le="+Inf", m="get"} {} 5@9
        h_seconds_bucket{le="+Inf", m="get"} {} NaN@9
        h_seconds_bucket{le="0.1", m="get"} {} -inf@9
        h_seconds_bucket{le="+Inf"} {} 0@11"#,
        "exemplars",
    );
    // each exemplar's series is one the request wrote
    for e in &got.exemplars {
        assert!(got.series.iter().any(|s| s.labels == e.series), "{}", e.series);
    }

    // an exemplar attribute with no valid character is an error, named by its path
    let mut p = double(&[], 1, 1.0);
    p.exemplars = vec![
        exemplar(&[], 0, None, &[], &[]),
        exemplar(&[("ok", "1"), ("..", "x")], 0, None, &[], &[]),
    ];
    assert_eq!(
        error(&metrics(vec![gauge("g", "", vec![p.clone()])]), &Limits::default()),
        r#"resource_metrics[0].scope_metrics[0].metrics[0].data_points[0].exemplars[1].filtered_attributes[1]: attribute name ".." has no character valid in a label name"#
    );
    let mut hp = hpoint(&[], 1, 1, None, &[], &[]);
    hp.exemplars = p.exemplars;
    assert_eq!(
        error(&metrics(vec![histogram("h", "", Cumulative, vec![hp])]), &Limits::default()),
        r#"resource_metrics[0].scope_metrics[0].metrics[0].data_points[0].exemplars[1].filtered_attributes[1]: attribute name ".." has no character valid in a label name"#
    );

    // exemplars count against the decoded-size limit
    let big = "x".repeat(1000);
    let mut p = double(&[], 1, 1.0);
    p.exemplars = vec![exemplar(&[("a", &big)], 0, None, &[], &[]); 2000];
    let body = metrics(vec![gauge("g", "", vec![p])]);
    assert!(body.len() < 2_100_000, "{}", body.len());
    let limits = Limits { max_decoded_bytes: 1 << 20, ..Limits::default() };
    assert_eq!(
        error(&body, &limits),
        "OTLP request: decoded series take more than the limit of 1048576 bytes"
    );
}

fn error(body: &[u8], limits: &Limits) -> String {
    match decode(body, limits) {
        Ok(d) => panic!("decoded to {d:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors() {
    use AggregationTemporality::*;
    let l = Limits::default();
    let h = |counts: &[u64], bounds: &[f64]| {
        metrics(vec![
            gauge("ok", "", vec![double(&[], 1, 1.0)]),
            histogram(
                "rpc",
                "s",
                Cumulative,
                vec![hpoint(&[], 1, 1, None, &[], &[]), hpoint(&[], 1, 1, None, counts, bounds)],
            ),
        ])
    };
    #[rustfmt::skip]
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0x0a, 0x05, 0x0a], "OTLP request: failed to decode Protobuf message: ExportMetricsServiceRequest.resource_metrics: buffer underflow"),
        (vec![0xff], "OTLP request: failed to decode Protobuf message: invalid varint"),
        (h(&[1, 2], &[1.0, 2.0]), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1]: histogram "rpc_seconds" has 2 bucket_counts and 2 explicit_bounds (want no bucket_counts, or one more than explicit_bounds)"#),
        (h(&[1, 2, 3], &[]), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1]: histogram "rpc_seconds" has 3 bucket_counts and 0 explicit_bounds (want no bucket_counts, or one more than explicit_bounds)"#),
        (h(&[1, 1, 1], &[2.0, 1.0]), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1]: histogram "rpc_seconds": explicit_bounds must be strictly increasing, found 2 then 1"#),
        (h(&[1, 1, 1], &[1.0, 1.0]), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1]: histogram "rpc_seconds": explicit_bounds must be strictly increasing, found 1 then 1"#),
        (h(&[1, 1, 1], &[1.0, f64::NAN]), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1]: histogram "rpc_seconds": explicit_bounds[1] is NaN (bounds must be finite; the +Inf bucket is implicit)"#),
        (h(&[1, 1], &[f64::INFINITY]), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1]: histogram "rpc_seconds": explicit_bounds[0] is inf (bounds must be finite; the +Inf bucket is implicit)"#),
        (metrics(vec![gauge("ok", "", vec![]), gauge("...", "", vec![])]), r#"resource_metrics[0].scope_metrics[0].metrics[1]: metric name "..." has no character valid in a metric name"#),
        (metrics(vec![gauge("m", "", vec![double(&[], 1, 1.0), double(&[("a", "1"), ("._", "x")], 1, 1.0)])]), r#"resource_metrics[0].scope_metrics[0].metrics[0].data_points[1].attributes[1]: attribute name "._" has no character valid in a label name"#),
        (metrics(vec![gauge("m", "", vec![double(&[("", "x")], 1, 1.0)])]), r#"resource_metrics[0].scope_metrics[0].metrics[0].data_points[0].attributes[0]: attribute name "" has no character valid in a label name"#),
        (request(vec![resource(vec![], vec![]), resource(vec![kv("service.name", s("a")), kv("-", s("x"))], vec![])]), r#"resource_metrics[1].resource.attributes[0]: attribute name "-" has no character valid in a label name"#),
    ];
    for (body, want) in cases {
        assert_eq!(error(&body, &l), want);
    }
}

#[test]
fn limits() {
    use AggregationTemporality::*;
    let body = metrics(vec![gauge("m", "", vec![double(&[], 1, 1.0)])]);
    assert_eq!(
        error(&body, &Limits { max_body_bytes: body.len() - 1, ..Limits::default() }),
        format!("OTLP request is {} bytes, over the limit of {} bytes", body.len(), body.len() - 1)
    );
    assert!(decode(&body, &Limits { max_body_bytes: body.len(), ..Limits::default() }).is_ok());

    // 1000 buckets with a 1 KB attribute: a small body, a large decoded size
    let big = "x".repeat(1000);
    let bounds: Vec<f64> = (0..1000).map(f64::from).collect();
    let point = hpoint(&[("a", &big)], 1, 1, None, &[0; 1001], &bounds);
    let body = metrics(vec![histogram("h", "", Cumulative, vec![point])]);
    assert!(body.len() < 20_000, "{}", body.len());
    let limits = Limits { max_decoded_bytes: 1 << 20, ..Limits::default() };
    assert_eq!(
        error(&body, &limits),
        "OTLP request: decoded series take more than the limit of 1048576 bytes"
    );
    assert_eq!(decode(&body, &Limits::default()).unwrap().series.len(), 1002);
}

/// Pins the field numbers and wire types against the `.proto` files, byte by byte.
#[test]
fn wire_bytes_match_the_proto() {
    #[rustfmt::skip]
    let number: &[u8] = &[
        0x0a, 0x32,                                         // request.resource_metrics (1), 50 bytes
          0x0a, 0x0a,                                       //   resource (1), 10 bytes
            0x0a, 0x08,                                     //     attributes (1), 8 bytes
              0x0a, 0x01, b'k',                             //       key (1)
              0x12, 0x03, 0x0a, 0x01, b'v',                 //       value (2): string_value (1)
          0x12, 0x24,                                       //   scope_metrics (2), 36 bytes
            0x12, 0x22,                                     //     metrics (2), 34 bytes
              0x0a, 0x01, b'm',                             //       name (1)
              0x1a, 0x01, b's',                             //       unit (3)
              0x3a, 0x1a,                                   //       sum (7), 26 bytes
                0x0a, 0x14,                                 //         data_points (1), 20 bytes
                  0x19, 0x80, 0x84, 0x1e, 0, 0, 0, 0, 0,    //           time_unix_nano (3) fixed64 2e6
                  0x31, 0x05, 0, 0, 0, 0, 0, 0, 0,          //           as_int (6) sfixed64 5
                  0x40, 0x00,                               //           flags (8)
                0x10, 0x02,                                 //         aggregation_temporality (2) CUMULATIVE
                0x18, 0x01,                                 //         is_monotonic (3)
    ];
    let text = render(number);
    assert_eq!(text, "m_seconds_total{} 5.0@2\ntarget_info{k=\"v\"} 1.0@2\n");

    #[rustfmt::skip]
    let hist: &[u8] = &[
        0x0a, 0x4d,                                          // resource_metrics (1), 77 bytes
          0x12, 0x4b,                                        //   scope_metrics (2), 75 bytes
            0x12, 0x49,                                      //     metrics (2), 73 bytes
              0x0a, 0x01, b'h',                              //       name (1)
              0x4a, 0x44,                                    //       histogram (9), 68 bytes
                0x0a, 0x40,                                  //         data_points (1), 64 bytes
                  0x4a, 0x05, 0x0a, 0x01, b'a',              //           attributes (9): key (1),
                    0x12, 0x00,                              //             value (2): empty, so no label
                  0x19, 0x40, 0x42, 0x0f, 0, 0, 0, 0, 0,     //           time_unix_nano (3) 1e6
                  0x21, 0x03, 0, 0, 0, 0, 0, 0, 0,           //           count (4) fixed64 3
                  0x29, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f,        //           sum (5) double 1.5
                  0x32, 0x10,                                //           bucket_counts (6), packed
                    0x01, 0, 0, 0, 0, 0, 0, 0,
                    0x02, 0, 0, 0, 0, 0, 0, 0,
                  0x3a, 0x08, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,  //           explicit_bounds (7), packed: 1.0
                  0x50, 0x00,                                //           flags (10)
                0x10, 0x02,                                  //         aggregation_temporality (2)
    ];
    let text = render(hist);
    crate::text::assert_golden(
        &text,
        r#"
        h_bucket{le="1"} 1.0@1
        h_bucket{le="+Inf"} 3.0@1
        h_sum{} 1.5@1
        h_count{} 3.0@1"#,
        "histogram bytes",
    );

    #[rustfmt::skip]
    let summary: &[u8] = &[
        0x0a, 0x31,                                          // resource_metrics (1), 49 bytes
          0x12, 0x2f,                                        //   scope_metrics (2), 47 bytes
            0x12, 0x2d,                                      //     metrics (2), 45 bytes
              0x0a, 0x01, b'q',                              //       name (1)
              0x5a, 0x28,                                    //       summary (11), 40 bytes
                0x0a, 0x26,                                  //         data_points (1), 38 bytes
                  0x21, 0x02, 0, 0, 0, 0, 0, 0, 0,           //           count (4) fixed64 2
                  0x29, 0, 0, 0, 0, 0, 0, 0x10, 0x40,        //           sum (5) double 4.0
                  0x32, 0x12,                                //           quantile_values (6)
                    0x09, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f,      //             quantile (1) 0.5
                    0x11, 0, 0, 0, 0, 0, 0, 0x08, 0x40,      //             value (2) 3.0
    ];
    let text = render(summary);
    assert_eq!(text, "q{quantile=\"0.5\"} 3.0@0\nq_sum{} 4.0@0\nq_count{} 2.0@0\n");
}

#[test]
fn response_and_status_bytes() {
    assert!(ExportMetricsServiceResponse { partial_success: None }.encode_to_vec().is_empty());
    let r = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: 2,
            error_message: "x".into(),
        }),
    };
    assert_eq!(r.encode_to_vec(), [0x0a, 0x05, 0x08, 0x02, 0x12, 0x01, b'x']);
    let st = Status { code: 3, message: "bad".into() };
    assert_eq!(st.encode_to_vec(), [0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd']);
}

#[test]
fn encode_refuses_timestamps_it_cannot_write() {
    let series = |t| DecodedSeries {
        labels: Labels::from_pairs([("__name__", "m")]).unwrap(),
        samples: vec![model::Sample::new(t, 1.0)],
    };
    assert!(encode(&[series(MAX_ENCODABLE_MS)]).is_ok());
    assert_eq!(
        encode(&[series(-1)]).unwrap_err().to_string(),
        "timestamp -1 ms cannot be written as OTLP nanoseconds (0 to 18446744073709 ms)"
    );
    assert!(encode(&[series(MAX_ENCODABLE_MS + 1)]).is_err());
}

/// Series in the form `decode` gives: names that sanitising leaves alone.
fn arb_series() -> impl Strategy<Value = DecodedSeries> {
    let value = prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        Just(STALE_NAN),
        Just(-0.0),
        any::<f64>(),
    ];
    crate::series::testing::arb_series(
        "[a-zA-Z:][a-zA-Z0-9:]{0,6}(_[a-zA-Z0-9:]{1,4}){0,2}",
        "_?[a-zA-Z][a-zA-Z0-9]{0,4}(_[a-zA-Z0-9]{1,3}){0,2}",
        0..=MAX_ENCODABLE_MS,
        value,
    )
}

fn same(got: &[DecodedSeries], want: &[DecodedSeries]) -> bool {
    crate::series::testing::same(got, want, false)
}

fn arb_value() -> impl Strategy<Value = Option<AnyValue>> {
    use any_value::Value as V;
    let leaf = prop_oneof![
        "[a-z;]{0,3}".prop_map(V::StringValue),
        any::<bool>().prop_map(V::BoolValue),
        any::<i64>().prop_map(V::IntValue),
        any::<f64>().prop_map(V::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(V::BytesValue),
    ];
    let value = leaf.prop_recursive(2, 6, 3, |inner| {
        prop::collection::vec(inner.prop_map(|v| AnyValue { value: Some(v) }), 0..3)
            .prop_map(|values| V::ArrayValue(ArrayValue { values }))
    });
    prop::option::of(value.prop_map(|v| AnyValue { value: Some(v) }))
}

fn arb_attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        ("[a-c._1é-]{1,4}|service\\.(name|namespace|instance\\.id)|job|le", arb_value())
            .prop_map(|(key, value)| KeyValue { key, value }),
        0..3,
    )
}

/// Exemplars with odd attributes, either value type or none, and ids of any length.
fn arb_exemplars() -> impl Strategy<Value = Vec<proto::Exemplar>> {
    let value = prop_oneof![
        any::<f64>().prop_map(ExemplarValue::AsDouble),
        (-20..20i64).prop_map(ExemplarValue::AsInt),
        (-12.0..12.0f64).prop_map(ExemplarValue::AsDouble),
    ];
    let id = prop::collection::vec(any::<u8>(), 0..3);
    let exemplar = (arb_attrs(), any::<u64>(), prop::option::of(value), id.clone(), id).prop_map(
        |(filtered_attributes, time_unix_nano, value, span_id, trace_id)| proto::Exemplar {
            filtered_attributes,
            time_unix_nano,
            value,
            span_id,
            trace_id,
        },
    );
    prop::collection::vec(exemplar, 0..2)
}

/// Any request the decoder might see from a client: odd names and units, every kind of
/// metric, both temporalities, stale flags, wrong bucket counts now and then.
fn arb_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let t = 0..u64::MAX;
    let value =
        prop_oneof![any::<f64>().prop_map(Value::AsDouble), any::<i64>().prop_map(Value::AsInt)];
    let number = (arb_attrs(), t.clone(), prop::option::of(value), arb_exemplars(), 0..3u32)
        .prop_map(|(attributes, time_unix_nano, value, exemplars, flags)| NumberDataPoint {
            attributes,
            time_unix_nano,
            value,
            exemplars,
            flags,
        })
        .boxed();
    let hpoint = (
        arb_attrs(),
        t.clone(),
        any::<u64>(),
        prop::option::of(any::<f64>()),
        prop::collection::vec(any::<u64>(), 0..4),
        prop::collection::vec(-10.0..10.0f64, 0..3),
        arb_exemplars(),
        0..2u32,
    )
        .prop_map(
            |(
                attributes,
                time_unix_nano,
                count,
                sum,
                bucket_counts,
                mut bounds,
                exemplars,
                flags,
            )| {
                bounds.sort_by(f64::total_cmp);
                HistogramDataPoint {
                    attributes,
                    time_unix_nano,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds: bounds,
                    exemplars,
                    flags,
                }
            },
        );
    let spoint = (
        arb_attrs(),
        t,
        any::<u64>(),
        any::<f64>(),
        prop::collection::vec((0.0..=1.0f64, any::<f64>()), 0..3),
    )
        .prop_map(|(attributes, time_unix_nano, count, sum, qs)| SummaryDataPoint {
            attributes,
            time_unix_nano,
            count,
            sum,
            quantile_values: qs
                .into_iter()
                .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                .collect(),
            flags: 0,
        });
    let temporality = 0..3i32;
    let data = prop_oneof![
        prop::collection::vec(number.clone(), 0..3)
            .prop_map(|data_points| Data::Gauge(Gauge { data_points })),
        (prop::collection::vec(number, 0..3), temporality.clone(), any::<bool>()).prop_map(
            |(data_points, t, m)| {
                Data::Sum(Sum { data_points, aggregation_temporality: t, is_monotonic: m })
            }
        ),
        (prop::collection::vec(hpoint, 0..3), temporality).prop_map(|(data_points, t)| {
            Data::Histogram(Histogram { data_points, aggregation_temporality: t })
        }),
        prop::collection::vec(spoint, 0..3)
            .prop_map(|data_points| Data::Summary(Summary { data_points })),
        (0..3usize).prop_map(|n| Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {}; n],
            aggregation_temporality: 2,
        })),
    ];
    let unit =
        prop_oneof![Just(""), Just("1"), Just("s"), Just("By/s"), Just("{x}"), Just("a.b/c")];
    let metric = ("[a-c._1 :-]{0,6}", "[a-z]{0,2}", unit, prop::option::of(data)).prop_map(
        |(name, description, unit, data)| Metric { name, description, unit: unit.to_owned(), data },
    );
    let rm = (arb_attrs(), prop::collection::vec(metric, 0..4))
        .prop_map(|(attributes, metrics)| resource(attributes, metrics));
    prop::collection::vec(rm, 0..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

/// What must hold for every body that decodes: valid, distinct label sets, no empty series,
/// and decoding what [`encode`] makes of them gives them back.
fn check_invariants(got: &Decoded) -> Result<(), TestCaseError> {
    let mut seen = std::collections::HashSet::new();
    for s in &got.series {
        prop_assert!(s.labels.validate().is_ok(), "{}", s.labels);
        prop_assert!(!s.samples.is_empty(), "{}", s.labels);
        prop_assert!(seen.insert(s.labels.clone()), "{} twice", s.labels);
    }
    prop_assert_eq!(got.rejected_data_points == 0, got.rejections.is_empty());
    for e in &got.exemplars {
        prop_assert!(seen.contains(&e.series), "exemplar of {} with no such series", e.series);
        for l in e.labels.iter() {
            prop_assert!(
                model::is_valid_label_name(&l.name) && !l.name.starts_with("__"),
                "{}",
                e.labels
            );
            prop_assert!(!l.value.is_empty(), "{}", e.labels);
        }
    }
    let mut families = std::collections::HashSet::new();
    for m in &got.metadata {
        prop_assert!(families.insert(&m.family), "metadata of {} twice", m.family);
    }
    let again = decode(&encode(&got.series).unwrap(), &Limits::default()).unwrap();
    prop_assert!(same(&again.series, &got.series), "{:?}\n{:?}", got.series, again.series);
    Ok(())
}

proptest! {
    #[test]
    fn random_series_round_trip(mut want in prop::collection::vec(arb_series(), 0..6)) {
        want.sort_by(|a, b| a.labels.cmp(&b.labels));
        want.dedup_by(|a, b| a.labels == b.labels);
        let got = decode(&encode(&want).unwrap(), &Limits::default()).unwrap();
        prop_assert_eq!(got.rejected_data_points, 0);
        prop_assert!(same(&got.series, &want), "got {:?}", got.series);
    }

    #[test]
    fn random_requests_decode_to_valid_series(req in arb_request()) {
        if let Ok(got) = decode(&req.encode_to_vec(), &Limits::default()) {
            check_invariants(&got)?;
        }
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(got) = decode(&b, &Limits::default()) {
            check_invariants(&got)?;
        }
    }

    #[test]
    fn corrupted_bodies_never_panic(
        req in arb_request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut body = req.encode_to_vec();
        if body.is_empty() {
            return Ok(());
        }
        for (i, x) in &flips {
            let i = i.index(body.len());
            body[i] ^= x;
        }
        if let Ok(got) = decode(&body, &Limits::default()) {
            check_invariants(&got)?;
        }
    }
}

mod json;
