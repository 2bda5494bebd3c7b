//! The notifier: Alertmanager 0.25's semantics inside the server. It takes alerts (from the
//! rule manager through [`AlertSink`], or from `POST /api/v2/alerts`), routes them through an
//! Alertmanager-format routing tree, groups them, mutes them by silences and inhibition rules,
//! deduplicates against a notification log, and delivers to Slack, e-mail and webhook
//! receivers; every alert is also forwarded to the external Alertmanagers configured.
//!
//! Parts: [`config`] (the `[notifier]` section and the YAML file, a pure parse), [`route`],
//! [`inhibit`], [`silence`], `matchers` (Alertmanager's matcher syntax), `nflog` (the
//! notification log), `alert` (identity and merging), `dispatch` (the state and the flush
//! logic), `deliver` (attempts and retries, with one module per integration: `slack`, `email`,
//! `webhook`, and `forward` for Alertmanagers, all over `ocelli_http::client`), `text` (times
//! and notification texts), `store` (`<data_dir>/notifier.redb`), and [`api`] (silences, alerts
//! and metrics over HTTP).
//!
//! [`Notifier`] is the handle the server and the other alerting parts hold: `start`, `reload`,
//! `set_dynamic` (routes and inhibition rules of the threshold alarms) and
//! `set_dynamic_receivers`, `shutdown`. Its loop wakes when a group is due or alerts arrive, and
//! at least every second to write changed alerts to disk and drop what expired.
//!
//! Deliberately absent: Go templates, clustering (gossip), time intervals, integrations other
//! than the three above, Alertmanager's web UI.

pub mod api;
pub mod config;
pub mod inhibit;
pub mod route;
pub mod silence;

mod alert;
mod deliver;
mod dispatch;
mod email;
mod forward;
mod matchers;
mod nflog;
mod slack;
mod store;
mod text;
mod webhook;

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

pub use config::{
    EmailConfig, NotifierConfig, Receiver, Settings, SlackConfig, TlsConfig, WebhookConfig,
};
pub use inhibit::InhibitRule;
pub use matchers::parse as parse_matchers;
pub use ocelli_model::{MatchOp, Matcher};
pub use route::{GroupBy, Route};
pub use store::FILE_NAME;

use self::config::Delivery;
use self::deliver::{Attempts, Counters};
use self::dispatch::{Core, Job};
use self::forward::Forwarder;
use self::silence::{Compiled, Silence, SilenceState};
use self::store::{Batch, Store};
use crate::{Alert, AlertSink, HistorySink};
use ocelli_http::{Error, Reload, Result};

/// The largest notifier YAML file read.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

impl Shared {
    /// Writes a batch to the file (an error once shut down).
    fn write(&self, b: &Batch<'_>) -> Result<()> {
        match &*self.store.read() {
            Some(s) => s.write(b),
            None => Err(Error::Unavailable("the notifier is shut down".into())),
        }
    }
}

struct Shared {
    core: Mutex<Core>,
    wake: tokio::sync::Notify,
    history: Arc<dyn HistorySink>,
    /// `None` once shut down, so the file is closed and can be opened again.
    store: parking_lot::RwLock<Option<Store>>,
    counters: Arc<Counters>,
    delivery: Mutex<Delivery>,
    forwarder: Mutex<Forwarder>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Serialises silence changes (check, write to disk, apply).
    silence_ops: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Reads `[notifier]` again, for [`Notifier::reload_server_config`].
    source: Reload<NotifierConfig>,
}

/// Handle to the running notifier; clones share it.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

