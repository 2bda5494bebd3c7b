//! Scale-out end to end, with a real RabbitMQ and a real etcd from Debian's packages on loopback
//! (started and stopped by the test): collectors as `ocelli server --role collector` processes
//! sharing 16 shard queues through etcd leases, 20 agents pushing their host metrics over AMQP
//! with publisher confirms, and a query node (`--role query`) over the collectors.
//!
//! In one run, to start the broker once:
//! 1. three collectors split the shards evenly;
//! 2. one is killed (SIGKILL) mid-stream: the other two take its shards within the lease;
//! 3. a fourth joins and the dead one comes back: the shards rebalance over four;
//! 4. the broker is killed and restarted while the agents push;
//! 5. every batch an agent had confirmed is in the query node's answers, once: for each agent,
//!    the number of its `node_load1` samples is at least its confirmed batches and at most
//!    those plus what was still buffered at its stop;
//! 6. synthetic series pushed over AMQP before and after the moves (so their samples are split
//!    over collectors) and, the same, over HTTP to a single standalone server: the query node
//!    answers 12 PromQL queries exactly as that single server does.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ocelli_model::{Labels, Sample};
use ocelli_testkit::{Proc, free_addr, wait_for};
use ocelli_wire::remote_write::{self, DecodedSeries};
use serde_json::Value;

const SHARDS: u32 = 16;
const AGENTS: usize = 20;

fn server(args: &[&str], addr: SocketAddr, dir: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocelli"));
    cmd.args(["server", "--no-local-agent", "--listen", &addr.to_string(), "--data-dir"])
        .arg(dir)
        .args(args);
    let p = Proc::spawn(cmd, Some(log));
    wait_for("a server to be ready", Duration::from_secs(30), || {
        TcpStream::connect(addr).is_ok() && common::http(addr, "GET", "/-/ready", b"").0 == 200
    });
    p
}

struct Collector {
    id: String,
    addr: SocketAddr,
    proc: Option<Proc>,
}

fn start_collector(c: &mut Collector, root: &Path, config: &Path, amqp: &str, etcd: &str) {
    let dir = root.join(&c.id);
    let log = root.join(format!("{}.log", c.id));
    let cfg = config.to_str().unwrap();
    let args = [
        "--config",
        cfg,
        "--role",
        "collector",
        "--amqp",
        amqp,
        "--etcd",
        etcd,
        "--collector-id",
        &c.id,
    ];
    c.proc = Some(server(&args, c.addr, &dir, &log));
}

/// A gauge of a server's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (status, text) = common::http(addr, "GET", "/metrics", b"");
    if status != 200 {
        return None;
    }
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Shards owned by each running collector, once they all agree on the member list.
fn owned(cs: &[&Collector]) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for c in cs {
        if metric(c.addr, "ocelli_collectors_live")? as usize != cs.len() {
            return None;
        }
        out.push(metric(c.addr, "ocelli_collector_shards_owned")? as u32);
    }
    (out.iter().sum::<u32>() == SHARDS).then_some(out)
}

