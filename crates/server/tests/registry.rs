//! The agent registry over real HTTP on loopback: registration and heartbeats, the REST API
//! with every list filter, the errors of malformed requests (each naming its field and the
//! allowed values), persistence across a restart (with health kept through the grace period),
//! health from missed heartbeats as the API and `ocelli_agent_up` show it, pull-mode agents
//! scraped under job `ocelli-agent`, and on-demand calls proxied to an agent.
//!
//! The agent is being written alongside this (`crates/agent`); until the end-to-end test runs
//! the real one, [`FakeAgent`] stands in for it: a small axum server that answers `/metrics`
//! and `/collect/{collector}` the way the protocol says.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "common/mod.rs"]
pub(crate) mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{http, request, wait};
use ocelli_server::{Config, Server};
use serde_json::{Value, json};

/// A config on a free port with fast health checks: 1 s intervals make an agent unhealthy
/// after 3 s, and `ocelli_agent_up` is written every 200 ms.
fn config(dir: &std::path::Path) -> Config {
    let mut c = common::config(dir);
    c.registry.up_interval = "200ms".into();
    c.registry.ondemand_timeout = "1s".into();
    c.registry.max_body_bytes = 4096;
    crate::registry_backend(&mut c);
    c
}

/// The back-end this suite runs on: the embedded file here; `tests/registry_etcd.rs` runs the
/// same suite with the registry in etcd.
#[allow(dead_code)] // unused where another file includes this suite with its own back-end
fn registry_backend(_: &mut Config) {}

/// Starts a server with `cfg`, runs `f` with its address on a blocking thread (the HTTP client
/// blocks), then stops the server.
async fn with_server<T: Send + 'static>(
    cfg: Config,
    f: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> T {
    let server = Server::start(cfg).await.unwrap();
    let addr = server.addr;
    let out = tokio::task::spawn_blocking(move || f(addr)).await.unwrap();
    server.stop().await.unwrap();
    out
}

/// A heartbeat body; `vm` and `service_id` vary the key.
pub(crate) fn beat(service_id: &str, vm: &str, mode: &str, interval: u32, address: &str) -> Value {
    json!({
        "ns": "default", "service_type": "vm", "service_id": service_id, "vm_id": vm,
        "csp": "aws", "region": "ap-northeast-2", "address": address, "version": "0.1.0",
        "mode": mode, "interval_seconds": interval
    })
}

pub(crate) fn call(addr: SocketAddr, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(body).unwrap() };
    let (code, text) = http(addr, method, path, &body);
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    (code, v)
}

pub(crate) fn heartbeat(addr: SocketAddr, body: &Value) -> (u16, Value) {
    call(addr, "POST", "/api/v1/agents/heartbeat", body)
}

pub(crate) fn list(addr: SocketAddr, query: &str) -> Vec<String> {
    let (code, v) = call(addr, "GET", &format!("/api/v1/agents{query}"), &Value::Null);
    assert_eq!(code, 200, "{v}");
    v["data"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap().to_string()).collect()
}

pub(crate) fn agent(addr: SocketAddr, key: &str) -> Value {
    let (code, v) = call(addr, "GET", &format!("/api/v1/agents/{key}"), &Value::Null);
    assert_eq!(code, 200, "{v}");
    v["data"].clone()
}