/// Reads and parses the YAML file a `[notifier]` section names (none: [`Settings::default`]).
pub fn load_settings(config: &NotifierConfig) -> Result<Settings> {
    let Some(path) = &config.config_file else { return Ok(Settings::default()) };
    let shown = path.display().to_string();
    let cfg_err = |detail: String| Error::Config { path: shown.clone(), detail };
    let len = std::fs::metadata(path).map_err(|e| cfg_err(e.to_string()))?.len();
    if len > MAX_CONFIG_BYTES {
        return Err(cfg_err(format!("{len} bytes is over the limit of {MAX_CONFIG_BYTES}")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| cfg_err(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let settings = config::parse_file(&text, &shown, dir).map_err(|detail| Error::Config {
        // `parse` starts its messages with the file's name already
        path: "notifier".into(),
        detail,
    })?;
    for r in &settings.receivers {
        for (i, e) in r.email.iter().enumerate().filter(|(_, e)| e.tls.insecure_skip_verify) {
            tracing::warn!(receiver = %r.name, email_config = i, smarthost = %e.smarthost,
                "tls_config.insecure_skip_verify is set: the SMTP server's certificate is not checked");
        }
    }
    Ok(settings)
}

impl NotifierConfig {
    /// This section with a relative `config_file` made relative to `dir` (the server's config
    /// file's folder) and an empty `external_url` set from `listen`.
    pub fn resolved(&self, dir: Option<&Path>, listen: std::net::SocketAddr) -> NotifierConfig {
        let mut c = self.clone();
        if let (Some(f), Some(dir)) = (&c.config_file, dir)
            && f.is_relative()
        {
            c.config_file = Some(dir.join(f));
        }
        if c.external_url.is_empty() {
            c.external_url = format!("http://{listen}");
        }
        c
    }
}

/// Alertmanager's fingerprint of an alert's label set, as the 16 hex digits its API shows.
pub fn fingerprint(labels: &crate::LabelMap) -> String {
    alert::fingerprint_hex(alert::fingerprint(labels))
}

/// A history that only logs, for a server whose alarm history is not wired in.
#[derive(Debug, Default)]
pub struct LogHistory;

impl HistorySink for LogHistory {
    fn record(&self, events: Vec<crate::HistoryEvent>) {
        for e in events {
            tracing::info!(event = ?e, "alert history");
        }
    }
}

impl Notifier {
    /// Opens `<data_dir>/notifier.redb`, reads the YAML file and starts the loop and the
    /// forwarders. Stored alerts are grouped again; groups that were notified before are not
    /// notified again before their `repeat_interval` unless they changed.
    pub async fn start(
        config: &NotifierConfig,
        history: Arc<dyn HistorySink>,
        data_dir: &Path,
    ) -> Result<Notifier> {
        Notifier::start_with_reload(config, history, data_dir, None).await
    }

    /// [`Notifier::start`], with `source` to read `[notifier]` again on
    /// [`Notifier::reload_server_config`].
    pub async fn start_with_reload(
        config: &NotifierConfig,
        history: Arc<dyn HistorySink>,
        data_dir: &Path,
        source: Reload<NotifierConfig>,
    ) -> Result<Notifier> {
        let delivery = config
            .delivery()
            .map_err(|detail| Error::Config { path: "notifier".into(), detail })?;
        let settings = load_settings(config)?;
        let dir = data_dir.to_path_buf();
        let (store, loaded) = ocelli_http::blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
            Store::open(&dir)
        })
        .await?;
        let now = ocelli_model::time::now_ms();
        let mut core = Core::new(settings, config.external_url.clone());
        for s in loaded.silences {
            let id = s.id.clone();
            match Compiled::new(s) {
                Ok(c) => {
                    core.silences.insert(id, c);
                }
                Err(e) => tracing::error!(error = %e, "a stored silence is skipped"),
            }
        }
        core.nflog = loaded.nflog.into_iter().collect();
        for a in loaded.alerts {
            core.alerts.insert(a.fingerprint(), a);
        }
        core.rebuild(now);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let counters = Arc::new(Counters::default());
        let forwarder =
            Forwarder::start(&delivery, history.clone(), counters.clone(), shutdown.subscribe());
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake: tokio::sync::Notify::new(),
            history,
            store: parking_lot::RwLock::new(Some(store)),
            counters,
            delivery: Mutex::new(delivery),
            forwarder: Mutex::new(forwarder),
            shutdown,
            silence_ops: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
            source,
        });
        let task = tokio::spawn(run(shared.clone()));
        shared.tasks.lock().push(task);
        Ok(Notifier { shared })
    }

    /// Reads the YAML file again and applies it (and the section's delivery settings). An
    /// invalid file changes nothing and is the error.
    pub async fn reload(&self, config: &NotifierConfig) -> Result<()> {
        let delivery = config
            .delivery()
            .map_err(|detail| Error::Config { path: "notifier".into(), detail })?;
        let c = config.clone();
        let settings = ocelli_http::blocking(move || load_settings(&c)).await?;
        {
            let mut core = self.shared.core.lock();
            core.file = settings;
            core.external_url = config.external_url.clone();
            core.rebuild(ocelli_model::time::now_ms());
        }
        let changed = self.shared.delivery.lock().alertmanagers != delivery.alertmanagers;
        if changed {
            let fresh = Forwarder::start(
                &delivery,
                self.shared.history.clone(),
                self.shared.counters.clone(),
                self.shared.shutdown.subscribe(),
            );
            std::mem::replace(&mut *self.shared.forwarder.lock(), fresh).stop();
        }
        *self.shared.delivery.lock() = delivery;
        self.shared.wake.notify_one();
        tracing::info!("notifier configuration reloaded");
        Ok(())
    }

    /// Reads the server's config file again and reloads with its `[notifier]` section.
    pub async fn reload_server_config(&self) -> Result<()> {
        let Some(read) = self.shared.source.clone() else {
            return Err(ocelli_http::nothing_to_reload());
        };
        let config = ocelli_http::blocking(move || read()).await?;
        self.reload(&config).await
    }

    /// Sets the routes and inhibition rules made at run time (the threshold alarms'),
    /// replacing the previous ones. The routes go before the configured ones under the root
    /// and always continue. A route naming a receiver that is neither in the file nor set
    /// with [`Notifier::set_dynamic_receivers`] is refused.
    pub fn set_dynamic(&self, routes: Vec<Route>, inhibit_rules: Vec<InhibitRule>) -> Result<()> {
        let mut core = self.shared.core.lock();
        let known: std::collections::BTreeSet<&str> = core
            .file
            .receivers
            .iter()
            .chain(&core.dyn_receivers)
            .map(|r| r.name.as_str())
            .collect();
        fn check(r: &Route, known: &std::collections::BTreeSet<&str>) -> Result<()> {
            if let Some(name) = &r.receiver
                && !known.contains(name.as_str())
            {
                return Err(Error::BadData(format!("route receiver {name:?} is not defined")));
            }
            r.routes.iter().try_for_each(|c| check(c, known))
        }
        routes.iter().try_for_each(|r| check(r, &known))?;
        core.dyn_routes = routes;
        core.dyn_inhibit = inhibit_rules;
        core.rebuild(ocelli_model::time::now_ms());
        drop(core);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The names of every receiver a route may name: the file's and those set at run time.
    pub fn receiver_names(&self) -> Vec<String> {
        let core = self.shared.core.lock();
        let mut names: Vec<String> =
            core.file.receivers.iter().chain(&core.dyn_receivers).map(|r| r.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Sets the receivers made at run time (replacing the previous ones); they replace file
    /// receivers of the same name. Names must be non-empty and unique.
    pub fn set_dynamic_receivers(&self, receivers: Vec<Receiver>) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for r in &receivers {
            if r.name.is_empty() || !seen.insert(r.name.as_str()) {
                return Err(Error::BadData(format!(
                    "receiver name {:?} is empty or given twice",
                    r.name
                )));
            }
        }
        let mut core = self.shared.core.lock();
        core.dyn_receivers = receivers;
        core.rebuild(ocelli_model::time::now_ms());
        Ok(())
    }

    /// The external Alertmanagers every alert is forwarded to (`[notifier] alertmanagers`), as
    /// `<scheme>://<host>:<port><path>` of their alert API.
    pub fn alertmanagers(&self) -> Vec<String> {
        let url = |u: &ocelli_http::client::Url| {
            let scheme = if u.tls { "https" } else { "http" };
            let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
            format!("{scheme}://{host}:{}{}", u.port, u.path)
        };
        self.shared.delivery.lock().alertmanagers.iter().map(url).collect()
    }

    /// Stops the loop, the deliveries and the forwarders, and writes the alerts to disk.
    pub async fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
        self.shared.wake.notify_one();
        let tasks: Vec<_> = std::mem::take(&mut *self.shared.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
        self.shared.forwarder.lock().stop();
        persist(&self.shared).await;
        // close the file
        self.shared.store.write().take();
    }

    /// Takes alerts as `POST /api/v2/alerts` does: all or nothing; the reasons of the refused
    /// ones are the error.
    pub fn post_alerts(&self, alerts: Vec<Alert>) -> Result<usize> {
        let now = ocelli_model::time::now_ms();
        let rt = self.shared.core.lock().resolve_timeout_ms();
        let errors: Vec<String> = alerts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                alert::accept(a.clone(), now, rt).err().map(|e| format!("alert {i}: {e}"))
            })
            .collect();
        if !errors.is_empty() {
            return Err(Error::BadData(errors.join("; ")));
        }
        let n = alerts.len();
        self.send(alerts);
        Ok(n)
    }
}

