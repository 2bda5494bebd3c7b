//! The server over real HTTP on loopback: health, remote_write ingest (good and malformed
//! bodies), engine status and flush.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{config_old_samples as config, http, request, stored};

use ocelli_model::{Labels, STALE_NAN, Sample};
use ocelli_server::Server;
use ocelli_wire::remote_write::{self, DecodedSeries};

fn series(name: &str, n: i64) -> DecodedSeries {
    DecodedSeries {
        labels: Labels::from_pairs([("__name__", name), ("job", "t")]).unwrap(),
        samples: (0..n).map(|i| Sample::new(1_000 + i * 10, i as f64)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_round_trip_and_bad_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    let results = tokio::task::spawn_blocking(move || {
        assert_eq!(http(addr, "GET", "/-/healthy", b"").0, 200);
        assert_eq!(http(addr, "GET", "/-/ready", b"").0, 200);

        let mut s = series("m1", 100);
        s.samples.push(Sample::new(5_000, STALE_NAN));
        let body = remote_write::encode(&[s, series("m2", 10)]).unwrap();
        assert_eq!(http(addr, "POST", "/api/v1/write", &body), (204, String::new()));

        // garbage: 400 with a precise message, nothing stored
        let (code, msg) = http(addr, "POST", "/api/v1/write", b"\xff\xff\xff\xff\xff garbage");
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains("\"errorType\":\"bad_data\""), "{msg}");
        assert!(msg.contains("snappy"), "{msg}");
        // a valid body whose second series has no metric name: all or nothing
        let bad = DecodedSeries {
            labels: Labels::from_pairs([("job", "t")]).unwrap(),
            samples: vec![Sample::new(1, 1.0)],
        };
        let body = remote_write::encode(&[series("m3", 5), bad]).unwrap();
        let (code, msg) = http(addr, "POST", "/api/v1/write", &body);
        assert_eq!(code, 400, "{msg}");

        let (code, status) = http(addr, "GET", "/api/v1/status/tsdb", b"");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["data"]["headSamples"], 111, "{status}");
        assert_eq!(v["data"]["headSeries"], 2, "{status}");

        assert_eq!(http(addr, "POST", "/api/v1/admin/flush", b"").0, 204);
        let (_, status) = http(addr, "GET", "/api/v1/status/tsdb", b"");
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["data"]["blockSamples"], 111, "{status}");
    })
    .await;
    server.stop().await.unwrap();
    results.unwrap();

    // after a restart the data is there, the stale marker included, and m3 was never stored
    let m1 = stored(dir.path(), "m1");
    assert_eq!(m1[0].samples.len(), 101);
    assert!(ocelli_model::is_stale_nan(m1[0].samples[100].v));
    assert!(stored(dir.path(), "m3").is_empty());
}

#[tokio::test]
async fn oversized_body_is_rejected_with_the_limit_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ingest.max_body_bytes = 1000;
    let server = Server::start(cfg).await.unwrap();
    let addr = server.addr;
    // just over the limit: the server still reads it whole in one go, so its early answer is
    // not lost to a connection reset caused by unread request bytes
    let body = remote_write::encode(&[series("big", 200)]).unwrap();
    assert!(body.len() > 1000 && body.len() < 4000, "{}", body.len());
    let (code, msg) =
        tokio::task::spawn_blocking(move || http(addr, "POST", "/api/v1/write", &body))
            .await
            .unwrap();
    server.stop().await.unwrap();
    assert_eq!(code, 413, "{msg}");
    assert!(msg.contains("request body is over the limit of 1000 bytes"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_line_protocol_plain_and_gzip() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let lines = b"cpu,host=a usage_idle=90.5,usage_user=3i 1700000000\ncpu,host=b usage_idle=80 1700000000\n";
        let (code, msg) = request(addr, "POST", "/write?db=telegraf&precision=s", "", lines);
        assert_eq!(code, 204, "{msg}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"mem,host=a used=1024i 1700000000000000000\n").unwrap();
        let body = gz.finish().unwrap();
        let (code, msg) =
            request(addr, "POST", "/api/v2/write?bucket=b1&org=o", "Content-Encoding: gzip\r\n", &body);
        assert_eq!(code, 204, "{msg}");
        // a bad second line: nothing of the request is stored
        let (code, msg) = request(addr, "POST", "/write", "", b"ok v=1\nbad v=\n");
        assert_eq!(code, 400);
        assert!(msg.contains("line 2, column"), "{msg}");
        let (code, msg) = request(addr, "POST", "/write?precision=h", "", b"m v=1 1\n");
        assert_eq!(code, 400);
        assert!(msg.contains("invalid precision"), "{msg}");
        let (code, msg) = request(addr, "POST", "/write", "Content-Encoding: gzip\r\n", b"not gzip");
        assert_eq!(code, 400);
        assert!(msg.contains("gzip body does not decompress"), "{msg}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let get = |name: &str| stored(dir.path(), name);
    let idle = get("cpu_usage_idle");
    assert_eq!(idle.len(), 2);
    assert_eq!(idle[0].labels.get("db"), Some("telegraf"));
    assert_eq!(idle[0].samples, vec![Sample::new(1_700_000_000_000, 90.5)]);
    assert_eq!(get("cpu_usage_user")[0].samples, vec![Sample::new(1_700_000_000_000, 3.0)]);
    let mem = get("mem_used");
    assert_eq!(mem[0].labels.get("db"), Some("b1"));
    assert_eq!(mem[0].samples, vec![Sample::new(1_700_000_000_000, 1024.0)]);
    assert!(get("ok_v").is_empty(), "a rejected request must store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_text_import() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let text = b"# HELP up Whether up.\n# TYPE up gauge\nup{job=\"a\"} 1 1700000000000\nup{job=\"b\"} 0 1700000000000\n";
        let (code, msg) = request(addr, "POST", "/api/v1/import/prometheus", "", text);
        assert_eq!(code, 204, "{msg}");
        let (code, msg) =
            request(addr, "POST", "/api/v1/import/prometheus", "", b"ok 1\nbad{job=} 1\n");
        assert_eq!(code, 400);
        assert!(msg.contains("line 2, column"), "{msg}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
    let up = stored(dir.path(), "up");
    assert_eq!(up.len(), 2);
    assert_eq!(up[1].samples, vec![Sample::new(1_700_000_000_000, 0.0)]);
    assert!(stored(dir.path(), "ok").is_empty(), "a rejected request must store nothing");
}
