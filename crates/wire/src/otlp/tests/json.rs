//! OTLP/JSON: a test-only encoder from the proto messages to the JSON mapping (in several
//! styles), and checks that [`decode_json`] gives what [`decode`] gives for the same request.

use base64::Engine as _;
use serde_json::{Value as J, json};

use super::*;
use crate::Exemplar;

/// How the test encoder writes what the mapping leaves open.
#[derive(Clone, Copy, Debug, Default)]
struct Style {
    /// The `.proto` field names instead of lowerCamelCase.
    snake: bool,
    /// 64-bit integers as JSON numbers instead of strings.
    int_numbers: bool,
    /// Enums by name instead of number.
    enum_names: bool,
    /// Bytes in URL-safe base64 without padding, ids in upper case hex.
    odd_bytes: bool,
}

impl Style {
    fn key(self, camel: &str) -> String {
        if !self.snake {
            return camel.to_owned();
        }
        camel.chars().fold(String::new(), |mut s, c| {
            if c.is_ascii_uppercase() {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
            s
        })
    }

    /// An object of the fields that are not `null`.
    fn obj<const N: usize>(self, fields: [(&str, J); N]) -> J {
        J::Object(
            fields
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (self.key(k), v))
                .collect(),
        )
    }

    fn u64(self, v: u64) -> J {
        if self.int_numbers { v.into() } else { v.to_string().into() }
    }

    fn i64(self, v: i64) -> J {
        if self.int_numbers { v.into() } else { v.to_string().into() }
    }

    fn f64(self, v: f64) -> J {
        json_number(v)
    }

    /// A double without presence: left out when it is zero, as prost leaves it out (`-0.0`
    /// included) of the protobuf.
    fn implicit_f64(self, v: f64) -> J {
        if v == 0.0 { J::Null } else { self.f64(v) }
    }

    fn id(self, b: &[u8]) -> J {
        let h = hex(b);
        if b.is_empty() {
            J::Null
        } else if self.odd_bytes {
            h.to_uppercase().into()
        } else {
            h.into()
        }
    }

