//! remote_write out against real receivers on loopback: Debian's VictoriaMetrics and
//! Prometheus (with its remote_write receiver on) each get every sample Ocelli stores, exactly,
//! whatever format it came in; a request Prometheus refuses for good is dropped and counted;
//! while VictoriaMetrics is down the samples wait in the on-disk queue, through a restart of
//! Ocelli, and arrive once it is back.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, http};
use ocelli_model::{Labels, Sample};
use ocelli_server::Server;
use ocelli_server::remote_write::RemoteWriteConfig;
use ocelli_testkit::{Service, free_port, require};
use ocelli_wire::remote_write::{self, DecodedSeries};
use serde_json::Value;

const STEP_MS: i64 = 15_000;

fn start_vm(data: &Path, addr: SocketAddr) -> Service {
    let mut cmd = Command::new(require("victoria-metrics", "victoria-metrics"));
    cmd.arg(format!("-httpListenAddr={addr}"))
        .arg(format!("-storageDataPath={}", data.display()))
        .arg("-retentionPeriod=100y")
        .arg("-search.latencyOffset=0s");
    Service::start(cmd, addr, Duration::from_secs(60))
}

fn start_prometheus(dir: &Path, addr: SocketAddr) -> Service {
    std::fs::write(dir.join("prometheus.yml"), "global:\n  scrape_interval: 1h\n").unwrap();
    let mut cmd = Command::new(require("prometheus", "prometheus"));
    cmd.arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver");
    let svc = Service::start(cmd, addr, Duration::from_secs(60));
    wait("Prometheus ready", Duration::from_secs(60), || {
        http(addr, "GET", "/-/ready", b"").0 == 200
    });
    svc
}

fn wait(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `name{labels}` -> value of Ocelli's own metrics.
fn metric(addr: SocketAddr, name_and_labels: &str) -> f64 {
    let (code, body) = http(addr, "GET", "/metrics", b"");
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} not in /metrics:\n{body}"))
}

/// A counter of queue `remote`, whose receiver is at `to`.
fn queue_metric(addr: SocketAddr, name: &str, remote: &str, to: SocketAddr) -> f64 {
    metric(addr, &format!("ocelli_remote_write_{name}{{remote=\"{remote}\",url=\"http://{to}\"}}"))
}

/// Every sample of `rw_*` series a receiver holds in `[start, end]`, as sorted
/// `(labels, t, v)` text rows.
fn held(addr: SocketAddr, end: i64) -> Vec<String> {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", r#"{__name__=~"rw_.*"}[2h]"#)
        .append_pair("time", &format!("{:.3}", end as f64 / 1000.0))
        .finish();
    let (code, body) = http(addr, "GET", &format!("/api/v1/query?{q}"), b"");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut rows = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let m = s["metric"].as_object().unwrap();
        let mut pairs: Vec<String> =
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
        pairs.sort();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            rows.push(format!("{} {t} {}", pairs.join(","), p[1].as_str().unwrap()));
        }
    }
    rows.sort();
    rows
}

/// Equal rows, or a panic naming how many differ and a few of them (not all: thousands).
fn assert_same(got: &[String], want: &[String], what: &str) {
    if got == want {
        return;
    }
    let missing: Vec<&String> = want.iter().filter(|r| !got.contains(r)).collect();
    let extra: Vec<&String> = got.iter().filter(|r| !want.contains(r)).collect();
    panic!(
        "{what}: {} rows, {} expected; {} missing (first {:?}), {} unexpected (first {:?})",
        got.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)]
    );
}

/// Stops VictoriaMetrics the way an operator would (SIGTERM, so that it writes out what it
/// holds in memory; SIGKILL loses its last seconds, which is its own business).
fn stop_vm(vm: Service) {
    vm.terminate(Duration::from_secs(30));
}

fn rows_of(series: &[DecodedSeries]) -> Vec<String> {
    let mut rows = Vec::new();
    for s in series {
        let mut pairs: Vec<String> =
            s.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
        pairs.sort();
        for x in &s.samples {
            rows.push(format!("{} {} {}", pairs.join(","), x.t, x.v));
        }
    }
    rows.sort();
    rows
}

fn workload(start: i64, points: i64, salt: u64) -> Vec<DecodedSeries> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    (0..20)
        .map(|i| {
            let host = format!("h{i}");
            let labels =
                Labels::from_pairs([("__name__", "rw_gauge"), ("host", host.as_str())]).unwrap();
            let samples = (0..points)
                .map(|k| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    Sample::new(start + k * STEP_MS, (x % 10_000) as f64 / 100.0)
                })
                .collect();
            DecodedSeries { labels, samples }
        })
        .collect()
}