impl AlertSink for Notifier {
    fn send(&self, alerts: Vec<Alert>) {
        if alerts.is_empty() {
            return;
        }
        let (ok, refused) = self.shared.core.lock().ingest(alerts, ocelli_model::time::now_ms());
        for e in refused {
            tracing::warn!(error = %e, "alert refused");
        }
        self.shared.forwarder.lock().push(&ok, &self.shared.counters);
        self.shared.wake.notify_one();
    }
}

/// The notifier's loop.
async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut last_gc = 0i64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = ocelli_model::time::now_ms();
        let (jobs, events, next) = {
            let mut core = shared.core.lock();
            let (jobs, events) = core.flush_due(now);
            (jobs, events, core.next_due())
        };
        if !events.is_empty() {
            shared.history.record(events);
        }
        for job in jobs {
            let s = shared.clone();
            let t = tokio::spawn(async move { run_job(s, job).await });
            let mut tasks = shared.tasks.lock();
            tasks.retain(|t| !t.is_finished());
            tasks.push(t);
        }
        if now - last_gc >= 60_000 {
            last_gc = now;
            collect_garbage(&shared, now).await;
        }
        persist(&shared).await;
        let now = ocelli_model::time::now_ms();
        let max = dispatch::MAX_SLEEP.as_millis() as i64;
        let wait = next.map(|t| (t - now).clamp(0, max)).unwrap_or(max);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait as u64)) => {}
            _ = shared.wake.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn run_job(shared: Arc<Shared>, job: Job) {
    let delivered = if job.notification.alerts.is_empty() {
        // nothing to say (resolved alerts to an integration without send_resolved), but the
        // log learns that the receiver was told of the change
        true
    } else {
        let delivery = shared.delivery.lock().clone();
        let mut attempts = Attempts {
            history: &shared.history,
            counters: &shared.counters,
            delivery: &delivery,
            shutdown: shared.shutdown.subscribe(),
        };
        deliver::deliver(&mut attempts, &job.integration, &job.notification).await
    };
    if delivered {
        let s = shared.clone();
        let entry = (job.nflog_key.clone(), job.entry.clone());
        let written = ocelli_http::blocking(move || {
            s.write(&Batch { nflog: vec![entry], ..Batch::default() })
        })
        .await;
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the notification log; a restart may repeat this notification");
        }
    }
    shared.core.lock().complete(&job, delivered);
    shared.wake.notify_one();
}

