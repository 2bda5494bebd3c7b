//! The agent and the server end to end, as real processes on loopback: an agent pushes and its
//! host metrics answer PromQL; the server is stopped and restarted and the series have no gap
//! (the agent buffered on disk and replayed); the agent is moved to pull mode through the
//! registry's API and the same series go on; an on-demand call returns current values; the
//! agent is killed and turns unhealthy, in the registry and in `ocelli_agent_up`. A second test
//! checks that `ocelli server` alone shows its own host's agent.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ocelli_testkit::{Proc, free_addr, wait_for};
use serde_json::Value;

const KEY: &str = "default/vm/mcis-e2e/e2e-vm/aws";
const INTERVAL_S: i64 = 1;

fn start_server(addr: SocketAddr, dir: &Path, config: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocelli"));
    cmd.args(["server", "--no-local-agent", "--listen", &addr.to_string(), "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir);
    let p = Proc::spawn(cmd, Some(log));
    wait_for("the server to be ready", Duration::from_secs(20), || {
        TcpStream::connect(addr).is_ok() && common::http(addr, "GET", "/-/ready", b"").0 == 200
    });
    p
}

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = common::http(addr, "GET", path, b"");
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

fn query(addr: SocketAddr, q: &str) -> Value {
    let q: String = form_encode(q);
    let (status, v) = get_json(addr, &format!("/api/v1/query?query={q}"));
    assert_eq!(status, 200, "{v}");
    v["data"].clone()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Timestamps (ms) of the raw samples of `node_load1` of the test agent over the last `secs`.
fn load1_times(addr: SocketAddr, secs: u64) -> (Value, Vec<i64>) {
    let d = query(addr, &format!(r#"node_load1{{vm_id="e2e-vm"}}[{secs}s]"#));
    let result = d["result"].as_array().unwrap().clone();
    assert!(result.len() <= 1, "one series expected, got {result:?}");
    let Some(series) = result.first() else { return (Value::Null, Vec::new()) };
    let times = series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
        .collect();
    (series["metric"].clone(), times)
}

/// The largest step between consecutive timestamps.
fn largest_gap(times: &[i64]) -> i64 {
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

#[test]
fn push_outage_replay_switch_to_pull_ondemand_and_death() {
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, agent_dir) = (dir.path().join("server"), dir.path().join("agent"));
    let config = dir.path().join("server.toml");
    std::fs::write(&config, "[registry]\nunhealthy_after = 3\nup_interval = \"1s\"\n").unwrap();
    let log = dir.path().join("server.log");
    let (saddr, aaddr) = (free_addr(), free_addr());
    let server = start_server(saddr, &server_dir, &config, &log);

    let agent = Proc::spawn(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ocelli"));
            c.args(["agent", "--mode", "push", "--interval", &INTERVAL_S.to_string()])
                .args(["--server", &format!("http://{saddr}"), "--listen", &aaddr.to_string()])
                .args(["--service-id", "mcis-e2e", "--vm-id", "e2e-vm", "--csp", "aws"])
                .arg("--data-dir")
                .arg(&agent_dir);
            c
        },
        None,
    );

    // push: the host's metrics answer PromQL, with the identity, job and instance
    wait_for("pushed samples", Duration::from_secs(20), || load1_times(saddr, 60).1.len() >= 3);
    let (metric, _) = load1_times(saddr, 60);
    for (k, v) in [
        ("job", "ocelli-agent"),
        ("instance", &aaddr.to_string()[..]),
        ("ns", "default"),
        ("service_type", "vm"),
        ("service_id", "mcis-e2e"),
        ("vm_id", "e2e-vm"),
        ("csp", "aws"),
    ] {
        assert_eq!(metric[k], v, "{metric}");
    }
    let (status, a) = get_json(saddr, &format!("/api/v1/agents/{KEY}"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["data"]["mode"], "push");
    assert_eq!(a["data"]["health"], "healthy");

    // the server goes away for a while and comes back: the agent's buffer fills the hole
    server.terminate(Duration::from_secs(20));
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let server = start_server(saddr, &server_dir, &config, &log);
    let outage_ms = down.elapsed().as_millis() as i64;
    wait_for("the buffered samples to be replayed", Duration::from_secs(20), || {
        let (_, t) = load1_times(saddr, 60);
        t.len() >= 2 && largest_gap(&t) <= 2500 && t[t.len() - 1] - t[0] > outage_ms + 2000
    });

    // the operator moves the agent to pull: it learns so at its next heartbeat and the
    // server scrapes it; the same series go on
    let body = br#"{"mode":"pull","interval_seconds":1}"#;
    let (status, b) = common::http(saddr, "PATCH", &format!("/api/v1/agents/{KEY}"), body);
    assert_eq!(status, 200, "{b}");
    let switched = Instant::now();
    wait_for("scrapes of the agent", Duration::from_secs(20), || {
        let up = query(saddr, &format!(r#"up{{job="ocelli-agent",instance="{aaddr}"}}"#));
        up["result"].as_array().is_some_and(|r| r.len() == 1 && r[0]["value"][1] == "1")
    });
    std::thread::sleep(Duration::from_secs(3));
    let since = switched.elapsed().as_secs() + 8;
    let (metric_after, times) = load1_times(saddr, since);
    assert_eq!(metric_after, metric, "pulled samples must continue the pushed series");
    assert!(largest_gap(&times) <= 2500, "a gap around the switch: {times:?}");
    let (_, a) = get_json(saddr, &format!("/api/v1/agents/{KEY}"));
    assert_eq!(a["data"]["mode"], "pull");

    // on demand: current values straight from the agent, through the server
    let (status, body) =
        common::http(saddr, "GET", &format!("/api/v1/agents/{KEY}/collect/loadavg"), b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("node_load1{"), "{body}");
    let (status, body) =
        common::http(saddr, "GET", &format!("/api/v1/agents/{KEY}/collect/processes?top=3"), b"");
    assert_eq!(status, 200, "{body}");
    let procs: Value = serde_json::from_str(&body).unwrap();
    let procs = procs["data"].as_array().unwrap();
    assert!(!procs.is_empty() && procs.len() <= 3, "{body}");

    // the agent dies: unhealthy within unhealthy_after (3) intervals, give or take a tick
    drop(agent);
    let took = wait_for("the dead agent to turn unhealthy", Duration::from_secs(15), || {
        get_json(saddr, &format!("/api/v1/agents/{KEY}")).1["data"]["health"] == "unhealthy"
    });
    assert!(took <= Duration::from_secs(8), "unhealthy only after {took:?}");
    wait_for("ocelli_agent_up to show it", Duration::from_secs(10), || {
        let up = query(saddr, r#"ocelli_agent_up{vm_id="e2e-vm"}"#);
        up["result"].as_array().is_some_and(|r| r.len() == 1 && r[0]["value"][1] == "0")
    });
    server.terminate(Duration::from_secs(20));
}

#[test]
fn the_server_runs_an_agent_for_its_own_host() {
    let dir = tempfile::tempdir().unwrap();
    let saddr = free_addr();
    let local = free_addr();
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[local_agent]\nlisten = \"{local}\"\ninterval_seconds = 1\nservice_id = \"here\"\n"
        ),
    )
    .unwrap();
    let server = Proc::spawn(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ocelli"));
            c.args(["server", "--listen", &saddr.to_string(), "--config"])
                .arg(&config)
                .arg("--data-dir")
                .arg(dir.path().join("data"));
            c
        },
        None,
    );
    wait_for("the local agent's samples", Duration::from_secs(20), || {
        TcpStream::connect(saddr).is_ok() && {
            let d = query(saddr, r#"node_memory_MemTotal_bytes{service_id="here"}"#);
            d["result"].as_array().is_some_and(|r| r.len() == 1)
        }
    });
    let (_, agents) = get_json(saddr, "/api/v1/agents?service_id=here");
    let list = agents["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{agents}");
    assert_eq!(list[0]["address"], local.to_string());
    assert_eq!(list[0]["mode"], "push");
    server.terminate(Duration::from_secs(20));
}
