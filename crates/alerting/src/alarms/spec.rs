//! A threshold alarm as operators write it (`POST /api/v1/alarms`), its checks, and the rule
//! group it becomes.
//!
//! An alarm watches a metric (narrowed to a target: ns, service, VM, CSP) or a PromQL
//! expression, compares it with a warning and a critical threshold, and fires after the
//! comparison has held for `for`. It becomes one group, `alarm:<id>`, of up to two alert
//! rules named after the alarm, labelled `alarm_id` and `severity` (`warning`, `critical`).
//! A target narrows an expression too: its matchers are added to every selector in it.

use std::collections::BTreeMap;
use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;
use promql_parser::parser::value::ValueType;
use serde::{Deserialize, Serialize};

use crate::{GroupSpec, LabelMap, RuleSpec};
use ocelli_model::identity;

/// The label an alarm's alerts carry its id in.
pub const ALARM_ID_LABEL: &str = "alarm_id";
/// The label an alarm's alerts carry their level in.
pub const SEVERITY_LABEL: &str = "severity";
/// Labels of the target, in the order the inhibition compares them.
pub const TARGET_LABELS: &[&str] = &["ns", "service_type", "service_id", "vm_id", "csp"];

const MAX_ID: usize = 64;
const MAX_TEXT: usize = 1024;

/// The target an alarm watches; unset parts match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csp: Option<String>,
}

impl Target {
    /// Label name and value of each part that is set, in [`TARGET_LABELS`] order.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let parts = [&self.ns, &self.service_type, &self.service_id, &self.vm_id, &self.csp];
        TARGET_LABELS.iter().zip(parts).filter_map(|(n, v)| v.as_deref().map(|v| (*n, v))).collect()
    }
}

/// How the value is compared with the thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

/// An alarm as stored and answered. `POST` takes the same shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alarm {
    /// 1 to 64 of `A-Z a-z 0-9 _ . -`; names the alarm in paths and in the `alarm_id` label.
    pub id: String,
    /// The alerts' `alertname`; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A metric name; exactly one of `metric` and `expr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// A PromQL expression giving an instant vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    #[serde(default)]
    pub target: Target,
    pub comparison: Comparison,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<f64>,
    /// How long the comparison must hold before the alarm fires, e.g. "1m". Default "0s".
    #[serde(default = "zero", rename = "for")]
    pub for_: String,
    /// How often it is evaluated; default the rule manager's evaluation interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Said in every notification (the `summary` annotation).
    #[serde(default)]
    pub message: String,
    /// Receivers (by name, from the notifier's config) that get this alarm's notifications,
    /// beside whatever the notifier's own routes send them to.
    #[serde(default)]
    pub handlers: Vec<String>,
    /// More labels for its alerts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: LabelMap,
}

fn zero() -> String {
    "0s".into()
}

/// The reserved labels an alarm cannot set itself.
const RESERVED: &[&str] = &["alertname", ALARM_ID_LABEL, SEVERITY_LABEL];

fn bad(field: &str, why: impl std::fmt::Display) -> String {
    format!("{field}: {why}")
}

/// Checks an alarm id (also as given in a path).
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = (1..=MAX_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad("id", format!("{id:?} must be 1 to {MAX_ID} of A-Z a-z 0-9 _ . -")))
    }
}

fn duration(field: &str, v: &str, zero_ok: bool) -> Result<Duration, String> {
    ocelli_model::time::parse_duration(v)
        .filter(|d| zero_ok || !d.is_zero())
        .ok_or_else(|| bad(field, format!("invalid duration {v:?} (use e.g. 30s, 5m, 1h)")))
}

