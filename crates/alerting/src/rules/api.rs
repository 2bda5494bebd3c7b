//! The rule manager's HTTP side, in Prometheus 2.42's shapes: `GET /api/v1/rules` (with
//! `type=alert|record`; anything else is a 400) and `GET /api/v1/alerts` ([`router`]), and the
//! manager's lines on `/metrics` ([`write_metrics`]). Reloads are the server's `POST /-/reload`,
//! which calls [`RuleManager::reload`].
//!
//! As in Prometheus, an alert's `value` is a string in Go's shortest exponent form (`1e+00`),
//! times are RFC 3339 in UTC (`0001-01-01T00:00:00Z` for never), durations and evaluation
//! times are seconds, and the alerts listed are the pending and firing ones (resolved alerts
//! kept for resending are not). `/api/v1/alerts` lists them sorted by rule group, rule and
//! labels (Prometheus' order is unspecified).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::{Value, json};

use super::RuleManager;
use super::alert::{ActiveAlert, State as AlertState};
use super::gofmt::format_e_shortest;
use super::group::{Kind, Rule};
use ocelli_http::{Error, Result};
use ocelli_model::time::rfc3339;
use ocelli_wire::exposition::escape_label_value as escape_label;

/// The rule manager's routes, over its handle.
pub fn router(rules: RuleManager) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules_list))
        .route("/api/v1/alerts", get(alerts))
        .with_state(rules)
}

/// Query parameters of `/api/v1/rules`.
#[derive(Debug, serde::Deserialize)]
pub struct RulesParams {
    #[serde(rename = "type")]
    kind: Option<String>,
}

fn time(t: Option<SystemTime>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

fn ms_time(ms: i64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

fn alert_json(a: &ActiveAlert) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": ms_time(a.active_at),
        "value": format_e_shortest(a.value),
    });
    if let Some(since) = a.keep_firing_since {
        v["keepFiringSince"] = Value::String(ms_time(since));
    }
    v
}

/// The alerts the API lists: pending and firing, not resolved.
fn listed(rule: &Rule) -> Vec<Value> {
    let st = rule.state.lock();
    st.alerts.values().filter(|a| a.resolved_at.is_none()).map(alert_json).collect()
}

/// `GET /api/v1/rules`
async fn rules_list(
    State(rules): State<RuleManager>,
    Query(q): Query<RulesParams>,
) -> Result<Json<Value>> {
    let typ = q.kind.unwrap_or_default().to_ascii_lowercase();
    if !matches!(typ.as_str(), "" | "alert" | "record") {
        return Err(Error::BadData(format!(
            "invalid parameter \"type\": not supported value {typ:?} (use alert or record)"
        )));
    }
    let (want_alerts, want_records) = (typ != "record", typ != "alert");
    let mut groups = Vec::new();
    for g in rules.groups() {
        let mut rules = Vec::new();
        for r in &g.rules {
            let alerts = if r.is_alerting() { listed(r) } else { Vec::new() };
            let s = r.state.lock();
            let common = |v: &mut Value| {
                if let Some(e) = &s.last_error {
                    v["lastError"] = Value::String(e.clone());
                }
            };
            let mut v = match &r.kind {
                Kind::Alert { hold, keep_firing_for, annotations, .. } if want_alerts => json!({
                    "state": Rule::alert_state(&s).as_str(),
                    "name": r.name,
                    "query": r.query,
                    "duration": hold.as_secs_f64(),
                    "keepFiringFor": keep_firing_for.as_secs_f64(),
                    "labels": r.labels,
                    "annotations": annotations,
                    "alerts": alerts,
                    "health": s.health.as_str(),
                    "evaluationTime": s.evaluation_time.as_secs_f64(),
                    "lastEvaluation": time(s.last_evaluation),
                    "type": "alerting",
                }),
                Kind::Record if want_records => {
                    let mut v = json!({
                        "name": r.name,
                        "query": r.query,
                        "health": s.health.as_str(),
                        "evaluationTime": s.evaluation_time.as_secs_f64(),
                        "lastEvaluation": time(s.last_evaluation),
                        "type": "recording",
                    });
                    if !r.labels.is_empty() {
                        v["labels"] = json!(r.labels);
                    }
                    v
                }
                _ => continue,
            };
            common(&mut v);
            rules.push(v);
        }
        groups.push(json!({
            "name": g.spec.name,
            "file": g.spec.source,
            "rules": rules,
            "interval": g.interval.as_secs_f64(),
            "limit": g.spec.limit,
            "evaluationTime": g.evaluation_time.lock().as_secs_f64(),
            "lastEvaluation": time(*g.last_evaluation.lock()),
        }));
    }
    Ok(Json(json!({ "status": "success", "data": { "groups": groups } })))
}