/// Writes the alerts changed since the last call.
async fn persist(shared: &Arc<Shared>) {
    let (put, delete) = shared.core.lock().take_dirty();
    if put.is_empty() && delete.is_empty() {
        return;
    }
    let s = shared.clone();
    let written = ocelli_http::blocking(move || {
        s.write(&Batch { alerts: put, delete_alerts: delete, ..Batch::default() })
    })
    .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot write alerts to disk");
    }
}

async fn collect_garbage(shared: &Arc<Shared>, now: i64) {
    let (alerts, silences, nflog) = shared.core.lock().collect_garbage(now);
    if alerts.is_empty() && silences.is_empty() && nflog.is_empty() {
        return;
    }
    let s = shared.clone();
    let written = ocelli_http::blocking(move || {
        s.write(&Batch {
            delete_alerts: alerts,
            delete_silences: silences,
            delete_nflog: nflog,
            ..Batch::default()
        })
    })
    .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot drop expired notifier state from disk");
    }
}

// ---- silences, for the API ----

impl Notifier {
    /// Creates a silence, or updates the one `id` names (in place when Alertmanager would;
    /// otherwise that one is expired and a new one made). Returns the id.
    pub async fn put_silence(&self, p: silence::Postable) -> Result<String> {
        let _serial = self.shared.silence_ops.lock().await;
        let now = ocelli_model::time::now_ms();
        let mut new = silence::check(p, now).map_err(Error::BadData)?;
        let mut expire: Option<Silence> = None;
        if !new.id.is_empty() {
            let core = self.shared.core.lock();
            let Some(old) = core.silences.get(&new.id) else {
                return Err(Error::NotFound(format!("silence {} does not exist", new.id)));
            };
            if silence::can_update_in_place(&old.silence, &new, now) {
                // an active silence keeps the start it had
                if old.silence.state(now) == SilenceState::Active {
                    new.starts_at_ms = old.silence.starts_at_ms;
                }
            } else {
                let mut gone = old.silence.clone();
                if gone.state(now) != SilenceState::Expired {
                    gone.starts_at_ms = gone.starts_at_ms.min(now);
                    gone.ends_at_ms = now;
                    gone.updated_at_ms = now;
                    expire = Some(gone);
                }
                new.id = String::new();
            }
        }
        if new.id.is_empty() {
            new.id = silence::new_id().map_err(Error::Internal)?;
        }
        let compiled = Compiled::new(new.clone()).map_err(Error::BadData)?;
        let s = self.shared.clone();
        let (n2, e2) = (new.clone(), expire.clone());
        ocelli_http::blocking(move || {
            let mut b = Batch { silences: vec![&n2], ..Batch::default() };
            if let Some(e) = &e2 {
                b.silences.push(e);
            }
            s.write(&b)
        })
        .await?;
        let mut core = self.shared.core.lock();
        if let Some(e) = expire {
            let id = e.id.clone();
            if let Ok(c) = Compiled::new(e) {
                core.silences.insert(id, c);
            }
        }
        core.silences.insert(new.id.clone(), compiled);
        Ok(new.id)
    }

