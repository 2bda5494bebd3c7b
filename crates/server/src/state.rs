//! What the server's own handlers share ([`AppState`]): storage, the query engine, the ingest
//! limits and the handles of the domains that the query API, `/metrics`, the views and reloads
//! read. The domain crates' routers never see it; each has its own state.

use std::sync::Arc;

use ocelli_tsdb::Db;

#[derive(Clone)]
pub(crate) struct AppState {
    pub db: Arc<Db>,
    pub limits: ocelli_wire::remote_write::Limits,
    pub engine: Arc<ocelli_promql::Engine>,
    pub metadata: Arc<ocelli_storage::MetadataStore>,
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
