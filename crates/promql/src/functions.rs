//! PromQL functions, as Prometheus 2.42 computes them: the range-vector functions (`rate`,
//! `increase`, `delta` with extrapolation, `irate`, `idelta`, `deriv`, `predict_linear`,
//! `holt_winters`, `changes`, `resets`, every `*_over_time`), the instant-vector functions (math,
//! trigonometry, `round`, `clamp*`, `timestamp`, date functions, `sort*`, `label_replace`,
//! `label_join`, `histogram_quantile` over classic buckets), and `absent*`, `scalar`, `vector`,
//! `time`, `pi`. Functions on native histograms return nothing, as they do over float series.

use std::collections::HashMap;
use std::sync::Once;

use ocelli_model::time::civil_from_days;
use ocelli_model::{Labels, METRIC_NAME, Sample};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr, Function};
use regex::Regex;

use crate::aggregate::{avg, quantile, variance};
use crate::eval::{Ctx, absent_labels, merge_same_labels};
use crate::value::{Range, Steps, VSeries, Val, drop_name, set_label, without_name};
use crate::{Error, Result, StepValues};

/// Registers the functions of Prometheus 2.42 that the parser no longer knows by that name.
pub(crate) fn register_extra() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let hw = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // the only failure is a clash with a built-in, which would make the name work anyway
        let _ = promql_parser::parser::register_extra_functions(vec![hw]);
    });
}

/// One step's window of a range function.
struct Window {
    /// The step's evaluation time.
    ts: i64,
    /// The window `[start, end]`.
    start: i64,
    end: i64,
    /// The selector's range (ms).
    range: i64,
    /// The step index, for per-step scalar arguments.
    i: usize,
}

fn range_fn(
    ctx: &Ctx<'_>,
    r: Range,
    steps: Steps,
    keep_name: bool,
    f: impl Fn(&[Sample], &Window) -> Option<f64> + Sync,
) -> Result<Val> {
    range_fn_with(ctx, r, steps, keep_name, |_| (), |_, all, lo, hi, win| f(&all[lo..hi], win))
}

