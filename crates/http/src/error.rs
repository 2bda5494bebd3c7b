//! The API's error type, shared by every router of the server and its domains, and its one mapping to an HTTP status plus a Prometheus-style
//! `errorType` (`bad_data`, `not_found`, `unauthorized`, `forbidden`, `execution`, `timeout`, `unavailable`, `internal`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {detail}")]
    Config { path: String, detail: String },
    #[error("storage: {0}")]
    Storage(#[from] ocelli_tsdb::Error),
    #[error("{0}")]
    BadData(String),
    /// A request body in a format the endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A request body over the configured size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
    /// A PromQL query that failed; carries its own error type.
    #[error("{0}")]
    Query(ocelli_promql::Error),
    /// The thing the request names does not exist (an unknown agent).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (an alarm id already taken).
    #[error("{0}")]
    Conflict(String),
    /// A peer the server called for the request failed (an agent unreachable on demand).
    #[error("{0}")]
    BadGateway(String),
    /// A peer the server called for the request did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// A part of the server is closed or not started (the registry while shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// No credential, or one that does not check out (unknown, expired, revoked, malformed).
    #[error("{0}")]
    Unauthorized(String),
    /// A valid credential that may not do this (a read token writing, another namespace).
    #[error("{0}")]
    Forbidden(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// HTTP status and Prometheus `errorType`.
    pub fn status(&self) -> (StatusCode, &'static str) {
        use ocelli_tsdb::Error as S;
        match self {
            Error::BadData(_) | Error::Config { .. } => (StatusCode::BAD_REQUEST, "bad_data"),
            Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "bad_data"),
            Error::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_data"),
            Error::Storage(S::InvalidSeries(_) | S::InvalidTimeRange { .. }) => {
                (StatusCode::BAD_REQUEST, "bad_data")
            }
            Error::Storage(S::LimitExceeded { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "execution")
            }
            Error::Storage(S::Closed | S::WalPoisoned(_)) | Error::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::Conflict(_) => (StatusCode::CONFLICT, "bad_data"),
            Error::BadGateway(_) => (StatusCode::BAD_GATEWAY, "unavailable"),
            Error::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Error::Query(e) => match e.error_type() {
                "bad_data" => (StatusCode::BAD_REQUEST, "bad_data"),
                "execution" => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
                "timeout" => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
                "unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            Error::Storage(_) | Error::Listen { .. } | Error::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (code, kind) = self.status();
        // a query past its timeout (often the one the client asked for) is the client's
        // limit working, not a fault of the server
        if kind == "timeout" {
            tracing::info!(error = %self, "request timed out");
        } else if code.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body =
            serde_json::json!({ "status": "error", "errorType": kind, "error": self.to_string() });
        (code, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocelli_promql::StorageError;

    #[test]
    fn a_storage_limit_through_a_query_is_the_same_422_as_without() {
        let direct =
            Error::Storage(ocelli_tsdb::Error::LimitExceeded { what: "samples", limit: 1 });
        assert_eq!(direct.status(), (StatusCode::UNPROCESSABLE_ENTITY, "execution"));
        let through = |e: StorageError| Error::Query(ocelli_promql::Error::Storage(e)).status();
        assert_eq!(
            through(StorageError::Limit("too many".into())),
            (StatusCode::UNPROCESSABLE_ENTITY, "execution")
        );
        assert_eq!(
            through(StorageError::BadData("x".into())),
            (StatusCode::BAD_REQUEST, "bad_data")
        );
        assert_eq!(
            through(StorageError::Unavailable("closed".into())),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(
            through(StorageError::Internal("x".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(
            Error::Query(ocelli_promql::Error::TooManySamples).status(),
            (StatusCode::UNPROCESSABLE_ENTITY, "execution")
        );
    }
}
