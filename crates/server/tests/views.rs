//! The CB-Dragonfly-style views over real HTTP on loopback: samples with known values are
//! imported as exposition text with the agent's names and identity labels, agents are
//! registered by heartbeat, and the per-VM, per-service and per-cloud answers are checked
//! number by number against a reference computed here from the same samples (a period at `T`
//! covers `(T - period, T]`). Also: every 400 and 404, and the OpenAPI document against the
//! routes (every view route documented, every documented operation routed).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;

use common::http;
use ocelli_server::Server;
use serde_json::{Value, json};

/// Seconds between samples.
const EVERY: i64 = 15;
/// Seconds of data before the end.
const SPAN: i64 = 7200;

/// One stored series: its exposition name and labels, and its value at time `t` (s).
struct Gen {
    name: &'static str,
    vm: &'static str,
    service: &'static str,
    csp: &'static str,
    extra: &'static str,
    f: fn(i64) -> f64,
}

fn cpu_a(t: i64) -> f64 {
    ((t / EVERY) % 7 * 10 + 5) as f64
}
fn cpu_b(t: i64) -> f64 {
    ((t / EVERY) % 5 * 3) as f64 + 0.5
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn series() -> Vec<Gen> {
    let g = |name, vm, service, csp, extra, f| Gen { name, vm, service, csp, extra, f };
    vec![
        g("ocelli_cpu_utilization_percent", "vm-a", "svc-1", "aws", "", cpu_a as fn(i64) -> f64),
        g("ocelli_cpu_utilization_percent", "vm-b", "svc-1", "aws", "", cpu_b),
        // stored but never registered: per-VM view only, never aggregated
        g("ocelli_cpu_utilization_percent", "vm-c", "svc-1", "aws", "", |_| 99.0),
        g("ocelli_cpu_utilization_percent", "vm-d", "svc-2", "gcp", "", |_| 70.0),
        g("node_memory_MemTotal_bytes", "vm-a", "svc-1", "aws", "", |_| 8.0 * GIB),
        g("node_memory_MemTotal_bytes", "vm-b", "svc-1", "aws", "", |_| 4.0 * GIB),
        g("node_memory_MemTotal_bytes", "vm-c", "svc-1", "aws", "", |_| 64.0 * GIB),
        g("ocelli_memory_utilization_percent", "vm-a", "svc-1", "aws", "", |t| {
            (t % 600) as f64 / 10.0
        }),
        g("ocelli_memory_utilization_percent", "vm-b", "svc-1", "aws", "", |_| 20.0),
        // counters at constant rates: vm-a 1000 + 500 bytes/s on two devices, vm-b 3000
        g("node_network_receive_bytes_total", "vm-a", "svc-1", "aws", ",device=\"eth0\"", |t| {
            1000.0 * t as f64
        }),
        g("node_network_receive_bytes_total", "vm-a", "svc-1", "aws", ",device=\"eth1\"", |t| {
            500.0 * t as f64
        }),
        g("node_network_receive_bytes_total", "vm-b", "svc-1", "aws", ",device=\"eth0\"", |t| {
            3000.0 * t as f64
        }),
    ]
}

/// `(first sample time, end)` in seconds: the end is the last whole hour.
fn times() -> (i64, i64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let end = now.as_secs() as i64 / 3600 * 3600;
    (end - SPAN, end)
}

/// The reference: `crit` of `f`'s samples in `(t - step, t]`.
fn expect(f: fn(i64) -> f64, start: i64, crit: &str, t: i64, step: i64) -> Option<f64> {
    let vals: Vec<f64> = (0..=SPAN / EVERY)
        .map(|k| start + k * EVERY)
        .filter(|s| *s > t - step && *s <= t)
        .map(f)
        .collect();
    let last = *vals.last()?;
    Some(match crit {
        "avg" => vals.iter().sum::<f64>() / vals.len() as f64,
        "max" => vals.iter().copied().fold(f64::MIN, f64::max),
        "min" => vals.iter().copied().fold(f64::MAX, f64::min),
        _ => last,
    })
}

fn import(addr: SocketAddr, start: i64) {
    for g in series() {
        let mut body = String::new();
        for k in 0..=SPAN / EVERY {
            let t = start + k * EVERY;
            body.push_str(&format!(
                "{}{{ns=\"default\",service_type=\"vm\",service_id=\"{}\",vm_id=\"{}\",csp=\"{}\",region=\"r1\"{}}} {} {}\n",
                g.name, g.service, g.vm, g.csp, g.extra, (g.f)(t), t * 1000
            ));
        }
        let (code, text) = http(addr, "POST", "/api/v1/import/prometheus", body.as_bytes());
        assert_eq!(code, 204, "{text}");
    }
}

fn register(addr: SocketAddr, vm: &str, service: &str, csp: &str) {
    let body = json!({
        "ns": "default", "service_type": "vm", "service_id": service, "vm_id": vm,
        "csp": csp, "region": "r1", "address": "127.0.0.1:9", "version": "0.1.0",
        "mode": "push", "interval_seconds": 15
    });
    let (code, text) =
        http(addr, "POST", "/api/v1/agents/heartbeat", &serde_json::to_vec(&body).unwrap());
    assert_eq!(code, 201, "{text}");
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, text) = http(addr, "GET", path, b"");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
    (code, v)
}