/// Like [`range_fn`], but `prepare` computes something once per series, and `f` gets it with
/// the window as `all[lo..hi]`.
fn range_fn_with<P>(
    ctx: &Ctx<'_>,
    r: Range,
    steps: Steps,
    keep_name: bool,
    prepare: impl Fn(&[Sample]) -> P + Sync,
    f: impl Fn(&P, &[Sample], usize, usize, &Window) -> Option<f64> + Sync,
) -> Result<Val> {
    let mut out = Vec::new();
    let (range, offset, at) = (r.range, r.offset, r.at);
    let ref_time = |t: i64| at.unwrap_or(t) - offset;
    let mut stream = ctx.stream.borrow_mut().take();
    // per series, on storage's reading threads: every step's window
    let stats = ctx.stats;
    let windows = |samples: &[Sample]| {
        let p = prepare(samples);
        let mut vals = vec![None; steps.n];
        let mut counts = stats.map(|_| vec![0u64; steps.n]);
        let (mut lo, mut hi) = (0usize, 0usize);
        for (i, slot) in vals.iter_mut().enumerate() {
            let end = ref_time(steps.at(i));
            let start = end - range;
            if lo > 0 && samples[lo - 1].t >= start {
                lo = 0; // a window that moved back (never with increasing steps)
                hi = 0;
            }
            while lo < samples.len() && samples[lo].t < start {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < samples.len() && samples[hi].t <= end {
                hi += 1;
            }
            if let Some(c) = counts.as_mut() {
                c[i] = (hi - lo) as u64;
            }
            let ts = if at.is_some() { steps.start } else { steps.at(i) };
            *slot = f(&p, samples, lo, hi, &Window { ts, start, end, range, i });
        }
        if let (Some(acc), Some(c)) = (stats, counts) {
            acc.add(steps, &c);
        }
        StepValues { vals, ts: None }
    };
    ctx.for_each_range_mapped(r.series, &windows, |labels, s| {
        if let Some(st) = stream.as_mut() {
            st.add(&labels, !keep_name, &s.vals);
            return Ok(());
        }
        let labels = if keep_name { labels } else { without_name(labels) };
        out.push(VSeries::new(labels, s.vals));
        Ok(())
    })?;
    if let Some(mut st) = stream {
        st.used = true;
        *ctx.stream.borrow_mut() = Some(st);
        return Ok(Val::Vector(Vec::new()));
    }
    merge_same_labels(out)
}

/// `rate`, `increase`, `delta` over every window. Counter resets are found once per series, so
/// a window adds only the resets inside it, in order, as Prometheus' per-window loop does.
fn rate_fn(ctx: &Ctx<'_>, r: Range, steps: Steps, counter: bool, rate: bool) -> Result<Val> {
    let resets = |samples: &[Sample]| -> Vec<usize> {
        if counter {
            (1..samples.len()).filter(|&i| samples[i].v < samples[i - 1].v).collect()
        } else {
            Vec::new()
        }
    };
    range_fn_with(ctx, r, steps, false, resets, |rs, all, lo, hi, win| {
        let w = &all[lo..hi];
        if w.len() < 2 {
            return None;
        }
        let mut result = w[w.len() - 1].v - w[0].v;
        if counter {
            let from = rs.partition_point(|&i| i <= lo);
            for &i in rs[from..].iter().take_while(|&&i| i < hi) {
                result += all[i - 1].v;
            }
        }
        Some(extrapolate(w, win, counter, rate, result))
    })
}

/// Prometheus' `extrapolatedRate` after its reset correction: `result` (the increase over the
/// window) extrapolated to the window's edges unless a series starts or ends inside it (then at
/// most half an average interval).
fn extrapolate(w: &[Sample], win: &Window, counter: bool, rate: bool, result: f64) -> f64 {
    let edges = (win.start, win.end, win.range);
    extrapolate_edges(w[0], w[w.len() - 1], w.len(), edges, counter, rate, result)
}

/// [`extrapolate`] from the window's first and last sample and sample count (at least 2);
/// `(start, end, range)` place the window.
pub(crate) fn extrapolate_edges(
    first: Sample,
    last: Sample,
    n: usize,
    (start, end, range): (i64, i64, i64),
    counter: bool,
    rate: bool,
    result: f64,
) -> f64 {
    let mut to_start = (first.t - start) as f64 / 1000.0;
    let to_end = (end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (n - 1) as f64;
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_step * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg_step / 2.0 };
    interval += if to_end < threshold { to_end } else { avg_step / 2.0 };
    // one factor, then one multiplication, as Prometheus does: `result * interval / sampled /
    // range` rounds differently (an ulp off on most inputs)
    let mut factor = interval / sampled;
    if rate {
        factor /= range as f64 / 1000.0;
    }
    result * factor
}

fn instant_delta(w: &[Sample], rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let mut d = if rate && last.v < prev.v { last.v } else { last.v - prev.v };
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    if rate {
        d /= dt as f64 / 1000.0;
    }
    Some(d)
}

/// `avg_over_time`: the compensated (Neumaier) sum over the count, and Prometheus 2.42's
/// running mean ([`avg`]) only where that sum is not finite (overflow, infinities, NaN), as
/// later Prometheus versions do. The running mean divides twice per sample in one dependent
/// chain, 44% of the CPU profile of a range query of `avg_over_time(x[10m])` (measured); the
/// two agree to a few ulps, and the sum is the more accurate of them.
fn avg_fast(v: &[f64]) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for &x in v {
        (sum, c) = kahan_inc(x, sum, c);
    }
    if sum.is_finite() && c.is_finite() { (sum + c) / v.len() as f64 } else { avg(v) }
}

fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_time`.
fn linear_regression(w: &[Sample], intercept_time: i64) -> (f64, f64) {
    let init_y = w[0].v;
    let const_y = w.iter().all(|s| s.v == init_y);
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for s in w {
        n += 1.0;
        let x = (s.t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn holt_winters(w: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let trend = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 { b } else { tf * (s1 - s0) + (1.0 - tf) * b }
    };
    let (mut s0, mut s1) = (0.0, w[0].v);
    let mut b = w[1].v - w[0].v;
    for (i, s) in w.iter().enumerate().skip(1) {
        let x = sf * s.v;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.min(b) }
}

fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) }
}

fn arg(call: &Call, i: usize) -> Result<&Expr> {
    call.args.args.get(i).map(|b| b.as_ref()).ok_or_else(|| {
        Error::BadData(format!("missing argument {} of {}()", i + 1, call.func.name))
    })
}

fn want_vector(v: Val, f: &str) -> Result<Vec<VSeries>> {
    match v {
        Val::Vector(v) => Ok(v),
        v => Err(Error::BadData(format!(
            "expected instant vector argument to {f}(), got {}",
            v.type_name()
        ))),
    }
}

fn want_scalar(v: Val, f: &str) -> Result<Vec<f64>> {
    match v {
        Val::Scalar(v) => Ok(v),
        v => {
            Err(Error::BadData(format!("expected scalar argument to {f}(), got {}", v.type_name())))
        }
    }
}

fn want_string(v: Val, f: &str) -> Result<String> {
    match v {
        Val::Str(s) => Ok(s),
        v => {
            Err(Error::BadData(format!("expected string argument to {f}(), got {}", v.type_name())))
        }
    }
}

fn want_range(v: Val, f: &str) -> Result<Range> {
    match v {
        Val::Matrix(r) => Ok(r),
        v => Err(Error::BadData(format!(
            "expected range vector argument to {f}(), got {}",
            v.type_name()
        ))),
    }
}

/// Applies `f` to every value and drops the metric name.
fn map_values(v: Vec<VSeries>, f: impl Fn(f64, usize) -> f64) -> Result<Val> {
    let out = v
        .into_iter()
        .map(|s| {
            let vals = s.vals.iter().enumerate().map(|(i, x)| x.map(|x| f(x, i))).collect();
            VSeries::new(drop_name(&s.labels), vals)
        })
        .collect();
    merge_same_labels(out)
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn date_fn(name: &str, v: f64) -> f64 {
    if v.is_nan() || v.is_infinite() {
        return f64::NAN;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "year" => y as f64,
        "month" => f64::from(m),
        "day_of_month" => f64::from(d),
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let before: u32 = (1..m).map(|mm| days_in_month(y, mm)).sum();
            f64::from(before + d)
        }
        "days_in_month" => f64::from(days_in_month(y, m)),
        "hour" => (sod / 3600) as f64,
        "minute" => ((sod % 3600) / 60) as f64,
        _ => f64::NAN,
    }
}

/// The φ-quantile of classic histogram buckets `(upper bound, cumulative count)`.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // coalesce equal bounds, then force monotonic counts
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

pub(crate) fn call(ctx: &Ctx<'_>, call: &Call, steps: Steps) -> Result<Val> {
    let name = call.func.name;
    let eval = |i: usize| -> Result<Val> { ctx.eval(arg(call, i)?, steps) };
    let scalar = |i: usize| -> Result<Vec<f64>> { want_scalar(eval(i)?, name) };
    if let Some(f) = math_fn(name) {
        return map_values(want_vector(eval(0)?, name)?, |v, _| f(v));
    }
    let matrix_arg = call.args.args.iter().find_map(|a| match a.as_ref() {
        Expr::MatrixSelector(m) => Some(m),
        _ => None,
    });
    if let Some(m) = matrix_arg {
        if crate::rollup::supported(name) {
            if let Some(v) = ctx.rollup_call(name, m, steps)? {
                return Ok(v);
            }
        } else if let crate::Resolution::Fixed(r) = ctx.resolution {
            return Err(Error::BadData(format!(
                "resolution {}: {name}() cannot be answered from rollups; use resolution=raw or auto",
                crate::rollup::fmt_ms(r)
            )));
        }
    }
    match name {
        "rate" | "increase" | "delta" => {
            rate_fn(ctx, want_range(eval(0)?, name)?, steps, name != "delta", name == "rate")
        }
        "irate" => {
            range_fn(ctx, want_range(eval(0)?, name)?, steps, false, |w, _| instant_delta(w, true))
        }
        "idelta" => {
            range_fn(ctx, want_range(eval(0)?, name)?, steps, false, |w, _| instant_delta(w, false))
        }
        "deriv" => range_fn(ctx, want_range(eval(0)?, name)?, steps, false, |w, _| {
            (w.len() >= 2).then(|| linear_regression(w, w[0].t).0)
        }),
        "predict_linear" => {
            let r = want_range(eval(0)?, name)?;
            let d = scalar(1)?;
            range_fn(ctx, r, steps, false, |w, win| {
                (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, win.ts);
                    slope * d[win.i] + intercept
                })
            })
        }
        "holt_winters" | "double_exponential_smoothing" => {
            let r = want_range(eval(0)?, name)?;
            let (sf, tf) = (scalar(1)?, scalar(2)?);
            for i in 0..steps.n {
                if !(sf[i] > 0.0 && sf[i] < 1.0) {
                    return Err(Error::Execution(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                        sf[i]
                    )));
                }
                if !(tf[i] > 0.0 && tf[i] < 1.0) {
                    return Err(Error::Execution(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                        tf[i]
                    )));
                }
            }
            range_fn(ctx, r, steps, false, |w, win| holt_winters(w, sf[win.i], tf[win.i]))
        }
        "changes" | "resets" => {
            let resets = name == "resets";
            range_fn(ctx, want_range(eval(0)?, name)?, steps, false, |w, _| {
                if w.is_empty() {
                    return None;
                }
                let n = w
                    .windows(2)
                    .filter(|p| {
                        if resets {
                            p[1].v < p[0].v
                        } else {
                            p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan())
                        }
                    })
                    .count();
                Some(n as f64)
            })
        }
        "avg_over_time" | "min_over_time" | "max_over_time" | "sum_over_time"
        | "count_over_time" | "last_over_time" | "present_over_time" | "stddev_over_time"
        | "stdvar_over_time" => {
            let r = want_range(eval(0)?, name)?;
            // the window's values, in a buffer of the thread running the function
            thread_local! {
                static BUF: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            range_fn(ctx, r, steps, name == "last_over_time", |w, _| {
                if w.is_empty() {
                    return None;
                }
                BUF.with_borrow_mut(|b| {
                    b.clear();
                    b.extend(w.iter().map(|s| s.v));
                    let v: &[f64] = b;
                    let r = Some(match name {
                        "avg_over_time" => avg_fast(v),
                        "min_over_time" => v[1..]
                            .iter()
                            .fold(v[0], |m, &x| if x < m || m.is_nan() { x } else { m }),
                        "max_over_time" => v[1..]
                            .iter()
                            .fold(v[0], |m, &x| if x > m || m.is_nan() { x } else { m }),
                        "sum_over_time" => v.iter().sum(),
                        "count_over_time" => v.len() as f64,
                        "last_over_time" => v[v.len() - 1],
                        "present_over_time" => 1.0,
                        "stddev_over_time" => variance(v).sqrt(),
                        _ => variance(v),
                    });
                    if b.capacity() > 1 << 16 {
                        *b = Vec::new(); // a rare huge window must not pin its buffer to the thread
                    }
                    r
                })
            })
        }
        "quantile_over_time" => {
            let q = scalar(0)?;
            let r = want_range(eval(1)?, name)?;
            range_fn(ctx, r, steps, false, |w, win| {
                if w.is_empty() {
                    return None;
                }
                let mut v: Vec<f64> = w.iter().map(|s| s.v).collect();
                Some(quantile(q[win.i], &mut v))
            })
        }
        "absent_over_time" => {
            let r = want_range(eval(0)?, name)?;
            let mut present = vec![false; steps.n];
            let probe = range_fn(ctx, r, steps, true, |w, _| (!w.is_empty()).then_some(1.0));
            // series with equal labels after the name is kept cannot clash; any error is real
            if let Val::Vector(vs) = probe? {
                for s in &vs {
                    for (p, v) in present.iter_mut().zip(&s.vals) {
                        *p |= v.is_some();
                    }
                }
            }
            let labels = absent_labels(arg(call, 0)?);
            let vals = present.iter().map(|p| (!p).then_some(1.0)).collect();
            Ok(Val::Vector(
                vec![VSeries::new(labels, vals)].into_iter().filter(|s| !s.is_empty()).collect(),
            ))
        }
        "absent" => {
            let v = want_vector(eval(0)?, name)?;
            let labels = absent_labels(arg(call, 0)?);
            let vals = (0..steps.n)
                .map(|i| (!v.iter().any(|s| s.vals[i].is_some())).then_some(1.0))
                .collect();
            Ok(Val::Vector(
                vec![VSeries::new(labels, vals)].into_iter().filter(|s| !s.is_empty()).collect(),
            ))
        }
        "scalar" => {
            let v = want_vector(eval(0)?, name)?;
            Ok(Val::Scalar(
                (0..steps.n)
                    .map(|i| {
                        let mut it = v.iter().filter_map(|s| s.vals[i]);
                        match (it.next(), it.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "vector" => {
            let s = scalar(0)?;
            Ok(Val::Vector(vec![VSeries::new(
                Labels::default(),
                s.into_iter().map(Some).collect(),
            )]))
        }
        "time" => Ok(Val::Scalar((0..steps.n).map(|i| steps.at(i) as f64 / 1000.0).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; steps.n])),
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => {
            let v = if call.args.args.is_empty() {
                vec![VSeries::new(
                    Labels::default(),
                    (0..steps.n).map(|i| Some(steps.at(i) as f64 / 1000.0)).collect(),
                )]
            } else {
                want_vector(eval(0)?, name)?
            };
            map_values(v, |x, _| date_fn(name, x))
        }
        "round" => {
            let v = want_vector(eval(0)?, name)?;
            let to = if call.args.args.len() > 1 { scalar(1)? } else { vec![1.0; steps.n] };
            map_values(v, |x, i| {
                let inv = 1.0 / to[i];
                (x * inv + 0.5).floor() / inv
            })
        }
        "clamp" => {
            let v = want_vector(eval(0)?, name)?;
            let (lo, hi) = (scalar(1)?, scalar(2)?);
            let v = v
                .into_iter()
                .map(|mut s| {
                    for (i, x) in s.vals.iter_mut().enumerate() {
                        if hi[i] < lo[i] {
                            *x = None;
                        }
                    }
                    s
                })
                .collect();
            map_values(v, |x, i| go_max(lo[i], go_min(hi[i], x)))
        }
        "clamp_min" => {
            let v = want_vector(eval(0)?, name)?;
            let lo = scalar(1)?;
            map_values(v, |x, i| go_max(lo[i], x))
        }
        "clamp_max" => {
            let v = want_vector(eval(0)?, name)?;
            let hi = scalar(1)?;
            map_values(v, |x, i| go_min(hi[i], x))
        }
        "timestamp" => {
            let mut inner = arg(call, 0)?;
            while let Expr::Paren(p) = inner {
                inner = &p.expr;
            }
            let from_selector = matches!(inner, Expr::VectorSelector(_));
            let v = want_vector(eval(0)?, name)?;
            let out = v
                .into_iter()
                .map(|s| {
                    let vals = s
                        .vals
                        .iter()
                        .enumerate()
                        .map(|(i, x)| {
                            x.map(|_| match (&s.ts, from_selector) {
                                (Some(ts), true) => ts[i] as f64 / 1000.0,
                                _ => steps.at(i) as f64 / 1000.0,
                            })
                        })
                        .collect();
                    VSeries::new(drop_name(&s.labels), vals)
                })
                .collect();
            merge_same_labels(out)
        }
        "sort" | "sort_desc" => {
            let mut v = want_vector(eval(0)?, name)?;
            if steps.n == 1 {
                let desc = name == "sort_desc";
                v.sort_by(|a, b| {
                    let (x, y) = (a.vals[0].unwrap_or(f64::NAN), b.vals[0].unwrap_or(f64::NAN));
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Less,
                        (false, true) => std::cmp::Ordering::Greater,
                        _ if desc => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
            }
            Ok(Val::Vector(v))
        }
        "label_replace" => {
            let v = want_vector(eval(0)?, name)?;
            let dst = want_string(eval(1)?, name)?;
            let repl = want_string(eval(2)?, name)?;
            let src = want_string(eval(3)?, name)?;
            let re_src = want_string(eval(4)?, name)?;
            let re = Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
                Error::Execution(format!("invalid regular expression in label_replace(): {e}"))
            })?;
            if !ocelli_model::is_valid_label_name(&dst) {
                return Err(Error::Execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let out = v
                .into_iter()
                .map(|s| {
                    let val = s.labels.get(&src).unwrap_or("");
                    let labels = match re.captures(val) {
                        Some(c) => {
                            let mut res = String::new();
                            c.expand(&repl, &mut res);
                            set_label(&s.labels, &dst, &res)
                        }
                        None => s.labels.clone(),
                    };
                    VSeries::new(labels, s.vals)
                })
                .collect();
            merge_same_labels(out)
        }
        "label_join" => {
            let v = want_vector(eval(0)?, name)?;
            let dst = want_string(eval(1)?, name)?;
            let sep = want_string(eval(2)?, name)?;
            let srcs = (3..call.args.args.len())
                .map(|i| want_string(eval(i)?, name))
                .collect::<Result<Vec<_>>>()?;
            if !ocelli_model::is_valid_label_name(&dst) {
                return Err(Error::Execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let out = v
                .into_iter()
                .map(|s| {
                    let joined = srcs
                        .iter()
                        .map(|n| s.labels.get(n).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(&sep);
                    VSeries::new(set_label(&s.labels, &dst, &joined), s.vals)
                })
                .collect();
            merge_same_labels(out)
        }
        "histogram_quantile" => {
            let q = scalar(0)?;
            let v = want_vector(eval(1)?, name)?;
            let mut groups: Vec<(Labels, Vec<(f64, usize)>)> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for (k, s) in v.iter().enumerate() {
                let Some(ub) = s.labels.get("le").and_then(parse_le) else { continue };
                let l = crate::value::drop_these(&s.labels, &["le".into(), METRIC_NAME.into()]);
                let g = *index.entry(l.clone()).or_insert_with(|| {
                    groups.push((l, Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push((ub, k));
            }
            let mut out = Vec::with_capacity(groups.len());
            let mut buckets = Vec::new();
            for (labels, members) in groups {
                let mut vals = vec![None; steps.n];
                for (i, slot) in vals.iter_mut().enumerate() {
                    buckets.clear();
                    buckets.extend(
                        members.iter().filter_map(|&(ub, k)| v[k].vals[i].map(|c| (ub, c))),
                    );
                    if !buckets.is_empty() {
                        *slot = Some(bucket_quantile(q[i], &mut buckets));
                    }
                }
                out.push(VSeries::new(labels, vals));
            }
            Ok(Val::Vector(out.into_iter().filter(|s| !s.is_empty()).collect()))
        }
        "histogram_count" | "histogram_sum" | "histogram_fraction" | "histogram_avg"
        | "histogram_stddev" | "histogram_stdvar" => {
            // native histograms only: float series yield nothing; arguments still must be valid
            for i in 0..call.args.args.len() {
                eval(i)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        other => Err(Error::BadData(format!("function {other}() is not supported"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-02-29 13:45:00 UTC, a Thursday
        let t = 1_709_214_300.0;
        assert_eq!(date_fn("year", t), 2024.0);
        assert_eq!(date_fn("month", t), 2.0);
        assert_eq!(date_fn("day_of_month", t), 29.0);
        assert_eq!(date_fn("day_of_week", t), 4.0);
        assert_eq!(date_fn("day_of_year", t), 60.0);
        assert_eq!(date_fn("days_in_month", t), 29.0);
        assert_eq!(date_fn("hour", t), 13.0);
        assert_eq!(date_fn("minute", t), 45.0);
        assert_eq!(date_fn("year", 0.0), 1970.0);
        assert_eq!(date_fn("day_of_week", 0.0), 4.0);
    }

    #[test]
    fn bucket_quantiles() {
        let mut b = vec![(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert!((bucket_quantile(0.5, &mut b) - 0.1).abs() < 1e-12);
        let mut b = vec![(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
        assert!((bucket_quantile(0.5, &mut b) - 1.5).abs() < 1e-12);
        let mut no_inf = vec![(1.0, 1.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
    }
}
