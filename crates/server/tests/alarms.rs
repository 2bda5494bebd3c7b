//! Threshold alarms end to end, through a whole server on loopback: an alarm made over REST runs
//! as rules on pushed samples, its alerts go through the notifier to a webhook and to Slack's
//! protocol (a recording HTTP server stands in for both) and to a receiver that is down, and
//! everything lands in the alarm history.
//!
//! The scenario, in order: the value crosses the warning threshold, then the critical one, then
//! clears: exactly one warning, one critical (the warning inhibited) and one resolved
//! notification, in that order, each receiver alike, while the dead receiver's failures are
//! recorded and hold up no one; a silence holds delivery back but history still has the alerts;
//! a restart while the critical alert fires repeats nothing before `repeat_interval`, and the
//! alarm is still there. Also the REST errors: a bad definition, an unknown handler, a taken id.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Recorder, http};
use ocelli_server::{Config, Server};
use serde_json::{Value, json};

fn setup(dir: &Path, port: u16, hook: &Recorder, chat: &Recorder) -> Config {
    let am = format!(
        "route:\n  receiver: fleet\n  group_wait: 200ms\n  group_interval: 500ms\n  repeat_interval: 1h\n\
         receivers:\n  - name: fleet\n\
         \x20 - name: ops\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n\
         \x20 - name: chat\n    slack_configs:\n      - api_url: {}\n        channel: '#ops'\n        send_resolved: true\n\
         \x20 - name: down\n    webhook_configs:\n      - url: http://127.0.0.1:1/hook\n        send_resolved: true\n",
        hook.url("/hook"),
        chat.url("/slack"),
    );
    std::fs::write(dir.join("am.yml"), am).unwrap();
    let toml = "[rules]\nevaluation_interval = \"1s\"\nresend_delay = \"1s\"\n\n\
                [notifier]\nconfig_file = \"am.yml\"\nmax_retries = 1\nretry_backoff = \"100ms\"\n";
    std::fs::write(dir.join("server.toml"), toml).unwrap();
    let mut c = Config::load(&dir.join("server.toml")).unwrap();
    c.listen = SocketAddr::from(([127, 0, 0, 1], port));
    c.data_dir = dir.join("data");
    c
}

/// Pushes `cpu_busy` with the value in `value` every 200 ms (the samples get the time of the
/// request), until the returned flag is set.
fn pusher(addr: SocketAddr, value: Arc<AtomicU64>) -> Arc<std::sync::atomic::AtomicBool> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop.clone();
    std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            let v = f64::from_bits(value.load(Ordering::SeqCst));
            let body = format!("cpu_busy{{ns=\"default\",vm_id=\"vm-1\"}} {v}\n");
            // refused while the server restarts; the next round tries again
            let _ = std::panic::catch_unwind(|| {
                http(addr, "POST", "/api/v1/import/prometheus", body.as_bytes())
            });
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    stop
}

fn set(value: &AtomicU64, v: f64) {
    value.store(v.to_bits(), Ordering::SeqCst);
}

