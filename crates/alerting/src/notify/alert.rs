//! Alerts as the notifier keeps them: identity (Alertmanager's fingerprint of the label set),
//! acceptance of an incoming alert (checks, and the defaults for missing times) and the merge
//! of a re-sent alert into the stored one.
//!
//! Semantics, as Alertmanager's: an alert without a start time starts when it is received; one
//! without an end time ends `resolve_timeout` after it is received (and such a "timeout" end
//! never overrides an explicit one); an alert whose end is at or before now is resolved. A
//! re-sent alert whose activity overlaps the stored one's is merged (earliest start; the later
//! explicit end), otherwise it replaces it (the alert fired again).

use serde::{Deserialize, Serialize};

use crate::{Alert, LabelMap};

/// Alertmanager's (Prometheus model's) label set fingerprint: FNV-1a 64 over the sorted
/// pairs, each name and value followed by the byte 0xff.
pub fn fingerprint(labels: &LabelMap) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    h
}

/// A fingerprint as Alertmanager prints it: 16 lower-case hex digits.
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// An alert in the notifier's store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredAlert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub generator_url: String,
    /// The end was not given: it is the receive time plus `resolve_timeout`.
    pub timeout: bool,
    /// When the notifier last received it.
    pub updated_at_ms: i64,
}

impl StoredAlert {
    pub fn resolved(&self, now_ms: i64) -> bool {
        self.ends_at_ms <= now_ms
    }

    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.labels)
    }

    /// The alert as the contract type (for forwarding).
    pub fn to_alert(&self) -> Alert {
        Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
            generator_url: self.generator_url.clone(),
        }
    }
}

/// Checks an incoming alert and fills in missing times. Errors name the offending label.
pub fn accept(a: Alert, now_ms: i64, resolve_timeout_ms: i64) -> Result<StoredAlert, String> {
    if a.labels.is_empty() {
        return Err("an alert has no labels".into());
    }
    for (kind, map) in [("label", &a.labels), ("annotation", &a.annotations)] {
        if let Some(name) = map.keys().find(|n| !ocelli_model::is_valid_label_name(n)) {
            return Err(format!("{kind} name {name:?} is not valid ([a-zA-Z_][a-zA-Z0-9_]*)"));
        }
    }
    if let Some((name, _)) = a.labels.iter().find(|(_, v)| v.is_empty()) {
        return Err(format!("label {name:?} has an empty value"));
    }
    let starts = if a.starts_at_ms == 0 { now_ms } else { a.starts_at_ms };
    let (ends, timeout) = if a.ends_at_ms == 0 {
        (now_ms.max(starts).saturating_add(resolve_timeout_ms), true)
    } else {
        (a.ends_at_ms, false)
    };
    if ends < starts {
        return Err(format!(
            "alert {}: endsAt is before startsAt",
            crate::notify::route::label_set_string(&a.labels)
        ));
    }
    Ok(StoredAlert {
        labels: a.labels,
        annotations: a.annotations,
        starts_at_ms: starts,
        ends_at_ms: ends,
        generator_url: a.generator_url,
        timeout,
        updated_at_ms: now_ms,
    })
}

/// What `new` (just received) makes of the stored `old` with the same labels.
pub fn merge(old: &StoredAlert, mut new: StoredAlert, now_ms: i64) -> StoredAlert {
    let overlaps = (new.ends_at_ms > old.starts_at_ms && new.ends_at_ms < old.ends_at_ms)
        || (new.starts_at_ms > old.starts_at_ms && new.starts_at_ms < old.ends_at_ms);
    if !overlaps {
        return new;
    }
    new.starts_at_ms = new.starts_at_ms.min(old.starts_at_ms);
    if new.resolved(now_ms) {
        if old.resolved(now_ms) && old.ends_at_ms > new.ends_at_ms {
            new.ends_at_ms = old.ends_at_ms;
        }
    } else if old.ends_at_ms > new.ends_at_ms && !old.timeout {
        new.ends_at_ms = old.ends_at_ms;
        new.timeout = false;
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn alert(starts: i64, ends: i64) -> Alert {
        Alert {
            labels: labels(&[("alertname", "HighLoad")]),
            annotations: LabelMap::new(),
            starts_at_ms: starts,
            ends_at_ms: ends,
            generator_url: String::new(),
        }
    }

    #[test]
    fn fingerprints_are_alertmanagers() {
        // the empty set hashes to FNV's offset basis, as in Prometheus' model
        assert_eq!(fingerprint_hex(fingerprint(&LabelMap::new())), "cbf29ce484222325");
        let a = fingerprint(&labels(&[("alertname", "A"), ("job", "x")]));
        let b = fingerprint(&labels(&[("alertname", "A"), ("job", "y")]));
        assert_ne!(a, b);
        // the separators keep "ab"+"c" apart from "a"+"bc"
        assert_ne!(fingerprint(&labels(&[("ab", "c")])), fingerprint(&labels(&[("a", "bc")])));
    }

    #[test]
    fn missing_times_get_defaults_and_bad_alerts_are_named() {
        let a = accept(alert(0, 0), 1000, 300_000).unwrap();
        assert_eq!((a.starts_at_ms, a.ends_at_ms, a.timeout), (1000, 301_000, true));
        let a = accept(alert(500, 900), 1000, 300_000).unwrap();
        assert!(a.resolved(1000) && !a.timeout);
        assert_eq!(
            accept(alert(900, 500), 1000, 1).unwrap_err(),
            r#"alert {alertname="HighLoad"}: endsAt is before startsAt"#
        );
        let mut bad = alert(0, 0);
        bad.labels.insert("0x".into(), "v".into());
        assert_eq!(
            accept(bad, 1, 1).unwrap_err(),
            r#"label name "0x" is not valid ([a-zA-Z_][a-zA-Z0-9_]*)"#
        );
        let mut empty = alert(0, 0);
        empty.labels.clear();
        assert_eq!(accept(empty, 1, 1).unwrap_err(), "an alert has no labels");
    }

    #[test]
    fn merging_keeps_the_first_start_and_lets_a_resolve_win() {
        let old = accept(alert(1000, 0), 1000, 300_000).unwrap();
        // re-sent firing with an explicit end: replaces the timeout end, keeps the start
        let again = accept(alert(1500, 241_500), 1500, 300_000).unwrap();
        let m = merge(&old, again, 1500);
        assert_eq!((m.starts_at_ms, m.ends_at_ms), (1000, 241_500));
        // resolved now: resolved
        let done = accept(alert(1500, 2000), 2000, 300_000).unwrap();
        let m2 = merge(&m, done, 2000);
        assert!(m2.resolved(2000));
        assert_eq!(m2.starts_at_ms, 1000);
        // firing again long after: a new alert, not merged
        let later = accept(alert(900_000, 0), 900_000, 300_000).unwrap();
        let m3 = merge(&m2, later, 900_000);
        assert_eq!(m3.starts_at_ms, 900_000);
    }
}
