//! Alerting: rules, the notifier, threshold alarms and the alarm history, in one process.
//!
//! The parts and how they meet:
//! - [`rules`] loads Prometheus rule files and the rule groups made from threshold alarms,
//!   evaluates them on the PromQL engine, writes recording-rule series, `ALERTS` and
//!   `ALERTS_FOR_STATE`, and hands active and resolved alerts to an [`AlertSink`].
//! - [`notify`] is the notifier (Alertmanager's semantics: routing, grouping, deduplication,
//!   inhibition, silences, resolved notifications) with its receivers (Slack, e-mail, webhook,
//!   forwarding to an external Alertmanager); it implements [`AlertSink`].
//! - [`alarms`] keeps CB-Dragonfly-style threshold alarms (REST `/api/v1/alarms`) and turns
//!   each into a [`GroupSpec`] for the rule manager and routes for the notifier.
//! - [`history`] stores every alert state change and every notification attempt durably
//!   ([`HistorySink`]) and answers queries over them.
//!
//! The types in this module are the contract between those parts; each part is free inside.
//! [`start`] opens them together from a [`Config`] and [`router`] serves their routes.
//!
//! Architecture invariant: alerting reads samples only through PromQL over
//! `ocelli_storage::DbStorage` and writes only through `Db::append` (recording rules,
//! `ALERTS`); it knows the server's config only as the [`Config`] it is started with and the
//! `Reload`s in it, and never the server itself.

pub mod alarms;
pub mod history;
pub mod notify;
pub mod rules;

#[cfg(test)]
mod proptests;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Label pairs as alerts carry them: sorted by name, metric name included as `__name__` only
/// where a rule kept it (alerts normally have `alertname` instead).
pub type LabelMap = BTreeMap<String, String>;

/// An alert as the rule manager sends it to the notifier: the shape of Alertmanager's
/// `POST /api/v2/alerts` body items. An alert whose `ends_at_ms` is at or before now is
/// resolved; a firing one carries an `ends_at_ms` in the future (the rule manager sets it to
/// now + 4 × its resend delay, as Prometheus does), so an alert that stops being sent resolves
/// by itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
}

/// Where the rule manager sends alerts. Called from the evaluation loop; must not block.
pub trait AlertSink: Send + Sync + 'static {
    fn send(&self, alerts: Vec<Alert>);
}

/// One rule group as the rule manager runs it, read from a rule file or made from an alarm.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    /// Where it came from: a rule file's path, or `alarm:<id>`. Groups are replaced per source.
    pub source: String,
    /// Evaluation interval; `None` takes the configured default.
    pub interval: Option<Duration>,
    /// Prometheus' `limit`: at most this many series or alerts per rule (0 = no limit).
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
}

/// One rule of a group.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleSpec {
    Record {
        record: String,
        expr: String,
        labels: LabelMap,
    },
    Alert {
        alert: String,
        expr: String,
        for_: Duration,
        keep_firing_for: Duration,
        labels: LabelMap,
        annotations: LabelMap,
    },
}

/// The states an alert goes through, as history records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

/// What the alarm history stores: a state change of one alert, or one notification attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// An alert (identified by its labels, which include `alertname` and, for alarms,
    /// `alarm_id` and `severity`) changed state.
    State {
        at_ms: i64,
        /// The rule group's name and source, for filtering by rule file or alarm.
        group: String,
        rule: String,
        labels: LabelMap,
        state: AlertState,
        /// The expression's value at the change.
        value: f64,
    },
    /// The notifier tried to deliver a notification for a group of alerts.
    Notification {
        at_ms: i64,
        /// The receiver's name in the notifier config.
        receiver: String,
        /// `slack`, `email`, `webhook` or `alertmanager`.
        integration: String,
        /// The labels of every alert in the notification.
        alerts: Vec<LabelMap>,
        /// Whether the notification reported the alerts firing or resolved.
        resolved: bool,
        /// 1 for the first try.
        attempt: u32,
        outcome: Outcome,
        /// Why it failed, as precisely as the integration says.
        error: Option<String>,
    },
}

/// How a notification attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Delivered (the receiver answered 2xx, the SMTP server accepted the message).
    Success,
    /// Failed; it will be tried again.
    Retry,
    /// Failed for good (a permanent error, or out of retries).
    Failure,
    /// Not sent because a silence or an inhibition suppressed it.
    Suppressed,
}

/// Where state changes and notification attempts are recorded. Must not block for long:
/// implementations write on their own.
pub trait HistorySink: Send + Sync + 'static {
    fn record(&self, events: Vec<HistoryEvent>);
}

/// A history kept in memory, for tests of the parts that record into one.
#[derive(Debug, Default)]
pub struct MemoryHistory(pub parking_lot::Mutex<Vec<HistoryEvent>>);

impl HistorySink for MemoryHistory {
    fn record(&self, events: Vec<HistoryEvent>) {
        self.0.lock().extend(events);
    }
}

/// The running parts of alerting, as the server holds them.
#[derive(Debug)]
pub struct Parts {
    pub history: history::History,
    pub rules: rules::RuleManager,
    pub alarms: alarms::Alarms,
    pub notifier: notify::Notifier,
}

