//! The agent registry: which agents exist, how the server wants each to run, and whether each
//! is healthy.
//!
//! Agents register and heartbeat with `POST /api/v1/agents/heartbeat`; operators list, read,
//! change (mode, interval) and delete them over REST and ask one for current values through
//! the server ([`api`]). The registry lives in memory and in one redb file in the data
//! directory, or, for several servers sharing it, in etcd (`[registry] etcd`, one key per
//! agent; [`store`]): a registration, a change of anything but the time of last contact,
//! and a deletion are on disk before they are answered; `last_seen` and the health are saved
//! every `up_interval`, so a crash loses at most that much of them.
//!
//! **Mode and interval.** On its first registration the server adopts what the agent runs;
//! once an operator has set either with `PATCH`, the server's values win, and every heartbeat
//! answer carries them, which is how a running agent learns of a change.
//!
//! **Pull.** An agent the server wants in pull mode is a target of the scrape manager, job
//! `ocelli-agent`, set through [`ocelli_scrape::Scraper::set_dynamic`] whenever its mode,
//! address or interval changes (no reload of the configured jobs). Its scrape loop writes
//! every outcome into a health cell the registry reads: a success counts as contact, failures
//! count toward health. An agent moved out of pull mode is stopped with only its `up` /
//! `scrape_*` series marked stale, so its pushed samples continue the scraped series.
//!
//! **Health.** An agent is unhealthy once no contact (heartbeat, or successful scrape) came
//! for `unhealthy_after` heartbeat periods (the period is its interval, but at most 30 s, as
//! agents heartbeat at least that often), or, in pull mode, once its last `unhealthy_after`
//! scrapes failed. After a restart the time without contact is counted from the start (if
//! later than `last_seen`), and an agent that was unhealthy stays so until it is heard from:
//! every agent keeps its health until its grace period has passed. Every `up_interval` the
//! registry writes `ocelli_agent_up{ns,service_type,service_id,vm_id,csp,region,mode}` (1 or
//! 0) through `Db::append`, with stale markers for the series of agents deleted or changed.
//!
//! Architecture invariant: the registry reaches the scrape manager only through its dynamic
//! targets and etcd only through `ocelli-cluster`'s client; its routes ([`api::router`]) take
//! the registry handle alone.
//!
//! Deliberately absent: any authentication of agents.

pub mod agent;
pub mod api;
pub mod config;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ocelli_model::{Labels, STALE_NAN, Sample};
use ocelli_tsdb::{Db, SeriesSamples};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use agent::{Heartbeat, Mode, Patch, Record};
pub use config::{RegistryConfig, Settings};
use ocelli_http::{Error, Result};
use ocelli_model::time::now_ms;
use ocelli_scrape::{DynamicTarget, Health, Scraper, Stop, TargetSpec};
use store::Store;

/// The `job` label of pull-mode agents' series and their scrape pool.
pub const JOB: &str = "ocelli-agent";
/// The name of the health series.
pub const UP_METRIC: &str = "ocelli_agent_up";
/// Agents heartbeat at least this often, whatever their interval.
const MAX_HEARTBEAT_PERIOD_MS: i64 = 30_000;

/// One agent in memory.
#[derive(Debug)]
struct Entry {
    /// What is known of it; `last_seen_ms` and `healthy` may be ahead of the file.
    rec: Record,
    /// `last_seen_ms` and `healthy` as last saved.
    saved: (i64, bool),
    /// Unix ms from which the time without contact is counted: the last contact, or the start
    /// of this process for an agent not heard from since.
    clock_from_ms: i64,
    /// Loaded as unhealthy and not heard from since.
    sticky_unhealthy: bool,
    /// The scrape loop's health cell while the agent is in pull mode.
    scrape: Option<Arc<std::sync::Mutex<Health>>>,
}

/// An agent's health and last contact at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub healthy: bool,
    pub last_seen_ms: i64,
}

