//! The ingest endpoints: `POST /api/v1/write` (Prometheus remote_write 1.0 and 2.0, by content
//! negotiation) and `POST /api/v1/import/prometheus` (exposition text, plain or gzip; samples
//! without a timestamp get the time of the request); the Influx endpoints are in [`influx`],
//! JSON-lines import and OTLP/HTTP metrics in [`push`], the Pushgateway-compatible API in
//! [`pushgateway`]. A request is decoded whole before anything is stored, so a malformed one
//! stores nothing; decoding and appending are `ocelli_ingest::append`'s, which the collector
//! role's AMQP consumers share. Samples outside the time bounds (`ocelli_ingest::bounds`) are
//! left out and the answer is a 400 that says how many and why; the rest is stored.

pub(crate) mod influx;
mod push;
pub(crate) mod pushgateway;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ocelli_http::{blocking, read_body, request_body};
use ocelli_ingest::append::{Stamp, Written, store_remote_write};
use ocelli_model::time::now_ms;
use ocelli_wire::remote_write::DecodedSeries;

use crate::state::AppState;
use crate::{Error, Result};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write))
        .route("/write", post(influx::write))
        .route("/ping", get(influx::ping).head(influx::ping))
        .route("/health", get(influx::health))
        .route("/query", get(influx::query).post(influx::query))
        .route("/api/v1/import/prometheus", post(import_prometheus))
        .route("/api/v2/write", post(influx::write))
        .route("/api/v1/import", post(push::import_json))
        .route("/opentelemetry/v1/metrics", post(push::otlp_metrics))
        .route("/v1/metrics", post(push::otlp_metrics))
        .route("/metrics/job/{*rest}", pushgateway::routes(false))
        .route("/metrics/job@base64/{*rest}", pushgateway::routes(true))
}

/// Appends decoded series as one all-or-nothing batch, through ingest aggregation, without the
/// samples outside the time bounds; refused samples make the answer a 400 that says so.
fn store(st: &AppState, stamp: &Stamp, series: Vec<DecodedSeries>) -> Result<Written> {
    ocelli_ingest::append::store_decoded(&st.db, &st.aggregator, &st.ingest.bounds, stamp, series)?
        .into_result(&st.ingest.bounds)
}

/// `POST /api/v1/write`: Prometheus remote_write, 1.0 or 2.0 by the `Content-Type` as the 2.0
/// specification negotiates it (415 for a `proto` or an encoding not spoken here). Answers 204
/// with the `X-Prometheus-Remote-Write-*-Written` counts; samples outside the time bounds make
/// it a 400 saying what was stored and what was not.
async fn remote_write(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let stamp = caller.stamp();
    use ocelli_wire::remote_write_v2::{self as v2, Version};
    let text = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok());
    let version = v2::negotiate(text(header::CONTENT_TYPE)).map_err(Error::UnsupportedMediaType)?;
    v2::check_encoding(text(header::CONTENT_ENCODING)).map_err(Error::UnsupportedMediaType)?;
    let body = read_body(body, st.limits.max_body_bytes).await?;
    let bounds = st.ingest.bounds;
    let written = blocking(move || match version {
        Version::V1 => store_remote_write(
            &st.db,
            &st.aggregator,
            &st.limits,
            &st.ingest.bounds,
            &stamp,
            &body,
            &mut |m, e| {
                st.metadata.record(m);
                st.exemplars.record(e);
            },
        )
        .map(|w| (w, w.histograms, w.exemplars)),
        Version::V2 => {
            let d = v2::decode(&body, &st.limits).map_err(|e| Error::BadData(e.to_string()))?;
            let (histograms, exemplars) = (d.histograms, d.exemplars_count);
            let w = ocelli_ingest::append::store_decoded(
                &st.db,
                &st.aggregator,
                &st.ingest.bounds,
                &stamp,
                d.series,
            )?;
            st.metadata.record(&d.metadata);
            st.exemplars.record(&d.exemplars);
            // histograms are stored as classic series: the header counts float samples, and
            // with samples refused (a 400) the stored ones among them
            let w = Written { samples: d.samples.saturating_sub(w.refused.total()), ..w };
            Ok((w, histograms, exemplars))
        }
    })
    .await?;
    let (written, histograms, exemplars) = written;
    let counts = [
        ("x-prometheus-remote-write-samples-written", written.samples),
        ("x-prometheus-remote-write-histograms-written", histograms),
        ("x-prometheus-remote-write-exemplars-written", exemplars),
    ];
    let mut response = match written.into_result(&bounds) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    for (name, n) in counts {
        response.headers_mut().insert(name, axum::http::HeaderValue::from(n));
    }
    Ok(response)
}

async fn import_prometheus(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    use ocelli_wire::exposition;
    let metadata = st.metadata.clone();
    ingest_text(st, caller.stamp(), headers, body, move |text, max_body_bytes| {
        let limits = exposition::Limits { max_body_bytes, ..exposition::Limits::default() };
        let parsed = exposition::decode(text, now_ms(), &limits)?;
        metadata.record(&parsed.metadata);
        Ok(parsed.series)
    })
    .await
}

/// The path of every text ingest endpoint: reads the body under the size limit, decompresses
/// it under the decompressed-size limit, decodes it with `decode` (given that limit) and stores
/// the result as one batch. Answers 204.
async fn ingest_text(
    st: AppState,
    stamp: Stamp,
    headers: HeaderMap,
    body: Body,
    decode: impl FnOnce(&[u8], usize) -> ocelli_wire::Result<Vec<DecodedSeries>> + Send + 'static,
) -> Result<StatusCode> {
    let body = read_body(body, st.limits.max_body_bytes).await?;
    blocking(move || {
        let max = st.limits.max_decompressed_bytes;
        let text = request_body(&headers, body, max)?;
        let series = decode(&text, max).map_err(|e| Error::BadData(e.to_string()))?;
        store(&st, &stamp, series).map(|_| ())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
