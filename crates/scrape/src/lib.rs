//! Server-pull scraping: the scrape manager, which turns the config's jobs into running scrape
//! loops and keeps them in line with the config file and the discovery files.
//!
//! [`Scraper`] is a cheap handle to the manager (one tokio mutex around its state). The
//! manager computes the wanted targets (static groups and file_sd groups of every job, through
//! [`target::populate`]) and diffs them against the running loops, keyed by job, scrape URL
//! and labels: a target no longer wanted is stopped with end-of-run stale markers; a target
//! whose settings changed (its job's config, its interval or timeout) is restarted and hands
//! its staleness state to the new loop; an unchanged one keeps running untouched; a new one
//! starts. This happens on start, on [`Scraper::reload`] (`POST /-/reload`, SIGHUP) and when
//! the discovery files change (polled every second, fully re-read every `refresh_interval`).
//! [`Scraper::shutdown`] stops every loop with stale markers before the server closes storage.
//!
//! Besides the config's jobs, targets can be set one by one at run time
//! ([`Scraper::set_dynamic`], [`Scraper::remove_dynamic`]): the agent registry
//! (`ocelli-registry`) lists its pull-mode agents this way. Such a target brings its own
//! [`Health`] cell, so its owner sees every scrape's outcome, and it outlives reloads of the
//! config file. Setting or removing one diffs the running loops as a reload does, without
//! re-reading the config or the discovery files, so every other loop runs on untouched.
//!
//! Submodules: [`config`] (the config types and their validation), [`relabel`], [`target`]
//! (labels and URL of a target), [`file_sd`], [`scrape_loop`] (one target's loop) and [`api`]
//! (`GET /api/v1/targets`, as [`router`]; the server routes `POST /-/reload` to every part
//! that reloads).
//!
//! Architecture invariant: the manager knows the server's config only as the compiled jobs it
//! is given and the [`Reload`] that reads them again; it writes to storage and nothing else.
//! Targets are scraped over http or https (`tls_config.ca_file`, or Mozilla's roots).
//! Deliberately absent: client certificates, authentication, proxies, service discovery other
//! than static and file, and OpenMetrics negotiation.

pub mod api;
pub mod config;
pub mod file_sd;
pub mod relabel;
pub mod scrape_loop;
pub mod target;

pub use api::router;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ocelli_model::Labels;
use ocelli_tsdb::Db;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{GlobalConfig, ScrapeConfig, deserialize_jobs};

pub use config::Job;
use file_sd::FileSdState;
use ocelli_http::{Error, Reload, Result};
use scrape_loop::LoopState;
pub use scrape_loop::{Health, Stop};
use target::Outcome;
pub use target::TargetSpec;

/// Compiles the scrape part of a server config: the `[scrape]` defaults and the
/// `[[scrape_configs]]` jobs; relative file_sd paths are resolved against `base` (the folder of
/// the config file), and scraped bodies may decompress to `body_limit` bytes.
pub fn jobs_of(
    global: &GlobalConfig,
    scrape_configs: &[ScrapeConfig],
    base: &Path,
    body_limit: usize,
) -> std::result::Result<Vec<Job>, String> {
    config::compile(global, scrape_configs, base, body_limit)
}

/// Identity of a running target: the same key after a reload is the same target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    job: String,
    url: String,
    labels: Labels,
}

struct Running {
    spec: Arc<TargetSpec>,
    discovered: Labels,
    health: Arc<Mutex<Health>>,
    stop: oneshot::Sender<Stop>,
    handle: JoinHandle<LoopState>,
}

/// A wanted target, before it is matched against the running ones.
struct Wanted {
    key: Key,
    spec: TargetSpec,
    discovered: Labels,
    /// The health cell a dynamic target brings; config targets get a new one.
    health: Option<Arc<Mutex<Health>>>,
}

/// A target set at run time rather than by the config ([`Scraper::set_dynamic`]).
#[derive(Debug)]
pub struct DynamicTarget {
    pub spec: TargetSpec,
    /// What the targets API shows as its discovered labels.
    pub discovered: Labels,
    /// Updated by the target's scrape loop after every scrape.
    pub health: Arc<Mutex<Health>>,
}

