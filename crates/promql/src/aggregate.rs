//! Aggregation operators: sum, avg, count, min, max, group, stddev, stdvar, topk, bottomk,
//! quantile, count_values, with `by` / `without`, computed per step as Prometheus 2.42 does
//! (including its running mean for `avg` and its NaN rules for `min` / `max`).

use std::collections::HashMap;

use ocelli_model::{Labels, METRIC_NAME};
use promql_parser::parser::token::TokenId;
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier, VectorSelector};

use crate::eval::Ctx;
use crate::value::{Steps, VSeries, Val, drop_these, keep_only, set_label};
use crate::{Error, Result};

pub(crate) fn aggregate(ctx: &Ctx<'_>, a: &AggregateExpr, steps: Steps) -> Result<Val> {
    let op = a.op.id();
    let param = match &a.param {
        Some(p) => Some(ctx.eval(p, steps)?),
        None => None,
    };
    if let Some(stream) = Stream::for_expr(a, steps) {
        *ctx.stream.borrow_mut() = Some(stream);
        let v = ctx.eval(&a.expr, steps);
        let stream = ctx.stream.borrow_mut().take();
        let v = v?;
        if let Some(stream) = stream.filter(|s| s.used) {
            if matches!(&v, Val::Vector(vs) if !vs.is_empty()) {
                return Err(Error::Execution(
                    "internal error: an aggregation's input was both streamed and returned".into(),
                ));
            }
            return Ok(Val::Vector(stream.finish()));
        }
        return aggregate_input(a, op, param, v, steps);
    }
    let input = ctx.eval(&a.expr, steps)?;
    aggregate_input(a, op, param, input, steps)
}

/// The output labels of a series' group; with `name_dropped`, the series' `__name__` is taken
/// as already removed (as a function that drops it would have).
fn group_labels(modifier: Option<&LabelModifier>, l: &Labels, name_dropped: bool) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(LabelModifier::Include(ls)) => {
            let g = keep_only(l, &ls.labels);
            if name_dropped && g.get(METRIC_NAME).is_some() {
                crate::value::without_name(g)
            } else {
                g
            }
        }
        Some(LabelModifier::Exclude(ls)) => {
            let mut names = ls.labels.clone();
            names.push(METRIC_NAME.to_string());
            drop_these(l, &names)
        }
    }
}

/// Functions that [`Stream`] may take series from: each returns one series per input series,
/// built by `functions::range_fn_with` from a single matrix selector argument.
const STREAMED_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
];

/// An aggregation computed while its input is produced, one series at a time, instead of
/// over the whole input vector afterwards: for `sum`, `avg`, `count`, `group`, `min`, `max`,
/// `stddev` and `stdvar` over an instant selector or over one of [`STREAMED_FUNCTIONS`] of a
/// matrix selector. The input series are never held all at once (`sum by (mode)
/// (rate(x[5m]))` over 64k series and 105 steps held 107 MB of them), and each value is
/// added to its group's accumulator at its step in input order, with the same arithmetic as
/// [`aggregate`], so results are identical.
///
/// The producer (`Ctx::eval_vector_selector` or `functions::range_fn_with`) takes it out of
/// `Ctx::stream`, adds every series, marks it used and puts it back. Only expressions
/// that produce a vector directly from storage are streamed, and only where a function that
/// drops `__name__` cannot make two series equal (the selector names one metric), since
/// equal label sets must be merged or refused before aggregation.
pub(crate) struct Stream {
    op: TokenId,
    modifier: Option<LabelModifier>,
    n_steps: usize,
    index: HashMap<Labels, usize>,
    groups: Vec<Labels>,
    /// Per group and step (`g * n_steps + i`): values seen, and the op's state.
    n: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    /// Set by the producer that consumed the input.
    pub(crate) used: bool,
}

