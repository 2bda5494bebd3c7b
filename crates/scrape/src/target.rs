//! From a discovered address to a scrape target, as Prometheus does it: the group's and the
//! target's labels, plus `job`, `__scheme__`, `__metrics_path__`, `__scrape_interval__`,
//! `__scrape_timeout__` and `__param_<name>` where not already set, are the *discovered*
//! labels; `relabel_configs` run over them; a target dropped by a rule or left with an empty
//! `__address__` is *dropped* (listed, not scraped). Otherwise `instance` defaults to
//! `__address__`, every label starting with `__` is removed, and what remains are the labels
//! each of the target's series is stored with. The scrape URL is built from the internal labels
//! before they go.
//!
//! This module only computes; scraping is [`super::scrape_loop`]'s job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ocelli_model::{Label, Labels};

use super::config::{Job, TargetGroup, check_address};
use super::relabel::{LabelMap, RelabelConfig, Rule, relabel};
use ocelli_model::time::parse_duration;

pub const ADDRESS: &str = "__address__";
const SCHEME: &str = "__scheme__";
const METRICS_PATH: &str = "__metrics_path__";
const SCRAPE_INTERVAL: &str = "__scrape_interval__";
const SCRAPE_TIMEOUT: &str = "__scrape_timeout__";
const PARAM_PREFIX: &str = "__param_";

/// Everything a scrape loop needs about its target.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    pub job: String,
    /// The labels every stored series of this target carries (no `__` labels).
    pub labels: Labels,
    /// `host:port` to connect to.
    pub address: String,
    /// Path and query of the scrape request.
    pub path_and_query: String,
    pub url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub sample_limit: usize,
    pub body_limit: usize,
    pub metric_relabel: Arc<Vec<Rule>>,
    /// The rules as written, to tell whether they changed.
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// For an `https` target: the TLS setup to verify it with.
    pub tls: Option<super::config::ClientTls>,
}

impl TargetSpec {
    /// Whether a running loop for `self` can go on as it is for `other`: same target, same
    /// settings. How the target was found (static or file, which relabelling) does not matter.
    pub fn same_as(&self, other: &TargetSpec) -> bool {
        self.job == other.job
            && self.labels == other.labels
            && self.url == other.url
            && self.interval == other.interval
            && self.timeout == other.timeout
            && self.honor_labels == other.honor_labels
            && self.honor_timestamps == other.honor_timestamps
            && self.sample_limit == other.sample_limit
            && self.body_limit == other.body_limit
            && self.metric_relabel_configs == other.metric_relabel_configs
            && self.tls.is_some() == other.tls.is_some()
    }
}

/// What becomes of one discovered target.
#[derive(Debug)]
pub enum Outcome {
    Active { spec: TargetSpec, discovered: Labels },
    Dropped { discovered: Labels },
}

fn to_labels(m: &LabelMap) -> Labels {
    Labels::from_sorted(
        m.iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| Label::new(n, v)).collect(),
    )
}

/// Turns one target of a group into a scrape target or a dropped one. An `Err` is a target
/// that cannot be scraped (a bad address or interval after relabelling); it is logged by the
/// caller and neither scraped nor listed.
pub fn populate(
    job: &Job,
    group: &TargetGroup,
    target: &BTreeMap<String, String>,
) -> Result<Outcome, String> {
    let mut l: LabelMap = group.labels.clone();
    l.extend(target.iter().map(|(n, v)| (n.clone(), v.clone())));
    let defaults = [
        ("job", job.name.clone()),
        (SCHEME, job.raw.scheme.clone()),
        (METRICS_PATH, job.raw.metrics_path.clone()),
        (SCRAPE_INTERVAL, ocelli_model::time::format_duration(job.interval)),
        (SCRAPE_TIMEOUT, ocelli_model::time::format_duration(job.timeout)),
    ];
    for (n, v) in defaults {
        l.entry(n.to_string()).or_insert(v);
    }
    for (name, values) in &job.raw.params {
        if let Some(first) = values.first() {
            l.entry(format!("{PARAM_PREFIX}{name}")).or_insert_with(|| first.clone());
        }
    }
    l.retain(|_, v| !v.is_empty());
    let discovered = to_labels(&l);
    if !relabel(&job.relabel, &mut l) {
        return Ok(Outcome::Dropped { discovered });
    }
    let Some(address) = l.get(ADDRESS).cloned() else {
        return Ok(Outcome::Dropped { discovered });
    };
    check_address(&address).map_err(|e| format!("__address__ after relabelling: {e}"))?;
    let get = |n: &str| l.get(n).map(String::as_str).unwrap_or("");
    let scheme = get(SCHEME);
    if scheme != "http" && scheme != "https" {
        return Err(format!("__scheme__ after relabelling: {scheme:?} is neither http nor https"));
    }
    let tls = (scheme == "https").then(|| job.tls.clone());
    let path = get(METRICS_PATH);
    let dur = |n: &str| {
        parse_duration(get(n))
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{n} after relabelling: invalid duration {:?}", get(n)))
    };
    let (interval, timeout) = (dur(SCRAPE_INTERVAL)?, dur(SCRAPE_TIMEOUT)?);
    if timeout > interval {
        return Err(format!(
            "{SCRAPE_TIMEOUT} {} is greater than {SCRAPE_INTERVAL} {}",
            get(SCRAPE_TIMEOUT),
            get(SCRAPE_INTERVAL)
        ));
    }
    // the query: the job's params, the first value of each replaced by its __param_ label
    let mut params: BTreeMap<String, Vec<String>> = job.raw.params.clone();
    for (n, v) in l.range(PARAM_PREFIX.to_string()..) {
        let Some(key) = n.strip_prefix(PARAM_PREFIX) else { break };
        match params.get_mut(key).and_then(|vals| vals.first_mut()) {
            Some(first) => *first = v.clone(),
            None => {
                params.insert(key.to_string(), vec![v.clone()]);
            }
        }
    }
    let query: Vec<String> = params
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{}={}", escape(k), escape(v))))
        .collect();
    let path_and_query =
        if query.is_empty() { path.to_string() } else { format!("{path}?{}", query.join("&")) };
    let url = format!("{scheme}://{address}{path_and_query}");
    l.entry("instance".to_string()).or_insert_with(|| address.clone());
    l.retain(|n, _| !n.starts_with("__"));
    Ok(Outcome::Active {
        spec: TargetSpec {
            job: job.name.clone(),
            labels: to_labels(&l),
            address,
            path_and_query,
            url,
            interval,
            timeout,
            honor_labels: job.raw.honor_labels,
            honor_timestamps: job.raw.honor_timestamps,
            sample_limit: job.raw.sample_limit,
            body_limit: job.body_limit,
            metric_relabel: job.metric_relabel.clone(),
            metric_relabel_configs: job.raw.metric_relabel_configs.clone(),
            tls,
        },
        discovered,
    })
}

