//! Downsampling end to end: two days of old samples pushed by remote_write are written out and
//! rolled up at 5 minutes and 1 hour by the server's own maintenance; range queries answer the
//! same with `resolution=raw`, `auto`, `5m` and `1h`; after raw retention has deleted the raw
//! blocks, aligned queries still answer from the rollups; a resolution that cannot answer a
//! query exactly is a 400 naming why.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{config, http, wait};
use ocelli_model::time::now_ms;
use ocelli_model::{Labels, STALE_NAN, Sample};
use ocelli_server::Server;
use ocelli_wire::remote_write::{self, DecodedSeries};

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

/// A counter with a reset and a gauge per host, every 30 s over `[d0, d0 + 2 days)`, with a
/// stale marker in day one.
fn data(d0: i64) -> Vec<DecodedSeries> {
    let mut out = Vec::new();
    for host in ["a", "b"] {
        let k = if host == "a" { 1.0 } else { 3.0 };
        let (mut c, mut g) = (Vec::new(), Vec::new());
        let mut t = d0 + 7_000;
        let mut v = 0.0;
        let mut i = 0u64;
        while t < d0 + 2 * DAY {
            v = if i == 1500 { 2.0 } else { v + k * (i % 7) as f64 };
            c.push(Sample::new(t, v));
            let gv = if i == 900 { STALE_NAN } else { ((i * 37) % 101) as f64 / k };
            g.push(Sample::new(t, gv));
            t += 30_000;
            i += 1;
        }
        for (name, samples) in [("req_total", c), ("temp", g)] {
            let labels = Labels::from_pairs([("__name__", name), ("host", host)]).unwrap();
            out.push(DecodedSeries { labels, samples });
        }
    }
    out
}

fn get_json(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http(addr, "GET", path, b"");
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// `(labels, [(t, value)])` of a matrix answer.
fn matrix(v: &serde_json::Value) -> Vec<(String, Vec<(f64, f64)>)> {
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().parse::<f64>().unwrap()))
                .collect();
            (s["metric"].to_string(), pts)
        })
        .collect()
}

fn assert_close(q: &str, a: &[(String, Vec<(f64, f64)>)], b: &[(String, Vec<(f64, f64)>)]) {
    assert_eq!(a.len(), b.len(), "{q}: {a:?} vs {b:?}");
    for ((la, pa), (lb, pb)) in a.iter().zip(b) {
        assert_eq!(la, lb, "{q}");
        assert_eq!(pa.len(), pb.len(), "{q} {la}");
        for (x, y) in pa.iter().zip(pb) {
            assert_eq!(x.0, y.0, "{q} {la}");
            let tol = 1e-9 * x.1.abs().max(y.1.abs());
            assert!((x.1 - y.1).abs() <= tol, "{q} {la} at {}: {} vs {}", x.0, x.1, y.1);
        }
    }
}

fn query_range(
    addr: std::net::SocketAddr,
    q: &str,
    start: i64,
    end: i64,
    res: &str,
) -> (u16, serde_json::Value) {
    let enc: String = url_encode(q);
    get_json(
        addr,
        &format!(
            "/api/v1/query_range?query={enc}&start={}&end={}&step=3600&resolution={res}",
            start / 1000,
            end / 1000
        ),
    )
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const QUERIES: [&str; 8] = [
    "rate(req_total[1h])",
    "increase(req_total[2h])",
    "resets(req_total[1h])",
    "avg_over_time(temp[1h])",
    "max_over_time(temp[3h])",
    "count_over_time(temp[1h])",
    "temp",
    "sum(rate(req_total[1h]))",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_answer_like_raw_data_and_outlive_it() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = (now_ms() - 5 * DAY).div_euclid(DAY) * DAY;
    let mut cfg = config(dir.path());
    cfg.storage.rollup_5m_after = "1ms".into();
    cfg.storage.rollup_1h_after = "1ms".into();
    let server = Server::start(cfg.clone()).await.unwrap();
    let addr = server.addr;
    let body = remote_write::encode(&data(d0)).unwrap();
    let (start, end) = (d0 + H, d0 + DAY);
    let raw_answers = tokio::task::spawn_blocking(move || {
        assert_eq!(http(addr, "POST", "/api/v1/write", &body), (204, String::new()));
        assert_eq!(http(addr, "POST", "/api/v1/admin/flush", b"").0, 204);
        // day one is a full day behind the newest sample: rolled up at both resolutions
        wait("rollups", std::time::Duration::from_secs(60), || {
            let m = http(addr, "GET", "/metrics", b"").1;
            (m.contains("ocelli_rollup_blocks{resolution=\"300\"} 1\n")
                && m.contains("ocelli_rollup_blocks{resolution=\"3600\"} 1\n"))
            .then_some(())
        });
        let mut raw = Vec::new();
        for q in QUERIES {
            let (code, r) = query_range(addr, q, start, end, "raw");
            assert_eq!(code, 200, "{q}: {r}");
            let r = matrix(&r);
            assert!(!r.is_empty(), "{q}: empty");
            for res in ["auto", "5m", "1h"] {
                let (code, x) = query_range(addr, q, start, end, res);
                assert_eq!(code, 200, "{q} {res}: {x}");
                assert_close(&format!("{q} at {res}"), &r, &matrix(&x));
            }
            raw.push(r);
        }
        // what a rollup cannot answer exactly
        for (q, res, want) in [
            ("deriv(temp[1h])", "1h", "deriv() cannot be answered from rollups"),
            ("rate(req_total[30m])", "1h", "the range 30m is not a multiple of it"),
            ("rate(req_total[1h])", "7m", "must be auto, raw or a duration that divides a day"),
        ] {
            let (code, x) = query_range(addr, q, start, end, res);
            assert_eq!(code, 400, "{q} {res}: {x}");
            assert_eq!(x["errorType"], "bad_data");
            assert!(x["error"].as_str().unwrap().contains(want), "{q} {res}: {x}");
        }
        raw
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    // raw retention of 30 hours: day one's raw blocks expire; the rollups still answer
    let mut cfg2 = cfg;
    cfg2.storage.retention = "30h".into();
    let server = Server::start(cfg2).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let half = d0 + 12 * H;
        wait("raw expiry", std::time::Duration::from_secs(60), || {
            let (_, r) = query_range(addr, "temp", start, half, "raw");
            matrix(&r).is_empty().then_some(())
        });
        for (q, want) in QUERIES.iter().zip(&raw_answers) {
            let (code, r) = query_range(addr, q, start, half, "auto");
            assert_eq!(code, 200, "{q}: {r}");
            // the raw answer of the same steps, from before expiry
            let want: Vec<(String, Vec<(f64, f64)>)> = want
                .iter()
                .map(|(l, p)| {
                    (l.clone(), p.iter().copied().filter(|x| x.0 * 1000.0 <= half as f64).collect())
                })
                .collect();
            assert_close(&format!("{q} after raw expiry"), &want, &matrix(&r));
        }
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}
