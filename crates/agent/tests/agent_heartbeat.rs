//! The agent against a stand-in for the server's registry (the registry is written in parallel;
//! this double answers the protocol's heartbeat JSON and takes remote_write): the answer's mode
//! and interval are taken at run time without a restart; 4xx batches are dropped and not
//! retried, 5xx ones buffered and replayed in order; an unreachable or refusing server leaves
//! the agent in its mode.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{agent_value, buffered, config, runtime, wait_until};
use ocelli_agent::{Agent, Mode, RunConfig};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Double {
    beats: Vec<Value>,
    /// What the server wants; `None`: adopt what the agent reports.
    want: Option<(&'static str, u32)>,
    /// Non-zero: answer heartbeats with this error status.
    beat_status: u16,
    /// Answer to remote_write (204 when 0).
    write_status: u16,
    /// For each write the double answered 2xx: the timestamps of `node_time_seconds` in it.
    accepted: Vec<i64>,
    attempts: usize,
}

type Shared = Arc<Mutex<Double>>;

async fn heartbeat(State(d): State<Shared>, body: Bytes) -> (StatusCode, axum::Json<Value>) {
    let beat: Value = serde_json::from_slice(&body).unwrap();
    let mut d = d.lock().unwrap();
    d.beats.push(beat.clone());
    if d.beat_status != 0 {
        let err = json!({"status":"error","errorType":"bad_data","error":"service_type: \"mcis\" is not allowed; expected one of vm, k8s"});
        return (StatusCode::from_u16(d.beat_status).unwrap(), axum::Json(err));
    }
    let (mode, interval) = match d.want {
        Some((m, i)) => (json!(m), json!(i)),
        None => (beat["mode"].clone(), beat["interval_seconds"].clone()),
    };
    let status = if d.beats.len() == 1 { StatusCode::CREATED } else { StatusCode::OK };
    let key = format!(
        "{}/{}/{}/{}/{}",
        beat["ns"].as_str().unwrap(),
        beat["service_type"].as_str().unwrap(),
        beat["service_id"].as_str().unwrap(),
        beat["vm_id"].as_str().unwrap(),
        beat["csp"].as_str().unwrap()
    );
    (
        status,
        axum::Json(
            json!({"status":"success","data":{"key":key,"mode":mode,"interval_seconds":interval}}),
        ),
    )
}

async fn write(State(d): State<Shared>, body: Bytes) -> StatusCode {
    let series = ocelli_wire::remote_write::decode(&body, &Default::default()).unwrap();
    let mut d = d.lock().unwrap();
    d.attempts += 1;
    let status = if d.write_status == 0 { 204 } else { d.write_status };
    if status < 300 {
        let t =
            series.iter().find(|s| s.labels.metric_name() == Some("node_time_seconds")).unwrap();
        assert_eq!(t.labels.get("job"), Some("ocelli-agent"));
        d.accepted.push(t.samples[0].t);
    }
    StatusCode::from_u16(status).unwrap()
}

fn start_double(rt: &tokio::runtime::Runtime) -> (SocketAddr, Shared) {
    let d = Shared::default();
    let app = axum::Router::new()
        .route("/api/v1/agents/heartbeat", post(heartbeat))
        .route("/api/v1/write", post(write))
        .with_state(d.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, d)
}

fn with<T>(d: &Shared, f: impl FnOnce(&mut Double) -> T) -> T {
    f(&mut d.lock().unwrap())
}

#[test]
fn the_heartbeat_answer_switches_mode_and_interval_at_run_time() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (server, d) = start_double(&rt);
    let mut cfg = config(Mode::Push, dir.path());
    cfg.server = Some(format!("http://{server}"));
    let agent = rt.block_on(Agent::start(cfg)).unwrap();
    wait_until(Duration::from_secs(10), "two pushes", || with(&d, |d| d.accepted.len() >= 2));
    let first = with(&d, |d| d.beats[0].clone());
    assert_eq!(
        first,
        json!({"ns":"team-a","service_type":"vm","service_id":"mcis-1","vm_id":"vm-test","csp":"aws",
            "region":"ap-northeast-2","address":agent.address,"version":env!("CARGO_PKG_VERSION"),
            "mode":"push","interval_seconds":1})
    );

    // the operator asks for pull every 2 s: the agent switches without a restart
    with(&d, |d| d.want = Some(("pull", 2)));
    let pull = RunConfig { mode: Mode::Pull, interval_seconds: 2 };
    wait_until(Duration::from_secs(5), "the switch to pull", || agent.running() == pull);
    wait_until(Duration::from_secs(5), "a heartbeat reporting pull", || {
        with(&d, |d| {
            d.beats.last().is_some_and(|b| b["mode"] == "pull" && b["interval_seconds"] == 2)
        })
    });
    let pushes = with(&d, |d| d.attempts);
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(with(&d, |d| d.attempts), pushes, "pushes went on in pull mode");
    let (status, _) = common::http::http(agent.addr, "GET", "/metrics", b"");
    assert_eq!(status, 200);

    // and back to push every second
    with(&d, |d| d.want = Some(("push", 1)));
    let push = RunConfig { mode: Mode::Push, interval_seconds: 1 };
    wait_until(Duration::from_secs(5), "the switch to push", || agent.running() == push);
    wait_until(Duration::from_secs(5), "pushes again", || with(&d, |d| d.attempts >= pushes + 2));
    rt.block_on(agent.stop()).unwrap();
}

