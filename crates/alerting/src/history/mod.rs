//! The alarm history: every alert state change and every notification attempt, kept durably
//! in one redb file in the data directory ([`FILE_NAME`]; layout in `docs/format/history.md`)
//! and queried with filters over REST ([`api`]).
//!
//! Recording never blocks the caller: [`History::record`] hands the events to a writer thread,
//! which commits them in batches with redb's immediate durability. [`History::flush`] waits
//! until everything recorded so far is on disk; the REST queries call it first, so a client
//! always reads what the server has already done. Events older than the retention are deleted
//! by the writer every [`PRUNE_EVERY`].
//!
//! Each event is stored under `(at_ms, seq)` as JSON of [`HistoryEvent`]; `seq` is unique
//! across restarts (it continues after the largest one stored), so two events of one
//! millisecond keep the order they were recorded in.

pub mod api;

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{AlertState, HistoryEvent, HistorySink, LabelMap, Outcome};
use ocelli_http::{Error, Result};

/// The history's file in the data directory.
pub const FILE_NAME: &str = "history.redb";

/// `(at_ms, seq)` -> [`HistoryEvent`] as JSON.
const EVENTS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("events");

/// `"next_seq"` -> the sequence number the next event gets, written with every batch, so that
/// opening does not scan every event to find it.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";

/// How often the writer deletes events past the retention.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// redb's cache for this file; queries read recent events, which this keeps in memory.
const CACHE_BYTES: usize = 16 << 20;

/// The `[history]` section of the server's config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// How long events are kept, e.g. "90d".
    pub retention: String,
    /// Most events one query may return; a query asks for fewer with `limit`.
    pub max_query_events: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { retention: "90d".into(), max_query_events: 10_000 }
    }
}

impl HistoryConfig {
    /// The retention, checked; the error names the field.
    pub fn retention(&self) -> std::result::Result<Duration, String> {
        ocelli_model::time::parse_duration(&self.retention).filter(|d| !d.is_zero()).ok_or_else(
            || {
                format!(
                    "history.retention: invalid duration {:?} (use e.g. 90d, 720h)",
                    self.retention
                )
            },
        )
    }
}

/// One stored event with its key.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// `<at_ms>-<seq>`: unique, and ordered like the events.
    pub id: String,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

/// What a query keeps. Label filters match an event's labels (for a notification, those of
/// any of its alerts); every given filter must match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Inclusive, in ms.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// `state` or `notification`.
    pub kind: Option<String>,
    /// Label name -> required value (`alertname`, `alarm_id`, `severity`, `ns`, `vm_id`...).
    pub labels: Vec<(String, String)>,
    /// State events only.
    pub state: Option<AlertState>,
    /// Notification events only.
    pub outcome: Option<Outcome>,
    pub receiver: Option<String>,
    /// The rule group, for state events (a rule file's group, or `alarm:<id>`).
    pub group: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl Filter {
    fn keeps(&self, e: &HistoryEvent) -> bool {
        let has = |labels: &LabelMap| self.labels.iter().all(|(n, v)| labels.get(n) == Some(v));
        match e {
            HistoryEvent::State { group, labels, state, .. } => {
                self.kind.as_deref().is_none_or(|k| k == "state")
                    && self.outcome.is_none()
                    && self.receiver.is_none()
                    && self.state.is_none_or(|s| s == *state)
                    && self.group.as_ref().is_none_or(|g| g == group)
                    && has(labels)
            }
            HistoryEvent::Notification { receiver, alerts, outcome, .. } => {
                self.kind.as_deref().is_none_or(|k| k == "notification")
                    && self.state.is_none()
                    && self.group.is_none()
                    && self.outcome.is_none_or(|o| o == *outcome)
                    && self.receiver.as_ref().is_none_or(|r| r == receiver)
                    && (self.labels.is_empty() || alerts.iter().any(has))
            }
        }
    }
}

enum Msg {
    Events(Vec<HistoryEvent>),
    Flush(mpsc::Sender<()>),
}

/// The open history: cheap to clone. Dropping the last clone writes what the writer was
/// given, stops it and closes the file.
#[derive(Clone)]
pub struct History {
    shared: Arc<Shared>,
    max_query_events: usize,
}

struct Shared {
    db: Arc<redb::Database>,
    tx: Option<mpsc::Sender<Msg>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Shared {
    fn send(&self, msg: Msg) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // closing the channel ends the writer's loop once it has written everything
        self.tx = None;
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!("alarm history: the writer panicked");
        }
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("history {what} {FILE_NAME}: {e}"))
}

fn now_ms() -> i64 {
    ocelli_model::time::now_ms()
}

