//! Drop-in compatibility over HTTP, each endpoint as its usual client calls it: remote_write 2.0
//! (content negotiation, the written-count headers, histograms, metadata, exemplars, never half
//! stored), remote_write 1.0 metadata, the ingest time bounds, the Influx endpoints writers call
//! at start and field types, Prometheus' status endpoints, `format_query`, `stats`, parse
//! errors, the JSON 404 of unknown API paths, and Pushgateway groups that answer until deleted.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::time::Duration;

use common::{config, http, request, request_raw};
use ocelli_model::time::now_ms;
use ocelli_model::{Labels, Sample};
use ocelli_server::Server;
use ocelli_wire::remote_write_v2::{
    self as v2, BucketSpan, Histogram, Request, Symbols, TimeSeries,
};
use serde_json::Value;

const V2: &str = "Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request\r\n\
                  Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 2.0.0\r\n";

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn json(addr: std::net::SocketAddr, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, b"");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn query(addr: std::net::SocketAddr, q: &str) -> Value {
    let path = format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    json(addr, &path)["data"]["result"].clone()
}

/// One series with samples, metadata and an exemplar, and one integer native histogram.
fn v2_request(now: i64) -> Request {
    let mut sym = Symbols::new();
    let series = labels(&[("__name__", "http_requests_total"), ("job", "api")]);
    let refs = sym.labels_refs(&series);
    let help = sym.intern("Requests served.");
    let trace = sym.labels_refs(&labels(&[("trace_id", "abc123")]));
    let hist = sym.labels_refs(&labels(&[("__name__", "latency_seconds"), ("job", "api")]));
    Request {
        timeseries: vec![
            TimeSeries {
                labels_refs: refs,
                samples: vec![
                    v2::Sample { value: 41.0, timestamp: now - 1000 },
                    v2::Sample { value: 42.0, timestamp: now },
                ],
                histograms: vec![],
                exemplars: vec![v2::Exemplar { labels_refs: trace, value: 0.25, timestamp: now }],
                metadata: Some(v2::Metadata {
                    r#type: v2::MetricType::Counter as i32,
                    help_ref: help,
                    unit_ref: 0,
                }),
                created_timestamp: 0,
            },
            TimeSeries {
                labels_refs: hist,
                samples: vec![],
                // schema 0: bucket 1 is (1, 2], bucket 2 is (2, 4]; counts 3 and 1
                histograms: vec![Histogram {
                    count: Some(v2::histogram::Count::CountInt(4)),
                    sum: 7.5,
                    schema: 0,
                    positive_spans: vec![BucketSpan { offset: 1, length: 2 }],
                    positive_deltas: vec![3, -2],
                    timestamp: now,
                    ..Histogram::default()
                }],
                exemplars: vec![],
                metadata: None,
                created_timestamp: 0,
            },
        ],
        symbols: sym.into_table(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_2_is_negotiated_stored_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    let now = now_ms();
    let body = v2::encode(&v2_request(now));
    let r =
        tokio::task::spawn_blocking(move || request_raw(addr, "POST", "/api/v1/write", V2, &body))
            .await
            .unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    for h in [
        "x-prometheus-remote-write-samples-written: 2\r\n",
        "x-prometheus-remote-write-histograms-written: 1\r\n",
        "x-prometheus-remote-write-exemplars-written: 1\r\n",
    ] {
        assert!(r.headers.contains(h), "{h} missing in {}", r.headers);
    }
    tokio::task::spawn_blocking(move || {
        let v = query(addr, "http_requests_total");
        assert_eq!(v[0]["value"][1], "42", "{v}");
        let b = query(addr, "latency_seconds_bucket");
        let mut le: Vec<(String, String)> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (s["metric"]["le"].as_str().unwrap().into(), s["value"][1].as_str().unwrap().into())
            })
            .collect();
        le.sort();
        assert_eq!(le, [("+Inf", "4"), ("2", "3"), ("4", "4")].map(|(a, b)| (a.into(), b.into())));
        assert_eq!(query(addr, "latency_seconds_sum")[0]["value"][1], "7.5");
        assert_eq!(query(addr, "latency_seconds_count")[0]["value"][1], "4");

        let meta = json(addr, "/api/v1/metadata?metric=http_requests_total");
        assert_eq!(meta["data"]["http_requests_total"][0]["type"], "counter", "{meta}");
        assert_eq!(meta["data"]["http_requests_total"][0]["help"], "Requests served.");

        let ex = json(
            addr,
            &format!(
                "/api/v1/query_exemplars?query=rate(http_requests_total[5m])&start={}&end={}",
                (now - 60_000) / 1000,
                now / 1000 + 1
            ),
        );
        let data = ex["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "{ex}");
        assert_eq!(data[0]["seriesLabels"]["job"], "api");
        assert_eq!(data[0]["exemplars"][0]["labels"]["trace_id"], "abc123");
        assert_eq!(data[0]["exemplars"][0]["value"], "0.25");
        // no exemplars for a selector that matches none
        let none = json(addr, "/api/v1/query_exemplars?query=up");
        assert_eq!(none["data"], serde_json::json!([]));

        // a proto this server does not speak: 415, nothing stored
        let ct = "Content-Type: application/x-protobuf;proto=io.prometheus.write.v3.Request\r\n";
        let (code, msg) = request(addr, "POST", "/api/v1/write", ct, b"x");
        assert_eq!(code, 415, "{msg}");
        assert!(msg.contains("unknown proto"), "{msg}");
        let (code, msg) =
            request(addr, "POST", "/api/v1/write", "Content-Encoding: zstd\r\n", b"x");
        assert_eq!(code, 415, "{msg}");

        // one bad series among good ones: a 400, and none of it stored
        let mut req = v2_request(now + 5);
        let name = req.symbols.len() as u32;
        req.symbols.push("never_stored".into());
        req.timeseries[1].labels_refs = vec![0, name]; // name "" is not a valid label name
        let body = v2::encode(&req);
        let r = request_raw(addr, "POST", "/api/v1/write", V2, &body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
        assert!(!r.headers.contains("x-prometheus-remote-write-samples-written"), "{}", r.headers);
        let v = query(addr, "http_requests_total");
        assert_eq!(v[0]["value"][1], "42", "the good series of a refused body is not stored: {v}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_1_metadata_is_kept() {
    use ocelli_wire::remote_write::{Label, MetricMetadata, MetricType, TimeSeries, WriteRequest};
    use prost::Message as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label { name: "__name__".into(), value: "node_load1".into() }],
            samples: vec![ocelli_wire::remote_write::Sample { value: 0.5, timestamp: now_ms() }],
        }],
        // Prometheus sends metadata in requests of their own
        metadata: vec![MetricMetadata {
            r#type: MetricType::Gauge as i32,
            metric_family_name: "node_load1".into(),
            help: "1m load average.".into(),
            unit: String::new(),
        }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    tokio::task::spawn_blocking(move || {
        let (code, msg) = request(
            addr,
            "POST",
            "/api/v1/write",
            "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n",
            &body,
        );
        assert_eq!(code, 204, "{msg}");
        let meta = json(addr, "/api/v1/metadata");
        assert_eq!(
            meta["data"]["node_load1"],
            serde_json::json!([{"type": "gauge", "help": "1m load average.", "unit": ""}]),
            "{meta}"
        );
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_outside_the_time_bounds_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.storage.retention = "1d".into();
    let server = Server::start(c).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let now = now_ms();
        let series = |t: i64, v: f64| ocelli_wire::remote_write::DecodedSeries {
            labels: labels(&[("__name__", "bounded"), ("t", &t.to_string())]),
            samples: vec![Sample::new(t, v)],
        };
        let body = ocelli_wire::remote_write::encode(&[
            series(now, 1.0),
            series(now - 2 * 86_400_000, 2.0),
            series(now + 3_600_000, 3.0),
        ])
        .unwrap();
        let (code, msg) = request(
            addr,
            "POST",
            "/api/v1/write",
            "Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n",
            &body,
        );
        assert_eq!(code, 400, "{msg}");
        assert!(
            msg.contains(
                "partial write: 2 samples refused (1 older than the retention (1d), 1 more than \
                 10m in the future); the other 1 samples were stored"
            ),
            "{msg}"
        );
        assert_eq!(query(addr, "count(bounded)")[0]["value"][1], "1");
        // influx too; its answer says the same
        let line = format!("old f=1 {}", (now - 2 * 86_400_000) * 1_000_000);
        let (code, msg) = http(addr, "POST", "/write", line.as_bytes());
        assert_eq!(code, 400, "{msg}");
        let (_, metrics) = http(addr, "GET", "/metrics", b"");
        let refused = |reason: &str| {
            let prefix = format!("ocelli_ingest_samples_refused_total{{reason=\"{reason}\"}} ");
            metrics.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse::<f64>().unwrap()
        };
        assert!(refused("too_old") >= 2.0, "{metrics}");
        assert!(refused("too_far_in_future") >= 1.0, "{metrics}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_writers_find_what_they_call_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        for method in ["GET", "HEAD"] {
            let r = request_raw(addr, method, "/ping", "", b"");
            assert_eq!(r.status, 204);
            assert!(r.headers.contains("x-influxdb-version: 1.8.10\r\n"), "{}", r.headers);
        }
        let h = json(addr, "/health");
        assert_eq!(h["status"], "pass", "{h}");

        let (code, body) = http(addr, "POST", "/query?q=CREATE+DATABASE+%22telegraf%22", b"");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body, r#"{"results":[{"statement_id":0}]}"#);
        let (code, _) = http(addr, "POST", "/write?db=metrics", b"cpu,host=a usage=1");
        assert_eq!(code, 204);
        let dbs = json(addr, "/query?q=SHOW%20DATABASES");
        assert_eq!(dbs["results"][0]["series"][0]["columns"], serde_json::json!(["name"]));
        assert_eq!(
            dbs["results"][0]["series"][0]["values"],
            serde_json::json!([["metrics"], ["telegraf"]]),
            "{dbs}"
        );
        let sel = json(addr, "/query?q=SELECT%20*%20FROM%20cpu");
        assert!(sel["results"][0]["error"].as_str().unwrap().contains("PromQL"), "{sel}");

        // a field keeps its first type
        let (code, msg) = http(addr, "POST", "/write", b"cpu,host=a usage=2i");
        assert_eq!(code, 400, "{msg}");
        assert!(
            msg.contains("field type conflict: \\\"cpu_usage\\\" is integer in this write, already stored as float"),
            "{msg}"
        );
        assert_eq!(query(addr, "cpu_usage")[0]["value"][1], "1", "nothing of the conflict stored");
        // string-only lines store nothing and are counted
        let (code, _) = http(addr, "POST", "/write", b"log msg=\"hello\"\ncpu,host=b usage=3");
        assert_eq!(code, 204);
        let (_, metrics) = http(addr, "GET", "/metrics", b"");
        assert!(
            metrics.contains(
                "ocelli_ingest_influx_lines_dropped_total{reason=\"string_fields_only\"} "
            ),
            "{metrics}"
        );
        assert_eq!(query(addr, "count(cpu_usage)")[0]["value"][1], "2");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_status_endpoints_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("ocelli.toml");
    std::fs::write(
        &cfg_path,
        "listen = \"127.0.0.1:0\"\n[cluster]\namqp_url = \"amqp://u:hunter2@mq:5672/%2f\"\n",
    )
    .unwrap();
    let mut c = ocelli_server::Config::load(&cfg_path).unwrap();
    c.data_dir = dir.path().join("data");
    let server = Server::start(c).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let rt = json(addr, "/api/v1/status/runtimeinfo");
        assert_eq!(rt["data"]["storageRetention"], "15d", "{rt}");
        assert!(rt["data"]["startTime"].as_str().unwrap().ends_with('Z'));
        let cfg = json(addr, "/api/v1/status/config");
        let text = cfg["data"]["yaml"].as_str().unwrap();
        assert!(text.contains("amqp://u:<secret>@mq:5672"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let flags = json(addr, "/api/v1/status/flags");
        assert_eq!(flags["data"]["query.lookback-delta"], "5m", "{flags}");
        let wal = json(addr, "/api/v1/status/walreplay");
        assert_eq!(wal["data"]["current"], wal["data"]["max"]);
        let am = json(addr, "/api/v1/alertmanagers");
        assert!(
            am["data"]["activeAlertmanagers"][0]["url"]
                .as_str()
                .unwrap()
                .ends_with("/api/v2/alerts")
        );
        assert_eq!(am["data"]["droppedAlertmanagers"], serde_json::json!([]));
        let tm = json(addr, "/api/v1/targets/metadata");
        assert_eq!(tm["data"], serde_json::json!([]));

        let f = json(addr, "/api/v1/format_query?query=sum(rate(x%5B5m%5D))by(job)");
        assert_eq!(f["data"], "sum by (job) (rate(x[5m]))");

        // unknown API paths: a Prometheus-shaped error, not an empty 404
        let (code, body) = http(addr, "GET", "/api/v1/nope", b"");
        assert_eq!(code, 404);
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["status"], "error");
        assert_eq!(e["errorType"], "not_found");
        assert!(e["error"].as_str().unwrap().contains("/api/v1/nope"));

        // parse errors as Prometheus words them
        let (code, body) = http(addr, "GET", "/api/v1/query?query=sum(rate(x%5B5m%5D)", b"");
        assert_eq!(code, 400);
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            e["error"],
            "invalid parameter \"query\": 1:16: parse error: unclosed left parenthesis"
        );

        // stats
        let (code, _) = http(addr, "POST", "/api/v1/import/prometheus", b"st 1\n");
        assert_eq!(code, 204);
        let s = json(addr, "/api/v1/query?query=st&stats=all");
        assert_eq!(s["data"]["result"][0]["value"][1], "1", "{s}");
        assert_eq!(s["data"]["stats"]["samples"]["totalQueryableSamples"], 1, "{s}");
        assert!(s["data"]["stats"]["timings"]["evalTotalTime"].is_number(), "{s}");
        let plain = json(addr, "/api/v1/query?query=st");
        assert!(plain["data"].get("stats").is_none());
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

/// The lookback and the refresh scaled down 100 times: 3 s is "5 minutes", 0.6 s "1 minute".
fn pushgateway_config(dir: &std::path::Path) -> ocelli_server::Config {
    let mut c = config(dir);
    c.query.lookback_delta = "3s".into();
    c.ingest.pushgateway_refresh = "600ms".into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_groups_answer_until_deleted_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(pushgateway_config(dir.path())).await.unwrap();
    let addr = server.addr;
    let pushed_at = tokio::task::spawn_blocking(move || {
        let t = now_ms();
        let (code, msg) = http(
            addr,
            "PUT",
            "/metrics/job/backup",
            b"# TYPE backup_ok gauge\n# HELP backup_ok Whether it worked.\nbackup_ok 1\n",
        );
        assert_eq!(code, 200, "{msg}");
        let meta = json(addr, "/api/v1/metadata?metric=backup_ok");
        assert_eq!(meta["data"]["backup_ok"][0]["help"], "Whether it worked.", "{meta}");
        t
    })
    .await
    .unwrap();
    // three lookbacks later ("15 minutes"), the push still answers, with its push time
    tokio::time::sleep(Duration::from_secs(9)).await;
    tokio::task::spawn_blocking(move || {
        let v = query(addr, "time() - push_time_seconds{job=\"backup\"}");
        let age: f64 = v[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!(age >= 8.0, "push_time_seconds keeps the push time: {v}");
        assert_eq!(query(addr, "backup_ok")[0]["value"][1], "1");
        let _ = pushed_at;
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    // down for longer than the lookback: the group comes back with the restart
    tokio::time::sleep(Duration::from_secs(4)).await;
    let server = Server::start(pushgateway_config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || {
        assert_eq!(query(addr, "backup_ok")[0]["value"][1], "1", "after a restart");
        let (code, _) = http(addr, "DELETE", "/metrics/job/backup", b"");
        assert_eq!(code, 202);
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::spawn_blocking(move || {
        assert_eq!(query(addr, "backup_ok"), serde_json::json!([]), "deleted groups end");
        assert_eq!(query(addr, "push_time_seconds"), serde_json::json!([]));
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}
