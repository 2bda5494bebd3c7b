//! Prometheus' status endpoints, in its JSON shapes, for the clients that read them (Grafana's
//! data source settings, promtool, dashboards of Prometheus itself):
//!
//! - `GET /api/v1/status/runtimeinfo`: start time, working directory, whether the last reload
//!   worked, the retention, the number of threads the runtime may use.
//! - `GET /api/v1/status/config`: the configuration file's text with every secret replaced by
//!   `<secret>` (values of keys naming a password, token, secret, credential, authorization,
//!   API URL or webhook, and the password of any URL with user information). The member is
//!   called `yaml`, as in Prometheus, though the text is TOML.
//! - `GET /api/v1/status/flags`: the settings Prometheus has as flags, under Prometheus' flag
//!   names (`storage.tsdb.retention.time`, `query.lookback-delta`...), as strings.
//! - `GET /api/v1/status/walreplay`: always finished (`min`, `max` and `current` equal): the
//!   server replays its write-ahead log before it listens.
//! - `GET /api/v1/alertmanagers`: this server's own notifier (rules send it their alerts) and
//!   the external Alertmanagers it forwards to.
//! - Any other path under `/api/v1/`: a Prometheus-shaped JSON error (404, `errorType`
//!   `not_found`), never an empty answer.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ocelli_model::time::rfc3339;
use serde_json::{Value, json};

use crate::Result;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/walreplay", get(walreplay))
        .route("/api/v1/alertmanagers", get(alertmanagers))
}

fn at(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    rfc3339(t)
}

fn success(data: Value) -> Response {
    axum::Json(json!({ "status": "success", "data": data })).into_response()
}

/// What a path the server does not serve gets: under `/api/v1/`, a Prometheus-shaped error.
pub(crate) async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/v1/") || path == "/api/v1" {
        let body = json!({
            "status": "error",
            "errorType": "not_found",
            "error": format!("unknown API endpoint {path}"),
        });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn runtimeinfo(State(st): State<AppState>) -> Result<Response> {
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    Ok(success(json!({
        "startTime": at(st.started_ms),
        "CWD": cwd,
        "reloadConfigSuccess": true,
        "lastConfigTime": at(st.started_ms),
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": threads,
        "GOMEMLIMIT": 0,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": st.config.storage.retention,
    })))
}

async fn config(State(st): State<AppState>) -> Result<Response> {
    let text = match &st.config.source {
        None => "# no configuration file: the built-in defaults (config/server.example.toml)\n"
            .to_owned(),
        Some(path) => {
            let path = path.clone();
            let raw = ocelli_http::blocking(move || {
                std::fs::read_to_string(&path)
                    .map_err(|e| crate::Error::Internal(format!("{}: {e}", path.display())))
            })
            .await?;
            redacted(&raw)?
        }
    };
    Ok(success(json!({ "yaml": text })))
}

/// The configuration text with its secrets replaced, re-rendered as TOML.
fn redacted(raw: &str) -> Result<String> {
    let mut v: toml::Table =
        toml::from_str(raw).map_err(|e| crate::Error::Internal(format!("config: {e}")))?;
    for (k, x) in v.iter_mut() {
        redact(k, x);
    }
    toml::to_string(&v).map_err(|e| crate::Error::Internal(format!("config: {e}")))
}

/// Whether a key's value is a secret.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "credential", "authorization", "bearer", "api_key"]
        .iter()
        .any(|w| k.contains(w))
        || k.contains("api_url")
        || k.contains("webhook")
}

fn redact(key: &str, v: &mut toml::Value) {
    const SECRET: &str = "<secret>";
    match v {
        toml::Value::String(s) if secret_key(key) => *s = SECRET.to_owned(),
        toml::Value::String(s) => {
            // scheme://user:password@host...
            if let Some((scheme, rest)) = s.split_once("://")
                && let Some((userinfo, host)) = rest.split_once('@')
                && !userinfo.contains('/')
                && let Some((user, _)) = userinfo.split_once(':')
            {
                *s = format!("{scheme}://{user}:{SECRET}@{host}");
            }
        }
        toml::Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                redact(k, x);
            }
        }
        toml::Value::Array(a) => {
            for x in a {
                redact(key, x);
            }
        }
        _ => {}
    }
}

async fn flags(State(st): State<AppState>) -> Result<Response> {
    let c = &st.config;
    let file = c.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let d = |s: &str| s.to_owned();
    Ok(success(json!({
        "config.file": file,
        "web.listen-address": c.listen.to_string(),
        "storage.tsdb.path": c.data_dir.display().to_string(),
        "storage.tsdb.retention.time": d(&c.storage.retention),
        "storage.tsdb.retention.size": c.storage.retention_bytes.to_string(),
        "query.lookback-delta": d(&c.query.lookback_delta),
        "query.timeout": d(&c.query.timeout),
        "query.max-samples": c.query.max_samples.to_string(),
        "storage.exemplars.exemplars-limit":
            ocelli_storage::exemplars::DEFAULT_CAPACITY.to_string(),
        "web.enable-remote-write-receiver": "true",
        "ingest.max-future": d(&c.ingest.max_future),
        "ingest.pushgateway-refresh": d(&c.ingest.pushgateway_refresh),
    })))
}

async fn walreplay() -> Response {
    success(json!({ "min": 0, "max": 0, "current": 0 }))
}

async fn alertmanagers(State(st): State<AppState>) -> Response {
    let own = format!("http://{}/api/v2/alerts", st.config.listen);
    let mut active = vec![json!({ "url": own })];
    active.extend(st.notifier.alertmanagers().into_iter().map(|u| json!({ "url": u })));
    success(json!({ "activeAlertmanagers": active, "droppedAlertmanagers": [] }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let raw = r#"
listen = "127.0.0.1:9090"
[notifier]
auth_password = "hunter2"
[cluster]
amqp_url = "amqp://ocelli:s3cret@mq:5672/%2f"
[[remote_write]]
url = "http://vm:8428/api/v1/write"
bearer_token = "abc"
[[x]]
slack_api_url = "https://hooks.slack.com/services/T/B/X"
api_url = "https://hooks.slack.com/services/T/B/Y"
"#;
        let out = redacted(raw).unwrap();
        for secret in ["hunter2", "s3cret", "abc\"", "/T/B/X", "/T/B/Y"] {
            assert!(!out.contains(secret), "{secret} left in:\n{out}");
        }
        assert!(out.contains("amqp://ocelli:<secret>@mq:5672/%2f"), "{out}");
        assert!(out.contains("http://vm:8428/api/v1/write"), "{out}");
        assert!(out.contains("listen = \"127.0.0.1:9090\""), "{out}");
    }
}
