//! PromQL exactness against the reference: the same samples are pushed with remote_write into a
//! real Prometheus 2.42 (Debian's `prometheus`, started on loopback) and into Ocelli, and every
//! query of the list below, instant at several times and as a range query, must give the same
//! answer from both: the same series and values equal within 1e-9 relative (NaN equals NaN).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, http};
use ocelli_model::{Labels, Sample};
use ocelli_server::Server;
use ocelli_testkit::{Service, free_port, require};
use ocelli_wire::remote_write::{self, DecodedSeries};
use serde_json::Value;

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 240; // one hour

/// A deterministic generator: xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

/// node_exporter-like series for 6 instances over one hour: CPU counters (one instance resets
/// half way), load gauges, memory, a histogram, and a series that stops (staleness).
fn workload(start: i64) -> Vec<DecodedSeries> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let ts = |i: i64| start + i * STEP_MS;
    for h in 0..6 {
        let inst = format!("host-{h}:9100");
        let job = if h % 2 == 0 { "node" } else { "edge" };
        // 15 CPUs x 3 modes x 6 hosts = 270 series: selections of them are large enough for
        // storage to read them on several threads
        for cpu in 0..15 {
            for mode in ["idle", "user", "system"] {
                let cpu_s = cpu.to_string();
                let l = labels(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("instance", &inst),
                    ("job", job),
                    ("cpu", &cpu_s),
                    ("mode", mode),
                ]);
                let mut v = rng.next() * 1000.0;
                let samples = (0..POINTS)
                    .map(|i| {
                        if h == 3 && i == POINTS / 2 {
                            v = rng.next();
                        }
                        v += rng.next() * 15.0;
                        Sample::new(ts(i), (v * 100.0).round() / 100.0)
                    })
                    .collect();
                out.push(DecodedSeries { labels: l, samples });
            }
        }
        for (name, scale) in [("node_load1", 2.0), ("node_load5", 1.5)] {
            let l = labels(&[("__name__", name), ("instance", &inst), ("job", job)]);
            let samples = (0..POINTS).map(|i| Sample::new(ts(i), rng.next() * scale)).collect();
            out.push(DecodedSeries { labels: l, samples });
        }
        let total = 8.0 * 1024.0 * 1024.0 * 1024.0 * f64::from(h + 1);
        let l = labels(&[
            ("__name__", "node_memory_MemTotal_bytes"),
            ("instance", &inst),
            ("job", job),
        ]);
        out.push(DecodedSeries {
            labels: l,
            samples: (0..POINTS).map(|i| Sample::new(ts(i), total)).collect(),
        });
        let l = labels(&[
            ("__name__", "node_memory_MemAvailable_bytes"),
            ("instance", &inst),
            ("job", job),
        ]);
        let samples = (0..POINTS)
            .map(|i| {
                Sample::new(ts(i), (total * (0.2 + 0.6 * rng.next()) / 4096.0).floor() * 4096.0)
            })
            .collect();
        out.push(DecodedSeries { labels: l, samples });
        // a histogram: cumulative bucket counters
        let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
        let mut counts = [0.0f64; 6];
        let mut series: Vec<Vec<Sample>> = vec![Vec::new(); 6];
        for i in 0..POINTS {
            let n = (rng.next() * 20.0).floor();
            for _ in 0..n as usize {
                let x = rng.next() * 1.2;
                for (b, ub) in bounds.iter().enumerate() {
                    let ub: f64 = if *ub == "+Inf" { f64::INFINITY } else { ub.parse().unwrap() };
                    if x <= ub {
                        counts[b] += 1.0;
                    }
                }
            }
            for b in 0..6 {
                series[b].push(Sample::new(ts(i), counts[b]));
            }
        }
        for (b, samples) in series.into_iter().enumerate() {
            let l = labels(&[
                ("__name__", "http_request_duration_seconds_bucket"),
                ("instance", &inst),
                ("job", job),
                ("le", bounds[b]),
            ]);
            out.push(DecodedSeries { labels: l, samples });
        }
        // up, which ends 20 minutes early with a stale marker on one instance
        let l = labels(&[("__name__", "up"), ("instance", &inst), ("job", job)]);
        let mut samples: Vec<Sample> = (0..POINTS).map(|i| Sample::new(ts(i), 1.0)).collect();
        if h == 1 {
            samples.truncate((POINTS - 80) as usize);
            samples.push(Sample::new(ts(POINTS - 80), ocelli_model::STALE_NAN));
        }
        out.push(DecodedSeries { labels: l, samples });
    }
    out
}