    fn bytes(self, b: &[u8]) -> J {
        if self.odd_bytes {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b).into()
        } else {
            base64::engine::general_purpose::STANDARD.encode(b).into()
        }
    }

    fn temporality(self, t: i32) -> J {
        match (self.enum_names, t) {
            (true, 0) => "AGGREGATION_TEMPORALITY_UNSPECIFIED".into(),
            (true, 1) => "AGGREGATION_TEMPORALITY_DELTA".into(),
            (true, 2) => "AGGREGATION_TEMPORALITY_CUMULATIVE".into(),
            _ => t.into(),
        }
    }

    fn list<T>(self, v: &[T], f: impl Fn(Style, &T) -> J) -> J {
        if v.is_empty() { J::Null } else { J::Array(v.iter().map(|x| f(self, x)).collect()) }
    }

    fn request(self, r: &ExportMetricsServiceRequest) -> J {
        self.obj([("resourceMetrics", self.list(&r.resource_metrics, Style::resource_metrics))])
    }

    fn resource_metrics(self, rm: &ResourceMetrics) -> J {
        self.obj([
            (
                "resource",
                rm.resource.as_ref().map_or(J::Null, |r| {
                    self.obj([("attributes", self.list(&r.attributes, Style::kv))])
                }),
            ),
            ("scopeMetrics", self.list(&rm.scope_metrics, Style::scope_metrics)),
        ])
    }

    fn scope_metrics(self, sm: &ScopeMetrics) -> J {
        self.obj([
            (
                "scope",
                sm.scope.as_ref().map_or(J::Null, |s| {
                    self.obj([
                        ("name", s.name.as_str().into()),
                        ("version", s.version.as_str().into()),
                        ("attributes", self.list(&s.attributes, Style::kv)),
                    ])
                }),
            ),
            ("metrics", self.list(&sm.metrics, Style::metric)),
        ])
    }

    fn metric(self, m: &Metric) -> J {
        let (kind, data) = match &m.data {
            None => ("gauge", J::Null),
            Some(Data::Gauge(g)) => {
                ("gauge", self.obj([("dataPoints", self.list(&g.data_points, Style::number))]))
            }
            Some(Data::Sum(s)) => (
                "sum",
                self.obj([
                    ("dataPoints", self.list(&s.data_points, Style::number)),
                    ("aggregationTemporality", self.temporality(s.aggregation_temporality)),
                    ("isMonotonic", s.is_monotonic.into()),
                ]),
            ),
            Some(Data::Histogram(h)) => (
                "histogram",
                self.obj([
                    ("dataPoints", self.list(&h.data_points, Style::histogram_point)),
                    ("aggregationTemporality", self.temporality(h.aggregation_temporality)),
                ]),
            ),
            Some(Data::ExponentialHistogram(e)) => (
                "exponentialHistogram",
                self.obj([
                    ("dataPoints", self.list(&e.data_points, |_, _| json!({"scale": 3}))),
                    ("aggregationTemporality", self.temporality(e.aggregation_temporality)),
                ]),
            ),
            Some(Data::Summary(s)) => (
                "summary",
                self.obj([("dataPoints", self.list(&s.data_points, Style::summary_point))]),
            ),
        };
        self.obj([
            ("name", m.name.as_str().into()),
            ("description", m.description.as_str().into()),
            ("unit", m.unit.as_str().into()),
            (kind, data),
        ])
    }

    fn number(self, p: &NumberDataPoint) -> J {
        let (key, v) = match p.value {
            None => ("asDouble", J::Null),
            Some(Value::AsDouble(d)) => ("asDouble", self.f64(d)),
            Some(Value::AsInt(i)) => ("asInt", self.i64(i)),
        };
        self.obj([
            ("attributes", self.list(&p.attributes, Style::kv)),
            ("startTimeUnixNano", self.u64(1)),
            ("timeUnixNano", self.u64(p.time_unix_nano)),
            (key, v),
            ("exemplars", self.list(&p.exemplars, Style::exemplar)),
            ("flags", p.flags.into()),
        ])
    }

    fn histogram_point(self, p: &HistogramDataPoint) -> J {
        self.obj([
            ("attributes", self.list(&p.attributes, Style::kv)),
            ("timeUnixNano", self.u64(p.time_unix_nano)),
            ("count", self.u64(p.count)),
            ("sum", p.sum.map_or(J::Null, |s| self.f64(s))),
            ("bucketCounts", self.list(&p.bucket_counts, |st, c| st.u64(*c))),
            ("explicitBounds", self.list(&p.explicit_bounds, |st, b| st.f64(*b))),
            ("exemplars", self.list(&p.exemplars, Style::exemplar)),
            ("flags", p.flags.into()),
            ("min", self.f64(-1.0)),
        ])
    }

    fn summary_point(self, p: &SummaryDataPoint) -> J {
        self.obj([
            ("attributes", self.list(&p.attributes, Style::kv)),
            ("timeUnixNano", self.u64(p.time_unix_nano)),
            ("count", self.u64(p.count)),
            ("sum", self.implicit_f64(p.sum)),
            (
                "quantileValues",
                self.list(&p.quantile_values, |st, q| {
                    st.obj([
                        ("quantile", st.implicit_f64(q.quantile)),
                        ("value", st.implicit_f64(q.value)),
                    ])
                }),
            ),
            ("flags", p.flags.into()),
        ])
    }

    fn exemplar(self, e: &proto::Exemplar) -> J {
        let (key, v) = match e.value {
            None => ("asInt", J::Null),
            Some(ExemplarValue::AsDouble(d)) => ("asDouble", self.f64(d)),
            Some(ExemplarValue::AsInt(i)) => ("asInt", self.i64(i)),
        };
        self.obj([
            ("filteredAttributes", self.list(&e.filtered_attributes, Style::kv)),
            ("timeUnixNano", self.u64(e.time_unix_nano)),
            (key, v),
            ("spanId", self.id(&e.span_id)),
            ("traceId", self.id(&e.trace_id)),
        ])
    }

    fn kv(self, kv: &KeyValue) -> J {
        self.obj([
            ("key", kv.key.as_str().into()),
            ("value", kv.value.as_ref().map_or(J::Null, |v| self.any(v))),
        ])
    }

    fn any(self, v: &AnyValue) -> J {
        use any_value::Value as V;
        let Some(v) = &v.value else { return json!({}) };
        let (key, v) = match v {
            V::StringValue(s) => ("stringValue", s.as_str().into()),
            V::BoolValue(b) => ("boolValue", (*b).into()),
            V::IntValue(i) => ("intValue", self.i64(*i)),
            V::DoubleValue(d) => ("doubleValue", self.f64(*d)),
            V::BytesValue(b) => ("bytesValue", self.bytes(b)),
            V::ArrayValue(a) => {
                ("arrayValue", self.obj([("values", self.list(&a.values, Style::any))]))
            }
            V::KvlistValue(kv) => {
                ("kvlistValue", self.obj([("values", self.list(&kv.values, Style::kv))]))
            }
        };
        // a null member would read as no value at all
        J::Object([(self.key(key), v)].into_iter().collect())
    }
}

fn json_body(req: &ExportMetricsServiceRequest, style: Style) -> Vec<u8> {
    style.request(req).to_string().into_bytes()
}

/// Whether two results are the same: series and exemplar values by bits, except that any NaN
/// equals any other (JSON has no NaN payloads); errors by their text.
fn same_result(json: &Result<Decoded>, proto: &Result<Decoded>) -> bool {
    match (json, proto) {
        (Ok(j), Ok(p)) => {
            same_any_nan(&j.series, &p.series)
                && j.rejected_data_points == p.rejected_data_points
                && j.rejections == p.rejections
                && j.metadata == p.metadata
                && j.exemplars.len() == p.exemplars.len()
                && j.exemplars.iter().zip(&p.exemplars).all(|(a, b)| {
                    a.series == b.series
                        && a.labels == b.labels
                        && a.timestamp == b.timestamp
                        && (a.value.to_bits() == b.value.to_bits()
                            || (a.value.is_nan() && b.value.is_nan()))
                })
        }
        (Err(j), Err(p)) => j.to_string() == p.to_string(),
        _ => false,
    }
}