fn balanced(v: &[u32]) -> bool {
    v.iter().max().unwrap() - v.iter().min().unwrap() <= 1
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = common::http(addr, "GET", path, b"");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Synthetic series for agent-like key `k` (3 series) at time `t`.
fn synthetic(k: usize, t: i64, i: i64) -> Vec<DecodedSeries> {
    let l = |name: &str, extra: (&str, &str)| {
        Labels::from_pairs([
            ("__name__", name),
            ("host", &format!("h{k}")),
            ("dc", ["a", "b"][k % 2]),
            extra,
        ])
        .unwrap()
    };
    vec![
        DecodedSeries {
            labels: l("syn_bytes_total", ("dir", "in")),
            samples: vec![Sample::new(t, (i * (k as i64 + 1) * 1000) as f64)],
        },
        DecodedSeries {
            labels: l("syn_bytes_total", ("dir", "out")),
            samples: vec![Sample::new(t, (i * 700 + k as i64) as f64)],
        },
        DecodedSeries {
            labels: l("syn_cpu", ("cpu", "0")),
            samples: vec![Sample::new(t, ((i * 37 + k as i64 * 11) % 100) as f64 / 4.0)],
        },
    ]
}

/// Publishes synthetic batches `steps` (15 s apart, ending `base`) for 8 keys over AMQP and the
/// same over HTTP to the reference server.
async fn push_synthetic(amqp: &str, reference: SocketAddr, base: i64, steps: std::ops::Range<i64>) {
    for k in 0..8 {
        let cfg = ocelli_agent::amqp::AmqpConfig {
            url: amqp.into(),
            exchange: "ocelli.metrics".into(),
            ca_file: None,
        };
        let mut p = ocelli_agent::amqp::Publisher::new(
            cfg,
            format!("ns/vm/syn/{k}/onprem"),
            Duration::from_secs(10),
        );
        for i in steps.clone() {
            let body = remote_write::encode(&synthetic(k, base - (120 - i) * 15_000, i)).unwrap();
            p.publish(&body).await.unwrap();
            let (status, text) = common::http(reference, "POST", "/api/v1/write", &body);
            assert_eq!(status, 204, "{text}");
        }
    }
}

#[test]
fn collectors_share_shards_take_over_rebalance_and_the_query_node_answers_as_one_server() {
    let mq = &mut ocelli_testkit::RabbitMq::start();
    let etcd = ocelli_testkit::Etcd::start();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let config = root.join("cluster.toml");
    std::fs::write(
        &config,
        format!("[cluster]\nshards = {SHARDS}\nlease_ttl = \"3s\"\nprefetch = 16\n"),
    )
    .unwrap();
    let amqp = mq.url();

    let mut cs: Vec<Collector> =
        (1..=4).map(|i| Collector { id: format!("c{i}"), addr: free_addr(), proc: None }).collect();
    for c in cs.iter_mut().take(3) {
        start_collector(c, root, &config, &amqp, &etcd.url);
    }
    // 1. three collectors split 16 shards 6/5/5
    let mut split = Vec::new();
    wait_for("three collectors to split the shards", Duration::from_secs(30), || {
        split = owned(&[&cs[0], &cs[1], &cs[2]]).unwrap_or_default();
        !split.is_empty() && balanced(&split)
    });

    // 20 agents push their host metrics every second over AMQP
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let agents: Vec<ocelli_agent::Agent> = (0..AGENTS)
        .map(|i| {
            let mut cfg = ocelli_agent::AgentConfig {
                mode: ocelli_agent::Mode::Push,
                interval_seconds: 1,
                listen: "127.0.0.1:0".parse().unwrap(),
                amqp: Some(ocelli_agent::amqp::AmqpConfig {
                    url: amqp.clone(),
                    exchange: "ocelli.metrics".into(),
                    ca_file: None,
                }),
                data_dir: root.join(format!("agent-{i}")),
                ..Default::default()
            };
            cfg.identity.vm_id = format!("agent-{i}");
            cfg.identity.service_id = "scale".into();
            rt.block_on(ocelli_agent::Agent::start(cfg)).unwrap()
        })
        .collect();
    let stats: Vec<_> = agents.iter().map(|a| a.push_stats()).collect();

    // a single standalone server as the reference, and synthetic data, first half
    let reference = free_addr();
    let _reference = server(&[], reference, &root.join("reference"), &root.join("reference.log"));
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let base = now - now % 15_000;
    rt.block_on(push_synthetic(&amqp, reference, base, 0..60));
    std::thread::sleep(Duration::from_secs(3));

    // 2. kill one collector mid-stream: the others take its shards within the lease
    let t_kill = Instant::now();
    drop(cs[1].proc.take());
    let took = wait_for("two collectors to take over all shards", Duration::from_secs(30), || {
        owned(&[&cs[0], &cs[2]]).is_some_and(|v| balanced(&v))
    });
    eprintln!("takeover after SIGKILL: {:?} (lease 3 s)", t_kill.elapsed().max(took));
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    rt.block_on(push_synthetic(&amqp, reference, base, 60..90));

    // 3. a fourth collector joins and the killed one comes back: four share the shards
    start_collector(&mut cs[3], root, &config, &amqp, &etcd.url);
    wait_for("three collectors to rebalance", Duration::from_secs(30), || {
        owned(&[&cs[0], &cs[2], &cs[3]]).is_some_and(|v| balanced(&v))
    });
    start_collector(&mut cs[1], root, &config, &amqp, &etcd.url);
    wait_for("four collectors to rebalance", Duration::from_secs(30), || {
        owned(&[&cs[0], &cs[1], &cs[2], &cs[3]]).is_some_and(|v| v.iter().all(|&n| n == 4))
    });
    rt.block_on(push_synthetic(&amqp, reference, base, 90..105));

    // 4. the broker dies and comes back while the agents push
    std::thread::sleep(Duration::from_secs(2));
    mq.restart();
    wait_for("the collectors to consume again", Duration::from_secs(60), || {
        owned(&[&cs[0], &cs[1], &cs[2], &cs[3]]).is_some()
    });
    rt.block_on(push_synthetic(&amqp, reference, base, 105..121));
    std::thread::sleep(Duration::from_secs(3));
    let buffered: Vec<u64> = stats
        .iter()
        .map(|s| s.buffered_batches.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    for a in agents {
        rt.block_on(a.stop()).unwrap();
    }
    let sent: Vec<u64> =
        stats.iter().map(|s| s.sent.load(std::sync::atomic::Ordering::Relaxed)).collect();
    let buffered_after: Vec<u64> = stats
        .iter()
        .map(|s| s.buffered_batches.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert!(sent.iter().all(|&n| n >= 10), "agents sent too little: {sent:?}");
    // the broker's death was felt: publishes failed and were kept for later
    let failures: u64 =
        stats.iter().map(|s| s.failures.load(std::sync::atomic::Ordering::Relaxed)).sum();
    assert!(failures > 0, "no agent saw the broker go away");
    eprintln!("publishes that failed during the broker restart and were replayed: {failures}");

    // the query node over the four collectors
    let qn = free_addr();
    let mut args = vec!["--role", "query"];
    let stores: Vec<String> = cs.iter().map(|c| format!("http://{}", c.addr)).collect();
    for s in &stores {
        args.extend(["--store", s.as_str()]);
    }
    let _qn = server(&args, qn, &root.join("query"), &root.join("query.log"));

    // 5. every confirmed batch is stored once: count the samples of each agent's node_load1
    let end_s =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 5;
    let q = r#"count_over_time(node_load1{service_id="scale"}[10m])"#;
    let mut counts: Vec<u64> = Vec::new();
    wait_for("the collectors to drain the queues", Duration::from_secs(60), || {
        let v = get(qn, &format!("/api/v1/query?query={}&time={end_s}", form_encode(q)));
        let mut by_agent = vec![0u64; AGENTS];
        for r in v["data"]["result"].as_array().unwrap() {
            let vm = r["metric"]["vm_id"].as_str().unwrap();
            let i: usize = vm.trim_start_matches("agent-").parse().unwrap();
            by_agent[i] = r["value"][1].as_str().unwrap().parse().unwrap();
        }
        counts = by_agent;
        counts.iter().zip(&sent).all(|(c, s)| c >= s)
    });
    for i in 0..AGENTS {
        assert!(
            counts[i] <= sent[i] + buffered_after[i],
            "agent {i}: {} samples stored, {} confirmed + {} unconfirmed at stop (buffered mid-run {})",
            counts[i],
            sent[i],
            buffered_after[i],
            buffered[i]
        );
    }
    eprintln!("confirmed batches per agent: {sent:?}; stored: {counts:?}");

    // 6. the query node answers as the single server does
    let t = base / 1000;
    let queries = [
        "syn_cpu",
        "sum by (dc) (syn_cpu)",
        "rate(syn_bytes_total[5m])",
        "sum by (dir) (rate(syn_bytes_total[10m]))",
        "increase(syn_bytes_total{dir=\"in\"}[30m])",
        "avg_over_time(syn_cpu[20m])",
        "max_over_time(syn_cpu[1h])",
        "topk(3, syn_cpu)",
        "count by (dc) (syn_bytes_total)",
        "quantile(0.9, syn_cpu)",
        "syn_cpu > 20",
        "absent(syn_nothing)",
    ];
    for q in queries {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={t}&step=60",
            form_encode(q),
            t - 1800
        );
        let (a, b) = (get(qn, &path), get(reference, &path));
        assert_eq!(a["data"], b["data"], "{q}");
        let n = a["data"]["result"].as_array().unwrap().len();
        assert!(n > 0, "{q}: empty answer");
    }
    let path = "/api/v1/series?match[]=syn_cpu";
    assert_eq!(get(qn, path)["data"], get(reference, path)["data"]);
    let path = "/api/v1/label/host/values?match[]=syn_cpu";
    assert_eq!(get(qn, path)["data"], get(reference, path)["data"]);
}
