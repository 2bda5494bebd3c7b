//! The state of one alerting rule's alerts and how an evaluation moves it, as Prometheus
//! 2.42's `AlertingRule.Eval` does: a new result element is a pending alert active since the
//! evaluation; it fires once it has been active for the rule's `for`; an alert whose element
//! is gone resolves (a firing one after `keep_firing_for`), and a resolved alert is kept
//! 15 minutes so that it is sent as resolved; a pending alert whose element is gone is dropped.
//!
//! Also here: which alerts are sent on an evaluation ([`ActiveAlert::needs_sending`],
//! Prometheus' `needsSending`, throttled by the resend delay), and the state changes the
//! history records. A pending alert that is dropped is recorded as `resolved` (its episode
//! ended without firing); an alert that goes from nothing to firing in one evaluation
//! (`for: 0`) is recorded once, as `firing`.

use std::collections::BTreeMap;

use crate::{AlertState, LabelMap};

/// How long a resolved alert is kept (and resent as resolved).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// An alert's state inside the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

/// One alert of a rule (Prometheus' `rules.Alert`); times in ms since the epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveAlert {
    pub state: State,
    pub labels: LabelMap,
    pub annotations: LabelMap,
    /// The expression's value at the last evaluation that had this alert's element.
    pub value: f64,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

impl ActiveAlert {
    fn new(labels: LabelMap, annotations: LabelMap, value: f64, ts: i64) -> ActiveAlert {
        ActiveAlert {
            state: State::Pending,
            labels,
            annotations,
            value,
            active_at: ts,
            fired_at: None,
            resolved_at: None,
            last_sent_at: None,
            valid_until: 0,
            keep_firing_since: None,
        }
    }

    /// Prometheus' `needsSending`: never while pending; at once when resolved since the last
    /// send; otherwise once the resend delay has passed since the last send.
    pub fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == State::Pending {
            return false;
        }
        if let Some(r) = self.resolved_at
            && self.last_sent_at.is_none_or(|s| r > s)
        {
            return true;
        }
        match self.last_sent_at {
            None => true,
            Some(s) => s + resend_delay_ms < ts,
        }
    }
}

/// One element of an evaluation's result, turned into an alert's labels and annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub value: f64,
}

/// A state change, for the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub labels: LabelMap,
    pub state: AlertState,
    pub value: f64,
}

/// The alerts of one rule, by their labels.
pub type Alerts = BTreeMap<LabelMap, ActiveAlert>;

