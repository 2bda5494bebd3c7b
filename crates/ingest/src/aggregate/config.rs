//! The `[[aggregation]]` entries of the server config and their validation into [`Rule`]s:
//! the selector, the interval, the outputs, the grouping and the derived metric names.
//! Errors name the entry and the field (`aggregation[0].outputs: ...`).

use ocelli_model::{Label, Labels, METRIC_NAME, Matcher};
use serde::Deserialize;

/// One `[[aggregation]]` entry as written in the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationConfig {
    /// A series selector, e.g. `{__name__=~"node_cpu_.*"}`; `or` between selectors is allowed.
    #[serde(rename = "match")]
    pub selector: String,
    /// The length of the aligned intervals, e.g. `1m`.
    pub interval: String,
    /// Some of `min`, `max`, `avg`, `last`, `sum`, `count`.
    pub outputs: Vec<String>,
    /// Group by these labels only (the metric name is always kept).
    #[serde(default)]
    pub by: Option<Vec<String>>,
    /// Group by every label except these.
    #[serde(default)]
    pub without: Option<Vec<String>>,
    /// Also store matching input samples raw. Default false.
    #[serde(default)]
    pub keep_input: bool,
    /// How long after an interval's end its samples are still accepted. Default: a tenth of
    /// the interval, at least 1s but never more than the interval itself.
    #[serde(default)]
    pub flush_delay: Option<String>,
    /// Most output series (groups) open at once, over all open intervals; a sample that would
    /// open one more is dropped. Default 100000.
    #[serde(default)]
    pub max_series: Option<usize>,
}

/// The default of `max_series`.
pub const DEFAULT_MAX_SERIES: usize = 100_000;

/// One output of an aggregation rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Min,
    Max,
    Avg,
    Last,
    Sum,
    Count,
}

const OUTPUTS: [(&str, Output); 6] = [
    ("min", Output::Min),
    ("max", Output::Max),
    ("avg", Output::Avg),
    ("last", Output::Last),
    ("sum", Output::Sum),
    ("count", Output::Count),
];

impl Output {
    pub fn as_str(self) -> &'static str {
        OUTPUTS.iter().find(|(_, o)| *o == self).map(|(s, _)| *s).unwrap_or("")
    }
}

/// Which input labels the output series keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    All,
    By(Vec<String>),
    Without(Vec<String>),
}

/// A validated aggregation rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// One matcher list per `or` branch of the selector.
    matchers: Vec<Vec<Matcher>>,
    pub interval_ms: i64,
    pub delay_ms: i64,
    pub outputs: Vec<Output>,
    pub grouping: Grouping,
    pub keep_input: bool,
    pub max_series: usize,
    /// `:<interval>[_by_..|_without_..]_`, between the metric name and the output.
    infix: String,
}

impl Rule {
    /// Whether a series matches the selector, given its label lookup.
    pub fn matches<'a>(&self, get: &impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .any(|branch| branch.iter().all(|m| m.matches(get(&m.name).unwrap_or(""))))
    }

    /// The labels an input series is grouped under: the input's labels after `by`/`without`,
    /// metric name included (still the input's name; [`Rule::output_name`] derives the rest).
    pub fn output_labels(&self, labels: &Labels) -> Labels {
        let keep = |l: &Label| match &self.grouping {
            Grouping::All => true,
            Grouping::By(by) => l.name == METRIC_NAME || by.contains(&l.name),
            Grouping::Without(w) => !w.contains(&l.name),
        };
        Labels::from_sorted(labels.iter().filter(|l| keep(l)).cloned().collect())
    }

    /// `<metric>:<interval>[_by_<labels>|_without_<labels>]_<output>`.
    pub fn output_name(&self, metric: &str, output: Output) -> String {
        format!("{metric}{}{}", self.infix, output.as_str())
    }
}

/// Validates the `[[aggregation]]` entries; errors name the entry and field.
pub fn compile(entries: &[AggregationConfig]) -> Result<Vec<Rule>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| compile_one(e).map_err(|m| format!("aggregation[{i}].{m}")))
        .collect()
}

fn compile_one(e: &AggregationConfig) -> Result<Rule, String> {
    let matchers = ocelli_promql::parse_selector(&e.selector)
        .map_err(|err| format!("match: {:?} is not a series selector: {err}", e.selector))?;
    let interval_ms = ocelli_model::time::parse_duration(&e.interval)
        .filter(|d| !d.is_zero())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("interval: invalid duration {:?} (use e.g. 1m, 30s)", e.interval))?;
    let delay_ms = match &e.flush_delay {
        None => (interval_ms / 10).clamp(1000.min(interval_ms), interval_ms),
        Some(v) => ocelli_model::time::parse_duration(v)
            .and_then(|d| i64::try_from(d.as_millis()).ok())
            .ok_or_else(|| format!("flush_delay: invalid duration {v:?} (use e.g. 5s, 500ms)"))?,
    };
    if e.outputs.is_empty() {
        return Err("outputs: give at least one of min, max, avg, last, sum, count".into());
    }
    let mut outputs = Vec::new();
    for o in &e.outputs {
        let out = OUTPUTS.iter().find(|(s, _)| s == o).map(|(_, o)| *o).ok_or_else(|| {
            format!("outputs: {o:?} is not one of min, max, avg, last, sum, count")
        })?;
        if outputs.contains(&out) {
            return Err(format!("outputs: {o:?} is given twice"));
        }
        outputs.push(out);
    }
    let names = |field: &str, v: &[String]| -> Result<Vec<String>, String> {
        if v.is_empty() {
            return Err(format!(
                "{field}: give at least one label (leave `{field}` out to keep all labels)"
            ));
        }
        let mut v = v.to_vec();
        for n in &v {
            if !ocelli_model::is_valid_label_name(n) || n == METRIC_NAME {
                return Err(format!("{field}: {n:?} is not a label name that can be grouped by"));
            }
        }
        v.sort();
        v.dedup();
        Ok(v)
    };
    let (grouping, suffix) = match (&e.by, &e.without) {
        (Some(_), Some(_)) => return Err("by: give either `by` or `without`, not both".into()),
        (Some(by), None) => {
            let by = names("by", by)?;
            let s = format!("_by_{}", by.join("_"));
            (Grouping::By(by), s)
        }
        (None, Some(w)) => {
            let w = names("without", w)?;
            let s = format!("_without_{}", w.join("_"));
            (Grouping::Without(w), s)
        }
        (None, None) => (Grouping::All, String::new()),
    };
    let max_series = match e.max_series {
        Some(0) => return Err("max_series: must be at least 1".into()),
        Some(n) => n,
        None => DEFAULT_MAX_SERIES,
    };
    let infix = format!(":{}{suffix}_", e.interval.trim());
    Ok(Rule {
        matchers,
        interval_ms,
        delay_ms,
        outputs,
        grouping,
        keep_input: e.keep_input,
        max_series,
        infix,
    })
}
