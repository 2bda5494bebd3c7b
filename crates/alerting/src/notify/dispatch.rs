//! The dispatcher: the notifier's state and the loop that turns it into notifications.
//!
//! [`Core`] holds the alerts (by fingerprint), the aggregation groups, the silences and the
//! notification log, behind one lock that is only held for in-memory work. Alerts arrive
//! through [`Core::ingest`], which merges each into the store and puts it into the group of
//! every route that takes it. A group is first flushed `group_wait` after it was made (at once
//! if its first alert is older than that, as after a restart), then every `group_interval`.
//! A flush ([`Core::flush_due`]) leaves out muted alerts (silenced, or inhibited by a firing
//! alert) and records newly muted ones in history as `Suppressed`; then, per integration of the
//! route's receiver, it asks the notification log whether the receiver must hear of it
//! ([`super::nflog::needs_update`]) and hands a [`Job`] to a task of its own. A delivered job
//! writes its log entry to disk and then to memory. Once every job of a flush has delivered,
//! the resolved alerts it reported leave the group; a group left empty is dropped, and an alert
//! resolved and in no group leaves the store.
//!
//! Reloads and run-time routes rebuild the routing tree and the groups from the stored alerts;
//! the notification log, kept across that, stops a rebuilt group from repeating itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::alert::{self, StoredAlert, fingerprint_hex};
use super::config::{Receiver, Settings};
use super::deliver::{Integration, integrations};
use super::inhibit::{InhibitRule, Inhibitor};
use super::nflog::{self, Entry};
use super::route::{Route, Tree};
use super::silence::{Compiled, SilenceState};
use super::text::Notification;
use crate::{Alert, HistoryEvent, LabelMap, Outcome};

/// A group's identity: the route's id and the group labels.
pub type GroupId = (String, LabelMap);

/// One aggregation group.
#[derive(Debug)]
pub struct Group {
    pub key: String,
    pub labels: LabelMap,
    pub alerts: BTreeMap<u64, StoredAlert>,
    pub next_flush_ms: i64,
    pub has_flushed: bool,
    /// Per notification log key: the alerts last recorded as suppressed.
    suppressed: BTreeMap<String, BTreeSet<u64>>,
    /// Flushes with deliveries still running, by flush id.
    pending: BTreeMap<u64, Pending>,
}

#[derive(Debug)]
struct Pending {
    remaining: usize,
    failed: bool,
    /// The resolved alerts as the flush saw them; they leave the group once it delivered.
    resolved: Vec<StoredAlert>,
}

/// A notification to deliver to one integration.
#[derive(Debug)]
pub struct Job {
    pub group: GroupId,
    pub flush_id: u64,
    pub nflog_key: String,
    pub integration: Integration,
    pub notification: Notification,
    pub entry: Entry,
}

/// Why an alert is muted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Muted {
    /// Ids of the active silences that match it.
    pub silenced_by: Vec<String>,
    /// Fingerprints of the alerts that inhibit it (Alertmanager lists one).
    pub inhibited_by: Vec<String>,
}

impl Muted {
    pub fn is_muted(&self) -> bool {
        !self.silenced_by.is_empty() || !self.inhibited_by.is_empty()
    }

    fn reason(&self) -> String {
        let mut parts = Vec::new();
        if !self.silenced_by.is_empty() {
            parts.push(format!("silenced by {}", self.silenced_by.join(", ")));
        }
        if !self.inhibited_by.is_empty() {
            parts.push(format!("inhibited by {}", self.inhibited_by.join(", ")));
        }
        parts.join("; ")
    }
}

/// The notifier's state.
#[derive(Debug)]
pub struct Core {
    pub file: Settings,
    pub dyn_routes: Vec<Route>,
    pub dyn_inhibit: Vec<InhibitRule>,
    pub dyn_receivers: Vec<Receiver>,
    pub tree: Tree,
    pub receivers: BTreeMap<String, Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub alerts: BTreeMap<u64, StoredAlert>,
    /// Alerts changed (or gone) since they were last written to disk.
    pub dirty: BTreeSet<u64>,
    pub groups: BTreeMap<GroupId, Group>,
    pub silences: BTreeMap<String, Compiled>,
    pub nflog: BTreeMap<String, Entry>,
    /// Notification log keys with a delivery running.
    pub in_flight: BTreeSet<String>,
    pub external_url: String,
    next_flush_id: u64,
}

