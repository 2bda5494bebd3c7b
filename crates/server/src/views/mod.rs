//! CB-Dragonfly-style REST views (`docs/api.md`, Views): per VM, per service and per cloud,
//! the fields of one metric (`cpu`, `cpufreq`, `memory`, `disk`, `diskio`, `network`) at one
//! point per period, computed from the stored series by PromQL range queries — there is no
//! second store.
//!
//! This module owns the query parameters ([`ViewQuery`]), the scope a view covers and how it
//! is resolved through the agent registry ([`Scope`]), the evaluation of the field table
//! ([`fields`]) and the answer (InfluxDB-style series: `name`, `tags`, `columns`, `values`).
//! Routes and the OpenAPI document are [`api`].
//!
//! Periods: a point at `t` covers `(t - period, t]`; the last point is the latest period end at
//! or before `end` (default: now), so a period still running is not shown. Periods without any
//! value are left out of `values`. Aggregated views (service, cloud) count only VMs the
//! registry lists; each field says whether the VMs' values are averaged or summed.

pub mod api;
pub mod fields;

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use ocelli_model::Matcher;
use serde_json::{Value, json};

use crate::registry::Filter;
use crate::state::AppState;
use crate::{Error, Result};
use fields::{Agg, Metric};
use ocelli_model::time::{parse_api_duration as parse_duration, parse_time};
use ocelli_storage::DbStorage;
use ocelli_wire::exposition::escape_label_value as escape_label;

/// Most points a view answers per field, as Prometheus limits range queries.
pub const MAX_POINTS: i64 = 11_000;

/// The query parameters of every view.
pub const PARAMS: &[&str] = &["periodType", "statisticsCriteria", "duration", "end"];
/// Extra parameter of the cloud view.
pub const CSP_PARAMS: &[&str] = &["ns"];

/// What one view request asks for.
#[derive(Clone, Debug)]
pub struct ViewQuery {
    pub metric: &'static Metric,
    /// `periodType` as a step in ms.
    pub step_ms: i64,
    /// `statisticsCriteria` as a PromQL function.
    pub criterion: &'static str,
    /// The time of the last point, aligned to the step.
    pub end_ms: i64,
    /// Points per field.
    pub points: i64,
    /// `ns` of the cloud view.
    pub ns: Option<String>,
}

fn one_of(param: &str, v: &str, accepted: &[&str]) -> Error {
    Error::BadData(format!("{param}: \"{v}\" is not one of {}", accepted.join(", ")))
}

impl ViewQuery {
    /// Reads the metric of the path and the query string; `extra` are the parameters this
    /// route takes besides [`PARAMS`]. `now_ms` is the default `end`.
    pub fn parse(metric: &str, query: &str, extra: &[&str], now_ms: i64) -> Result<ViewQuery> {
        let metric = fields::metric(metric).ok_or_else(|| {
            let names: Vec<&str> = fields::METRICS.iter().map(|m| m.name).collect();
            one_of("metric", metric, &names)
        })?;
        let mut seen = BTreeSet::new();
        let (mut period, mut crit, mut duration, mut end, mut ns) =
            ("m".to_string(), "avg".to_string(), "1h".to_string(), None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if !seen.insert(k.to_string()) {
                return Err(Error::BadData(format!("{k}: given more than once")));
            }
            let v = v.into_owned();
            match k.as_ref() {
                "periodType" => period = v,
                "statisticsCriteria" => crit = v,
                "duration" => duration = v,
                "end" => end = Some(v),
                "ns" if extra.contains(&"ns") => ns = Some(v),
                _ => {
                    let all: Vec<&str> = PARAMS.iter().chain(extra).copied().collect();
                    return Err(Error::BadData(format!(
                        "{k}: unknown parameter; expected one of {}",
                        all.join(", ")
                    )));
                }
            }
        }
        let step_ms = match period.as_str() {
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(one_of("periodType", &period, &["m", "h", "d"])),
        };
        let criterion = match crit.as_str() {
            "min" => "min_over_time",
            "max" => "max_over_time",
            "avg" => "avg_over_time",
            "last" => "last_over_time",
            _ => return Err(one_of("statisticsCriteria", &crit, &["min", "max", "avg", "last"])),
        };
        let dur = parse_duration(&duration).filter(|d| *d > 0).ok_or_else(|| {
            Error::BadData(format!(
                "duration: \"{duration}\" is not a positive duration (a number and a unit of ms, s, m, h, d, w, y: 30m, 6h, 7d)"
            ))
        })?;
        let points = dur / step_ms;
        if points < 1 {
            return Err(Error::BadData(format!(
                "duration: \"{duration}\" is shorter than one period of periodType \"{period}\""
            )));
        }
        if points > MAX_POINTS {
            return Err(Error::BadData(format!(
                "duration: \"{duration}\" at periodType \"{period}\" is {points} points, over the limit of {MAX_POINTS}; shorten duration or use a longer periodType"
            )));
        }
        let end = match end {
            None => now_ms,
            Some(e) => parse_time(&e).ok_or_else(|| {
                Error::BadData(format!("end: \"{e}\" is not an RFC 3339 time or Unix seconds"))
            })?,
        };
        if let Some(n) = &ns {
            crate::registry::agent::check_part("ns", n)?;
        }
        let end_ms = end.div_euclid(step_ms) * step_ms;
        Ok(ViewQuery { metric, step_ms, criterion, end_ms, points, ns })
    }