    /// Expires a silence now. Unknown ids are `NotFound`, expired ones `BadData`.
    pub async fn expire_silence(&self, id: &str) -> Result<()> {
        let _serial = self.shared.silence_ops.lock().await;
        let now = ocelli_model::time::now_ms();
        let mut s = {
            let core = self.shared.core.lock();
            let Some(c) = core.silences.get(id) else {
                return Err(Error::NotFound(format!("silence {id} does not exist")));
            };
            c.silence.clone()
        };
        if s.state(now) == SilenceState::Expired {
            return Err(Error::BadData(format!("silence {id} is already expired")));
        }
        // a pending silence never started: it ends where it would have begun
        s.starts_at_ms = s.starts_at_ms.min(now);
        s.ends_at_ms = now;
        s.updated_at_ms = now;
        let st = self.shared.clone();
        let s2 = s.clone();
        ocelli_http::blocking(move || st.write(&Batch { silences: vec![&s2], ..Batch::default() }))
            .await?;
        let c = Compiled::new(s).map_err(Error::Internal)?;
        self.shared.core.lock().silences.insert(id.to_string(), c);
        Ok(())
    }

    /// Every silence (expired ones until they are dropped, 5 days after their end).
    pub fn silences(&self) -> Vec<Silence> {
        self.shared.core.lock().silences.values().map(|c| c.silence.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