impl Core {
    pub fn new(file: Settings, external_url: String) -> Core {
        let tree = Tree::compile(&file.route, &[]);
        let mut c = Core {
            file,
            dyn_routes: Vec::new(),
            dyn_inhibit: Vec::new(),
            dyn_receivers: Vec::new(),
            tree,
            receivers: BTreeMap::new(),
            inhibit_rules: Vec::new(),
            alerts: BTreeMap::new(),
            dirty: BTreeSet::new(),
            groups: BTreeMap::new(),
            silences: BTreeMap::new(),
            nflog: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            external_url,
            next_flush_id: 0,
        };
        c.rebuild(ocelli_model::time::now_ms());
        c
    }

    pub fn resolve_timeout_ms(&self) -> i64 {
        self.file.resolve_timeout.as_millis() as i64
    }

    /// Recompiles the tree, receivers and inhibit rules, and regroups every stored alert.
    /// Run-time receivers replace file receivers of the same name.
    pub fn rebuild(&mut self, now_ms: i64) {
        self.tree = Tree::compile(&self.file.route, &self.dyn_routes);
        self.receivers = self
            .file
            .receivers
            .iter()
            .chain(&self.dyn_receivers)
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        self.inhibit_rules =
            self.file.inhibit_rules.iter().chain(&self.dyn_inhibit).cloned().collect();
        self.groups.clear();
        let alerts: Vec<StoredAlert> = self.alerts.values().cloned().collect();
        for a in &alerts {
            self.route_alert(a, now_ms);
        }
    }

    /// Puts an alert into the group of every route that takes it.
    fn route_alert(&mut self, a: &StoredAlert, now_ms: i64) {
        let targets: Vec<(GroupId, String, i64)> = self
            .tree
            .matches(&a.labels)
            .into_iter()
            .map(|n| {
                let gl = n.group_labels(&a.labels);
                let key = n.group_key(&gl);
                ((n.id.clone(), gl), key, n.group_wait.as_millis() as i64)
            })
            .collect();
        let fp = a.fingerprint();
        for (id, key, wait) in targets {
            let g = self.groups.entry(id.clone()).or_insert_with(|| Group {
                key,
                labels: id.1.clone(),
                alerts: BTreeMap::new(),
                next_flush_ms: now_ms.saturating_add(wait),
                has_flushed: false,
                suppressed: BTreeMap::new(),
                pending: BTreeMap::new(),
            });
            if !g.has_flushed && a.starts_at_ms.saturating_add(wait) < now_ms {
                g.next_flush_ms = g.next_flush_ms.min(now_ms);
            }
            g.alerts.insert(fp, a.clone());
        }
    }

    /// Takes in alerts: the accepted ones (with their times filled in) for forwarding, and
    /// the reasons the others were refused.
    pub fn ingest(&mut self, alerts: Vec<Alert>, now_ms: i64) -> (Vec<Alert>, Vec<String>) {
        let (mut ok, mut refused) = (Vec::new(), Vec::new());
        let rt = self.resolve_timeout_ms();
        for a in alerts {
            match alert::accept(a, now_ms, rt) {
                Ok(new) => {
                    let fp = new.fingerprint();
                    let merged = match self.alerts.get(&fp) {
                        Some(old) => alert::merge(old, new, now_ms),
                        None => new,
                    };
                    ok.push(merged.to_alert());
                    self.route_alert(&merged, now_ms);
                    self.alerts.insert(fp, merged);
                    self.dirty.insert(fp);
                }
                Err(e) => refused.push(e),
            }
        }
        (ok, refused)
    }

    /// Why an alert with these labels is muted now.
    pub fn muted(&self, labels: &LabelMap, inhibitor: &Inhibitor<'_>, now_ms: i64) -> Muted {
        Muted {
            silenced_by: self
                .silences
                .values()
                .filter(|s| s.mutes(labels, now_ms))
                .map(|s| s.silence.id.clone())
                .collect(),
            inhibited_by: inhibitor.inhibited_by(labels).map(fingerprint_hex).into_iter().collect(),
        }
    }