    fn start_ms(&self) -> i64 {
        self.end_ms - (self.points - 1) * self.step_ms
    }
}

/// What a view covers.
#[derive(Clone, Debug)]
pub enum Scope {
    Vm { ns: String, vm_id: String },
    Service { ns: String, service_id: String },
    Csp { csp: String, ns: Option<String> },
}

/// A scope resolved: the selector matchers (PromQL text) and, for aggregated views, the VMs
/// (`(ns, vm_id)`) the registry lists.
struct Resolved {
    matchers: String,
    vms: Option<BTreeSet<(String, String)>>,
    tags: Value,
}

fn eq(name: &str, v: &str) -> String {
    format!("{name}=\"{}\"", escape_label(v))
}

impl Scope {
    async fn resolve(&self, st: &AppState) -> Result<Resolved> {
        match self {
            Scope::Vm { ns, vm_id } => {
                let filter = Filter { ns: Some(ns.clone()), ..Filter::default() };
                let registered =
                    st.registry.list(&filter).iter().any(|a| a.rec.identity.vm_id == *vm_id);
                if !registered {
                    let db = st.db.clone();
                    let m = [
                        Matcher::equal("ns", ns.as_str()),
                        Matcher::equal("vm_id", vm_id.as_str()),
                    ];
                    let stored = ocelli_http::blocking(move || {
                        Ok(!db.series(&m, i64::MIN, i64::MAX, 1)?.is_empty())
                    })
                    .await?;
                    if !stored {
                        return Err(Error::NotFound(format!(
                            "no VM \"{vm_id}\" in namespace \"{ns}\""
                        )));
                    }
                }
                Ok(Resolved {
                    matchers: format!("{},{}", eq("ns", ns), eq("vm_id", vm_id)),
                    vms: None,
                    tags: json!({ "ns": ns, "vm_id": vm_id }),
                })
            }
            Scope::Service { ns, service_id } => {
                let filter = Filter {
                    ns: Some(ns.clone()),
                    service_id: Some(service_id.clone()),
                    ..Filter::default()
                };
                let vms = registered(st, &filter);
                if vms.is_empty() {
                    return Err(Error::NotFound(format!(
                        "no agents registered under service \"{service_id}\" in namespace \"{ns}\""
                    )));
                }
                Ok(Resolved {
                    matchers: format!("{},{}", eq("ns", ns), eq("service_id", service_id)),
                    vms: Some(vms),
                    tags: json!({ "ns": ns, "service_id": service_id }),
                })
            }
            Scope::Csp { csp, ns } => {
                let filter = Filter { ns: ns.clone(), csp: Some(csp.clone()), ..Filter::default() };
                let vms = registered(st, &filter);
                if vms.is_empty() {
                    let within =
                        ns.as_ref().map(|n| format!(" in namespace \"{n}\"")).unwrap_or_default();
                    return Err(Error::NotFound(format!(
                        "no agents registered under csp \"{csp}\"{within}"
                    )));
                }
                let mut matchers = eq("csp", csp);
                let mut tags = json!({ "csp": csp });
                if let Some(n) = ns {
                    matchers = format!("{matchers},{}", eq("ns", n));
                    tags["ns"] = json!(n);
                }
                Ok(Resolved { matchers, vms: Some(vms), tags })
            }
        }
    }
}

fn registered(st: &AppState, filter: &Filter) -> BTreeSet<(String, String)> {
    st.registry
        .list(filter)
        .into_iter()
        .map(|a| (a.rec.identity.ns, a.rec.identity.vm_id))
        .collect()
}

