//! The process: [`Server::start`] opens storage, builds every domain (scrape manager, registry,
//! alerting, aggregation, remote_write out, the scale-out roles), merges their routers with the
//! server's own and serves them; reloads and shutdown in order.
//!
//! The server's own routes: `GET /-/healthy`, `GET /-/ready`, `POST /-/reload` (scrape jobs,
//! rule files and the notifier, each through its own [`ocelli_http::Reload`]), and those of
//! its handler modules: ingest (`crate::ingest`), remote_read (`crate::remote_read`), engine
//! status and flush (`crate::admin`), the query API ([`crate::query`]), `GET /metrics`
//! ([`crate::metrics`]) and the views ([`crate::views`]), all over the shared
//! `crate::state::AppState`. Each domain crate brings its own router over its own state: the
//! scrape manager's (`GET /api/v1/targets`), the registry's (`/api/v1/agents...`) and
//! alerting's (rules, alerts, silences, alarms, history). Every route's requests are counted
//! (`crate::requests`). Handler modules never import this one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use ocelli_tsdb::Db;
use tokio::net::TcpListener;

use crate::state::AppState;
use crate::{Config, Error, Result};
pub use ocelli_ingest::append::set_after_write;

/// A running server: its bound address and a handle to stop it.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    /// The scrape manager, for reloads.
    pub scrape: crate::scrape::Scraper,
    /// The rule manager: reloads, and the groups of threshold alarms.
    pub rules: crate::alerting::rules::RuleManager,
    /// The notifier: an `AlertSink` for the rule manager, routes for the threshold alarms.
    pub notifier: crate::alerting::notify::Notifier,
    /// The token store (also for making the local agent's credential).
    pub auth: Arc<crate::auth::Auth>,
    /// Whether the listen address speaks HTTPS.
    pub tls: bool,
    /// With `[tls] auto`: the CA file clients trust, and its fingerprint to pin.
    pub auto_ca: Option<AutoCa>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Server {
    /// Opens storage, binds the listen address and starts serving in the background; alerts
    /// and alert state changes go to the notifier and the alarm history.
    pub async fn start(config: Config) -> Result<Server> {
        Server::start_inner(config, None).await
    }

    /// [`Server::start`], sending the rule manager's alerts and state changes to `hooks` instead.
    pub async fn start_with(
        config: Config,
        hooks: crate::alerting::rules::Hooks,
    ) -> Result<Server> {
        Server::start_inner(config, Some(hooks)).await
    }

    async fn start_inner(
        config: Config,
        hooks: Option<crate::alerting::rules::Hooks>,
    ) -> Result<Server> {
        config
            .check_exposure()
            .map_err(|detail| Error::Config { path: "listen".into(), detail })?;
        config.check_tls().map_err(|detail| Error::Config { path: "tls".into(), detail })?;
        let cluster = Arc::new(
            config
                .cluster
                .compile(config.listen)
                .map_err(|detail| Error::Config { path: "cluster".into(), detail })?,
        );
        let opts = config
            .storage_options()
            .map_err(|detail| Error::Config { path: "storage".into(), detail })?;
        let dir = config.data_dir.clone();
        let (db, report) = tokio::task::spawn_blocking(move || Db::open(&dir, opts))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let notes = report.wal.truncations.iter().chain(&report.wal.skipped);
        for line in notes.chain(&report.quarantined).chain(&report.cleaned) {
            tracing::warn!("storage recovery: {line}");
        }
        let db = Arc::new(db);
        let auth_dir = config.data_dir.clone();
        let store = ocelli_http::blocking(move || ocelli_auth::Store::open(&auth_dir)).await?;
        let auth =
            Arc::new(crate::auth::Auth { store: Arc::new(store), enabled: config.auth.enabled });
        if auth.enabled && auth.store.is_empty() {
            tracing::warn!(
                "auth is on and no token exists: stop the server and make the first with \
                 `ocelli token create --data-dir {} --scope admin`",
                config.data_dir.display()
            );
        }
        let (server_tls, auto_ca) = server_tls(&config)?;
        let metadata: Arc<crate::query::MetadataStore> = Arc::default();
        let jobs = config.scrape_jobs()?;
        let scrape =
            crate::scrape::Scraper::new(db.clone(), metadata.clone(), jobs, config.scrape_reload());
        let registry = crate::registry::Registry::open(
            &config.registry,
            &config.data_dir,
            config.ingest.max_decompressed_bytes,
            scrape.clone(),
        )
        .await?;
        let engine = crate::query::engine(
            config
                .query_options()
                .map_err(|detail| Error::Config { path: "query".into(), detail })?,
        );
        let alerting =
            crate::alerting::start(config.alerting(), db.clone(), engine.clone(), hooks).await?;
        let (rules, notifier) = (alerting.rules.clone(), alerting.notifier.clone());
        let aggregator = Arc::new(crate::aggregate::Aggregator::new(
            crate::aggregate::compile(&config.aggregation)
                .map_err(|detail| Error::Config { path: "aggregation".into(), detail })?,
        ));
        let forwarder =
            crate::remote_write::Forwarder::start(&config.remote_write, &config.data_dir)
                .map_err(|detail| Error::Config { path: "remote_write".into(), detail })?;
        if let Some(f) = &forwarder {
            db.set_observer(Some(f.clone()));
        }
        let (stop_aggregation, aggregation_stop) = tokio::sync::watch::channel(false);
        let aggregation =
            tokio::spawn(crate::aggregate::run(aggregator.clone(), db.clone(), aggregation_stop));
        let ingest = config
            .ingest_options()
            .map_err(|detail| Error::Config { path: "ingest".into(), detail })?;
        let limits = ocelli_wire::remote_write::Limits {
            max_body_bytes: config.ingest.max_body_bytes,
            max_decompressed_bytes: config.ingest.max_decompressed_bytes,
        };
        let collector = (cluster.role == crate::cluster::Role::Collector).then(|| {
            let sink = crate::cluster::collector::Sink {
                db: db.clone(),
                aggregator: aggregator.clone(),
                limits,
                bounds: ingest.bounds,
                metadata: metadata.clone(),
            };
            crate::cluster::collector::Collector::start((*cluster).clone(), sink)
        });
        let state = AppState {
            cluster: cluster.clone(),
            collector: collector.as_ref().map(|c| c.stats.clone()),
            aggregator,
            rules: rules.clone(),
            notifier: notifier.clone(),
            registry: registry.clone(),
            scrape: scrape.clone(),
            db: db.clone(),
            limits,
            ingest,
            engine,
            metadata,
            exemplars: Arc::default(),
            influx: Arc::default(),
            push_groups: Arc::default(),
            started_ms: ocelli_model::time::now_ms(),
            config: Arc::new(config.clone()),
            requests: Arc::default(),
            forwarder: forwarder.clone(),
        };
        let refresher = tokio::spawn(crate::ingest::pushgateway::refresh_loop(
            db.clone(),
            state.push_groups.clone(),
            ingest.pushgateway_refresh,
            ingest.bounds.retention_ms,
            stop_aggregation.subscribe(),
        ));
        let app = router(state, &alerting, auth.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Listen { addr: config.listen.to_string(), source })?;
        let addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
        let tls = server_tls.is_some();
        tracing::info!(%addr, data_dir = %config.data_dir.display(), role = ?cluster.role, tls, auth = auth.enabled, "serving");
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        let scraper = scrape.clone();
        scraper.begin().await;
        registry.begin(db.clone()).await;
        rules.begin(addr).await;
        let rule_manager = rules.clone();
        let stop_notifier = notifier.clone();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let served = match server_tls {
                Some(t) => match ocelli_tls::TlsListener::new(listener, t) {
                    Ok(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
                    Err(e) => Err(e),
                },
                None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
            };
            // consumers stop first: what they hold unacked goes back to the broker
            if let Some(c) = collector {
                c.shutdown().await;
            }
            // the registry saves last contacts and closes its file; scrape loops write their
            // end-of-run stale markers, then let go of storage
            registry.shutdown().await;
            rule_manager.shutdown().await;
            stop_notifier.shutdown().await;
            scraper.shutdown().await;
            // requests are done: close every open aggregation interval and store it; the
            // Pushgateway refresher stops on the same signal
            let _ = stop_aggregation.send(true);
            let _ = aggregation.await;
            let _ = refresher.await;
            // everything is stored: what the queues hold in memory goes to their spools
            if let Some(f) = &forwarder {
                db.set_observer(None);
                f.shutdown().await;
            }
            served.map_err(|e| Error::Internal(e.to_string()))?;
            // last reference: closing syncs the WAL
            drop(db);
            Ok(())
        });
        Ok(Server { addr, scrape, rules, notifier, auth, tls, auto_ca, shutdown, task })
    }

    /// Reads the config file again and applies what can change at run time: scrape jobs, rule
    /// files, the notifier's file. Each part keeps its running configuration if its new one is
    /// invalid; every part is tried, and the errors are joined.
    pub async fn reload(&self) -> Result<()> {
        reload_all(&self.scrape, &self.rules, &self.notifier).await
    }

    /// Calls [`Server::reload`] on every SIGHUP until the returned task is aborted.
    #[cfg(unix)]
    pub fn reload_on_sighup(&self) -> tokio::task::JoinHandle<()> {
        let (scrape, rules, notifier) =
            (self.scrape.clone(), self.rules.clone(), self.notifier.clone());
        on_sighup("configuration", move || {
            let (s, r, n) = (scrape.clone(), rules.clone(), notifier.clone());
            async move { reload_all(&s, &r, &n).await }
        })
    }

    /// Stops accepting requests, finishes the ones in flight, and closes storage.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.map_err(|e| Error::Internal(e.to_string()))?
    }
}

