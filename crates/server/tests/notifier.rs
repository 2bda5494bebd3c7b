//! The notifier over real protocols on loopback: a recording HTTP server in this file stands in
//! for Slack's incoming webhook and for a webhook receiver (it answers as they do, and can be
//! told to fail), Debian's `aiosmtpd` is the SMTP server whose mailbox the e-mails are read back
//! from, and Debian's Alertmanager 0.25 receives forwarded alerts.
//!
//! Scenarios: grouping (two alerts, one notification per integration after `group_wait`) and
//! resolved notifications to webhook, Slack and e-mail; silences and inhibition (not delivered,
//! in history as suppressed); a receiver that is down while another delivers, retries recorded
//! in history; a restart while an alert fires (no repeat before `repeat_interval`, silences
//! kept); the HTTP API of a whole server (`POST /api/v2/alerts`, silences, the alerts list,
//! `/metrics`, reload with a broken file); forwarding to Alertmanager.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use ocelli_model::time::now_ms;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Recorder, http};
use ocelli_server::alerting::notify::{Notifier, NotifierConfig};
use ocelli_server::alerting::{Alert, AlertSink, HistoryEvent, LabelMap, MemoryHistory, Outcome};
use ocelli_testkit::{Service, free_port, require};
use serde_json::Value;

fn labels(pairs: &[(&str, &str)]) -> LabelMap {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn firing(pairs: &[(&str, &str)]) -> Alert {
    Alert {
        labels: labels(pairs),
        annotations: labels(&[("summary", "load is high")]),
        starts_at_ms: now_ms(),
        ends_at_ms: now_ms() + 600_000,
        generator_url: "http://prometheus/graph".into(),
    }
}

fn resolved(mut a: Alert) -> Alert {
    a.ends_at_ms = now_ms();
    a
}

/// A silence of `name="value"` from 2020 to 2099.
fn silence(name: &str, value: &str) -> ocelli_server::alerting::notify::silence::Postable {
    serde_json::from_value(serde_json::json!({
        "matchers": [{"name": name, "value": value, "isRegex": false}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "test",
        "comment": "maintenance"
    }))
    .unwrap()
}

/// Writes the YAML file and a notifier section pointing to it.
fn notifier_config(dir: &Path, yaml: &str) -> NotifierConfig {
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, yaml).unwrap();
    NotifierConfig {
        config_file: Some(path),
        max_retries: 2,
        retry_backoff: "50ms".into(),
        timeout: "2s".into(),
        external_url: "http://ocelli.test:9747".into(),
        ..NotifierConfig::default()
    }
}

/// The notification attempts history recorded, as (receiver, integration, outcome, attempt).
fn attempts(h: &MemoryHistory) -> Vec<(String, String, Outcome, u32)> {
    h.0.lock()
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::Notification { receiver, integration, outcome, attempt, .. } => {
                Some((receiver.clone(), integration.clone(), *outcome, *attempt))
            }
            _ => None,
        })
        .collect()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Debian's aiosmtpd writing what it receives into a Maildir.
struct Smtp {
    _svc: Service,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Smtp {
    fn start() -> Smtp {
        let bin = require("python3-aiosmtpd", "aiosmtpd");
        let maildir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = std::process::Command::new(bin);
        // the Maildir handler makes its folders only when the root does not exist yet
        cmd.args(["-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"));
        let svc =
            Service::start(cmd, SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30));
        Smtp { _svc: svc, port, maildir }
    }

