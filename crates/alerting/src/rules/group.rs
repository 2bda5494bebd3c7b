//! One running rule group: its compiled rules, their state, and an evaluation of all of them
//! at one timestamp, as Prometheus 2.42's `rules.Group` does.
//!
//! Rules run in order on the blocking pool, each an instant query at the group's evaluation
//! timestamp. A recording rule's result is renamed and relabelled and written; an alerting
//! rule's result moves its alerts ([`super::alert`]), and `ALERTS` / `ALERTS_FOR_STATE` are
//! written for its pending and firing alerts (only once the rule's `for` state has been
//! restored after a start, as Prometheus does). Series a rule wrote at its previous evaluation
//! and not at this one get a stale marker. A rule whose evaluation fails writes nothing and
//! keeps its previous series, so they are marked stale only once it succeeds again without
//! them. Each rule's samples and stale markers are one all-or-nothing append.
//!
//! [`Group::run`] is the group's loop: evaluations at `interval` on timestamps offset by a
//! hash of the group's source and name (so groups spread over the interval and keep their
//! slots across restarts); missed slots are skipped. After a start the second evaluation is
//! followed by [`Group::restore`], which reads `ALERTS_FOR_STATE` to give alerts back the
//! time they were active before the restart. [`Group::copy_state`] carries state over when a
//! changed definition replaces a group.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ocelli_model::{Labels, METRIC_NAME, Matcher, STALE_NAN, Sample, is_stale_nan};
use ocelli_tsdb::{Db, SeriesSamples};
use parking_lot::Mutex;

use super::alert::{self, ActiveAlert, Alerts, Element, State};
use super::template::{Data, Template};
use super::{Env, RuleError, Settings};
use crate::{Alert, GroupSpec, HistoryEvent, LabelMap, RuleSpec};
use ocelli_model::time::now_ms;

/// A rule's health, as the rules API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Good,
    Bad,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Good => "ok",
            Health::Bad => "err",
        }
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// The expression as the PromQL parser prints it (what is evaluated and reported).
    pub query: String,
    pub labels: LabelMap,
    pub kind: Kind,
    pub state: Mutex<RuleState>,
}

#[derive(Debug)]
pub enum Kind {
    Record,
    Alert {
        hold: Duration,
        keep_firing_for: Duration,
        label_templates: Vec<(String, Template)>,
        annotations: LabelMap,
        annotation_templates: Vec<(String, Template)>,
    },
}

/// What a rule keeps between evaluations.
#[derive(Debug)]
pub struct RuleState {
    pub health: Health,
    pub last_error: Option<String>,
    pub last_evaluation: Option<SystemTime>,
    pub evaluation_time: Duration,
    /// The series written at the last successful evaluation (Prometheus'
    /// `seriesInPreviousEval`).
    pub series: BTreeSet<Labels>,
    pub alerts: Alerts,
    /// Whether `ALERTS` / `ALERTS_FOR_STATE` are written yet (false until the `for` state is
    /// restored after a start).
    pub restored: bool,
}

/// Which field of a rule an error is about (the rule-file parser maps it to a line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Rule,
    Name,
    Expr,
    Label(String),
    Annotation(String),
}