fn same_any_nan(got: &[DecodedSeries], want: &[DecodedSeries]) -> bool {
    crate::series::testing::same(got, want, true)
}

/// Decodes `req` as protobuf and as JSON in every style and checks they agree; returns the
/// protobuf result.
fn check_same(req: &ExportMetricsServiceRequest) -> Result<Decoded> {
    let proto = decode(&req.encode_to_vec(), &Limits::default());
    for style in styles() {
        let body = json_body(req, style);
        let json = decode_json(&body, &Limits::default());
        assert!(
            same_result(&json, &proto),
            "{style:?}\n{}\njson:  {json:?}\nproto: {proto:?}",
            String::from_utf8_lossy(&body)
        );
    }
    proto
}

fn styles() -> [Style; 3] {
    [
        Style::default(),
        Style { snake: true, int_numbers: true, enum_names: true, odd_bytes: true },
        Style { snake: false, int_numbers: true, enum_names: false, odd_bytes: true },
    ]
}

fn anyv(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn ex(value: Option<ExemplarValue>, t_ms: u64, trace: &[u8], span: &[u8]) -> proto::Exemplar {
    proto::Exemplar {
        filtered_attributes: attrs(&[("user.id", "42")]),
        time_unix_nano: t_ms * 1_000_000,
        value,
        span_id: span.to_vec(),
        trace_id: trace.to_vec(),
    }
}

/// Every kind of metric, every `AnyValue` member, resource attributes, exemplars.
fn rich_request() -> ExportMetricsServiceRequest {
    use AggregationTemporality::*;
    use any_value::Value as V;
    let every_any = vec![
        kv("s", s("x")),
        kv("b", anyv(V::BoolValue(true))),
        kv("i", anyv(V::IntValue(i64::MIN))),
        kv("d", anyv(V::DoubleValue(-0.5))),
        kv("nan", anyv(V::DoubleValue(f64::NAN))),
        kv("inf", anyv(V::DoubleValue(f64::INFINITY))),
        kv("bytes", anyv(V::BytesValue(vec![0xfb, 0xff, 0x01]))),
        kv(
            "arr",
            anyv(V::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue { value: Some(V::IntValue(1)) },
                    AnyValue { value: None },
                    AnyValue { value: Some(V::ArrayValue(ArrayValue { values: vec![] })) },
                ],
            })),
        ),
        kv(
            "kv",
            anyv(V::KvlistValue(KeyValueList {
                values: vec![kv("k", anyv(V::StringValue("v".into()))), kv("none", None)],
            })),
        ),
        kv("empty", Some(AnyValue { value: None })),
        kv("absent", None),
    ];
    let trace = [0xab; 16];
    let span = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    let mut g = double(&[("host", "a")], 1, 1.5);
    g.exemplars = vec![ex(Some(ExemplarValue::AsDouble(1.5)), 1, &trace, &span)];
    let mut c = number(attrs(&[("code", "200")]), u64::MAX, Some(Value::AsInt(i64::MAX)));
    c.exemplars = vec![ex(Some(ExemplarValue::AsInt(3)), 2, &trace, &[])];
    let mut h = hpoint(&[("m", "get")], 3, 6, Some(2.5), &[1, 2, 3], &[0.1, 1.0]);
    h.exemplars = vec![
        ex(Some(ExemplarValue::AsDouble(0.05)), 3, &trace, &span),
        ex(Some(ExemplarValue::AsDouble(1.0)), 3, &[], &span),
        ex(Some(ExemplarValue::AsDouble(7.0)), 3, &[], &[]),
        ex(None, 3, &[], &[]),
    ];
    let mut stale = hpoint(&[], 4, 0, None, &[], &[]);
    stale.flags = FLAG_NO_RECORDED_VALUE;
    let summary = SummaryDataPoint {
        attributes: every_any.clone(),
        time_unix_nano: 5_000_000,
        count: 3,
        sum: f64::NEG_INFINITY,
        quantile_values: vec![
            ValueAtQuantile { quantile: 0.5, value: f64::NAN },
            ValueAtQuantile { quantile: 0.99, value: 1e300 },
        ],
        flags: 0,
    };
    let mut m = vec![
        gauge("cpu.temp", "Cel", vec![g, number(every_any.clone(), 1_500_000, None)]),
        sum("requests", "{request}", true, Cumulative, vec![c]),
        sum("queue", "1", false, Cumulative, vec![double(&[], 2, -3.0)]),
        sum("deltas", "", true, Delta, vec![double(&[], 2, 1.0)]),
        histogram("rpc.duration", "s", Cumulative, vec![h, stale]),
        metric("latency", "ms", Data::Summary(Summary { data_points: vec![summary] })),
        metric(
            "exp",
            "",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {}; 2],
                aggregation_temporality: Cumulative as i32,
            }),
        ),
        Metric { name: "typeless".into(), description: "d".into(), unit: "s".into(), data: None },
    ];
    m[0].description = "CPU temperature".into();
    m[4].description = "RPC \"duration\"\nin seconds".into();
    let mut scoped = resource(
        vec![
            kv("service.name", s("api")),
            kv("service.instance.id", s("i-1")),
            kv("region", s("eu")),
            kv("cores", anyv(V::IntValue(8))),
        ],
        m,
    );
    scoped.scope_metrics[0].scope = Some(InstrumentationScope {
        name: "lib".into(),
        version: "1.0".into(),
        attributes: attrs(&[("scope.attr", "x")]),
    });
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            scoped,
            ResourceMetrics { resource: None, scope_metrics: vec![] },
            resource(vec![], vec![gauge("up", "", vec![double(&[], 9, 1.0)])]),
        ],
    }
}