struct Manager {
    /// None once shut down.
    db: Option<Arc<Db>>,
    /// Where the `TYPE` / `HELP` / `UNIT` lines of scraped bodies go (`/api/v1/metadata`).
    metadata: Arc<ocelli_storage::MetadataStore>,
    jobs: Vec<Job>,
    /// One entry per job and `file_sd_configs` entry, in job order.
    file_sd: Vec<(String, FileSdState)>,
    running: BTreeMap<Key, Running>,
    dropped: Vec<(String, Labels)>,
    refresher: Option<JoinHandle<()>>,
    /// The jobs to start with, until [`Scraper::begin`].
    pending: Option<Vec<Job>>,
    /// Targets set at run time, by their owner's id.
    dynamic: BTreeMap<String, DynamicTarget>,
}

/// Handle to the scrape manager; clones share it.
#[derive(Clone)]
pub struct Scraper {
    inner: Arc<tokio::sync::Mutex<Manager>>,
    /// Reads the config file's scrape part again on reload.
    reload: Reload<Vec<Job>>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").field("reloads", &self.reload.is_some()).finish_non_exhaustive()
    }
}

impl Scraper {
    /// A manager for `jobs` (from [`jobs_of`]); nothing runs until [`Scraper::begin`].
    /// `reload` reads the jobs again for [`Scraper::reload`].
    pub fn new(
        db: Arc<Db>,
        metadata: Arc<ocelli_storage::MetadataStore>,
        jobs: Vec<Job>,
        reload: Reload<Vec<Job>>,
    ) -> Scraper {
        let manager = Manager {
            db: Some(db),
            metadata,
            jobs: Vec::new(),
            file_sd: Vec::new(),
            running: BTreeMap::new(),
            dropped: Vec::new(),
            refresher: None,
            pending: Some(jobs),
            dynamic: BTreeMap::new(),
        };
        Scraper { inner: Arc::new(tokio::sync::Mutex::new(manager)), reload }
    }

    /// Starts the scrape loops and the discovery file poller (once; later calls do nothing).
    pub async fn begin(&self) {
        let mut m = self.inner.lock().await;
        let Some(jobs) = m.pending.take() else { return };
        m.apply(jobs).await;
        let inner = self.inner.clone();
        m.refresher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(file_sd::POLL_EVERY).await;
                let mut m = inner.lock().await;
                if m.db.is_none() {
                    return;
                }
                m.poll_file_sd().await;
            }
        }));
    }

    /// Reads the config file again and applies its scrape part. An invalid file changes
    /// nothing and is returned as the error.
    pub async fn reload(&self) -> Result<()> {
        let Some(read) = self.reload.clone() else {
            return Err(ocelli_http::nothing_to_reload());
        };
        let jobs = tokio::task::spawn_blocking(move || read())
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let mut m = self.inner.lock().await;
        if m.db.is_none() {
            return Err(Error::Internal("the server is shutting down".into()));
        }
        m.apply(jobs).await;
        tracing::info!(
            active = m.running.len(),
            dropped = m.dropped.len(),
            "scrape configuration reloaded"
        );
        Ok(())
    }

    /// Sets (adds or replaces) the run-time target `id`. A changed scrape setting restarts its
    /// loop without a gap; a changed URL or label set is a new target, and the old one stops
    /// with stale markers. Before [`Scraper::begin`] it is only remembered. Pass the same
    /// health cell again for the same target: a loop that goes on untouched keeps its own.
    pub async fn set_dynamic(&self, id: &str, target: DynamicTarget) {
        let mut m = self.inner.lock().await;
        if m.db.is_none() {
            return;
        }
        m.dynamic.insert(id.to_string(), target);
        if m.pending.is_none() {
            m.sync().await;
        }
    }

    /// Removes the run-time target `id`, stopping its loop the way `how` says (`Stop::Stale`,
    /// or `Stop::KeepSeries` when its series go on arriving another way).
    pub async fn remove_dynamic(&self, id: &str, how: Stop) {
        let mut m = self.inner.lock().await;
        let Some(gone) = m.dynamic.remove(id) else { return };
        let key = Key { job: gone.spec.job, url: gone.spec.url, labels: gone.spec.labels };
        if let Some(r) = m.running.remove(&key) {
            stop_all(std::iter::once(r), how).await;
        }
        // a config job may want the same target
        m.sync().await;
    }

    /// Stops every loop, writing end-of-run stale markers, and lets go of storage.
    pub async fn shutdown(&self) {
        let mut m = self.inner.lock().await;
        if let Some(r) = m.refresher.take() {
            r.abort();
        }
        let running = std::mem::take(&mut m.running);
        stop_all(running.into_values(), Stop::Stale).await;
        m.db = None;
    }
}