impl History {
    /// Opens (or creates) the history file in `data_dir` and starts its writer.
    pub fn open(data_dir: &Path, config: &HistoryConfig) -> Result<History> {
        let retention = config
            .retention()
            .map_err(|detail| Error::Config { path: "history".into(), detail })?;
        let db = ocelli_http::embedded::open(data_dir, FILE_NAME, CACHE_BYTES)
            .map_err(|e| err("cannot open", e))?;
        let tx = db.begin_write().map_err(|e| err("cannot write", e))?;
        let next_seq = {
            let table = tx.open_table(EVENTS).map_err(|e| err("cannot write", e))?;
            let meta = tx.open_table(META).map_err(|e| err("cannot write", e))?;
            let stored = meta.get(NEXT_SEQ).map_err(|e| err("cannot read", e))?.map(|v| v.value());
            match stored {
                Some(n) => n,
                // a file written before the meta table: find the largest sequence number
                None => {
                    let mut max = 0;
                    for row in table.iter().map_err(|e| err("cannot read", e))? {
                        let (k, _) = row.map_err(|e| err("cannot read", e))?;
                        max = max.max(k.value().1 + 1);
                    }
                    max
                }
            }
        };
        tx.commit().map_err(|e| err("cannot write", e))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let writer = Writer { db: db.clone(), next_seq, retention };
        let writer = std::thread::Builder::new()
            .name("ocelli-history".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| err("cannot start the writer for", e))?;
        let shared = Shared { db, tx: Some(tx), writer: Some(writer) };
        Ok(History { shared: Arc::new(shared), max_query_events: config.max_query_events.max(1) })
    }

