//! What every integration says about a notification, built by code in place of
//! Alertmanager's default Go templates: the data (`status`, group and common labels, common
//! annotations, each alert's status and times), the subject line
//! (`[FIRING:2] HighLoad (node1 critical)`, Alertmanager's `__subject`) and a plain-text list of
//! the alerts.

use std::fmt::Write as _;

use super::alert::{StoredAlert, fingerprint, fingerprint_hex};
use crate::LabelMap;

/// One notification of one aggregation group, as handed to an integration.
#[derive(Clone, Debug)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: LabelMap,
    /// The alerts to report (resolved ones already left out where `send_resolved` is off).
    pub alerts: Vec<StoredAlert>,
    /// The time of the flush: alerts whose end is at or before it are resolved.
    pub now_ms: i64,
    pub external_url: String,
}

/// `0001-01-01T00:00:00Z`, Go's zero time, which Alertmanager writes as the end of a firing
/// alert.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 in UTC with the milliseconds there are.
pub fn time(ms: i64) -> String {
    ocelli_model::time::rfc3339(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
}

impl Notification {
    pub fn firing(&self) -> impl Iterator<Item = &StoredAlert> {
        self.alerts.iter().filter(|a| !a.resolved(self.now_ms))
    }

    pub fn resolved(&self) -> impl Iterator<Item = &StoredAlert> {
        self.alerts.iter().filter(|a| a.resolved(self.now_ms))
    }

    /// `firing` while any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.firing().next().is_some() { "firing" } else { "resolved" }
    }

    pub fn alert_status(&self, a: &StoredAlert) -> &'static str {
        if a.resolved(self.now_ms) { "resolved" } else { "firing" }
    }

    /// The end time as notifications show it: the zero time while firing.
    pub fn ends_at(&self, a: &StoredAlert) -> String {
        if a.resolved(self.now_ms) { time(a.ends_at_ms) } else { ZERO_TIME.into() }
    }

    pub fn fingerprint(a: &StoredAlert) -> String {
        fingerprint_hex(fingerprint(&a.labels))
    }

    /// The label pairs every alert has with the same value.
    pub fn common_labels(&self) -> LabelMap {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    pub fn common_annotations(&self) -> LabelMap {
        common(self.alerts.iter().map(|a| &a.annotations))
    }

    /// Alertmanager's `__subject`: `[FIRING:2] <group label values> (<other common label
    /// values>)`, or `[RESOLVED] ...`.
    pub fn subject(&self) -> String {
        let status = self.status();
        let mut s = match status {
            "firing" => format!("[FIRING:{}]", self.firing().count()),
            _ => "[RESOLVED]".to_string(),
        };
        let group: Vec<&str> = self.group_labels.values().map(String::as_str).collect();
        if !group.is_empty() {
            s.push(' ');
            s.push_str(&group.join(" "));
        }
        let common = self.common_labels();
        let rest: Vec<&str> = common
            .iter()
            .filter(|(k, _)| !self.group_labels.contains_key(*k))
            .map(|(_, v)| v.as_str())
            .collect();
        if !rest.is_empty() {
            let _ = write!(s, " ({})", rest.join(" "));
        }
        s
    }

    /// A plain-text list of the alerts: firing ones first, each with its labels, annotations,
    /// times and source.
    pub fn body(&self) -> String {
        let mut out = String::new();
        for (title, alerts) in [
            ("Firing", self.firing().collect::<Vec<_>>()),
            ("Resolved", self.resolved().collect::<Vec<_>>()),
        ] {
            if alerts.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{title} alerts ({}):", alerts.len());
            for a in alerts {
                let name = a.labels.get("alertname").map(String::as_str).unwrap_or("alert");
                let summary =
                    a.annotations.get("summary").map(|s| format!(": {s}")).unwrap_or_default();
                let _ = writeln!(out, "- {name}{summary}");
                let labels: Vec<String> =
                    a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(out, "  Labels: {}", labels.join(", "));
                for (k, v) in a.annotations.iter().filter(|(k, _)| *k != "summary") {
                    let _ = writeln!(out, "  {k}: {v}");
                }
                let _ = write!(out, "  Since: {}", time(a.starts_at_ms));
                if a.resolved(self.now_ms) {
                    let _ = write!(out, ", until {}", time(a.ends_at_ms));
                }
                out.push('\n');
                if !a.generator_url.is_empty() {
                    let _ = writeln!(out, "  Source: {}", a.generator_url);
                }
            }
        }
        out
    }

    /// Where people see the alerts: the notifier's alerts API on this server.
    pub fn alerts_url(&self) -> String {
        format!("{}/api/v1/notifier/alerts", self.external_url.trim_end_matches('/'))
    }
}

fn common<'a>(mut maps: impl Iterator<Item = &'a LabelMap>) -> LabelMap {
    let Some(first) = maps.next() else { return LabelMap::new() };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn alert(pairs: &[(&str, &str)], ends_at_ms: i64) -> StoredAlert {
        StoredAlert {
            labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            annotations: [("summary".to_string(), "load is high".to_string())].into(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms,
            generator_url: "http://prom/graph".into(),
            timeout: false,
            updated_at_ms: 1_700_000_000_000,
        }
    }

    pub(crate) fn notification(alerts: Vec<StoredAlert>) -> Notification {
        Notification {
            receiver: "team".into(),
            group_key: r#"{}:{alertname="HighLoad"}"#.into(),
            group_labels: [("alertname".to_string(), "HighLoad".to_string())].into(),
            alerts,
            now_ms: 1_700_000_060_000,
            external_url: "http://ocelli:9747".into(),
        }
    }

    #[test]
    fn subjects_as_alertmanager_writes_them() {
        let firing = 1_700_000_300_000;
        let n = notification(vec![
            alert(
                &[("alertname", "HighLoad"), ("instance", "node1"), ("severity", "critical")],
                firing,
            ),
            alert(
                &[("alertname", "HighLoad"), ("instance", "node2"), ("severity", "critical")],
                firing,
            ),
        ]);
        assert_eq!(n.subject(), "[FIRING:2] HighLoad (critical)");
        let one = notification(vec![alert(
            &[("alertname", "HighLoad"), ("instance", "node1")],
            1_700_000_010_000,
        )]);
        assert_eq!(one.status(), "resolved");
        assert_eq!(one.subject(), "[RESOLVED] HighLoad (node1)");
        let body = one.body();
        assert!(body.starts_with("Resolved alerts (1):\n- HighLoad: load is high\n  Labels: alertname=HighLoad, instance=node1\n"), "{body}");
        assert!(body.contains("  Since: 2023-11-14T22:13:20Z, until 2023-11-14T22:13:30Z\n  Source: http://prom/graph\n"), "{body}");
    }
}