/// Stops loops, all signalled before any is waited for.
async fn stop_all(loops: impl Iterator<Item = Running>, how: Stop) -> Vec<LoopState> {
    let handles: Vec<JoinHandle<LoopState>> = loops
        .map(|r| {
            let _ = r.stop.send(how);
            r.handle
        })
        .collect();
    let mut states = Vec::with_capacity(handles.len());
    for h in handles {
        states.push(h.await.unwrap_or_default());
    }
    states
}

impl Manager {
    /// Replaces the jobs and brings the running loops in line.
    async fn apply(&mut self, jobs: Vec<Job>) {
        let mut old_sd = std::mem::take(&mut self.file_sd);
        for job in &jobs {
            for sd in &job.file_sd {
                // keep what is known of an unchanged discovery config, so it is not re-read
                let state = old_sd
                    .iter()
                    .position(|(name, st)| *name == job.name && st.config == *sd)
                    .map(|i| old_sd.swap_remove(i).1)
                    .unwrap_or_else(|| FileSdState::new(sd.clone()));
                self.file_sd.push((job.name.clone(), state));
            }
        }
        self.jobs = jobs;
        self.poll_files();
        self.sync().await;
    }

    /// Polls the discovery files; returns whether any group changed.
    fn poll_files(&mut self) -> bool {
        let now = Instant::now();
        let mut changed = false;
        for (job, st) in &mut self.file_sd {
            let (c, errors) = st.poll(now);
            changed |= c;
            for e in errors {
                tracing::warn!(%job, error = %e, "file discovery");
            }
        }
        changed
    }

    async fn poll_file_sd(&mut self) {
        if self.poll_files() {
            self.sync().await;
        }
    }

    /// The targets the jobs and discovery files ask for, and the dropped ones.
    fn wanted(&self) -> (Vec<Wanted>, Vec<(String, Labels)>) {
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut seen: HashSet<Key> = HashSet::new();
        let mut dropped = Vec::new();
        for job in &self.jobs {
            let sd_groups = self
                .file_sd
                .iter()
                .filter(|(name, _)| *name == job.name)
                .flat_map(|(_, st)| st.groups());
            for group in job.static_groups.iter().chain(sd_groups) {
                for t in &group.targets {
                    match target::populate(job, group, t) {
                        Ok(Outcome::Active { spec, discovered }) => {
                            let key = Key {
                                job: job.name.clone(),
                                url: spec.url.clone(),
                                labels: spec.labels.clone(),
                            };
                            // the same target twice is scraped once
                            if seen.insert(key.clone()) {
                                wanted.push(Wanted { key, spec, discovered, health: None });
                            }
                        }
                        Ok(Outcome::Dropped { discovered }) => {
                            dropped.push((job.name.clone(), discovered))
                        }
                        Err(e) => {
                            let job = &job.name;
                            tracing::warn!(%job, target = ?t, error = %e, "target skipped")
                        }
                    }
                }
            }
        }
        for d in self.dynamic.values() {
            let s = &d.spec;
            let key = Key { job: s.job.clone(), url: s.url.clone(), labels: s.labels.clone() };
            if seen.insert(key.clone()) {
                let (spec, discovered) = (s.clone(), d.discovered.clone());
                wanted.push(Wanted { key, spec, discovered, health: Some(d.health.clone()) });
            }
        }
        (wanted, dropped)
    }