/// Evaluates a view and renders its answer.
pub(crate) async fn view(st: &AppState, scope: Scope, q: ViewQuery) -> Result<Value> {
    let r = scope.resolve(st).await?;
    let engine = st.engine.clone();
    let db = st.db.clone();
    let (start, end, step, n) = (q.start_ms(), q.end_ms, q.step_ms, q.points as usize);
    let window = format!("{}ms", step - 1);
    let metric = q.metric;
    let matchers = r.matchers.clone();
    let vms = r.vms.clone();
    let columns = ocelli_http::blocking(move || {
        let s = DbStorage { db: &db, max_samples: engine.options().max_samples };
        let mut columns = Vec::with_capacity(metric.fields.len());
        for f in metric.fields {
            let promql = f.promql(q.criterion, &window, &matchers);
            let v = engine.range(&s, &promql, start, end, step).map_err(Error::Query)?;
            let ocelli_promql::QueryValue::Matrix(series) = v else {
                return Err(Error::Internal(format!("{}: range query answered no matrix", f.name)));
            };
            let per_vm: Vec<Vec<Option<f64>>> = series
                .into_iter()
                .filter(|(l, _)| {
                    vms.as_ref().is_none_or(|set| {
                        let key = (
                            l.get("ns").unwrap_or("").to_string(),
                            l.get("vm_id").unwrap_or("").to_string(),
                        );
                        set.contains(&key)
                    })
                })
                .map(|(_, samples)| {
                    let mut col = vec![None; n];
                    for x in samples {
                        let i = ((x.t - start) / step) as usize;
                        if let Some(slot) = col.get_mut(i) {
                            *slot = Some(x.v);
                        }
                    }
                    col
                })
                .collect();
            columns.push(combine(&per_vm, n, f.agg));
        }
        Ok(columns)
    })
    .await?;
    let mut values = Vec::new();
    for i in 0..n {
        if columns.iter().all(|c| c[i].is_none()) {
            continue;
        }
        let t = start + i as i64 * step;
        let mut row = vec![json!(ocelli_model::time::rfc3339(
            UNIX_EPOCH + Duration::from_millis(t.max(0) as u64)
        ))];
        row.extend(columns.iter().map(|c| c[i].map_or(Value::Null, Value::from)));
        values.push(Value::Array(row));
    }
    let mut cols = vec!["timestamp"];
    cols.extend(metric.fields.iter().map(|f| f.name));
    let mut out = json!({ "name": metric.name, "tags": r.tags, "columns": cols, "values": values });
    if let Some(vms) = r.vms {
        out["vms"] = vms.iter().map(|(ns, vm)| json!({ "ns": ns, "vm_id": vm })).collect();
    }
    Ok(out)
}

/// The VMs' columns as one: per point, the average or sum of the VMs that have a value.
fn combine(per_vm: &[Vec<Option<f64>>], n: usize, agg: Agg) -> Vec<Option<f64>> {
    (0..n)
        .map(|i| {
            let vals: Vec<f64> = per_vm.iter().filter_map(|c| c[i]).collect();
            if vals.is_empty() {
                return None;
            }
            let sum: f64 = vals.iter().sum();
            Some(match agg {
                Agg::Sum => sum,
                Agg::Avg => sum / vals.len() as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(metric: &str, q: &str) -> String {
        match ViewQuery::parse(metric, q, &[], 0) {
            Ok(v) => panic!("{q}: accepted as {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parameters() {
        let q = ViewQuery::parse("cpu", "", &[], 3_600_000 * 5 + 59_999);
        let q = q.map(|q| (q.step_ms, q.criterion, q.end_ms, q.points, q.start_ms()));
        assert_eq!(
            q.ok(),
            Some((60_000, "avg_over_time", 3_600_000 * 5, 60, 3_600_000 * 4 + 60_000))
        );
        let q =
            ViewQuery::parse("disk", "periodType=d&statisticsCriteria=last&duration=7d", &[], 0);
        assert_eq!(q.map(|q| (q.points, q.criterion)).ok(), Some((7, "last_over_time")));
        assert_eq!(
            err("gpu", ""),
            "metric: \"gpu\" is not one of cpu, cpufreq, memory, disk, diskio, network"
        );
        assert_eq!(err("cpu", "periodType=s"), "periodType: \"s\" is not one of m, h, d");
        assert_eq!(
            err("cpu", "statisticsCriteria=sum"),
            "statisticsCriteria: \"sum\" is not one of min, max, avg, last"
        );
        assert!(err("cpu", "duration=x").starts_with("duration: \"x\" is not a positive duration"));
        assert_eq!(
            err("cpu", "duration=30s"),
            "duration: \"30s\" is shorter than one period of periodType \"m\""
        );
        assert!(err("cpu", "duration=30d").contains("is 43200 points, over the limit of 11000"));
        assert_eq!(
            err("cpu", "step=1m"),
            "step: unknown parameter; expected one of periodType, statisticsCriteria, duration, end"
        );
        assert_eq!(err("cpu", "duration=1h&duration=2h"), "duration: given more than once");
        assert_eq!(
            err("cpu", "end=yesterday"),
            "end: \"yesterday\" is not an RFC 3339 time or Unix seconds"
        );
        assert!(err("cpu", "ns=a").starts_with("ns: unknown parameter"));
        let csp = ViewQuery::parse("cpu", "ns=a", CSP_PARAMS, 0).map(|q| q.ns);
        assert_eq!(csp.ok().flatten().as_deref(), Some("a"));
    }

    #[test]
    fn combining() {
        let vms = vec![vec![Some(1.0), None, None], vec![Some(3.0), Some(5.0), None]];
        assert_eq!(combine(&vms, 3, Agg::Avg), vec![Some(2.0), Some(5.0), None]);
        assert_eq!(combine(&vms, 3, Agg::Sum), vec![Some(4.0), Some(5.0), None]);
    }
}
