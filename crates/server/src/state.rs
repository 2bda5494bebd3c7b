//! What the server's own handlers share ([`AppState`]): storage, the query engine, the ingest
//! limits and the handles of the domains that the query API, `/metrics`, the views and reloads
//! read. The domain crates' routers never see it; each has its own state.

use std::sync::Arc;

use ocelli_tsdb::Db;

#[derive(Clone)]
pub(crate) struct AppState {
    pub db: Arc<Db>,
    pub limits: ocelli_wire::remote_write::Limits,
    /// The ingest time bounds and the Pushgateway refresh interval.
    pub ingest: crate::config::IngestOptions,
    pub engine: Arc<ocelli_promql::Engine>,
    pub metadata: Arc<ocelli_storage::MetadataStore>,
    /// Recent exemplars from remote_write 2.0 and OTLP (`/api/v1/query_exemplars`).
    pub exemplars: Arc<ocelli_storage::ExemplarStore>,
    /// The pushed Pushgateway groups, refreshed as if scraped.
    pub push_groups: Arc<crate::ingest::pushgateway::Groups>,
    /// Field types and created databases of the Influx endpoints.
    pub influx: Arc<crate::ingest::influx::InfluxState>,
    /// When the server started, in milliseconds (`/api/v1/status/runtimeinfo`).
    pub started_ms: i64,
    /// The configuration the server runs (`/api/v1/status/config`, `/api/v1/status/flags`).
    pub config: Arc<crate::Config>,
    pub requests: Arc<crate::requests::RequestMetrics>,
    pub scrape: crate::scrape::Scraper,
    pub registry: crate::registry::Registry,
    pub rules: crate::alerting::rules::RuleManager,
    pub notifier: crate::alerting::notify::Notifier,
    pub aggregator: Arc<crate::aggregate::Aggregator>,
    /// remote_write out, when `[[remote_write]]` names receivers.
    pub forwarder: Option<Arc<crate::remote_write::Forwarder>>,
    /// The checked `[cluster]`: the role, and for the query role the stores to read.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The collector role's counters and shard view.
    pub collector: Option<Arc<crate::cluster::collector::CollectorStats>>,
}