#[test]
fn json_decodes_as_protobuf_does() {
    let got = check_same(&rich_request()).unwrap();
    let mut text = String::new();
    crate::text::render(&got.series, &mut text);
    crate::text::assert_golden(
        &text,
        r#"
        cpu_temp_celsius{host="a", instance="i-1", job="api"} 1.5@1
        cpu_temp_celsius{arr="[1,null,[]]", b="true", bytes="+/8B", d="-0.5", i="-9223372036854775808", inf="Infinity", instance="i-1", job="api", kv="{\"k\":\"v\",\"none\":null}", nan="NaN", s="x"} 0.0@1
        requests_total{code="200", instance="i-1", job="api"} 9.223372036854776e18@18446744073709
        queue{instance="i-1", job="api"} -3.0@2
        rpc_duration_seconds_bucket{instance="i-1", job="api", le="0.1", m="get"} 1.0@3
        rpc_duration_seconds_bucket{instance="i-1", job="api", le="1", m="get"} 3.0@3
        rpc_duration_seconds_bucket{instance="i-1", job="api", le="+Inf", m="get"} 6.0@3
        rpc_duration_seconds_sum{instance="i-1", job="api", m="get"} 2.5@3
        rpc_duration_seconds_count{instance="i-1", job="api", m="get"} 6.0@3
        rpc_duration_seconds_bucket{instance="i-1", job="api", le="+Inf"} NaN@4
        rpc_duration_seconds_count{instance="i-1", job="api"} NaN@4
        latency_milliseconds{arr="[1,null,[]]", b="true", bytes="+/8B", d="-0.5", i="-9223372036854775808", inf="Infinity", instance="i-1", job="api", kv="{\"k\":\"v\",\"none\":null}", nan="NaN", quantile="0.5", s="x"} NaN@5
        latency_milliseconds{arr="[1,null,[]]", b="true", bytes="+/8B", d="-0.5", i="-9223372036854775808", inf="Infinity", instance="i-1", job="api", kv="{\"k\":\"v\",\"none\":null}", nan="NaN", quantile="0.99", s="x"} 1e300@5
        latency_milliseconds_sum{arr="[1,null,[]]", b="true", bytes="+/8B", d="-0.5", i="-9223372036854775808", inf="Infinity", instance="i-1", job="api", kv="{\"k\":\"v\",\"none\":null}", nan="NaN", s="x"} -inf@5
        latency_milliseconds_count{arr="[1,null,[]]", b="true", bytes="+/8B", d="-0.5", i="-9223372036854775808", inf="Infinity", instance="i-1", job="api", kv="{\"k\":\"v\",\"none\":null}", nan="NaN", s="x"} 3.0@5
        target_info{cores="8", instance="i-1", job="api", region="eu"} 1.0@18446744073709
        up{} 1.0@9"#,
        "rich request",
    );
    assert_eq!(got.rejected_data_points, 3);
    assert_eq!(got.metadata.len(), 6);
    assert_eq!(got.exemplars.len(), 6);
}

