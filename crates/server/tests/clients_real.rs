//! Real clients that nobody here wrote, run against Ocelli on loopback, each test with its own
//! server (in-process, port 0, own temporary folder) and its own peer processes (killed by PID):
//!
//! - Prometheus 2.42 (Debian `prometheus`) scraping node_exporter 1.5 (Debian
//!   `prometheus-node-exporter`) and remote_writing samples and metadata to Ocelli; and the
//!   same Prometheus reading from Ocelli with remote_read.
//! - vmagent 1.79 (Debian `victoria-metrics`) scraping node_exporter and remote_writing.
//! - promtool 2.42 (Debian `prometheus`): `query instant`, `range`, `labels`, `series`.
//! - Python clients, in one venv outside the checkout ([`REQUIREMENTS`] pins them):
//!   opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http 1.45.2 (OTLP/HTTP protobuf and
//!   OTLP/JSON), influxdb-client 1.50.0 (v2 write API, ping, health), prometheus_client 0.26.0
//!   (`push_to_gateway`, `delete_from_gateway`). The scripts are in `tests/clients/`.
//! - Grafana's Prometheus data source: the HTTP calls it makes, replayed one by one.
//!
//! The venv is `$OCELLI_VENV`, or `~/.cache/ocelli/venv-<hash of REQUIREMENTS>`; the first
//! test that needs it creates it under a lock file (so parallel test processes do not race)
//! and marks it complete only once every package is installed.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{config, http, request};
use ocelli_model::time::now_ms;
use ocelli_model::{Labels, Sample};
use ocelli_server::{Config, Server};
use ocelli_testkit::{Proc, free_addr, require, wait_for};
use ocelli_wire::remote_write::{self, DecodedSeries};
use serde_json::Value;

/// The Python packages the scripts use, pinned.
const REQUIREMENTS: &str = "\
opentelemetry-sdk==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
influxdb-client==1.50.0
prometheus_client==0.26.0
";

// ---------------------------------------------------------------------------------------------
// Ocelli in its own runtime, so that the test body can block (clients are processes and the
// HTTP client is blocking) without starving the server.

