//! Pull and on-demand without any server: `GET /metrics` plain and gzip (identity labels on
//! every series, no job/instance), `GET /collect/{collector}` for one collector and the errors
//! for unknown and disabled ones, the process view and its `top` check, and health.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::Read;

use common::http::{http, request_raw};
use common::{IDENTITY, config, parse, runtime};
use ocelli_agent::{Agent, Mode};

#[test]
fn pull_serves_metrics_plain_and_gzip_with_identity_labels() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let agent = rt.block_on(Agent::start(config(Mode::Pull, dir.path()))).unwrap();
    let addr = agent.addr;

    let plain = request_raw(addr, "GET", "/metrics", "", b"");
    assert_eq!(plain.status, 200);
    assert!(plain.headers.contains("content-type: text/plain; version=0.0.4"), "{}", plain.headers);
    assert!(!plain.headers.contains("content-encoding"), "{}", plain.headers);
    let p = parse(&plain.body);
    assert!(p.series.len() > 100, "only {} series", p.series.len());
    for s in &p.series {
        for (k, v) in IDENTITY {
            assert_eq!(s.labels.get(k), Some(v), "{} lacks {k}", s.labels);
        }
        assert_eq!(s.labels.get("job"), None, "{}", s.labels);
        assert_eq!(s.labels.get("instance"), None, "{}", s.labels);
    }
    let names: std::collections::BTreeSet<_> =
        p.series.iter().filter_map(|s| s.labels.metric_name()).collect();
    for n in [
        "node_cpu_seconds_total",
        "node_memory_MemTotal_bytes",
        "node_load1",
        "node_filesystem_avail_bytes",
        "node_disk_read_bytes_total",
        "node_network_receive_bytes_total",
        "node_boot_time_seconds",
        "node_uname_info",
        "node_os_info",
        "node_vmstat_pgfault",
        "ocelli_cpu_utilization_percent",
        "ocelli_memory_utilization_percent",
        "ocelli_uptime_seconds",
        "ocelli_agent_collector_success",
    ] {
        assert!(names.contains(n), "{n} missing from /metrics");
    }
    let ok = p
        .series
        .iter()
        .filter(|s| s.labels.metric_name() == Some("ocelli_agent_collector_success"));
    for s in ok {
        assert_eq!(s.samples[0].v, 1.0, "collector failed: {}", s.labels);
    }

    let gz = request_raw(addr, "GET", "/metrics", "Accept-Encoding: gzip\r\n", b"");
    assert_eq!(gz.status, 200);
    assert!(gz.headers.contains("content-encoding: gzip"), "{}", gz.headers);
    assert!(
        gz.body.len() * 4 < plain.body.len(),
        "gzip body {} vs plain {}",
        gz.body.len(),
        plain.body.len()
    );
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_end(&mut text).unwrap();
    let pg = parse(&text);
    let gz_names: std::collections::BTreeSet<_> =
        pg.series.iter().filter_map(|s| s.labels.metric_name()).collect();
    assert_eq!(gz_names, names);

    // pull needs no server and no data directory content
    assert!(!dir.path().join("buffer").exists());
    let (status, body) = http(addr, "GET", "/-/healthy", b"");
    assert_eq!((status, body.as_str()), (200, "Ocelli agent is Healthy.\n"));
    assert_eq!(agent.running().mode, Mode::Pull);
    rt.block_on(agent.stop()).unwrap();
}

#[test]
fn collect_one_collector_and_the_errors() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Ondemand, dir.path());
    cfg.collectors.disabled = vec!["vmstat".into()];
    let agent = rt.block_on(Agent::start(cfg)).unwrap();
    let addr = agent.addr;

    let (status, body) = http(addr, "GET", "/collect/meminfo", b"");
    assert_eq!(status, 200);
    let p = parse(body.as_bytes());
    assert!(p.series.iter().all(|s| {
        let n = s.labels.metric_name().unwrap();
        n.starts_with("node_memory_")
            || n.starts_with("ocelli_memory_")
            || n.starts_with("ocelli_swap_")
    }));
    let total = p
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("node_memory_MemTotal_bytes"))
        .unwrap();
    let kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total.samples[0].v, kb * 1024.0);
    assert_eq!(total.labels.get("vm_id"), Some("vm-test"));

    let (status, body) = http(addr, "GET", "/collect/nope", b"");
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.starts_with("collector \"nope\" is unknown; known collectors are cpu, cpufreq,"),
        "{msg}"
    );
    assert!(msg.ends_with(", processes"), "{msg}");
    let (status, body) = http(addr, "GET", "/collect/vmstat", b"");
    assert_eq!(status, 404);
    assert!(
        body.contains("collector \\\"vmstat\\\" is disabled in this agent's configuration"),
        "{body}"
    );

    let (status, body) = http(addr, "GET", "/collect/processes?top=3", b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    let list = v["data"].as_array().unwrap();
    assert!((1..=3).contains(&list.len()), "{body}");
    for p in list {
        assert!(p["pid"].as_u64().unwrap() > 0);
        assert!(!p["user"].as_str().unwrap().is_empty());
        assert!(p["cpu_percent"].as_f64().unwrap() >= 0.0);
        assert!(p["memory_bytes"].is_u64());
        assert!(!p["command"].as_str().unwrap().is_empty());
    }
    let cpus: Vec<f64> = list.iter().map(|p| p["cpu_percent"].as_f64().unwrap()).collect();
    assert!(cpus.windows(2).all(|w| w[0] >= w[1]), "not sorted by CPU: {cpus:?}");
    let (status, body) = http(addr, "GET", "/collect/processes", b"");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["data"].as_array().unwrap().len() <= 10);
    for bad in ["0", "1001", "x"] {
        let (status, body) = http(addr, "GET", &format!("/collect/processes?top={bad}"), b"");
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains(&format!("top: \\\"{bad}\\\" is not a whole number in 1..=1000")),
            "{body}"
        );
    }
    rt.block_on(agent.stop()).unwrap();
}
