//! Query errors, each with the Prometheus HTTP API error type it maps to.

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query text does not parse (HTTP API: `bad_data`).
    #[error("{0}")]
    Parse(String),
    /// A parameter or the query is invalid in a way found before evaluation (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed, e.g. many-to-many matching (`execution`).
    #[error("{0}")]
    Execution(String),
    /// The query would load or hold more samples than allowed (`execution`).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its deadline (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The storage could not answer a selection; its kind decides the error type.
    #[error("storage: {0}")]
    Storage(StorageError),
}

/// Why storage could not answer a selection ([`crate::Storage`]), typed so that the HTTP API
/// answers a storage limit as it answers the engine's own (422), not as an internal error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// A limit on what one query may read (series, samples) was reached (`execution`).
    #[error("{0}")]
    Limit(String),
    /// The selection is invalid for the storage, e.g. its time range (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The storage is closed or cannot be read now (`unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (`internal`).
    #[error("{0}")]
    Internal(String),
}

impl From<String> for StorageError {
    /// An untyped failure is internal.
    fn from(s: String) -> StorageError {
        StorageError::Internal(s)
    }
}

impl Error {
    /// The `errorType` of the Prometheus HTTP API for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) | Error::BadData(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples => "execution",
            Error::Timeout(_) => "timeout",
            Error::Storage(StorageError::Limit(_)) => "execution",
            Error::Storage(StorageError::BadData(_)) => "bad_data",
            Error::Storage(StorageError::Unavailable(_)) => "unavailable",
            Error::Storage(StorageError::Internal(_)) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