    /// The messages received so far, oldest first.
    fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("mail/new");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouping_and_resolved_notifications_to_webhook_slack_and_email() {
    let hook = Recorder::start(0);
    let slack = Recorder::start(0);
    let smtp = Smtp::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r##"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 300ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs:
      - url: {hook}
    slack_configs:
      - api_url: {slack}
        channel: "#ops"
        send_resolved: true
    email_configs:
      - to: ops@example.org
        from: ocelli@example.org
        smarthost: 127.0.0.1:{port}
        require_tls: false
        send_resolved: true
        headers:
          X-Team: infra
"##,
        hook = hook.url("/hook"),
        slack = slack.url("/services/T0/B0/secret"),
        port = smtp.port
    );
    let history = Arc::new(MemoryHistory::default());
    let n = Notifier::start(&notifier_config(dir.path(), &yaml), history.clone(), dir.path())
        .await
        .unwrap();
    let a1 = firing(&[("alertname", "HighLoad"), ("instance", "node1"), ("severity", "critical")]);
    let a2 = firing(&[("alertname", "HighLoad"), ("instance", "node2"), ("severity", "critical")]);
    let t0 = Instant::now();
    n.send(vec![a1.clone()]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    n.send(vec![a2.clone()]);

    // one notification per integration, with both alerts, not before group_wait
    let r = hook.wait(1).await;
    assert!(t0.elapsed() >= Duration::from_millis(300), "{:?}", t0.elapsed());
    assert_eq!((r[0].method.as_str(), r[0].path.as_str()), ("POST", "/hook"));
    let p: Value = serde_json::from_str(&r[0].body).unwrap();
    assert_eq!(p["version"], "4");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["receiver"], "team");
    assert_eq!(p["groupKey"], "{}:{alertname=\"HighLoad\"}");
    assert_eq!(p["groupLabels"], serde_json::json!({"alertname": "HighLoad"}));
    assert_eq!(
        p["commonLabels"],
        serde_json::json!({"alertname": "HighLoad", "severity": "critical"})
    );
    assert_eq!(p["externalURL"], "http://ocelli.test:9747");
    assert_eq!(p["truncatedAlerts"], 0);
    let alerts = p["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["labels"]["instance"], "node1");
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alerts[0]["fingerprint"].as_str().unwrap().len(), 16);
    let s = slack.wait(1).await;
    assert_eq!(s[0].path, "/services/T0/B0/secret");
    let sp: Value = serde_json::from_str(&s[0].body).unwrap();
    assert_eq!(sp["channel"], "#ops");
    assert_eq!(sp["attachments"][0]["title"], "[FIRING:2] HighLoad (critical)");
    assert_eq!(sp["attachments"][0]["color"], "danger");
    wait_for("the e-mail", || smtp.messages().len() == 1).await;
    let mail = &smtp.messages()[0];
    assert!(mail.contains("Subject: [FIRING:2] HighLoad (critical)"), "{mail}");
    assert!(mail.contains("To: ops@example.org"), "{mail}");
    assert!(mail.contains("X-Team: infra"), "{mail}");
    assert!(mail.contains("- HighLoad: load is high"), "{mail}");
    assert!(mail.contains("instance=node2"), "{mail}");

    // both resolve: one resolved notification per integration at the next group_interval
    n.send(vec![resolved(a1), resolved(a2)]);
    let r = hook.wait(2).await;
    let p: Value = serde_json::from_str(&r[1].body).unwrap();
    assert_eq!(p["status"], "resolved");
    assert_eq!(p["alerts"][1]["status"], "resolved");
    assert_ne!(p["alerts"][1]["endsAt"], "0001-01-01T00:00:00Z");
    let s = slack.wait(2).await;
    let sp: Value = serde_json::from_str(&s[1].body).unwrap();
    assert_eq!(sp["attachments"][0]["title"], "[RESOLVED] HighLoad (critical)");
    assert_eq!(sp["attachments"][0]["color"], "good");
    wait_for("the resolved e-mail", || smtp.messages().len() == 2).await;
    assert!(smtp.messages()[1].contains("Subject: [RESOLVED] HighLoad (critical)"));

