//! Answering from downsampled data: range functions and instant selectors evaluated over
//! per-window aggregates ([`ocelli_model::rollup::Window`]) instead of raw samples, where the
//! answer stays the same up to float rounding.
//!
//! A selector reads windows of resolution `r` only when every window it evaluates is made of
//! whole windows: its reference times (step times, less `offset`, or its `@` time) and its
//! range are multiples of `r`. Then:
//! - `sum_over_time`, `count_over_time`, `avg_over_time` (sum / count), `min_over_time`,
//!   `max_over_time`, `last_over_time`, `present_over_time` combine the windows' aggregates;
//! - `rate`, `increase` and `delta` take the first and last sample, the sample count and the
//!   counter resets of the windows, and extrapolate as Prometheus does; `resets` and `changes`
//!   add up the windows' counts and those at the joins between windows;
//! - an instant selector takes the last sample of the last window ending at or before the step
//!   (none if that sample is a stale marker), with the usual lookback.
//!
//! Everything else (`irate`, `idelta`, `deriv`, `predict_linear`, `holt_winters`,
//! `quantile_over_time`, `stddev_over_time`, `stdvar_over_time`, `absent_over_time`, range
//! vectors returned as they are, selectors with `or` branches) reads raw samples.
//!
//! With [`Resolution::Auto`] a selector reads the coarsest resolution that storage has
//! rollups of over its time range and that it aligns to, and raw samples otherwise. A fixed
//! resolution reads windows of that resolution everywhere, and refuses a query that cannot be
//! answered exactly from them, naming the function or the misaligned time.

use ocelli_model::rollup::{Window as Agg, over_range, window_end};
use promql_parser::parser::{MatrixSelector, Offset, VectorSelector};

use crate::eval::{Ctx, merge_same_labels, ms, selector_matchers};
use crate::value::{Steps, VSeries, Val, without_name};
use crate::{Error, Result};

/// Which data a query reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resolution {
    /// Rollups where storage has them and they answer exactly, raw samples elsewhere.
    #[default]
    Auto,
    /// Raw samples only.
    Raw,
    /// Windows of this many ms everywhere; a query they cannot answer exactly is an error.
    Fixed(i64),
}

/// Range functions answered from windows.
pub(crate) fn supported(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "resets"
            | "changes"
            | "sum_over_time"
            | "count_over_time"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "last_over_time"
            | "present_over_time"
    )
}

pub(crate) fn fmt_ms(v: i64) -> String {
    let (n, u) = if v % 86_400_000 == 0 {
        (v / 86_400_000, "d")
    } else if v % 3_600_000 == 0 {
        (v / 3_600_000, "h")
    } else if v % 60_000 == 0 {
        (v / 60_000, "m")
    } else if v % 1000 == 0 {
        (v / 1000, "s")
    } else {
        (v, "ms")
    };
    format!("{n}{u}")
}

fn offset_of(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(*d),
        Some(Offset::Neg(d)) => -ms(*d),
    }
}

