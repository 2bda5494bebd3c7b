//! The rule manager: recording and alerting rules evaluated on the PromQL engine, with
//! Prometheus 2.42's semantics (its `rules` package).
//!
//! Groups come in by *source*: each rule file is one (its path), and each threshold alarm
//! another (`alarm:<id>`, set by [`crate::alarms`]). [`RuleManager::set_source`]
//! validates and replaces all groups of one source at once; the rule files of the `[rules]`
//! config section are loaded at start and again on [`RuleManager::reload`] (`POST /-/reload`,
//! SIGHUP), all files or none: a broken file keeps every running rule as it was, and the
//! error (file, line, group, rule) is logged, returned and exported as
//! `ocelli_rules_last_reload_successful 0`. A group whose definition is unchanged keeps
//! running untouched; a changed one is restarted with its alerts and series carried over
//! (matched by rule name and labels); a removed one writes stale markers for its series.
//!
//! Each group runs on its own tokio task ([`group::Group::run`]); evaluation itself runs on
//! the blocking pool. Alerts go to an [`AlertSink`] and state changes to a [`HistorySink`],
//! both given in [`Hooks`]. Groups set before [`RuleManager::begin`] restore their alerts'
//! `for` state from `ALERTS_FOR_STATE` after their second evaluation; groups set later start
//! fresh, as in Prometheus.
//!
//! Submodules: [`file`] (rule-file YAML), [`group`] (a group and its evaluation), [`alert`]
//! (the alert state machine), [`template`] (label and annotation templates) with [`gofmt`]
//! (Go's number formatting), and [`api`] (`/api/v1/rules`, `/api/v1/alerts` and the
//! `/metrics` lines). Deliberately absent: external labels (templates see an empty
//! `$externalLabels`), query functions in templates, and native histograms.

pub mod alert;
pub mod api;
pub mod file;
pub mod gofmt;
pub mod group;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ocelli_tsdb::Db;
use parking_lot::RwLock;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::{Alert, AlertSink, GroupSpec, HistoryEvent, HistorySink};
use group::Group;
use ocelli_http::{Error, Reload, Result};
use ocelli_model::time::now_ms;

/// The `[rules]` section of the server config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Rule files: paths or patterns with `*`, `?`, `[...]` in the file name, relative to the
    /// config file's folder.
    pub files: Vec<String>,
    /// How often groups without their own `interval` are evaluated. Default "1m".
    pub evaluation_interval: String,
    /// Least time between two sends of the same firing alert. Default "1m".
    pub resend_delay: String,
    /// Longest downtime after which the `for` state of alerts is still restored. Default "1h".
    pub outage_tolerance: String,
    /// Least time a restored alert waits before it fires again; rules with a shorter `for`
    /// are not restored. Default "10m".
    pub for_grace_period: String,
    /// The URL this server is reached at, for alerts' generator URLs and `$externalURL`.
    /// Default: `http://` and the listen address.
    pub external_url: String,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            evaluation_interval: "1m".into(),
            resend_delay: "1m".into(),
            outage_tolerance: "1h".into(),
            for_grace_period: "10m".into(),
            external_url: String::new(),
        }
    }
}

/// The `[rules]` settings, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub evaluation_interval: Duration,
    pub resend_delay: Duration,
    pub outage_tolerance: Duration,
    pub for_grace_period: Duration,
    /// Without a trailing slash; empty until known.
    pub external_url: String,
}

impl RulesConfig {
    /// Checks the section; errors name the field.
    pub fn settings(&self) -> std::result::Result<Settings, String> {
        let dur =
            |field: &str, v: &str| parse_duration(v).map_err(|e| format!("rules.{field}: {e}"));
        let evaluation_interval = dur("evaluation_interval", &self.evaluation_interval)?;
        if evaluation_interval.is_zero() {
            return Err("rules.evaluation_interval: must be more than 0".into());
        }
        let url = self.external_url.trim_end_matches('/');
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("rules.external_url: {url:?} is not an http:// or https:// URL"));
        }
        Ok(Settings {
            evaluation_interval,
            resend_delay: dur("resend_delay", &self.resend_delay)?,
            outage_tolerance: dur("outage_tolerance", &self.outage_tolerance)?,
            for_grace_period: dur("for_grace_period", &self.for_grace_period)?,
            external_url: url.to_string(),
        })
    }
}

/// A Prometheus duration (`30s`, `1m30s`, `2h`, `1d`, or `0`), as rule files write them.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 30s, 5m, 1h30m)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    // the query API's parser also takes bare seconds; a rule file may not
    if s.parse::<f64>().is_ok() {
        return Err(bad());
    }
    let ms = ocelli_model::time::parse_api_duration(s).filter(|ms| *ms >= 0).ok_or_else(bad)?;
    Ok(Duration::from_millis(ms as u64))
}

