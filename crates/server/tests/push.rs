//! The push endpoints over real HTTP on loopback: JSON-lines import, OTLP/HTTP metrics and the
//! Pushgateway-compatible API, with good and malformed bodies, checking what was (and was not)
//! stored by reopening the data directory.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use ocelli_model::time::now_ms;
use std::io::Write as _;

use common::{config_old_samples as config, request, request_raw, stored};
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
        exemplars: vec![],
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
                        exemplars: vec![],
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

        // OTLP/JSON: answered in JSON, errors as a JSON google.rpc.Status
        let json = "Content-Type: application/json\r\n";
        let r = request_raw(addr, "POST", "/v1/metrics", json, b"{\"resourceMetrics\":[]}");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.headers.contains("content-type: application/json\r\n"), "{}", r.headers);
        assert_eq!(r.body, b"{}");
        let r = request_raw(addr, "POST", "/v1/metrics", json, b"{\"resourceMetrics\":{}}");
        assert_eq!(r.status, 400);
        assert!(r.headers.contains("content-type: application/json\r\n"), "{}", r.headers);
        let status: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(status["code"], 3, "{status}");
        assert!(status["message"].as_str().unwrap().contains("resourceMetrics"), "{status}");
        let (code, msg) =
            request(addr, "POST", "/v1/metrics", "Content-Type: text/plain\r\n", b"x");
        assert_eq!(code, 415, "{msg}");
        assert!(msg.contains("unsupported Content-Type"), "{msg}");

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
                        exemplars: vec![],
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

