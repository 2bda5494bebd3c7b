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
    /// The storage failed (`internal`).
    #[error("storage: {0}")]
    Storage(String),
}

impl Error {
    /// The `errorType` of the Prometheus HTTP API for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) | Error::BadData(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples => "execution",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) => "internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
