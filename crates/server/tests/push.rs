//! The push endpoints over real HTTP on loopback: JSON-lines import, OTLP/HTTP metrics and the
//! Pushgateway-compatible API, with good and malformed bodies, checking what was (and was not)
//! stored by reopening the data directory.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::Write as _;

use common::{config, request, request_raw, stored};
use ocelli_model::{STALE_NAN, Sample, is_stale_nan};
use ocelli_server::Server;
use ocelli_wire::otlp::proto::*;
use prost::Message as _;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_import() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let body = concat!(
            r#"{"metric":{"__name__":"temp","room":"a"},"values":[20.5,"NaN"],"timestamps":[1700000000000,1700000010000]}"#,
            "\n",
            r#"{"metric":{"__name__":"temp","room":"b"},"values":["+Inf"],"timestamps":[1700000000000]}"#,
            "\n",
        );
        let (code, msg) = request(addr, "POST", "/api/v1/import", "", body.as_bytes());
        assert_eq!(code, 204, "{msg}");
        let line = r#"{"metric":{"__name__":"hum","room":"a"},"values":[40],"timestamps":[1700000000000]}"#;
        let (code, msg) =
            request(addr, "POST", "/api/v1/import", "Content-Encoding: gzip\r\n", &gzip(line.as_bytes()));
        assert_eq!(code, 204, "{msg}");

        // the second line is bad: a 400 naming line and column, and nothing of it stored
        let body = concat!(
            r#"{"metric":{"__name__":"ok"},"values":[1],"timestamps":[1700000000000]}"#,
            "\n",
            r#"{"metric":{"__name__":"ok"},"values":[1,2],"timestamps":[1700000000000]}"#,
        );
        let (code, msg) = request(addr, "POST", "/api/v1/import", "", body.as_bytes());
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains("\"errorType\":\"bad_data\""), "{msg}");
        assert!(
            msg.contains(r#"line 2, column 72: \"values\" has 2 elements but \"timestamps\" has 1"#),
            "{msg}"
        );
        let (code, msg) = request(addr, "POST", "/api/v1/import", "", b"{\"metric\":{}}");
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains("line 1, column 12: label set has no __name__ label"), "{msg}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let temp = stored(dir.path(), "temp");
    assert_eq!(temp.len(), 2);
    assert_eq!(temp[0].labels.get("room"), Some("a"));
    assert_eq!(temp[0].samples[0], Sample::new(1_700_000_000_000, 20.5));
    assert!(temp[0].samples[1].v.is_nan());
    assert_eq!(temp[1].samples, vec![Sample::new(1_700_000_000_000, f64::INFINITY)]);
    assert_eq!(stored(dir.path(), "hum")[0].samples, vec![Sample::new(1_700_000_000_000, 40.0)]);
    assert!(stored(dir.path(), "ok").is_empty(), "a rejected request must store nothing");
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
    }
}

fn point(t_ms: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![kv("http.method", "GET")],
        time_unix_nano: t_ms * 1_000_000,
        value: Some(Value::AsDouble(v)),
        flags: 0,
    }
}

fn otlp(metrics: Vec<Metric>) -> Vec<u8> {
    let resource = Resource {
        attributes: vec![
            kv("service.name", "shop"),
            kv("service.instance.id", "i1"),
            kv("host.name", "h"),
        ],
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics { scope: None, metrics }],
        }],
    }
    .encode_to_vec()
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.to_owned(),
        description: String::new(),
        unit: unit.to_owned(),
        data: Some(data),
    }
}

fn sum(
    name: &str,
    temporality: AggregationTemporality,
    data_points: Vec<NumberDataPoint>,
) -> Metric {
    let data = Sum { data_points, aggregation_temporality: temporality as i32, is_monotonic: true };
    metric(name, "", Data::Sum(data))
}

