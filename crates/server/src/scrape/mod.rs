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
//! Submodules: [`config`] (the config types and their validation), [`relabel`], [`target`]
//! (labels and URL of a target), [`file_sd`], [`scrape_loop`] (one target's loop) and [`api`]
//! (`/api/v1/targets`, `/-/reload`). Deliberately absent: https, authentication, proxies,
//! service discovery other than static and file, and OpenMetrics negotiation.

pub mod api;
pub mod config;
pub mod file_sd;
pub mod relabel;
pub mod scrape_loop;
pub mod target;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ocelli_model::Labels;
use ocelli_tsdb::Db;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{GlobalConfig, ScrapeConfig, deserialize_jobs};

use crate::{Config, Error, Result};
use config::Job;
use file_sd::FileSdState;
use scrape_loop::{Health, LoopState, Stop};
use target::{Outcome, TargetSpec};

/// Compiles the scrape part of `config`; relative file_sd paths are resolved against the
/// folder of the file the config came from.
pub fn jobs_of(config: &Config) -> std::result::Result<Vec<Job>, String> {
    let base = config
        .source
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    config::compile(
        &config.scrape,
        &config.scrape_configs,
        &base,
        config.ingest.max_decompressed_bytes,
    )
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
}

struct Manager {
    /// None once shut down.
    db: Option<Arc<Db>>,
    /// Where the `TYPE` / `HELP` / `UNIT` lines of scraped bodies go (`/api/v1/metadata`).
    metadata: Arc<crate::query::MetadataStore>,
    jobs: Vec<Job>,
    /// One entry per job and `file_sd_configs` entry, in job order.
    file_sd: Vec<(String, FileSdState)>,
    running: BTreeMap<Key, Running>,
    dropped: Vec<(String, Labels)>,
    refresher: Option<JoinHandle<()>>,
    /// The jobs to start with, until [`Scraper::begin`].
    pending: Option<Vec<Job>>,
}

/// Handle to the scrape manager; clones share it.
#[derive(Clone)]
pub struct Scraper {
    inner: Arc<tokio::sync::Mutex<Manager>>,
    /// The config file to read again on reload.
    source: Option<PathBuf>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Scraper {
    /// Checks the scrape part of `config`; nothing runs until [`Scraper::begin`].
    pub fn new(
        db: Arc<Db>,
        metadata: Arc<crate::query::MetadataStore>,
        config: &Config,
    ) -> Result<Scraper> {
        let jobs = jobs_of(config).map_err(|detail| Error::Config {
            path: config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            detail,
        })?;
        let manager = Manager {
            db: Some(db),
            metadata,
            jobs: Vec::new(),
            file_sd: Vec::new(),
            running: BTreeMap::new(),
            dropped: Vec::new(),
            refresher: None,
            pending: Some(jobs),
        };
        Ok(Scraper {
            inner: Arc::new(tokio::sync::Mutex::new(manager)),
            source: config.source.clone(),
        })
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
        let Some(path) = self.source.clone() else {
            return Err(Error::BadData(
                "the server was started without a config file (--config): nothing to reload".into(),
            ));
        };
        let config = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let jobs = jobs_of(&config).map_err(|detail| Error::Config {
            path: config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            detail,
        })?;
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
                                wanted.push(Wanted { key, spec, discovered });
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
            let health = r.health.clone();
            let state =
                stop_all(std::iter::once(r), Stop::Handover).await.pop().unwrap_or_default();
            next.insert(w.key.clone(), launch(&db, &metadata, w, health, state));
        }
        for w in start {
            next.insert(
                w.key.clone(),
                launch(&db, &metadata, w, Arc::default(), LoopState::default()),
            );
        }
        self.running = next;
    }
}

fn launch(
    db: &Arc<Db>,
    metadata: &Arc<crate::query::MetadataStore>,
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

/// Runs `reload` on every SIGHUP until the returned task is aborted; an invalid config is
/// logged and the running one kept.
#[cfg(unix)]
pub fn reload_on_sighup(scraper: Scraper) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            if let Err(e) = scraper.reload().await {
                tracing::error!(error = %e, "reload failed; the running configuration is kept");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "test").unwrap()
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

    async fn apply(s: &Scraper, text: &str) {
        let jobs = jobs_of(&config(text)).unwrap();
        s.inner.lock().await.apply(jobs).await;
    }

    #[tokio::test]
    async fn reload_restarts_only_changed_targets_and_never_scraped_ones_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ocelli_tsdb::Options { background: false, ..Default::default() };
        let db = Arc::new(Db::open(dir.path(), opts).unwrap().0);
        let s =
            Scraper::new(db.clone(), Arc::default(), &config(&job("\"127.0.0.1:1\"", ""))).unwrap();
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
}