#[test]
fn refused_batches_are_dropped_and_failed_ones_replayed_in_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (server, d) = start_double(&rt);
    with(&d, |d| d.write_status = 400);
    let mut cfg = config(Mode::Push, dir.path());
    cfg.server = Some(format!("http://{server}"));
    let agent = rt.block_on(Agent::start(cfg)).unwrap();

    // 4xx: each batch is sent once and dropped
    wait_until(Duration::from_secs(10), "three refused batches", || with(&d, |d| d.attempts >= 3));
    assert_eq!(buffered(dir.path()), 0);
    let refused = agent_value(agent.addr, "ocelli_agent_rejected_batches_total");
    let attempts = with(&d, |d| d.attempts) as f64;
    assert!(refused >= 3.0 && refused <= attempts, "{refused} refused of {attempts} attempts");

    // 5xx: kept on disk, then replayed oldest first once the server takes them
    with(&d, |d| d.write_status = 503);
    wait_until(Duration::from_secs(10), "three buffered batches", || buffered(dir.path()) >= 3);
    with(&d, |d| d.write_status = 0);
    wait_until(Duration::from_secs(10), "the buffer drained", || buffered(dir.path()) == 0);
    wait_until(Duration::from_secs(5), "a push after the replay", || {
        with(&d, |d| d.accepted.len() >= 5)
    });
    let times = with(&d, |d| d.accepted.clone());
    assert!(times.windows(2).all(|w| w[0] < w[1]), "not in collection order: {times:?}");
    let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= 2500), "a batch went missing: {gaps:?}");
    assert!(agent_value(agent.addr, "ocelli_agent_push_failures_total") >= 3.0);
    rt.block_on(agent.stop()).unwrap();
}

#[test]
fn an_unreachable_or_refusing_server_leaves_the_agent_in_its_mode() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Mode::Pull, dir.path());
    cfg.server = Some(format!("http://127.0.0.1:{}", ocelli_testkit::free_port()));
    cfg.request_timeout_seconds = 1;
    let agent = rt.block_on(Agent::start(cfg.clone())).unwrap();
    wait_until(Duration::from_secs(10), "two failed heartbeats", || {
        agent_value(agent.addr, "ocelli_agent_heartbeat_failures_total") >= 2.0
    });
    assert_eq!(agent.running(), RunConfig { mode: Mode::Pull, interval_seconds: 1 });
    rt.block_on(agent.stop()).unwrap();

    // a registration refused with a 4xx: logged, retried, mode kept
    let (server, d) = start_double(&rt);
    with(&d, |d| d.beat_status = 400);
    cfg.server = Some(format!("http://{server}"));
    cfg.mode = Mode::Ondemand;
    let agent = rt.block_on(Agent::start(cfg)).unwrap();
    wait_until(Duration::from_secs(10), "two refused heartbeats", || {
        with(&d, |d| d.beats.len() >= 2)
    });
    assert_eq!(agent.running().mode, Mode::Ondemand);
    assert!(agent_value(agent.addr, "ocelli_agent_heartbeat_failures_total") >= 1.0);
    assert_eq!(with(&d, |d| d.attempts), 0, "ondemand pushed");
    rt.block_on(agent.stop()).unwrap();
}