impl Rule {
    /// Validates and compiles one rule; every problem is returned, with the field it is about.
    pub fn compile(spec: &RuleSpec, restored: bool) -> Result<Rule, Vec<(Field, String)>> {
        let mut errs = Vec::new();
        let (name, expr, labels) = match spec {
            RuleSpec::Record { record, expr, labels } => {
                if !ocelli_model::is_valid_metric_name(record) {
                    errs.push((
                        Field::Name,
                        format!("record: invalid recording rule name {record:?} (a metric name is [a-zA-Z_:][a-zA-Z0-9_:]*)"),
                    ));
                }
                (record, expr, labels)
            }
            RuleSpec::Alert { alert, expr, labels, .. } => {
                if alert.trim().is_empty() {
                    errs.push((Field::Name, "alert: the alert name must not be empty".into()));
                }
                (alert, expr, labels)
            }
        };
        let query = if expr.trim().is_empty() {
            errs.push((Field::Expr, "expr: must be set".into()));
            String::new()
        } else {
            match ocelli_promql::parse(expr) {
                Ok(e) => e.to_string(),
                Err(e) => {
                    errs.push((Field::Expr, format!("expr: {e}")));
                    String::new()
                }
            }
        };
        for k in labels.keys() {
            if !ocelli_model::is_valid_label_name(k) || k == METRIC_NAME {
                errs.push((Field::Label(k.clone()), format!("labels: invalid label name {k:?}")));
            }
        }
        let kind = match spec {
            RuleSpec::Record { .. } => Kind::Record,
            RuleSpec::Alert { alert, for_, keep_firing_for, labels, annotations, .. } => {
                let mut templates = |map: &LabelMap, what: &str, field: fn(String) -> Field| {
                    let mut out = Vec::new();
                    for (k, v) in map {
                        if what == "annotations" && !ocelli_model::is_valid_label_name(k) {
                            errs.push((
                                field(k.clone()),
                                format!("annotations: invalid annotation name {k:?}"),
                            ));
                        }
                        match Template::parse(v) {
                            Ok(t) => out.push((k.clone(), t)),
                            Err(e) => errs.push((
                                field(k.clone()),
                                format!("{what}.{k}: template __alert_{alert}: {e}"),
                            )),
                        }
                    }
                    out
                };
                let label_templates = templates(labels, "labels", Field::Label);
                let annotation_templates = templates(annotations, "annotations", Field::Annotation);
                Kind::Alert {
                    hold: *for_,
                    keep_firing_for: *keep_firing_for,
                    label_templates,
                    annotations: annotations.clone(),
                    annotation_templates,
                }
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Rule {
            name: name.clone(),
            query,
            labels: labels.clone(),
            kind,
            state: Mutex::new(RuleState {
                health: Health::Unknown,
                last_error: None,
                last_evaluation: None,
                evaluation_time: Duration::ZERO,
                series: BTreeSet::new(),
                alerts: Alerts::new(),
                restored,
            }),
        })
    }

    pub fn is_alerting(&self) -> bool {
        matches!(self.kind, Kind::Alert { .. })
    }

    /// The most advanced state of the rule's alerts (firing > pending > inactive).
    pub fn alert_state(st: &RuleState) -> State {
        st.alerts.values().map(|a| a.state).max().unwrap_or(State::Inactive)
    }
}

/// A running group.
#[derive(Debug)]
pub struct Group {
    pub spec: GroupSpec,
    pub interval: Duration,
    pub rules: Vec<Rule>,
    /// Restore `for` state after the second evaluation (groups loaded before the manager
    /// started).
    pub should_restore: AtomicBool,
    pub stopping: AtomicBool,
    /// Series of rules that a reload removed: marked stale at the next evaluation.
    pub stale_series: Mutex<Vec<Labels>>,
    pub last_evaluation: Mutex<Option<SystemTime>>,
    pub evaluation_time: Mutex<Duration>,
    pub metrics: GroupMetrics,
}

/// Counters of one group, for `/metrics`.
#[derive(Debug, Default)]
pub struct GroupMetrics {
    pub evaluations: AtomicU64,
    pub failures: AtomicU64,
    pub iterations: AtomicU64,
    pub missed: AtomicU64,
    pub samples: AtomicU64,
}

impl Group {
    /// Compiles a group; errors name the group and the rule.
    pub fn compile(
        spec: GroupSpec,
        default_interval: Duration,
        started: bool,
    ) -> Result<Group, Vec<(Option<usize>, Field, String)>> {
        let mut errs = Vec::new();
        let mut rules = Vec::new();
        for (i, r) in spec.rules.iter().enumerate() {
            match Rule::compile(r, started) {
                Ok(r) => rules.push(r),
                Err(e) => errs.extend(e.into_iter().map(|(f, m)| (Some(i), f, m))),
            }
        }
        if spec.name.trim().is_empty() {
            errs.push((None, Field::Rule, "group name must not be empty".into()));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let interval = spec.interval.filter(|d| !d.is_zero()).unwrap_or(default_interval);
        Ok(Group {
            spec,
            interval,
            rules,
            should_restore: AtomicBool::new(!started),
            stopping: AtomicBool::new(false),
            stale_series: Mutex::new(Vec::new()),
            last_evaluation: Mutex::new(None),
            evaluation_time: Mutex::new(Duration::ZERO),
            metrics: GroupMetrics::default(),
        })
    }

    /// Prometheus' group key: `source;name`.
    pub fn key(&self) -> String {
        format!("{};{}", self.spec.source, self.spec.name)
    }

    fn interval_ms(&self) -> i64 {
        (self.interval.as_millis() as i64).max(1)
    }

    /// The group's last slot at or before `now` (ms): slots are `interval` apart, offset by a
    /// hash of the group so that groups spread over the interval.
    pub fn slot_at_or_before(&self, now: i64) -> i64 {
        let iv = self.interval_ms();
        let offset = (fnv1a(&[&self.spec.source, &self.spec.name]) % iv as u64) as i64;
        let adj = now - offset;
        adj - adj.rem_euclid(iv) + offset
    }

    /// Takes over the state of the group this one replaces: per rule, matched by name and
    /// labels in order, the series written last and the alerts; the series of rules that are
    /// gone are marked stale at the next evaluation.
    pub fn copy_state(&self, from: &Group) {
        *self.last_evaluation.lock() = *from.last_evaluation.lock();
        *self.evaluation_time.lock() = *from.evaluation_time.lock();
        let mut by_key: BTreeMap<(String, LabelMap), Vec<usize>> = BTreeMap::new();
        for (i, r) in from.rules.iter().enumerate() {
            by_key.entry((r.name.clone(), r.labels.clone())).or_default().push(i);
        }
        for r in &self.rules {
            let Some(list) = by_key.get_mut(&(r.name.clone(), r.labels.clone())) else { continue };
            if list.is_empty() {
                continue;
            }
            let old = &from.rules[list.remove(0)];
            let o = old.state.lock();
            let mut n = r.state.lock();
            n.series = o.series.clone();
            if r.is_alerting() && old.is_alerting() {
                n.alerts = o.alerts.clone();
            }
        }
        let mut stale = from.stale_series.lock().clone();
        for idx in by_key.into_values().flatten() {
            stale.extend(from.rules[idx].state.lock().series.iter().cloned());
        }
        *self.stale_series.lock() = stale;
    }

    /// Evaluates every rule at `ts` (ms). Runs on the blocking pool.
    pub fn eval(&self, env: &Env, ts: i64) {
        let Some(db) = env.db() else { return };
        let settings = env.settings.read().clone();
        let mut samples_total = 0u64;
        for rule in &self.rules {
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            let started = Instant::now();
            let wall = SystemTime::now();
            self.metrics.evaluations.fetch_add(1, Ordering::Relaxed);
            let outcome = self.eval_rule(env, &db, &settings, rule, ts);
            let mut st = rule.state.lock();
            match outcome {
                Ok(n) => {
                    samples_total += n as u64;
                    st.health = Health::Good;
                    st.last_error = None;
                }
                Err(e) => {
                    self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(group = %self.key(), rule = %rule.name, error = %e, "evaluating rule failed");
                    st.health = Health::Bad;
                    st.last_error = Some(e);
                }
            }
            st.evaluation_time = started.elapsed();
            st.last_evaluation = Some(wall);
        }
        self.metrics.samples.store(samples_total, Ordering::Relaxed);
        let stale = std::mem::take(&mut *self.stale_series.lock());
        if !stale.is_empty() {
            let batch: Vec<SeriesSamples> = stale
                .iter()
                .map(|l| SeriesSamples {
                    labels: l.clone(),
                    samples: vec![Sample::new(ts, STALE_NAN)],
                })
                .collect();
            if let Err(e) = db.append(&batch) {
                tracing::warn!(group = %self.key(), error = %e, "writing stale markers for removed rules failed");
                *self.stale_series.lock() = stale;
            }
        }
    }

    /// Evaluates one rule: queries, updates its state, sends alerts, writes its samples and
    /// stale markers. Returns the number of samples written.
    fn eval_rule(
        &self,
        env: &Env,
        db: &Db,
        settings: &Settings,
        rule: &Rule,
        ts: i64,
    ) -> Result<usize, String> {
        let vector = query(env, db, &rule.query, ts)?;
        let limit = self.spec.limit;
        let out: Vec<(Labels, f64)> = match &rule.kind {
            Kind::Record => {
                let mut out = Vec::with_capacity(vector.len());
                let mut seen = BTreeSet::new();
                for (l, v) in vector {
                    let l = relabel(&l, &rule.name, &rule.labels)?;
                    if !seen.insert(l.clone()) {
                        return Err("vector contains metrics with the same labelset after applying rule labels".into());
                    }
                    out.push((l, v));
                }
                if limit > 0 && out.len() > limit {
                    return Err(format!("exceeded limit of {limit} with {} series", out.len()));
                }
                out
            }
            Kind::Alert {
                hold, keep_firing_for, label_templates, annotation_templates, ..
            } => {
                let mut elements = Vec::with_capacity(vector.len());
                let mut seen = BTreeSet::new();
                for (l, v) in vector {
                    let e = element(settings, rule, label_templates, annotation_templates, &l, v);
                    if !seen.insert(e.labels.clone()) {
                        return Err("vector contains metrics with the same labelset after applying alert labels".into());
                    }
                    elements.push(e);
                }
                let mut st = rule.state.lock();
                let changes = alert::apply(
                    &mut st.alerts,
                    elements,
                    ts,
                    hold.as_millis() as i64,
                    keep_firing_for.as_millis() as i64,
                    limit,
                )?;
                let group = self.key();
                let events: Vec<HistoryEvent> = changes
                    .into_iter()
                    .map(|c| HistoryEvent::State {
                        at_ms: ts,
                        group: group.clone(),
                        rule: rule.name.clone(),
                        labels: c.labels,
                        state: c.state,
                        value: c.value,
                    })
                    .collect();
                let mut out = Vec::new();
                if st.restored {
                    for a in st.alerts.values().filter(|a| a.state != State::Inactive) {
                        out.push((alert_series("ALERTS", &rule.name, a, Some(a.state))?, 1.0));
                        let since = a.active_at.div_euclid(1000) as f64;
                        out.push((alert_series("ALERTS_FOR_STATE", &rule.name, a, None)?, since));
                    }
                }
                let to_send = self.due_alerts(settings, &rule.query, &mut st.alerts, ts);
                drop(st);
                if !events.is_empty() {
                    env.history.record(events);
                }
                if !to_send.is_empty() {
                    env.sink.send(to_send);
                }
                out
            }
        };
        // the new series and stale markers for the ones gone since the last evaluation
        let previous = std::mem::take(&mut rule.state.lock().series);
        let mut written = BTreeSet::new();
        let mut batch = Vec::with_capacity(out.len());
        for (l, v) in out {
            written.insert(l.clone());
            batch.push(SeriesSamples { labels: l, samples: vec![Sample::new(ts, v)] });
        }
        let n = batch.len();
        for gone in previous.difference(&written) {
            batch.push(SeriesSamples {
                labels: gone.clone(),
                samples: vec![Sample::new(ts, STALE_NAN)],
            });
        }
        match db.append(&batch) {
            Ok(()) => {
                rule.state.lock().series = written;
                Ok(n)
            }
            Err(e) => {
                rule.state.lock().series = previous;
                Err(format!("writing the rule's samples: {e}"))
            }
        }
    }

    /// The alerts to send now (Prometheus' `sendAlerts`), marking them sent.
    fn due_alerts(
        &self,
        settings: &Settings,
        query: &str,
        alerts: &mut Alerts,
        ts: i64,
    ) -> Vec<Alert> {
        let resend = settings.resend_delay.as_millis() as i64;
        let delta = resend.max(self.interval_ms());
        let generator_url = format!("{}{}", settings.external_url, table_link(query));
        let mut out = Vec::new();
        for a in alerts.values_mut() {
            if !a.needs_sending(ts, resend) {
                continue;
            }
            a.last_sent_at = Some(ts);
            a.valid_until = ts + 4 * delta;
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at_ms: a.fired_at.unwrap_or(a.active_at),
                ends_at_ms: a.resolved_at.unwrap_or(a.valid_until),
                generator_url: generator_url.clone(),
            });
        }
        out
    }