/// URL query escaping: unreserved characters as they are, space as `+`, the rest `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GlobalConfig, ScrapeConfig, compile};

    fn job(extra: &str) -> Job {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(deserialize_with = "crate::config::deserialize_jobs")]
            scrape_configs: Vec<ScrapeConfig>,
        }
        let text = format!("[[scrape_configs]]\njob_name = \"node\"\n{extra}");
        let d: Doc = toml::from_str(&text).unwrap();
        let g = GlobalConfig::default();
        compile(&g, &d.scrape_configs, std::path::Path::new("."), 1000).unwrap().remove(0)
    }

    fn group(addr: &str, labels: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            targets: vec![BTreeMap::from([(ADDRESS.to_string(), addr.to_string())])],
            labels: labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    fn run(j: &Job, g: &TargetGroup) -> Outcome {
        populate(j, g, &g.targets[0]).unwrap()
    }

    #[test]
    fn default_labels_and_url() {
        let j = job("params = { module = [\"a b\", \"c\"] }\n");
        let Outcome::Active { spec, discovered } = run(&j, &group("h:9100", &[("env", "prod")]))
        else {
            panic!("dropped")
        };
        assert_eq!(
            spec.labels,
            Labels::from_pairs([("env", "prod"), ("instance", "h:9100"), ("job", "node")]).unwrap()
        );
        assert_eq!(discovered.get("__metrics_path__"), Some("/metrics"));
        assert_eq!(discovered.get("__param_module"), Some("a b"));
        assert_eq!(discovered.get("__scrape_interval__"), Some("1m"));
        assert_eq!(discovered.get("instance"), None);
        assert_eq!(spec.url, "http://h:9100/metrics?module=a+b&module=c");
        assert_eq!(spec.address, "h:9100");
    }

    #[test]
    fn relabelling_changes_address_path_params_and_instance() {
        let j = job(r#"
            [[scrape_configs.relabel_configs]]
            source_labels = ["__address__"]
            target_label = "__param_target"
            [[scrape_configs.relabel_configs]]
            target_label = "__address__"
            replacement = "exporter:9115"
            [[scrape_configs.relabel_configs]]
            source_labels = ["__param_target"]
            target_label = "instance"
            [[scrape_configs.relabel_configs]]
            target_label = "__metrics_path__"
            replacement = "/probe"
            "#);
        let Outcome::Active { spec, .. } = run(&j, &group("site:80", &[])) else { panic!() };
        assert_eq!(spec.url, "http://exporter:9115/probe?target=site%3A80");
        assert_eq!(spec.labels.get("instance"), Some("site:80"));
        assert_eq!(spec.labels.get("__param_target"), None);
    }

    #[test]
    fn dropped_by_rule_or_empty_address() {
        let j = job(
            "[[scrape_configs.relabel_configs]]\nsource_labels = [\"env\"]\nregex = \"dev\"\naction = \"drop\"\n",
        );
        assert!(matches!(run(&j, &group("h:1", &[("env", "dev")])), Outcome::Dropped { .. }));
        assert!(matches!(run(&j, &group("h:1", &[("env", "prod")])), Outcome::Active { .. }));
        let j = job(
            "[[scrape_configs.relabel_configs]]\ntarget_label = \"__address__\"\nreplacement = \"\"\n",
        );
        let Outcome::Dropped { discovered } = run(&j, &group("h:1", &[])) else { panic!() };
        assert_eq!(discovered.get("__address__"), Some("h:1"));
    }

    #[test]
    fn bad_address_or_interval_after_relabelling_is_an_error() {
        let j = job(
            "[[scrape_configs.relabel_configs]]\ntarget_label = \"__address__\"\nreplacement = \"no-port\"\n",
        );
        let g = group("h:1", &[]);
        let e = populate(&j, &g, &g.targets[0]).unwrap_err();
        assert_eq!(e, "__address__ after relabelling: \"no-port\" is not host:port");
        let j = job(
            "[[scrape_configs.relabel_configs]]\ntarget_label = \"__scrape_interval__\"\nreplacement = \"1s\"\n",
        );
        let e = populate(&j, &g, &g.targets[0]).unwrap_err();
        assert_eq!(e, "__scrape_timeout__ 10s is greater than __scrape_interval__ 1s");
    }
}