fn push(addr: SocketAddr, series: &[DecodedSeries]) {
    let body = remote_write::encode(series).unwrap();
    let (code, text) = http(addr, "POST", "/api/v1/write", &body);
    assert_eq!(code, 204, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_sample_reaches_victoriametrics_and_prometheus_even_across_outages() {
    let dir = tempfile::tempdir().unwrap();
    let vm_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let vm = start_vm(&dir.path().join("vm"), vm_addr);
    std::fs::create_dir_all(dir.path().join("prom")).unwrap();
    let _prom = start_prometheus(&dir.path().join("prom"), prom_addr);

    let mut cfg = config(&dir.path().join("ocelli"));
    let entry = |name: &str, addr: SocketAddr| -> RemoteWriteConfig {
        toml::from_str(&format!(
            "name = {name:?}\nurl = \"http://{addr}/api/v1/write\"\nbatch_send_deadline = \"200ms\"\n\
             max_samples_per_send = 500\nmin_backoff = \"50ms\"\nmax_backoff = \"500ms\""
        ))
        .unwrap()
    };
    cfg.remote_write = vec![entry("vm", vm_addr), entry("prom", prom_addr)];
    let server = Server::start(cfg.clone()).await.unwrap();
    let ours = server.addr;

    // 50 minutes of 15 s samples ending 10 minutes ago, in two pushes, remote_write and
    // Influx line protocol
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let start = (now - 60 * 60_000) / STEP_MS * STEP_MS;
    let first = workload(start, 100, 1);
    let mut want = first.clone();
    tokio::task::spawn_blocking(move || push(ours, &first)).await.unwrap();
    let t_line = start + 100 * STEP_MS;
    let line = format!("rw_line,host=a value=1.5 {t_line}\nrw_line,host=b value=2.5 {t_line}\n");
    let (code, text) = tokio::task::spawn_blocking(move || {
        http(ours, "POST", "/write?precision=ms", line.as_bytes())
    })
    .await
    .unwrap();
    assert_eq!(code, 204, "{text}");
    for host in ["a", "b"] {
        want.push(DecodedSeries {
            labels: Labels::from_pairs([("__name__", "rw_line_value"), ("host", host)]).unwrap(),
            samples: vec![Sample::new(t_line, if host == "a" { 1.5 } else { 2.5 })],
        });
    }
    let total = rows_of(&want).len() as f64;
    tokio::task::spawn_blocking(move || {
        wait("both receivers to take every sample", Duration::from_secs(60), || {
            queue_metric(ours, "samples_total", "vm", vm_addr) == total
                && queue_metric(ours, "samples_total", "prom", prom_addr) == total
        })
    })
    .await
    .unwrap();
    let end = now;
    let w = rows_of(&want);
    let (vm_rows, prom_rows) = tokio::task::spawn_blocking(move || {
        http(vm_addr, "GET", "/internal/force_flush", b"");
        (held(vm_addr, end), held(prom_addr, end))
    })
    .await
    .unwrap();
    assert_same(&vm_rows, &w, "VictoriaMetrics after the first pushes");
    assert_same(&prom_rows, &w, "Prometheus after the first pushes");

    // a request the receiver refuses for good (Prometheus: a second value for a timestamp it
    // has, a 400) is dropped and counted, and does not hold up what follows
    let dup = move |v: f64| DecodedSeries {
        labels: Labels::from_pairs([("__name__", "dup_value")]).unwrap(),
        samples: vec![Sample::new(start, v)],
    };
    tokio::task::spawn_blocking(move || {
        push(ours, &[dup(1.0)]);
        wait("Prometheus to take the first value", Duration::from_secs(30), || {
            queue_metric(ours, "samples_total", "prom", prom_addr) == total + 1.0
        });
        push(ours, &[dup(2.0)]);
        wait("Prometheus to refuse the second value", Duration::from_secs(30), || {
            queue_metric(ours, "samples_refused_total", "prom", prom_addr) == 1.0
        });
    })
    .await
    .unwrap();

    // VictoriaMetrics goes away; samples keep coming, and Ocelli is restarted meanwhile
    tokio::task::spawn_blocking(move || stop_vm(vm)).await.unwrap();
    let second = workload(start + 100 * STEP_MS, 100, 2);
    want.extend(second.clone());
    let s2 = second.clone();
    tokio::task::spawn_blocking(move || push(ours, &s2)).await.unwrap();
    tokio::task::spawn_blocking(move || {
        wait("Prometheus to take the second push", Duration::from_secs(60), || {
            queue_metric(ours, "samples_total", "prom", prom_addr) == total + 2001.0
        });
        wait("retries towards the stopped VictoriaMetrics", Duration::from_secs(30), || {
            queue_metric(ours, "retries_total", "vm", vm_addr) > 0.0
        });
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
    let queued = std::fs::read_dir(dir.path().join("ocelli/remote_write/vm")).unwrap().count();
    assert!(queued > 0, "the samples VictoriaMetrics missed are not queued on disk");
    let server = Server::start(cfg).await.unwrap();
    let ours = server.addr;
    let vm_addr2 = vm_addr;
    let vm_data = dir.path().join("vm");
    let vm = tokio::task::spawn_blocking(move || start_vm(&vm_data, vm_addr2)).await.unwrap();
    // after the restart the counters start at 0: the queue empties and all is there
    let w = rows_of(&want);
    let n2 = 2000.0;
    let vm_rows = tokio::task::spawn_blocking(move || {
        wait("the queue to drain into VictoriaMetrics", Duration::from_secs(60), || {
            queue_metric(ours, "samples_total", "vm", vm_addr) >= n2
                && queue_metric(ours, "queue_batches", "vm", vm_addr) == 0.0
        });
        http(vm_addr, "GET", "/internal/force_flush", b"");
        held(vm_addr, end + 200 * STEP_MS)
    })
    .await
    .unwrap();
    assert_same(&vm_rows, &w, "VictoriaMetrics after its outage");
    let backlog = queue_metric(ours, "queue_batches", "vm", vm_addr);
    assert_eq!(backlog, 0.0);
    server.stop().await.unwrap();
    tokio::task::spawn_blocking(move || stop_vm(vm)).await.unwrap();
}
