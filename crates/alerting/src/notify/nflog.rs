//! The notification log, Alertmanager's `nflog`: for every (aggregation group, receiver,
//! integration) the firing and resolved alerts (by fingerprint) of the last notification that
//! was delivered, and when. A flush consults it so that a receiver is not told again what it
//! already knows ([`needs_update`]); it is written after a successful delivery and kept on
//! disk ([`super::store`]), so a restart does not repeat notifications. Entries are dropped
//! [`RETENTION`] after they were written.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long an entry is kept (Alertmanager's default `--data.retention`).
pub const RETENTION: Duration = Duration::from_secs(120 * 3600);

/// The last delivered notification of one group to one integration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub firing: BTreeSet<u64>,
    pub resolved: BTreeSet<u64>,
    pub at_ms: i64,
}

/// The log's key: the integration (`<receiver>/<integration>/<index>`) and the group key.
pub fn key(receiver: &str, integration: &str, index: usize, group_key: &str) -> String {
    format!("{receiver}/{integration}/{index}\u{0}{group_key}")
}

/// Whether a flush with these firing and resolved alerts must notify, given the last entry
/// (Alertmanager's dedup stage):
/// - never notified: only if something fires;
/// - something fires that the receiver was not told fires: yes;
/// - nothing fires: only if the receiver was told something fires (all resolved now);
/// - with `send_resolved`, something resolved that it was not told is resolved: yes;
/// - otherwise only once `repeat` has passed since the last notification.
pub fn needs_update(
    last: Option<&Entry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now_ms: i64,
) -> bool {
    let Some(last) = last else { return !firing.is_empty() };
    if !firing.is_subset(&last.firing) {
        return true;
    }
    if firing.is_empty() {
        return !last.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&last.resolved) {
        return true;
    }
    last.at_ms < now_ms - repeat.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    fn entry(firing: &[u64], resolved: &[u64], at_ms: i64) -> Entry {
        Entry { firing: set(firing), resolved: set(resolved), at_ms }
    }

    #[test]
    fn dedup_decisions() {
        let repeat = Duration::from_secs(60);
        let now = 1_000_000;
        let n = |last: Option<&Entry>, f: &[u64], r: &[u64], sr: bool| {
            needs_update(last, &set(f), &set(r), sr, repeat, now)
        };
        // first time: only when something fires
        assert!(n(None, &[1], &[], true));
        assert!(!n(None, &[], &[1], true));
        let sent = entry(&[1, 2], &[], now - 1000);
        // the same again before repeat_interval: nothing
        assert!(!n(Some(&sent), &[1, 2], &[], true));
        // one of them resolved: only with send_resolved
        assert!(n(Some(&sent), &[1], &[2], true));
        assert!(!n(Some(&sent), &[1], &[2], false));
        // a new firing alert: always
        assert!(n(Some(&sent), &[1, 2, 3], &[], false));
        // all resolved: always (clears the log even without send_resolved)
        assert!(n(Some(&sent), &[], &[1, 2], false));
        // after all-resolved was logged, more resolved alerts say nothing new
        assert!(!n(Some(&entry(&[], &[1, 2], now - 1000)), &[], &[1, 2, 3], true));
        // unchanged but repeat_interval passed
        assert!(n(Some(&entry(&[1, 2], &[], now - 61_000)), &[1, 2], &[], false));
        // told resolved already
        assert!(!n(Some(&entry(&[1], &[2], now - 1000)), &[1], &[2], true));
    }

    #[test]
    fn keys_keep_integrations_apart() {
        assert_ne!(key("team", "slack", 0, "{}:{}"), key("team", "slack", 1, "{}:{}"));
        assert_eq!(key("team", "webhook", 0, "{}:{a=\"b\"}"), "team/webhook/0\u{0}{}:{a=\"b\"}");
    }
}
