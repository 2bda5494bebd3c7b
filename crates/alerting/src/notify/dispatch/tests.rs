//! Tests of the dispatcher's decisions, with explicit times and no I/O: grouping and timing,
//! deduplication through the notification log, resolved notifications, muting.

use std::time::Duration;

use super::*;
use crate::notify::config::{Settings, WebhookConfig};
use crate::notify::matchers::parse;
use crate::notify::route::GroupBy;
use crate::notify::silence::{Silence, SilenceMatcher};

const T0: i64 = 1_700_000_000_000;

fn settings(send_resolved: bool) -> Settings {
    Settings {
        resolve_timeout: Duration::from_secs(300),
        route: Route {
            receiver: Some("team".into()),
            group_by: Some(GroupBy::Labels(vec!["alertname".into()])),
            group_wait: Some(Duration::from_millis(500)),
            group_interval: Some(Duration::from_secs(10)),
            repeat_interval: Some(Duration::from_secs(60)),
            ..Route::default()
        },
        receivers: vec![Receiver {
            name: "team".into(),
            webhook: vec![WebhookConfig {
                url: "http://127.0.0.1:1/".into(),
                send_resolved,
                max_alerts: 0,
            }],
            ..Receiver::default()
        }],
        inhibit_rules: Vec::new(),
    }
}

fn alert(name: &str, instance: &str, starts: i64, ends: i64) -> Alert {
    Alert {
        labels: [("alertname", name), ("instance", instance), ("severity", "warning")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: LabelMap::new(),
        starts_at_ms: starts,
        ends_at_ms: ends,
        generator_url: String::new(),
    }
}

fn instances(job: &Job) -> Vec<String> {
    job.notification.alerts.iter().map(|a| a.labels["instance"].clone()).collect()
}

/// Flushes at `now` and completes every job as delivered.
fn flush_ok(core: &mut Core, now: i64) -> Vec<Job> {
    let (jobs, _) = core.flush_due(now);
    for j in &jobs {
        core.complete(j, true);
    }
    jobs
}

#[test]
fn two_alerts_one_notification_after_group_wait_then_dedup_and_repeat() {
    let mut c = Core::new(settings(true), "http://x".into());
    c.ingest(vec![alert("HighLoad", "n1", T0, T0 + 600_000)], T0);
    c.ingest(vec![alert("HighLoad", "n2", T0 + 100, T0 + 600_000)], T0 + 100);
    assert_eq!(c.groups.len(), 1);
    assert!(c.flush_due(T0 + 499).0.is_empty(), "group_wait not over");
    let jobs = flush_ok(&mut c, T0 + 500);
    assert_eq!(jobs.len(), 1);
    assert_eq!(instances(&jobs[0]), ["n1", "n2"]);
    assert_eq!(jobs[0].notification.group_key, r#"{}:{alertname="HighLoad"}"#);
    // the same again at the next interval: nothing
    assert!(flush_ok(&mut c, T0 + 10_500).is_empty());
    // a re-sent alert (same labels) changes nothing either
    c.ingest(vec![alert("HighLoad", "n1", T0, T0 + 600_000)], T0 + 15_000);
    assert!(flush_ok(&mut c, T0 + 20_500).is_empty());
    // after repeat_interval: sent again
    let jobs = flush_ok(&mut c, T0 + 70_500);
    assert_eq!(jobs.len(), 1);
    assert_eq!(instances(&jobs[0]), ["n1", "n2"]);
}

#[test]
fn an_old_alert_flushes_at_once_and_resolved_ones_are_sent_then_dropped() {
    let mut c = Core::new(settings(true), "http://x".into());
    c.ingest(vec![alert("Disk", "n1", T0 - 60_000, T0 + 600_000)], T0);
    assert_eq!(c.next_due(), Some(T0));
    assert_eq!(flush_ok(&mut c, T0).len(), 1);
    // resolved: notified once with the resolved alert, then the group is gone
    c.ingest(vec![alert("Disk", "n1", T0 - 60_000, T0 + 5_000)], T0 + 5_000);
    let jobs = flush_ok(&mut c, T0 + 10_000);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].notification.status(), "resolved");
    assert!(c.groups.is_empty());
    let (gone, _, _) = c.collect_garbage(T0 + 10_000);
    assert_eq!(gone.len(), 1);
    assert!(c.alerts.is_empty());
}

