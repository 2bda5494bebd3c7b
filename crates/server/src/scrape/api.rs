//! The scrape manager's HTTP endpoints: `GET /api/v1/targets` in Prometheus' JSON shape and
//! `POST /-/reload`, plus the text forms they use (Prometheus durations like `1m30s`, RFC 3339
//! times in UTC).
//!
//! `/api/v1/targets` takes `state=active|dropped|any` (default any; anything else is a 400,
//! where Prometheus answers with empty lists) and `scrapePool=<job>`. A target that has not
//! been scraped yet has health `unknown` and `lastScrape` `0001-01-01T00:00:00Z`, as in
//! Prometheus. `globalUrl` is the scrape URL with a loopback host replaced by this machine's
//! host name.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use ocelli_model::Labels;
use serde_json::{Value, json};

use super::Scraper;
use crate::{Error, Result};

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

/// `POST /-/reload` (and `PUT`): 200 once applied; 400 with the reason if the file is invalid,
/// in which case the running configuration is kept.
pub async fn reload(State(scraper): State<Scraper>) -> Result<StatusCode> {
    scraper.reload().await.map_err(refused_reload)?;
    Ok(StatusCode::OK)
}

/// A failed reload as the answer to `POST /-/reload`: logged, and a 400 whatever the cause.
pub(crate) fn refused_reload(e: Error) -> Error {
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

/// A duration as Prometheus writes one: `1m30s`, `15s`, `250ms`, `2h`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let units = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut out = String::new();
    for (unit, size) in units {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// `2024-05-06T07:08:09.123456789Z`: UTC, nanoseconds with trailing zeros dropped.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, mo, day) = ocelli_model::time::civil_from_days(days);
    let mut s =
        format!("{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_prometheus() {
        let cases = [
            (0, "0s"),
            (250, "250ms"),
            (15_000, "15s"),
            (60_000, "1m"),
            (90_000, "1m30s"),
            (7_200_000, "2h"),
            (86_400_000, "1d"),
            (1_500, "1s500ms"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), want);
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day in a century year divisible by 400)
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3_723, 500_000_000);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.5Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456789Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_400); // 2100-03-01
        assert_eq!(rfc3339(t), "2100-03-01T00:00:00Z");
    }

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
