//! Shared by the agent's integration tests: the server tests' raw HTTP/1.1 client (included from
//! `crates/server/tests/common`, so both sides of the protocol are tested with the same client),
//! a runtime, an agent configuration on a free loopback port, exposition parsing and waiting.
#![allow(clippy::unwrap_used, dead_code)] // tests: a panic is the failure report; not every test uses every helper

use std::time::{Duration, Instant};

use ocelli_agent::{AgentConfig, Mode};

#[path = "../../../server/tests/common/mod.rs"]
pub mod http;

/// The six identity labels the tests give their agents.
pub const IDENTITY: [(&str, &str); 6] = [
    ("csp", "aws"),
    ("ns", "team-a"),
    ("region", "ap-northeast-2"),
    ("service_id", "mcis-1"),
    ("service_type", "vm"),
    ("vm_id", "vm-test"),
];

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// An agent on a free loopback port with the test identity and its data under `dir`.
pub fn config(mode: Mode, dir: &std::path::Path) -> AgentConfig {
    let mut c = AgentConfig {
        mode,
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        interval_seconds: 1,
        ..AgentConfig::default()
    };
    let id = &mut c.identity;
    id.csp = "aws".into();
    id.ns = "team-a".into();
    id.region = "ap-northeast-2".into();
    id.service_id = "mcis-1".into();
    id.vm_id = "vm-test".into();
    c.collectors.processes_cpu_window_ms = 100;
    c
}

/// Parses an exposition body as the server does.
pub fn parse(body: &[u8]) -> ocelli_wire::exposition::Parsed {
    ocelli_wire::exposition::decode(body, 0, &Default::default()).unwrap()
}

/// Waits until `f` holds, failing with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A value of one unlabelled (but for identity) family on the agent's `/metrics`.
pub fn agent_value(addr: std::net::SocketAddr, name: &str) -> f64 {
    let (status, body) = http::http(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200, "{body}");
    let p = parse(body.as_bytes());
    p.series.iter().find(|s| s.labels.metric_name() == Some(name)).unwrap().samples[0].v
}

/// Batch files in an agent's push buffer.
pub fn buffered(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("buffer")).map(|d| d.count()).unwrap_or(0)
}
