//! `POST /api/v1/read` (Prometheus remote_read, samples answers): a real Prometheus with
//! Ocelli as its remote_read storage and no data of its own answers PromQL exactly as Ocelli
//! does over the same data; malformed requests get a 400 naming what is wrong.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, http, request_raw};
use ocelli_model::{Labels, MatchOp, Matcher, Sample};
use ocelli_server::Server;
use ocelli_testkit::{Service, free_port, require};
use ocelli_wire::remote_read::{self, ReadQuery};
use ocelli_wire::remote_write::{self, DecodedSeries, Limits};
use serde_json::Value;

const STEP_MS: i64 = 15_000;

fn workload(start: i64) -> Vec<DecodedSeries> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::new();
    for h in 0..4 {
        let host = format!("h{h}");
        for (name, counter) in [("rr_gauge", false), ("rr_counter_total", true)] {
            let labels = Labels::from_pairs([("__name__", name), ("host", host.as_str())]).unwrap();
            let mut v = 0.0;
            let samples = (0..80)
                .map(|k| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v = if counter { v + (x % 1000) as f64 } else { (x % 10_000) as f64 / 100.0 };
                    Sample::new(start + k * STEP_MS, v)
                })
                .collect();
            out.push(DecodedSeries { labels, samples });
        }
    }
    out
}

fn query(addr: SocketAddr, q: &str, time: i64) -> Value {
    let p = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", q)
        .append_pair("time", &format!("{:.3}", time as f64 / 1000.0))
        .finish();
    let (code, body) = http(addr, "GET", &format!("/api/v1/query?{p}"), b"");
    assert_eq!(code, 200, "{q}: {body}");
    let mut v: Value = serde_json::from_str(&body).unwrap();
    // one order for both (Prometheus sorts some answers, not all)
    if let Some(r) = v["data"]["result"].as_array_mut() {
        r.sort_by_key(|s| s["metric"].to_string());
    }
    v["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reading_from_ocelli_answers_as_ocelli_does() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(&dir.path().join("ocelli"))).await.unwrap();
    let ours = server.addr;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let start = (now - 30 * 60_000) / STEP_MS * STEP_MS;
    let w = workload(start);
    let body = remote_write::encode(&w).unwrap();

    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prom_dir = dir.path().join("prom");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1h\nremote_read:\n  - url: http://{ours}/api/v1/read\n    read_recent: true\n"
        ),
    )
    .unwrap();
    let prom = tokio::task::spawn_blocking(move || {
        let (code, text) = http(ours, "POST", "/api/v1/write", &body);
        assert_eq!(code, 204, "{text}");
        let mut cmd = Command::new(require("prometheus", "prometheus"));
        cmd.arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
            .arg(format!("--web.listen-address={prom_addr}"));
        let svc = Service::start(cmd, prom_addr, Duration::from_secs(60));
        let t0 = Instant::now();
        while http(prom_addr, "GET", "/-/ready", b"").0 != 200 {
            assert!(t0.elapsed() < Duration::from_secs(60), "Prometheus not ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        svc
    })
    .await
    .unwrap();

    let at = start + 79 * STEP_MS;
    let mid = start + 41 * STEP_MS + 7_000;
    let compared = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for q in [
            "rr_gauge",
            r#"rr_gauge{host=~"h1|h2"}"#,
            r#"rr_counter_total{host!="h0"}[2m]"#,
            "rate(rr_counter_total[5m])",
            "sum by (host) (increase(rr_counter_total[10m]))",
            "max_over_time(rr_gauge[7m]) - min_over_time(rr_gauge[7m])",
            r#"count({__name__=~"rr_.*", host!~"h3"})"#,
            "topk(2, rr_gauge)",
        ] {
            for t in [at, mid] {
                let (theirs, mine) = (query(prom_addr, q, t), query(ours, q, t));
                assert!(
                    !mine["result"].as_array().unwrap().is_empty(),
                    "{q} at {t}: Ocelli answers nothing; the comparison would prove nothing"
                );
                assert_eq!(theirs, mine, "{q} at {t}: Prometheus over remote_read differs");
                n += 1;
            }
        }
        n
    })
    .await
    .unwrap();
    assert_eq!(compared, 16);
    drop(prom);

    // the protocol itself: several queries in one request, each answered in order
    let q = |name: &str| ReadQuery {
        start_ms: start,
        end_ms: start + 9 * STEP_MS,
        matchers: vec![
            Matcher::equal("__name__", name),
            Matcher::new(MatchOp::RegexMatch, "host", "h[01]").unwrap(),
        ],
    };
    let req =
        remote_read::encode_request(&[q("rr_gauge"), q("nothing"), q("rr_counter_total")]).unwrap();
    let (code, got) = tokio::task::spawn_blocking(move || {
        let r = request_raw(ours, "POST", "/api/v1/read", "", &req);
        (r.status, remote_read::decode_response(&r.body, &Limits::default()))
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let got = got.unwrap();
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [2, 0, 2]);
    let want = &w.iter().find(|s| s.labels.to_string() == r#"rr_gauge{host="h0"}"#).unwrap();
    assert_eq!(got[0][0].1, want.samples[..10]);

    // bad requests: 400 with the reason
    for (body, says) in [
        (b"not snappy".to_vec(), "remote read request: body is not one snappy block"),
        (snap::raw::Encoder::new().compress_vec(b"\xff\xff").unwrap(), "not a ReadRequest"),
    ] {
        let (code, text) =
            tokio::task::spawn_blocking(move || http(ours, "POST", "/api/v1/read", &body))
                .await
                .unwrap();
        assert_eq!(code, 400, "{text}");
        assert!(text.contains(says), "{text}");
    }
    server.stop().await.unwrap();
}
