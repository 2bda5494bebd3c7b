//! `GET`/`POST /api/v1/query_exemplars`: the exemplars of the series a PromQL expression
//! selects, in `[start, end]`, in Prometheus' JSON shape (`seriesLabels`, `exemplars` with
//! `labels`, `value` as a string and `timestamp` in seconds). They come from the in-memory
//! [`ocelli_storage::ExemplarStore`], which remote_write 2.0 and OTLP writes fill; with none
//! stored the answer is an empty list, as Prometheus answers without exemplar storage.

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ocelli_model::time::{MAX_TIME_MS, MIN_TIME_MS};
use serde_json::{Map, Value, json};

use crate::query::Params;
use crate::state::AppState;
use crate::{Error, Result};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/query_exemplars", get(query_exemplars).post(query_exemplars))
}

fn labels_json(l: &ocelli_model::Labels) -> Value {
    Value::Object(l.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect())
}

async fn query_exemplars(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?.for_caller(&caller);
    let start = p.time("start", MIN_TIME_MS)?;
    let end = p.time("end", MAX_TIME_MS)?;
    if end < start {
        return Err(Error::BadData(
            "invalid parameter \"end\": end timestamp must not be before start timestamp".into(),
        ));
    }
    let query = p.get("query").unwrap_or("");
    let expr = ocelli_promql::parse(query).map_err(crate::query::query_error)?;
    let mut selectors =
        ocelli_promql::expr_selectors(&expr).map_err(|e| Error::BadData(e.to_string()))?;
    if let Some(ns) = p.tenant() {
        for s in &mut selectors {
            *s = ocelli_storage::scope_matchers(s, ns);
        }
    }
    let found = st.exemplars.query(&selectors, start, end);
    let data: Vec<Value> = found
        .iter()
        .map(|(series, list)| {
            let exemplars: Vec<Value> = list
                .iter()
                .map(|e| {
                    let mut m = Map::new();
                    m.insert("labels".into(), labels_json(&e.labels));
                    m.insert("value".into(), Value::String(ocelli_model::format_value(e.value)));
                    m.insert("timestamp".into(), json!(e.timestamp as f64 / 1000.0));
                    Value::Object(m)
                })
                .collect();
            json!({ "seriesLabels": labels_json(series), "exemplars": exemplars })
        })
        .collect();
    Ok(axum::Json(json!({ "status": "success", "data": data })).into_response())
}