/// A request written by hand as an OTLP/JSON exporter writes one: lowerCamelCase, 64-bit
/// integers as strings, enums as numbers, hex ids, unknown and unmodelled fields.
#[test]
fn spec_style_example() {
    let body = r#"{
      "resourceMetrics": [{
        "resource": {
          "attributes": [
            {"key": "service.name", "value": {"stringValue": "checkout"}},
            {"key": "host.arch", "value": {"stringValue": "arm64"}}
          ],
          "droppedAttributesCount": 0
        },
        "scopeMetrics": [{
          "scope": {"name": "io.example.meter", "version": "2.1.0"},
          "metrics": [
            {
              "name": "http.server.request.duration",
              "unit": "s",
              "description": "Duration of HTTP server requests.",
              "histogram": {
                "aggregationTemporality": 2,
                "dataPoints": [{
                  "startTimeUnixNano": "1700000000000000000",
                  "timeUnixNano": "1700000060000000000",
                  "count": "4",
                  "sum": 1.75,
                  "bucketCounts": ["1", "2", "1"],
                  "explicitBounds": [0.25, 1],
                  "min": 0.1,
                  "max": 0.9,
                  "attributes": [{"key": "http.request.method", "value": {"stringValue": "GET"}}],
                  "exemplars": [{
                    "timeUnixNano": "1700000055000000000",
                    "asDouble": 0.3,
                    "traceId": "5B8EFFF798038103D269B633813FC60C",
                    "spanId": "eee19b7ec3c1b174",
                    "filteredAttributes": [{"key": "client.address", "value": {"stringValue": "10.0.0.1"}}]
                  }]
                }]
              }
            },
            {
              "name": "active.requests",
              "unit": "{request}",
              "sum": {
                "aggregationTemporality": 2,
                "isMonotonic": false,
                "dataPoints": [{"asInt": "3", "timeUnixNano": "1700000060000000000"}]
              },
              "metadata": [{"key": "hint", "value": {"stringValue": "x"}}]
            }
          ],
          "schemaUrl": "https://opentelemetry.io/schemas/1.24.0"
        }]
      }]
    }"#;
    let got = decode_json(body.as_bytes(), &Limits::default()).unwrap();
    let mut text = String::new();
    crate::text::render(&got.series, &mut text);
    crate::text::assert_golden(
        &text,
        r#"
        http_server_request_duration_seconds_bucket{http_request_method="GET", job="checkout", le="0.25"} 1.0@1700000060000
        http_server_request_duration_seconds_bucket{http_request_method="GET", job="checkout", le="1"} 3.0@1700000060000
        http_server_request_duration_seconds_bucket{http_request_method="GET", job="checkout", le="+Inf"} 4.0@1700000060000
        http_server_request_duration_seconds_sum{http_request_method="GET", job="checkout"} 1.75@1700000060000
        http_server_request_duration_seconds_count{http_request_method="GET", job="checkout"} 4.0@1700000060000
        active_requests{job="checkout"} 3.0@1700000060000
        target_info{host_arch="arm64", job="checkout"} 1.0@1700000060000"#,
        "spec example",
    );
    assert_eq!(
        got.exemplars,
        vec![Exemplar {
            series: Labels::from_pairs([
                ("__name__", "http_server_request_duration_seconds_bucket"),
                ("http_request_method", "GET"),
                ("job", "checkout"),
                ("le", "1"),
            ])
            .unwrap(),
            labels: Labels::from_pairs([
                ("client_address", "10.0.0.1"),
                ("span_id", "eee19b7ec3c1b174"),
                ("trace_id", "5b8efff798038103d269b633813fc60c"),
            ])
            .unwrap(),
            value: 0.3,
            timestamp: 1_700_000_055_000,
        }]
    );
    assert_eq!(
        got.metadata,
        vec![
            Metadata {
                family: "http_server_request_duration_seconds".into(),
                kind: MetricKind::Histogram,
                help: Some("Duration of HTTP server requests.".into()),
                unit: Some("seconds".into()),
            },
            Metadata {
                family: "active_requests".into(),
                kind: MetricKind::Gauge,
                help: None,
                unit: None,
            },
        ]
    );
}

#[test]
fn snake_case_names_are_accepted() {
    let camel = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"c","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
         "dataPoints":[{"timeUnixNano":"2000000","asInt":"5","exemplars":[{"asInt":"1","traceId":"0a","spanId":"0b",
           "timeUnixNano":"1000000","filteredAttributes":[{"key":"k","value":{"intValue":"7"}}]}]}]}},
        {"name":"e","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{}]}},
        {"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[{"bucketCounts":[1,2],"explicitBounds":[1.5],
         "count":3,"attributes":[{"key":"a","value":{"arrayValue":{"values":[{"boolValue":false}]}}},
         {"key":"b","value":{"kvlistValue":{"values":[{"key":"x","value":{"doubleValue":"1.5"}}]}}},
         {"key":"c","value":{"bytesValue":"aGk="}}]}]}},
        {"name":"s","summary":{"dataPoints":[{"quantileValues":[{"quantile":0.5,"value":1}]}]}}]}]}]}"#;
    let snake = r#"{"resource_metrics":[{"scope_metrics":[{"metrics":[
        {"name":"c","sum":{"aggregation_temporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","is_monotonic":true,
         "data_points":[{"time_unix_nano":"2000000","as_int":"5","exemplars":[{"as_int":"1","trace_id":"0a","span_id":"0b",
           "time_unix_nano":"1000000","filtered_attributes":[{"key":"k","value":{"int_value":"7"}}]}]}]}},
        {"name":"e","exponential_histogram":{"aggregation_temporality":2,"data_points":[{}]}},
        {"name":"h","histogram":{"aggregation_temporality":2,"data_points":[{"bucket_counts":[1,2],"explicit_bounds":[1.5],
         "count":3,"attributes":[{"key":"a","value":{"array_value":{"values":[{"bool_value":false}]}}},
         {"key":"b","value":{"kvlist_value":{"values":[{"key":"x","value":{"double_value":"1.5"}}]}}},
         {"key":"c","value":{"bytes_value":"aGk="}}]}]}},
        {"name":"s","summary":{"data_points":[{"quantile_values":[{"quantile":0.5,"value":1}]}]}}]}]}]}"#;
    let a = decode_json(camel.as_bytes(), &Limits::default()).unwrap();
    let b = decode_json(snake.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.series.len(), 7, "{:?}", a.series);
    assert_eq!(a.rejected_data_points, 1);
    assert_eq!(a.exemplars.len(), 1);
    assert_eq!(a.exemplars[0].labels.to_string(), r#"{k="7", span_id="0b", trace_id="0a"}"#);
}

