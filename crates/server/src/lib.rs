//! Ocelli's server: configuration, the storage engine's lifecycle, and the HTTP endpoints.
//!
//! For now it serves health and readiness, the storage engine's status, an admin flush, and
//! Prometheus remote_write ingest; PromQL and the other ingest formats come with
//! later work. The engine is synchronous, so every call into it runs on tokio's blocking pool.
//! This crate owns the mapping from errors to HTTP statuses ([`error`]).
//!
//! Server-pull scraping of Prometheus targets is [`scrape`].

pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod query;
pub mod scrape;

pub use config::Config;
pub use error::{Error, Result};
pub use http::{Server, serve};
