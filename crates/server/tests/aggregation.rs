//! Ingest aggregation over real HTTP on loopback: samples pushed by remote_write and
//! exposition import into `[[aggregation]]` rules, checked by reopening the data directory for
//! the derived series' exact values and for raw input stored or not per `keep_input`; a
//! rejected request feeds nothing.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{config, http, stored, wait};
use ocelli_model::time::now_ms;
use ocelli_model::{Labels, Sample};
use ocelli_server::Server;
use ocelli_server::aggregate::AggregationConfig;
use ocelli_wire::remote_write::{self, DecodedSeries};

fn rule(
    selector: &str,
    interval: &str,
    by: Option<&[&str]>,
    keep_input: bool,
) -> AggregationConfig {
    AggregationConfig {
        selector: selector.into(),
        interval: interval.into(),
        outputs: ["min", "max", "avg", "last", "sum", "count"].map(String::from).to_vec(),
        by: by.map(|b| b.iter().map(|s| s.to_string()).collect()),
        keep_input,
        flush_delay: Some("2s".into()),
        ..AggregationConfig::default()
    }
}

/// The one sample of a derived series, as (labels text, timestamp, value).
fn one(dir: &std::path::Path, name: &str) -> Vec<(String, i64, f64)> {
    stored(dir, name)
        .into_iter()
        .flat_map(|s| {
            let l = s.labels.to_string();
            s.samples.into_iter().map(move |x| (l.clone(), x.t, x.v))
        })
        .collect()
}

/// Open intervals are closed early at shutdown: a 1h rule over remote_write, grouped by
/// `host`, with raw input not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_aggregates_by_label_and_drops_raw_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.aggregation = vec![rule("{__name__=\"cpu\"}", "1h", Some(&["host"]), false)];
    let server = Server::start(cfg).await.unwrap();
    let addr = server.addr;
    let now = now_ms();
    let hour = now - now % 3_600_000;
    // the current hour's first milliseconds (storage takes a sample a few ms in the future)
    let t = |k: i64| hour + k;
    let s = |host: &str, core: &str, vals: &[(i64, f64)]| DecodedSeries {
        labels: Labels::from_pairs([("__name__", "cpu"), ("host", host), ("core", core)]).unwrap(),
        samples: vals.iter().map(|&(k, v)| Sample::new(t(k), v)).collect(),
    };
    let other = DecodedSeries {
        labels: Labels::from_pairs([("__name__", "mem"), ("host", "a")]).unwrap(),
        samples: vec![Sample::new(now, 7.0)],
    };
    let body = remote_write::encode(&[
        s("a", "0", &[(0, 1.0), (2, 5.0)]),
        s("a", "1", &[(1, 3.0)]),
        s("b", "0", &[(0, -2.0)]),
        other,
    ])
    .unwrap();
    tokio::task::spawn_blocking(move || {
        assert_eq!(http(addr, "POST", "/api/v1/write", &body), (204, String::new()));
        let (code, metrics) = http(addr, "GET", "/metrics", b"");
        assert_eq!(code, 200);
        assert!(metrics.contains("ocelli_aggregation_input_samples_total 4\n"), "{metrics}");
        assert!(metrics.contains("ocelli_aggregation_output_samples_total 0\n"), "{metrics}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let end = hour + 3_600_000;
    assert!(stored(dir.path(), "cpu").is_empty(), "keep_input = false stores no raw input");
    assert_eq!(stored(dir.path(), "mem").len(), 1, "unmatched series are stored");
    let check = |out: &str, va: f64, vb: f64| {
        let name = format!("cpu:1h_by_host_{out}");
        let got = one(dir.path(), &name);
        let want = vec![
            (format!("{name}{{host=\"a\"}}"), end, va),
            (format!("{name}{{host=\"b\"}}"), end, vb),
        ];
        assert_eq!(got, want, "{out}");
    };
    check("min", 1.0, -2.0);
    check("max", 5.0, -2.0);
    check("avg", 3.0, -2.0);
    check("sum", 9.0, -2.0);
    check("count", 3.0, 1.0);
    // last: the sample with the greatest timestamp, not the last sent
    check("last", 5.0, -2.0);
}

/// The background task closes an interval once its end plus the flush delay has passed; with
/// `keep_input = true` raw input is stored too. A rejected request feeds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_import_closes_intervals_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.aggregation = vec![rule("temp", "1s", None, true)];
    let server = Server::start(cfg).await.unwrap();
    let addr = server.addr;
    let now = now_ms();
    let sec = now - now % 1000;
    tokio::task::spawn_blocking(move || {
        // malformed second line: 400, nothing stored or aggregated
        let bad = format!("temp{{room=\"a\"}} 1 {sec}\ntemp{{room=}} 2 {sec}\n");
        let (code, msg) = http(addr, "POST", "/api/v1/import/prometheus", bad.as_bytes());
        assert_eq!(code, 400, "{msg}");
        let good = format!(
            "temp{{room=\"a\"}} 20.5 {sec}\ntemp{{room=\"b\"}} 19 {sec}\ntemp{{room=\"a\"}} 21.5 {}\n",
            sec + 1
        );
        let (code, msg) = http(addr, "POST", "/api/v1/import/prometheus", good.as_bytes());
        assert_eq!(code, 204, "{msg}");
        // 2 rooms x 6 outputs, written by the background task (within end + 2s + 1s tick)
        wait("aggregation outputs", std::time::Duration::from_secs(10), || {
            let (_, m) = http(addr, "GET", "/metrics", b"");
            m.contains("ocelli_aggregation_output_samples_total 12\n").then_some(())
        });
        let (_, m) = http(addr, "GET", "/metrics", b"");
        assert!(m.contains("ocelli_aggregation_input_samples_total 3\n"), "{m}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
    let end = sec + 1000;
    let raw = stored(dir.path(), "temp");
    assert_eq!(raw.len(), 2, "keep_input = true stores raw input");
    let check = |out: &str, va: f64, vb: f64| {
        let name = format!("temp:1s_{out}");
        let got = one(dir.path(), &name);
        let want = vec![
            (format!("{name}{{room=\"a\"}}"), end, va),
            (format!("{name}{{room=\"b\"}}"), end, vb),
        ];
        assert_eq!(got, want, "{out}");
    };
    check("min", 20.5, 19.0);
    check("max", 21.5, 19.0);
    check("avg", 21.0, 19.0);
    check("sum", 42.0, 19.0);
    check("count", 2.0, 1.0);
    check("last", 21.5, 19.0);
}