async fn reload_all(
    scrape: &crate::scrape::Scraper,
    rules: &crate::alerting::rules::RuleManager,
    notifier: &crate::alerting::notify::Notifier,
) -> Result<()> {
    let errors: Vec<String> = [
        scrape.reload().await.err(),
        rules.reload().await.err(),
        notifier.reload_server_config().await.err(),
    ]
    .into_iter()
    .flatten()
    .map(|e| crate::scrape::api::refused_reload(e).to_string())
    .collect();
    match errors.len() {
        0 => Ok(()),
        _ => Err(Error::BadData(errors.join("; "))),
    }
}

/// `POST /-/reload` (and `PUT`): [`Server::reload`]; 200, or a 400 with every part's error.
async fn reload(State(st): State<AppState>) -> Result<StatusCode> {
    reload_all(&st.scrape, &st.rules, &st.notifier).await.map(|()| StatusCode::OK)
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<()> {
    let server = Server::start(config).await?;
    #[cfg(unix)]
    let hup = server.reload_on_sighup();
    shutdown_signal().await;
    #[cfg(unix)]
    hup.abort();
    tracing::info!("shutting down");
    server.stop().await
}

/// Runs `reload` on every SIGHUP until the returned task is aborted; a failed reload is logged
/// (the part keeps its running configuration).
#[cfg(unix)]
pub(crate) fn on_sighup<F, Fut>(what: &'static str, reload: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, what, "cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            if let Err(e) = reload().await {
                tracing::error!(error = %e, what, "reload failed; the running configuration is kept");
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The CA file of `[tls] auto` and its fingerprint.
pub type AutoCa = (std::path::PathBuf, String);

/// The TLS of the listen address, per `[tls]`; with `auto`, also the CA clients should trust
/// and its fingerprint (made in `<data_dir>/tls` on first start).
fn server_tls(config: &Config) -> Result<(Option<ocelli_tls::ServerTls>, Option<AutoCa>)> {
    let t = &config.tls;
    let bad = |detail: String| Error::Config { path: "tls".into(), detail };
    if t.auto {
        let mut names = t.auto_names.clone();
        if !config.listen.ip().is_unspecified() {
            names.push(config.listen.ip().to_string());
        }
        let auto = ocelli_tls::auto(&config.data_dir.join("tls"), &names).map_err(bad)?;
        if auto.created {
            tracing::info!(ca = %auto.ca_file.display(), "made a CA and a server certificate");
        }
        tracing::info!(
            fingerprint = %auto.ca_fingerprint,
            "TLS with Ocelli's own CA: clients trust it with --ca-file {} or --ca-pin {}",
            auto.ca_file.display(),
            auto.ca_fingerprint
        );
        let files = ocelli_tls::ServerFiles {
            cert_file: auto.cert_file,
            key_file: auto.key_file,
            client_ca_file: t.client_ca_file.clone(),
        };
        let tls = ocelli_tls::ServerTls::load(&files).map_err(bad)?;
        return Ok((Some(tls), Some((auto.ca_file, auto.ca_fingerprint))));
    }
    match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let files = ocelli_tls::ServerFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: t.client_ca_file.clone(),
            };
            Ok((Some(ocelli_tls::ServerTls::load(&files).map_err(bad)?), None))
        }
        _ => Ok((None, None)),
    }
}