const T: u64 = 1_700_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_metrics() {
    use AggregationTemporality::*;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let proto = "Content-Type: application/x-protobuf\r\n";
        let mut stale = point(T + 20_000, 0.0);
        stale.flags = FLAG_NO_RECORDED_VALUE;
        let body = otlp(vec![
            sum(
                "http.server.requests",
                Cumulative,
                vec![point(T, 5.0), point(T + 10_000, 7.0), stale],
            ),
            metric(
                "http.server.duration",
                "s",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: vec![],
                        time_unix_nano: T * 1_000_000,
                        count: 3,
                        sum: Some(0.75),
                        bucket_counts: vec![1, 2, 0],
                        explicit_bounds: vec![0.1, 0.5],
                        flags: 0,
                    }],
                    aggregation_temporality: Cumulative as i32,
                }),
            ),
        ]);
        let r = request_raw(addr, "POST", "/opentelemetry/v1/metrics", proto, &body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.headers.contains("content-type: application/x-protobuf\r\n"), "{}", r.headers);
        assert!(r.body.is_empty(), "a full success is an empty response: {:?}", r.body);

        // gzip, on the OTLP default path, without a Content-Type
        let mut mem = point(T, 1024.0);
        mem.attributes.clear();
        let body = otlp(vec![metric(
            "process.memory",
            "By",
            Data::Gauge(Gauge { data_points: vec![mem] }),
        )]);
        let r =
            request_raw(addr, "POST", "/v1/metrics", "Content-Encoding: gzip\r\n", &gzip(&body));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

        // a delta sum is dropped and reported; the rest of the request is stored
        let body = otlp(vec![
            sum("delta.requests", Delta, vec![point(T, 1.0), point(T + 1, 2.0)]),
            sum("kept.requests", Cumulative, vec![point(T, 3.0)]),
        ]);
        let r = request_raw(addr, "POST", "/opentelemetry/v1/metrics", proto, &body);
        assert_eq!(r.status, 200);
        let resp = ExportMetricsServiceResponse::decode(r.body.as_slice()).unwrap();
        let partial = resp.partial_success.unwrap();
        assert_eq!(partial.rejected_data_points, 2);
        assert!(
            partial.error_message.contains(r#"metric "delta.requests""#),
            "{}",
            partial.error_message
        );
        assert!(partial.error_message.contains("delta aggregation temporality is not supported"));

        // OTLP/JSON: 415, in the usual JSON error shape
        let (code, msg) = request(
            addr,
            "POST",
            "/opentelemetry/v1/metrics",
            "Content-Type: application/json\r\n",
            b"{\"resourceMetrics\":[]}",
        );
        assert_eq!(code, 415, "{msg}");
        assert!(msg.contains("OTLP/JSON is not supported"), "{msg}");
        let (code, msg) =
            request(addr, "POST", "/v1/metrics", "Content-Type: text/plain\r\n", b"x");
        assert_eq!(code, 415, "{msg}");
        assert!(msg.contains(r#"unsupported Content-Type \"text/plain\""#), "{msg}");

        // malformed: a 400 whose body is a google.rpc.Status; nothing of the request stored
        let body = otlp(vec![
            sum("not.stored", Cumulative, vec![point(T, 1.0)]),
            metric(
                "bad",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        attributes: vec![],
                        time_unix_nano: T * 1_000_000,
                        count: 1,
                        sum: None,
                        bucket_counts: vec![1, 0],
                        explicit_bounds: vec![],
                        flags: 0,
                    }],
                    aggregation_temporality: Cumulative as i32,
                }),
            ),
        ]);
        let r = request_raw(addr, "POST", "/opentelemetry/v1/metrics", proto, &body);
        assert_eq!(r.status, 400);
        assert!(r.headers.contains("content-type: application/x-protobuf\r\n"), "{}", r.headers);
        let status = Status::decode(r.body.as_slice()).unwrap();
        assert_eq!(status.code, 3);
        assert_eq!(
            status.message,
            "resource_metrics[0].scope_metrics[0].metrics[1].data_points[0]: histogram \"bad\" has \
             2 bucket_counts and 0 explicit_bounds (want no bucket_counts, or one more than \
             explicit_bounds)"
        );
        let r = request_raw(addr, "POST", "/v1/metrics", proto, b"\x0a\x05\x0a");
        assert_eq!(r.status, 400);
        let status = Status::decode(r.body.as_slice()).unwrap();
        assert!(
            status.message.starts_with("OTLP request: failed to decode Protobuf message"),
            "{}",
            status.message
        );
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let get = |name: &str| stored(dir.path(), name);
    let requests = get("http_server_requests_total");
    assert_eq!(requests.len(), 1);
    let labels = requests[0].labels.to_string();
    assert_eq!(
        labels,
        r#"http_server_requests_total{http_method="GET", instance="i1", job="shop"}"#
    );
    let t = T as i64;
    assert_eq!(requests[0].samples[..2], [Sample::new(t, 5.0), Sample::new(t + 10_000, 7.0)]);
    assert!(is_stale_nan(requests[0].samples[2].v) && requests[0].samples[2].t == t + 20_000);
    assert_eq!(STALE_NAN.to_bits(), requests[0].samples[2].v.to_bits());
    let buckets = get("http_server_duration_seconds_bucket");
    let les: Vec<(&str, f64)> =
        buckets.iter().map(|s| (s.labels.get("le").unwrap(), s.samples[0].v)).collect();
    assert_eq!(les, [("+Inf", 3.0), ("0.1", 1.0), ("0.5", 3.0)]);
    assert_eq!(get("http_server_duration_seconds_sum")[0].samples, [Sample::new(t, 0.75)]);
    assert_eq!(get("http_server_duration_seconds_count")[0].samples, [Sample::new(t, 3.0)]);
    let info = get("target_info");
    assert_eq!(
        info[0].labels.to_string(),
        r#"target_info{host_name="h", instance="i1", job="shop"}"#
    );
    assert_eq!(info[0].samples.last(), Some(&Sample::new(t + 20_000, 1.0)));
    assert_eq!(get("process_memory_bytes")[0].samples, [Sample::new(t, 1024.0)]);
    assert_eq!(get("kept_requests_total")[0].samples, [Sample::new(t, 3.0)]);
    assert!(get("delta_requests_total").is_empty() && get("delta_requests").is_empty());
    assert!(get("not_stored_total").is_empty(), "a rejected request must store nothing");
}