/// The values of a stored series, stale markers as "stale".
fn values(s: &ocelli_tsdb::SeriesSamples) -> Vec<String> {
    s.samples
        .iter()
        .map(|x| if is_stale_nan(x.v) { "stale".to_owned() } else { x.v.to_string() })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_replace_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    let started = now_ms();
    tokio::task::spawn_blocking(move || {
        let push = |method: &str, path: &str, body: &str| {
            // pushes a few milliseconds apart, so that each has its own push time
            std::thread::sleep(std::time::Duration::from_millis(3));
            request(addr, method, path, "", body.as_bytes())
        };
        let group = "/metrics/job/backup/instance/db1";
        let body = "# TYPE backup_duration_seconds gauge\nbackup_duration_seconds 12.5\n\
                    # TYPE backup_bytes gauge\nbackup_bytes{kind=\"full\"} 100\nbackup_bytes{kind=\"incr\"} 5\n";
        assert_eq!(push("PUT", group, body), (200, String::new()));
        // a series of the same job from another ingest path, a second ago: not the group's
        let other = format!("other_metric{{job=\"backup\",instance=\"db1\"}} 1 {}\n", now_ms() - 1000);
        assert_eq!(push("POST", "/api/v1/import/prometheus", &other).0, 204);
        // a more specific group
        let disk = "/metrics/job/backup/instance/db1/disk/sda";
        assert_eq!(push("PUT", disk, "disk_io 3\n").0, 200);

        // POST replaces the families it names: backup_bytes{kind="incr"} ends
        assert_eq!(push("POST", group, "backup_bytes{kind=\"full\"} 200\n").0, 200);
        // PUT replaces the group: backup_bytes{kind="full"} ends; the other group, the other
        // ingest path's series and the already ended series are left alone
        assert_eq!(push("PUT", group, "backup_duration_seconds 13\n").0, 200);
        // DELETE ends the group, its push_time_seconds included
        assert_eq!(push("DELETE", disk, ""), (202, String::new()));
        // a deleted group's series are not ended twice
        assert_eq!(push("DELETE", disk, "").0, 202);

        // base64 job and an empty label value (the label is absent); gzip
        let (code, msg) = request(
            addr,
            "PUT",
            "/metrics/job@base64/YS9i/instance@base64/=",
            "Content-Encoding: gzip\r\n",
            &gzip(b"b64_metric 1\n"),
        );
        assert_eq!(code, 200, "{msg}");

        // refused pushes store nothing
        let (code, msg) = push("PUT", group, "ts_metric 1\nts_metric2 1 1700000000000\n");
        assert_eq!(code, 400);
        assert!(msg.contains("line 2: pushed metrics must not have timestamps"), "{msg}");
        let (code, msg) = push("POST", group, "conflict_metric{instance=\"db2\"} 1\n");
        assert_eq!(code, 400);
        assert!(
            msg.contains(r#"series \"conflict_metric\" has label instance=\"db2\", but the grouping key has instance=\"db1\""#),
            "{msg}"
        );
        let (code, msg) = push("PUT", group, "push_time_seconds 1\n");
        assert_eq!(code, 400);
        assert!(msg.contains("push_time_seconds is written by the server"), "{msg}");
        let (code, msg) = push("PUT", "/metrics/job/backup/instance", "odd_metric 1\n");
        assert_eq!(code, 400);
        assert!(msg.contains("odd number of components"), "{msg}");
        let (code, msg) = push("PUT", group, "bad_metric{ 1\n");
        assert_eq!(code, 400);
        assert!(msg.contains("line 1, column"), "{msg}");
        let (code, msg) = request(
            addr,
            "PUT",
            group,
            "Content-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\n",
            b"\x05\x0a\x03abc",
        );
        assert_eq!(code, 415, "{msg}");
        assert!(msg.contains("protobuf push bodies are not supported"), "{msg}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let get = |name: &str| stored(dir.path(), name);
    let duration = get("backup_duration_seconds");
    assert_eq!(duration.len(), 1);
    assert_eq!(
        duration[0].labels.to_string(),
        r#"backup_duration_seconds{instance="db1", job="backup"}"#
    );
    assert_eq!(values(&duration[0]), ["12.5", "13"]);
    assert!(duration[0].samples[0].t >= started);
    let bytes = get("backup_bytes");
    assert_eq!(bytes[0].labels.get("kind"), Some("full"));
    assert_eq!(values(&bytes[0]), ["100", "200", "stale"]);
    assert_eq!(bytes[1].labels.get("kind"), Some("incr"));
    assert_eq!(values(&bytes[1]), ["5", "stale"]);
    // the stale marker is at the time of the push that replaced it, the push's own time
    let push_times = get("push_time_seconds");
    let db1 = push_times.iter().find(|s| s.labels.get("disk").is_none()).unwrap();
    assert_eq!(db1.labels.to_string(), r#"push_time_seconds{instance="db1", job="backup"}"#);
    assert_eq!(db1.samples.len(), 3);
    assert_eq!(bytes[1].samples[1].t, db1.samples[1].t);
    assert_eq!(bytes[0].samples[2].t, db1.samples[2].t);
    assert!((db1.samples[0].v - db1.samples[0].t as f64 / 1000.0).abs() < 1e-6);
    let disk = push_times.iter().find(|s| s.labels.get("disk") == Some("sda")).unwrap();
    assert_eq!(values(disk).last().unwrap(), "stale");
    assert_eq!(disk.samples.len(), 2);
    let disk_io = get("disk_io");
    assert_eq!(
        disk_io[0].labels.to_string(),
        r#"disk_io{disk="sda", instance="db1", job="backup"}"#
    );
    assert_eq!(values(&disk_io[0]), ["3", "stale"]);
    // ended by the DELETE of its own group, not by the PUT of the less specific one
    assert_eq!(disk_io[0].samples[1].t, disk.samples[1].t);
    assert_eq!(values(&get("other_metric")[0]), ["1"]);
    let b64 = get("b64_metric");
    assert_eq!(b64[0].labels.to_string(), r#"b64_metric{job="a/b"}"#);
    for name in ["ts_metric", "ts_metric2", "conflict_metric", "odd_metric", "bad_metric"] {
        assert!(get(name).is_empty(), "{name}: a rejected push must store nothing");
    }
    assert!(!push_times.iter().any(|s| s.labels.get("job") == Some("a/b") && s.samples.len() != 1));
}

/// The group's series are found in the store, so a replace works across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushgateway_replace_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    for body in ["a_metric 1\nb_metric 2\n", "a_metric 3\n"] {
        let server = Server::start(config(dir.path())).await.unwrap();
        let addr = server.addr;
        let (code, msg) = tokio::task::spawn_blocking(move || {
            request(addr, "PUT", "/metrics/job/restart", "", body.as_bytes())
        })
        .await
        .unwrap();
        assert_eq!(code, 200, "{msg}");
        server.stop().await.unwrap();
    }
    // the refresher may have written the group again (as a scrape of a Pushgateway would)
    // when the second server started: the same values, then the replacing push
    let a = values(&stored(dir.path(), "a_metric")[0]);
    let b = values(&stored(dir.path(), "b_metric")[0]);
    assert!(a.len() >= 2 && a[..a.len() - 1].iter().all(|v| v == "1"), "{a:?}");
    assert_eq!(a.last().map(String::as_str), Some("3"), "{a:?}");
    assert!(b.len() >= 2 && b[..b.len() - 1].iter().all(|v| v == "2"), "{b:?}");
    assert_eq!(b.last().map(String::as_str), Some("stale"), "{b:?}");
}