/// What alerting is started with: its sections of the server config, where its stores live,
/// and how its parts read their sections again on reload.
pub struct Config {
    /// The alarm history, the notifier and the alarms keep their redb files here.
    pub data_dir: std::path::PathBuf,
    pub history: history::HistoryConfig,
    /// `[notifier]`, resolved against the config file's folder and the listen address.
    pub notifier: notify::NotifierConfig,
    pub notifier_reload: ocelli_http::Reload<notify::NotifierConfig>,
    pub rules: rules::RulesConfig,
    /// The folder relative rule-file patterns are read from (the config file's).
    pub rules_base: std::path::PathBuf,
    pub rules_reload: ocelli_http::Reload<(rules::RulesConfig, std::path::PathBuf)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("rules_base", &self.rules_base)
            .finish_non_exhaustive()
    }
}

/// Every alerting route: rules and alerts, the notifier's alerts and silences, alarms and
/// the alarm history.
pub fn router(parts: &Parts) -> axum::Router {
    axum::Router::new()
        .merge(rules::api::router(parts.rules.clone()))
        .merge(notify::api::router(parts.notifier.clone()))
        .merge(alarms::api::router(parts.alarms.clone(), parts.history.clone()))
}

/// Opens the alarm history, the rule manager (with the rule files) and the alarms (installing
/// them in the rule manager) before the server starts serving, so that every group, alarms'
/// included, restores its alert state at its first evaluations. `hooks` replaces where alerts
/// and state changes go (tests); by default they go to the notifier and the history.
pub async fn start(
    config: Config,
    db: std::sync::Arc<ocelli_tsdb::Db>,
    engine: std::sync::Arc<ocelli_promql::Engine>,
    hooks: Option<rules::Hooks>,
) -> ocelli_http::Result<Parts> {
    let blocking = |e: tokio::task::JoinError| ocelli_http::Error::Internal(e.to_string());
    let dir = config.data_dir.clone();
    let hc = config.history.clone();
    let history = tokio::task::spawn_blocking(move || history::History::open(&dir, &hc))
        .await
        .map_err(blocking)??;
    let notifier = notify::Notifier::start_with_reload(
        &config.notifier,
        std::sync::Arc::new(history.clone()),
        &config.data_dir,
        config.notifier_reload,
    )
    .await?;
    let hooks = hooks.unwrap_or_else(|| rules::Hooks {
        alert_sink: std::sync::Arc::new(notifier.clone()),
        history: std::sync::Arc::new(history.clone()),
    });
    let rules = rules::RuleManager::new(
        db,
        engine,
        hooks,
        &config.rules,
        config.rules_base,
        config.rules_reload,
    )?;
    rules.load_files().await?;
    let installer = std::sync::Arc::new(Wiring {
        rules: rules.clone(),
        notifier: notifier.clone(),
        runtime: tokio::runtime::Handle::current(),
    });
    let dir = config.data_dir.clone();
    let alarms = tokio::task::spawn_blocking(move || alarms::Alarms::open(&dir, installer))
        .await
        .map_err(blocking)??;
    Ok(Parts { history, rules, alarms, notifier })
}

/// What alarms install into: the rule manager, and the notifier's routes.
struct Wiring {
    rules: rules::RuleManager,
    notifier: notify::Notifier,
    runtime: tokio::runtime::Handle,
}

impl alarms::Installer for Wiring {
    fn receivers(&self) -> Vec<String> {
        self.notifier.receiver_names()
    }

    fn set_groups(&self, source: &str, groups: Vec<GroupSpec>) -> Result<(), String> {
        // alarms call this from the blocking pool, where waiting on the runtime is allowed
        self.runtime
            .block_on(self.rules.set_source(source, groups))
            .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
    }

    /// One route per (alarm, handler), grouping by the alarm and its target, and the rule
    /// that holds back an alarm's warning while its critical alert fires for the same target.
    fn set_routes(&self, routes: Vec<(String, String)>) {
        let group_by = notify::GroupBy::Labels(alarms::inhibit_equal());
        let mut made = Vec::with_capacity(routes.len());
        for (id, receiver) in routes {
            match notify::Matcher::new(notify::MatchOp::Equal, alarms::ALARM_ID_LABEL, id) {
                Ok(m) => made.push(notify::Route {
                    receiver: Some(receiver),
                    group_by: Some(group_by.clone()),
                    matchers: vec![m],
                    continue_matching: true,
                    ..notify::Route::default()
                }),
                Err(e) => tracing::error!(error = %e, "alarm route not made"),
            }
        }
        let matcher = |name: &str, op, value: &str| notify::Matcher::new(op, name, value);
        let inhibit = (|| -> Result<notify::InhibitRule, ocelli_model::Error> {
            let any_alarm = matcher(alarms::ALARM_ID_LABEL, notify::MatchOp::RegexMatch, ".+")?;
            Ok(notify::InhibitRule {
                source_matchers: vec![
                    any_alarm.clone(),
                    matcher(alarms::SEVERITY_LABEL, notify::MatchOp::Equal, "critical")?,
                ],
                target_matchers: vec![
                    any_alarm,
                    matcher(alarms::SEVERITY_LABEL, notify::MatchOp::Equal, "warning")?,
                ],
                equal: alarms::inhibit_equal(),
            })
        })();
        let inhibit: Vec<_> = inhibit
            .map_err(|e| tracing::error!(error = %e, "alarm inhibition rule not made"))
            .into_iter()
            .collect();
        if let Err(e) = self.notifier.set_dynamic(made, inhibit) {
            tracing::error!(error = %e, "the alarms' routes were refused by the notifier");
        }
    }
}