/// The server's own routes and every domain's router, each over its own state, with request
/// metrics on all of them and the credential check ([`crate::auth::check`]) before them all.
fn router(
    state: AppState,
    alerting: &crate::alerting::Parts,
    auth: Arc<crate::auth::Auth>,
) -> Router {
    let requests = state.requests.clone();
    let (scrape, registry) = (state.scrape.clone(), state.registry.clone());
    Router::new()
        .route("/-/healthy", get(|| async { "Ocelli is Healthy.\n" }))
        .route("/-/ready", get(|| async { "Ocelli is Ready.\n" }))
        .merge(crate::admin::routes())
        .merge(crate::ingest::routes())
        .merge(crate::remote_read::routes())
        .merge(crate::query::routes())
        .merge(crate::status::routes())
        .merge(crate::exemplars::routes())
        .route("/metrics", get(crate::metrics::metrics))
        .route("/-/reload", post(reload).put(reload))
        .merge(crate::views::api::routes())
        .with_state(state)
        .merge(crate::scrape::router(scrape))
        .merge(crate::registry::api::router(registry))
        .merge(crate::alerting::router(alerting))
        .merge(crate::auth::routes(auth.clone()))
        .fallback(crate::status::not_found)
        // each handler reads its body through `read_body`, which enforces the limit with a
        // precise message
        .layer(DefaultBodyLimit::disable())
        .route_layer(axum::middleware::from_fn_with_state(requests, crate::requests::track))
        .layer(axum::middleware::from_fn_with_state(auth, crate::auth::check))
}
