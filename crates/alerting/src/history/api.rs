//! `GET /api/v1/history`: the alarm history, newest first (`docs/api.md`, section Alarm
//! history).
//!
//! Parameters, each at most once: `start`, `end` (RFC 3339 or Unix seconds), `kind` (`state` |
//! `notification`), `state` (`pending` | `firing` | `resolved`), `outcome` (`success` |
//! `retry` | `failure` | `suppressed`), `receiver`, `group`, `limit`, and the label filters
//! `alertname` (or its alias `rule`), `alarm_id`, `severity`, `ns`, `service_type`,
//! `service_id`, `vm_id` and `csp`. Anything else is a 400 naming it.

use std::collections::HashSet;

use axum::Json;
use serde_json::json;

use super::{Entry, Filter, History};
use ocelli_http::{Error, Result};
use ocelli_model::time::rfc3339;

/// Label filters the endpoint takes, by parameter name and label name.
const LABEL_PARAMS: &[(&str, &str)] = &[
    ("alertname", "alertname"),
    ("rule", "alertname"),
    ("alarm_id", "alarm_id"),
    ("severity", "severity"),
    ("ns", "ns"),
    ("service_type", "service_type"),
    ("service_id", "service_id"),
    ("vm_id", "vm_id"),
    ("csp", "csp"),
];

const OTHER_PARAMS: &[&str] =
    &["start", "end", "kind", "state", "outcome", "receiver", "group", "limit"];

fn one_of<T: serde::de::DeserializeOwned>(name: &str, v: &str, accepted: &[&str]) -> Result<T> {
    serde_json::from_value(json!(v))
        .map_err(|_| Error::BadData(format!("{name}: {v:?} is not one of {}", accepted.join(", "))))
}

/// Parses the query string of a history request.
pub fn parse_filter(query: &str) -> Result<Filter> {
    let mut f = Filter::default();
    let mut seen = HashSet::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let (k, v) = (k.to_string(), v.to_string());
        if !seen.insert(k.clone()) {
            return Err(Error::BadData(format!("{k}: given more than once")));
        }
        let time = |v: &str| {
            ocelli_model::time::parse_time(v).ok_or_else(|| {
                Error::BadData(format!("{k}: {v:?} is not a time (RFC 3339 or Unix seconds)"))
            })
        };
        match k.as_str() {
            "start" => f.start_ms = Some(time(&v)?),
            "end" => f.end_ms = Some(time(&v)?),
            "kind" => {
                let _: KindCheck = one_of(&k, &v, &["state", "notification"])?;
                f.kind = Some(v);
            }
            "state" => f.state = Some(one_of(&k, &v, &["pending", "firing", "resolved"])?),
            "outcome" => {
                f.outcome = Some(one_of(&k, &v, &["success", "retry", "failure", "suppressed"])?)
            }
            "receiver" => f.receiver = Some(v),
            "group" => f.group = Some(v),
            "limit" => {
                f.limit = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::BadData(format!("limit: {v:?} is not a positive whole number"))
                })?
            }
            _ => match LABEL_PARAMS.iter().find(|(p, _)| *p == k) {
                Some((_, label)) => {
                    if f.labels.iter().any(|(l, _)| l == label) {
                        return Err(Error::BadData(format!(
                            "{k}: the same filter as another parameter (rule is alertname)"
                        )));
                    }
                    f.labels.push((label.to_string(), v))
                }
                None => {
                    let known: Vec<&str> = OTHER_PARAMS
                        .iter()
                        .copied()
                        .chain(LABEL_PARAMS.iter().map(|(p, _)| *p))
                        .collect();
                    return Err(Error::BadData(format!(
                        "{k}: unknown parameter; expected one of {}",
                        known.join(", ")
                    )));
                }
            },
        }
    }
    if let (Some(s), Some(e)) = (f.start_ms, f.end_ms)
        && e < s
    {
        return Err(Error::BadData("end: before start".into()));
    }
    Ok(f)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum KindCheck {
    State,
    Notification,
}

/// The JSON of one entry: the event's fields, its id, and `at` in RFC 3339 beside `at_ms`.
pub fn entry_json(e: &Entry) -> serde_json::Value {
    let mut v = serde_json::to_value(e).unwrap_or_else(|_| json!({}));
    if let Some(at) = v.get("at_ms").and_then(|a| a.as_i64()) {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
        v["at"] = json!(rfc3339(t));
    }
    v
}

/// Runs a history query on the blocking pool and answers it.
pub async fn answer(history: History, filter: Filter) -> Result<Json<serde_json::Value>> {
    let entries = tokio::task::spawn_blocking(move || history.query(&filter))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let data: Vec<_> = entries.iter().map(entry_json).collect();
    Ok(Json(json!({ "status": "success", "data": data })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AlertState, Outcome};

    #[test]
    fn filters_parse_and_mistakes_are_named() {
        let f = parse_filter(
            "start=1700000000&end=2023-11-14T22:13:21Z&rule=HighCpu&vm_id=vm1&state=firing&limit=5",
        )
        .unwrap();
        assert_eq!(f.start_ms, Some(1_700_000_000_000));
        assert_eq!(f.end_ms, Some(1_700_000_001_000));
        assert_eq!(f.state, Some(AlertState::Firing));
        assert_eq!(f.limit, 5);
        assert_eq!(
            f.labels,
            vec![("alertname".into(), "HighCpu".into()), ("vm_id".into(), "vm1".into())]
        );
        assert_eq!(parse_filter("outcome=suppressed").unwrap().outcome, Some(Outcome::Suppressed));
        for (q, want) in [
            ("colour=red", "colour: unknown parameter; expected one of start, end,"),
            ("state=on", "state: \"on\" is not one of pending, firing, resolved"),
            ("kind=x", "kind: \"x\" is not one of state, notification"),
            ("limit=0", "limit: \"0\" is not a positive whole number"),
            ("start=yesterday", "start: \"yesterday\" is not a time"),
            ("ns=a&ns=b", "ns: given more than once"),
            ("rule=a&alertname=b", "alertname: the same filter as another parameter"),
            ("start=20&end=10", "end: before start"),
        ] {
            let e = parse_filter(q).unwrap_err().to_string();
            assert!(e.starts_with(want), "{q}: {e}");
        }
    }
}
