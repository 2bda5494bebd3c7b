//! The rule manager over real HTTP on loopback: rule files named by a real config file,
//! samples pushed through `/api/v1/import/prometheus`, and a one-second evaluation interval.
//! Covers recording rules (series and stale markers), an alert going pending then firing then
//! resolved (`ALERTS`, the alert sink, the history), the `/api/v1/rules` and `/api/v1/alerts`
//! shapes, reloads (a broken file keeps the running rules and names file and line; a changed
//! file takes effect), restoring the `for` state from `ALERTS_FOR_STATE` after a restart, and
//! groups set by source (as threshold alarms set theirs).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use ocelli_model::time::now_ms;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http, wait};
use ocelli_server::alerting::rules::Hooks;
use ocelli_server::alerting::{
    Alert, AlertSink, AlertState, GroupSpec, HistoryEvent, MemoryHistory, RuleSpec,
};
use ocelli_server::{Config, Server};
use serde_json::Value;

/// Collects what the rule manager sends, with the time it came.
#[derive(Default)]
struct Collect(parking_lot::Mutex<Vec<(i64, Alert)>>);

impl AlertSink for Collect {
    fn send(&self, alerts: Vec<Alert>) {
        let now = now_ms();
        self.0.lock().extend(alerts.into_iter().map(|a| (now, a)));
    }
}

/// Writes `server.toml` (rules from `rules/*.yml`, evaluated every second, restored with a
/// one-second grace period) and the given rule files into `dir`, and loads the config.
fn setup(dir: &Path, files: &[(&str, &str)]) -> Config {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join("rules").join(name), text).unwrap();
    }
    let toml = "[rules]\nfiles = [\"rules/*.yml\"]\nevaluation_interval = \"1s\"\nresend_delay = \"1s\"\nfor_grace_period = \"1s\"\nexternal_url = \"http://ocelli.example:9747\"\n";
    let path = dir.join("server.toml");
    std::fs::write(&path, toml).unwrap();
    let mut c = Config::load(&path).unwrap();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.data_dir = dir.join("data");
    c
}

fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (code, text) = http(addr, "GET", path, b"");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
    (code, v)
}

fn push(addr: SocketAddr, text: &str) {
    let (code, body) = http(addr, "POST", "/api/v1/import/prometheus", text.as_bytes());
    assert_eq!(code, 204, "{body}");
}

/// An instant query's result vector.
fn query(addr: SocketAddr, q: &str) -> Vec<Value> {
    let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (code, v) = get(addr, &format!("/api/v1/query?query={q}"));
    assert_eq!(code, 200, "{v}");
    v["data"]["result"].as_array().unwrap().clone()
}

/// The alerts `/api/v1/alerts` lists.
fn alerts(addr: SocketAddr) -> Vec<Value> {
    let (code, v) = get(addr, "/api/v1/alerts");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "success");
    v["data"]["alerts"].as_array().unwrap().clone()
}