struct Ocelli {
    addr: SocketAddr,
    server: Option<Server>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Ocelli {
    fn start() -> Ocelli {
        Ocelli::start_with(|_| {})
    }

    /// A server on loopback port 0 over a fresh folder, `edit` applied to its config.
    fn start_with(edit: impl FnOnce(&mut Config)) -> Ocelli {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(&dir.path().join("ocelli"));
        edit(&mut c);
        Ocelli::from_config(c, dir)
    }

    fn from_config(c: Config, dir: tempfile::TempDir) -> Ocelli {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(Server::start(c)).unwrap();
        Ocelli { addr: server.addr, server: Some(server), rt, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn write(&self, series: &[DecodedSeries]) {
        let body = remote_write::encode(series).unwrap();
        let (code, text) = http(self.addr, "POST", "/api/v1/write", &body);
        assert_eq!(code, 204, "remote_write into Ocelli: {text}");
    }
}

impl Drop for Ocelli {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = self.rt.block_on(s.stop());
        }
    }
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> DecodedSeries {
    DecodedSeries {
        labels: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

fn enc(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// `GET path` on a Prometheus-API server; the parsed JSON of a 200 answer with
/// `status: success`, panicking with the body otherwise.
fn api(addr: SocketAddr, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, b"");
    assert_eq!(code, 200, "GET {path} on {addr}: {body}");
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: not JSON ({e}): {body}"));
    assert_eq!(v["status"], "success", "GET {path} on {addr}: {body}");
    v["data"].clone()
}

/// An instant query's result vector (at `time` in ms, or now).
fn instant(addr: SocketAddr, q: &str, time: Option<i64>) -> Vec<Value> {
    let mut p = vec![("query", q.to_owned())];
    if let Some(t) = time {
        p.push(("time", secs(t)));
    }
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data = api(addr, &format!("/api/v1/query?{}", enc(&p)));
    assert_eq!(data["resultType"], "vector", "{q}: {data}");
    data["result"].as_array().unwrap().clone()
}

/// The value of a one-element instant result, if it has exactly one element.
fn scalar_of(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// `name{a="b",...} -> value` for every element of an instant result.
fn by_series(result: &[Value]) -> BTreeMap<String, String> {
    result
        .iter()
        .map(|s| {
            let m = s["metric"].as_object().unwrap();
            let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
            let labels: Vec<String> = m
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let value = s["value"][1].as_str().unwrap().to_owned();
            (format!("{name}{{{}}}", labels.join(",")), value)
        })
        .collect()
}

/// The sum of every sample of `name` (any labels) in exposition text; None when absent.
fn metric_sum(text: &str, name: &str, label_filter: impl Fn(&str) -> bool) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        if n == name && label_filter(labels) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Peer processes

/// Starts `cmd` (stderr to `log`) and waits until it listens on `addr`; panics with its log if
/// it exits first or does not listen within 60 s.
fn spawn_listening(cmd: Command, addr: SocketAddr, log: &Path) -> Proc {
    let what = format!("{cmd:?}");
    let mut p = Proc::spawn(cmd, Some(log));
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = p.child().try_wait() {
            panic!("{what} exited ({status}) before listening:\n{}", read(log));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr} in 60 s:\n{}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn node_exporter(dir: &Path) -> (Proc, SocketAddr) {
    let addr = free_addr();
    let mut cmd = Command::new(require("prometheus-node-exporter", "prometheus-node-exporter"));
    cmd.arg(format!("--web.listen-address={addr}"));
    (spawn_listening(cmd, addr, &dir.join("node_exporter.log")), addr)
}

/// Debian's Prometheus with `config` (YAML), ready (`/-/ready` answers 200).
fn prometheus(dir: &Path, config: &str) -> (Proc, SocketAddr) {
    let addr = free_addr();
    let d = dir.join("prometheus");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("prometheus.yml"), config).unwrap();
    let mut cmd = Command::new(require("prometheus", "prometheus"));
    cmd.arg(format!("--config.file={}", d.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", d.join("data").display()))
        .arg(format!("--web.listen-address={addr}"));
    let log = d.join("prometheus.log");
    let p = spawn_listening(cmd, addr, &log);
    wait_for("Prometheus /-/ready", Duration::from_secs(60), || {
        http(addr, "GET", "/-/ready", b"").0 == 200
    });
    (p, addr)
}

// ---------------------------------------------------------------------------------------------
// The Python venv

fn short_hash(s: &str) -> String {
    // FNV-1a, 64 bits: stable across Rust versions (std's hasher is not)
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")[..12].to_owned()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The venv's Python, creating the venv on first use (once per process; across processes,
/// under a lock file, and complete only when its marker file is written).
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let dir = match std::env::var_os("OCELLI_VENV") {
            Some(d) => PathBuf::from(d),
            None => {
                let home = std::env::var_os("HOME").expect("HOME is not set");
                PathBuf::from(home)
                    .join(".cache/ocelli")
                    .join(format!("venv-{}", short_hash(REQUIREMENTS)))
            }
        };
        let marker = dir.join(".ocelli-requirements");
        let done = || read(&marker) == REQUIREMENTS;
        if !done() {
            std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
            let lock_path = PathBuf::from(format!("{}.lock", dir.display()));
            let lock = std::fs::File::create(&lock_path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
            lock.lock().unwrap();
            if !done() {
                create_venv(&dir);
                std::fs::write(&marker, REQUIREMENTS).unwrap();
            }
        }
        let py = dir.join("bin/python");
        let versions = run_ok(Command::new(&py).args([
            "-c",
            "import importlib.metadata as m, sys; print('python', sys.version.split()[0]); \
             [print(p, m.version(p)) for p in ('opentelemetry-sdk', \
             'opentelemetry-exporter-otlp-proto-http', 'protobuf', 'influxdb-client', \
             'prometheus_client')]",
        ]));
        eprintln!("venv {}:\n{versions}", dir.display());
        py
    })
}

fn create_venv(dir: &Path) {
    let has_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_venv {
        // Debian splits venv's pip bootstrap into python3-venv, which has no binary of its
        // own: its copyright file says it is installed
        require("python3-venv", "../share/doc/python3-venv/copyright");
    }
    eprintln!("creating the Python venv {} ...", dir.display());
    run_ok(Command::new("python3").arg("-m").arg("venv").arg(dir));
    let req = dir.join("requirements.txt");
    std::fs::write(&req, REQUIREMENTS).unwrap();
    run_ok(
        Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r"])
            .arg(&req),
    );
}

/// Runs `tests/clients/<script>` with the venv's Python; its stdout, panicking with both
/// streams when it fails.
fn script(name: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name);
    run_ok(Command::new(python()).arg(path).args(args))
}

// ---------------------------------------------------------------------------------------------
// 1. Prometheus remote_write

#[test]
fn prometheus_scraping_node_exporter_remote_writes_everything_it_holds() {
    let ocelli = Ocelli::start();
    let dir = tempfile::tempdir().unwrap();
    let (_ne, ne) = node_exporter(dir.path());
    let (_prom, prom) = prometheus(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{ne}']\n\
             remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n    metadata_config:\n      send: true\n      send_interval: 1s\n",
            ocelli.url()
        ),
    );
    // a few scrapes in Prometheus, and some in Ocelli
    wait_for("3 scrapes of node_exporter in Prometheus", Duration::from_secs(30), || {
        scalar_of(&instant(prom, r#"count_over_time(up{job="node"}[1m])"#, None))
            .is_some_and(|n| n >= 3.0)
    });
    wait_for("up{job=\"node\"} in Ocelli", Duration::from_secs(20), || {
        scalar_of(&instant(ocelli.addr, r#"up{job="node"}"#, None)) == Some(1.0)
    });

    // the same number of series at the same time, a few seconds back so that the remote
    // write queue has sent it
    let q = r#"count({job="node"})"#;
    let t0 = Instant::now();
    let (mut theirs, mut ours, mut t);
    loop {
        t = now_ms() - 5_000;
        theirs = scalar_of(&instant(prom, q, Some(t)));
        ours = scalar_of(&instant(ocelli.addr, q, Some(t)));
        if theirs.is_some() && theirs == ours {
            break;
        }
        if t0.elapsed() > Duration::from_secs(40) {
            let by_name = |a| {
                by_series(&instant(a, r#"count by (__name__) ({job="node"})"#, Some(t)))
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
            };
            let (p, o) = (by_name(prom), by_name(ocelli.addr));
            panic!(
                "{q} at {t}: Prometheus {theirs:?}, Ocelli {ours:?} (waited 40 s); per metric \
                 only in Prometheus: {:?}; only in Ocelli: {:?}",
                p.difference(&o).collect::<Vec<_>>(),
                o.difference(&p).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let n = theirs.unwrap();
    assert!(n > 100.0, "node_exporter gave only {n} series: the comparison proves little");
    eprintln!("{q}: {n} in both");
    // and the same values: every sample went over unchanged (compared as numbers: how the two
    // write them is the remote_read test's business)
    let all = r#"{job="node"}"#;
    let (p, o) =
        (by_series(&instant(prom, all, Some(t))), by_series(&instant(ocelli.addr, all, Some(t))));
    let same = |a: &str, b: &str| {
        let (a, b) = (a.parse::<f64>().unwrap(), b.parse::<f64>().unwrap());
        a == b || (a.is_nan() && b.is_nan())
    };
    let differ: Vec<String> = p
        .iter()
        .filter(|(k, v)| !o.get(*k).is_some_and(|w| same(v, w)))
        .map(|(k, v)| format!("{k}: Prometheus {v}, Ocelli {:?}", o.get(k)))
        .collect();
    assert!(
        differ.is_empty() && p.len() == o.len(),
        "{all} at {t}: {} of {} series differ, e.g.\n{}",
        differ.len(),
        p.len(),
        differ[..differ.len().min(10)].join("\n")
    );

    // Prometheus' own account of the sends
    let (code, metrics) = http(prom, "GET", "/metrics", b"");
    assert_eq!(code, 200);
    let rs: Vec<&str> =
        metrics.lines().filter(|l| l.starts_with("prometheus_remote_storage_")).collect();
    let sum = |name: &str| {
        metric_sum(&metrics, name, |_| true).unwrap_or_else(|| {
            panic!("Prometheus has no {name}; its remote storage metrics:\n{}", rs.join("\n"))
        })
    };
    assert!(sum("prometheus_remote_storage_samples_total") > n, "{}", rs.join("\n"));
    for name in [
        "prometheus_remote_storage_samples_failed_total",
        "prometheus_remote_storage_samples_dropped_total",
        "prometheus_remote_storage_metadata_failed_total",
    ] {
        assert_eq!(sum(name), 0.0, "{name}:\n{}", rs.join("\n"));
    }

    // metadata, sent every second by Prometheus with remote_write
    let m = "node_cpu_seconds_total";
    let want = api(prom, &format!("/api/v1/metadata?metric={m}"))[m][0].clone();
    assert_eq!(want["type"], "counter", "Prometheus' own metadata: {want}");
    let t0 = Instant::now();
    loop {
        let got = api(ocelli.addr, &format!("/api/v1/metadata?metric={m}"))[m][0].clone();
        if got["type"] == want["type"] && got["help"] == want["help"] {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "Ocelli's /api/v1/metadata does not list {m} as Prometheus sends it with \
             remote_write every second (waited 15 s): got {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. vmagent remote_write

#[test]
fn vmagent_scraping_node_exporter_remote_writes_without_errors() {
    let ocelli = Ocelli::start();
    let dir = tempfile::tempdir().unwrap();
    let (_ne, ne) = node_exporter(dir.path());
    let scrape = dir.path().join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "scrape_configs:\n  - job_name: node\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{ne}']\n"
        ),
    )
    .unwrap();
    let addr = free_addr();
    let mut cmd = Command::new(require("victoria-metrics", "vmagent"));
    cmd.arg(format!("-promscrape.config={}", scrape.display()))
        .arg(format!("-remoteWrite.url={}/api/v1/write", ocelli.url()))
        .arg(format!("-remoteWrite.tmpDataPath={}", dir.path().join("vmagent").display()))
        .arg("-remoteWrite.flushInterval=500ms")
        .arg(format!("-httpListenAddr={addr}"));
    let log = dir.path().join("vmagent.log");
    let _vmagent = spawn_listening(cmd, addr, &log);

    let metrics = || http(addr, "GET", "/metrics", b"").1;
    let t0 = Instant::now();
    loop {
        let up = scalar_of(&instant(ocelli.addr, r#"up{job="node"}"#, None));
        let q = r#"count({job="node", __name__=~"node_.+"})"#;
        let n = scalar_of(&instant(ocelli.addr, q, None));
        if up == Some(1.0) && n.is_some_and(|n| n > 100.0) {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let text = metrics();
            let rw: Vec<&str> =
                text.lines().filter(|l| l.starts_with("vmagent_remotewrite")).collect();
            panic!(
                "after 30 s Ocelli has up{{job=\"node\"}} = {up:?} and {n:?} node_ series; \
                 vmagent's log:\n{}\nits remote write metrics:\n{}",
                read(&log),
                rw.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu = instant(ocelli.addr, r#"node_cpu_seconds_total{job="node", mode="idle"}"#, None);
    assert!(!cpu.is_empty(), "no node_cpu_seconds_total from vmagent");

    // wait for a few more sends, then vmagent's own account of them
    std::thread::sleep(Duration::from_secs(3));
    let text = metrics();
    let rw: Vec<&str> = text.lines().filter(|l| l.starts_with("vmagent_remotewrite")).collect();
    let ok = metric_sum(&text, "vmagent_remotewrite_requests_total", |l| {
        l.contains(r#"status_code="2XX""#)
    });
    assert!(ok.is_some_and(|n| n >= 3.0), "successful sends: {ok:?}\n{}", rw.join("\n"));
    let not_ok = metric_sum(&text, "vmagent_remotewrite_requests_total", |l| {
        !l.contains(r#"status_code="2XX""#)
    });
    assert!(not_ok.unwrap_or(0.0) == 0.0, "failed sends: {not_ok:?}\n{}", rw.join("\n"));
    for name in [
        "vmagent_remotewrite_errors_total",
        "vmagent_remotewrite_packets_dropped_total",
        "vmagent_remotewrite_retries_count_total",
    ] {
        let v = metric_sum(&text, name, |_| true);
        assert_eq!(v, Some(0.0), "{name}:\n{}", rw.join("\n"));
    }
    assert_eq!(
        metric_sum(&text, "vm_promscrape_scrapes_failed_total", |_| true),
        Some(0.0),
        "vmagent's scrapes of node_exporter failed"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. promtool

#[test]
fn promtool_queries_ocelli() {
    let ocelli = Ocelli::start();
    let now = now_ms();
    let ts: Vec<i64> = (0..5).map(|i| now - 60_000 + i * 15_000).collect();
    let samples = |v: f64| ts.iter().map(|&t| (t, v)).collect::<Vec<_>>();
    ocelli.write(&[
        series(&[("__name__", "up"), ("job", "promtool"), ("instance", "h1:9100")], &samples(1.0)),
        series(&[("__name__", "up"), ("job", "promtool"), ("instance", "h2:9100")], &samples(0.0)),
    ]);
    let promtool = require("prometheus", "promtool");
    let url = ocelli.url();
    let run = |args: &[&str]| run_ok(Command::new(&promtool).arg("query").args(args));

    let out = run(&["instant", &url, "up"]);
    let line = |inst: &str| {
        out.lines()
            .find(|l| l.contains(&format!("instance=\"{inst}\"")))
            .unwrap_or_else(|| panic!("promtool query instant: no {inst} in:\n{out}"))
            .to_owned()
    };
    assert!(line("h1:9100").contains(r#"job="promtool""#), "{out}");
    assert!(line("h1:9100").contains("=> 1 @["), "{out}");
    assert!(line("h2:9100").contains("=> 0 @["), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("=>")).count(), 2, "{out}");

    let (start, end) = (secs(ts[0]), secs(ts[4]));
    let out = run(&[
        "range",
        &format!("--start={start}"),
        &format!("--end={end}"),
        "--step=15s",
        &url,
        "up",
    ]);
    // two series of five points: "1 @[<t>]" and "0 @[<t>]" lines
    assert_eq!(out.matches("1 @[").count(), 5, "promtool query range:\n{out}");
    assert_eq!(out.matches("0 @[").count(), 5, "promtool query range:\n{out}");
    // promtool prints a time with as few decimals as it needs (`.56`, not `.560`), which is
    // what Rust's shortest float form writes too
    let first = ts[0] as f64 / 1000.0;
    assert!(out.contains(&format!("1 @[{first}]")), "promtool query range:\n{out}");
    assert!(out.contains(r#"instance="h2:9100""#), "promtool query range:\n{out}");

    let out = run(&["labels", &url, "job"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["promtool"], "{out}");
    let out = run(&["labels", &url, "instance"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["h1:9100", "h2:9100"], "{out}");

    let out = run(&["series", "--match=up", &url]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [
            r#"{__name__="up", instance="h1:9100", job="promtool"}"#,
            r#"{__name__="up", instance="h2:9100", job="promtool"}"#
        ],
        "promtool query series:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Prometheus remote_read

#[test]
fn prometheus_remote_read_returns_what_only_ocelli_holds() {
    let ocelli = Ocelli::start();
    let now = now_ms();
    let pts: Vec<(i64, f64)> =
        (0..9).map(|i| (now - 120_000 + i * 15_000, i as f64 * 1.5)).collect();
    ocelli.write(&[
        series(&[("__name__", "rr_only"), ("src", "ocelli"), ("n", "a")], &pts),
        series(&[("__name__", "rr_only"), ("src", "ocelli"), ("n", "b")], &pts[..3]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let (_prom, prom) = prometheus(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1h\nremote_read:\n  - url: {}/api/v1/read\n    read_recent: true\n",
            ocelli.url()
        ),
    );
    let at = now;
    let got = by_series(&instant(prom, "rr_only", Some(at)));
    // n="b" ended 90 s ago: still inside the 5-minute lookback
    let want: BTreeMap<String, String> = [
        (r#"rr_only{n="a",src="ocelli"}"#.to_owned(), "12".to_owned()),
        (r#"rr_only{n="b",src="ocelli"}"#.to_owned(), "3".to_owned()),
    ]
    .into();
    assert_eq!(got, want, "Prometheus' instant query over remote_read");
    assert_eq!(
        scalar_of(&instant(prom, r#"count_over_time(rr_only{n="a"}[5m])"#, Some(at))),
        Some(9.0)
    );
    assert_eq!(
        scalar_of(&instant(prom, r#"sum_over_time(rr_only{n="b"}[5m])"#, Some(at))),
        Some(4.5)
    );
    let p = enc(&[
        ("query", "rr_only"),
        ("start", &secs(pts[0].0)),
        ("end", &secs(pts[8].0)),
        ("step", "15"),
    ]);
    let data = api(prom, &format!("/api/v1/query_range?{p}"));
    let r = data["result"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{data}");
    let a = r.iter().find(|s| s["metric"]["n"] == "a").unwrap();
    let values: Vec<&str> =
        a["values"].as_array().unwrap().iter().map(|v| v[1].as_str().unwrap()).collect();
    assert_eq!(values, ["0", "1.5", "3", "4.5", "6", "7.5", "9", "10.5", "12"], "{data}");
    assert!(instant(prom, "not_in_ocelli", Some(at)).is_empty());

    // values as Prometheus writes them in JSON: Go's shortest form, with an exponent below
    // 1e-6 and from 1e21 on ("7.72e-07", "1e+21")
    let values = [7.72e-7, 1e-7, -3e-10, 1e-6, 0.1, 123456.789, 1e20, 1e21, 1.2345e25, -1e300];
    let tiny: Vec<DecodedSeries> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = i.to_string();
            series(&[("__name__", "rr_format"), ("k", &k)], &[(now - 1_000, v)])
        })
        .collect();
    ocelli.write(&tiny);
    let theirs = by_series(&instant(prom, "rr_format", Some(at)));
    let ours = by_series(&instant(ocelli.addr, "rr_format", Some(at)));
    assert_eq!(theirs.len(), values.len(), "{theirs:?}");
    let differ: Vec<String> = theirs
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: Prometheus {v:?}, Ocelli {:?}", ours.get(k)))
        .collect();
    assert!(
        differ.is_empty(),
        "Ocelli's query API writes sample values otherwise than Prometheus:\n{}",
        differ.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. OpenTelemetry Python SDK

/// Everything of job `clients-real` (the SDK's resource) that Ocelli holds now.
fn otel_series(addr: SocketAddr) -> BTreeMap<String, String> {
    by_series(&instant(addr, r#"{job="clients-real"}"#, None))
}

#[test]
fn opentelemetry_sdk_exports_protobuf_and_json() {
    let ocelli = Ocelli::start();
    let url = format!("{}/v1/metrics", ocelli.url());
    let out = script("otlp_metrics.py", &[&url, "proto"]);
    assert_eq!(out.trim(), "SUCCESS");
    let got = otel_series(ocelli.addr);
    let id = r#"instance="i-1",job="clients-real""#;
    let want: BTreeMap<String, String> = [
        (format!(r#"ocelli_test_requests_total{{{id},route="/a"}}"#), "7"),
        (format!(r#"ocelli_test_requests_total{{{id},route="/b"}}"#), "1"),
        (format!("ocelli_test_queue{{{id}}}"), "7"),
        (format!(r#"ocelli_test_latency_seconds_bucket{{{id},le="0.1",route="/a"}}"#), "1"),
        (format!(r#"ocelli_test_latency_seconds_bucket{{{id},le="1",route="/a"}}"#), "2"),
        (format!(r#"ocelli_test_latency_seconds_bucket{{{id},le="5",route="/a"}}"#), "3"),
        (format!(r#"ocelli_test_latency_seconds_bucket{{{id},le="+Inf",route="/a"}}"#), "3"),
        (format!(r#"ocelli_test_latency_seconds_sum{{{id},route="/a"}}"#), "3.25"),
        (format!(r#"ocelli_test_latency_seconds_count{{{id},route="/a"}}"#), "3"),
        (format!(r#"ocelli_test_temperature_celsius{{{id},room="lab"}}"#), "21.5"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let metrics: BTreeMap<String, String> =
        got.clone().into_iter().filter(|(k, _)| !k.starts_with("target_info{")).collect();
    assert_eq!(metrics, want, "what the OTel SDK's protobuf export stored");
    let info = got.iter().find(|(k, _)| k.starts_with("target_info{"));
    assert!(
        info.is_some_and(|(k, v)| k.contains(r#"deployment_environment="test""#)
            && k.contains(r#"telemetry_sdk_language="python""#)
            && v == "1"),
        "target_info: {info:?}"
    );

    // the same with the exporter's gzip compression, into another server
    let gz = Ocelli::start();
    let out = script("otlp_metrics.py", &[&format!("{}/v1/metrics", gz.url()), "proto-gzip"]);
    assert_eq!(out.trim(), "SUCCESS");
    assert_eq!(otel_series(gz.addr), got, "gzip-compressed OTLP stored other series");
    drop(gz);

    // a bad OTLP/JSON body: 400 and a JSON google.rpc.Status
    let out = script("otlp_metrics.py", &[&url, "bad-json"]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["status"], 400, "a truncated OTLP/JSON body: {r}");
    assert!(
        r["content_type"].as_str().is_some_and(|c| c.starts_with("application/json")),
        "the error's Content-Type: {r}"
    );
    let status: Value = serde_json::from_str(r["body"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("the error body is not JSON ({e}): {r}"));
    assert_eq!(status["code"], 3, "google.rpc.Status INVALID_ARGUMENT: {status}");
    assert!(status["message"].as_str().is_some_and(|m| !m.is_empty()), "{status}");

    // the same data as OTLP/JSON, into another server: the same series
    let json = Ocelli::start();
    let out = script("otlp_metrics.py", &[&format!("{}/v1/metrics", json.url()), "json"]);
    for line in out.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["status"], 200, "OTLP/JSON export: {r}");
        assert!(
            r["content_type"].as_str().is_some_and(|c| c.starts_with("application/json")),
            "OTLP/JSON is answered in JSON: {r}"
        );
    }
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(otel_series(json.addr), got, "OTLP/JSON stored other series than protobuf");
}

// ---------------------------------------------------------------------------------------------
// 6. influxdb-client

#[test]
fn influxdb_client_writes_pings_and_checks_health() {
    let ocelli = Ocelli::start();
    let out = script("influx.py", &[&ocelli.url()]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    let got = by_series(&instant(ocelli.addr, r#"{db="telemetry"}"#, None));
    let want: BTreeMap<String, String> = [
        (r#"disk_used_percent{db="telemetry",host="db1",path="/var"}"#, "71.5"),
        (r#"disk_used_percent{db="telemetry",host="db2",path="/srv"}"#, "12.25"),
        (r#"weather_humidity{city="oslo",db="telemetry"}"#, "81"),
        (r#"weather_humidity{city="paris",db="telemetry"}"#, "40"),
        (r#"weather_temperature{city="oslo",db="telemetry"}"#, "-3.25"),
        (r#"weather_temperature{city="paris",db="telemetry"}"#, "21.5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(got, want, "what influxdb-client's writes stored");

    assert_eq!(r["ping"], true, "client.ping() (GET /ping): {r}");
    assert_eq!(r["health"]["status"], "pass", "client.health() (GET /health): {r}");

    // InfluxDB 1.x's query endpoint, as 1.x clients and Grafana's InfluxQL source use it
    let (code, body) = http(ocelli.addr, "POST", "/query?q=CREATE+DATABASE+x", b"");
    assert_eq!(code, 200, "POST /query CREATE DATABASE: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["results"][0]["statement_id"], 0, "{body}");
    assert!(v["results"][0].get("error").is_none(), "{body}");
    let (code, body) = http(ocelli.addr, "GET", "/query?q=SHOW+DATABASES", b"");
    assert_eq!(code, 200, "GET /query SHOW DATABASES: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let s = &v["results"][0]["series"][0];
    assert_eq!(v["results"][0]["statement_id"], 0, "{body}");
    assert_eq!(s["name"], "databases", "{body}");
    assert_eq!(s["columns"], serde_json::json!(["name"]), "{body}");
    let values = s["values"].as_array().unwrap_or_else(|| panic!("no values: {body}"));
    assert!(values.contains(&serde_json::json!(["x"])), "{body}");
}

// ---------------------------------------------------------------------------------------------
// 7. prometheus_client's push_to_gateway

#[test]
fn pushed_batch_job_metrics_outlive_the_lookback_until_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // a 2 s lookback stands for Prometheus' 5 minutes: 12 s here is an hour and more of
    // refreshes there
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[query]\nlookback_delta = \"2s\"\n\
         [ingest]\npushgateway_refresh = \"500ms\"\n",
        dir.path().join("ocelli").display()
    );
    let c = Config::parse(&text, "clients_real.rs").unwrap_or_else(|e| {
        panic!("the server's config has no [ingest] pushgateway_refresh yet (pending): {e}")
    });
    let ocelli = Ocelli::from_config(c, dir);
    let url = ocelli.url();
    script("pushgateway.py", &[&url, "push"]);
    let pushed = scalar_of(&instant(ocelli.addr, r#"push_time_seconds{job="backup"}"#, None))
        .expect("push_time_seconds{job=\"backup\"} right after the push");
    assert!((pushed - now_ms() as f64 / 1000.0).abs() < 10.0, "push time {pushed}");

    std::thread::sleep(Duration::from_secs(12)); // > 5 lookbacks
    let age = instant(ocelli.addr, r#"time() - push_time_seconds{job="backup"}"#, None);
    let age = scalar_of(&age).unwrap_or_else(|| {
        panic!("time() - push_time_seconds{{job=\"backup\"}} is not answered 12 s (6 lookbacks) after the push: {age:?}")
    });
    assert!((11.0..60.0).contains(&age), "the push's age is {age} s: push_time_seconds changed?");
    assert_eq!(
        scalar_of(&instant(ocelli.addr, r#"backup_last_success_unixtime{job="backup"}"#, None)),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        scalar_of(&instant(ocelli.addr, r#"backup_files_total{job="backup"}"#, None)),
        Some(42.0)
    );

    script("pushgateway.py", &[&url, "delete"]);
    std::thread::sleep(Duration::from_millis(300));
    for q in [r#"push_time_seconds{job="backup"}"#, r#"backup_files_total{job="backup"}"#] {
        assert_eq!(instant(ocelli.addr, q, None), [] as [Value; 0], "{q} after the delete");
    }
    std::thread::sleep(Duration::from_secs(3)); // several refresh intervals, > a lookback
    for q in [r#"push_time_seconds{job="backup"}"#, r#"backup_files_total{job="backup"}"#] {
        assert_eq!(instant(ocelli.addr, q, None), [] as [Value; 0], "{q} 3 s after the delete");
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Grafana's Prometheus data source

#[test]
fn grafana_prometheus_data_source_calls() {
    let ocelli = Ocelli::start();
    let now = now_ms();
    let pts: Vec<(i64, f64)> = (0..5).map(|i| (now - 60_000 + i * 15_000, 1.0)).collect();
    ocelli.write(&[series(&[("__name__", "up"), ("job", "grafana"), ("instance", "a:1")], &pts)]);
    let (start, end) = (secs(now - 120_000), secs(now));
    let range = enc(&[("query", "up"), ("start", &start), ("end", &end), ("step", "15")]);
    let inst = enc(&[("query", "up"), ("time", &end)]);
    let se = enc(&[("start", &start), ("end", &end)]);

    type Check = fn(&Value) -> bool;
    let is_vector: Check =
        |d| d["resultType"] == "vector" && d["result"].as_array().is_some_and(|r| r.len() == 1);
    let is_matrix: Check =
        |d| d["resultType"] == "matrix" && d["result"].as_array().is_some_and(|r| r.len() == 1);
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let calls: Vec<(&str, String, &str, String, Check)> = vec![
        ("GET", "/api/v1/status/buildinfo".into(), "", String::new(), |d| d["version"].is_string()),
        ("GET", "/api/v1/labels".into(), "", String::new(), |d| {
            d.as_array().is_some_and(|a| a.contains(&"job".into()))
        }),
        ("GET", format!("/api/v1/labels?{se}"), "", String::new(), |d| {
            d.as_array().is_some_and(|a| a.contains(&"instance".into()))
        }),
        ("GET", "/api/v1/label/__name__/values".into(), "", String::new(), |d| {
            d.as_array().is_some_and(|a| a.contains(&"up".into()))
        }),
        ("GET", "/api/v1/label/job/values?match[]=up".into(), "", String::new(), |d| {
            *d == serde_json::json!(["grafana"])
        }),
        ("GET", format!("/api/v1/series?match[]=up&{se}"), "", String::new(), |d| {
            d.as_array().is_some_and(|a| a.len() == 1 && a[0]["job"] == "grafana")
        }),
        ("GET", "/api/v1/metadata".into(), "", String::new(), Value::is_object),
        ("GET", format!("/api/v1/query?{inst}"), "", String::new(), is_vector),
        ("GET", format!("/api/v1/query_range?{range}"), "", String::new(), is_matrix),
        ("POST", "/api/v1/query".into(), form, inst.clone(), is_vector),
        ("POST", "/api/v1/query_range".into(), form, range.clone(), is_matrix),
        (
            "GET",
            format!("/api/v1/query_exemplars?query=up&{se}"),
            "",
            String::new(),
            Value::is_array,
        ),
        ("POST", "/api/v1/query_exemplars".into(), form, format!("query=up&{se}"), Value::is_array),
        ("GET", "/api/v1/format_query?query=sum(up)".into(), "", String::new(), |d| d == "sum(up)"),
        ("GET", "/api/v1/status/runtimeinfo".into(), "", String::new(), Value::is_object),
        ("GET", "/api/v1/status/config".into(), "", String::new(), |d| d["yaml"].is_string()),
        ("GET", "/api/v1/status/flags".into(), "", String::new(), Value::is_object),
        ("GET", "/api/v1/status/walreplay".into(), "", String::new(), Value::is_object),
        ("GET", "/api/v1/targets/metadata".into(), "", String::new(), Value::is_array),
        ("GET", "/api/v1/alertmanagers".into(), "", String::new(), |d| {
            d["activeAlertmanagers"].is_array()
        }),
    ];
    let mut failed = Vec::new();
    for (method, path, headers, body, ok) in &calls {
        let (code, text) = request(ocelli.addr, method, path, headers, body.as_bytes());
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if code != 200 || v["status"] != "success" || !ok(&v["data"]) {
            failed.push(format!("{method} {path} {body}: {code} {}", text.trim()));
        }
    }
    let (code, text) = http(ocelli.addr, "GET", "/api/v1/nope", b"");
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if code != 404
        || v["status"] != "error"
        || !v["errorType"].is_string()
        || !v["error"].is_string()
    {
        failed.push(format!(
            "GET /api/v1/nope (want a 404 Prometheus error): {code} {}",
            text.trim()
        ));
    }
    assert!(
        failed.is_empty(),
        "{} of {} Grafana calls answered otherwise than Prometheus:\n{}",
        failed.len(),
        calls.len() + 1,
        failed.join("\n")
    );
}