fn ok(addr: SocketAddr, path: &str) -> Value {
    let (code, v) = get(addr, path);
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

fn rfc3339(t: i64) -> String {
    ocelli_model::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64))
}

/// Checks column `col` of `v` at the points `end - (n-1)*step ..= end` against `want`.
fn check_column(v: &Value, col: &str, end: i64, step: i64, n: i64, want: impl Fn(i64) -> f64) {
    let cols = v["columns"].as_array().unwrap();
    let i = cols.iter().position(|c| c == col).unwrap_or_else(|| panic!("no {col} in {v}"));
    let rows = v["values"].as_array().unwrap();
    assert_eq!(rows.len() as i64, n, "{v}");
    for (k, row) in rows.iter().enumerate() {
        let t = end - (n - 1 - k as i64) * step;
        assert_eq!(row[0], rfc3339(t), "{v}");
        let got = row[i].as_f64().unwrap_or_else(|| panic!("{col} at {t}: {row}"));
        let w = want(t);
        assert!((got - w).abs() <= 1e-9 * w.abs().max(1.0), "{col} at {t}: got {got}, want {w}");
    }
}

/// Starts a server on a fresh data directory, runs `f` with its address on a blocking thread
/// (the HTTP client blocks), then stops the server.
async fn with_server(f: impl FnOnce(SocketAddr) + Send + 'static) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(common::config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || f(addr)).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_answer_from_stored_series() {
    with_server(|addr| {
        let (start, end) = times();
        import(addr, start);
        register(addr, "vm-a", "svc-1", "aws");
        register(addr, "vm-b", "svc-1", "aws");
        register(addr, "vm-d", "svc-2", "gcp");
        per_vm(addr, start, end);
        aggregated(addr, start, end);
        errors(addr, end);
    })
    .await;
}

