//! The server over real HTTP on loopback: health, remote_write ingest (good and malformed
//! bodies), engine status and flush.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use ocelli_model::{Labels, Matcher, STALE_NAN, Sample};
use ocelli_server::{Config, Server};
use ocelli_wire::remote_write::{self, DecodedSeries};

/// A minimal HTTP/1.1 client: one request per connection; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

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
    let (db, _) = ocelli_tsdb::Db::open(
        dir.path(),
        ocelli_tsdb::Options { background: false, ..Default::default() },
    )
    .unwrap();
    let m1 = db.select(&[Matcher::equal("__name__", "m1")], i64::MIN, i64::MAX).unwrap();
    assert_eq!(m1[0].samples.len(), 101);
    assert!(ocelli_model::is_stale_nan(m1[0].samples[100].v));
    assert!(db.select(&[Matcher::equal("__name__", "m3")], i64::MIN, i64::MAX).unwrap().is_empty());
}

#[tokio::test]
async fn oversized_body_is_rejected_with_the_limit_in_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ingest.max_body_bytes = 1000;
    let server = Server::start(cfg).await.unwrap();
    let addr = server.addr;
    let body = remote_write::encode(&[series("big", 2000)]).unwrap();
    assert!(body.len() > 1000);
    let (code, msg) =
        tokio::task::spawn_blocking(move || http(addr, "POST", "/api/v1/write", &body))
            .await
            .unwrap();
    server.stop().await.unwrap();
    assert!(code == 400 || code == 413, "{code} {msg}");
}
