//! Ocelli's server: the process that wires the storage engine, the query engine and the
//! domain crates together, and serves them over HTTP.
//!
//! It owns the configuration file ([`config`], composed of each domain's section), start-up,
//! reload and shutdown ([`http`]: [`Server`]), the ingest endpoints (`ingest`: remote_write,
//! Influx line protocol, exposition text, JSON lines, OTLP/HTTP metrics and the Pushgateway
//! API; `docs/api.md`), remote_read, the engine's status and flush (`admin`), the Prometheus
//! query API ([`query`], `exemplars`), Prometheus' status endpoints and the JSON 404 of
//! unknown API paths (`status`), the server's own metrics ([`metrics`], with `requests` counting every
//! route),
//! CB-Dragonfly-style REST views over the stored series and the OpenAPI document ([`views`]),
//! and sending what is stored on to remote_write receivers ([`remote_write`]). The engine is
//! synchronous, so every call into it runs on tokio's blocking pool.
//!
//! The domains are crates of their own, re-exported here under their old paths:
//! [`alerting`] (rules, the notifier, alarms, history), [`scrape`] (server pull),
//! [`registry`] (agents), [`cluster`] (the collector and query roles) and [`aggregate`]
//! (ingest aggregation, in `ocelli-ingest`). Each serves its own routes through a
//! `router(...)` over its own state; this crate merges them. Errors map to HTTP statuses in one
//! place, `ocelli_http::error`, re-exported as [`Error`].
//!
//! Architecture invariant: dependencies point down from here; no domain crate depends on this
//! one or names its `AppState`.

mod admin;
pub mod auth;
pub mod config;
mod exemplars;
pub mod http;
mod ingest;
pub mod metrics;
pub mod query;
mod remote_read;
pub mod remote_write;
mod requests;
mod state;
mod status;
pub mod views;

pub use ocelli_alerting as alerting;
pub use ocelli_cluster as cluster;
pub use ocelli_http::error;
pub use ocelli_ingest::aggregate;
pub use ocelli_registry as registry;
pub use ocelli_scrape as scrape;

pub use config::Config;
pub use error::{Error, Result};
pub use http::{Server, serve};