fn per_vm(addr: SocketAddr, start: i64, end: i64) {
    let base = "/api/v1/ns/default/vm/vm-a/metric";
    for crit in ["avg", "max", "min", "last"] {
        let v = ok(addr, &format!("{base}/cpu?statisticsCriteria={crit}&duration=10m&end={end}"));
        assert_eq!(v["name"], "cpu");
        assert_eq!(v["tags"], json!({"ns": "default", "vm_id": "vm-a"}));
        assert_eq!(v["columns"][0], "timestamp");
        assert_eq!(v["columns"][1], "cpu_utilization");
        assert_eq!(v["columns"].as_array().unwrap().len(), 12, "{v}");
        check_column(&v, "cpu_utilization", end, 60, 10, |t| {
            expect(cpu_a, start, crit, t, 60).unwrap()
        });
        // no series for the other fields: present as columns, null in every row
        assert!(v["values"].as_array().unwrap().iter().all(|r| r[2].is_null()), "{v}");
        let v = ok(
            addr,
            &format!("{base}/cpu?periodType=h&statisticsCriteria={crit}&duration=2h&end={end}"),
        );
        check_column(&v, "cpu_utilization", end, 3600, 2, |t| {
            expect(cpu_a, start, crit, t, 3600).unwrap()
        });
    }
    // the defaults: periodType m, avg, 1h; the end given in RFC 3339
    let v = ok(addr, &format!("{base}/memory?end={}", rfc3339(end + 59)));
    check_column(&v, "mem_utilization", end, 60, 60, |t| {
        expect(series()[7].f, start, "avg", t, 60).unwrap()
    });
    check_column(&v, "mem_total", end, 60, 60, |_| 8.0 * GIB);
    // rates, summed over devices
    let v = ok(addr, &format!("{base}/network?duration=30m&end={end}&statisticsCriteria=max"));
    check_column(&v, "bytes_in", end, 60, 30, |_| 1500.0);
    assert!(v["values"][0][2].is_null(), "{v}");
    // a VM with stored series but no agent still has its view
    let v = ok(addr, &format!("/api/v1/ns/default/vm/vm-c/metric/cpu?duration=5m&end={end}"));
    check_column(&v, "cpu_utilization", end, 60, 5, |_| 99.0);
    // periods without data are left out
    let v = ok(addr, &format!("{base}/cpu?duration=5m&end={}", end + 3 * 3600));
    assert_eq!(v["values"], json!([]));
    let v = ok(addr, &format!("{base}/cpu?duration=1h&end={}", end + 1800));
    assert_eq!(v["values"].as_array().unwrap().len(), 30, "{v}");
}

fn aggregated(addr: SocketAddr, start: i64, end: i64) {
    let both = |crit: &'static str, step: i64| {
        move |t: i64| {
            let a = expect(cpu_a, start, crit, t, step).unwrap();
            let b = expect(cpu_b, start, crit, t, step).unwrap();
            (a + b) / 2.0
        }
    };
    let svc = "/api/v1/ns/default/service/svc-1/metric";
    for crit in ["avg", "max", "last"] {
        let v = ok(addr, &format!("{svc}/cpu?statisticsCriteria={crit}&duration=10m&end={end}"));
        assert_eq!(v["tags"], json!({"ns": "default", "service_id": "svc-1"}));
        assert_eq!(
            v["vms"],
            json!([{"ns": "default", "vm_id": "vm-a"}, {"ns": "default", "vm_id": "vm-b"}])
        );
        // vm-c (not registered) is not counted
        check_column(&v, "cpu_utilization", end, 60, 10, both(crit, 60));
        let v = ok(
            addr,
            &format!("{svc}/cpu?periodType=h&statisticsCriteria={crit}&duration=2h&end={end}"),
        );
        check_column(&v, "cpu_utilization", end, 3600, 2, both(crit, 3600));
    }
    // bytes are summed, percentages and rates averaged
    let v = ok(addr, &format!("{svc}/memory?duration=10m&end={end}&statisticsCriteria=last"));
    check_column(&v, "mem_total", end, 60, 10, |_| 12.0 * GIB);
    check_column(&v, "mem_utilization", end, 60, 10, |t| ((t % 600) as f64 / 10.0 + 20.0) / 2.0);
    let v = ok(addr, &format!("{svc}/network?duration=10m&end={end}"));
    check_column(&v, "bytes_in", end, 60, 10, |_| (1500.0 + 3000.0) / 2.0);

    // per cloud: aws is vm-a and vm-b, gcp is vm-d
    let v = ok(addr, &format!("/api/v1/csp/aws/metric/cpu?duration=10m&end={end}"));
    assert_eq!(v["tags"], json!({"csp": "aws"}));
    check_column(&v, "cpu_utilization", end, 60, 10, both("avg", 60));
    let v = ok(addr, &format!("/api/v1/csp/gcp/metric/cpu?ns=default&duration=10m&end={end}"));
    assert_eq!(v["tags"], json!({"csp": "gcp", "ns": "default"}));
    check_column(&v, "cpu_utilization", end, 60, 10, |_| 70.0);
}

