//! Push ingest endpoints beyond the first three formats: `POST /api/v1/import` (JSON lines,
//! [`ocelli_wire::json`]) and `POST /opentelemetry/v1/metrics` (OTLP/HTTP metrics,
//! [`ocelli_wire::otlp`]; also served on `/v1/metrics`, the OTLP default path).
//!
//! Handlers here follow the shape of the ones in [`super`]: the body is read under the
//! configured limit, decompressed under the decompressed-size limit, decoded whole, and only
//! then stored as one batch, so a malformed request stores nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, blocking, ingest_text, read_body, request_body, store};
use crate::{Error, Result};

/// `POST /api/v1/import`: VictoriaMetrics' JSON-lines import format, plain or gzip.
pub(super) async fn import_json(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    use ocelli_wire::json;
    ingest_text(st, headers, body, |text, max_body_bytes| {
        json::decode(text, &json::Limits { max_body_bytes, ..json::Limits::default() })
    })
    .await
}

/// `POST /opentelemetry/v1/metrics` (and `/v1/metrics`): OTLP/HTTP metrics as protobuf, plain
/// or gzip. Answers 200 with an `ExportMetricsServiceResponse` (carrying `partial_success` when
/// points were dropped); errors are a `google.rpc.Status` with the message, as OTLP/HTTP
/// specifies, except a body that is not protobuf, which gets 415 in the usual JSON shape.
pub(super) async fn otlp_metrics(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = otlp_content_type(&headers) {
        return e.into_response();
    }
    match otlp_store(st, headers, body).await {
        Ok(response) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF)], response).into_response()
        }
        Err(e) => {
            let (code, _) = e.status();
            if code.is_server_error() {
                tracing::error!(error = %e, "OTLP request failed");
            }
            let grpc = match code {
                StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
                c if c.is_client_error() => 3,         // INVALID_ARGUMENT
                _ => 13,                               // INTERNAL
            };
            let body = ocelli_wire::otlp::error_status(grpc, &e.to_string());
            (code, [(header::CONTENT_TYPE, PROTOBUF)], body).into_response()
        }
    }
}

const PROTOBUF: &str = "application/x-protobuf";

/// Accepts protobuf (or no `Content-Type`); refuses OTLP/JSON and anything else with a 415.
fn otlp_content_type(headers: &HeaderMap) -> Result<()> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("(not text)");
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(()),
        "application/json" => Err(Error::UnsupportedMediaType(
            "OTLP/JSON is not supported: send OTLP/HTTP metrics as protobuf \
             (Content-Type: application/x-protobuf)"
                .to_owned(),
        )),
        _ => Err(Error::UnsupportedMediaType(format!(
            "unsupported Content-Type {ct:?}: send OTLP/HTTP metrics as protobuf \
             (Content-Type: application/x-protobuf)"
        ))),
    }
}

/// Decodes and stores one OTLP request; returns the encoded response.
async fn otlp_store(st: AppState, headers: HeaderMap, body: Body) -> Result<Vec<u8>> {
    use ocelli_wire::otlp;
    let body = read_body(body, st.limits.max_body_bytes).await?;
    blocking(move || {
        let max = st.limits.max_decompressed_bytes;
        let proto = request_body(&headers, body, max)?;
        let limits = otlp::Limits { max_body_bytes: max, ..otlp::Limits::default() };
        let decoded = otlp::decode(&proto, &limits).map_err(|e| Error::BadData(e.to_string()))?;
        if decoded.rejected_data_points > 0 {
            tracing::warn!(
                points = decoded.rejected_data_points,
                reasons = %decoded.rejections.join("; "),
                "OTLP data points dropped"
            );
        }
        let response = decoded.response();
        store(&st, decoded.series)?;
        Ok(response)
    })
    .await
}