impl Ctx<'_> {
    /// The resolution a selector reads at (`None`: raw samples). `range` is 0 for an instant
    /// selector; `what` names it in errors.
    fn choose(
        &self,
        vs: &VectorSelector,
        steps: Steps,
        (at, offset, range): (Option<i64>, i64, i64),
        bounds: (i64, i64),
        what: &str,
    ) -> Result<Option<i64>> {
        let aligned = |r: i64| -> std::result::Result<(), String> {
            let first = at.unwrap_or(steps.start) - offset;
            if first.rem_euclid(r) != 0 {
                return Err(format!(
                    "its evaluation time{} is not a multiple of {}",
                    if at.is_some() { " (@)" } else { " (start, less any offset)" },
                    fmt_ms(r)
                ));
            }
            if at.is_none() && steps.n > 1 && steps.step % r != 0 {
                return Err(format!("the step {} is not a multiple of it", fmt_ms(steps.step)));
            }
            if range % r != 0 {
                return Err(format!("the range {} is not a multiple of it", fmt_ms(range)));
            }
            Ok(())
        };
        let single_branch = vs.matchers.or_matchers.is_empty();
        match self.resolution {
            crate::Resolution::Raw => Ok(None),
            crate::Resolution::Fixed(r) => {
                if !single_branch {
                    return Err(Error::BadData(format!(
                        "resolution {}: selectors with \"or\" branches are read raw; use resolution=raw or auto",
                        fmt_ms(r)
                    )));
                }
                aligned(r).map(|()| Some(r)).map_err(|why| {
                    Error::BadData(format!(
                        "resolution {} cannot answer {what} exactly: {why}; use resolution=raw or auto",
                        fmt_ms(r)
                    ))
                })
            }
            crate::Resolution::Auto => {
                if !single_branch {
                    return Ok(None);
                }
                let have = self.storage.rollup_resolutions(bounds.0, bounds.1);
                Ok(have.into_iter().rev().find(|&r| aligned(r).is_ok()))
            }
        }
    }

    /// Hands `f` each series of a selector as windows of resolution `res` covering
    /// `[mint, maxt]`, in label order, counting windows against the sample limit.
    fn for_each_windows(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        res: i64,
        mut f: impl FnMut(ocelli_model::Labels, Vec<Agg>),
    ) -> Result<()> {
        let branches = selector_matchers(vs)?;
        self.check_deadline("query preparation")?;
        let mut failed: Option<Error> = None;
        let mut n = 0usize;
        self.storage
            .select_windows_each(&branches[0], mint, maxt, res, &mut |labels, ws| {
                let r = (|| {
                    if n.is_multiple_of(1024) {
                        self.check_deadline("query evaluation")?;
                    }
                    n += 1;
                    self.account(ws.len())
                })();
                match r {
                    Ok(()) => {
                        f(labels, ws);
                        true
                    }
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            })
            .map_err(Error::Storage)?;
        failed.map_or(Ok(()), Err)
    }

    /// Evaluates the range function `name` over a matrix selector from windows, if its
    /// resolution choice says so (`None`: read raw samples).
    pub(crate) fn rollup_call(
        &self,
        name: &str,
        m: &MatrixSelector,
        steps: Steps,
    ) -> Result<Option<Val>> {
        let offset = offset_of(&m.vs.offset);
        let at = self.at_ms(&m.vs.at);
        let range = ms(m.range);
        let (lo, hi) = self.ref_bounds(steps, at, offset);
        let (mint, maxt) = (lo - range, hi);
        let what = format!("{name}()");
        let Some(r) = self.choose(&m.vs, steps, (at, offset, range), (mint, maxt), &what)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        self.for_each_windows(&m.vs, mint, maxt, r, |labels, ws| {
            let mut vals = vec![None; steps.n];
            let mut from = 0;
            for (i, slot) in vals.iter_mut().enumerate() {
                let end = at.unwrap_or(steps.at(i)) - offset;
                let start = end - range;
                if let Some(w) = over_range(&ws, r, start, end, &mut from) {
                    *slot = compute(name, &w, start, end, range);
                }
            }
            let labels = if name == "last_over_time" { labels } else { without_name(labels) };
            out.push(VSeries::new(labels, vals));
        })?;
        merge_same_labels(out).map(Some)
    }

    /// Evaluates an instant selector from windows, if its resolution choice says so.
    pub(crate) fn rollup_selector(
        &self,
        vs: &VectorSelector,
        steps: Steps,
        lookback: i64,
    ) -> Result<Option<Val>> {
        let offset = offset_of(&vs.offset);
        let at = self.at_ms(&vs.at);
        let (lo, hi) = self.ref_bounds(steps, at, offset);
        let (mint, maxt) = (lo - lookback, hi);
        let what = "an instant selector";
        let Some(r) = self.choose(vs, steps, (at, offset, 0), (mint, maxt), what)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut failed = None;
        self.for_each_windows(vs, mint, maxt, r, |labels, ws| {
            if let Err(e) = self.account(steps.n) {
                failed = Some(e);
                return;
            }
            let mut vals = vec![None; steps.n];
            let mut ts = vec![0i64; steps.n];
            let mut j = 0usize;
            for i in 0..steps.n {
                let t = at.unwrap_or(steps.at(i)) - offset;
                while j < ws.len() && window_end(ws[j].t, r) <= t {
                    j += 1;
                }
                if j == 0 {
                    continue;
                }
                let w = &ws[j - 1];
                if !w.ends_stale() && w.last_t >= t - lookback {
                    vals[i] = Some(w.last_v);
                    ts[i] = w.last_t;
                }
            }
            let mut v = VSeries::new(labels, vals);
            if !v.is_empty() {
                v.ts = Some(ts);
                out.push(v);
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Some(Val::Vector(out)))
    }
}

/// One step's value of a supported function from the aggregate of its window.
fn compute(name: &str, w: &Agg, start: i64, end: i64, range: i64) -> Option<f64> {
    Some(match name {
        "sum_over_time" => w.sum,
        "count_over_time" => w.count as f64,
        "avg_over_time" => w.sum / w.count as f64,
        "min_over_time" => w.min,
        "max_over_time" => w.max,
        "last_over_time" => w.last_v,
        "present_over_time" => 1.0,
        "resets" => w.resets as f64,
        "changes" => w.changes as f64,
        "rate" | "increase" | "delta" => {
            if w.count < 2 {
                return None;
            }
            let counter = name != "delta";
            let mut result = w.last_v - w.first_v;
            if counter {
                result += w.counter_correction;
            }
            let first = ocelli_model::Sample::new(w.first_t, w.first_v);
            let last = ocelli_model::Sample::new(w.last_t, w.last_v);
            crate::functions::extrapolate_edges(
                first,
                last,
                w.count as usize,
                (start, end, range),
                counter,
                name == "rate",
                result,
            )
        }
        _ => return None,
    })
}