fn assert_error(addr: SocketAddr, path: &str, code: u16, msg: &str) {
    let (got, v) = get(addr, path);
    assert_eq!(
        (got, v["status"].as_str(), v["error"].as_str()),
        (code, Some("error"), Some(msg)),
        "{path}"
    );
}

fn errors(addr: SocketAddr, end: i64) {
    let vm = "/api/v1/ns/default/vm/vm-a/metric";
    assert_error(
        addr,
        &format!("{vm}/cpu?periodType=s"),
        400,
        "periodType: \"s\" is not one of m, h, d",
    );
    assert_error(
        addr,
        &format!("{vm}/cpu?statisticsCriteria=sum"),
        400,
        "statisticsCriteria: \"sum\" is not one of min, max, avg, last",
    );
    assert_error(
        addr,
        &format!("{vm}/gpu"),
        400,
        "metric: \"gpu\" is not one of cpu, cpufreq, memory, disk, diskio, network",
    );
    assert_error(
        addr,
        &format!("{vm}/cpu?step=60"),
        400,
        "step: unknown parameter; expected one of periodType, statisticsCriteria, duration, end",
    );
    assert_error(
        addr,
        &format!("{vm}/cpu?duration=8d"),
        400,
        "duration: \"8d\" at periodType \"m\" is 11520 points, over the limit of 11000; shorten duration or use a longer periodType",
    );
    assert_error(
        addr,
        &format!("{vm}/cpu?periodType=d&duration=2h"),
        400,
        "duration: \"2h\" is shorter than one period of periodType \"d\"",
    );
    assert_error(
        addr,
        &format!("{vm}/cpu?end=soon"),
        400,
        "end: \"soon\" is not an RFC 3339 time or Unix seconds",
    );
    assert_error(
        addr,
        "/api/v1/ns/default/vm/vm-zz/metric/cpu",
        404,
        "no VM \"vm-zz\" in namespace \"default\"",
    );
    assert_error(
        addr,
        "/api/v1/ns/other/vm/vm-a/metric/cpu",
        404,
        "no VM \"vm-a\" in namespace \"other\"",
    );
    assert_error(
        addr,
        &format!("/api/v1/ns/default/service/svc-9/metric/cpu?end={end}"),
        404,
        "no agents registered under service \"svc-9\" in namespace \"default\"",
    );
    assert_error(
        addr,
        "/api/v1/csp/azure/metric/cpu",
        404,
        "no agents registered under csp \"azure\"",
    );
    assert_error(
        addr,
        "/api/v1/csp/aws/metric/cpu?ns=other",
        404,
        "no agents registered under csp \"aws\" in namespace \"other\"",
    );
    assert_error(
        addr,
        "/api/v1/ns/default/service/svc-1/metric/cpu?ns=default",
        400,
        "ns: unknown parameter; expected one of periodType, statisticsCriteria, duration, end",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_view_route() {
    with_server(|addr| {
        let doc = ok(addr, "/api/v1/openapi.json");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"), "{doc}");
        let paths = doc["paths"].as_object().unwrap();
        for route in ocelli_server::views::api::ROUTES {
            assert!(paths.contains_key(*route), "{route} is not documented");
        }
        // every documented path and method is routed: with its parameters filled in and no
        // body, the server answers in JSON (the route's own 400 or 404), never with the
        // router's empty 404 or 405
        let mut checked = 0;
        for (path, ops) in paths {
            let filled: String = path
                .split('/')
                .map(|p| if p.starts_with('{') { "cpu" } else { p })
                .collect::<Vec<_>>()
                .join("/");
            for method in ops.as_object().unwrap().keys() {
                let m = method.to_ascii_uppercase();
                let (code, text) = http(addr, &m, &filled, b"");
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{m} {path} as {filled}: {code} {e}: {text:?}"));
                assert!(v.is_object(), "{m} {path}: {v}");
                assert_ne!(code, 405, "{m} {path}");
                checked += 1;
            }
        }
        assert!(checked >= 9, "{checked} operations");
    })
    .await;
}