/// Remote-write bodies in time order, a few steps each (Prometheus rejects samples far older
/// than the newest it has).
fn bodies(w: &[DecodedSeries], start: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let chunk = 20;
    let mut i = 0;
    while i < POINTS {
        let (lo, hi) = (start + i * STEP_MS, start + (i + chunk) * STEP_MS);
        let batch: Vec<DecodedSeries> = w
            .iter()
            .map(|s| DecodedSeries {
                labels: s.labels.clone(),
                samples: s.samples.iter().copied().filter(|x| x.t >= lo && x.t < hi).collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        out.push(remote_write::encode(&batch).unwrap());
        i += chunk;
    }
    out
}

const QUERIES: &[&str] = &[
    "node_load1",
    "node_load1 offset 7m",
    "node_load1 @ {mid}",
    "rate(node_cpu_seconds_total[5m] @ {mid})",
    "up",
    "{__name__=~\"node_load.*\", job=\"node\"}",
    "node_load1{instance=~\"host-[12].*\"}",
    "node_load1{instance!~\"host-[12].*\", job!=\"edge\"}",
    "rate(node_cpu_seconds_total[5m])",
    "rate(node_cpu_seconds_total[1m])",
    "irate(node_cpu_seconds_total[2m])",
    "increase(node_cpu_seconds_total[10m])",
    "increase(node_cpu_seconds_total[17m] offset 3m)",
    "delta(node_load1[10m])",
    "idelta(node_load1[5m])",
    "deriv(node_load1[10m])",
    "predict_linear(node_load1[10m], 600)",
    "holt_winters(node_load1[10m], 0.5, 0.3)",
    "changes(node_load1[10m])",
    "resets(node_cpu_seconds_total[40m])",
    "avg_over_time(node_load1[10m])",
    "min_over_time(node_load1[10m])",
    "max_over_time(node_load1[10m])",
    "sum_over_time(node_load1[10m])",
    "count_over_time(node_load1[10m])",
    "last_over_time(node_load1[10m])",
    "present_over_time(up[10m])",
    "stddev_over_time(node_load1[10m])",
    "stdvar_over_time(node_load1[10m])",
    "quantile_over_time(0.9, node_load1[10m])",
    "absent_over_time(up{instance=\"host-1:9100\"}[5m])",
    "absent_over_time(nonexistent{job=\"x\"}[5m])",
    "absent(nonexistent{job=\"x\", instance=~\"a.*\"})",
    "absent(node_load1)",
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    "avg without (cpu) (rate(node_cpu_seconds_total[5m]))",
    "sum(node_load1) by (job)",
    "count by (job) (node_cpu_seconds_total)",
    "min by (job) (node_load1)",
    "max by (job) (node_load1)",
    "group by (job) (node_load1)",
    "stddev by (job) (node_load1)",
    "stdvar(node_load1)",
    "topk(3, node_load1)",
    "bottomk(2, node_load5)",
    "topk by (job) (1, node_load1)",
    "quantile(0.5, node_load1)",
    "quantile by (job) (0.9, node_load5)",
    "count_values(\"v\", round(node_load1))",
    "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    "node_load1 > 1",
    "node_load1 > bool 1",
    "2 < node_load1",
    "node_load1 == bool node_load5",
    "node_load1 >= node_load5",
    "node_load1 - node_load5",
    "node_load1 + on(instance) node_load5",
    "node_load1 * ignoring(job) node_load5",
    "node_cpu_seconds_total / on(instance, job) group_left node_memory_MemTotal_bytes",
    "node_memory_MemTotal_bytes * on(instance) group_right(job) rate(node_cpu_seconds_total[5m])",
    "rate(node_cpu_seconds_total[5m]) / on(instance) group_left(job) node_memory_MemTotal_bytes",
    "node_load1 and node_load1 > 1",
    "node_load1 or up",
    "node_load1 unless node_load1 > 1",
    "up and on(instance) node_load1 > 1",
    "node_load5 unless ignoring(job) node_load1 > 1.5",
    "abs(-node_load1)",
    "-node_load1",
    "ceil(node_load1)",
    "floor(node_load1)",
    "exp(node_load1)",
    "sqrt(node_load1)",
    "ln(node_load1)",
    "log2(node_load1)",
    "log10(node_load1)",
    "sgn(node_load1 - 1)",
    "round(node_load1, 0.1)",
    "round(node_load1)",
    "clamp(node_load1, 0.5, 1.5)",
    "clamp_min(node_load1, 1)",
    "clamp_max(node_load1, 1)",
    "sin(node_load1) + cos(node_load1) + tan(node_load1)",
    "asin(node_load1 / 2) + acos(node_load1 / 2) + atan(node_load1)",
    "sinh(node_load1) + cosh(node_load1) + tanh(node_load1)",
    "asinh(node_load1) + acosh(node_load1 + 1) + atanh(node_load1 / 3)",
    "deg(node_load1) + rad(node_load1)",
    "node_load1 atan2 node_load5",
    "node_load1 % 0.3",
    "node_load1 ^ 2",
    "2 ^ 3 * 4 - 1",
    "pi()",
    "timestamp(node_load1)",
    "timestamp(node_load1 offset 1m)",
    "time()",
    "vector(1)",
    "vector(time())",
    "scalar(sum(node_load1))",
    "scalar(node_load1)",
    "node_load1 * scalar(sum(node_memory_MemTotal_bytes) / 1e10)",
    "hour()",
    "minute(vector(time()))",
    "day_of_week()",
    "month()",
    "year()",
    "day_of_month()",
    "day_of_year()",
    "days_in_month()",
    "hour(timestamp(node_load1))",
    "label_replace(node_load1, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_replace(node_load1, \"job\", \"\", \"job\", \"edge\")",
    "label_join(node_load1, \"x\", \"-\", \"instance\", \"job\")",
    "histogram_quantile(0.9, rate(http_request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (le, job) (increase(http_request_duration_seconds_bucket[10m])))",
    "sort(node_load1)",
    "sort_desc(node_load1)",
    "max_over_time(rate(node_cpu_seconds_total[5m])[15m:1m])",
    "avg_over_time(node_load1[10m:30s])",
    "rate(node_cpu_seconds_total[10m:1m] offset 2m)",
    "sum(rate(node_cpu_seconds_total{mode!=\"idle\"}[5m])) by (instance) / sum(rate(node_cpu_seconds_total[5m])) by (instance)",
    "count(count by (instance) (node_cpu_seconds_total))",
    "sum(up) == bool 6",
    "node_load1 > 0.5 < 1.5",
];

/// A result normalised for comparison: series label set (as JSON) -> list of (t, value).
type Normal = BTreeMap<String, Vec<(f64, f64)>>;

fn num(v: &Value) -> f64 {
    match v.as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

fn normalise(body: &str) -> Result<(String, Normal), String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("bad JSON {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{} {}", v["errorType"], v["error"]));
    }
    let data = &v["data"];
    let kind = data["resultType"].as_str().unwrap().to_string();
    let mut out = Normal::new();
    let pt = |p: &Value| (p[0].as_f64().unwrap(), num(&p[1]));
    match kind.as_str() {
        "scalar" => {
            out.insert("scalar".into(), vec![pt(&data["result"])]);
        }
        "vector" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), vec![pt(&s["value"])]);
            }
        }
        "matrix" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(
                    s["metric"].to_string(),
                    s["values"].as_array().unwrap().iter().map(pt).collect(),
                );
            }
        }
        _ => {}
    }
    Ok((kind, out))
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn diff(reference: &Normal, ours: &Normal) -> Option<String> {
    if reference.keys().ne(ours.keys()) {
        let only_ref: Vec<_> =
            reference.keys().filter(|k| !ours.contains_key(*k)).take(3).collect();
        let only_ours: Vec<_> =
            ours.keys().filter(|k| !reference.contains_key(*k)).take(3).collect();
        return Some(format!(
            "series differ: {} vs {} (only in Prometheus: {only_ref:?}; only in Ocelli: {only_ours:?})",
            reference.len(),
            ours.len()
        ));
    }
    for (k, r) in reference {
        let o = &ours[k];
        if r.len() != o.len() {
            return Some(format!("{k}: {} points vs {}", r.len(), o.len()));
        }
        for (x, y) in r.iter().zip(o) {
            if x.0 != y.0 || !same(x.1, y.1) {
                return Some(format!("{k}: Prometheus {x:?}, Ocelli {y:?}"));
            }
        }
    }
    None
}

