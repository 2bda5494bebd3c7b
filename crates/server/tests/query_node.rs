//! The query role over real HTTP: a query node over two servers holding HA replicas of the same
//! series (label `replica`, one replica with a gap) answers with one series per replica pair,
//! switching replica only at the gap; series with equal labels split over the two servers are
//! united; `/api/v1/series` and label values come through the same merge; a store that is down
//! fails the query with the store named.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use ocelli_model::{Labels, Sample};
use ocelli_server::Server;
use ocelli_server::cluster::Role;
use ocelli_wire::remote_write::{self, DecodedSeries};
use serde_json::Value;

fn series(pairs: &[(&str, &str)], points: &[(i64, f64)]) -> DecodedSeries {
    DecodedSeries {
        labels: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        samples: points.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = common::http(addr, "GET", path, b"");
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_deduplicated_and_split_series_united() {
    let (da, db, dq) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start(common::config_old_samples(da.path())).await.unwrap();
    let b = Server::start(common::config_old_samples(db.path())).await.unwrap();
    let mut q = common::config_old_samples(dq.path());
    q.cluster.role = Role::Query;
    q.cluster.stores = vec![format!("http://{}", a.addr), format!("http://{}", b.addr)];
    q.cluster.replica_label = "replica".into();
    q.cluster.dedup_gap = "25s".into();
    let qn = Server::start(q).await.unwrap();
    let (aa, ab, aq) = (a.addr, b.addr, qn.addr);
    let t0 = 1_700_000_000_000;
    tokio::task::spawn_blocking(move || {
        // replica a: every 10 s, with a gap from 40 s to 90 s; replica b: every 10 s, offset 3 s
        let ra: Vec<(i64, f64)> =
            [0, 10, 20, 30, 90, 100].iter().map(|s| (t0 + s * 1000, 1.0)).collect();
        let rb: Vec<(i64, f64)> = (0..11).map(|i| (t0 + (i * 10 + 3) * 1000, 2.0)).collect();
        // `split`: the first half on a, the rest on b (a shard that moved)
        let split: Vec<(i64, f64)> = (0..10).map(|i| (t0 + i * 10_000, i as f64)).collect();
        let push = |addr, s: Vec<DecodedSeries>| {
            let body = remote_write::encode(&s).unwrap();
            let (status, text) = common::http(addr, "POST", "/api/v1/write", &body);
            assert_eq!(status, 204, "{text}");
        };
        push(
            aa,
            vec![
                series(&[("__name__", "ha"), ("replica", "a")], &ra),
                series(&[("__name__", "split"), ("host", "h1")], &split[..6]),
            ],
        );
        push(
            ab,
            vec![
                series(&[("__name__", "ha"), ("replica", "b")], &rb),
                series(&[("__name__", "split"), ("host", "h1")], &split[4..]),
            ],
        );
        let end = t0 / 1000 + 110;
        let (status, v) = get(aq, &format!("/api/v1/query?query=ha[2m]&time={end}"));
        assert_eq!(status, 200, "{v}");
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{v}");
        assert_eq!(result[0]["metric"], serde_json::json!({"__name__": "ha"}));
        let got: Vec<(i64, &str)> = result[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_i64().unwrap() - t0 / 1000, p[1].as_str().unwrap()))
            .collect();
        // a until its gap, then b to its end (b has no gap), never both
        let want: Vec<(i64, &str)> = [(0, "1"), (10, "1"), (20, "1"), (30, "1")]
            .into_iter()
            .chain([33, 43, 53, 63, 73, 83, 93, 103].map(|s| (s, "2")))
            .collect();
        assert_eq!(got, want);
        let (_, v) = get(aq, &format!("/api/v1/query?query=count_over_time(split[2m])&time={end}"));
        assert_eq!(v["data"]["result"][0]["value"][1], "10", "{v}");
        let (_, v) = get(aq, "/api/v1/series?match[]=ha");
        assert_eq!(v["data"], serde_json::json!([{"__name__": "ha"}]), "{v}");
        let (_, v) = get(aq, "/api/v1/label/host/values");
        assert_eq!(v["data"], serde_json::json!(["h1"]), "{v}");
        let (_, v) = get(aq, "/api/v1/labels?match[]=split");
        assert_eq!(v["data"], serde_json::json!(["__name__", "host"]), "{v}");
        // /federate on the query node: the newest sample of each merged series, from the stores
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as i64;
        push(aa, vec![series(&[("__name__", "fed"), ("replica", "a")], &[(now - 5000, 7.0)])]);
        push(ab, vec![series(&[("__name__", "fed"), ("replica", "b")], &[(now - 4000, 8.0)])]);
        let (status, text) = common::http(aq, "GET", "/federate?match[]=fed", b"");
        assert_eq!(status, 200, "{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // a replica that ends hands over to the other: the newest sample is b's
        assert_eq!(lines, [format!("fed 8 {}", now - 4000)], "{text}");
    })
    .await
    .unwrap();
    // a store that is down fails the query and is named
    let gone = b.addr;
    b.stop().await.unwrap();
    tokio::task::spawn_blocking(move || {
        let (status, v) = get(aq, "/api/v1/query?query=ha");
        assert!(status >= 400, "{v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(&format!("store http://{gone}")), "{e}");
    })
    .await
    .unwrap();
    qn.stop().await.unwrap();
    a.stop().await.unwrap();
}