impl Stream {
    /// A stream for `a` if its operator and input qualify.
    fn for_expr(a: &AggregateExpr, steps: Steps) -> Option<Stream> {
        let op = a.op.id();
        if a.param.is_some()
            || ![T_SUM, T_AVG, T_COUNT, T_GROUP, T_MIN, T_MAX, T_STDDEV, T_STDVAR].contains(&op)
        {
            return None;
        }
        let mut inner = a.expr.as_ref();
        while let Expr::Paren(p) = inner {
            inner = &p.expr;
        }
        let ok = match inner {
            Expr::VectorSelector(_) => true,
            Expr::Call(c) => {
                STREAMED_FUNCTIONS.contains(&c.func.name)
                    && c.args.args.len() == 1
                    && matches!(c.args.args[0].as_ref(), Expr::MatrixSelector(m) if names_one_metric(&m.vs))
            }
            _ => false,
        };
        ok.then(|| Stream {
            op,
            modifier: a.modifier.clone(),
            n_steps: steps.n,
            index: HashMap::new(),
            groups: Vec::new(),
            n: Vec::new(),
            a: Vec::new(),
            b: Vec::new(),
            used: false,
        })
    }

    /// Adds one input series (its labels before a function dropped `__name__`, if
    /// `name_dropped`) with its value at each step.
    pub(crate) fn add(&mut self, labels: &Labels, name_dropped: bool, vals: &[Option<f64>]) {
        if vals.iter().all(Option::is_none) {
            return;
        }
        let key = group_labels(self.modifier.as_ref(), labels, name_dropped);
        let g = match self.index.get(&key) {
            Some(&g) => g,
            None => {
                self.index.insert(key.clone(), self.groups.len());
                self.groups.push(key);
                let len = self.groups.len() * self.n_steps;
                self.n.resize(len, 0.0);
                self.a.resize(len, 0.0);
                self.b.resize(len, 0.0);
                self.groups.len() - 1
            }
        };
        let base = g * self.n_steps;
        for (i, v) in vals.iter().enumerate() {
            let Some(x) = *v else { continue };
            let k = base + i;
            let (n, a, b) = (&mut self.n[k], &mut self.a[k], &mut self.b[k]);
            let first = *n == 0.0;
            *n += 1.0;
            match self.op {
                T_SUM => *a = if first { x } else { *a + x },
                T_AVG => {
                    // `avg`'s running mean, one term at a time
                    if first {
                        *a = x;
                    } else if !(a.is_infinite()
                        && ((x.is_infinite() && (*a > 0.0) == (x > 0.0))
                            || (!x.is_infinite() && !x.is_nan())))
                    {
                        *a += x / *n - *a / *n;
                    }
                }
                T_MIN if first || *a > x || a.is_nan() => *a = x,
                T_MAX if first || *a < x || a.is_nan() => *a = x,
                T_STDDEV | T_STDVAR => {
                    // `variance`'s Welford update: `a` the mean, `b` the sum of squares
                    let delta = x - *a;
                    *a += delta / *n;
                    *b += delta * (x - *a);
                }
                _ => {} // count and group need only `n`; min and max keep theirs
            }
        }
    }

    /// The aggregated series, groups in the order their first series came.
    fn finish(self) -> Vec<VSeries> {
        let ns = self.n_steps;
        self.groups
            .into_iter()
            .enumerate()
            .map(|(g, labels)| {
                let vals = (0..ns)
                    .map(|i| {
                        let k = g * ns + i;
                        let (n, a, b) = (self.n[k], self.a[k], self.b[k]);
                        (n > 0.0).then(|| match self.op {
                            T_COUNT => n,
                            T_GROUP => 1.0,
                            T_STDDEV => (b / n).sqrt(),
                            T_STDVAR => b / n,
                            _ => a,
                        })
                    })
                    .collect();
                VSeries::new(labels, vals)
            })
            .collect()
    }
}

/// Whether a selector can only match series of one metric name.
fn names_one_metric(vs: &VectorSelector) -> bool {
    vs.name.is_some()
        || vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && matches!(m.op, promql_parser::label::MatchOp::Equal))
}