impl Alarm {
    /// The alerts' `alertname`.
    pub fn alertname(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Checks every field, with the receivers the notifier knows; an error names the field.
    pub fn check(&self, receivers: &[String]) -> Result<(), String> {
        check_id(&self.id)?;
        if let Some(n) = &self.name
            && (n.is_empty() || n.len() > MAX_ID * 2)
        {
            return Err(bad("name", format!("must be 1 to {} bytes", MAX_ID * 2)));
        }
        match (&self.metric, &self.expr) {
            (Some(_), Some(_)) => return Err(bad("metric", "give metric or expr, not both")),
            (None, None) => return Err(bad("metric", "give a metric name or an expr")),
            (Some(m), None) if !ocelli_model::is_valid_metric_name(m) => {
                return Err(bad("metric", format!("{m:?} is not a valid metric name")));
            }
            _ => {}
        }
        let t = &self.target;
        for (field, v) in [("target.ns", &t.ns), ("target.service_id", &t.service_id)]
            .into_iter()
            .chain([("target.vm_id", &t.vm_id)])
        {
            if let Some(v) = v {
                identity::check_part(field, v)?;
            }
        }
        if let Some(v) = &t.service_type {
            identity::check_one_of("target.service_type", v, identity::SERVICE_TYPES)?;
        }
        if let Some(v) = &t.csp {
            identity::check_one_of("target.csp", v, identity::CSPS)?;
        }
        if self.warning.is_none() && self.critical.is_none() {
            return Err(bad("warning", "give a warning threshold, a critical one, or both"));
        }
        for (field, v) in [("warning", self.warning), ("critical", self.critical)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(bad(field, "must be a finite number"));
            }
        }
        if let (Some(w), Some(c)) = (self.warning, self.critical) {
            let (ok, want) = match self.comparison {
                Comparison::Gt | Comparison::Ge => (c >= w, "at or above the warning threshold"),
                Comparison::Lt | Comparison::Le => (c <= w, "at or below the warning threshold"),
                Comparison::Eq | Comparison::Ne => (c != w, "different from the warning threshold"),
            };
            if !ok {
                return Err(bad(
                    "critical",
                    format!("{c} must be {want} {w} for {:?}", self.comparison.as_str()),
                ));
            }
        }
        duration("for", &self.for_, true)?;
        if let Some(i) = &self.interval {
            duration("interval", i, false)?;
        }
        if self.message.len() > MAX_TEXT {
            return Err(bad("message", format!("longer than {MAX_TEXT} bytes")));
        }
        for h in &self.handlers {
            if !receivers.contains(h) {
                let known = if receivers.is_empty() { "none".into() } else { receivers.join(", ") };
                return Err(bad(
                    "handlers",
                    format!("no receiver {h:?} in the notifier's config (receivers: {known})"),
                ));
            }
        }
        for (n, v) in &self.labels {
            if !ocelli_model::is_valid_label_name(n) || n.starts_with("__") {
                return Err(bad("labels", format!("{n:?} is not a valid label name")));
            }
            if RESERVED.contains(&n.as_str()) || TARGET_LABELS.contains(&n.as_str()) {
                return Err(bad("labels", format!("{n:?} is set by the alarm itself")));
            }
            if v.is_empty() || v.len() > MAX_TEXT {
                return Err(bad("labels", format!("{n}: the value must be 1 to {MAX_TEXT} bytes")));
            }
        }
        self.base_expr()?;
        Ok(())
    }

    /// The watched expression narrowed to the target, as PromQL text.
    pub fn base_expr(&self) -> Result<String, String> {
        let matchers: Vec<Matcher> = self
            .target
            .pairs()
            .into_iter()
            .map(|(n, v)| Matcher::new(MatchOp::Equal, n, v))
            .collect();
        if let Some(m) = &self.metric {
            let mut s = m.clone();
            if !matchers.is_empty() {
                let inner: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
                s = format!("{m}{{{}}}", inner.join(", "));
            }
            return Ok(s);
        }
        let text = self.expr.as_deref().unwrap_or_default();
        let mut e = promql_parser::parser::parse(text).map_err(|e| bad("expr", e))?;
        if e.value_type() != ValueType::Vector {
            return Err(bad(
                "expr",
                format!("must give an instant vector, not a {}", e.value_type()),
            ));
        }
        if matchers.is_empty() {
            return Ok(text.to_string());
        }
        narrow(&mut e, &matchers);
        Ok(e.to_string())
    }