fn json_error(body: &str) -> String {
    match decode_json(body.as_bytes(), &Limits::default()) {
        Ok(d) => panic!("{body} decoded to {d:?}"),
        Err(e) => e.to_string(),
    }
}

/// Wraps one metric into a request.
fn one_metric(metric: &str) -> String {
    format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{{"name":"ok"}},{metric}]}}]}}]}}"#
    )
}

/// Wraps one gauge point into a request.
fn one_point(point: &str) -> String {
    one_metric(&format!(r#"{{"name":"m","gauge":{{"dataPoints":[{{}},{point}]}}}}"#))
}

#[test]
fn malformed_json_is_refused_saying_where() {
    const M: &str = "resourceMetrics[0].scopeMetrics[0].metrics[1]";
    const P: &str = "resourceMetrics[0].scopeMetrics[0].metrics[1].gauge.dataPoints[1]";
    let ex = |e: &str| one_point(&format!(r#"{{"exemplars":[{e}]}}"#));
    let attr = |v: &str| one_point(&format!(r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#));
    let h = |p: &str| {
        one_metric(&format!(
            r#"{{"name":"h","histogram":{{"aggregationTemporality":2,"dataPoints":[{p}]}}}}"#
        ))
    };
    let h0 = "resourceMetrics[0].scopeMetrics[0].metrics[1].histogram.dataPoints[0]";
    let long = format!(r#"{{"name":"{}","gauge":[]}}"#, "x".repeat(50));
    #[rustfmt::skip]
    let cases: Vec<(String, String)> = vec![
        ("".into(), "OTLP request: invalid JSON: EOF while parsing a value at line 1 column 0".into()),
        ("{\"resourceMetrics\":[".into(), "OTLP request: invalid JSON: EOF while parsing a list at line 1 column 20".into()),
        ("{} x".into(), "OTLP request: invalid JSON: trailing characters at line 1 column 4".into()),
        ("[]".into(), "OTLP request: expected an object, found an array".into()),
        ("{\"resourceMetrics\":{}}".into(), "OTLP request: expected an array for resourceMetrics, found an object".into()),
        ("{\"resourceMetrics\":[null]}".into(), "resourceMetrics[0]: expected an object, found null".into()),
        ("{\"resourceMetrics\":[],\"resource_metrics\":[]}".into(), "OTLP request: both resourceMetrics and resource_metrics are set".into()),
        ("{\"resourceMetrics\":[{\"resource\":[]}]}".into(), "resourceMetrics[0].resource: expected an object, found an array".into()),
        ("{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":5}]}}]}".into(), "resourceMetrics[0].resource.attributes[0]: expected a string for key, found 5".into()),
        (one_metric(r#"{"name":1}"#), format!("{M}: expected a string for name, found 1")),
        (one_metric(r#"{"name":"m","unit":true}"#), format!("{M}: expected a string for unit, found true")),
        (one_metric(r#"{"gauge":{},"sum":{}}"#), format!("{M}: both gauge and sum are set (a oneof)")),
        (one_metric(&long), format!("{M}.gauge: expected an object, found an array")),
        (one_metric(r#"{"sum":{"isMonotonic":"true"}}"#), format!("{M}.sum: expected a boolean for isMonotonic, found \"true\"")),
        (one_metric(r#"{"sum":{"aggregationTemporality":"CUMULATIVE"}}"#), format!("{M}.sum: expected an AggregationTemporality (a number, or a name such as \"AGGREGATION_TEMPORALITY_CUMULATIVE\") for aggregationTemporality, found \"CUMULATIVE\"")),
        (one_metric(r#"{"sum":{"aggregationTemporality":2.5}}"#), format!("{M}.sum: expected an AggregationTemporality (a number, or a name such as \"AGGREGATION_TEMPORALITY_CUMULATIVE\") for aggregationTemporality, found 2.5")),
        (one_metric(r#"{"exponentialHistogram":{"dataPoints":[1]}}"#), format!("{M}.exponentialHistogram.dataPoints[0]: expected an object, found 1")),
        (one_point(r#"{"timeUnixNano":true}"#), format!("{P}: expected a string or number for timeUnixNano, found true")),
        (one_point(r#"{"timeUnixNano":[1]}"#), format!("{P}: expected a string or number for timeUnixNano, found an array")),
        (one_point(r#"{"timeUnixNano":"-1"}"#), format!("{P}: expected an unsigned 64-bit integer for timeUnixNano, found \"-1\"")),
        (one_point(r#"{"timeUnixNano":"18446744073709551616"}"#), format!("{P}: expected an unsigned 64-bit integer for timeUnixNano, found \"18446744073709551616\"")),
        (one_point(r#"{"time_unix_nano":1.5}"#), format!("{P}: expected an unsigned 64-bit integer for time_unix_nano, found 1.5")),
        (one_point(r#"{"timeUnixNano":" 1"}"#), format!("{P}: expected an unsigned 64-bit integer for timeUnixNano, found \" 1\"")),
        (one_point(r#"{"timeUnixNano":"1","time_unix_nano":"1"}"#), format!("{P}: both timeUnixNano and time_unix_nano are set")),
        (one_point(r#"{"asInt":"9223372036854775808"}"#), format!("{P}: expected a 64-bit integer for asInt, found \"9223372036854775808\"")),
        (one_point(r#"{"asInt":"1","asDouble":1}"#), format!("{P}: both asDouble and asInt are set (a oneof)")),
        (one_point(r#"{"asDouble":"inf"}"#), format!("{P}: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for asDouble, found \"inf\"")),
        (one_point(r#"{"asDouble":"1e999"}"#), format!("{P}: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for asDouble, found \"1e999\"")),
        (one_point(r#"{"asDouble":"nan"}"#), format!("{P}: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for asDouble, found \"nan\"")),
        (one_point(r#"{"asDouble":{}}"#), format!("{P}: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for asDouble, found an object")),
        (one_point(r#"{"flags":4294967296}"#), format!("{P}: expected an unsigned 32-bit integer for flags, found 4294967296")),
        (one_point(r#"{"attributes":{}}"#), format!("{P}: expected an array for attributes, found an object")),
        (attr(r#"{"intValue":true}"#), format!("{P}.attributes[0].value: expected a string or number for intValue, found true")),
        (attr(r#"{"stringValue":"a","boolValue":true}"#), format!("{P}.attributes[0].value: both stringValue and boolValue are set (a oneof)")),
        (attr(r#"{"bytesValue":"a"}"#), format!("{P}.attributes[0].value: expected a base64 string for bytesValue, found \"a\"")),
        (attr(r#"{"arrayValue":{"values":[{"intValue":"x"}]}}"#), format!("{P}.attributes[0].value.arrayValue.values[0]: expected a 64-bit integer for intValue, found \"x\"")),
        (attr(r#"{"kvlistValue":{"values":[{"key":"a","value":[]}]}}"#), format!("{P}.attributes[0].value.kvlistValue.values[0].value: expected an object, found an array")),
        (attr(&format!(r#"{{"stringValue":"{}"}}"#, "y".repeat(41)).replace("stringValue", "boolValue")), format!("{P}.attributes[0].value: expected a boolean for boolValue, found \"{}\"...", "y".repeat(40))),
        (ex(r#"{"traceId":"xyz0"}"#), format!("{P}.exemplars[0]: expected a hex string for traceId, found \"xyz0\"")),
        (ex(r#"{"spanId":"abc"}"#), format!("{P}.exemplars[0]: expected a hex string for spanId, found \"abc\"")),
        (ex(r#"{"spanId":"AAECAwQFBgc="}"#), format!("{P}.exemplars[0]: expected a hex string for spanId, found \"AAECAwQFBgc=\"")),
        (ex(r#"{"asDouble":"x"}"#), format!("{P}.exemplars[0]: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for asDouble, found \"x\"")),
        (ex(r#"{"filteredAttributes":[{"key":"a","value":{"doubleValue":null,"intValue":false}}]}"#), format!("{P}.exemplars[0].filteredAttributes[0].value: expected a string or number for intValue, found false")),
        (h(r#"{"bucketCounts":[1,"x"]}"#), format!("{h0}: expected an unsigned 64-bit integer for bucketCounts[1], found \"x\"")),
        (h(r#"{"explicitBounds":[null]}"#), format!("{h0}: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for explicitBounds[0], found null")),
        (h(r#"{"sum":"NaN","quantileValues":7,"count":-1}"#), format!("{h0}: expected an unsigned 64-bit integer for count, found -1")),
        (one_metric(r#"{"summary":{"dataPoints":[{"quantileValues":[{"quantile":"half"}]}]}}"#), format!("{M}.summary.dataPoints[0].quantileValues[0]: expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for quantile, found \"half\"")),
        // conversion errors name the protobuf path, so that both encodings give the same error
        (h(r#"{"bucketCounts":[1,2],"explicitBounds":[]}"#), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[0]: histogram "h" has 2 bucket_counts and 0 explicit_bounds (want no bucket_counts, or one more than explicit_bounds)"#.into()),
        (ex(r#"{"filteredAttributes":[{"key":"-","value":{"stringValue":"x"}}]}"#), r#"resource_metrics[0].scope_metrics[0].metrics[1].data_points[1].exemplars[0].filtered_attributes[0]: attribute name "-" has no character valid in a label name"#.into()),
    ];
    for (body, want) in cases {
        assert_eq!(json_error(&body), want, "{body}");
    }

    // nesting past serde_json's recursion limit is invalid JSON, not a stack overflow
    let deep = format!("{}1{}", r#"{"arrayValue":{"values":["#.repeat(60), "]}}".repeat(60));
    let e = json_error(&attr(&deep));
    assert!(e.starts_with("OTLP request: invalid JSON: recursion limit exceeded"), "{e}");
}

#[test]
fn lenient_where_the_mapping_allows() {
    let ok = |point: &str| -> Decoded {
        decode_json(one_point(point).as_bytes(), &Limits::default())
            .unwrap_or_else(|e| panic!("{point}: {e}"))
    };
    let value = |point: &str| ok(point).series[0].samples[1];
    // 64-bit integers as numbers, strings, whole floats, exponents
    assert_eq!(value(r#"{"timeUnixNano":5000000}"#).t, 5);
    assert_eq!(value(r#"{"timeUnixNano":"5000000"}"#).t, 5);
    assert_eq!(value(r#"{"timeUnixNano":5e6}"#).t, 5);
    assert_eq!(value(r#"{"timeUnixNano":5000000.0}"#).t, 5);
    assert_eq!(value(r#"{"asInt":-3}"#).v, -3.0);
    assert_eq!(value(r#"{"asInt":"-3"}"#).v, -3.0);
    // doubles as numbers, numeric strings and the three special strings
    assert_eq!(value(r#"{"asDouble":"2.5e1"}"#).v, 25.0);
    assert_eq!(value(r#"{"asDouble":"Infinity"}"#).v, f64::INFINITY);
    assert_eq!(value(r#"{"asDouble":"-Infinity"}"#).v, f64::NEG_INFINITY);
    assert!(value(r#"{"asDouble":"NaN"}"#).v.is_nan());
    // null is absent; unknown fields are ignored whatever their value
    assert_eq!(value(r#"{"asDouble":null,"asInt":7,"future":{"x":[1]},"flags":null}"#).v, 7.0);
    // flags as a string
    assert!(is_stale_nan(value(r#"{"asDouble":1,"flags":"1"}"#).v));
    // bytes in URL-safe base64 without padding; ids in upper case hex
    let d = ok(r#"{"attributes":[{"key":"b","value":{"bytesValue":"-_8"}}],
        "exemplars":[{"traceId":"ABCDEF","spanId":""}]}"#);
    assert_eq!(d.series[1].labels.get("b"), Some("+/8="));
    assert_eq!(d.exemplars[0].labels.to_string(), r#"{trace_id="abcdef"}"#);
    // an empty object and an empty request
    assert!(decode_json(b"{}", &Limits::default()).unwrap().series.is_empty());
    assert!(
        decode_json(b" {\"resourceMetrics\":null} ", &Limits::default()).unwrap().series.is_empty()
    );
}

#[test]
fn json_body_limit() {
    let body = one_point("{}");
    let limits = Limits { max_body_bytes: body.len() - 1, ..Limits::default() };
    assert_eq!(
        decode_json(body.as_bytes(), &limits).unwrap_err().to_string(),
        format!("OTLP request is {} bytes, over the limit of {} bytes", body.len(), body.len() - 1)
    );
    let limits = Limits { max_body_bytes: body.len(), ..Limits::default() };
    assert!(decode_json(body.as_bytes(), &limits).is_ok());
}

#[test]
fn json_responses() {
    assert_eq!(Decoded::default().response_json(), b"{}");
    let d = Decoded {
        rejected_data_points: 2,
        rejections: vec!["a \"b\"".into(), "c".into()],
        ..Decoded::default()
    };
    assert_eq!(
        String::from_utf8(d.response_json()).unwrap(),
        r#"{"partialSuccess":{"errorMessage":"a \"b\"; c","rejectedDataPoints":"2"}}"#
    );
    assert_eq!(
        String::from_utf8(error_status_json(3, "bad \"x\"\n")).unwrap(),
        r#"{"code":3,"message":"bad \"x\"\n"}"#
    );
    // what a protobuf JSON parser reads back
    let v: J = serde_json::from_slice(&d.response_json()).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "2");
}

proptest! {
    #[test]
    fn random_requests_decode_the_same_from_json(req in super::arb_request()) {
        let proto = decode(&req.encode_to_vec(), &Limits::default());
        for style in styles() {
            let body = json_body(&req, style);
            let json = decode_json(&body, &Limits::default());
            prop_assert!(
                same_result(&json, &proto),
                "{:?}\n{}\njson:  {:?}\nproto: {:?}",
                style,
                String::from_utf8_lossy(&body),
                json,
                proto
            );
        }
    }

    #[test]
    fn random_json_never_panics(req in super::arb_request(), cut in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut body = json_body(&req, Style::default());
        if !body.is_empty() {
            let i = cut.index(body.len());
            body[i] = b;
        }
        if let Ok(got) = decode_json(&body, &Limits::default()) {
            super::check_invariants(&got)?;
        }
    }
}