/// A problem with a rule group: where (a file and line, or a source), which group and rule,
/// and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub at: String,
    pub group: Option<String>,
    pub rule: Option<String>,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.at)?;
        match (&self.group, &self.rule) {
            (Some(g), Some(r)) => write!(f, ": group {g:?}, rule {r:?}")?,
            (Some(g), None) => write!(f, ": group {g:?}")?,
            (None, Some(r)) => write!(f, ": rule {r:?}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RuleError {}

/// Where the rule manager sends alerts and state changes.
#[derive(Clone)]
pub struct Hooks {
    pub alert_sink: Arc<dyn AlertSink>,
    pub history: Arc<dyn HistorySink>,
}

impl Default for Hooks {
    /// Alerts and state changes go nowhere (until the notifier and the history are wired in).
    fn default() -> Self {
        Hooks { alert_sink: Arc::new(NullSink), history: Arc::new(NullHistory) }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// An [`AlertSink`] that drops every alert.
#[derive(Debug, Default)]
pub struct NullSink;

impl AlertSink for NullSink {
    fn send(&self, _alerts: Vec<Alert>) {}
}

/// A [`HistorySink`] that keeps nothing.
#[derive(Debug, Default)]
pub struct NullHistory;

impl HistorySink for NullHistory {
    fn record(&self, _events: Vec<HistoryEvent>) {}
}

/// What evaluations need, shared by every group.
pub struct Env {
    /// `None` once the manager has shut down (so storage can close).
    db: RwLock<Option<Arc<Db>>>,
    pub engine: Arc<ocelli_promql::Engine>,
    pub sink: Arc<dyn AlertSink>,
    pub history: Arc<dyn HistorySink>,
    pub settings: RwLock<Settings>,
}

impl Env {
    /// The storage, unless the manager has shut down.
    pub fn db(&self) -> Option<Arc<Db>> {
        self.db.read().clone()
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The outcome of the last load of the rule files.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    pub successful: bool,
    /// When the files were last loaded without error (ms since the epoch; 0: never).
    pub last_success_ms: i64,
    pub last_error: Option<String>,
}

/// A group and its task.
struct Running {
    group: Arc<Group>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct State {
    /// By (source, group name).
    groups: BTreeMap<(String, String), Running>,
    started: bool,
    closed: bool,
    /// Rule-file patterns and the folder they are relative to.
    patterns: Vec<String>,
    base: PathBuf,
    /// Sources that came from rule files (the others are set through `set_source`).
    file_sources: BTreeSet<String>,
}

struct Inner {
    env: Arc<Env>,
    state: tokio::sync::Mutex<State>,
    /// Every group, sorted by source and name, for the API without waiting on `state`.
    listing: RwLock<Vec<Arc<Group>>>,
    /// The config file to read the `[rules]` section from again on reload.
    /// Reads `[rules]` and the folder relative patterns are read from again, on reload.
    source: Reload<(RulesConfig, PathBuf)>,
    reload: parking_lot::Mutex<ReloadStatus>,
    /// The external URL used where the config names none (set at begin).
    default_url: parking_lot::Mutex<String>,
}

/// Handle to the rule manager; clones share it.
#[derive(Clone)]
pub struct RuleManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RuleManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleManager").field("env", &self.inner.env).finish_non_exhaustive()
    }
}

impl RuleManager {
    /// Checks the `[rules]` section; nothing runs until [`RuleManager::begin`]. Relative
    /// rule-file patterns are read from `base` (the config file's folder); `source` reads
    /// both again for [`RuleManager::reload`].
    pub fn new(
        db: Arc<Db>,
        engine: Arc<ocelli_promql::Engine>,
        hooks: Hooks,
        config: &RulesConfig,
        base: PathBuf,
        source: Reload<(RulesConfig, PathBuf)>,
    ) -> Result<RuleManager> {
        let settings =
            config.settings().map_err(|detail| Error::Config { path: "rules".into(), detail })?;
        let env = Env {
            db: RwLock::new(Some(db)),
            engine,
            sink: hooks.alert_sink,
            history: hooks.history,
            settings: RwLock::new(settings),
        };
        let state = State {
            groups: BTreeMap::new(),
            started: false,
            closed: false,
            patterns: config.files.clone(),
            base,
            file_sources: BTreeSet::new(),
        };
        Ok(RuleManager {
            inner: Arc::new(Inner {
                env: Arc::new(env),
                state: tokio::sync::Mutex::new(state),
                listing: RwLock::new(Vec::new()),
                source,
                reload: parking_lot::Mutex::new(ReloadStatus::default()),
                default_url: parking_lot::Mutex::new(String::new()),
            }),
        })
    }

    /// Replaces every group of `source` with `groups` (their `source` fields are set to it),
    /// after checking them all; on any problem nothing changes and every problem is returned.
    /// An empty `groups` removes the source.
    pub async fn set_source(
        &self,
        source: &str,
        groups: Vec<GroupSpec>,
    ) -> std::result::Result<(), Vec<RuleError>> {
        let mut st = self.inner.state.lock().await;
        if st.closed {
            let message = "the rule manager is shut down".to_string();
            return Err(vec![RuleError { at: source.into(), group: None, rule: None, message }]);
        }
        let interval = self.inner.env.settings.read().evaluation_interval;
        let compiled = compile(source, groups, interval, st.started)?;
        self.apply(&mut st, vec![(source.to_string(), compiled)]).await;
        Ok(())
    }

    /// Removes every group of `source`, writing stale markers for their series.
    pub async fn remove_source(&self, source: &str) {
        let _ = self.set_source(source, Vec::new()).await;
    }

    /// Swaps in new groups per source: unchanged ones keep running, changed ones take over
    /// their predecessor's state, and the ones gone stop and mark their series stale.
    async fn apply(&self, st: &mut State, updates: Vec<(String, Vec<Group>)>) {
        let env = &self.inner.env;
        for (source, groups) in updates {
            let keys: Vec<(String, String)> =
                st.groups.keys().filter(|k| k.0 == source).cloned().collect();
            let mut old: BTreeMap<String, Running> =
                keys.into_iter().filter_map(|k| st.groups.remove(&k).map(|r| (k.1, r))).collect();
            for g in groups {
                let key = (source.clone(), g.spec.name.clone());
                match old.remove(&g.spec.name) {
                    Some(r) if r.group.spec == g.spec && r.group.interval == g.interval => {
                        st.groups.insert(key, r);
                    }
                    prev => {
                        let g = Arc::new(g);
                        if let Some(prev) = prev {
                            stop(prev.stop, prev.task, &prev.group).await;
                            g.copy_state(&prev.group);
                        }
                        let run = self.running(g, st.started);
                        st.groups.insert(key, run);
                    }
                }
            }
            for r in old.into_values() {
                stop(r.stop, r.task, &r.group).await;
                let (g, e, now) = (r.group, env.clone(), now_ms());
                let _ = tokio::task::spawn_blocking(move || g.mark_stale(&e, now)).await;
            }
        }
        *self.inner.listing.write() = st.groups.values().map(|r| r.group.clone()).collect();
    }

    fn running(&self, group: Arc<Group>, start: bool) -> Running {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = start.then(|| tokio::spawn(group.clone().run(self.inner.env.clone(), rx)));
        Running { group, stop, task }
    }

    /// Loads the rule files the config names (at start; a problem is an error).
    pub async fn load_files(&self) -> Result<()> {
        let mut st = self.inner.state.lock().await;
        let (patterns, base) = (st.patterns.clone(), st.base.clone());
        let settings = self.inner.env.settings.read().clone();
        self.load_into(&mut st, patterns, base, settings).await
    }

    /// Reads the config file's `[rules]` section and the rule files again and applies them;
    /// on any problem the running rules stay as they were and the problem is returned.
    pub async fn reload(&self) -> Result<()> {
        let mut st = self.inner.state.lock().await;
        if st.closed {
            return Err(Error::Unavailable("the rule manager is shut down".into()));
        }
        let (mut patterns, mut base) = (st.patterns.clone(), st.base.clone());
        let mut settings = self.inner.env.settings.read().clone();
        if let Some(read) = self.inner.source.clone() {
            let (config, config_base) = match tokio::task::spawn_blocking(move || read()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(self.failed(e.to_string())),
                Err(e) => return Err(Error::Internal(e.to_string())),
            };
            settings = match config.settings() {
                Ok(s) => s,
                Err(e) => return Err(self.failed(e)),
            };
            if settings.external_url.is_empty() {
                settings.external_url = self.inner.default_url.lock().clone();
            }
            patterns = config.files.clone();
            base = config_base;
        }
        self.load_into(&mut st, patterns, base, settings).await
    }

    /// Records a failed load and turns it into the error returned.
    fn failed(&self, detail: String) -> Error {
        tracing::error!(error = %detail, "loading rule files failed; the running rules are kept");
        let mut r = self.inner.reload.lock();
        r.successful = false;
        r.last_error = Some(detail.clone());
        Error::BadData(format!("loading rule files failed: {detail}"))
    }

    /// Loads the rule files and, if every one is valid, applies them and `settings`.
    async fn load_into(
        &self,
        st: &mut State,
        patterns: Vec<String>,
        base: PathBuf,
        settings: Settings,
    ) -> Result<()> {
        let interval = settings.evaluation_interval;
        let (p, b) = (patterns.clone(), base.clone());
        let files = tokio::task::spawn_blocking(move || file::load(&p, &b, interval))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let files = match files {
            Ok(f) => f,
            Err(errs) => {
                let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
                return Err(self.failed(text.join("; ")));
            }
        };
        let mut updates = Vec::new();
        for (source, specs) in &files {
            match compile(source, specs.clone(), interval, st.started) {
                Ok(g) => updates.push((source.clone(), g)),
                Err(errs) => {
                    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
                    return Err(self.failed(text.join("; ")));
                }
            }
        }
        for gone in st.file_sources.iter().filter(|s| !files.contains_key(*s)) {
            updates.push((gone.clone(), Vec::new()));
        }
        *self.inner.env.settings.write() = settings;
        st.file_sources = files.keys().cloned().collect();
        st.patterns = patterns;
        st.base = base;
        self.apply(st, updates).await;
        let mut r = self.inner.reload.lock();
        *r = ReloadStatus { successful: true, last_success_ms: now_ms(), last_error: None };
        tracing::info!(files = files.len(), "rule files loaded");
        Ok(())
    }

    /// Starts evaluating (once). `listen` gives the default external URL.
    pub async fn begin(&self, listen: std::net::SocketAddr) {
        let mut st = self.inner.state.lock().await;
        if st.started || st.closed {
            return;
        }
        st.started = true;
        let url = format!("http://{listen}");
        *self.inner.default_url.lock() = url.clone();
        {
            let mut s = self.inner.env.settings.write();
            if s.external_url.is_empty() {
                s.external_url = url;
            }
        }
        for r in st.groups.values_mut() {
            let rx = r.stop.subscribe();
            r.task = Some(tokio::spawn(r.group.clone().run(self.inner.env.clone(), rx)));
        }
    }

    /// Stops every group (an evaluation in progress finishes first). Series are not marked
    /// stale: the alerts' `for` state is restored from them after a restart.
    pub async fn shutdown(&self) {
        let mut st = self.inner.state.lock().await;
        st.closed = true;
        for r in std::mem::take(&mut st.groups).into_values() {
            stop(r.stop, r.task, &r.group).await;
        }
        self.inner.listing.write().clear();
        *self.inner.env.db.write() = None;
    }

    /// Every group, sorted by source and name.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.inner.listing.read().clone()
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.inner.reload.lock().clone()
    }
}

/// Checks and compiles the groups of one source (their `source` set to it); group names must
/// be unique in it.
fn compile(
    source: &str,
    groups: Vec<GroupSpec>,
    interval: Duration,
    started: bool,
) -> std::result::Result<Vec<Group>, Vec<RuleError>> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for mut spec in groups {
        spec.source = source.to_string();
        if !names.insert(spec.name.clone()) {
            errs.push(RuleError {
                at: source.into(),
                group: None,
                rule: None,
                message: format!("group name {:?} is repeated in the same source", spec.name),
            });
        }
        match Group::compile(spec.clone(), interval, started) {
            Ok(g) => out.push(g),
            Err(e) => errs.extend(group::located(&spec, source, e)),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

async fn stop(tx: tokio::sync::watch::Sender<bool>, task: Option<JoinHandle<()>>, g: &Group) {
    g.stopping.store(true, Ordering::Relaxed);
    let _ = tx.send(true);
    if let Some(t) = task
        && let Err(e) = t.await
    {
        tracing::error!(group = %g.key(), error = %e, "rule group task failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_rule_files_write_them() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("5"),
            Err("invalid duration \"5\" (use e.g. 30s, 5m, 1h30m)".to_string())
        );
        assert!(parse_duration("-1m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn config_section_is_checked() {
        let c = RulesConfig::default();
        let s = c.settings().unwrap();
        assert_eq!(s.evaluation_interval, Duration::from_secs(60));
        assert_eq!(s.for_grace_period, Duration::from_secs(600));
        let bad = RulesConfig { resend_delay: "soon".into(), ..RulesConfig::default() };
        assert_eq!(
            bad.settings().unwrap_err(),
            "rules.resend_delay: invalid duration \"soon\" (use e.g. 30s, 5m, 1h30m)"
        );
        let bad = RulesConfig { evaluation_interval: "0".into(), ..RulesConfig::default() };
        assert_eq!(bad.settings().unwrap_err(), "rules.evaluation_interval: must be more than 0");
    }

    #[test]
    fn errors_read_as_file_line_group_rule() {
        let e = RuleError {
            at: "rules/node.yml:14".into(),
            group: Some("node".into()),
            rule: Some("HighLoad".into()),
            message: "expr: unexpected end of input".into(),
        };
        assert_eq!(
            e.to_string(),
            "rules/node.yml:14: group \"node\", rule \"HighLoad\": expr: unexpected end of input"
        );
    }
}