    pub fn inhibitor(&self, now_ms: i64) -> Inhibitor<'_> {
        Inhibitor::new(&self.inhibit_rules, self.alerts.values(), now_ms)
    }

    /// When the next group is due (ms), if any.
    pub fn next_due(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Flushes every group that is due: returns the deliveries to start and the history
    /// events (suppressions) to record.
    pub fn flush_due(&mut self, now_ms: i64) -> (Vec<Job>, Vec<HistoryEvent>) {
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.next_flush_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let (mut jobs, mut events) = (Vec::new(), Vec::new());
        if due.is_empty() {
            return (jobs, events);
        }
        // mute decisions for every alert of the due groups, made once
        let muted: BTreeMap<u64, Muted> = {
            let inhibitor = self.inhibitor(now_ms);
            let mut m = BTreeMap::new();
            for id in &due {
                if let Some(g) = self.groups.get(id) {
                    for (fp, a) in &g.alerts {
                        if !m.contains_key(fp) {
                            m.insert(*fp, self.muted(&a.labels, &inhibitor, now_ms));
                        }
                    }
                }
            }
            m
        };
        for id in due {
            self.flush(&id, now_ms, &muted, &mut jobs, &mut events);
        }
        (jobs, events)
    }

    fn flush(
        &mut self,
        id: &GroupId,
        now_ms: i64,
        muted: &BTreeMap<u64, Muted>,
        jobs: &mut Vec<Job>,
        events: &mut Vec<HistoryEvent>,
    ) {
        let Some(node) = self.tree.node(&id.0) else {
            self.groups.remove(id);
            return;
        };
        let (receiver_name, interval, repeat) =
            (node.receiver.clone(), node.group_interval, node.repeat_interval);
        let integrations = self.receivers.get(&receiver_name).map(integrations).unwrap_or_default();
        let flush_id = self.next_flush_id;
        self.next_flush_id += 1;
        let Some(g) = self.groups.get_mut(id) else { return };
        if g.alerts.is_empty() && g.pending.is_empty() {
            self.groups.remove(id);
            return;
        }
        g.next_flush_ms = now_ms.saturating_add(interval.as_millis() as i64);
        g.has_flushed = true;
        let not_muted = |fp: &u64| muted.get(fp).is_none_or(|m| !m.is_muted());
        let mut unmuted: Vec<StoredAlert> =
            g.alerts.iter().filter(|(fp, _)| not_muted(fp)).map(|(_, a)| a.clone()).collect();
        unmuted.sort_by(notification_order);
        let muted_now: BTreeSet<u64> =
            g.alerts.keys().filter(|fp| !not_muted(fp)).copied().collect();
        let firing: BTreeSet<u64> =
            unmuted.iter().filter(|a| !a.resolved(now_ms)).map(StoredAlert::fingerprint).collect();
        let resolved: BTreeSet<u64> =
            unmuted.iter().filter(|a| a.resolved(now_ms)).map(StoredAlert::fingerprint).collect();
        let mut pending = Pending {
            remaining: 0,
            failed: false,
            resolved: g.alerts.values().filter(|a| a.resolved(now_ms)).cloned().collect(),
        };
        for (integration, index) in integrations {
            let key = nflog::key(&receiver_name, integration.kind(), index, &g.key);
            let before = g.suppressed.entry(key.clone()).or_default();
            let newly: Vec<u64> = muted_now.difference(before).copied().collect();
            if !newly.is_empty() {
                let alerts: Vec<&StoredAlert> =
                    newly.iter().filter_map(|fp| g.alerts.get(fp)).collect();
                let reasons: BTreeSet<String> =
                    newly.iter().filter_map(|fp| muted.get(fp)).map(Muted::reason).collect();
                events.push(HistoryEvent::Notification {
                    at_ms: now_ms,
                    receiver: receiver_name.clone(),
                    integration: integration.kind().to_string(),
                    alerts: alerts.iter().map(|a| a.labels.clone()).collect(),
                    resolved: alerts.iter().all(|a| a.resolved(now_ms)),
                    attempt: 0,
                    outcome: Outcome::Suppressed,
                    error: Some(reasons.into_iter().collect::<Vec<_>>().join("; ")),
                });
            }
            *before = muted_now.clone();
            if unmuted.is_empty()
                || !nflog::needs_update(
                    self.nflog.get(&key),
                    &firing,
                    &resolved,
                    integration.send_resolved(),
                    repeat,
                    now_ms,
                )
            {
                continue;
            }
            if self.in_flight.contains(&key) {
                // the last notification to this integration is still being tried; the next
                // flush looks again
                pending.failed = true;
                continue;
            }
            let send_resolved = integration.send_resolved();
            let alerts: Vec<StoredAlert> =
                unmuted.iter().filter(|a| send_resolved || !a.resolved(now_ms)).cloned().collect();
            self.in_flight.insert(key.clone());
            pending.remaining += 1;
            jobs.push(Job {
                group: id.clone(),
                flush_id,
                nflog_key: key,
                integration,
                notification: Notification {
                    receiver: receiver_name.clone(),
                    group_key: g.key.clone(),
                    group_labels: g.labels.clone(),
                    alerts,
                    now_ms,
                    external_url: self.external_url.clone(),
                },
                entry: Entry { firing: firing.clone(), resolved: resolved.clone(), at_ms: now_ms },
            });
        }
        if pending.remaining == 0 {
            if !pending.failed {
                drop_delivered(g, &pending.resolved);
            }
        } else {
            g.pending.insert(flush_id, pending);
        }
        if g.alerts.is_empty() && g.pending.is_empty() {
            self.groups.remove(id);
        }
    }

    /// Records the end of a job's delivery (its log entry is already on disk if it succeeded).
    pub fn complete(&mut self, job: &Job, delivered: bool) {
        self.in_flight.remove(&job.nflog_key);
        if delivered {
            self.nflog.insert(job.nflog_key.clone(), job.entry.clone());
        }
        let Some(g) = self.groups.get_mut(&job.group) else { return };
        let Some(p) = g.pending.get_mut(&job.flush_id) else { return };
        p.remaining = p.remaining.saturating_sub(1);
        p.failed |= !delivered;
        if p.remaining == 0 {
            if let Some(p) = g.pending.remove(&job.flush_id)
                && !p.failed
            {
                drop_delivered(g, &p.resolved);
            }
            if g.alerts.is_empty() && g.pending.is_empty() {
                self.groups.remove(&job.group);
            }
        }
    }

    /// Drops resolved alerts that no group holds any more, expired silences and log entries
    /// past retention. Returns what to delete on disk: (alerts, silences, log keys).
    pub fn collect_garbage(&mut self, now_ms: i64) -> (Vec<u64>, Vec<String>, Vec<String>) {
        let in_groups: BTreeSet<u64> =
            self.groups.values().flat_map(|g| g.alerts.keys().copied()).collect();
        let gone: Vec<u64> = self
            .alerts
            .iter()
            .filter(|(fp, a)| a.resolved(now_ms) && !in_groups.contains(fp))
            .map(|(fp, _)| *fp)
            .collect();
        for fp in &gone {
            self.alerts.remove(fp);
            self.dirty.remove(fp);
        }
        let horizon = now_ms - nflog::RETENTION.as_millis() as i64;
        let silences: Vec<String> = self
            .silences
            .values()
            .filter(|s| {
                s.silence.state(now_ms) == SilenceState::Expired && s.silence.ends_at_ms < horizon
            })
            .map(|s| s.silence.id.clone())
            .collect();
        for id in &silences {
            self.silences.remove(id);
        }
        let logs: Vec<String> =
            self.nflog.iter().filter(|(_, e)| e.at_ms < horizon).map(|(k, _)| k.clone()).collect();
        for k in &logs {
            self.nflog.remove(k);
        }
        (gone, silences, logs)
    }

    /// The dirty alerts: (to write, to delete).
    pub fn take_dirty(&mut self) -> (Vec<StoredAlert>, Vec<u64>) {
        let mut put = Vec::new();
        let mut delete = Vec::new();
        for fp in std::mem::take(&mut self.dirty) {
            match self.alerts.get(&fp) {
                Some(a) => put.push(a.clone()),
                None => delete.push(fp),
            }
        }
        (put, delete)
    }
}

/// Alertmanager's order of alerts in a notification: by `job`, then `instance` (an alert
/// without the label after those with it), then by the whole label set.
fn notification_order(a: &StoredAlert, b: &StoredAlert) -> std::cmp::Ordering {
    for key in ["job", "instance"] {
        match (a.labels.get(key), b.labels.get(key)) {
            (None, None) => continue,
            (Some(_), None) => return std::cmp::Ordering::Less,
            (None, Some(_)) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    a.labels.cmp(&b.labels)
}

/// Removes from the group the resolved alerts a delivered flush reported, unless they changed
/// since (an alert that fired again stays).
fn drop_delivered(g: &mut Group, resolved: &[StoredAlert]) {
    for a in resolved {
        let fp = a.fingerprint();
        if g.alerts.get(&fp) == Some(a) {
            g.alerts.remove(&fp);
        }
    }
}

/// How long the loop may sleep at most, so dirty alerts reach the disk and garbage is
/// collected without a separate timer.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests;