fn aggregate_input(
    a: &AggregateExpr,
    op: TokenId,
    param: Option<Val>,
    input: Val,
    steps: Steps,
) -> Result<Val> {
    let group_labels = |l: &Labels| group_labels(a.modifier.as_ref(), l, false);
    let input = match input {
        Val::Vector(v) => v,
        v => {
            return Err(Error::BadData(format!(
                "expected type instant vector in aggregation expression, got {}",
                v.type_name()
            )));
        }
    };
    // group index per input series, and each group's output labels
    let mut group_of: Vec<usize> = Vec::with_capacity(input.len());
    let mut groups: Vec<Labels> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for s in &input {
        let g = group_labels(&s.labels);
        let k = match index.get(&g) {
            Some(&k) => k,
            None => {
                index.insert(g.clone(), groups.len());
                groups.push(g);
                groups.len() - 1
            }
        };
        group_of.push(k);
    }
    let scalar_param = |name: &str| -> Result<Vec<f64>> {
        match &param {
            Some(Val::Scalar(v)) => Ok(v.clone()),
            _ => Err(Error::BadData(format!("expected scalar parameter for {name}"))),
        }
    };
    match op {
        T_TOPK | T_BOTTOMK => {
            let k = scalar_param(if op == T_TOPK { "topk" } else { "bottomk" })?;
            Ok(Val::Vector(top_bottom(&input, &group_of, groups.len(), &k, op == T_TOPK, steps)))
        }
        T_COUNT_VALUES => {
            let label = match &param {
                Some(Val::Str(s)) => s.clone(),
                _ => {
                    return Err(Error::BadData(
                        "expected string parameter for count_values".into(),
                    ));
                }
            };
            if !ocelli_model::is_valid_label_name(&label) {
                return Err(Error::Execution(format!("invalid label name {label:?}")));
            }
            let mut out: Vec<VSeries> = Vec::new();
            let mut idx: HashMap<Labels, usize> = HashMap::new();
            for (s, &g) in input.iter().zip(&group_of) {
                for (i, v) in s.vals.iter().enumerate() {
                    let Some(v) = v else { continue };
                    let l = set_label(&groups[g], &label, &crate::value::format_value(*v));
                    let k = *idx.entry(l.clone()).or_insert_with(|| {
                        out.push(VSeries::new(l, vec![None; steps.n]));
                        out.len() - 1
                    });
                    *out[k].vals[i].get_or_insert(0.0) += 1.0;
                }
            }
            Ok(Val::Vector(out))
        }
        _ => {
            let q = if op == T_QUANTILE { Some(scalar_param("quantile")?) } else { None };
            let mut out = Vec::with_capacity(groups.len());
            // members per group, so each group's values per step are gathered once
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
            for (i, &g) in group_of.iter().enumerate() {
                members[g].push(i);
            }
            let mut buf: Vec<f64> = Vec::new();
            for (g, labels) in groups.into_iter().enumerate() {
                let mut vals = vec![None; steps.n];
                for (i, slot) in vals.iter_mut().enumerate() {
                    buf.clear();
                    buf.extend(members[g].iter().filter_map(|&m| input[m].vals[i]));
                    if buf.is_empty() {
                        continue;
                    }
                    *slot = Some(match op {
                        T_SUM => buf.iter().sum(),
                        T_AVG => avg(&buf),
                        T_COUNT => buf.len() as f64,
                        T_GROUP => 1.0,
                        T_MIN => buf[1..]
                            .iter()
                            .fold(buf[0], |m, &v| if m > v || m.is_nan() { v } else { m }),
                        T_MAX => buf[1..]
                            .iter()
                            .fold(buf[0], |m, &v| if m < v || m.is_nan() { v } else { m }),
                        T_STDDEV => variance(&buf).sqrt(),
                        T_STDVAR => variance(&buf),
                        T_QUANTILE => quantile(q.as_ref().map_or(f64::NAN, |q| q[i]), &mut buf),
                        _ => {
                            return Err(Error::BadData(format!(
                                "aggregation operator {} is not supported",
                                a.op
                            )));
                        }
                    });
                }
                out.push(VSeries::new(labels, vals));
            }
            Ok(Val::Vector(out))
        }
    }
}

/// Prometheus 2.42's running mean (it divides each term to avoid overflow, and keeps an
/// infinite mean once reached).
pub(crate) fn avg(v: &[f64]) -> f64 {
    let mut mean = v[0];
    let mut n = 1.0;
    for &x in &v[1..] {
        n += 1.0;
        if mean.is_infinite() {
            if x.is_infinite() && (mean > 0.0) == (x > 0.0) {
                continue;
            }
            if !x.is_infinite() && !x.is_nan() {
                continue;
            }
        }
        mean += x / n - mean / n;
    }
    mean
}