fn get(addr: std::net::SocketAddr, path: &str, params: &[(&str, String)]) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    http(addr, "GET", &format!("{path}?{q}"), b"").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_match_prometheus() {
    let prometheus = require("prometheus", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("prom").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver");
    let prom = Service::start(cmd, addr, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(prom.addr, "GET", "/-/ready", b"").0 != 200 {
        assert!(Instant::now() < deadline, "Prometheus not ready in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    let ours_dir = dir.path().join("ocelli");
    let server = Server::start(config(&ours_dir)).await.unwrap();

    // an hour ending a minute ago, aligned to the step like scrapes
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let end = (now - 60_000) / STEP_MS * STEP_MS;
    let start = end - (POINTS - 1) * STEP_MS;
    let w = workload(start);
    for body in bodies(&w, start) {
        let (code, text) = http(prom.addr, "POST", "/api/v1/write", &body);
        assert!(code == 204 || code == 200, "Prometheus rejected a write: {code} {text}");
        let (code, text) = http(server.addr, "POST", "/api/v1/write", &body);
        assert_eq!(code, 204, "Ocelli rejected a write: {text}");
    }

    let mid = start + 37 * 60_000 + 7_000;
    let times = [end, mid, start + 2 * 60_000, end + 9 * 60_000];
    let mut failures = Vec::new();
    let mut compared = 0;
    for q in QUERIES {
        let q = q.replace("{mid}", &format!("{:.3}", mid as f64 / 1000.0));
        let mut cases: Vec<(String, Vec<(&str, String)>)> = times
            .iter()
            .map(|t| {
                let t = format!("{:.3}", *t as f64 / 1000.0);
                (format!("instant at {t}"), vec![("query", q.clone()), ("time", t)])
            })
            .collect();
        cases.push((
            "range".into(),
            vec![
                ("query", q.clone()),
                ("start", format!("{:.3}", (start + 600_000) as f64 / 1000.0)),
                ("end", format!("{:.3}", (end + 300_000) as f64 / 1000.0)),
                ("step", "47".into()),
            ],
        ));
        for (what, params) in cases {
            let path = if what == "range" { "/api/v1/query_range" } else { "/api/v1/query" };
            let r = normalise(&get(prom.addr, path, &params));
            let o = normalise(&get(server.addr, path, &params));
            compared += 1;
            match (r, o) {
                (Ok((rk, r)), Ok((ok, o))) => {
                    if rk != ok {
                        failures.push(format!("{q} [{what}]: type {rk} vs {ok}"));
                    } else if let Some(d) = diff(&r, &o) {
                        failures.push(format!("{q} [{what}]: {d}"));
                    }
                }
                (Err(re), Err(_)) => {
                    // both refuse: fine, but the reference must not refuse everything
                    failures.push(format!("{q} [{what}]: both failed ({re}); fix the query"));
                }
                (Ok(_), Err(oe)) => failures.push(format!("{q} [{what}]: Ocelli failed: {oe}")),
                (Err(re), Ok(_)) => failures.push(format!("{q} [{what}]: Prometheus failed: {re}")),
            }
        }
    }
    server.stop().await.unwrap();
    drop(prom);
    assert!(
        failures.is_empty(),
        "{} of {compared} comparisons differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