/// What health is judged from.
#[derive(Clone, Copy, Debug)]
struct Evidence {
    mode: Mode,
    interval_seconds: u32,
    /// Last heartbeat (or the last contact saved before a restart).
    heard_ms: i64,
    clock_from_ms: i64,
    sticky_unhealthy: bool,
    /// The last successful scrape, if any, and failures since.
    scraped_ms: Option<i64>,
    failures: u32,
}

/// The health rule (module doc), as a pure function of the evidence.
fn judge(e: Evidence, now_ms: i64, unhealthy_after: u32) -> Status {
    let scraped = e.scraped_ms.unwrap_or(i64::MIN);
    let last_seen_ms = e.heard_ms.max(scraped);
    let period = (i64::from(e.interval_seconds) * 1000).min(MAX_HEARTBEAT_PERIOD_MS);
    let clock = e.clock_from_ms.max(scraped);
    let silent_too_long = now_ms - clock > period * i64::from(unhealthy_after);
    let scrapes_failing = e.mode == Mode::Pull && e.failures >= unhealthy_after;
    let still_sticky = e.sticky_unhealthy && scraped <= e.heard_ms;
    Status { healthy: !(silent_too_long || scrapes_failing || still_sticky), last_seen_ms }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Entry {
    fn loaded(rec: Record, started_ms: i64) -> Entry {
        Entry {
            saved: (rec.last_seen_ms, rec.healthy),
            clock_from_ms: rec.last_seen_ms.max(started_ms),
            sticky_unhealthy: !rec.healthy,
            scrape: None,
            rec,
        }
    }

    fn status(&self, now_ms: i64, unhealthy_after: u32) -> Status {
        let (scraped_ms, failures) = match &self.scrape {
            Some(cell) => {
                let h = cell.lock().unwrap_or_else(|e| e.into_inner());
                (h.last_success.map(unix_ms), h.consecutive_failures)
            }
            None => (None, 0),
        };
        let e = Evidence {
            mode: self.rec.mode,
            interval_seconds: self.rec.interval_seconds,
            heard_ms: self.rec.last_seen_ms,
            clock_from_ms: self.clock_from_ms,
            sticky_unhealthy: self.sticky_unhealthy,
            scraped_ms,
            failures,
        };
        judge(e, now_ms, unhealthy_after)
    }
}

/// An agent as the API shows it.
#[derive(Clone, Debug)]
pub struct AgentView {
    pub rec: Record,
    pub status: Status,
}

/// The filters of `GET /api/v1/agents`; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub ns: Option<String>,
    pub service_type: Option<String>,
    pub service_id: Option<String>,
    pub csp: Option<String>,
    pub healthy: Option<bool>,
    pub mode: Option<Mode>,
}

impl Filter {
    fn matches(&self, v: &AgentView) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let id = &v.rec.identity;
        eq(&self.ns, &id.ns)
            && eq(&self.service_type, &id.service_type)
            && eq(&self.service_id, &id.service_id)
            && eq(&self.csp, &id.csp)
            && self.healthy.is_none_or(|h| h == v.status.healthy)
            && self.mode.is_none_or(|m| m == v.rec.mode)
    }
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beat {
    /// Whether this heartbeat registered the agent.
    pub created: bool,
    pub key: String,
    pub mode: Mode,
    pub interval_seconds: u32,
}

