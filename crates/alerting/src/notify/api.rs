//! The notifier's HTTP endpoints (`docs/api.md`, section Notifier), in Alertmanager v2's JSON
//! shapes:
//!
//! - `POST /api/v2/alerts`: Alertmanager's own ingest (a JSON array of `PostableAlert`), so a
//!   Prometheus can use this server as its Alertmanager. All or nothing: one bad alert is a
//!   400 naming it, and none is taken.
//! - `GET /api/v1/notifier/alerts` (also `GET /api/v2/alerts`): the alerts the notifier holds
//!   that are not resolved, with `status.state` (`active` or `suppressed`), `silencedBy` and
//!   `inhibitedBy`, and the receivers they route to; `active`, `silenced` and `inhibited`
//!   (`true`/`false`, default true) filter them as in Alertmanager.
//! - `POST /api/v1/silences` (create, or update with `id`; answers `{"silenceID": ...}`),
//!   `GET /api/v1/silences` (with `status.state` `active`, `pending` or `expired`),
//!   `GET /api/v1/silences/{id}`, `DELETE /api/v1/silences/{id}` (expire).
//!
//! Malformed bodies and failed checks are 400s that name the field; unknown silence ids 404.
//! Also the notifier's lines on `/metrics` ([`write_metrics`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Notifier;
use super::silence::{Postable, Silence, SilenceMatcher, SilenceState};
use super::text::{ZERO_TIME, time};
use crate::{Alert, LabelMap};
use ocelli_http::{Error, Result, read_body};

/// The largest alerts or silence body taken.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// The notifier's routes over its handle, merged into the server's router.
pub fn router(notifier: Notifier) -> Router {
    Router::new()
        .route("/api/v2/alerts", post(post_alerts).get(list_alerts))
        .route("/api/v1/notifier/alerts", get(list_alerts))
        .route("/api/v1/silences", post(post_silence).get(list_silences))
        .route("/api/v1/silences/{id}", get(get_silence).delete(delete_silence))
        .with_state(notifier)
}

/// One alert of `POST /api/v2/alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PostableAlert {
    labels: LabelMap,
    #[serde(default)]
    annotations: LabelMap,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

fn parse_alerts(body: &[u8]) -> Result<Vec<Alert>> {
    let posted: Vec<PostableAlert> =
        serde_json::from_slice(body).map_err(|e| Error::BadData(format!("alerts body: {e}")))?;
    posted
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let t = |field: &str, v: &Option<String>| -> Result<i64> {
                match v.as_deref() {
                    None | Some("") | Some(ZERO_TIME) => Ok(0),
                    Some(s) => ocelli_model::time::parse_time(s)
                        .filter(|_| s.contains(['T', 't']))
                        .ok_or_else(|| {
                            Error::BadData(format!(
                                "alert {i}: {field}: {s:?} is not an RFC 3339 time (e.g. 2024-05-06T07:08:09Z)"
                            ))
                        }),
                }
            };
            Ok(Alert {
                starts_at_ms: t("startsAt", &p.starts_at)?,
                ends_at_ms: t("endsAt", &p.ends_at)?,
                labels: p.labels,
                annotations: p.annotations,
                generator_url: p.generator_url.unwrap_or_default(),
            })
        })
        .collect()
}

async fn post_alerts(State(n): State<Notifier>, body: Body) -> Result<StatusCode> {
    let body = read_body(body, MAX_BODY_BYTES).await?;
    let alerts = parse_alerts(&body)?;
    n.post_alerts(alerts)?;
    Ok(StatusCode::OK)
}

/// The `true`/`false` filters of the alerts listing.
fn alert_filters(q: Option<&str>) -> Result<(bool, bool, bool)> {
    let (mut active, mut silenced, mut inhibited) = (true, true, true);
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let slot = match k.as_ref() {
            "active" => &mut active,
            "silenced" => &mut silenced,
            "inhibited" => &mut inhibited,
            other => {
                return Err(Error::BadData(format!(
                    "{other}: unknown parameter; expected one of active, silenced, inhibited"
                )));
            }
        };
        *slot = match v.as_ref() {
            "true" => true,
            "false" => false,
            bad => {
                return Err(Error::BadData(format!("{k}: {bad:?} is not true or false")));
            }
        };
    }
    Ok((active, silenced, inhibited))
}