    /// The rule group this alarm runs as.
    pub fn group(&self) -> Result<GroupSpec, String> {
        let base = self.base_expr()?;
        let for_ = duration("for", &self.for_, true)?;
        let interval =
            self.interval.as_deref().map(|i| duration("interval", i, false)).transpose()?;
        let cmp = self.comparison.as_str();
        let mut rules = Vec::new();
        for (severity, threshold) in [("warning", self.warning), ("critical", self.critical)] {
            let Some(threshold) = threshold else { continue };
            let mut labels = self.labels.clone();
            labels.insert(ALARM_ID_LABEL.into(), self.id.clone());
            labels.insert(SEVERITY_LABEL.into(), severity.into());
            let mut annotations = LabelMap::new();
            if !self.message.is_empty() {
                annotations.insert("summary".into(), self.message.clone());
            }
            annotations.insert(
                "description".into(),
                format!(
                    "{} is {{{{ $value }}}}, {cmp} the {severity} threshold {}",
                    self.alertname(),
                    ocelli_model::format_value(threshold)
                ),
            );
            rules.push(RuleSpec::Alert {
                alert: self.alertname().to_string(),
                expr: format!("({base}) {cmp} {}", ocelli_model::format_value(threshold)),
                for_,
                keep_firing_for: Duration::ZERO,
                labels,
                annotations,
            });
        }
        Ok(GroupSpec {
            name: group_name(&self.id),
            source: group_name(&self.id),
            interval,
            limit: 0,
            rules,
        })
    }
}

/// The rule group (and source) name of an alarm.
pub fn group_name(id: &str) -> String {
    format!("alarm:{id}")
}

