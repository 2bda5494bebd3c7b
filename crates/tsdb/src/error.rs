//! The storage engine's error type. Every variant says what was wrong and where (file, offset,
//! block), so that a log line alone is enough to find the damage.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {0} is locked by another process")]
    Locked(PathBuf),
    #[error("corrupt {what} in {path} at offset {offset}: {detail}")]
    Corrupt { what: &'static str, path: PathBuf, offset: u64, detail: String },
    #[error("invalid block {path}: {detail}")]
    InvalidBlock { path: PathBuf, detail: String },
    #[error("query exceeds the limit of {limit} {what}")]
    LimitExceeded { what: &'static str, limit: usize },
    #[error("invalid series: {0}")]
    InvalidSeries(String),
    /// A label set of a raw batch ([`crate::Db::append_raw`]) failed validation.
    #[error("series {index}: {source}")]
    InvalidLabels {
        index: usize,
        #[source]
        source: ocelli_model::Error,
    },
    #[error("invalid time range: start {mint} is after end {maxt}")]
    InvalidTimeRange { mint: i64, maxt: i64 },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("the storage engine is closed")]
    Closed,
    #[error("write-ahead log failed earlier and refuses writes until restart: {0}")]
    WalPoisoned(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn io_ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { op, path: path.into(), source })
    }
}
