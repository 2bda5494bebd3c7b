//! The HTTP plumbing that the server and its domain crates (alerting, registry, scrape,
//! cluster, ingest) share, so that none of them needs the server:
//! - [`Error`] and its one mapping to an HTTP status and a Prometheus `errorType`
//!   ([`error`]); every router answers errors through it. The domain crates use this enum
//!   instead of one `error.rs` each (STYLE's rule): their errors all end as an API answer, and
//!   one enum keeps one mapping;
//! - reading request bodies under a size limit, gzip included ([`body`]), and running the
//!   synchronous storage engine on tokio's blocking pool ([`blocking`]);
//! - the outbound HTTP client that the notifier, remote_write, the query fan-out and etcd use
//!   ([`client`]);
//! - the two file helpers the domains share: their small redb stores ([`embedded`]) and the
//!   glob patterns of rule and discovery files ([`files`]);
//! - [`Reload`], how the server hands a domain the part of its config file it reads again on
//!   reload.
//!
//! Architecture invariant: nothing here knows a domain. It depends on the storage and query
//! engines' error types only, to map them to statuses.

pub mod body;
pub mod client;
pub mod embedded;
pub mod error;
pub mod files;

use std::sync::Arc;

pub use body::{read_body, request_body};
pub use error::{Error, Result};

/// Runs `f` on tokio's blocking pool (the storage engine and the redb stores are synchronous);
/// a panic in `f` is an internal error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(e.to_string()))?
}

/// Reads the server's config file again and returns one domain's part of it, checked. The
/// server builds one per domain that reloads (scrape jobs, rule files, the notifier); `None`
/// where the server was started without a config file, which leaves nothing to reload.
pub type Reload<T> = Option<Arc<dyn Fn() -> Result<T> + Send + Sync>>;

/// The error a reload gives where the server was started without a config file.
pub fn nothing_to_reload() -> Error {
    Error::BadData(
        "the server was started without a config file (--config): nothing to reload".into(),
    )
}