    /// Gives the alerts of this group's rules back the time they became active before a
    /// restart, from the newest `ALERTS_FOR_STATE` sample within the outage tolerance
    /// (Prometheus' `RestoreForState`). Rules whose `for` is shorter than the grace period are
    /// not restored. Runs on the blocking pool.
    pub fn restore(&self, env: &Env, now: i64) {
        let Some(db) = env.db() else { return };
        let settings = env.settings.read().clone();
        let mint = now - settings.outage_tolerance.as_millis() as i64;
        let grace = settings.for_grace_period.as_millis() as i64;
        for rule in &self.rules {
            let Kind::Alert { hold, .. } = &rule.kind else { continue };
            let hold = hold.as_millis() as i64;
            let mut st = rule.state.lock();
            if hold < grace {
                st.restored = true;
                continue;
            }
            for a in st.alerts.values_mut() {
                let Ok(labels) = alert_series("ALERTS_FOR_STATE", &rule.name, a, None) else {
                    continue;
                };
                let matchers: Vec<Matcher> = labels
                    .iter()
                    .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
                    .collect();
                let found = match db.select(&matchers, mint, now) {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::error!(group = %self.key(), rule = %rule.name, error = %e, "restoring the 'for' state failed");
                        continue;
                    }
                };
                let Some(last) = found
                    .into_iter()
                    .find(|s| s.labels.len() == matchers.len())
                    .and_then(|s| s.samples.last().copied())
                else {
                    continue;
                };
                if is_stale_nan(last.v) {
                    continue;
                }
                a.active_at = restored_active_at(last, hold, grace, now);
                tracing::debug!(group = %self.key(), rule = %rule.name, active_at = a.active_at, "'for' state restored");
            }
            st.restored = true;
        }
    }

    /// The group's loop until `stop` says so.
    pub async fn run(
        self: Arc<Group>,
        env: Arc<Env>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let iv = self.interval_ms();
        let mut ts = self.slot_at_or_before(now_ms()) + iv;
        if !sleep_until(ts, &mut stop).await {
            return;
        }
        self.iterate(&env, ts).await;
        if self.should_restore.load(Ordering::Relaxed) {
            // as Prometheus: restore after a second evaluation, once recording rules the
            // alerts may depend on have written fresh values
            if !sleep_until(ts + iv, &mut stop).await {
                return;
            }
            ts = self.next_slot(ts);
            self.iterate(&env, ts).await;
            let (g, e) = (self.clone(), env.clone());
            let _ = tokio::task::spawn_blocking(move || g.restore(&e, now_ms())).await;
            self.should_restore.store(false, Ordering::Relaxed);
        }
        loop {
            if !sleep_until(ts + iv, &mut stop).await {
                return;
            }
            ts = self.next_slot(ts);
            self.iterate(&env, ts).await;
        }
    }

    /// The slot after `ts`, skipping (and counting) the ones already past.
    fn next_slot(&self, ts: i64) -> i64 {
        let iv = self.interval_ms();
        let missed = ((now_ms() - ts) / iv - 1).max(0);
        if missed > 0 {
            self.metrics.missed.fetch_add(missed as u64, Ordering::Relaxed);
            tracing::warn!(group = %self.key(), missed, "rule group evaluation is slower than its interval; slots skipped");
        }
        ts + (missed + 1) * iv
    }

    async fn iterate(self: &Arc<Group>, env: &Arc<Env>, ts: i64) {
        self.metrics.iterations.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let wall = SystemTime::now();
        let (g, e) = (self.clone(), env.clone());
        if let Err(err) = tokio::task::spawn_blocking(move || g.eval(&e, ts)).await {
            tracing::error!(group = %self.key(), error = %err, "rule group evaluation panicked");
        }
        *self.evaluation_time.lock() = started.elapsed();
        *self.last_evaluation.lock() = Some(wall);
    }

    /// Stale markers at `ts` for every series the group's rules wrote last (a group removed by
    /// a reload).
    pub fn mark_stale(&self, env: &Env, ts: i64) {
        let Some(db) = env.db() else { return };
        let mut all: Vec<Labels> = std::mem::take(&mut *self.stale_series.lock());
        for r in &self.rules {
            all.extend(std::mem::take(&mut r.state.lock().series));
        }
        if all.is_empty() {
            return;
        }
        let batch: Vec<SeriesSamples> = all
            .into_iter()
            .map(|labels| SeriesSamples { labels, samples: vec![Sample::new(ts, STALE_NAN)] })
            .collect();
        if let Err(e) = db.append(&batch) {
            tracing::warn!(group = %self.key(), error = %e, "writing stale markers for a removed rule group failed");
        }
    }
}

