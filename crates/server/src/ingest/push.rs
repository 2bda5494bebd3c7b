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
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    use ocelli_wire::json;
    ingest_text(st, caller.stamp(), headers, body, |text, max_body_bytes| {
        json::decode(text, &json::Limits { max_body_bytes, ..json::Limits::default() })
    })
    .await
}

/// `POST /opentelemetry/v1/metrics` (and `/v1/metrics`): OTLP/HTTP metrics as protobuf or JSON
/// (`Content-Type: application/json`), plain or gzip. Answers 200 with an
/// `ExportMetricsServiceResponse` in the request's encoding (carrying `partial_success` when
/// points were dropped); errors are a `google.rpc.Status` in the request's encoding with the
/// message, as OTLP/HTTP specifies (protobuf for a request of another content type, which is
/// a 415).
pub(super) async fn otlp_metrics(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match otlp_encoding(&headers) {
        Ok(e) => e,
        Err(e) => return otlp_error(e, Encoding::Protobuf),
    };
    match otlp_store(st, caller.stamp(), headers, body, encoding).await {
        Ok(response) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], response)
                .into_response()
        }
        Err(e) => otlp_error(e, encoding),
    }
}

/// An OTLP request's encoding, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// An error as OTLP/HTTP answers it: a `google.rpc.Status` in the request's encoding.
fn otlp_error(e: Error, encoding: Encoding) -> Response {
    let (code, _) = e.status();
    if code.is_server_error() {
        tracing::error!(error = %e, "OTLP request failed");
    }
    let grpc = match code {
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        c if c.is_client_error() => 3,         // INVALID_ARGUMENT
        _ => 13,                               // INTERNAL
    };
    let body = match encoding {
        Encoding::Protobuf => ocelli_wire::otlp::error_status(grpc, &e.to_string()),
        Encoding::Json => ocelli_wire::otlp::error_status_json(grpc, &e.to_string()),
    };
    (code, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

/// Protobuf (`application/x-protobuf`, `application/protobuf`, or no `Content-Type`) or JSON
/// (`application/json`); anything else is a 415.
fn otlp_encoding(headers: &HeaderMap) -> Result<Encoding> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Encoding::Protobuf);
    };
    let ct = ct.to_str().unwrap_or("(not text)");
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(Error::UnsupportedMediaType(format!(
            "unsupported Content-Type {ct:?}: send OTLP/HTTP metrics as protobuf \
             (Content-Type: application/x-protobuf) or JSON (Content-Type: application/json)"
        ))),
    }
}

/// Decodes and stores one OTLP request; returns the encoded response.
async fn otlp_store(
    st: AppState,
    stamp: super::Stamp,
    headers: HeaderMap,
    body: Body,
    encoding: Encoding,
) -> Result<Vec<u8>> {
    use ocelli_wire::otlp;
    let body = read_body(body, st.limits.max_body_bytes).await?;
    blocking(move || {
        let max = st.limits.max_decompressed_bytes;
        let raw = request_body(&headers, body, max)?;
        let limits = otlp::Limits { max_body_bytes: max, ..otlp::Limits::default() };
        let decoded = match encoding {
            Encoding::Protobuf => otlp::decode(&raw, &limits),
            Encoding::Json => otlp::decode_json(&raw, &limits),
        }
        .map_err(|e| Error::BadData(e.to_string()))?;
        if decoded.rejected_data_points > 0 {
            tracing::warn!(
                points = decoded.rejected_data_points,
                reasons = %decoded.rejections.join("; "),
                "OTLP data points dropped"
            );
        }
        let response = match encoding {
            Encoding::Protobuf => decoded.response(),
            Encoding::Json => decoded.response_json(),
        };
        st.metadata.record(&decoded.metadata);
        st.exemplars.record(&decoded.exemplars);
        store(&st, &stamp, decoded.series)?;
        Ok(response)
    })
    .await
}
