//! Values: what the evaluator passes between nodes ([`Val`], all steps at once) and what a
//! query returns ([`QueryValue`], in the shapes of the Prometheus HTTP API).

pub use ocelli_model::format_value;
use ocelli_model::{Label, Labels, METRIC_NAME, Sample};

/// The steps a node is evaluated at: `start + i * step` for `i < n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Steps {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Steps {
    pub fn at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub fn last(&self) -> i64 {
        self.at(self.n.saturating_sub(1))
    }
}

/// One series of an instant vector over all steps: `vals[i]` is its value at step `i`, if any.
#[derive(Clone, Debug)]
pub(crate) struct VSeries {
    pub labels: Labels,
    pub vals: Vec<Option<f64>>,
    /// For `timestamp()`: the timestamps of the samples a selector picked (`None` otherwise).
    pub ts: Option<Vec<i64>>,
}

impl VSeries {
    pub fn new(labels: Labels, vals: Vec<Option<f64>>) -> VSeries {
        VSeries { labels, vals, ts: None }
    }

    pub fn is_empty(&self) -> bool {
        self.vals.iter().all(Option::is_none)
    }
}

/// A series with raw samples: what a range selector or a subquery yields.
#[derive(Clone, Debug)]
pub(crate) struct MSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// A range vector argument: the series and how each step's window is placed. The window of
/// step `i` is `[r - range, r]` with `r = at.unwrap_or(steps.at(i)) - offset`.
#[derive(Clone, Debug)]
pub(crate) struct Range {
    pub series: RangeSeries,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

/// The series of a range vector: computed (a subquery's), or a selector whose series are
/// streamed from storage one at a time when a range function consumes them, with stale
/// markers dropped (see `Ctx::for_each_range_series`).
#[derive(Clone, Debug)]
pub(crate) enum RangeSeries {
    Loaded(Vec<MSeries>),
    Selector { vs: Box<promql_parser::parser::VectorSelector>, mint: i64, maxt: i64 },
}

impl Range {
    pub fn ref_time(&self, t: i64) -> i64 {
        self.at.unwrap_or(t) - self.offset
    }
}

/// A node's value over all steps.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<VSeries>),
    Matrix(Range),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "vector",
            Val::Matrix(_) => "matrix",
        }
    }
}

/// A query's result.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    /// `(t_ms, value)`.
    Scalar(i64, f64),
    /// `(t_ms, value)`.
    String(i64, String),
    /// Each element: labels, sample timestamp (ms), value.
    Vector(Vec<(Labels, i64, f64)>),
    /// Each series: labels and its samples.
    Matrix(Vec<(Labels, Vec<Sample>)>),
}

impl QueryValue {
    /// The `resultType` of the Prometheus HTTP API.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryValue::Scalar(..) => "scalar",
            QueryValue::String(..) => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }
}

/// Label-set editing for the evaluator; label sets stay sorted with non-empty values.
pub(crate) fn drop_name(l: &Labels) -> Labels {
    if l.get(METRIC_NAME).is_none() {
        return l.clone();
    }
    Labels::from_sorted(l.iter().filter(|x| x.name != METRIC_NAME).cloned().collect())
}

/// [`drop_name`] of an owned label set, without copying it.
pub(crate) fn without_name(l: Labels) -> Labels {
    if l.get(METRIC_NAME).is_none() {
        return l;
    }
    let mut v = l.into_vec();
    v.retain(|x| x.name != METRIC_NAME);
    Labels::from_sorted(v)
}

pub(crate) fn keep_only(l: &Labels, names: &[String]) -> Labels {
    Labels::from_sorted(l.iter().filter(|x| names.contains(&x.name)).cloned().collect())
}

pub(crate) fn drop_these(l: &Labels, names: &[String]) -> Labels {
    Labels::from_sorted(l.iter().filter(|x| !names.contains(&x.name)).cloned().collect())
}

/// Sets `name` to `value`, or removes it when `value` is empty.
pub(crate) fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = l.iter().filter(|x| x.name != name).cloned().collect();
    if !value.is_empty() {
        let pos = v.partition_point(|x| x.name.as_str() < name);
        v.insert(pos, Label::new(name, value));
    }
    Labels::from_sorted(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_as_prometheus_does() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1e+21"); // Prometheus: exponent form from 1e21
        assert_eq!(format_value(-2.5e-7), "-2.5e-07"); // and below 1e-6
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }
}
