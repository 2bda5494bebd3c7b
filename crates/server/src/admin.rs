//! The storage engine's figures and maintenance over HTTP: `GET /api/v1/status/tsdb` and
//! `POST /api/v1/admin/flush` (cut the head into blocks and compact; used by benchmarks and
//! before backups).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use ocelli_http::blocking;
use serde_json::json;

use crate::Result;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/admin/flush", post(flush))
}

async fn tsdb_status(State(st): State<AppState>) -> Result<impl IntoResponse> {
    let s = blocking(move || Ok(st.db.stats())).await?;
    Ok(axum::Json(json!({
        "status": "success",
        "data": {
            "headSeries": s.head_series,
            "headSamples": s.head_samples,
            "headBytes": s.head_bytes,
            "frozenHeads": s.frozen_heads,
            "blocks": s.blocks,
            "blockSamples": s.block_samples,
            "blockBytes": s.block_bytes,
            "walBytes": s.wal_bytes,
            "minTime": s.min_t,
            "maxTime": s.max_t,
        }
    })))
}

async fn flush(State(st): State<AppState>) -> Result<impl IntoResponse> {
    blocking(move || {
        st.db.flush()?;
        st.db.compact()?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