/// An instant query's result vector.
fn query(addr: SocketAddr, q: &str) -> Vec<Value> {
    let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (code, v) = call(addr, "GET", &format!("/api/v1/query?query={q}"), &Value::Null);
    assert_eq!(code, 200, "{v}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// Asserts a 4xx with a Prometheus-shaped body and exactly `message`.
fn assert_error(got: (u16, Value), code: u16, error_type: &str, message: &str) {
    let (c, v) = got;
    assert_eq!(c, code, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["errorType"], error_type, "{v}");
    assert_eq!(v["error"], message, "{v}");
}

/// A stand-in for `ocelli agent` on a free loopback port.
struct FakeAgent {
    addr: SocketAddr,
    /// While false, `/metrics` answers 500 (a failed scrape).
    serving: Arc<AtomicBool>,
}

async fn fake_agent(service_id: &'static str) -> FakeAgent {
    use axum::extract::{Path, RawQuery};
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    let serving = Arc::new(AtomicBool::new(true));
    let up = serving.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let up = up.load(Ordering::SeqCst);
                async move {
                    if !up {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "collectors failed").into_response();
                    }
                    let body = format!(
                        "# TYPE agent_test_metric gauge\nagent_test_metric{{ns=\"default\",service_type=\"vm\",service_id=\"{service_id}\",vm_id=\"vm-1\",csp=\"aws\",region=\"ap-northeast-2\"}} 42\n"
                    );
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
                }
            }),
        )
        .route(
            "/collect/{collector}",
            get(|Path(c): Path<String>, RawQuery(q): RawQuery| async move {
                match c.as_str() {
                    "cpu" => (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12.5\n",
                    )
                        .into_response(),
                    "processes" => axum::Json(json!({"status": "success", "query": q})).into_response(),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        "late\n".into_response()
                    }
                    "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "disk collector panicked").into_response(),
                    other => (
                        StatusCode::NOT_FOUND,
                        format!("unknown collector {other:?}; known: cpu, processes\n"),
                    )
                        .into_response(),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeAgent { addr, serving }
}

/// A loopback address nothing listens on.
fn closed_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_heartbeat_list_get_patch_delete() {
    let dir = tempfile::tempdir().unwrap();
    with_server(config(dir.path()), move |addr| {
        let a = beat("mcis-1", "vm-1", "push", 10, "10.0.0.5:9101");
        let (code, v) = heartbeat(addr, &a);
        assert_eq!(code, 201, "the first heartbeat registers: {v}");
        assert_eq!(
            v,
            json!({"status": "success", "data": {"key": "default/vm/mcis-1/vm-1/aws", "mode": "push", "interval_seconds": 10}})
        );
        let (code, v) = heartbeat(addr, &a);
        assert_eq!(code, 200, "{v}");
        let mut b = beat("mcis-1", "vm-2", "ondemand", 30, "10.0.0.6:9101");
        b["csp"] = json!("gcp");
        assert_eq!(heartbeat(addr, &b).0, 201);
        let mut c = beat("k8s-a", "node-1", "push", 10, "10.0.0.7:9101");
        c["ns"] = json!("team-b");
        c["service_type"] = json!("k8s");
        assert_eq!(heartbeat(addr, &c).0, 201);

        let (ka, kb, kc) =
            ("default/vm/mcis-1/vm-1/aws", "default/vm/mcis-1/vm-2/gcp", "team-b/k8s/k8s-a/node-1/aws");
        assert_eq!(list(addr, ""), [ka, kb, kc]);
        assert_eq!(list(addr, "?ns=default"), [ka, kb]);
        assert_eq!(list(addr, "?csp=aws"), [ka, kc]);
        assert_eq!(list(addr, "?service_type=k8s"), [kc]);
        assert_eq!(list(addr, "?service_id=mcis-1&csp=gcp"), [kb]);
        assert_eq!(list(addr, "?mode=ondemand"), [kb]);
        assert_eq!(list(addr, "?health=healthy"), [ka, kb, kc]);
        assert!(list(addr, "?health=unhealthy").is_empty());

        let got = agent(addr, ka);
        assert_eq!(got["key"], ka);
        for field in ["ns", "service_type", "service_id", "vm_id", "csp", "region", "address", "version", "mode", "interval_seconds"] {
            assert_eq!(got[field], a[field], "{field}: {got}");
        }
        assert_eq!(got["health"], "healthy");
        let (seen, registered) = (got["last_seen"].as_str().unwrap(), got["registered_at"].as_str().unwrap());
        // compared as times: RFC 3339 strings with fractions of different lengths do not sort
        let at = |s: &str| ocelli_model::time::parse_time(s).unwrap();
        assert!(seen.ends_with('Z') && at(seen) >= at(registered), "{got}");
        assert_eq!(got.as_object().unwrap().len(), 14, "{got}");

        // an operator's change: the agent's next heartbeat answer carries it
        let (code, v) = call(addr, "PATCH", &format!("/api/v1/agents/{ka}"), &json!({"mode": "ondemand", "interval_seconds": 15}));
        assert_eq!(code, 200, "{v}");
        assert_eq!((v["data"]["mode"].clone(), v["data"]["interval_seconds"].clone()), (json!("ondemand"), json!(15)));
        let (code, v) = heartbeat(addr, &a);
        assert_eq!(code, 200);
        assert_eq!(v["data"], json!({"key": ka, "mode": "ondemand", "interval_seconds": 15}));
        // the agent still reports push: the operator's values win, only the interval is patched now
        let (_, v) = call(addr, "PATCH", &format!("/api/v1/agents/{ka}"), &json!({"interval_seconds": 20}));
        assert_eq!((v["data"]["mode"].clone(), v["data"]["interval_seconds"].clone()), (json!("ondemand"), json!(20)));
        assert_eq!(heartbeat(addr, &a).1["data"]["interval_seconds"], 20);
        // before any patch the server follows what the agent runs
        c["mode"] = json!("ondemand");
        assert_eq!(heartbeat(addr, &c).1["data"]["mode"], "ondemand");
        assert_eq!(list(addr, "?mode=ondemand"), [ka, kb, kc]);

        let (_, metrics) = http(addr, "GET", "/metrics", b"");
        assert!(metrics.contains("# TYPE ocelli_registry_agents gauge\n"), "{metrics}");
        assert!(metrics.contains("ocelli_registry_agents{mode=\"ondemand\",health=\"healthy\"} 3\n"), "{metrics}");
        assert!(metrics.contains("ocelli_registry_agents{mode=\"push\",health=\"unhealthy\"} 0\n"), "{metrics}");

        let (code, v) = call(addr, "DELETE", &format!("/api/v1/agents/{kb}"), &Value::Null);
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["data"]["key"], kb);
        assert_eq!(list(addr, ""), [ka, kc]);
        let gone = format!("no agent is registered with key \"{kb}\"");
        assert_error(call(addr, "GET", &format!("/api/v1/agents/{kb}"), &Value::Null), 404, "not_found", &gone);
        assert_error(call(addr, "DELETE", &format!("/api/v1/agents/{kb}"), &Value::Null), 404, "not_found", &gone);
        assert_error(
            call(addr, "PATCH", &format!("/api/v1/agents/{kb}"), &json!({"mode": "push"})),
            404,
            "not_found",
            &gone,
        );
        // a deleted agent that heartbeats again registers again
        assert_eq!(heartbeat(addr, &b).0, 201);
        // a namespace called like the heartbeat endpoint is still a namespace
        let mut h = beat("s", "v", "push", 10, "10.0.0.8:9101");
        h["ns"] = json!("heartbeat");
        assert_eq!(heartbeat(addr, &h).0, 201);
        assert_eq!(agent(addr, "heartbeat/vm/s/v/aws")["ns"], "heartbeat");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_name_the_field_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    with_server(config(dir.path()), move |addr| {
        let good = beat("mcis-1", "vm-1", "push", 10, "10.0.0.5:9101");
        let with = |field: &str, value: Value| {
            let mut b = good.clone();
            b[field] = value;
            heartbeat(addr, &b)
        };
        let bad = "bad_data";
        assert_error(with("service_type", json!("mcis")), 400, bad, r#"service_type: "mcis" is not allowed; expected one of vm, k8s"#);
        assert_error(
            with("csp", json!("ibm")),
            400,
            bad,
            r#"csp: "ibm" is not allowed; expected one of aws, azure, gcp, alibaba, ncp, ktcloud, openstack, onprem"#,
        );
        assert_error(with("mode", json!("poll")), 400, bad, r#"mode: "poll" is not allowed; expected one of push, pull, ondemand"#);
        assert_error(
            with("interval_seconds", json!(0)),
            400,
            bad,
            "interval_seconds: 0 is not allowed; expected a whole number of seconds, 1 to 3600",
        );
        assert_error(with("vm_id", json!("vm/1")), 400, bad, r#"vm_id: "vm/1" has '/' at position 3; only [A-Za-z0-9_.-] is allowed"#);
        assert_error(with("address", json!("10.0.0.5")), 400, bad, r#"address: "10.0.0.5" is not host:port"#);
        assert_error(with("ns", json!(null)), 400, bad, "ns: expected a string, got null");
        assert_error(
            with("labels", json!({})),
            400,
            bad,
            "labels: unknown field; expected one of ns, service_type, service_id, vm_id, csp, region, address, version, mode, interval_seconds",
        );
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("region");
        assert_error(heartbeat(addr, &missing), 400, bad, "region: missing");
        let (code, text) = http(addr, "POST", "/api/v1/agents/heartbeat", b"{\"ns\": \"default\",");
        assert_eq!(code, 400, "{text}");
        assert!(text.contains("the body is not valid JSON: EOF while parsing a value at line 1 column 17"), "{text}");
        let (code, text) = http(addr, "POST", "/api/v1/agents/heartbeat", &vec![b' '; 5000]);
        assert_eq!(code, 413, "{text}");
        assert!(text.contains("request body is over the limit of 4096 bytes"), "{text}");
        assert!(list(addr, "").is_empty(), "a rejected heartbeat registers nothing");

        assert_eq!(heartbeat(addr, &good).0, 201);
        let key = "default/vm/mcis-1/vm-1/aws";
        let path = format!("/api/v1/agents/{key}");
        assert_error(call(addr, "PATCH", &path, &json!({"mode": "pul"})), 400, bad, r#"mode: "pul" is not allowed; expected one of push, pull, ondemand"#);
        assert_error(
            call(addr, "PATCH", &path, &json!({"interval_seconds": 3601})),
            400,
            bad,
            "interval_seconds: 3601 is not allowed; expected a whole number of seconds, 1 to 3600",
        );
        assert_error(call(addr, "PATCH", &path, &json!({})), 400, bad, "the body sets nothing; expected at least one of mode, interval_seconds");
        assert_error(call(addr, "PATCH", &path, &json!({"mode": "pull", "vm_id": "x"})), 400, bad, "vm_id: unknown field; expected one of mode, interval_seconds");
        let a = agent(addr, key);
        assert_eq!((a["mode"].clone(), a["interval_seconds"].clone()), (json!("push"), json!(10)), "a rejected patch changes nothing");
        assert_error(
            call(addr, "GET", "/api/v1/agents/default/mcis/mcis-1/vm-1/aws", &Value::Null),
            400,
            bad,
            r#"service_type: "mcis" is not allowed; expected one of vm, k8s"#,
        );
        assert_error(call(addr, "GET", "/api/v1/agents?health=sick", &Value::Null), 400, bad, r#"health: "sick" is not allowed; expected one of healthy, unhealthy"#);
        assert_error(
            call(addr, "GET", "/api/v1/agents?service=mcis-1", &Value::Null),
            400,
            bad,
            "service: unknown parameter; expected one of ns, service_type, service_id, csp, health, mode",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_survives_a_restart_and_health_waits_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let key = "default/vm/mcis-1/vm-1/aws";
    let a = beat("mcis-1", "vm-1", "push", 1, "10.0.0.5:9101");
    let a2 = a.clone();
    let before = with_server(cfg.clone(), move |addr| {
        assert_eq!(heartbeat(addr, &a2).0, 201);
        let path = format!("/api/v1/agents/{key}");
        let (code, v) = call(addr, "PATCH", &path, &json!({"mode": "ondemand"}));
        assert_eq!(code, 200, "{v}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(heartbeat(addr, &a2).0, 200);
        agent(addr, key)
    })
    .await;
    // longer than the grace period (3 x 1 s): still healthy after the restart, for a while
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let started = Instant::now();
    with_server(cfg.clone(), move |addr| {
        let after = agent(addr, key);
        assert_eq!(after, before, "the same agent, mode, interval, registered_at and last_seen");
        assert_eq!(after["health"], "healthy");
        wait("unhealthy after the grace period", Duration::from_secs(6), || {
            (agent(addr, key)["health"] == "unhealthy").then_some(())
        });
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(2900),
            "unhealthy too soon after the restart: {took:?}"
        );
    })
    .await;

    // unhealthy when stopped: unhealthy at once after the restart, until it is heard from
    with_server(cfg, move |addr| {
        assert_eq!(agent(addr, key)["health"], "unhealthy");
        let (code, v) = heartbeat(addr, &a);
        assert_eq!(code, 200, "a known agent, not a new registration: {v}");
        assert_eq!(v["data"]["mode"], "ondemand", "the operator's mode survived the restarts");
        assert_eq!(agent(addr, key)["health"], "healthy");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_agent_that_stops_heartbeating_turns_unhealthy_and_agent_up_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    with_server(config(dir.path()), move |addr| {
        let key = "default/vm/quiet/vm-1/aws";
        let a = beat("quiet", "vm-1", "push", 1, "10.0.0.5:9101");
        for _ in 0..3 {
            assert!(matches!(heartbeat(addr, &a).0, 200 | 201));
            std::thread::sleep(Duration::from_millis(500));
        }
        let up = r#"ocelli_agent_up{service_id="quiet"}"#;
        let series = wait("ocelli_agent_up 1", Duration::from_secs(3), || {
            let r = query(addr, up);
            (r.len() == 1 && r[0]["value"][1] == "1").then_some(r)
        });
        assert_eq!(
            series[0]["metric"],
            json!({"__name__": "ocelli_agent_up", "ns": "default", "service_type": "vm", "service_id": "quiet",
                   "vm_id": "vm-1", "csp": "aws", "region": "ap-northeast-2", "mode": "push"})
        );
        assert!(heartbeat(addr, &a).0 == 200);
        let last = Instant::now();
        assert_eq!(agent(addr, key)["health"], "healthy");
        // no more heartbeats: unhealthy once 3 intervals (3 s) have passed, not before
        wait("unhealthy in the API", Duration::from_secs(5), || {
            (agent(addr, key)["health"] == "unhealthy").then_some(())
        });
        let took = last.elapsed();
        // 3 s, plus up to a second for the polling on a loaded machine
        assert!(took >= Duration::from_millis(2900) && took < Duration::from_secs(4), "{took:?}");
        assert_eq!(list(addr, "?health=unhealthy"), [key]);
        wait("ocelli_agent_up 0", Duration::from_secs(2), || {
            let r = query(addr, up);
            (r.len() == 1 && r[0]["value"][1] == "0").then_some(())
        });
        // a heartbeat brings it back
        assert_eq!(heartbeat(addr, &a).0, 200);
        assert_eq!(agent(addr, key)["health"], "healthy");
        wait("ocelli_agent_up 1 again", Duration::from_secs(2), || {
            let r = query(addr, up);
            (r.len() == 1 && r[0]["value"][1] == "1").then_some(())
        });
        // deleted: its series ends (stale marker) instead of lingering
        let (code, _) = call(addr, "DELETE", &format!("/api/v1/agents/{key}"), &Value::Null);
        assert_eq!(code, 200);
        wait("ocelli_agent_up gone", Duration::from_secs(2), || query(addr, up).is_empty().then_some(()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_agent_is_scraped_as_job_ocelli_agent_and_failed_scrapes_count() {
    let fake = fake_agent("svc-pull").await;
    let dir = tempfile::tempdir().unwrap();
    let (agent_addr, serving) = (fake.addr.to_string(), fake.serving.clone());
    with_server(config(dir.path()), move |addr| {
        let key = "default/vm/svc-pull/vm-1/aws";
        assert_eq!(heartbeat(addr, &beat("svc-pull", "vm-1", "pull", 1, &agent_addr)).0, 201);
        let registered = agent(addr, key)["last_seen"].as_str().unwrap().to_string();
        let sel = format!(r#"agent_test_metric{{job="ocelli-agent",instance="{agent_addr}"}}"#);
        let got = wait("the scraped series", Duration::from_secs(5), || {
            let r = query(addr, &sel);
            (r.len() == 1).then_some(r)
        });
        assert_eq!(
            got[0]["metric"],
            json!({"__name__": "agent_test_metric", "job": "ocelli-agent", "instance": agent_addr,
                   "ns": "default", "service_type": "vm", "service_id": "svc-pull", "vm_id": "vm-1",
                   "csp": "aws", "region": "ap-northeast-2"})
        );
        assert_eq!(got[0]["value"][1], "42");
        let (_, targets) =
            call(addr, "GET", "/api/v1/targets?scrapePool=ocelli-agent", &Value::Null);
        let active = targets["data"]["activeTargets"].as_array().unwrap().clone();
        assert_eq!(active.len(), 1, "{targets}");
        assert_eq!(active[0]["scrapeUrl"], format!("http://{agent_addr}/metrics"));
        assert_eq!(active[0]["labels"], json!({"instance": agent_addr, "job": "ocelli-agent"}));
        assert_eq!(active[0]["scrapeInterval"], "1s");
        assert_eq!(active[0]["scrapeTimeout"], "900ms");
        assert_eq!(active[0]["discoveredLabels"]["__meta_ocelli_agent_key"], key);

        // no heartbeat since registering, but successful scrapes are contact: healthy past 3 s
        std::thread::sleep(Duration::from_millis(3500));
        let a = agent(addr, key);
        assert_eq!(a["health"], "healthy", "{a}");
        assert!(a["last_seen"].as_str().unwrap() > registered.as_str(), "{a}");

        // moved to push: no longer scraped, and the scraped series is not ended (the agent's
        // pushed samples continue it); only the scrape's own `up` series ends
        let path = format!("/api/v1/agents/{key}");
        assert_eq!(call(addr, "PATCH", &path, &json!({"mode": "push"})).0, 200);
        let (_, targets) =
            call(addr, "GET", "/api/v1/targets?scrapePool=ocelli-agent", &Value::Null);
        assert_eq!(targets["data"]["activeTargets"], json!([]), "{targets}");
        assert_eq!(query(addr, &sel).len(), 1, "no stale marker on the scraped series");
        let up = format!(r#"up{{job="ocelli-agent",instance="{agent_addr}"}}"#);
        assert!(query(addr, &up).is_empty(), "the scrape's up series ends");

        // back to pull, then the agent fails its scrapes: unhealthy after 3 of them
        assert_eq!(call(addr, "PATCH", &path, &json!({"mode": "pull"})).0, 200);
        wait("scraped again", Duration::from_secs(5), || {
            let r = query(addr, &up);
            (r.len() == 1 && r[0]["value"][1] == "1").then_some(())
        });
        // keep heartbeating, so only the failed scrapes can make it unhealthy
        serving.store(false, Ordering::SeqCst);
        let failing = Instant::now();
        let hb = beat("svc-pull", "vm-1", "pull", 1, &agent_addr);
        wait("unhealthy from failed scrapes", Duration::from_secs(6), || {
            assert_eq!(heartbeat(addr, &hb).0, 200);
            (agent(addr, key)["health"] == "unhealthy").then_some(())
        });
        // the third failed scrape comes two intervals after the first
        assert!(failing.elapsed() >= Duration::from_millis(1900), "{:?}", failing.elapsed());
        let (_, targets) =
            call(addr, "GET", "/api/v1/targets?scrapePool=ocelli-agent", &Value::Null);
        let t = &targets["data"]["activeTargets"][0];
        assert_eq!(t["health"], "down", "{targets}");
        assert_eq!(t["lastError"], "server returned HTTP status 500 Internal Server Error");
        serving.store(true, Ordering::SeqCst);
        wait("healthy after a good scrape", Duration::from_secs(4), || {
            (agent(addr, key)["health"] == "healthy").then_some(())
        });

        // deleted: no longer scraped
        assert_eq!(call(addr, "DELETE", &path, &Value::Null).0, 200);
        let (_, targets) =
            call(addr, "GET", "/api/v1/targets?scrapePool=ocelli-agent", &Value::Null);
        assert_eq!(targets["data"]["activeTargets"], json!([]), "{targets}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ondemand_calls_are_proxied_with_clear_errors() {
    let fake = fake_agent("svc-od").await;
    let dir = tempfile::tempdir().unwrap();
    let agent_addr = fake.addr.to_string();
    with_server(config(dir.path()), move |addr| {
        assert_eq!(heartbeat(addr, &beat("svc-od", "vm-1", "ondemand", 60, &agent_addr)).0, 201);
        let dead = closed_address();
        assert_eq!(heartbeat(addr, &beat("svc-od", "vm-2", "ondemand", 60, &dead)).0, 201);
        let base = "/api/v1/agents/default/vm/svc-od/vm-1/aws/collect";

        let r = common::request_raw(addr, "GET", &format!("{base}/cpu"), "", b"");
        assert_eq!(r.status, 200);
        assert_eq!(String::from_utf8(r.body).unwrap(), "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12.5\n");
        assert!(r.headers.contains("content-type: text/plain; version=0.0.4\r\n"), "{}", r.headers);
        // the query string goes to the agent
        let (code, v) = call(addr, "GET", &format!("{base}/processes?top=3"), &Value::Null);
        assert_eq!((code, v), (200, json!({"status": "success", "query": "top=3"})));
        // the agent's own 404 for an unknown collector, as it said it
        let (code, text) = request(addr, "GET", &format!("{base}/gpu"), "", b"");
        assert_eq!((code, text.as_str()), (404, "unknown collector \"gpu\"; known: cpu, processes\n"));

        let who = format!("agent default/vm/svc-od/vm-1/aws at {agent_addr}");
        assert_error(
            call(addr, "GET", &format!("{base}/slow"), &Value::Null),
            504,
            "timeout",
            &format!("{who} did not answer GET /collect/slow within 1s"),
        );
        assert_error(
            call(addr, "GET", &format!("{base}/broken"), &Value::Null),
            502,
            "unavailable",
            &format!("{who} answered GET /collect/broken with 500 Internal Server Error: disk collector panicked"),
        );
        let (code, v) = call(addr, "GET", "/api/v1/agents/default/vm/svc-od/vm-2/aws/collect/cpu", &Value::Null);
        assert_eq!(code, 502, "{v}");
        let msg = v["error"].as_str().unwrap();
        let want = format!("agent default/vm/svc-od/vm-2/aws at {dead} is unreachable: cannot connect to {dead}: ");
        assert!(msg.starts_with(&want) && msg.contains("refused"), "{msg}");
        assert_error(
            call(addr, "GET", "/api/v1/agents/default/vm/svc-od/vm-9/aws/collect/cpu", &Value::Null),
            404,
            "not_found",
            "no agent is registered with key \"default/vm/svc-od/vm-9/aws\"",
        );
    })
    .await;
}
