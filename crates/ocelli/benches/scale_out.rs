//! Scale-out benchmark (a bench binary, not a timed test): how fast 1, 2, 4 ... collectors
//! drain the RabbitMQ shard queues into their storage, against one standalone server taking
//! the same batches over HTTP, and what the broker costs per sample.
//!
//! For each collector count N, with a private RabbitMQ and etcd on loopback (as the tests start
//! them), a fresh set of queues and fresh data directories:
//! 1. N `ocelli server --role collector` processes start and split the shards (etcd);
//! 2. they are paused (SIGSTOP) and `--agents` agent keys publish `--batches` remote_write
//!    batches (each `--series` series x 10 samples) with publisher confirms, from 4 tasks;
//! 3. the collectors resume (SIGCONT) and the clock runs until their `ocelli_amqp_samples_total`
//!    adds up to every sample published. Reported: samples/s, the collectors' CPU seconds per
//!    million samples, and the broker's (`beam.smp`) CPU per million samples while publishing
//!    and while delivering (from /proc/PID/stat).
//!
//! The baseline is one standalone `ocelli server` taking the same bodies as `POST
//! /api/v1/write`, 4 in flight.
//!
//! Run: `cargo bench -p ocelli --bench scale_out -- [--collectors 1,2,4] [--agents 200]
//! [--batches 20] [--series 100]` (batches per agent).
#![allow(clippy::unwrap_used)] // a benchmark: a panic is the failure report

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ocelli_model::{Labels, Sample};
use ocelli_wire::remote_write::{self, DecodedSeries};

const SHARDS: u32 = 16;

struct Args {
    collectors: Vec<usize>,
    agents: usize,
    batches: usize,
    series: usize,
}

