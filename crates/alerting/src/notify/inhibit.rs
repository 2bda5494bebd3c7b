//! Inhibition, as Alertmanager's `inhibit_rules`: an alert that the rule's target matchers
//! accept is muted while a firing alert that the source matchers accept has the same values
//! (an absent label counting as the empty value) for every label in `equal`. An alert that
//! both sides accept is muted only by a source that the target side does not accept, so two
//! such alerts cannot mute each other, and no alert mutes itself.
//!
//! [`Inhibitor`] is built from the rules and the current alerts when it is needed (a flush,
//! the alerts API); it keeps, per rule, the firing alerts on the source side.

use ocelli_model::Matcher;

use super::alert::{StoredAlert, fingerprint};
use super::matchers::matches_all;
use crate::LabelMap;

/// One inhibition rule; constructible from code (the threshold alarms install one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    /// Labels that must have equal values in the source and target alerts.
    pub equal: Vec<String>,
}

/// The rules with their current source alerts.
#[derive(Debug)]
pub struct Inhibitor<'a> {
    rules: Vec<(&'a InhibitRule, Vec<(u64, &'a LabelMap)>)>,
}

impl<'a> Inhibitor<'a> {
    /// Collects, for every rule, the alerts firing at `now_ms` that its source side accepts.
    pub fn new(
        rules: &'a [InhibitRule],
        alerts: impl Iterator<Item = &'a StoredAlert> + Clone,
        now_ms: i64,
    ) -> Inhibitor<'a> {
        let rules = rules
            .iter()
            .map(|r| {
                let sources = alerts
                    .clone()
                    .filter(|a| !a.resolved(now_ms) && matches_all(&r.source_matchers, &a.labels))
                    .map(|a| (fingerprint(&a.labels), &a.labels))
                    .collect();
                (r, sources)
            })
            .collect();
        Inhibitor { rules }
    }

    /// The fingerprint of an alert that inhibits one with these labels, if any.
    pub fn inhibited_by(&self, labels: &LabelMap) -> Option<u64> {
        let own = fingerprint(labels);
        let get = |l: &LabelMap, n: &str| l.get(n).map(String::as_str).unwrap_or("").to_string();
        for (rule, sources) in &self.rules {
            if !matches_all(&rule.target_matchers, labels) {
                continue;
            }
            let two_sided = matches_all(&rule.source_matchers, labels);
            for (fp, src) in sources {
                if *fp == own {
                    continue;
                }
                if two_sided && matches_all(&rule.target_matchers, src) {
                    continue;
                }
                if rule.equal.iter().all(|n| get(labels, n) == get(src, n)) {
                    return Some(*fp);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::matchers::parse;

    fn alert(pairs: &[(&str, &str)], resolved: bool) -> StoredAlert {
        StoredAlert {
            labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            annotations: LabelMap::new(),
            starts_at_ms: 0,
            ends_at_ms: if resolved { 10 } else { 1000 },
            generator_url: String::new(),
            timeout: false,
            updated_at_ms: 0,
        }
    }

    /// The rule the threshold alarms install.
    fn alarm_rule() -> InhibitRule {
        InhibitRule {
            source_matchers: parse(r#"severity="critical""#).unwrap(),
            target_matchers: parse(r#"severity="warning""#).unwrap(),
            equal: ["alarm_id", "ns", "service_id", "vm_id"].map(String::from).to_vec(),
        }
    }

    #[test]
    fn critical_mutes_warning_of_the_same_alarm_and_vm_only() {
        let rules = [alarm_rule()];
        let crit = alert(&[("alarm_id", "a1"), ("severity", "critical"), ("vm_id", "vm1")], false);
        let alerts = [crit.clone()];
        let inh = Inhibitor::new(&rules, alerts.iter(), 100);
        let warn =
            |vm: &str| alert(&[("alarm_id", "a1"), ("severity", "warning"), ("vm_id", vm)], false);
        assert_eq!(inh.inhibited_by(&warn("vm1").labels), Some(fingerprint(&crit.labels)));
        assert_eq!(inh.inhibited_by(&warn("vm2").labels), None, "another vm");
        assert_eq!(inh.inhibited_by(&crit.labels), None, "the source itself");
        // a resolved source inhibits nothing
        let resolved =
            [alert(&[("alarm_id", "a1"), ("severity", "critical"), ("vm_id", "vm1")], true)];
        let inh = Inhibitor::new(&rules, resolved.iter(), 100);
        assert_eq!(inh.inhibited_by(&warn("vm1").labels), None);
    }

    #[test]
    fn absent_equal_labels_are_equal_and_two_sided_alerts_do_not_mute_each_other() {
        let rules = [InhibitRule {
            source_matchers: parse(r#"alertname="NodeDown""#).unwrap(),
            target_matchers: parse(r#"alertname=~"Node.*""#).unwrap(),
            equal: vec!["instance".into()],
        }];
        let down = alert(&[("alertname", "NodeDown"), ("instance", "n1")], false);
        let down2 = alert(&[("alertname", "NodeDown"), ("instance", "n1"), ("x", "y")], false);
        let alerts = [down.clone(), down2.clone()];
        let inh = Inhibitor::new(&rules, alerts.iter(), 100);
        let load = alert(&[("alertname", "NodeLoad"), ("instance", "n1")], false);
        assert!(inh.inhibited_by(&load.labels).is_some());
        assert_eq!(inh.inhibited_by(&down.labels), None);
        assert_eq!(inh.inhibited_by(&down2.labels), None);
        let no_instance = alert(&[("alertname", "NodeLoad")], false);
        assert_eq!(inh.inhibited_by(&no_instance.labels), None, "n1 is not the empty value");
    }
}