/// Adds `matchers` to every selector of `e`.
fn narrow(e: &mut Expr, matchers: &[Matcher]) {
    let add = |vs: &mut promql_parser::parser::VectorSelector| {
        vs.matchers.matchers.extend(matchers.iter().cloned());
        for or in &mut vs.matchers.or_matchers {
            or.extend(matchers.iter().cloned());
        }
    };
    match e {
        Expr::VectorSelector(vs) => add(vs),
        Expr::MatrixSelector(ms) => add(&mut ms.vs),
        Expr::Aggregate(a) => {
            narrow(&mut a.expr, matchers);
            if let Some(p) = &mut a.param {
                narrow(p, matchers);
            }
        }
        Expr::Unary(u) => narrow(&mut u.expr, matchers),
        Expr::Binary(b) => {
            narrow(&mut b.lhs, matchers);
            narrow(&mut b.rhs, matchers);
        }
        Expr::Paren(p) => narrow(&mut p.expr, matchers),
        Expr::Subquery(s) => narrow(&mut s.expr, matchers),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| narrow(a, matchers)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Parses an alarm from a request body; errors name the field (serde's own words otherwise).
pub fn parse(body: &[u8]) -> Result<Alarm, String> {
    serde_json::from_slice(body).map_err(|e| format!("alarm: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(json: &str) -> Alarm {
        parse(json.as_bytes()).unwrap()
    }

    const CPU: &str = r#"{"id":"cpu-high","metric":"ocelli_cpu_utilization_percent",
        "target":{"ns":"default","vm_id":"vm-1"},"comparison":">","warning":80,"critical":90,
        "for":"1m","message":"CPU is high","handlers":["ops"]}"#;

    #[test]
    fn a_metric_alarm_becomes_two_rules_narrowed_to_its_target() {
        let a = alarm(CPU);
        a.check(&["ops".into()]).unwrap();
        let g = a.group().unwrap();
        assert_eq!(g.name, "alarm:cpu-high");
        assert_eq!(g.rules.len(), 2);
        let RuleSpec::Alert { alert, expr, for_, labels, annotations, .. } = &g.rules[1] else {
            panic!("not an alert rule")
        };
        assert_eq!(alert, "cpu-high");
        assert_eq!(expr, r#"(ocelli_cpu_utilization_percent{ns="default", vm_id="vm-1"}) > 90"#);
        assert_eq!(*for_, Duration::from_secs(60));
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["alarm_id"], "cpu-high");
        assert_eq!(annotations["summary"], "CPU is high");
        ocelli_promql::parse(expr).unwrap();
    }

    #[test]
    fn a_target_narrows_every_selector_of_an_expression() {
        let mut a = alarm(CPU);
        a.metric = None;
        a.expr = Some(
            r#"sum by (vm_id) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) / on(vm_id) group_left count by (vm_id) (node_cpu_seconds_total{mode="idle"} or up)"#.into(),
        );
        let base = a.base_expr().unwrap();
        let back = promql_parser::parser::parse(&base).unwrap().to_string();
        assert_eq!(base, back, "printing is stable");
        assert_eq!(base.matches(r#"ns="default""#).count(), 3, "{base}");
        assert_eq!(base.matches(r#"vm_id="vm-1""#).count(), 3, "{base}");
        assert!(base.contains("[5m]"), "{base}");
        a.check(&["ops".into()]).unwrap();
        for e in a.group().unwrap().rules.iter().map(|r| match r {
            RuleSpec::Alert { expr, .. } => expr,
            RuleSpec::Record { expr, .. } => expr,
        }) {
            ocelli_promql::parse(e).unwrap();
        }
    }

    #[test]
    fn mistakes_are_named_by_field() {
        type Change<'a> = &'a dyn Fn(&mut Alarm);
        let cases: &[(&str, Change, &str)] = &[
            ("id", &|a| a.id = "has space".into(), "id: \"has space\" must be"),
            ("both", &|a| a.expr = Some("up".into()), "metric: give metric or expr, not both"),
            ("neither", &|a| a.metric = None, "metric: give a metric name or an expr"),
            ("metric", &|a| a.metric = Some("1x".into()), "metric: \"1x\" is not a valid"),
            (
                "expr",
                &|a| {
                    a.metric = None;
                    a.expr = Some("sum(".into())
                },
                "expr: ",
            ),
            (
                "scalar",
                &|a| {
                    a.metric = None;
                    a.expr = Some("1 + 1".into())
                },
                "expr: must give an instant vector",
            ),
            ("csp", &|a| a.target.csp = Some("mars".into()), "target.csp"),
            (
                "thresholds",
                &|a| {
                    a.warning = None;
                    a.critical = None
                },
                "warning: give a warning",
            ),
            (
                "order",
                &|a| a.critical = Some(70.0),
                "critical: 70 must be at or above the warning threshold 80",
            ),
            ("nan", &|a| a.warning = Some(f64::NAN), "warning: must be a finite number"),
            ("for", &|a| a.for_ = "soon".into(), "for: invalid duration \"soon\""),
            ("interval", &|a| a.interval = Some("0s".into()), "interval: invalid duration"),
            (
                "handler",
                &|a| a.handlers = vec!["pager".into()],
                "handlers: no receiver \"pager\" in the notifier's config (receivers: ops)",
            ),
            (
                "label",
                &|a| {
                    a.labels.insert("severity".into(), "x".into());
                },
                "labels: \"severity\" is set by the alarm itself",
            ),
        ];
        for (what, change, want) in cases {
            let mut a = alarm(CPU);
            change(&mut a);
            let e = a.check(&["ops".into()]).unwrap_err();
            assert!(e.starts_with(want), "{what}: {e}");
        }
        let e = parse(br#"{"id":"x","comparison":">","colour":1}"#).unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = parse(br#"{"id":"x","comparison":"~"}"#).unwrap_err();
        assert!(e.contains("unknown variant `~`"), "{e}");
    }

    #[test]
    fn lower_is_worse_alarms_order_thresholds_the_other_way() {
        let mut a = alarm(CPU);
        a.comparison = Comparison::Lt;
        a.warning = Some(20.0);
        a.critical = Some(10.0);
        a.check(&["ops".into()]).unwrap();
        a.critical = Some(30.0);
        assert!(
            a.check(&["ops".into()]).unwrap_err().starts_with("critical: 30 must be at or below")
        );
    }
}