/// Prometheus' restore arithmetic on the last `ALERTS_FOR_STATE` sample (`t` when the server
/// went down, `v` the active-since time in seconds): an alert that had been pending for less
/// than its `for` gets its remaining time extended by the downtime, and at least the grace
/// period; one that was firing keeps its original active time.
pub fn restored_active_at(last: Sample, hold_ms: i64, grace_ms: i64, now: i64) -> i64 {
    let down_at = last.t.div_euclid(1000) * 1000;
    let mut active_at = (last.v as i64) * 1000;
    let remaining = hold_ms - (down_at - active_at);
    if remaining <= 0 {
        // it was firing; the next evaluation finds it firing again
    } else if remaining < grace_ms {
        active_at = now + grace_ms - hold_ms;
    } else {
        active_at += now - down_at;
    }
    active_at
}

/// Sleeps until wall-clock time `ts` (ms); false if told to stop first.
async fn sleep_until(ts: i64, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    let wait = Duration::from_millis((ts - now_ms()).max(0) as u64);
    tokio::select! {
        _ = tokio::time::sleep(wait) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

/// Runs the rule's query; a scalar result is one sample without labels.
fn query(env: &Env, db: &Db, q: &str, ts: i64) -> Result<Vec<(Labels, f64)>, String> {
    let storage = ocelli_storage::DbStorage { db, max_samples: env.engine.options().max_samples };
    match env.engine.instant(&storage, q, ts).map_err(|e| e.to_string())? {
        ocelli_promql::QueryValue::Vector(v) => Ok(v.into_iter().map(|(l, _, x)| (l, x)).collect()),
        ocelli_promql::QueryValue::Scalar(_, x) => Ok(vec![(Labels::default(), x)]),
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

/// A recording rule's output series: the metric name replaced, the rule's labels set (an
/// empty value removes the label).
fn relabel(l: &Labels, name: &str, extra: &LabelMap) -> Result<Labels, String> {
    let mut m: LabelMap = l.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
    m.insert(METRIC_NAME.into(), name.into());
    for (k, v) in extra {
        m.insert(k.clone(), v.clone());
    }
    Labels::from_pairs(m).map_err(|e| e.to_string())
}

/// One result element of an alerting rule as an alert: the series' labels without the
/// metric name, the rule's labels (templated; an empty value removes the label), `alertname`,
/// and the templated annotations. A template that fails to expand gives Prometheus' error
/// text as its value.
fn element(
    settings: &Settings,
    rule: &Rule,
    label_templates: &[(String, Template)],
    annotation_templates: &[(String, Template)],
    series: &Labels,
    value: f64,
) -> Element {
    let metric: LabelMap = series.iter().map(|x| (x.name.clone(), x.value.clone())).collect();
    let no_labels = LabelMap::new();
    let data = Data {
        labels: &metric,
        external_labels: &no_labels,
        external_url: &settings.external_url,
        value,
    };
    let expand = |t: &Template| match t.expand(&data) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(rule = %rule.name, error = %e, "expanding alert template failed");
            format!(
                "<error expanding template: error executing template __alert_{}: {e}>",
                rule.name
            )
        }
    };
    let mut labels = metric.clone();
    labels.remove(METRIC_NAME);
    for (k, t) in label_templates {
        let v = expand(t);
        if v.is_empty() {
            labels.remove(k);
        } else {
            labels.insert(k.clone(), v);
        }
    }
    labels.insert("alertname".into(), rule.name.clone());
    let annotations = annotation_templates.iter().map(|(k, t)| (k.clone(), expand(t))).collect();
    Element { labels, annotations, value }
}

/// `ALERTS{alertname, alertstate, ...}` (with a state) or `ALERTS_FOR_STATE{alertname, ...}`.
fn alert_series(
    metric: &str,
    rule: &str,
    a: &ActiveAlert,
    state: Option<State>,
) -> Result<Labels, String> {
    let mut m = a.labels.clone();
    m.insert(METRIC_NAME.into(), metric.into());
    m.insert("alertname".into(), rule.into());
    if let Some(s) = state {
        m.insert("alertstate".into(), s.as_str().into());
    }
    Labels::from_pairs(m).map_err(|e| e.to_string())
}

/// Prometheus' `TableLinkForExpression`.
pub fn table_link(expr: &str) -> String {
    super::template::expression_link(expr, 1)
}

/// FNV-1a over the parts (with a separator), for slot offsets that stay the same across
/// restarts and versions.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Turns group compile errors into [`RuleError`]s located at `at` (a source without lines).
pub fn located(
    spec: &GroupSpec,
    at: &str,
    errs: Vec<(Option<usize>, Field, String)>,
) -> Vec<RuleError> {
    errs.into_iter()
        .map(|(i, _, message)| RuleError {
            at: at.to_string(),
            group: Some(spec.name.clone()),
            rule: i.map(|i| rule_name(&spec.rules[i]).to_string()),
            message,
        })
        .collect()
}

pub fn rule_name(r: &RuleSpec) -> &str {
    match r {
        RuleSpec::Record { record, .. } => record,
        RuleSpec::Alert { alert, .. } => alert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rules: Vec<RuleSpec>) -> GroupSpec {
        GroupSpec { name: "g".into(), source: "s".into(), interval: None, limit: 0, rules }
    }

    fn alert(name: &str, expr: &str, labels: &[(&str, &str)], ann: &[(&str, &str)]) -> RuleSpec {
        let m =
            |x: &[(&str, &str)]| x.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RuleSpec::Alert {
            alert: name.into(),
            expr: expr.into(),
            for_: Duration::from_secs(60),
            keep_firing_for: Duration::ZERO,
            labels: m(labels),
            annotations: m(ann),
        }
    }

    #[test]
    fn compile_reports_every_problem() {
        let g = spec(vec![
            RuleSpec::Record {
                record: "bad name".into(),
                expr: "up".into(),
                labels: LabelMap::new(),
            },
            alert("A", "sum(", &[("__name__", "x"), ("ok", "{{ nope }}")], &[("bad-key", "x")]),
            alert("", "", &[], &[]),
        ]);
        let errs = Group::compile(g.clone(), Duration::from_secs(60), false).unwrap_err();
        let text: Vec<String> = located(&g, "s", errs).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text[0],
            "s: group \"g\", rule \"bad name\": record: invalid recording rule name \"bad name\" (a metric name is [a-zA-Z_:][a-zA-Z0-9_:]*)"
        );
        assert!(text[1].starts_with("s: group \"g\", rule \"A\": expr: "), "{}", text[1]);
        assert_eq!(text[2], "s: group \"g\", rule \"A\": labels: invalid label name \"__name__\"");
        assert_eq!(
            text[3],
            "s: group \"g\", rule \"A\": labels.ok: template __alert_A: line 1: function \"nope\" not defined"
        );
        assert_eq!(
            text[4],
            "s: group \"g\", rule \"A\": annotations: invalid annotation name \"bad-key\""
        );
        assert_eq!(text[5], "s: group \"g\", rule \"\": alert: the alert name must not be empty");
        assert_eq!(text[6], "s: group \"g\", rule \"\": expr: must be set");
        assert_eq!(text.len(), 7);
    }

    #[test]
    fn slots_are_aligned_and_offset_per_group() {
        let g = Group::compile(spec(vec![]), Duration::from_secs(10), true).unwrap();
        let s = g.slot_at_or_before(1_700_000_003_000);
        assert!(s <= 1_700_000_003_000 && s > 1_700_000_003_000 - 10_000);
        assert_eq!(g.slot_at_or_before(s), s);
        assert_eq!(g.slot_at_or_before(s + 9_999), s);
        assert_eq!(g.slot_at_or_before(s + 10_000), s + 10_000);
        let mut other = spec(vec![]);
        other.name = "h".into();
        let h = Group::compile(other, Duration::from_secs(10), true).unwrap();
        assert_ne!(h.slot_at_or_before(s) % 10_000, s % 10_000);
    }

    #[test]
    fn restore_arithmetic_follows_prometheus() {
        let min = 60_000;
        // firing when it went down (active 10 min, for 5 min): unchanged
        let last = Sample::new(1_000_600_000, 1_000_000.0);
        assert_eq!(restored_active_at(last, 5 * min, 10 * min, 1_000_900_000), 1_000_000_000);
        // pending 4 of 5 minutes, 1 minute left, below the 10-minute grace: fires at now + grace
        let last = Sample::new(1_000_240_000, 1_000_000.0);
        let now = 1_000_900_000;
        assert_eq!(restored_active_at(last, 5 * min, 10 * min, now) + 5 * min, now + 10 * min);
        // pending 1 of 30 minutes: shifted by the downtime (5 minutes)
        let last = Sample::new(1_000_060_000, 1_000_000.0);
        let now = 1_000_360_000;
        assert_eq!(restored_active_at(last, 30 * min, 10 * min, now), 1_000_300_000);
    }

    #[test]
    fn recording_labels_replace_the_name_and_drop_empty_values() {
        let l = Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2")]).unwrap();
        let extra: LabelMap =
            [("b".to_string(), String::new()), ("c".to_string(), "3".to_string())].into();
        let out = relabel(&l, "job:x:sum", &extra).unwrap();
        assert_eq!(
            out,
            Labels::from_pairs([("__name__", "job:x:sum"), ("a", "1"), ("c", "3")]).unwrap()
        );
    }

    fn env() -> (tempfile::TempDir, Env) {
        let dir = tempfile::tempdir().unwrap();
        let opts = ocelli_tsdb::Options { background: false, ..Default::default() };
        let (db, _) = Db::open(dir.path(), opts).unwrap();
        let env = Env {
            db: parking_lot::RwLock::new(Some(Arc::new(db))),
            engine: Arc::new(ocelli_promql::Engine::default()),
            sink: Arc::new(super::super::NullSink),
            history: Arc::new(super::super::NullHistory),
            settings: parking_lot::RwLock::new(
                super::super::RulesConfig::default().settings().unwrap(),
            ),
        };
        (dir, env)
    }

    fn put(env: &Env, a: &str, t: i64, v: f64) {
        let labels = Labels::from_pairs([("__name__", "x"), ("a", a)]).unwrap();
        env.db()
            .unwrap()
            .append(&[SeriesSamples { labels, samples: vec![Sample::new(t, v)] }])
            .unwrap();
    }

    fn samples(env: &Env, name: &str) -> Vec<(String, Vec<(i64, f64)>)> {
        let m = [Matcher::equal("__name__", name)];
        let found = env.db().unwrap().select(&m, 0, i64::MAX).unwrap();
        found
            .into_iter()
            .map(|s| {
                let pts = s.samples.iter().map(|x| (x.t, x.v)).collect();
                (s.labels.get("a").unwrap_or("").to_string(), pts)
            })
            .collect()
    }

    #[test]
    fn recording_rules_write_series_and_stale_markers_and_refuse_duplicates() {
        let (_dir, env) = env();
        put(&env, "1", 1_000, 1.0);
        put(&env, "2", 1_000, 2.0);
        let rec = |name: &str, labels: &[(&str, &str)]| RuleSpec::Record {
            record: name.into(),
            expr: "x".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let g = Group::compile(
            spec(vec![rec("y", &[("r", "1")]), rec("z", &[("a", "")])]),
            Duration::from_secs(60),
            true,
        )
        .unwrap();
        g.eval(&env, 2_000);
        assert_eq!(
            samples(&env, "y"),
            [("1".into(), vec![(2_000, 1.0)]), ("2".into(), vec![(2_000, 2.0)])]
        );
        // z drops the only label telling the two apart: the evaluation fails, nothing written
        let z = g.rules[1].state.lock();
        assert_eq!(z.health, Health::Bad);
        assert_eq!(
            z.last_error.as_deref(),
            Some("vector contains metrics with the same labelset after applying rule labels")
        );
        drop(z);
        assert!(samples(&env, "z").is_empty());
        assert_eq!(g.metrics.failures.load(Ordering::Relaxed), 1);

        // x{a="1"} goes stale: so does y{a="1"}, at the next evaluation
        put(&env, "1", 2_500, STALE_NAN);
        g.eval(&env, 3_000);
        let y = samples(&env, "y");
        assert_eq!(y[0].1.len(), 2);
        assert_eq!(y[0].1[1].0, 3_000);
        assert!(is_stale_nan(y[0].1[1].1));
        assert_eq!(y[1].1, [(2_000, 2.0), (3_000, 2.0)]);
        assert_eq!(g.rules[0].state.lock().health, Health::Good);
    }

    #[test]
    fn table_links_escape_the_expression() {
        assert_eq!(table_link("up == 0"), "/graph?g0.expr=up+%3D%3D+0&g0.tab=1");
    }
}
