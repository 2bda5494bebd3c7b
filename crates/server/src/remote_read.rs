//! `POST /api/v1/read`: Prometheus remote_read over the local storage, `SAMPLES` answers.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use ocelli_http::{blocking, read_body};

use crate::state::AppState;
use crate::{Error, Result};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/read", post(remote_read))
}

/// `POST /api/v1/read`: Prometheus remote_read, `SAMPLES` answers. The queries of one request
/// share the query engine's sample limit (`[query] max_samples`); past it the request gets a
/// 422 naming the limit, as a PromQL query would.
async fn remote_read(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    body: Body,
) -> Result<impl IntoResponse> {
    let body = read_body(body, st.limits.max_body_bytes).await?;
    let tenant = caller.namespace().map(|ns| ocelli_model::Matcher::equal("ns", ns));
    let max_samples = st.engine.options().max_samples;
    let answer = blocking(move || {
        use ocelli_wire::remote_read as rr;
        let queries =
            rr::decode_request(&body, &st.limits).map_err(|e| Error::BadData(e.to_string()))?;
        let mut left = max_samples;
        let mut results = Vec::with_capacity(queries.len());
        for q in &queries {
            let limits = ocelli_tsdb::Limits { max_series: usize::MAX, max_samples: left };
            let mut series = Vec::new();
            let matchers = match &tenant {
                Some(ns) => ocelli_storage::scope_matchers(&q.matchers, ns),
                None => q.matchers.clone(),
            };
            st.db.select_each(&matchers, q.start_ms, q.end_ms, limits, &mut |l, s| {
                series.push((l, s));
                true
            })?;
            left -= series.iter().map(|(_, s)| s.len()).sum::<usize>();
            results.push(series);
        }
        rr::encode_response(&results).map_err(|e| Error::Internal(e.to_string()))
    })
    .await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-protobuf"),
            (axum::http::header::CONTENT_ENCODING, "snappy"),
        ],
        answer,
    ))
}
