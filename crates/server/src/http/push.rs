//! Push ingest endpoints beyond the first three formats: `POST /api/v1/import` (JSON lines,
//! [`ocelli_wire::json`]).
//!
//! Handlers here follow the shape of the ones in [`super`]: the body is read under the
//! configured limit, decompressed under the decompressed-size limit, decoded whole, and only
//! then stored as one batch, so a malformed request stores nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;

use super::{AppState, ingest_text};
use crate::Result;

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
