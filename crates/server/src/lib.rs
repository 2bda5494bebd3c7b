//! Ocelli's server: configuration, the storage engine's lifecycle, and the HTTP endpoints.
//!
//! For now it serves health and readiness, the storage engine's status, an admin flush, and
//! ingest (remote_write, Influx line protocol, exposition text, JSON lines, OTLP/HTTP metrics
//! and the Pushgateway API; `docs/api.md`), PromQL over the Prometheus query API ([`query`]) and
//! the server's own metrics ([`metrics`]). The engine is synchronous, so every call into it
//! runs on tokio's blocking pool.
//! This crate owns the mapping from errors to HTTP statuses ([`error`]).
//!
//! Server-pull scraping of Prometheus targets is [`scrape`].
//! The agent registry (agents, their mode, health and on-demand calls) is [`registry`].
//! CB-Dragonfly-style REST views over the stored series, and the OpenAPI document, are [`views`].
//! Ingest aggregation (`[[aggregation]]` rules) is [`aggregate`].
//! Sending everything stored on to remote_write receivers (`[[remote_write]]`) is
//! [`remote_write`].
//! The scale-out roles (collector on RabbitMQ shard queues, query node over stores) are
//! [`cluster`].

pub mod aggregate;
pub mod alerting;
pub mod cluster;
pub mod config;
pub(crate) mod embedded;
pub mod error;
pub mod http;
pub mod metrics;
pub mod query;
pub mod registry;
pub mod remote_write;
pub mod scrape;
pub mod views;

pub use config::Config;
pub use error::{Error, Result};
pub use http::{Server, serve};