async fn list_alerts(State(n): State<Notifier>, RawQuery(q): RawQuery) -> Result<Json<Value>> {
    let (want_active, want_silenced, want_inhibited) = alert_filters(q.as_deref())?;
    let now = ocelli_model::time::now_ms();
    let core = n.shared.core.lock();
    let inhibitor = core.inhibitor(now);
    let mut out = Vec::new();
    for a in core.alerts.values().filter(|a| !a.resolved(now)) {
        let m = core.muted(&a.labels, &inhibitor, now);
        let keep = if m.is_muted() {
            (want_silenced || m.silenced_by.is_empty())
                && (want_inhibited || m.inhibited_by.is_empty())
        } else {
            want_active
        };
        if !keep {
            continue;
        }
        let mut receivers: Vec<&str> =
            core.tree.matches(&a.labels).iter().map(|r| r.receiver.as_str()).collect();
        receivers.dedup();
        out.push(json!({
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": time(a.starts_at_ms),
            "endsAt": time(a.ends_at_ms),
            "generatorURL": a.generator_url,
            "updatedAt": time(a.updated_at_ms),
            "fingerprint": super::alert::fingerprint_hex(a.fingerprint()),
            "receivers": receivers.iter().map(|r| json!({ "name": r })).collect::<Vec<_>>(),
            "status": {
                "state": if m.is_muted() { "suppressed" } else { "active" },
                "silencedBy": m.silenced_by,
                "inhibitedBy": m.inhibited_by,
            },
        }));
    }
    Ok(Json(Value::Array(out)))
}

/// A silence as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GettableSilence<'a> {
    id: &'a str,
    status: BTreeMap<&'static str, &'static str>,
    updated_at: String,
    matchers: &'a [SilenceMatcher],
    starts_at: String,
    ends_at: String,
    created_by: &'a str,
    comment: &'a str,
}

fn gettable(s: &Silence, now: i64) -> GettableSilence<'_> {
    GettableSilence {
        id: &s.id,
        status: [("state", s.state(now).as_str())].into(),
        updated_at: time(s.updated_at_ms),
        matchers: &s.matchers,
        starts_at: time(s.starts_at_ms),
        ends_at: time(s.ends_at_ms),
        created_by: &s.created_by,
        comment: &s.comment,
    }
}

async fn post_silence(State(n): State<Notifier>, body: Body) -> Result<Json<Value>> {
    let body = read_body(body, MAX_BODY_BYTES).await?;
    let p: Postable =
        serde_json::from_slice(&body).map_err(|e| Error::BadData(format!("silence body: {e}")))?;
    let id = n.put_silence(p).await?;
    Ok(Json(json!({ "silenceID": id })))
}

async fn list_silences(State(n): State<Notifier>) -> Result<Json<Value>> {
    let now = ocelli_model::time::now_ms();
    let mut all = n.silences();
    // Alertmanager's order: active, then pending, then expired; newest end first
    all.sort_by_key(|s| {
        let rank = match s.state(now) {
            SilenceState::Active => 0,
            SilenceState::Pending => 1,
            SilenceState::Expired => 2,
        };
        (rank, std::cmp::Reverse(s.ends_at_ms))
    });
    let v: Vec<Value> =
        all.iter().map(|s| serde_json::to_value(gettable(s, now)).unwrap_or(Value::Null)).collect();
    Ok(Json(Value::Array(v)))
}

async fn get_silence(State(n): State<Notifier>, Path(id): Path<String>) -> Result<Json<Value>> {
    let now = ocelli_model::time::now_ms();
    let s = n
        .silences()
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::NotFound(format!("silence {id} does not exist")))?;
    serde_json::to_value(gettable(&s, now)).map(Json).map_err(|e| Error::Internal(e.to_string()))
}