    /// Starts, restarts and stops loops so that the running ones are the wanted ones.
    async fn sync(&mut self) {
        let Some(db) = self.db.clone() else { return };
        let metadata = self.metadata.clone();
        let (wanted, dropped) = self.wanted();
        self.dropped = dropped;
        let mut next: BTreeMap<Key, Running> = BTreeMap::new();
        let mut restart: Vec<(Wanted, Running)> = Vec::new();
        let mut start: Vec<Wanted> = Vec::new();
        for w in wanted {
            match self.running.remove(&w.key) {
                Some(mut r) if r.spec.same_as(&w.spec) => {
                    r.discovered = w.discovered;
                    next.insert(w.key, r);
                }
                Some(r) => restart.push((w, r)),
                None => start.push(w),
            }
        }
        let gone = std::mem::take(&mut self.running);
        stop_all(gone.into_values(), Stop::Stale).await;
        for (w, r) in restart {
            let health = w.health.clone().unwrap_or_else(|| r.health.clone());
            let state =
                stop_all(std::iter::once(r), Stop::Handover).await.pop().unwrap_or_default();
            next.insert(w.key.clone(), launch(&db, &metadata, w, health, state));
        }
        for w in start {
            let health = w.health.clone().unwrap_or_default();
            next.insert(w.key.clone(), launch(&db, &metadata, w, health, LoopState::default()));
        }
        self.running = next;
    }
}

