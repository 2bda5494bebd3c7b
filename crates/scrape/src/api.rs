//! The scrape manager's HTTP endpoints, `GET /api/v1/targets` and `GET /api/v1/targets/metadata`
//! in Prometheus' JSON shapes ([`router`]), and the answer a refused reload gives ([`refused_reload`]).
//!
//! `/api/v1/targets` takes `state=active|dropped|any` (default any; anything else is a 400,
//! where Prometheus answers with empty lists) and `scrapePool=<job>`. A target that has not
//! been scraped yet has health `unknown` and `lastScrape` `0001-01-01T00:00:00Z`, as in
//! Prometheus. `globalUrl` is the scrape URL with a loopback host replaced by this machine's
//! host name.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use ocelli_model::Labels;
use serde_json::{Value, json};

use super::Scraper;
use ocelli_http::{Error, Result};
use ocelli_model::time::{format_duration, rfc3339};

/// The scrape manager's routes, over its own handle.
pub fn router(scraper: Scraper) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/targets", axum::routing::get(targets))
        .route("/api/v1/targets/metadata", axum::routing::get(targets_metadata))
        .with_state(scraper)
}

/// Query parameters of `/api/v1/targets/metadata`.
#[derive(Debug, serde::Deserialize)]
pub struct TargetsMetadataParams {
    match_target: Option<String>,
    metric: Option<String>,
    limit: Option<String>,
}

/// `GET /api/v1/targets/metadata`: the metadata of each active target's last scrape that had
/// any, as `{target, metric, type, help, unit}` entries. `match_target` is a label selector
/// (`{job="node"}`) on the target's labels, `metric` a metric family name, `limit` the most
/// entries returned.
pub async fn targets_metadata(
    State(scraper): State<Scraper>,
    Query(q): Query<TargetsMetadataParams>,
) -> Result<Json<Value>> {
    let matchers = match q.match_target.as_deref().filter(|m| !m.is_empty()) {
        None => Vec::new(),
        Some(sel) => ocelli_promql::parse_selector(sel)
            .map_err(|e| Error::BadData(format!("match_target: {e}")))?,
    };
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => usize::MAX,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n < 0 => usize::MAX,
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => return Err(Error::BadData(format!("limit: {l:?} is not a number"))),
        },
    };
    let m = scraper.inner.lock().await;
    let mut out = Vec::new();
    'targets: for r in m.running.values() {
        let labels = &r.spec.labels;
        let matches = |branch: &Vec<ocelli_model::Matcher>| {
            branch.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
        };
        if !matchers.is_empty() && !matchers.iter().any(matches) {
            continue;
        }
        let meta = r.health.lock().unwrap_or_else(|e| e.into_inner()).metadata.clone();
        for md in meta.iter() {
            if q.metric.as_deref().is_some_and(|name| !name.is_empty() && name != md.family) {
                continue;
            }
            if out.len() >= limit {
                break 'targets;
            }
            let kind = match md.kind {
                ocelli_wire::exposition::MetricKind::Untyped => "unknown",
                k => k.as_str(),
            };
            out.push(json!({
                "target": labels_json(labels),
                "metric": md.family,
                "type": kind,
                "help": md.help.as_deref().unwrap_or(""),
                "unit": md.unit.as_deref().unwrap_or(""),
            }));
        }
    }
    Ok(Json(json!({ "status": "success", "data": out })))
}

/// Query parameters of `/api/v1/targets`.
#[derive(Debug, serde::Deserialize)]
pub struct TargetsParams {
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(l.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect())
}

/// `GET /api/v1/targets`
pub async fn targets(
    State(scraper): State<Scraper>,
    Query(q): Query<TargetsParams>,
) -> Result<Json<Value>> {
    let (active, dropped) = match q.state.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("" | "any") => (true, true),
        Some("active") => (true, false),
        Some("dropped") => (false, true),
        Some(other) => {
            return Err(Error::BadData(format!(
                "state: {other:?} is not one of active, dropped, any"
            )));
        }
    };
    let pool_ok = |job: &str| q.scrape_pool.as_deref().is_none_or(|p| p == job);
    let m = scraper.inner.lock().await;
    let mut active_json = Vec::new();
    if active {
        for r in m.running.values().filter(|r| pool_ok(&r.spec.job)) {
            let h = r.health.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let health = match (&h.last_scrape, h.last_error.is_empty()) {
                (None, _) => "unknown",
                (Some(_), true) => "up",
                (Some(_), false) => "down",
            };
            let s = &r.spec;
            let never = || "0001-01-01T00:00:00Z".to_string();
            active_json.push(json!({
                "discoveredLabels": labels_json(&r.discovered),
                "labels": labels_json(&s.labels),
                "scrapePool": s.job,
                "scrapeUrl": s.url,
                "globalUrl": global_url(&s.url, &s.address),
                "lastError": h.last_error,
                "lastScrape": h.last_scrape.map(rfc3339).unwrap_or_else(never),
                "lastScrapeDuration": h.last_duration.as_secs_f64(),
                "health": health,
                "scrapeInterval": format_duration(s.interval),
                "scrapeTimeout": format_duration(s.timeout),
            }));
        }
    }
    let mut dropped_json = Vec::new();
    let mut counts: BTreeMap<&str, usize> = m.jobs.iter().map(|j| (j.name.as_str(), 0)).collect();
    for (job, discovered) in &m.dropped {
        *counts.entry(job.as_str()).or_default() += 1;
        if dropped && pool_ok(job) {
            dropped_json.push(json!({ "discoveredLabels": labels_json(discovered) }));
        }
    }
    Ok(Json(json!({
        "status": "success",
        "data": {
            "activeTargets": active_json,
            "droppedTargets": dropped_json,
            "droppedTargetCounts": counts,
        }
    })))
}

/// A failed reload as the answer to `POST /-/reload`: logged, and a 400 whatever the cause.
pub fn refused_reload(e: Error) -> Error {
    tracing::error!(error = %e, "reload failed; the running configuration is kept");
    match e {
        Error::Config { .. } => e,
        other => Error::BadData(other.to_string()),
    }
}

fn global_url(url: &str, address: &str) -> String {
    let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address);
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match (loopback, hostname()) {
        (true, Some(name)) => url.replacen(host, &name, 1),
        _ => url.to_string(),
    }
}

fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_url_names_the_host_for_loopback() {
        let url = "http://127.0.0.1:9100/metrics";
        let g = global_url(url, "127.0.0.1:9100");
        match hostname() {
            Some(h) => assert_eq!(g, format!("http://{h}:9100/metrics")),
            None => assert_eq!(g, url),
        }
        assert_eq!(global_url("http://10.1.2.3:9100/m", "10.1.2.3:9100"), "http://10.1.2.3:9100/m");
    }
}