/// The `status` and the `(severity, status)` of each alert of a webhook notification.
fn webhook(body: &str) -> (String, Vec<(String, String)>) {
    let v: Value = serde_json::from_str(body).unwrap();
    let alerts = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["severity"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (v["status"].as_str().unwrap().to_string(), alerts)
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, b"");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (at most 10 s) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_alarm_warns_then_goes_critical_then_resolves_once_each_and_all_of_it_is_history() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, chat) = (Recorder::start(0), Recorder::start(0));
    let port = ocelli_testkit::free_port();
    let server = Server::start(setup(dir.path(), port, &hook, &chat)).await.unwrap();
    let addr = server.addr;
    let value = Arc::new(AtomicU64::new(50f64.to_bits()));
    let stop = pusher(addr, value.clone());

    // REST: mistakes are named, nothing is made of them
    let alarm = json!({
        "id": "cpu", "metric": "cpu_busy", "target": {"ns": "default", "vm_id": "vm-1"},
        "comparison": ">", "warning": 80, "critical": 90, "for": "0s",
        "message": "CPU busy", "handlers": ["ops", "chat", "down"],
    });
    let mut bad = alarm.clone();
    bad["handlers"] = json!(["pager"]);
    let (code, body) = http(addr, "POST", "/api/v1/alarms", bad.to_string().as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("handlers: no receiver \\\"pager\\\" in the notifier's config (receivers: chat, down, fleet, ops)"), "{body}");
    bad = alarm.clone();
    bad["critical"] = json!(70);
    let (code, body) = http(addr, "POST", "/api/v1/alarms", bad.to_string().as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("critical: 70 must be at or above the warning threshold 80"), "{body}");
    assert_eq!(get(addr, "/api/v1/alarms")["data"], json!([]));

    let (code, body) = http(addr, "POST", "/api/v1/alarms", alarm.to_string().as_bytes());
    assert_eq!(code, 201, "{body}");
    let made: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(made["data"]["expr_critical"], r#"(cpu_busy{ns="default", vm_id="vm-1"}) > 90"#);
    let (code, body) = http(addr, "POST", "/api/v1/alarms", alarm.to_string().as_bytes());
    assert_eq!(code, 409, "{body}");
    // its rules run as the group alarm:cpu
    let rules = get(addr, "/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{rules}");
    assert_eq!(groups[0]["rules"].as_array().unwrap().len(), 2);

    // below both thresholds: nothing
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(hook.records().is_empty(), "{:?}", hook.records());

    // warning
    set(&value, 85.0);
    let r = hook.wait(1).await;
    assert_eq!(webhook(&r[0].body), ("firing".into(), vec![("warning".into(), "firing".into())]));
    // critical: the warning is held back
    set(&value, 95.0);
    let r = hook.wait(2).await;
    assert_eq!(webhook(&r[1].body), ("firing".into(), vec![("critical".into(), "firing".into())]));
    // clears: one resolved notification with both
    set(&value, 50.0);
    let r = hook.wait(3).await;
    let (status, mut alerts) = webhook(&r[2].body);
    alerts.sort();
    assert_eq!(status, "resolved");
    assert_eq!(
        alerts,
        vec![("critical".into(), "resolved".into()), ("warning".into(), "resolved".into())]
    );
    // and nothing more
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.records().len(), 3, "{:?}", hook.records());
    // Slack got the same three, despite the dead receiver
    let slack = chat.wait(3).await;
    assert_eq!(slack.len(), 3);
    assert!(slack[0].body.contains("[FIRING:1] cpu"), "{}", slack[0].body);
    assert!(slack[2].body.contains("[RESOLVED"), "{}", slack[2].body);

    // history: the state changes of the alarm, newest first
    let h = get(addr, "/api/v1/alarms/cpu/history?kind=state");
    let states: Vec<(String, String)> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (e["labels"]["severity"].as_str().unwrap().into(), e["state"].as_str().unwrap().into())
        })
        .collect();
    assert_eq!(states[0], ("warning".into(), "firing".into()), "{states:?}");
    assert_eq!(states[1], ("critical".into(), "firing".into()), "{states:?}");
    let mut last: Vec<_> = states[2..].to_vec();
    last.sort();
    assert_eq!(
        last,
        vec![("critical".into(), "resolved".into()), ("warning".into(), "resolved".into())]
    );
    // and the deliveries: three successes per live receiver, failures for the dead one, the
    // inhibited warning as suppressed
    let n = get(addr, "/api/v1/history?kind=notification&alarm_id=cpu&limit=1000");
    let events = n["data"].as_array().unwrap();
    let count = |receiver: &str, outcome: &str| {
        events.iter().filter(|e| e["receiver"] == receiver && e["outcome"] == outcome).count()
    };
    assert_eq!(count("ops", "success"), 3, "{n}");
    assert_eq!(count("chat", "success"), 3, "{n}");
    assert_eq!(count("down", "success"), 0, "{n}");
    until("the dead receiver's failures in history", || {
        let n = get(addr, "/api/v1/history?receiver=down&outcome=failure");
        !n["data"].as_array().unwrap().is_empty()
    })
    .await;
    let failed = get(addr, "/api/v1/history?receiver=down&outcome=failure");
    let error = failed["data"][0]["error"].as_str().unwrap();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(count("ops", "suppressed") >= 1, "the inhibited warning: {n}");

    // a silence holds delivery back; history still has the alerts
    let silence = json!({
        "matchers": [{"name": "alarm_id", "value": "cpu", "isRegex": false}],
        "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "test", "comment": "maintenance",
    });
    let (code, body) = http(addr, "POST", "/api/v1/silences", silence.to_string().as_bytes());
    assert_eq!(code, 200, "{body}");
    let id =
        serde_json::from_str::<Value>(&body).unwrap()["silenceID"].as_str().unwrap().to_string();
    set(&value, 95.0);
    until("the silenced critical alert in history", || {
        let h = get(addr, "/api/v1/history?alarm_id=cpu&severity=critical&state=firing");
        h["data"].as_array().unwrap().len() == 2
    })
    .await;
    until("the silenced notification recorded as suppressed", || {
        let h = get(addr, "/api/v1/history?receiver=ops&outcome=suppressed&severity=critical");
        !h["data"].as_array().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(hook.records().len(), 3, "silenced, yet delivered: {:?}", hook.records());
    // expiring the silence lets the firing critical alert through
    let (code, body) = http(addr, "DELETE", &format!("/api/v1/silences/{id}"), b"");
    assert_eq!(code, 200, "{body}");
    let r = hook.wait(4).await;
    assert_eq!(webhook(&r[3].body), ("firing".into(), vec![("critical".into(), "firing".into())]));

    // a restart while it fires: no repeat before repeat_interval; the alarm is still there
    server.stop().await.unwrap();
    let server = Server::start(setup(dir.path(), port, &hook, &chat)).await.unwrap();
    assert_eq!(get(addr, "/api/v1/alarms/cpu")["data"]["handlers"], json!(["ops", "chat", "down"]));
    until("the critical alert firing again after the restart", || {
        let a = get(addr, "/api/v1/alerts");
        a["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["severity"] == "critical" && a["state"] == "firing")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(hook.records().len(), 4, "repeated after a restart: {:?}", hook.records());

    // deleting the alarm removes its rules; its history stays readable
    let (code, body) = http(addr, "DELETE", "/api/v1/alarms/cpu", b"");
    assert_eq!(code, 200, "{body}");
    let (code, _) = http(addr, "GET", "/api/v1/alarms/cpu/history", b"");
    assert_eq!(code, 404);
    assert!(!get(addr, "/api/v1/history?alarm_id=cpu")["data"].as_array().unwrap().is_empty());
    assert_eq!(get(addr, "/api/v1/rules")["data"]["groups"], json!([]));

    stop.store(true, Ordering::SeqCst);
    server.stop().await.unwrap();
}
