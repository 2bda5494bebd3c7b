//! The agent's HTTP endpoints, served on `--listen` in every mode:
//! - `GET /metrics`: every collector, exposition text 0.0.4 (gzip when the request accepts it),
//!   with the six identity labels and without `job`/`instance`, which the server's scrape adds;
//! - `GET /collect/{collector}`: one collector now, same format; an unknown or disabled
//!   collector is a 404 naming the known ones;
//! - `GET /collect/processes?top=N`: the process view as JSON (see [`crate::process`]);
//! - `GET /-/healthy`.
//!
//! Errors have Prometheus' shape, `{"status":"error","errorType":..,"error":..}`. Collection
//! runs on the blocking pool, so a slow `/proc` or `statfs` never stalls the connection
//! handling.

use std::io::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::agent::Shared;
use crate::collector::{NAMES, Sink};

/// The most processes `/collect/processes` lists.
pub const MAX_TOP: usize = 1000;
/// How many processes `/collect/processes` lists when `top` is not given.
pub const DEFAULT_TOP: usize = 10;

/// An error answer: status, Prometheus `errorType` and message.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl Problem {
    fn bad_data(status: StatusCode, message: String) -> Problem {
        Problem { status, kind: "bad_data", message }
    }

    fn internal(e: impl std::fmt::Display) -> Problem {
        Problem {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: e.to_string(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(error = %self.message, "request failed");
        }
        let body = json!({ "status": "error", "errorType": self.kind, "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/collect/processes", get(processes))
        .route("/collect/{collector}", get(collect_one))
        .route("/-/healthy", get(|| async { "Ocelli agent is Healthy.\n" }))
        .with_state(shared)
}

async fn metrics(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, Problem> {
    let families = st.collect_all().await.map_err(Problem::internal)?;
    Ok(exposition(&st, &families, &headers))
}

async fn collect_one(
    State(st): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let s = st.clone();
    let n = name.clone();
    let found = tokio::task::spawn_blocking(move || {
        let mut sink = Sink::default();
        let mut c = s
            .collectors
            .lock()
            .map_err(|_| crate::Error::Internal("collectors lock poisoned".into()))?;
        if !c.enabled(&n) {
            return Ok(None);
        }
        c.collect_one(&n, &mut sink)?;
        Ok::<_, crate::Error>(Some(sink.into_sorted()))
    })
    .await
    .map_err(Problem::internal)?
    .map_err(Problem::internal)?;
    match found {
        Some(families) => Ok(exposition(&st, &families, &headers)),
        None => {
            let why = if NAMES.contains(&name.as_str()) {
                "is disabled in this agent's configuration"
            } else {
                "is unknown"
            };
            Err(Problem::bad_data(
                StatusCode::NOT_FOUND,
                format!(
                    "collector {name:?} {why}; known collectors are {}, processes",
                    NAMES.join(", ")
                ),
            ))
        }
    }
}

/// Writes families as exposition text with the identity labels, gzipped if accepted.
fn exposition(st: &Shared, families: &[crate::collector::Family], headers: &HeaderMap) -> Response {
    let mut text = String::with_capacity(64 << 10);
    crate::exposition::write(families, &st.identity.labels(), &mut text);
    let ct = (header::CONTENT_TYPE, HeaderValue::from_static(crate::exposition::CONTENT_TYPE));
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    if accepts_gzip(headers) {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(text.len() / 6),
            flate2::Compression::default(),
        );
        if gz.write_all(text.as_bytes()).is_ok()
            && let Ok(body) = gz.finish()
        {
            let enc = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            return ([ct, vary, enc], body).into_response();
        }
    }
    ([ct, vary], text).into_response()
}

/// Whether `Accept-Encoding` lists gzip with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f64>().is_ok_and(|q| q == 0.0))
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
    })
}

#[derive(Debug, serde::Deserialize)]
struct TopParams {
    top: Option<String>,
}

async fn processes(
    State(st): State<Arc<Shared>>,
    Query(p): Query<TopParams>,
) -> Result<Response, Problem> {
    let n = match p.top.as_deref() {
        None => DEFAULT_TOP,
        Some(t) => t.parse().ok().filter(|n| (1..=MAX_TOP).contains(n)).ok_or_else(|| {
            Problem::bad_data(
                StatusCode::BAD_REQUEST,
                format!("top: {t:?} is not a whole number in 1..={MAX_TOP}"),
            )
        })?,
    };
    let proc = st.paths.proc.clone();
    let before = tokio::task::spawn_blocking(move || crate::process::snapshot(&proc))
        .await
        .map_err(Problem::internal)?;
    let window = st.process_window;
    tokio::time::sleep(window).await;
    let (proc, root) = (st.paths.proc.clone(), st.paths.root.clone());
    let list = tokio::task::spawn_blocking(move || {
        let after = crate::process::snapshot(&proc);
        let ranked = crate::process::rank(&before, after, window.as_secs_f64(), n);
        crate::process::describe(ranked, &proc, &root)
    })
    .await
    .map_err(Problem::internal)?;
    Ok(axum::Json(json!({ "status": "success", "data": list })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, GZIP;q=0.5"));
        assert!(h("*"));
        assert!(!h("gzip;q=0"));
        assert!(!h("identity"));
        assert!(!h("x-gzipped"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