/// The `alertstate` of every `ALERTS` series of `alertname` right now.
fn alert_states(addr: SocketAddr, alertname: &str) -> Vec<String> {
    let mut s: Vec<String> = query(addr, &format!("ALERTS{{alertname=\"{alertname}\"}}"))
        .iter()
        .map(|x| x["metric"]["alertstate"].as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

const RULES: &str = "\
groups:
  - name: load
    rules:
      - record: job:load:sum
        expr: sum by (job) (load)
        labels:
          source: rule
      - alert: HighLoad
        expr: load > 2
        for: 4s
        labels:
          severity: '{{ if gt $value 4.0 }}critical{{ else }}warning{{ end }}'
        annotations:
          summary: 'load {{ $value | humanize }} on {{ $labels.instance }}'
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_and_alerting_rules() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Collect::default());
    let history = Arc::new(MemoryHistory::default());
    let hooks = Hooks { alert_sink: sink.clone(), history: history.clone() };
    let server =
        Server::start_with(setup(dir.path(), &[("load.yml", RULES)]), hooks).await.unwrap();
    let addr = server.addr;
    let (sink2, history2) = (sink.clone(), history.clone());
    tokio::task::spawn_blocking(move || {
        let (sink, history) = (sink2, history2);
        push(addr, "load{job=\"node\",instance=\"a\"} 5\nload{job=\"node\",instance=\"b\"} 1\n");

        // the recording rule: renamed, relabelled, aggregated
        let rec = wait("job:load:sum", Duration::from_secs(10), || {
            query(addr, "job:load:sum").into_iter().next()
        });
        assert_eq!(rec["metric"], serde_json::json!({"__name__": "job:load:sum", "job": "node", "source": "rule"}));
        assert_eq!(rec["value"][1], "6");

        // the alert: pending (written only after the for state was restored at start), then
        // firing; the pending series ends with a stale marker when it fires
        wait("ALERTS pending", Duration::from_secs(10), || {
            (alert_states(addr, "HighLoad") == ["pending"]).then_some(())
        });
        wait("ALERTS firing", Duration::from_secs(10), || {
            (alert_states(addr, "HighLoad") == ["firing"]).then_some(())
        });
        let series = query(addr, "ALERTS");
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(
            series[0]["metric"],
            serde_json::json!({"__name__": "ALERTS", "alertname": "HighLoad", "alertstate": "firing",
                "instance": "a", "job": "node", "severity": "critical"})
        );
        let for_state = query(addr, "ALERTS_FOR_STATE");
        assert_eq!(for_state.len(), 1);
        assert_eq!(for_state[0]["metric"]["alertname"], "HighLoad");

        // /api/v1/alerts
        let listed = alerts(addr);
        assert_eq!(listed.len(), 1, "{listed:?}");
        let a = &listed[0];
        assert_eq!(a["state"], "firing");
        assert_eq!(a["value"], "5e+00");
        assert_eq!(a["labels"]["alertname"], "HighLoad");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["annotations"]["summary"], "load 5 on a");
        assert!(a["activeAt"].as_str().unwrap().ends_with('Z'));

        // /api/v1/rules
        let (code, v) = get(addr, "/api/v1/rules");
        assert_eq!(code, 200, "{v}");
        let g = &v["data"]["groups"][0];
        assert_eq!(g["name"], "load");
        assert!(g["file"].as_str().unwrap().ends_with("rules/load.yml"), "{g}");
        assert_eq!(g["interval"], 1.0);
        assert_eq!(g["limit"], 0);
        assert!(g["evaluationTime"].as_f64().unwrap() >= 0.0);
        assert_ne!(g["lastEvaluation"], "0001-01-01T00:00:00Z");
        let r = &g["rules"][0];
        assert_eq!(r["type"], "recording");
        assert_eq!(r["name"], "job:load:sum");
        assert_eq!(r["query"], "sum by (job) (load)");
        assert_eq!(r["labels"], serde_json::json!({"source": "rule"}));
        assert_eq!(r["health"], "ok");
        assert!(r.get("lastError").is_none(), "{r}");
        let r = &g["rules"][1];
        assert_eq!(r["type"], "alerting");
        assert_eq!(r["name"], "HighLoad");
        assert_eq!(r["query"], "load > 2");
        assert_eq!(r["state"], "firing");
        assert_eq!(r["duration"], 4.0);
        assert_eq!(r["keepFiringFor"], 0.0);
        assert_eq!(r["health"], "ok");
        assert_eq!(r["alerts"].as_array().unwrap().len(), 1);
        assert!(r["annotations"]["summary"].as_str().unwrap().contains("humanize"));
        let (_, only) = get(addr, "/api/v1/rules?type=record");
        let rules = only["data"]["groups"][0]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["type"], "recording");
        let (code, bad) = get(addr, "/api/v1/rules?type=everything");
        assert_eq!(code, 400);
        assert_eq!(bad["errorType"], "bad_data");
        assert_eq!(
            bad["error"],
            "invalid parameter \"type\": not supported value \"everything\" (use alert or record)"
        );

        // the sink got the firing alert, the history its way there
        let sent = sink.0.lock().clone();
        let (at, firing) = sent.iter().find(|a| a.1.labels["alertname"] == "HighLoad").unwrap();
        assert_eq!(firing.labels["instance"], "a");
        assert_eq!(firing.annotations["summary"], "load 5 on a");
        assert!(firing.starts_at_ms <= *at && firing.ends_at_ms > *at, "{firing:?} at {at}");
        assert_eq!(firing.generator_url, "http://ocelli.example:9747/graph?g0.expr=load+%3E+2&g0.tab=1");

        // the load drops: the alert resolves, is sent resolved, and ALERTS ends
        push(addr, "load{job=\"node\",instance=\"a\"} 1\n");
        wait("no ALERTS", Duration::from_secs(10), || alert_states(addr, "HighLoad").is_empty().then_some(()));
        // resolved: its end is its resolution, before it is sent
        wait("a resolved alert sent", Duration::from_secs(10), || {
            sink.0.lock().iter().find(|(at, a)| a.ends_at_ms <= *at).cloned()
        });
        assert!(alerts(addr).is_empty());
        let states: Vec<AlertState> = history
            .0
            .lock()
            .iter()
            .filter_map(|e| match e {
                HistoryEvent::State { rule, state, value, group, .. } if rule == "HighLoad" => {
                    assert!(group.ends_with("rules/load.yml;load"), "{group}");
                    assert_eq!(*value, 5.0);
                    Some(*state)
                }
                _ => None,
            })
            .collect();
        assert_eq!(states, [AlertState::Pending, AlertState::Firing, AlertState::Resolved]);

        // the server's own metrics
        let (_, m) = http(addr, "GET", "/metrics", b"");
        assert!(m.contains("ocelli_rules_last_reload_successful 1"), "{m}");
        let evals = m.lines().find(|l| l.starts_with("ocelli_rule_evaluations_total{")).unwrap();
        assert!(evals.contains("rules/load.yml;load"), "{evals}");
        assert!(m.contains("ocelli_rule_group_last_duration_seconds{"), "{m}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_rules_on_error_and_applies_changes() {
    let dir = tempfile::tempdir().unwrap();
    let first =
        "groups:\n  - name: sums\n    rules:\n      - record: a:sum\n        expr: sum(x)\n";
    let other =
        "groups:\n  - name: other\n    rules:\n      - record: o:sum\n        expr: sum(x)\n";
    let server = Server::start(setup(dir.path(), &[("sums.yml", first), ("other.yml", other)]))
        .await
        .unwrap();
    let addr = server.addr;
    let root = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        push(addr, "x{i=\"1\"} 2\nx{i=\"2\"} 3\n");
        wait("a:sum", Duration::from_secs(10), || query(addr, "a:sum").into_iter().next());
        let rules_file = root.join("rules/sums.yml");

        // a broken file: refused with its place, the running rules stay
        std::fs::write(&rules_file, first.replace("sum(x)", "sum(x")).unwrap();
        let (code, text) = http(addr, "POST", "/-/reload", b"");
        assert_eq!(code, 400, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let err = v["error"].as_str().unwrap();
        assert!(
            err.contains("rules/sums.yml:5:15: group \"sums\", rule \"a:sum\": expr: "),
            "{err}"
        );
        let (_, v) = get(addr, "/api/v1/rules");
        let names: Vec<&str> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["rules"][0]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["o:sum", "a:sum"]);
        let (_, m) = http(addr, "GET", "/metrics", b"");
        assert!(m.contains("ocelli_rules_last_reload_successful 0"), "{m}");
        assert!(!query(addr, "a:sum").is_empty());

        // a changed file and a removed one: applied; the gone series end with stale markers
        std::fs::write(&rules_file, first.replace("a:sum", "b:sum")).unwrap();
        std::fs::remove_file(root.join("rules/other.yml")).unwrap();
        let (code, text) = http(addr, "POST", "/-/reload", b"");
        assert_eq!(code, 200, "{text}");
        let (_, v) = get(addr, "/api/v1/rules");
        let groups = v["data"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{v}");
        assert_eq!(groups[0]["rules"][0]["name"], "b:sum");
        wait("b:sum", Duration::from_secs(10), || query(addr, "b:sum").into_iter().next());
        wait("a:sum stale", Duration::from_secs(10), || {
            query(addr, "a:sum").is_empty().then_some(())
        });
        assert!(query(addr, "o:sum").is_empty(), "a removed file's series are marked stale");
        let (_, m) = http(addr, "GET", "/metrics", b"");
        assert!(m.contains("ocelli_rules_last_reload_successful 1"), "{m}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_the_for_state() {
    let dir = tempfile::tempdir().unwrap();
    let rules = "groups:\n  - name: slow\n    rules:\n      - alert: Slow\n        expr: load > 2\n        for: 6s\n";
    let config = setup(dir.path(), &[("slow.yml", rules)]);
    let server = Server::start(config.clone()).await.unwrap();
    let addr = server.addr;
    let active_at = tokio::task::spawn_blocking(move || {
        push(addr, "load{instance=\"a\"} 5\n");
        wait("firing", Duration::from_secs(20), || {
            alerts(addr).into_iter().find(|a| a["state"] == "firing")
        })["activeAt"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let server = Server::start(config).await.unwrap();
    let addr = server.addr;
    let restarted = Instant::now();
    let after = tokio::task::spawn_blocking(move || {
        wait("firing again", Duration::from_secs(20), || {
            alerts(addr).into_iter().find(|a| a["state"] == "firing")
        })
    })
    .await
    .unwrap();
    // restored to the second it first became active, and firing without waiting `for` again
    assert_eq!(after["activeAt"].as_str().unwrap()[..19], active_at[..19], "{after}");
    assert!(restarted.elapsed() < Duration::from_secs(6), "{:?}", restarted.elapsed());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_by_source() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(setup(dir.path(), &[])).await.unwrap();
    let addr = server.addr;
    let group = |expr: &str| GroupSpec {
        name: "alarm-7".into(),
        source: String::new(),
        interval: Some(Duration::from_secs(1)),
        limit: 0,
        rules: vec![RuleSpec::Alert {
            alert: "CpuHigh".into(),
            expr: expr.into(),
            for_: Duration::ZERO,
            keep_firing_for: Duration::from_secs(30),
            labels: [("alarm_id".to_string(), "7".to_string())].into(),
            annotations: Default::default(),
        }],
    };
    let errs = server.rules.set_source("alarm:7", vec![group("cpu >")]).await.unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].to_string().starts_with("alarm:7: group \"alarm-7\", rule \"CpuHigh\": expr: "),
        "{}",
        errs[0]
    );
    server.rules.set_source("alarm:7", vec![group("cpu > 50")]).await.unwrap();
    tokio::task::spawn_blocking(move || {
        push(addr, "cpu{vm=\"v1\"} 90\n");
        let a = wait("CpuHigh firing", Duration::from_secs(10), || {
            alerts(addr).into_iter().find(|a| a["state"] == "firing")
        });
        assert_eq!(a["labels"]["alarm_id"], "7");
        let (_, v) = get(addr, "/api/v1/rules?type=alert");
        assert_eq!(v["data"]["groups"][0]["file"], "alarm:7");
        assert_eq!(v["data"]["groups"][0]["rules"][0]["keepFiringFor"], 30.0);
    })
    .await
    .unwrap();
    server.rules.remove_source("alarm:7").await;
    let (_, v) = tokio::task::spawn_blocking(move || get(addr, "/api/v1/rules")).await.unwrap();
    assert_eq!(v["data"]["groups"], serde_json::json!([]));
    server.stop().await.unwrap();
}