async fn delete_silence(State(n): State<Notifier>, Path(id): Path<String>) -> Result<StatusCode> {
    n.expire_silence(&id).await?;
    Ok(StatusCode::OK)
}

/// Appends the notifier's metrics to the server's `/metrics` text.
pub fn write_metrics(n: &Notifier, out: &mut String) {
    use std::fmt::Write as _;
    out.push_str("# HELP ocelli_notifications_total Notification delivery attempts by integration.\n# TYPE ocelli_notifications_total counter\n");
    let counts = n.shared.counters.snapshot();
    for (k, total, _) in &counts {
        let _ = writeln!(out, "ocelli_notifications_total{{integration=\"{k}\"}} {total}");
    }
    out.push_str("# HELP ocelli_notifications_failed_total Failed notification delivery attempts by integration.\n# TYPE ocelli_notifications_failed_total counter\n");
    for (k, _, failed) in &counts {
        let _ = writeln!(out, "ocelli_notifications_failed_total{{integration=\"{k}\"}} {failed}");
    }
    let now = ocelli_model::time::now_ms();
    let (mut active, mut suppressed) = (0u64, 0u64);
    let mut silences: BTreeMap<&str, u64> = [("active", 0), ("pending", 0), ("expired", 0)].into();
    {
        let core = n.shared.core.lock();
        let inhibitor = core.inhibitor(now);
        for a in core.alerts.values().filter(|a| !a.resolved(now)) {
            if core.muted(&a.labels, &inhibitor, now).is_muted() {
                suppressed += 1;
            } else {
                active += 1;
            }
        }
        for s in core.silences.values() {
            *silences.entry(s.silence.state(now).as_str()).or_default() += 1;
        }
    }
    out.push_str("# HELP ocelli_notifier_alerts Alerts the notifier holds that are not resolved, by state.\n# TYPE ocelli_notifier_alerts gauge\n");
    let _ = writeln!(out, "ocelli_notifier_alerts{{state=\"active\"}} {active}");
    let _ = writeln!(out, "ocelli_notifier_alerts{{state=\"suppressed\"}} {suppressed}");
    out.push_str("# HELP ocelli_silences Silences by state.\n# TYPE ocelli_silences gauge\n");
    for (state, count) in silences {
        let _ = writeln!(out, "ocelli_silences{{state=\"{state}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_alerts_parse_and_errors_name_the_alert() {
        let a = parse_alerts(
            br#"[{"labels":{"alertname":"A"},"startsAt":"2023-11-14T22:13:20Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p"}]"#,
        )
        .unwrap();
        assert_eq!((a[0].starts_at_ms, a[0].ends_at_ms), (1_700_000_000_000, 0));
        let e = parse_alerts(br#"[{"labels":{"a":"b"}},{"labels":{"a":"b"},"endsAt":"soon"}]"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "alert 1: endsAt: \"soon\" is not an RFC 3339 time (e.g. 2024-05-06T07:08:09Z)"
        );
        let e = parse_alerts(br#"[{"labels":{"a":"b"},"bogus":1}]"#).unwrap_err().to_string();
        assert!(e.starts_with("alerts body: unknown field `bogus`"), "{e}");
        assert!(e.contains("line 1 column"), "{e}");
    }

    #[test]
    fn filters() {
        assert_eq!(alert_filters(None).unwrap(), (true, true, true));
        assert_eq!(alert_filters(Some("silenced=false&active=true")).unwrap(), (true, false, true));
        assert_eq!(
            alert_filters(Some("muted=1")).unwrap_err().to_string(),
            "muted: unknown parameter; expected one of active, silenced, inhibited"
        );
        assert_eq!(
            alert_filters(Some("active=yes")).unwrap_err().to_string(),
            "active: \"yes\" is not true or false"
        );
    }
}