/// `GET /api/v1/alerts`
async fn alerts(State(rules): State<RuleManager>) -> Json<Value> {
    let mut all = Vec::new();
    for g in rules.groups() {
        for r in g.rules.iter().filter(|r| r.is_alerting()) {
            all.extend(listed(r));
        }
    }
    Json(json!({ "status": "success", "data": { "alerts": all } }))
}

/// The manager's lines on `/metrics`.
pub fn write_metrics(rules: &RuleManager, out: &mut String) {
    let r = rules.reload_status();
    let _ = writeln!(
        out,
        "# HELP ocelli_rules_last_reload_successful Whether the last load of the rule files succeeded.\n# TYPE ocelli_rules_last_reload_successful gauge\nocelli_rules_last_reload_successful {}",
        u8::from(r.successful)
    );
    let _ = writeln!(
        out,
        "# HELP ocelli_rules_last_reload_success_timestamp_seconds When the rule files were last loaded without error.\n# TYPE ocelli_rules_last_reload_success_timestamp_seconds gauge\nocelli_rules_last_reload_success_timestamp_seconds {}",
        r.last_success_ms as f64 / 1000.0
    );
    let groups = rules.groups();
    type Get = fn(&super::group::Group) -> f64;
    let families: [(&str, &str, &str, Get); 9] = [
        ("ocelli_rule_evaluations_total", "counter", "Rule evaluations, by rule group.", |g| {
            g.metrics.evaluations.load(Ordering::Relaxed) as f64
        }),
        (
            "ocelli_rule_evaluation_failures_total",
            "counter",
            "Rule evaluations that failed, by rule group.",
            |g| g.metrics.failures.load(Ordering::Relaxed) as f64,
        ),
        (
            "ocelli_rule_group_iterations_total",
            "counter",
            "Evaluations of the whole group that ran.",
            |g| g.metrics.iterations.load(Ordering::Relaxed) as f64,
        ),
        (
            "ocelli_rule_group_iterations_missed_total",
            "counter",
            "Evaluation slots skipped because the group was still evaluating.",
            |g| g.metrics.missed.load(Ordering::Relaxed) as f64,
        ),
        (
            "ocelli_rule_group_last_duration_seconds",
            "gauge",
            "How long the group's last evaluation took.",
            |g| g.evaluation_time.lock().as_secs_f64(),
        ),
        (
            "ocelli_rule_group_last_evaluation_timestamp_seconds",
            "gauge",
            "When the group was last evaluated (0: never).",
            |g| {
                g.last_evaluation
                    .lock()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64())
            },
        ),
        (
            "ocelli_rule_group_last_evaluation_samples",
            "gauge",
            "Samples the group's rules returned at the last evaluation.",
            |g| g.metrics.samples.load(Ordering::Relaxed) as f64,
        ),
        ("ocelli_rule_group_interval_seconds", "gauge", "The group's evaluation interval.", |g| {
            g.interval.as_secs_f64()
        }),
        ("ocelli_rule_group_rules", "gauge", "Rules in the group.", |g| g.rules.len() as f64),
    ];
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in &groups {
            let _ = writeln!(
                out,
                "{name}{{rule_group=\"{}\"}} {}",
                escape_label(&g.key()),
                ocelli_model::format_value(get(g))
            );
        }
    }
    let (mut pending, mut firing) = (0usize, 0usize);
    for g in &groups {
        for r in &g.rules {
            for a in r.state.lock().alerts.values() {
                match a.state {
                    AlertState::Pending => pending += 1,
                    AlertState::Firing => firing += 1,
                    AlertState::Inactive => {}
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP ocelli_rule_alerts Alerts of all rules, by state.\n# TYPE ocelli_rule_alerts gauge\nocelli_rule_alerts{{state=\"pending\"}} {pending}\nocelli_rule_alerts{{state=\"firing\"}} {firing}"
    );
}