    // and nothing more: the group is done
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!((hook.records().len(), slack.records().len(), smtp.messages().len()), (2, 2, 2));
    let ok = attempts(&history);
    assert_eq!(ok.len(), 6, "{ok:?}");
    assert!(
        ok.iter().all(|(r, _, o, a)| r == "team" && *o == Outcome::Success && *a == 1),
        "{ok:?}"
    );
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silences_and_inhibition_suppress_delivery_but_history_has_it() {
    let hook = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
route:
  receiver: team
  group_by: [instance]
  group_wait: 200ms
  group_interval: 1s
receivers:
  - name: team
    webhook_configs:
      - url: {}
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alarm_id, ns, service_id, vm_id]
"#,
        hook.url("/hook")
    );
    let history = Arc::new(MemoryHistory::default());
    let n = Notifier::start(&notifier_config(dir.path(), &yaml), history.clone(), dir.path())
        .await
        .unwrap();
    let sid = n.put_silence(silence("instance", "n1")).await.unwrap();
    let alarm = |inst: &str, sev: &str| {
        firing(&[
            ("alertname", "CpuHigh"),
            ("alarm_id", "a1"),
            ("instance", inst),
            ("severity", sev),
            ("vm_id", inst),
        ])
    };
    // n1: silenced; n2: warning inhibited by the critical of the same vm (different instance
    // groups, since the critical alert is on instance n2 too, it is in the same group)
    n.send(vec![
        alarm("n1", "warning"),
        alarm("n2", "warning"),
        alarm("n2", "critical"),
        alarm("n3", "warning"),
    ]);
    let r = hook.wait(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.records().len(), 2, "n2 (critical only) and n3");
    let delivered: Vec<(String, String)> = r
        .iter()
        .flat_map(|rec| {
            let p: Value = serde_json::from_str(&rec.body).unwrap();
            p["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["labels"]["instance"].as_str().unwrap().to_string(),
                        a["labels"]["severity"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        delivered,
        [("n2".to_string(), "critical".to_string()), ("n3".into(), "warning".into())]
    );
    let suppressed: Vec<(String, String)> = history
        .0
        .lock()
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::Notification { outcome: Outcome::Suppressed, alerts, error, .. } => {
                Some((alerts[0]["instance"].clone(), error.clone().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(suppressed.len(), 2, "{suppressed:?}");
    assert!(
        suppressed.contains(&("n1".to_string(), format!("silenced by {sid}"))),
        "{suppressed:?}"
    );
    assert!(
        suppressed.iter().any(|(i, e)| i == "n2" && e.starts_with("inhibited by ")),
        "{suppressed:?}"
    );
    // the silence ends: n1 is delivered at its group's next flush
    n.expire_silence(&sid).await.unwrap();
    let r = hook.wait(3).await;
    assert!(r[2].body.contains("\"instance\":\"n1\""), "{}", r[2].body);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_is_down_holds_up_no_other_and_retries_are_recorded() {
    let up = Recorder::start(0);
    let flaky = Recorder::start(2);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
route:
  receiver: up
  group_wait: 100ms
  group_interval: 10s
  routes:
    - receiver: down
      continue: true
    - receiver: flaky
      continue: true
    - receiver: up
receivers:
  - name: up
    webhook_configs: [{{url: "{}"}}]
  - name: flaky
    webhook_configs: [{{url: "{}"}}]
  - name: down
    webhook_configs: [{{url: "http://127.0.0.1:{closed}/hook"}}]
"#,
        up.url("/up"),
        flaky.url("/flaky")
    );
    let history = Arc::new(MemoryHistory::default());
    let n = Notifier::start(&notifier_config(dir.path(), &yaml), history.clone(), dir.path())
        .await
        .unwrap();
    let t0 = Instant::now();
    n.send(vec![firing(&[("alertname", "X")])]);
    up.wait(1).await;
    // the working receiver did not wait for the failing one's retries
    assert!(t0.elapsed() < Duration::from_millis(1000), "{:?}", t0.elapsed());
    flaky.wait(3).await;
    wait_for("three attempts each", || {
        let a = attempts(&history);
        a.iter().filter(|x| x.0 == "down").count() == 3
            && a.iter().filter(|x| x.0 == "flaky").count() == 3
    })
    .await;
    let a = attempts(&history);
    let of = |r: &str| -> Vec<(Outcome, u32)> {
        a.iter().filter(|x| x.0 == r).map(|x| (x.2, x.3)).collect()
    };
    assert_eq!(of("down"), [(Outcome::Retry, 1), (Outcome::Retry, 2), (Outcome::Failure, 3)]);
    assert_eq!(of("flaky"), [(Outcome::Retry, 1), (Outcome::Retry, 2), (Outcome::Success, 3)]);
    assert_eq!(of("up"), [(Outcome::Success, 1)]);
    let errors: Vec<String> = history
        .0
        .lock()
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::Notification { receiver, error: Some(err), .. } if receiver != "up" => {
                Some(err.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(&format!("cannot connect to http://127.0.0.1:{closed}: "))),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.ends_with("HTTP status 500: boom")), "{errors:?}");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_while_an_alert_fires_repeats_nothing_and_keeps_silences() {
    let hook = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 200ms
  group_interval: 500ms
  repeat_interval: 1h
receivers:
  - name: team
    webhook_configs: [{{url: "{}"}}]
"#,
        hook.url("/hook")
    );
    let config = notifier_config(dir.path(), &yaml);
    let history = Arc::new(MemoryHistory::default());
    let n = Notifier::start(&config, history.clone(), dir.path()).await.unwrap();
    let sid = n.put_silence(silence("alertname", "Muted")).await.unwrap();
    let a = firing(&[("alertname", "Disk"), ("instance", "n1")]);
    n.send(vec![a.clone()]);
    hook.wait(1).await;
    n.shutdown().await;

    let n = Notifier::start(&config, history.clone(), dir.path()).await.unwrap();
    // the alert is back, its group flushes at once, and the log stops a repeat
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(hook.records().len(), 1, "no repeat after the restart");
    assert_eq!(n.silences().iter().map(|s| s.id.clone()).collect::<Vec<_>>(), [sid]);
    // a change of the group is notified, with the alert from before the restart
    n.send(vec![firing(&[("alertname", "Disk"), ("instance", "n2")])]);
    let r = hook.wait(2).await;
    let p: Value = serde_json::from_str(&r[1].body).unwrap();
    assert_eq!(p["alerts"].as_array().unwrap().len(), 2);
    // the silence still mutes
    n.send(vec![firing(&[("alertname", "Muted")])]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hook.records().len(), 2);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_http_api_of_a_server() {
    let hook = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "route:\n  receiver: team\n  group_wait: 100ms\n  group_interval: 1s\nreceivers:\n  - name: team\n    webhook_configs: [{{url: \"{}\"}}]\n",
        hook.url("/hook")
    );
    std::fs::write(dir.path().join("am.yml"), &good).unwrap();
    let toml = dir.path().join("server.toml");
    std::fs::write(
        &toml,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[local_agent]\nenabled = false\n[notifier]\nconfig_file = \"am.yml\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let config = ocelli_server::Config::load(&toml).unwrap();
    let server = ocelli_server::Server::start(config).await.unwrap();
    let addr = server.addr;

    // Alertmanager's ingest: a bad alert refuses the whole body
    let (code, body) =
        http(addr, "POST", "/api/v2/alerts", br#"[{"labels":{"alertname":"A"}},{"labels":{}}]"#);
    assert_eq!(code, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errorType"], "bad_data");
    assert_eq!(e["error"], "alert 1: an alert has no labels");
    let (code, _) = http(
        addr,
        "POST",
        "/api/v2/alerts",
        br#"[{"labels":{"alertname":"A","instance":"i1"},"annotations":{"summary":"s"}}]"#,
    );
    assert_eq!(code, 200);
    let r = hook.wait(1).await;
    assert!(r[0].body.contains("\"alertname\":\"A\""));

    // the alerts list
    let (code, body) = http(addr, "GET", "/api/v1/notifier/alerts", b"");
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["labels"]["instance"], "i1");
    assert_eq!(list[0]["status"]["state"], "active");
    assert_eq!(list[0]["receivers"][0]["name"], "team");

    // silences: checks, create, list, get, expire
    let silence = |ends: &str| {
        format!(
            r#"{{"matchers":[{{"name":"instance","value":"i1","isRegex":false,"isEqual":true}}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"{ends}","createdBy":"me","comment":"c"}}"#
        )
    };
    let (code, body) =
        http(addr, "POST", "/api/v1/silences", silence("2021-01-01T00:00:00Z").as_bytes());
    assert_eq!(code, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "endsAt: must be in the future"
    );
    let (code, body) = http(addr, "POST", "/api/v1/silences", br#"{"matchers":[]}"#);
    assert_eq!(code, 400);
    assert!(body.contains("silence body: missing field `startsAt`"), "{body}");
    let (code, body) =
        http(addr, "POST", "/api/v1/silences", silence("2099-01-01T00:00:00Z").as_bytes());
    assert_eq!(code, 200, "{body}");
    let id =
        serde_json::from_str::<Value>(&body).unwrap()["silenceID"].as_str().unwrap().to_string();
    let (_, body) = http(addr, "GET", "/api/v1/notifier/alerts", b"");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["status"]["state"], "suppressed");
    assert_eq!(list[0]["status"]["silencedBy"][0], id.as_str());
    let (_, body) = http(addr, "GET", "/api/v1/notifier/alerts?silenced=false", b"");
    assert_eq!(body, "[]");
    let (code, body) = http(addr, "GET", &format!("/api/v1/silences/{id}"), b"");
    assert_eq!(code, 200);
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["status"]["state"], "active");
    assert_eq!(s["matchers"][0]["name"], "instance");
    assert_eq!(s["endsAt"], "2099-01-01T00:00:00Z");
    assert_eq!(http(addr, "DELETE", &format!("/api/v1/silences/{id}"), b"").0, 200);
    let (code, body) = http(addr, "DELETE", &format!("/api/v1/silences/{id}"), b"");
    assert_eq!((code, body.contains("is already expired")), (400, true), "{body}");
    let (_, body) = http(addr, "GET", "/api/v1/silences", b"");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all[0]["status"]["state"], "expired");
    assert_eq!(http(addr, "GET", "/api/v1/silences/nope", b"").0, 404);

    // metrics
    let (_, m) = http(addr, "GET", "/metrics", b"");
    assert!(m.contains("ocelli_notifications_total{integration=\"webhook\"} 1\n"), "{m}");
    assert!(m.contains("ocelli_notifications_failed_total{integration=\"webhook\"} 0\n"), "{m}");
    assert!(m.contains("ocelli_notifier_alerts{state=\"active\"} 1\n"), "{m}");
    assert!(m.contains("ocelli_silences{state=\"expired\"} 1\n"), "{m}");

    // a broken file on reload is refused with its line; the running config goes on
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: team\n  group_wait: soon\nreceivers:\n  - name: team\n",
    )
    .unwrap();
    let (code, body) = http(addr, "POST", "/-/reload", b"");
    assert_eq!(code, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("am.yml: line 3, column 15: route.group_wait: invalid duration \"soon\""),
        "{msg}"
    );
    let (code, _) = http(addr, "POST", "/api/v2/alerts", br#"[{"labels":{"alertname":"B"}}]"#);
    assert_eq!(code, 200);
    let r = hook.wait(2).await;
    assert!(r[1].body.contains("\"alertname\":\"B\""));
    server.stop().await.unwrap();
}

/// Whether `GET /-/ready` at `addr` answers 200 within `timeout` (refused connections retried).
fn answers_ready(addr: SocketAddr, timeout: Duration) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            let mut head = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.1 200")
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_are_forwarded_to_alertmanager() {
    let bin = require("prometheus-alertmanager", "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    // A free port can be taken by a parallel test between `free_port` and Alertmanager's bind;
    // the start then "succeeds" on the other process's socket. Alertmanager counts as up only
    // once it answers its own readiness endpoint, and gets a fresh port otherwise.
    let (_am, addr, port) = (0..3)
        .find_map(|_| {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut cmd = std::process::Command::new(&bin);
            cmd.arg(format!("--config.file={}", dir.path().join("am.yml").display()))
                .arg(format!("--storage.path={}", dir.path().join("am-data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=");
            let am = Service::start(cmd, addr, Duration::from_secs(30));
            answers_ready(addr, Duration::from_secs(15)).then_some((am, addr, port))
        })
        .expect("Alertmanager never answered /-/ready");
    let data = tempfile::tempdir().unwrap();
    let config = NotifierConfig {
        alertmanagers: vec![format!("http://127.0.0.1:{port}")],
        retry_backoff: "100ms".into(),
        ..NotifierConfig::default()
    };
    let history = Arc::new(MemoryHistory::default());
    let n = Notifier::start(&config, history.clone(), data.path()).await.unwrap();
    let a = firing(&[("alertname", "Forwarded"), ("instance", "n1")]);
    n.send(vec![a.clone()]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let got = loop {
        let (code, body) = http(addr, "GET", "/api/v2/alerts", b"");
        if code == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "Alertmanager did not get the alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(got[0]["labels"]["alertname"], "Forwarded");
    assert_eq!(got[0]["annotations"]["summary"], "load is high");
    assert_eq!(got[0]["generatorURL"], "http://prometheus/graph");
    // our fingerprint is Alertmanager's
    assert_eq!(got[0]["fingerprint"], ocelli_server::alerting::notify::fingerprint(&a.labels));
    assert!(attempts(&history).is_empty(), "no failure, so nothing in history");
    n.shutdown().await;
}