/// Population variance with Welford's update, as Prometheus computes it.
pub(crate) fn variance(v: &[f64]) -> f64 {
    let (mut n, mut mean, mut aux) = (0.0, 0.0, 0.0);
    for &x in v {
        n += 1.0;
        let delta = x - mean;
        mean += delta / n;
        aux += delta * (x - mean);
    }
    aux / n
}

/// The φ-quantile with linear interpolation between closest ranks; sorts `v`.
pub(crate) fn quantile(q: f64, v: &mut [f64]) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0);
    let hi = (lo + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    v[lo as usize] * (1.0 - w) + v[hi as usize] * w
}

fn top_bottom(
    input: &[VSeries],
    group_of: &[usize],
    ngroups: usize,
    k: &[f64],
    top: bool,
    steps: Steps,
) -> Vec<VSeries> {
    let mut keep: Vec<Vec<Option<f64>>> = vec![vec![None; steps.n]; input.len()];
    let mut per_group: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ngroups];
    for (i, kv) in k.iter().enumerate().take(steps.n) {
        if kv.is_nan() || *kv < 1.0 {
            continue;
        }
        let kk = if *kv >= input.len() as f64 { input.len() } else { *kv as usize };
        for g in &mut per_group {
            g.clear();
        }
        for (m, s) in input.iter().enumerate() {
            if let Some(v) = s.vals[i] {
                per_group[group_of[m]].push((m, v));
            }
        }
        for g in &mut per_group {
            // best first; NaN is never better than a number
            g.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if top => b.1.total_cmp(&a.1),
                _ => a.1.total_cmp(&b.1),
            });
            for &(m, v) in g.iter().take(kk) {
                keep[m][i] = Some(v);
            }
        }
    }
    let mut out: Vec<(usize, VSeries)> = input
        .iter()
        .zip(keep)
        .enumerate()
        .map(|(m, (s, vals))| (m, VSeries::new(s.labels.clone(), vals)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    // an instant query lists the kept elements best first, as Prometheus does
    if steps.n == 1 {
        out.sort_by(|a, b| {
            let (x, y) = (a.1.vals[0].unwrap_or(f64::NAN), b.1.vals[0].unwrap_or(f64::NAN));
            let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
            if top { o.reverse() } else { o }
        });
    }
    out.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams(q: &str) -> bool {
        let Ok(Expr::Aggregate(a)) = crate::parse(q) else { panic!("{q} is no aggregation") };
        Stream::for_expr(&a, Steps { start: 0, step: 1, n: 1 }).is_some()
    }

    #[test]
    fn only_direct_inputs_of_one_metric_stream() {
        for q in [
            "sum(x)",
            "avg by (a) ((x{b=\"c\"}))",
            "count without (a) (rate(x[5m]))",
            "stddev(avg_over_time({__name__=\"x\", a=\"b\"}[1m]))",
            "max({a=\"b\"})",
        ] {
            assert!(streams(q), "{q} should stream");
        }
        for q in [
            "topk(3, x)",
            "quantile(0.5, x)",
            "sum(rate({a=\"b\"}[5m]))",
            "sum(rate({__name__=~\"x|y\"}[5m]))",
            "sum(x * 2)",
            "sum(quantile_over_time(0.5, x[5m]))",
            "sum(absent_over_time(x[5m]))",
            "sum(sum(x))",
        ] {
            assert!(!streams(q), "{q} should not stream");
        }
    }

    #[test]
    fn quantile_interpolates_between_ranks() {
        assert_eq!(quantile(0.5, &mut [1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &mut [3.0, 1.0]), 1.0);
        assert_eq!(quantile(1.0, &mut [3.0, 1.0]), 3.0);
        assert_eq!(quantile(-1.0, &mut [3.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut [3.0]), f64::INFINITY);
    }

    #[test]
    fn avg_and_variance() {
        assert_eq!(avg(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(avg(&[f64::INFINITY, 1.0]), f64::INFINITY);
        assert_eq!(variance(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), 4.0);
    }
}