fn args() -> Args {
    let mut a = Args { collectors: vec![1, 2, 4], agents: 200, batches: 20, series: 100 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--collectors" => a.collectors = v.split(',').map(|x| x.parse().unwrap()).collect(),
            "--agents" => a.agents = v.parse().unwrap(),
            "--batches" => a.batches = v.parse().unwrap(),
            "--series" => a.series = v.parse().unwrap(),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

fn server(args: &[&str], addr: SocketAddr, dir: &std::path::Path) -> ocelli_testkit::Service {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocelli"));
    cmd.args(["server", "--no-local-agent", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn");
    let svc = ocelli_testkit::Service::start(cmd, addr, Duration::from_secs(30));
    let t0 = Instant::now();
    while http_ok(addr).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(30), "server on {addr} not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    svc
}

fn http_ok(addr: SocketAddr) -> Option<()> {
    TcpStream::connect(addr).ok()?;
    (http(addr, "GET", "/-/ready", b"").0 == 200).then_some(())
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, text) = http(addr, "GET", "/metrics", b"");
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The bodies: per agent key, `batches` batches of `series` series x 10 samples (10 s apart).
fn bodies(a: &Args) -> Vec<(String, Vec<u8>)> {
    let t0 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        as i64
        - 3_600_000;
    let mut out = Vec::with_capacity(a.agents * a.batches);
    for b in 0..a.batches {
        for k in 0..a.agents {
            let key = format!("bench/vm/s/a{k}/onprem");
            let series: Vec<DecodedSeries> = (0..a.series)
                .map(|j| DecodedSeries {
                    labels: Labels::from_pairs([
                        ("__name__", format!("bench_metric_{}", j % 20).as_str()),
                        ("vm_id", &format!("a{k}")),
                        ("idx", &j.to_string()),
                    ])
                    .unwrap(),
                    samples: (0..10)
                        .map(|s| {
                            let t = t0 + ((b * 10 + s) as i64) * 10_000;
                            Sample::new(t, ((j * 31 + b * 7 + s) % 1000) as f64 / 10.0)
                        })
                        .collect(),
                })
                .collect();
            out.push((key, remote_write::encode(&series).unwrap()));
        }
    }
    out
}

fn main() {
    let a = args();
    let bodies = bodies(&a);
    let total = (a.agents * a.batches * a.series * 10) as f64;
    let bytes: usize = bodies.iter().map(|(_, b)| b.len()).sum();
    eprintln!(
        "{} batches, {} samples, {:.1} MB of snappy remote_write",
        bodies.len(),
        total,
        bytes as f64 / 1e6
    );
    let root = tempfile::tempdir().unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // the baseline: one standalone server over HTTP, 4 requests in flight
    let addr = ocelli_testkit::free_addr();
    let base = server(&[], addr, &root.path().join("standalone"));
    let t0 = Instant::now();
    let c0 = cpu_seconds(base.pid());
    std::thread::scope(|s| {
        for part in bodies.chunks(bodies.len().div_ceil(4)) {
            s.spawn(move || {
                for (_, b) in part {
                    let (status, text) = http(addr, "POST", "/api/v1/write", b);
                    assert_eq!(status, 204, "{text}");
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(base.pid()) - c0;
    drop(base);
    println!(
        "| standalone, HTTP remote_write | {:.0} | {:.2} | - | - |",
        total / secs,
        cpu / total * 1e6
    );
    let baseline = total / secs;

    for &n in &a.collectors {
        let mut mq = ocelli_testkit::RabbitMq::start();
        let etcd = ocelli_testkit::Etcd::start();
        let dir = root.path().join(format!("n{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!("[cluster]\nshards = {SHARDS}\nlease_ttl = \"60s\"\nprefetch = 64\n"),
        )
        .unwrap();
        let cs: Vec<(SocketAddr, ocelli_testkit::Service)> = (0..n)
            .map(|i| {
                let addr = ocelli_testkit::free_addr();
                let id = format!("c{i}");
                let args = [
                    "--config",
                    config.to_str().unwrap(),
                    "--role",
                    "collector",
                    "--amqp",
                    &mq.url(),
                    "--etcd",
                    &etcd.url,
                    "--collector-id",
                    &id,
                ];
                (addr, server(&args, addr, &dir.join(&id)))
            })
            .collect();
        let t = Instant::now();
        while cs.iter().map(|(a, _)| metric(*a, "ocelli_collector_shards_owned")).sum::<f64>()
            != f64::from(SHARDS)
            || cs.iter().any(|(a, _)| metric(*a, "ocelli_collectors_live") as usize != n)
        {
            assert!(t.elapsed() < Duration::from_secs(60), "collectors did not split the shards");
            std::thread::sleep(Duration::from_millis(200));
        }
        for (_, p) in &cs {
            Command::new("kill").args(["-STOP", &p.pid().to_string()]).status().unwrap();
        }
        let beam = mq.broker_pid().expect("the broker's beam.smp");
        let b0 = cpu_seconds(beam);
        let t_pub = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for part in bodies.chunks(bodies.len().div_ceil(4)) {
                let part = part.to_vec();
                let url = mq.url();
                tasks.push(tokio::spawn(async move {
                    let mut pubs = std::collections::HashMap::new();
                    for (key, body) in part {
                        let p = pubs.entry(key.clone()).or_insert_with(|| {
                            ocelli_agent::amqp::Publisher::new(
                                ocelli_agent::amqp::AmqpConfig {
                                    url: url.clone(),
                                    exchange: "ocelli.metrics".into(),
                                    ca_file: None,
                                },
                                key.clone(),
                                Duration::from_secs(30),
                            )
                        });
                        p.publish(&body).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let pub_secs = t_pub.elapsed().as_secs_f64();
        let broker_pub = cpu_seconds(beam) - b0;
        let b1 = cpu_seconds(beam);
        let c0: f64 = cs.iter().map(|(_, p)| cpu_seconds(p.pid())).sum();
        let t0 = Instant::now();
        for (_, p) in &cs {
            Command::new("kill").args(["-CONT", &p.pid().to_string()]).status().unwrap();
        }
        loop {
            let done: f64 = cs.iter().map(|(a, _)| metric(*a, "ocelli_amqp_samples_total")).sum();
            if done >= total {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(600),
                "collectors stuck at {done} of {total}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu: f64 = cs.iter().map(|(_, p)| cpu_seconds(p.pid())).sum::<f64>() - c0;
        let broker_deliver = cpu_seconds(beam) - b1;
        println!(
            "| {n} collector(s), AMQP | {:.0} ({:.2}x standalone) | {:.2} | {:.2} (publish {:.1} s) | {:.2} |",
            total / secs,
            total / secs / baseline,
            cpu / total * 1e6,
            broker_pub / total * 1e6,
            pub_secs,
            broker_deliver / total * 1e6,
        );
        drop(cs);
        drop(etcd);
        mq.kill();
    }
    println!(
        "columns: samples/s | server CPU s per 1M samples | broker CPU s per 1M samples while publishing | while delivering"
    );
}