fn launch(
    db: &Arc<Db>,
    metadata: &Arc<ocelli_storage::MetadataStore>,
    w: Wanted,
    health: Arc<Mutex<Health>>,
    state: LoopState,
) -> Running {
    let spec = Arc::new(w.spec);
    let (stop, rx) = oneshot::channel();
    let sinks = scrape_loop::Sinks { db: db.clone(), metadata: metadata.clone() };
    let handle = tokio::spawn(scrape_loop::run(spec.clone(), sinks, health.clone(), rx, state));
    Running { spec, discovered: w.discovered, health, stop, handle }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(text: &str) -> Vec<Job> {
        config::tests::parse(text).unwrap()
    }

    fn job(targets: &str, extra: &str) -> String {
        // an interval of an hour: the loops wait for their first scrape the whole test
        format!(
            "[[scrape_configs]]\njob_name = \"a\"\nscrape_interval = \"1h\"\n{extra}\n[[scrape_configs.static_configs]]\ntargets = [{targets}]\n"
        )
    }

    async fn specs(s: &Scraper) -> Vec<Arc<TargetSpec>> {
        s.inner.lock().await.running.values().map(|r| r.spec.clone()).collect()
    }

    /// A scraper over a fresh storage engine, configured by `text`.
    fn scraper(text: &str) -> (tempfile::TempDir, Arc<Db>, Scraper) {
        let dir = tempfile::tempdir().unwrap();
        let opts = ocelli_tsdb::Options { background: false, ..Default::default() };
        let db = Arc::new(Db::open(dir.path(), opts).unwrap().0);
        let s = Scraper::new(db.clone(), Arc::default(), jobs(text), None);
        (dir, db, s)
    }

    async fn apply(s: &Scraper, text: &str) {
        s.inner.lock().await.apply(jobs(text)).await;
    }

    #[tokio::test]
    async fn reload_restarts_only_changed_targets_and_never_scraped_ones_leave_no_trace() {
        let (_dir, db, s) = scraper(&job("\"127.0.0.1:1\"", ""));
        assert!(specs(&s).await.is_empty(), "nothing runs before begin");
        s.begin().await;
        let first = specs(&s).await;
        assert_eq!(first.len(), 1);

        // a target added to the job: the existing loop goes on untouched
        apply(&s, &job("\"127.0.0.1:1\", \"127.0.0.1:2\"", "")).await;
        let second = specs(&s).await;
        assert_eq!(second.len(), 2);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        // a setting that changes how it is scraped: both restart
        apply(&s, &job("\"127.0.0.1:1\", \"127.0.0.1:2\"", "sample_limit = 10")).await;
        let third = specs(&s).await;
        assert_eq!(third.len(), 2);
        assert!(!Arc::ptr_eq(&second[0], &third[0]) && !Arc::ptr_eq(&second[1], &third[1]));
        assert_eq!(third[0].sample_limit, 10);
        // new labels are a new target
        apply(
            &s,
            &job(
                "\"127.0.0.1:1\"",
                "[[scrape_configs.relabel_configs]]\ntarget_label = \"x\"\nreplacement = \"y\"",
            ),
        )
        .await;
        let fourth = specs(&s).await;
        assert_eq!(fourth.len(), 1);
        assert_eq!(fourth[0].labels.get("x"), Some("y"));

        apply(&s, "").await;
        assert!(specs(&s).await.is_empty());
        s.shutdown().await;
        // no target was ever scraped, so no stale marker was written for any
        let all = db
            .select(
                &[ocelli_model::Matcher::new(ocelli_model::MatchOp::RegexMatch, "__name__", ".+")
                    .unwrap()],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert!(all.is_empty(), "{all:?}");
    }

    fn dynamic(address: &str, interval_s: u64, health: &Arc<Mutex<Health>>) -> DynamicTarget {
        let spec = TargetSpec {
            job: "dyn".into(),
            labels: Labels::from_pairs([("instance", address), ("job", "dyn")]).unwrap(),
            address: address.into(),
            path_and_query: "/metrics".into(),
            url: format!("http://{address}/metrics"),
            interval: std::time::Duration::from_secs(interval_s),
            timeout: std::time::Duration::from_secs(1),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            body_limit: 1000,
            metric_relabel: Arc::default(),
            metric_relabel_configs: Vec::new(),
            tls: None,
        };
        DynamicTarget { spec, discovered: Labels::default(), health: health.clone() }
    }

    async fn loop_health(s: &Scraper, job: &str) -> Vec<Arc<Mutex<Health>>> {
        let m = s.inner.lock().await;
        m.running.values().filter(|r| r.spec.job == job).map(|r| r.health.clone()).collect()
    }

    #[tokio::test]
    async fn dynamic_targets_outlive_reloads_and_keep_their_health_cell() {
        let (_dir, _db, s) = scraper(&job("\"127.0.0.1:1\"", ""));
        let cell: Arc<Mutex<Health>> = Arc::default();
        s.set_dynamic("a", dynamic("127.0.0.1:2", 3600, &cell)).await;
        assert!(specs(&s).await.is_empty(), "nothing runs before begin");
        s.begin().await;
        assert_eq!(specs(&s).await.len(), 2);
        let h = loop_health(&s, "dyn").await;
        assert!(h.len() == 1 && Arc::ptr_eq(&h[0], &cell), "the loop writes the owner's cell");

        // a reload that drops every configured job leaves the dynamic target running
        apply(&s, "").await;
        let left = specs(&s).await;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].job, "dyn");
        // a new interval restarts it with the same cell; a new address replaces it
        s.set_dynamic("a", dynamic("127.0.0.1:2", 1800, &cell)).await;
        let now = specs(&s).await;
        assert!(now.len() == 1 && !Arc::ptr_eq(&now[0], &left[0]));
        assert_eq!(now[0].interval, std::time::Duration::from_secs(1800));
        assert!(Arc::ptr_eq(&loop_health(&s, "dyn").await[0], &cell));
        s.set_dynamic("a", dynamic("127.0.0.1:3", 1800, &cell)).await;
        assert_eq!(specs(&s).await[0].address, "127.0.0.1:3");
        assert_eq!(specs(&s).await.len(), 1);

        s.remove_dynamic("a", Stop::KeepSeries).await;
        assert!(specs(&s).await.is_empty());
        // removing what is not there does nothing
        s.remove_dynamic("a", Stop::Stale).await;
        s.shutdown().await;
    }
}