    /// Waits until every event recorded before the call is on disk (or the writer failed,
    /// which it logs).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.shared.send(Msg::Flush(done)) {
            let _ = wait.recv();
        }
    }

    /// Events kept by `filter`, newest first, at most `filter.limit` (or the configured
    /// maximum). Blocking: call it from the blocking pool.
    pub fn query(&self, filter: &Filter) -> Result<Vec<Entry>> {
        self.flush();
        let limit = if filter.limit == 0 { self.max_query_events } else { filter.limit };
        let limit = limit.min(self.max_query_events);
        let start = filter.start_ms.unwrap_or(i64::MIN);
        let end = filter.end_ms.unwrap_or(i64::MAX);
        let tx = self.shared.db.begin_read().map_err(|e| err("cannot read", e))?;
        let table = tx.open_table(EVENTS).map_err(|e| err("cannot read", e))?;
        let mut out = Vec::new();
        for row in
            table.range((start, 0)..=(end, u64::MAX)).map_err(|e| err("cannot read", e))?.rev()
        {
            let (k, v) = row.map_err(|e| err("cannot read", e))?;
            let (at, seq) = k.value();
            let event: HistoryEvent = serde_json::from_slice(v.value())
                .map_err(|e| err(&format!("event {at}-{seq} does not parse in"), e))?;
            if filter.keeps(&event) {
                out.push(Entry { id: format!("{at}-{seq}"), event });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl HistorySink for History {
    fn record(&self, events: Vec<HistoryEvent>) {
        if !events.is_empty() && !self.shared.send(Msg::Events(events)) {
            tracing::error!("alarm history: the writer has stopped; events are lost");
        }
    }
}

fn at_of(e: &HistoryEvent) -> i64 {
    match e {
        HistoryEvent::State { at_ms, .. } | HistoryEvent::Notification { at_ms, .. } => *at_ms,
    }
}

struct Writer {
    db: Arc<redb::Database>,
    next_seq: u64,
    retention: Duration,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut last_prune: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            // take everything already waiting, so a burst is one transaction
            let mut events = Vec::new();
            let mut flushes = Vec::new();
            for msg in std::iter::once(first).chain(rx.try_iter()) {
                match msg {
                    Msg::Events(e) => events.extend(e),
                    Msg::Flush(done) => flushes.push(done),
                }
            }
            let prune = last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            if prune {
                last_prune = Some(Instant::now());
            }
            if let Err(e) = self.write(&events, prune) {
                tracing::error!(error = %e, lost = events.len(), "alarm history: cannot write");
            }
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn write(&mut self, events: &[HistoryEvent], prune: bool) -> Result<()> {
        if events.is_empty() && !prune {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| err("cannot write", e))?;
        {
            let mut table = tx.open_table(EVENTS).map_err(|e| err("cannot write", e))?;
            for e in events {
                let json =
                    serde_json::to_vec(e).map_err(|e| err("cannot encode an event for", e))?;
                table
                    .insert((at_of(e), self.next_seq), json.as_slice())
                    .map_err(|e| err("cannot write", e))?;
                self.next_seq += 1;
            }
            if !events.is_empty() {
                let mut meta = tx.open_table(META).map_err(|e| err("cannot write", e))?;
                meta.insert(NEXT_SEQ, self.next_seq).map_err(|e| err("cannot write", e))?;
            }
            if prune {
                let cutoff = now_ms().saturating_sub(self.retention.as_millis() as i64);
                let n = table
                    .extract_from_if((i64::MIN, 0)..(cutoff, 0), |_, _| true)
                    .map_err(|e| err("cannot prune", e))?
                    .count();
                if n > 0 {
                    tracing::info!(deleted = n, "alarm history: events past the retention deleted");
                }
            }
        }
        tx.commit().map_err(|e| err("cannot write", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(at_ms: i64, vm: &str, severity: &str, s: AlertState) -> HistoryEvent {
        let labels: LabelMap =
            [("alertname", "HighCpu"), ("alarm_id", "cpu"), ("severity", severity), ("vm_id", vm)]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        HistoryEvent::State {
            at_ms,
            group: "alarm:cpu".into(),
            rule: "HighCpu".into(),
            labels,
            state: s,
            value: 91.5,
        }
    }

    fn notification(at_ms: i64, receiver: &str, outcome: Outcome) -> HistoryEvent {
        let HistoryEvent::State { labels, .. } =
            state(at_ms, "vm1", "critical", AlertState::Firing)
        else {
            unreachable!()
        };
        HistoryEvent::Notification {
            at_ms,
            receiver: receiver.into(),
            integration: "webhook".into(),
            alerts: vec![labels],
            resolved: false,
            attempt: 1,
            outcome,
            error: (outcome != Outcome::Success).then(|| "connection refused".into()),
        }
    }

    #[test]
    fn events_survive_reopening_and_filters_select_them_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = HistoryConfig::default();
        let now = now_ms();
        {
            let h = History::open(dir.path(), &cfg).unwrap();
            h.record(vec![
                state(now - 3000, "vm1", "warning", AlertState::Pending),
                state(now - 2000, "vm1", "warning", AlertState::Firing),
                state(now - 2000, "vm2", "critical", AlertState::Firing),
            ]);
            h.record(vec![
                notification(now - 1000, "slack", Outcome::Success),
                notification(now - 1000, "hook", Outcome::Retry),
            ]);
            h.flush();
        }
        let h = History::open(dir.path(), &cfg).unwrap();
        // seq continues after a reopen, so this event sorts after the earlier one at now-1000
        h.record(vec![notification(now - 1000, "hook", Outcome::Success)]);
        let all = h.query(&Filter::default()).unwrap();
        assert_eq!(all.len(), 6);
        let ats: Vec<i64> = all.iter().map(|e| at_of(&e.event)).collect();
        assert!(ats.windows(2).all(|w| w[0] >= w[1]), "{ats:?}");
        assert!(
            matches!(&all[0].event, HistoryEvent::Notification { outcome: Outcome::Success, receiver, .. } if receiver == "hook")
        );

        let q = |f: Filter| h.query(&f).unwrap().len();
        let lab = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert_eq!(q(Filter { kind: Some("state".into()), ..Filter::default() }), 3);
        assert_eq!(q(Filter { labels: lab("vm_id", "vm1"), ..Filter::default() }), 5);
        assert_eq!(q(Filter { labels: lab("severity", "warning"), ..Filter::default() }), 2);
        assert_eq!(q(Filter { state: Some(AlertState::Firing), ..Filter::default() }), 2);
        assert_eq!(q(Filter { outcome: Some(Outcome::Retry), ..Filter::default() }), 1);
        assert_eq!(q(Filter { receiver: Some("hook".into()), ..Filter::default() }), 2);
        assert_eq!(q(Filter { group: Some("alarm:cpu".into()), ..Filter::default() }), 3);
        assert_eq!(
            q(Filter { start_ms: Some(now - 2000), end_ms: Some(now - 2000), ..Filter::default() }),
            2
        );
        assert_eq!(q(Filter { limit: 4, ..Filter::default() }), 4);
    }

    #[test]
    fn events_past_the_retention_are_pruned_when_the_writer_starts() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        {
            let h = History::open(dir.path(), &HistoryConfig::default()).unwrap();
            h.record(vec![
                state(now - 3 * 3_600_000, "old", "warning", AlertState::Firing),
                state(now - 1000, "new", "warning", AlertState::Firing),
            ]);
            h.flush();
            assert_eq!(h.query(&Filter::default()).unwrap().len(), 2);
        }
        let cfg = HistoryConfig { retention: "1h".into(), ..HistoryConfig::default() };
        let h = History::open(dir.path(), &cfg).unwrap();
        h.flush();
        let left = h.query(&Filter::default()).unwrap();
        assert_eq!(left.len(), 1);
        assert!(
            matches!(&left[0].event, HistoryEvent::State { labels, .. } if labels["vm_id"] == "new")
        );
    }

    #[test]
    fn a_bad_retention_is_refused_with_the_field() {
        let cfg = HistoryConfig { retention: "soon".into(), ..HistoryConfig::default() };
        let dir = tempfile::tempdir().unwrap();
        let e = History::open(dir.path(), &cfg).unwrap_err().to_string();
        assert!(e.contains("history.retention: invalid duration \"soon\""), "{e}");
    }
}