#[test]
fn without_send_resolved_the_log_is_cleared_but_nothing_is_said() {
    let mut c = Core::new(settings(false), "http://x".into());
    c.ingest(vec![alert("Disk", "n1", T0, T0 + 600_000)], T0);
    assert_eq!(flush_ok(&mut c, T0 + 500).len(), 1);
    c.ingest(vec![alert("Disk", "n1", T0, T0 + 1_000)], T0 + 1_000);
    let jobs = flush_ok(&mut c, T0 + 10_500);
    // a job that carries no alert: the log learns, the receiver hears nothing
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].notification.alerts.is_empty());
    assert!(c.nflog.values().all(|e| e.firing.is_empty()));
}

#[test]
fn a_failed_delivery_keeps_the_group_and_is_retried_next_interval() {
    let mut c = Core::new(settings(true), "http://x".into());
    c.ingest(vec![alert("Disk", "n1", T0, T0 + 600_000)], T0);
    let (jobs, _) = c.flush_due(T0 + 500);
    assert_eq!(jobs.len(), 1);
    // still in flight at the next flush: not started twice
    assert!(c.flush_due(T0 + 10_500).0.is_empty());
    c.complete(&jobs[0], false);
    assert!(c.nflog.is_empty());
    let (jobs, _) = c.flush_due(T0 + 20_500);
    assert_eq!(jobs.len(), 1, "not delivered, so tried again");
}

#[test]
fn silenced_and_inhibited_alerts_are_left_out_and_recorded_once() {
    let mut s = settings(true);
    s.inhibit_rules = vec![InhibitRule {
        source_matchers: parse(r#"severity="critical""#).unwrap(),
        target_matchers: parse(r#"severity="warning""#).unwrap(),
        equal: vec!["instance".into()],
    }];
    let mut c = Core::new(s, "http://x".into());
    let sil = Silence {
        id: "s1".into(),
        matchers: vec![SilenceMatcher {
            name: "instance".into(),
            value: "n2".into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at_ms: T0,
        ends_at_ms: T0 + 3_600_000,
        updated_at_ms: T0,
        created_by: "me".into(),
        comment: "c".into(),
    };
    c.silences.insert("s1".into(), Compiled::new(sil).unwrap());
    let mut crit = alert("Load", "n3", T0, T0 + 600_000);
    crit.labels.insert("severity".into(), "critical".into());
    c.ingest(
        vec![
            alert("Load", "n1", T0, T0 + 600_000),
            alert("Load", "n2", T0, T0 + 600_000),
            alert("Load", "n3", T0, T0 + 600_000),
            crit,
        ],
        T0,
    );
    let (jobs, events) = c.flush_due(T0 + 500);
    assert_eq!(jobs.len(), 1);
    // n1 plain, n3 critical; n2 silenced, the n3 warning inhibited by the critical one
    let got: Vec<(String, String)> = jobs[0]
        .notification
        .alerts
        .iter()
        .map(|a| (a.labels["instance"].clone(), a.labels["severity"].clone()))
        .collect();
    assert_eq!(got, [("n1".to_string(), "warning".to_string()), ("n3".into(), "critical".into())]);
    assert_eq!(events.len(), 1);
    let HistoryEvent::Notification { outcome, alerts, error, receiver, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((*outcome, receiver.as_str(), alerts.len()), (Outcome::Suppressed, "team", 2));
    let error = error.as_deref().unwrap();
    assert!(error.contains("silenced by s1") && error.contains("inhibited by "), "{error}");
    c.complete(&jobs[0], true);
    // the next flush records nothing new
    assert!(c.flush_due(T0 + 10_500).1.is_empty());
}

#[test]
fn dynamic_routes_and_rebuilds_keep_the_log() {
    let mut c = Core::new(settings(true), "http://x".into());
    c.ingest(vec![alert("Load", "n1", T0, T0 + 600_000)], T0);
    assert_eq!(flush_ok(&mut c, T0 + 500).len(), 1);
    // a rebuild (reload) regroups: the group flushes at once but the log stops a repeat
    c.rebuild(T0 + 1_000);
    assert_eq!(c.next_due(), Some(T0 + 1_000));
    assert!(flush_ok(&mut c, T0 + 1_000).is_empty());
    // a run-time route to another receiver gets its own notification
    c.dyn_receivers = vec![Receiver {
        name: "alarm".into(),
        webhook: vec![WebhookConfig {
            url: "http://127.0.0.1:2/".into(),
            send_resolved: true,
            max_alerts: 0,
        }],
        ..Receiver::default()
    }];
    c.dyn_routes = vec![Route {
        receiver: Some("alarm".into()),
        matchers: parse(r#"alertname="Load""#).unwrap(),
        ..Route::default()
    }];
    c.rebuild(T0 + 2_000);
    let jobs = flush_ok(&mut c, T0 + 2_000);
    let receivers: Vec<&str> = jobs.iter().map(|j| j.notification.receiver.as_str()).collect();
    assert_eq!(receivers, ["alarm"]);
}
