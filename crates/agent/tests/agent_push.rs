//! Push against a real `ocelli server` on loopback: with the server down the agent buffers its
//! batches on disk, the buffer survives an agent restart, and when the server comes up (twice)
//! the batches are replayed in order before new ones; a query on the server then shows the
//! series without a gap, labelled with the identity, `job` and `instance`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use ocelli_model::time::now_ms;
use std::net::SocketAddr;
use std::time::Duration;

use common::http::http;
use common::{agent_value, buffered, config, runtime, wait_until};
use ocelli_agent::{Agent, Mode};
use ocelli_server::Server;

fn start_server(rt: &tokio::runtime::Runtime, dir: &std::path::Path, addr: SocketAddr) -> Server {
    let cfg = ocelli_server::Config { listen: addr, ..common::http::config(dir) };
    rt.block_on(Server::start(cfg)).unwrap()
}

/// The timestamps (ms) of the agent's `node_time_seconds` stored on the server, and its labels.
fn stored_times(server: SocketAddr) -> (Vec<i64>, serde_json::Value) {
    let q: String =
        form_urlencoded::byte_serialize(b"node_time_seconds{vm_id=\"vm-test\"}[10m]").collect();
    let (status, body) = http(
        server,
        "GET",
        &format!("/api/v1/query?query={q}&time={}", now_ms() as f64 / 1000.0),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "expected one series: {body}");
    let times = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
        .collect();
    (times, result[0]["metric"].clone())
}

#[test]
fn push_buffers_while_the_server_is_down_and_replays_in_order_without_a_gap() {
    let rt = runtime();
    let agent_dir = tempfile::tempdir().unwrap();
    let server_dir = tempfile::tempdir().unwrap();
    let server_addr: SocketAddr =
        format!("127.0.0.1:{}", ocelli_testkit::free_port()).parse().unwrap();
    let mut cfg = config(Mode::Push, agent_dir.path());
    cfg.server = Some(format!("http://{server_addr}"));
    // the same instance label across the agent's restart
    cfg.advertise = Some("127.0.0.1:9101".into());
    cfg.request_timeout_seconds = 2;

    // the server is down: batches pile up on disk
    let t0 = now_ms();
    let agent = rt.block_on(Agent::start(cfg.clone())).unwrap();
    wait_until(Duration::from_secs(15), "3 buffered batches", || buffered(agent_dir.path()) >= 3);
    assert!(agent_value(agent.addr, "ocelli_agent_push_failures_total") >= 3.0);
    // the agent restarts while the server is still down: the buffer survives
    rt.block_on(agent.stop()).unwrap();
    let before = buffered(agent_dir.path());
    let agent = rt.block_on(Agent::start(cfg.clone())).unwrap();
    wait_until(Duration::from_secs(15), "more buffered batches", || {
        buffered(agent_dir.path()) > before + 1
    });

    // the server comes up: the backlog goes first, then new batches
    let t_up = now_ms();
    let server = start_server(&rt, server_dir.path(), server_addr);
    wait_until(Duration::from_secs(20), "the buffer drained", || buffered(agent_dir.path()) == 0);
    std::thread::sleep(Duration::from_millis(2500));
    // a second outage: stopped and started on the same data
    rt.block_on(server.stop()).unwrap();
    wait_until(Duration::from_secs(15), "2 buffered batches", || buffered(agent_dir.path()) >= 2);
    let server = start_server(&rt, server_dir.path(), server_addr);
    wait_until(Duration::from_secs(20), "the buffer drained", || buffered(agent_dir.path()) == 0);
    std::thread::sleep(Duration::from_millis(1500));

    let (times, labels) = stored_times(server.addr);
    for (k, v) in common::IDENTITY {
        assert_eq!(labels[k], v, "{labels}");
    }
    assert_eq!(labels["job"], "ocelli-agent");
    assert_eq!(labels["instance"], "127.0.0.1:9101");
    assert!(
        times[0] >= t0 - 1000 && times[0] < t_up - 2000,
        "first sample {} not from the outage (start {t0}, up {t_up})",
        times[0]
    );
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g > 0 && *g <= 2500), "gap in the stored series: {gaps:?}");
    let span = times[times.len() - 1] - times[0];
    assert!(times.len() as i64 >= span / 1000 - 1, "{} samples over {span} ms", times.len());
    assert!(agent_value(agent.addr, "ocelli_agent_pushed_batches_total") >= 2.0);
    assert_eq!(agent_value(agent.addr, "ocelli_agent_buffer_batches"), 0.0);
    assert_eq!(agent_value(agent.addr, "ocelli_agent_buffer_dropped_batches_total"), 0.0);
    // whether the server has a registry (heartbeats answered) or not (refused), push goes on
    assert_eq!(agent.running().mode, Mode::Push);
    rt.block_on(agent.stop()).unwrap();
    rt.block_on(server.stop()).unwrap();
}