struct Shared {
    settings: Settings,
    scraper: Scraper,
    /// Body limit of scrapes of pull-mode agents.
    scrape_body_limit: usize,
    /// `[registry] agent_ca_file`: agents are reached over https, verified with this.
    agent_tls: Option<ocelli_scrape::config::ClientTls>,
    agents: Mutex<BTreeMap<String, Entry>>,
    /// Held by every change, for the whole change (so changes apply in the order they are
    /// written); None once shut down.
    store: Mutex<Option<Store>>,
    /// Serialises updates of the scrape manager, so the last update reflects the last state.
    targets: tokio::sync::Mutex<()>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// Handle to the registry; clones share it.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

fn closed() -> Error {
    Error::Unavailable("the agent registry is closed (the server is shutting down)".into())
}

impl Registry {
    /// Opens the registry file in `data_dir` (or, with `etcd` endpoints in `config`, the
    /// shared registry there) and loads every agent; nothing runs until [`Registry::begin`].
    /// Pull-mode agents' bodies may decompress to `scrape_body_limit` bytes.
    pub async fn open(
        config: &RegistryConfig,
        data_dir: &std::path::Path,
        scrape_body_limit: usize,
        scraper: Scraper,
    ) -> Result<Registry> {
        let settings = config
            .settings()
            .map_err(|detail| Error::Config { path: "registry".into(), detail })?;
        let dir = data_dir.to_path_buf();
        let (etcd, prefix) = (config.etcd.clone(), config.etcd_prefix.clone());
        let etcd_ca = config.etcd_ca_file.clone();
        let handle = tokio::runtime::Handle::current();
        let (store, records) = ocelli_http::blocking(move || {
            if etcd.is_empty() {
                Store::open(&dir)
            } else {
                Store::open_etcd(&etcd, etcd_ca.as_deref(), &prefix, handle)
            }
        })
        .await?;
        let started_ms = now_ms();
        let agents = records.into_iter().map(|r| (r.key(), Entry::loaded(r, started_ms))).collect();
        let agent_tls = match &config.agent_ca_file {
            Some(f) => Some(
                ocelli_tls::client_config(&ocelli_tls::Trust::CaFile(f.clone()), None).map_err(
                    |detail| Error::Config { path: "registry.agent_ca_file".into(), detail },
                )?,
            ),
            None => None,
        };
        Ok(Registry {
            inner: Arc::new(Shared {
                settings,
                scraper,
                scrape_body_limit,
                agent_tls,
                agents: Mutex::new(agents),
                store: Mutex::new(Some(store)),
                targets: tokio::sync::Mutex::new(()),
                ticker: Mutex::new(None),
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The TLS setup agents are reached with, when `[registry] agent_ca_file` is set.
    pub fn agent_tls(&self) -> Option<&ocelli_scrape::config::ClientTls> {
        self.inner.agent_tls.as_ref()
    }

    /// Hands the pull-mode agents to the scrape manager and starts writing `ocelli_agent_up`.
    pub async fn begin(&self, db: Arc<Db>) {
        let keys: Vec<String> = self.inner.agents.lock().keys().cloned().collect();
        for key in keys {
            self.sync_target(&key).await;
        }
        let reg = self.clone();
        let every = self.inner.settings.up_interval;
        let task = tokio::spawn(async move {
            let mut prev: HashSet<Labels> = HashSet::new();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                reg.tick(&db, &mut prev).await;
            }
        });
        *self.inner.ticker.lock() = Some(task);
    }

    /// Stops the `ocelli_agent_up` writer, saves `last_seen` and health, and closes the file.
    pub async fn shutdown(&self) {
        let task = self.inner.ticker.lock().take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        let reg = self.clone();
        let saved = ocelli_http::blocking(move || {
            reg.save_contacts(now_ms());
            Ok(reg.inner.store.lock().take())
        })
        .await;
        if let Ok(Some(store)) = saved {
            drop(store);
        }
    }

    /// Registers an agent or records its heartbeat; returns the configuration the server wants.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<Beat> {
        let reg = self.clone();
        let (beat, scrape_changed) = ocelli_http::blocking(move || {
            let now = now_ms();
            let guard = reg.inner.store.lock();
            let store = guard.as_ref().ok_or_else(closed)?;
            let key = hb.identity.key();
            let old = reg.inner.agents.lock().get(&key).map(|e| e.rec.clone());
            let (rec, created, scrape_changed) = match old {
                None => {
                    let rec = Record::register(&hb, now);
                    store.write(&[&rec], &[])?;
                    let entry = Entry::loaded(rec.clone(), now);
                    reg.inner.agents.lock().insert(key.clone(), entry);
                    let (address, mode) = (&rec.address, rec.mode.as_str());
                    tracing::info!(agent = %key, %address, mode, "agent registered");
                    let pull = rec.mode == Mode::Pull;
                    (rec, true, pull)
                }
                Some(old) => {
                    let rec = old.after_heartbeat(&hb, now);
                    let substance = rec.differs_in_substance(&old);
                    if substance {
                        store.write(&[&rec], &[])?;
                    }
                    let mut agents = reg.inner.agents.lock();
                    if let Some(e) = agents.get_mut(&key) {
                        e.rec = rec.clone();
                        e.clock_from_ms = e.clock_from_ms.max(now);
                        e.sticky_unhealthy = false;
                        if substance {
                            e.saved = (rec.last_seen_ms, rec.healthy);
                        }
                    }
                    let moved = scrape_differs(&old, &rec);
                    (rec, false, moved)
                }
            };
            let beat =
                Beat { created, key, mode: rec.mode, interval_seconds: rec.interval_seconds };
            Ok((beat, scrape_changed))
        })
        .await?;
        if scrape_changed {
            self.sync_target(&beat.key).await;
        }
        Ok(beat)
    }

    /// Every agent that matches `filter`, in key order.
    pub fn list(&self, filter: &Filter) -> Vec<AgentView> {
        let now = now_ms();
        let n = self.inner.settings.unhealthy_after;
        let agents = self.inner.agents.lock();
        agents
            .values()
            .map(|e| AgentView { rec: e.rec.clone(), status: e.status(now, n) })
            .filter(|v| filter.matches(v))
            .collect()
    }

    /// One agent; `NotFound` if it is not registered.
    pub fn get(&self, key: &str) -> Result<AgentView> {
        let now = now_ms();
        let n = self.inner.settings.unhealthy_after;
        let agents = self.inner.agents.lock();
        let e = agents.get(key).ok_or_else(|| not_found(key))?;
        Ok(AgentView { rec: e.rec.clone(), status: e.status(now, n) })
    }

    /// Sets an agent's mode and/or interval (the server's values win from now on).
    pub async fn patch(&self, key: &str, patch: Patch) -> Result<AgentView> {
        let reg = self.clone();
        let k = key.to_string();
        let (old, new) = ocelli_http::blocking(move || {
            let guard = reg.inner.store.lock();
            let store = guard.as_ref().ok_or_else(closed)?;
            let old = reg.inner.agents.lock().get(&k).map(|e| e.rec.clone());
            let old = old.ok_or_else(|| not_found(&k))?;
            let new = old.after_patch(patch);
            store.write(&[&new], &[])?;
            if let Some(e) = reg.inner.agents.lock().get_mut(&k) {
                e.rec = new.clone();
                e.saved = (new.last_seen_ms, new.healthy);
            }
            Ok((old, new))
        })
        .await?;
        tracing::info!(
            agent = %key,
            mode = new.mode.as_str(),
            interval_seconds = new.interval_seconds,
            "agent configuration set"
        );
        if scrape_differs(&old, &new) {
            self.sync_target(key).await;
        }
        self.get(key)
    }

    /// Removes an agent; returns it as it was. A pull-mode agent stops being scraped.
    pub async fn delete(&self, key: &str) -> Result<AgentView> {
        let reg = self.clone();
        let k = key.to_string();
        let gone = ocelli_http::blocking(move || {
            let now = now_ms();
            let n = reg.inner.settings.unhealthy_after;
            let guard = reg.inner.store.lock();
            let store = guard.as_ref().ok_or_else(closed)?;
            if !reg.inner.agents.lock().contains_key(&k) {
                return Err(not_found(&k));
            }
            store.write(&[], &[k.as_str()])?;
            let e = reg.inner.agents.lock().remove(&k).ok_or_else(|| not_found(&k))?;
            Ok(AgentView { status: e.status(now, n), rec: e.rec })
        })
        .await?;
        tracing::info!(agent = %key, "agent deleted");
        self.sync_target(key).await;
        Ok(gone)
    }

    /// The advertised address of an agent; `NotFound` if it is not registered.
    pub fn address_of(&self, key: &str) -> Result<String> {
        let agents = self.inner.agents.lock();
        agents.get(key).map(|e| e.rec.address.clone()).ok_or_else(|| not_found(key))
    }

    /// Agents by mode and health, every combination present (for `/metrics`).
    pub fn counts(&self) -> BTreeMap<(Mode, bool), usize> {
        let mut out: BTreeMap<(Mode, bool), usize> =
            Mode::ALL.iter().flat_map(|m| [((*m, true), 0), ((*m, false), 0)]).collect();
        for v in self.list(&Filter::default()) {
            *out.entry((v.rec.mode, v.status.healthy)).or_default() += 1;
        }
        out
    }

    /// Brings the scrape manager in line with what the registry wants for `key`.
    async fn sync_target(&self, key: &str) {
        let _serial = self.inner.targets.lock().await;
        let want = {
            let mut agents = self.inner.agents.lock();
            match agents.get_mut(key) {
                Some(e) if e.rec.mode == Mode::Pull => {
                    let health = e.scrape.get_or_insert_with(Arc::default).clone();
                    Some(Some(self.target(&e.rec, health)))
                }
                Some(e) => {
                    e.scrape = None;
                    Some(None)
                }
                None => None,
            }
        };
        let scraper = &self.inner.scraper;
        match want {
            Some(Some(t)) => scraper.set_dynamic(key, t).await,
            // still registered, not pulled: its series go on arriving by push
            Some(None) => scraper.remove_dynamic(key, Stop::KeepSeries).await,
            None => scraper.remove_dynamic(key, Stop::Stale).await,
        }
    }

    /// The scrape target of a pull-mode agent.
    fn target(&self, rec: &Record, health: Arc<std::sync::Mutex<Health>>) -> DynamicTarget {
        let interval = Duration::from_secs(u64::from(rec.interval_seconds));
        let timeout = self.inner.settings.scrape_timeout.min(interval * 9 / 10);
        let fmt = ocelli_model::time::format_duration;
        let labels = Labels::from_sorted(vec![
            ocelli_model::Label::new("instance", &rec.address),
            ocelli_model::Label::new("job", JOB),
        ]);
        let (every, within, key) = (fmt(interval), fmt(timeout), rec.key());
        let discovered = Labels::from_pairs([
            ("__address__", rec.address.as_str()),
            ("__metrics_path__", "/metrics"),
            ("__scheme__", if self.inner.agent_tls.is_some() { "https" } else { "http" }),
            ("__scrape_interval__", every.as_str()),
            ("__scrape_timeout__", within.as_str()),
            ("job", JOB),
            ("__meta_ocelli_agent_key", key.as_str()),
            ("__meta_ocelli_agent_region", rec.identity.region.as_str()),
            ("__meta_ocelli_agent_version", rec.version.as_str()),
        ])
        .unwrap_or_default();
        let spec = TargetSpec {
            job: JOB.to_string(),
            labels,
            address: rec.address.clone(),
            path_and_query: "/metrics".into(),
            url: format!(
                "{}://{}/metrics",
                if self.inner.agent_tls.is_some() { "https" } else { "http" },
                rec.address
            ),
            interval,
            timeout,
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            body_limit: self.inner.scrape_body_limit,
            metric_relabel: Arc::default(),
            metric_relabel_configs: Vec::new(),
            tls: self.inner.agent_tls.clone(),
        };
        DynamicTarget { spec, discovered, health }
    }

    /// With a shared store (etcd), takes in what other servers changed: agents they
    /// registered or deleted, and newer records of the others (a later `last_seen` is kept
    /// from either side). Called with the store lock held, so no local change is in between.
    fn refresh(&self, store: &Store, now: i64) {
        if !store.is_shared() {
            return;
        }
        let records = match store.read_all() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared registry; keeping what is known");
                return;
            }
        };
        let mut agents = self.inner.agents.lock();
        let mut seen = HashSet::with_capacity(records.len());
        for r in records {
            let key = r.key();
            seen.insert(key.clone());
            match agents.get_mut(&key) {
                None => {
                    agents.insert(key, Entry::loaded(r, now));
                }
                Some(e) => {
                    let last_seen = e.rec.last_seen_ms.max(r.last_seen_ms);
                    if r.last_seen_ms > e.rec.last_seen_ms {
                        e.clock_from_ms = e.clock_from_ms.max(r.last_seen_ms);
                        e.sticky_unhealthy = false;
                    }
                    e.saved = (r.last_seen_ms, r.healthy);
                    e.rec = Record { last_seen_ms: last_seen, healthy: e.rec.healthy, ..r };
                }
            }
        }
        agents.retain(|k, _| seen.contains(k));
    }

    /// Judges every agent now, saves what changed since the last save, and returns each
    /// agent's `ocelli_agent_up` labels with its health.
    fn save_contacts(&self, now: i64) -> Vec<(Labels, bool)> {
        let n = self.inner.settings.unhealthy_after;
        let guard = self.inner.store.lock();
        if let Some(store) = guard.as_ref() {
            self.refresh(store, now);
        }
        let mut up = Vec::new();
        let mut changed: Vec<Record> = Vec::new();
        {
            let mut agents = self.inner.agents.lock();
            for (key, e) in agents.iter_mut() {
                let s = e.status(now, n);
                if s.healthy != e.rec.healthy {
                    let last_seen = ocelli_model::time::rfc3339(
                        UNIX_EPOCH + Duration::from_millis(s.last_seen_ms.max(0) as u64),
                    );
                    let health = if s.healthy { "healthy" } else { "unhealthy" };
                    tracing::info!(agent = %key, %last_seen, "agent is {health}");
                }
                if s.last_seen_ms > e.rec.last_seen_ms {
                    // a successful scrape: contact, like a heartbeat
                    e.clock_from_ms = e.clock_from_ms.max(s.last_seen_ms);
                    e.sticky_unhealthy = false;
                }
                e.rec.last_seen_ms = e.rec.last_seen_ms.max(s.last_seen_ms);
                e.rec.healthy = s.healthy;
                if (e.rec.last_seen_ms, e.rec.healthy) != e.saved {
                    changed.push(e.rec.clone());
                }
                up.push((up_labels(&e.rec), s.healthy));
            }
        }
        let Some(store) = guard.as_ref() else { return up };
        if changed.is_empty() {
            return up;
        }
        match store.write(&changed.iter().collect::<Vec<_>>(), &[]) {
            Ok(()) => {
                let mut agents = self.inner.agents.lock();
                for r in &changed {
                    if let Some(e) = agents.get_mut(&r.key()) {
                        e.saved = (r.last_seen_ms, r.healthy);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot save agents' last contact; will retry"),
        }
        up
    }

    /// One tick of the `ocelli_agent_up` writer.
    async fn tick(&self, db: &Arc<Db>, prev: &mut HashSet<Labels>) {
        let reg = self.clone();
        let now = now_ms();
        let Ok(up) = ocelli_http::blocking(move || Ok(reg.save_contacts(now))).await else {
            return;
        };
        let mut batch: Vec<SeriesSamples> = Vec::with_capacity(up.len());
        let mut current = HashSet::with_capacity(up.len());
        for (labels, healthy) in up {
            let v = if healthy { 1.0 } else { 0.0 };
            current.insert(labels.clone());
            batch.push(SeriesSamples { labels, samples: vec![Sample::new(now, v)] });
        }
        for gone in prev.difference(&current) {
            batch.push(SeriesSamples {
                labels: gone.clone(),
                samples: vec![Sample::new(now, STALE_NAN)],
            });
        }
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.append(&batch)).await {
            Ok(Ok(())) => *prev = current,
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot store {UP_METRIC}"),
            Err(e) => tracing::warn!(error = %e, "cannot store {UP_METRIC}"),
        }
    }
}

/// Whether the scrape target of an agent changes between two records.
fn scrape_differs(old: &Record, new: &Record) -> bool {
    old.mode != new.mode
        || old.address != new.address
        || old.interval_seconds != new.interval_seconds
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("no agent is registered with key {key:?}"))
}

/// The labels of an agent's `ocelli_agent_up` series.
fn up_labels(r: &Record) -> Labels {
    let id = &r.identity;
    let pairs = [
        ("__name__", UP_METRIC),
        ("csp", id.csp.as_str()),
        ("mode", r.mode.as_str()),
        ("ns", id.ns.as_str()),
        ("region", id.region.as_str()),
        ("service_id", id.service_id.as_str()),
        ("service_type", id.service_type.as_str()),
        ("vm_id", id.vm_id.as_str()),
    ];
    Labels::from_sorted(pairs.iter().map(|(n, v)| ocelli_model::Label::new(*n, *v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(mode: Mode) -> Evidence {
        Evidence {
            mode,
            interval_seconds: 1,
            heard_ms: 10_000,
            clock_from_ms: 10_000,
            sticky_unhealthy: false,
            scraped_ms: None,
            failures: 0,
        }
    }

    #[test]
    fn missed_heartbeats_turn_an_agent_unhealthy() {
        let e = evidence(Mode::Push);
        assert!(judge(e, 13_000, 3).healthy, "3 periods without contact are allowed");
        assert!(!judge(e, 13_001, 3).healthy);
        // a long interval still expects a heartbeat every 30 s
        let long = Evidence { interval_seconds: 600, ..e };
        assert!(judge(long, 10_000 + 90_000, 3).healthy);
        assert!(!judge(long, 10_000 + 90_001, 3).healthy);
        assert_eq!(judge(e, 20_000, 3).last_seen_ms, 10_000);
    }

    #[test]
    fn pull_agents_count_failed_scrapes_and_successes_as_contact() {
        let e = Evidence { scraped_ms: Some(15_000), ..evidence(Mode::Pull) };
        let s = judge(e, 17_000, 3);
        assert!(s.healthy);
        assert_eq!(s.last_seen_ms, 15_000);
        assert!(!judge(Evidence { failures: 3, ..e }, 15_500, 3).healthy);
        assert!(judge(Evidence { failures: 2, ..e }, 15_500, 3).healthy);
        // failures only count in pull mode
        assert!(judge(Evidence { failures: 3, mode: Mode::Push, ..e }, 15_500, 3).healthy);
    }

    #[test]
    fn after_a_restart_health_stays_until_the_grace_period_passes() {
        // last seen at 10 s, the server back at 100 s
        let e = Evidence { clock_from_ms: 100_000, ..evidence(Mode::Push) };
        assert!(judge(e, 102_000, 3).healthy);
        assert!(!judge(e, 103_001, 3).healthy);
        // unhealthy before the restart: stays so until heard from
        let sticky = Evidence { sticky_unhealthy: true, ..e };
        assert!(!judge(sticky, 100_000, 3).healthy);
        assert!(judge(Evidence { scraped_ms: Some(100_500), ..sticky }, 101_000, 3).healthy);
    }

    #[test]
    fn up_labels_are_sorted_and_complete() {
        let hb = agent::parse_heartbeat(
            br#"{"ns":"n","service_type":"k8s","service_id":"s","vm_id":"v","csp":"gcp","region":"r","address":"h:1","version":"1","mode":"pull","interval_seconds":5}"#,
        )
        .unwrap();
        let l = up_labels(&Record::register(&hb, 0));
        assert!(l.validate().is_ok());
        assert_eq!(
            l.to_string(),
            "ocelli_agent_up{csp=\"gcp\", mode=\"pull\", ns=\"n\", region=\"r\", service_id=\"s\", service_type=\"k8s\", vm_id=\"v\"}"
        );
    }
}
