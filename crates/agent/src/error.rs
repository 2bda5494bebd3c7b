//! The agent's error type. Messages name what was wrong and where (the file, the field, the
//! address); they are logged or, for the agent's own HTTP endpoints, sent as the Prometheus-shaped
//! error body.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value that cannot be used (from a file, a flag or the code).
    #[error("{0}")]
    Config(String),
    /// The configuration file could not be read or parsed.
    #[error("config {path}: {detail}")]
    ConfigFile { path: PathBuf, detail: String },
    /// A file under /proc, /sys or the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A kernel file whose content is not what the collector expects.
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Talking to the server failed (connect, send, read, timeout).
    #[error("{0}")]
    Http(String),
    /// Installing or driving the systemd service failed.
    #[error("{0}")]
    Install(String),
    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ocelli_spool::Error> for Error {
    fn from(e: ocelli_spool::Error) -> Error {
        Error::Io { path: e.path, source: e.source }
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, detail: impl Into<String>) -> Error {
        Error::Parse { path: path.into(), detail: detail.into() }
    }
}
