//! The ingest endpoints: `POST /api/v1/write` (Prometheus remote_write 1.0), `POST /write` /
//! `POST /api/v2/write` (Influx line protocol, plain or gzip, with `precision` and
//! `db`/`bucket`), and `POST /api/v1/import/prometheus` (exposition text, plain or gzip;
//! samples without a timestamp get the time of the request); JSON-lines import and OTLP/HTTP
//! metrics are in [`push`], the Pushgateway-compatible API in [`pushgateway`]. A request is
//! decoded whole before anything is stored, so a malformed one stores nothing; decoding and
//! appending are `ocelli_ingest::append`'s, which the collector role's AMQP consumers share.

mod push;
mod pushgateway;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use ocelli_http::{blocking, read_body, request_body};
use ocelli_ingest::append::store_remote_write;
use ocelli_model::time::now_ms;
use ocelli_wire::remote_write::DecodedSeries;

use crate::state::AppState;
use crate::{Error, Result};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/write", post(remote_write))
        .route("/write", post(influx_write))
        .route("/api/v1/import/prometheus", post(import_prometheus))
        .route("/api/v2/write", post(influx_write))
        .route("/api/v1/import", post(push::import_json))
        .route("/opentelemetry/v1/metrics", post(push::otlp_metrics))
        .route("/v1/metrics", post(push::otlp_metrics))
        .route("/metrics/job/{*rest}", pushgateway::routes(false))
        .route("/metrics/job@base64/{*rest}", pushgateway::routes(true))
}

/// Appends decoded series as one all-or-nothing batch, through ingest aggregation.
fn store(st: &AppState, series: Vec<DecodedSeries>) -> Result<()> {
    ocelli_ingest::append::store_decoded(&st.db, &st.aggregator, series)
}

async fn remote_write(State(st): State<AppState>, body: Body) -> Result<impl IntoResponse> {
    let body = read_body(body, st.limits.max_body_bytes).await?;
    blocking(move || store_remote_write(&st.db, &st.aggregator, &st.limits, &body)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of the Influx write endpoints (v1 `/write`, v2 `/api/v2/write`).
#[derive(Debug, serde::Deserialize)]
struct InfluxParams {
    precision: Option<String>,
    db: Option<String>,
    bucket: Option<String>,
}

async fn influx_write(
    State(st): State<AppState>,
    Query(params): Query<InfluxParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    use ocelli_wire::influx;
    let precision = match params.precision.as_deref() {
        None | Some("") => influx::Precision::Ns,
        Some(p) => influx::Precision::parse(p).map_err(|e| Error::BadData(e.to_string()))?,
    };
    let db = params.db.or(params.bucket);
    ingest_text(st, headers, body, move |text, max_body_bytes| {
        let limits = influx::Limits { max_body_bytes, ..influx::Limits::default() };
        influx::decode_with_db(text, precision, now_ms(), &limits, db.as_deref())
    })
    .await
}

async fn import_prometheus(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    use ocelli_wire::exposition;
    let metadata = st.metadata.clone();
    ingest_text(st, headers, body, move |text, max_body_bytes| {
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
    headers: HeaderMap,
    body: Body,
    decode: impl FnOnce(&[u8], usize) -> ocelli_wire::Result<Vec<DecodedSeries>> + Send + 'static,
) -> Result<StatusCode> {
    let body = read_body(body, st.limits.max_body_bytes).await?;
    blocking(move || {
        let max = st.limits.max_decompressed_bytes;
        let text = request_body(&headers, body, max)?;
        let series = decode(&text, max).map_err(|e| Error::BadData(e.to_string()))?;
        store(&st, series)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