/// Applies one evaluation at `ts` to `active`. `elements` must have distinct label sets
/// (checked by the caller). Returns the state changes, or the limit error, in which case
/// every alert is dropped, as Prometheus does.
pub fn apply(
    active: &mut Alerts,
    elements: Vec<Element>,
    ts: i64,
    hold_ms: i64,
    keep_firing_for_ms: i64,
    limit: usize,
) -> Result<Vec<Transition>, String> {
    let before: BTreeMap<LabelMap, (State, f64)> =
        active.iter().map(|(k, a)| (k.clone(), (a.state, a.value))).collect();
    let mut present = std::collections::BTreeSet::new();
    for e in elements {
        present.insert(e.labels.clone());
        match active.get_mut(&e.labels) {
            Some(a) if a.state != State::Inactive => {
                a.value = e.value;
                a.annotations = e.annotations;
            }
            _ => {
                let a = ActiveAlert::new(e.labels.clone(), e.annotations, e.value, ts);
                active.insert(e.labels, a);
            }
        }
    }
    let mut active_pending = 0usize;
    let mut dropped = Vec::new();
    for (key, a) in active.iter_mut() {
        if !present.contains(key) {
            let mut keep_firing = false;
            if a.state == State::Firing && keep_firing_for_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                keep_firing = ts - since < keep_firing_for_ms;
            }
            let expired = a.resolved_at.is_some_and(|r| ts - r > RESOLVED_RETENTION_MS);
            if a.state == State::Pending || expired {
                dropped.push(key.clone());
            }
            if a.state != State::Inactive && !keep_firing {
                a.state = State::Inactive;
                a.resolved_at = Some(ts);
            }
            if !keep_firing {
                continue;
            }
        } else {
            a.keep_firing_since = None;
        }
        active_pending += 1;
        if a.state == State::Pending && ts - a.active_at >= hold_ms {
            a.state = State::Firing;
            a.fired_at = Some(ts);
        }
    }
    for key in &dropped {
        active.remove(key);
    }
    if limit > 0 && active_pending > limit {
        active.clear();
        return Err(format!("exceeded limit of {limit} with {active_pending} alerts"));
    }
    let mut changes = Vec::new();
    for (key, a) in active.iter() {
        let was = before.get(key).map(|b| b.0);
        if was != Some(a.state) {
            let state = match a.state {
                State::Pending => AlertState::Pending,
                State::Firing => AlertState::Firing,
                State::Inactive => AlertState::Resolved,
            };
            changes.push(Transition { labels: key.clone(), state, value: a.value });
        }
    }
    for key in dropped {
        if let Some((State::Pending, value)) = before.get(&key) {
            changes.push(Transition { labels: key, state: AlertState::Resolved, value: *value });
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(instance: &str) -> LabelMap {
        [("alertname", "Down"), ("instance", instance)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn el(instance: &str, value: f64) -> Element {
        Element { labels: labels(instance), annotations: LabelMap::new(), value }
    }

    fn states(a: &Alerts) -> Vec<(String, State)> {
        a.values().map(|x| (x.labels["instance"].clone(), x.state)).collect()
    }

    #[test]
    fn pending_then_firing_then_resolved_then_forgotten() {
        let mut a = Alerts::new();
        let ch = apply(&mut a, vec![el("a", 1.0)], 0, 10_000, 0, 0).unwrap();
        assert_eq!(states(&a), [("a".into(), State::Pending)]);
        assert_eq!(ch[0].state, AlertState::Pending);
        let ch = apply(&mut a, vec![el("a", 2.0)], 5_000, 10_000, 0, 0).unwrap();
        assert!(ch.is_empty());
        assert_eq!(a[&labels("a")].value, 2.0);
        let ch = apply(&mut a, vec![el("a", 3.0)], 10_000, 10_000, 0, 0).unwrap();
        assert_eq!(states(&a), [("a".into(), State::Firing)]);
        assert_eq!(ch, [Transition { labels: labels("a"), state: AlertState::Firing, value: 3.0 }]);
        assert_eq!(a[&labels("a")].fired_at, Some(10_000));
        let ch = apply(&mut a, vec![], 20_000, 10_000, 0, 0).unwrap();
        assert_eq!(states(&a), [("a".into(), State::Inactive)]);
        assert_eq!(ch[0].state, AlertState::Resolved);
        assert_eq!(a[&labels("a")].resolved_at, Some(20_000));
        // kept for 15 minutes, then dropped without another change
        apply(&mut a, vec![], 20_000 + RESOLVED_RETENTION_MS, 10_000, 0, 0).unwrap();
        assert_eq!(a.len(), 1);
        let ch = apply(&mut a, vec![], 20_001 + RESOLVED_RETENTION_MS, 10_000, 0, 0).unwrap();
        assert!(a.is_empty() && ch.is_empty());
    }

    #[test]
    fn pending_alert_that_goes_away_is_dropped_and_recorded_resolved() {
        let mut a = Alerts::new();
        apply(&mut a, vec![el("a", 1.0), el("b", 1.0)], 0, 60_000, 0, 0).unwrap();
        let ch = apply(&mut a, vec![el("b", 1.0)], 1_000, 60_000, 0, 0).unwrap();
        assert_eq!(states(&a), [("b".into(), State::Pending)]);
        assert_eq!(
            ch,
            [Transition { labels: labels("a"), state: AlertState::Resolved, value: 1.0 }]
        );
    }

    #[test]
    fn for_zero_fires_at_once_and_records_one_change() {
        let mut a = Alerts::new();
        let ch = apply(&mut a, vec![el("a", 1.0)], 0, 0, 0, 0).unwrap();
        assert_eq!(states(&a), [("a".into(), State::Firing)]);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].state, AlertState::Firing);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut a = Alerts::new();
        apply(&mut a, vec![el("a", 1.0)], 0, 0, 30_000, 0).unwrap();
        // gone, but kept firing for 30 s from the first evaluation without it
        let ch = apply(&mut a, vec![], 10_000, 0, 30_000, 0).unwrap();
        assert!(ch.is_empty());
        assert_eq!(a[&labels("a")].keep_firing_since, Some(10_000));
        apply(&mut a, vec![], 39_999, 0, 30_000, 0).unwrap();
        assert_eq!(states(&a), [("a".into(), State::Firing)]);
        // back: the timer resets
        apply(&mut a, vec![el("a", 1.0)], 40_000, 0, 30_000, 0).unwrap();
        assert_eq!(a[&labels("a")].keep_firing_since, None);
        apply(&mut a, vec![], 50_000, 0, 30_000, 0).unwrap();
        let ch = apply(&mut a, vec![], 80_000, 0, 30_000, 0).unwrap();
        assert_eq!(states(&a), [("a".into(), State::Inactive)]);
        assert_eq!(ch[0].state, AlertState::Resolved);
    }

    #[test]
    fn a_resolved_alert_that_returns_starts_over() {
        let mut a = Alerts::new();
        apply(&mut a, vec![el("a", 1.0)], 0, 0, 0, 0).unwrap();
        apply(&mut a, vec![], 1_000, 0, 0, 0).unwrap();
        apply(&mut a, vec![el("a", 5.0)], 2_000, 5_000, 0, 0).unwrap();
        let x = &a[&labels("a")];
        assert_eq!((x.state, x.active_at, x.resolved_at), (State::Pending, 2_000, None));
    }

    #[test]
    fn limit_drops_every_alert() {
        let mut a = Alerts::new();
        let e = apply(&mut a, vec![el("a", 1.0), el("b", 1.0)], 0, 0, 0, 1).unwrap_err();
        assert_eq!(e, "exceeded limit of 1 with 2 alerts");
        assert!(a.is_empty());
    }

    #[test]
    fn needs_sending_throttles_by_resend_delay() {
        let mut a = Alerts::new();
        apply(&mut a, vec![el("a", 1.0)], 0, 10_000, 0, 0).unwrap();
        assert!(!a[&labels("a")].needs_sending(0, 60_000), "pending is never sent");
        apply(&mut a, vec![el("a", 1.0)], 10_000, 10_000, 0, 0).unwrap();
        let x = a.get_mut(&labels("a")).unwrap();
        assert!(x.needs_sending(10_000, 60_000), "firing, never sent");
        x.last_sent_at = Some(10_000);
        assert!(!x.needs_sending(70_000, 60_000), "resend delay not passed");
        assert!(x.needs_sending(70_001, 60_000));
        apply(&mut a, vec![], 20_000, 10_000, 0, 0).unwrap();
        assert!(a[&labels("a")].needs_sending(20_000, 60_000), "resolved since last send");
        a.get_mut(&labels("a")).unwrap().last_sent_at = Some(20_000);
        assert!(!a[&labels("a")].needs_sending(30_000, 60_000));
        assert!(a[&labels("a")].needs_sending(80_001, 60_000), "resolved alerts are resent too");
    }
}
