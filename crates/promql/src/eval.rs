//! The evaluator: walks the parsed expression and computes each node over all steps at once.
//!
//! Selectors load each matching series once for the whole query range (plus the lookback delta
//! or the range of a range selector), then instant selectors pick, per step, the newest sample
//! no older than the lookback delta (none if it is a stale marker), and range selectors hand
//! their series to the function that windows them. See the crate docs for the semantics.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ocelli_model::{Labels, METRIC_NAME, MatchOp, Matcher, Sample, is_stale_nan};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

use crate::stats::Acc;
use crate::value::{MSeries, QueryValue, Range, RangeSeries, Steps, VSeries, Val};
use crate::{Error, Options, Result, StepValues, Storage};

/// Evaluation state of one query.
pub(crate) struct Ctx<'a> {
    pub opts: &'a Options,
    pub(crate) storage: &'a dyn Storage,
    /// Which data selectors read (see `rollup`).
    pub(crate) resolution: crate::Resolution,
    deadline: Instant,
    /// Samples loaded so far, against `opts.max_samples`.
    loaded: Cell<usize>,
    /// The query's own start and end, for `@ start()` / `@ end()`.
    query_start: i64,
    query_end: i64,
    /// An aggregation waiting for its input's series one at a time (see `aggregate::Stream`).
    pub(crate) stream: std::cell::RefCell<Option<crate::aggregate::Stream>>,
    /// Where samples are counted when the caller asked for statistics (see `stats`).
    pub(crate) stats: Option<&'a Acc>,
}

pub(crate) fn instant(
    opts: &Options,
    storage: &dyn Storage,
    expr: &Expr,
    t: i64,
    resolution: crate::Resolution,
    stats: Option<&Acc>,
) -> Result<QueryValue> {
    let ctx = Ctx::new(opts, storage, t, t, resolution, stats);
    let steps = Steps { start: t, step: 1, n: 1 };
    let val = ctx.timed_eval(expr, steps)?;
    Ok(match val {
        Val::Scalar(v) => QueryValue::Scalar(t, v[0]),
        Val::Str(s) => QueryValue::String(t, s),
        Val::Vector(vs) => QueryValue::Vector(
            vs.into_iter().filter_map(|s| s.vals[0].map(|v| (s.labels, t, v))).collect(),
        ),
        Val::Matrix(r) => {
            let end = r.ref_time(t);
            let start = end - r.range;
            let mut out: Vec<(Labels, Vec<Sample>)> = Vec::new();
            ctx.for_each_range_series(r.series, |s| {
                let w: Vec<Sample> =
                    s.samples.into_iter().filter(|x| x.t >= start && x.t <= end).collect();
                if let Some(acc) = ctx.stats {
                    acc.add_total(w.len() as u64);
                }
                if !w.is_empty() {
                    out.push((s.labels, w));
                }
                Ok(())
            })?;
            ctx.timed_sort(&mut out);
            QueryValue::Matrix(out)
        }
    })
}

// the query's parameters, as `Engine::range_at` takes them, and where to count stats
#[allow(clippy::too_many_arguments)]
pub(crate) fn range(
    opts: &Options,
    storage: &dyn Storage,
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
    resolution: crate::Resolution,
    stats: Option<&Acc>,
) -> Result<QueryValue> {
    let ctx = Ctx::new(opts, storage, start, end, resolution, stats);
    let steps = Steps { start, step, n: steps_of(start, end, step) };
    let mut out: Vec<(Labels, Vec<Sample>)> = match ctx.timed_eval(expr, steps)? {
        Val::Scalar(v) => vec![(
            Labels::default(),
            v.iter().enumerate().map(|(i, &v)| Sample::new(steps.at(i), v)).collect(),
        )],
        Val::Vector(vs) => vs
            .into_iter()
            .map(|s| {
                let pts = s
                    .vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| Sample::new(steps.at(i), v)))
                    .collect();
                (s.labels, pts)
            })
            .filter(|(_, p): &(Labels, Vec<Sample>)| !p.is_empty())
            .collect(),
        v => {
            let t = if matches!(v, Val::Matrix(_)) { "range vector" } else { v.type_name() };
            return Err(Error::BadData(format!(
                "invalid expression type \"{t}\" for range query, must be Scalar or instant Vector"
            )));
        }
    };
    ctx.timed_sort(&mut out);
    Ok(QueryValue::Matrix(out))
}

/// The number of steps of a range query.
pub(crate) fn steps_of(start: i64, end: i64, step: i64) -> usize {
    ((end - start) / step) as usize + 1
}

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(*d),
        Some(Offset::Neg(d)) => -ms(*d),
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

/// The matchers of a selector, one list per `or` branch, with the metric name as a matcher.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Some(name) = &vs.name
            && !ms.iter().any(|m| m.name == METRIC_NAME)
        {
            out.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for m in ms {
            let op = match m.op {
                promql_parser::label::MatchOp::Equal => MatchOp::Equal,
                promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
                promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
                promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
            };
            out.push(
                Matcher::new(op, m.name.clone(), m.value.clone())
                    .map_err(|e| Error::BadData(e.to_string()))?,
            );
        }
        Ok(out)
    };
    let mut branches = vec![convert(&vs.matchers.matchers)?];
    if !vs.matchers.or_matchers.is_empty() {
        branches = vs.matchers.or_matchers.iter().map(|b| convert(b)).collect::<Result<_>>()?;
    }
    Ok(branches)
}

impl<'a> Ctx<'a> {
    fn new(
        opts: &'a Options,
        storage: &'a dyn Storage,
        start: i64,
        end: i64,
        resolution: crate::Resolution,
        stats: Option<&'a Acc>,
    ) -> Ctx<'a> {
        Ctx {
            opts,
            storage,
            resolution,
            deadline: Instant::now() + opts.timeout,
            loaded: Cell::new(0),
            query_start: start,
            query_end: end,
            stream: std::cell::RefCell::new(None),
            stats,
        }
    }

    /// [`Ctx::eval`] of the whole query, timed and its samples noted when stats are asked for.
    fn timed_eval(&self, expr: &Expr, steps: Steps) -> Result<Val> {
        let Some(acc) = self.stats else { return self.eval(expr, steps) };
        let t0 = Instant::now();
        let v = self.eval(expr, steps);
        Acc::set_time(&acc.inner_eval, t0.elapsed());
        acc.peak.store(self.loaded.get() as u64, std::sync::atomic::Ordering::Relaxed);
        v
    }

    /// Sorts the result series by labels, timed when stats are asked for.
    fn timed_sort(&self, out: &mut [(Labels, Vec<Sample>)]) {
        let t0 = self.stats.map(|_| Instant::now());
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if let (Some(acc), Some(t0)) = (self.stats, t0) {
            Acc::set_time(&acc.sort, t0.elapsed());
            acc.peak.store(self.loaded.get() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Fails once the query is past its deadline.
    pub fn check_deadline(&self, stage: &'static str) -> Result<()> {
        if Instant::now() > self.deadline { Err(Error::Timeout(stage)) } else { Ok(()) }
    }

    /// Counts `n` more samples held by the query; fails past the limit.
    pub fn account(&self, n: usize) -> Result<()> {
        let total = self.loaded.get().saturating_add(n);
        self.loaded.set(total);
        if total > self.opts.max_samples { Err(Error::TooManySamples) } else { Ok(()) }
    }

    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(system_time_ms(*t)),
        }
    }

    /// The earliest and latest reference times of a selector over `steps`.
    pub(crate) fn ref_bounds(&self, steps: Steps, at: Option<i64>, offset: i64) -> (i64, i64) {
        match at {
            Some(a) => (a - offset, a - offset),
            None => (steps.start - offset, steps.last() - offset),
        }
    }

    /// Loads the series of a selector in `[mint, maxt]`, the union over its `or` branches.
    fn load(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<MSeries>> {
        self.check_deadline("query preparation")?;
        let branches = selector_matchers(vs)?;
        let mut out: Vec<MSeries> = Vec::new();
        let mut seen: HashSet<Labels> = HashSet::new();
        for matchers in &branches {
            let got = self.storage.select(matchers, mint, maxt).map_err(Error::Storage)?;
            for (labels, samples) in got {
                self.account(samples.len())?;
                if branches.len() > 1 && !seen.insert(labels.clone()) {
                    continue;
                }
                out.push(MSeries { labels, samples });
            }
        }
        if branches.len() > 1 {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }

    /// Hands `f` each series of a range vector in label order: a computed one's, or a
    /// selector's as storage reads them (stale markers dropped), so that only one series'
    /// samples are held at a time.
    pub(crate) fn for_each_range_series(
        &self,
        series: RangeSeries,
        mut f: impl FnMut(MSeries) -> Result<()>,
    ) -> Result<()> {
        match series {
            RangeSeries::Loaded(v) => v.into_iter().try_for_each(f),
            RangeSeries::Selector { vs, mint, maxt } => {
                self.for_each_selected(&vs, mint, maxt, |mut s| {
                    s.samples.retain(|x| !is_stale_nan(x.v));
                    f(s)
                })
            }
        }
    }

    /// [`Ctx::for_each_range_series`] with `map` applied to each series' samples (stale
    /// markers dropped), on storage's reading threads where it has them.
    pub(crate) fn for_each_range_mapped(
        &self,
        series: RangeSeries,
        map: &(dyn Fn(&[Sample]) -> StepValues + Sync),
        mut f: impl FnMut(Labels, StepValues) -> Result<()>,
    ) -> Result<()> {
        match series {
            RangeSeries::Loaded(v) => v.into_iter().try_for_each(|s| f(s.labels, map(&s.samples))),
            RangeSeries::Selector { vs, mint, maxt } => {
                let map = |mut s: Vec<Sample>| {
                    s.retain(|x| !is_stale_nan(x.v));
                    map(&s)
                };
                self.for_each_selected_mapped(&vs, mint, maxt, &map, f)
            }
        }
    }

    /// One series handed over by storage to a streaming selection (the `n`-th): the deadline
    /// is checked every 1024 series and its `samples` counted against the query's limit before
    /// `f` runs. Returns whether storage should go on; an error is kept in `failed`.
    fn take_series(
        &self,
        n: &mut usize,
        failed: &mut Option<Error>,
        samples: usize,
        f: impl FnOnce() -> Result<()>,
    ) -> bool {
        let r = (|| {
            if n.is_multiple_of(1024) {
                self.check_deadline("query evaluation")?;
            }
            *n += 1;
            self.account(samples)?;
            f()
        })();
        match r {
            Ok(()) => true,
            Err(e) => {
                *failed = Some(e);
                false
            }
        }
    }

    /// [`Ctx::for_each_selected`] with `map` applied to each series' samples, on storage's
    /// reading threads where it has them ([`Storage::select_map_each`]).
    fn for_each_selected_mapped(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        map: &(dyn Fn(Vec<Sample>) -> StepValues + Sync),
        mut f: impl FnMut(Labels, StepValues) -> Result<()>,
    ) -> Result<()> {
        let branches = selector_matchers(vs)?;
        if branches.len() > 1 {
            // `or` branches may select a series twice; `load` takes the union
            return self
                .load(vs, mint, maxt)?
                .into_iter()
                .try_for_each(|s| f(s.labels, map(s.samples)));
        }
        self.check_deadline("query preparation")?;
        let mut failed: Option<Error> = None;
        let mut n = 0usize;
        self.storage
            .select_map_each(&branches[0], mint, maxt, map, &mut |labels, samples, mapped| {
                self.take_series(&mut n, &mut failed, samples, || f(labels, mapped))
            })
            .map_err(Error::Storage)?;
        failed.map_or(Ok(()), Err)
    }

    /// Hands `f` each series of a selector in `[mint, maxt]`, in label order, as storage
    /// reads them; [`Ctx::load`] without holding them all.
    fn for_each_selected(
        &self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        mut f: impl FnMut(MSeries) -> Result<()>,
    ) -> Result<()> {
        let branches = selector_matchers(vs)?;
        if branches.len() > 1 {
            // `or` branches may select a series twice; `load` takes the union
            return self.load(vs, mint, maxt)?.into_iter().try_for_each(f);
        }
        self.check_deadline("query preparation")?;
        let mut failed: Option<Error> = None;
        let mut n = 0usize;
        self.storage
            .select_each(&branches[0], mint, maxt, &mut |labels, samples| {
                self.take_series(&mut n, &mut failed, samples.len(), || {
                    f(MSeries { labels, samples })
                })
            })
            .map_err(Error::Storage)?;
        failed.map_or(Ok(()), Err)
    }

    pub fn eval(&self, expr: &Expr, steps: Steps) -> Result<Val> {
        self.check_deadline("query evaluation")?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; steps.n])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, steps),
            Expr::Unary(u) => match self.eval(&u.expr, steps)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(vs) => {
                    let out = vs
                        .into_iter()
                        .map(|s| {
                            VSeries::new(
                                crate::value::drop_name(&s.labels),
                                s.vals.into_iter().map(|v| v.map(|x| -x)).collect(),
                            )
                        })
                        .collect();
                    merge_same_labels(out)
                }
                v => Err(Error::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    v.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs, steps),
            Expr::MatrixSelector(m) => {
                let offset = offset_ms(&m.vs.offset);
                let at = self.at_ms(&m.vs.at);
                let range = ms(m.range);
                let (lo, hi) = self.ref_bounds(steps, at, offset);
                // read when a range function consumes it, one series at a time
                let series = RangeSeries::Selector {
                    vs: Box::new(m.vs.clone()),
                    mint: lo - range,
                    maxt: hi,
                };
                Ok(Val::Matrix(Range { series, range, offset, at }))
            }
            Expr::Subquery(sq) => self.eval_subquery(sq, steps),
            Expr::Call(call) => crate::functions::call(self, call, steps),
            Expr::Aggregate(a) => crate::aggregate::aggregate(self, a, steps),
            Expr::Binary(b) => crate::binary::binary(self, b, steps),
            Expr::Extension(_) => {
                Err(Error::BadData("extension expressions are not supported".into()))
            }
        }
    }

    fn eval_vector_selector(&self, vs: &VectorSelector, steps: Steps) -> Result<Val> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = ms(self.opts.lookback_delta);
        if let Some(v) = self.rollup_selector(vs, steps, lookback)? {
            return Ok(v);
        }
        let (lo, hi) = self.ref_bounds(steps, at, offset);
        let mut out = Vec::new();
        let mut stream = self.stream.borrow_mut().take();
        // per series, on storage's reading threads: the newest sample no older than the
        // lookback delta at each step
        let pick = |samples: Vec<Sample>| {
            let mut vals = vec![None; steps.n];
            let mut ts = vec![0i64; steps.n];
            let mut j = 0usize;
            for i in 0..steps.n {
                let r = at.unwrap_or(steps.at(i)) - offset;
                while j < samples.len() && samples[j].t <= r {
                    j += 1;
                }
                if j == 0 {
                    continue;
                }
                let x = samples[j - 1];
                if x.t >= r - lookback && !is_stale_nan(x.v) {
                    vals[i] = Some(x.v);
                    ts[i] = x.t;
                }
            }
            StepValues { vals, ts: Some(ts) }
        };
        self.for_each_selected_mapped(vs, lo - lookback, hi, &pick, |labels, picked| {
            self.account(steps.n)?;
            if let Some(acc) = self.stats {
                let counts: Vec<u64> = picked.vals.iter().map(|v| u64::from(v.is_some())).collect();
                acc.add(steps, &counts);
            }
            if let Some(st) = stream.as_mut() {
                st.add(&labels, false, &picked.vals);
                return Ok(());
            }
            let mut v = VSeries::new(labels, picked.vals);
            if !v.is_empty() {
                v.ts = picked.ts;
                out.push(v);
            }
            Ok(())
        })?;
        if let Some(mut st) = stream {
            st.used = true;
            *self.stream.borrow_mut() = Some(st);
        }
        Ok(Val::Vector(out))
    }

    fn eval_subquery(&self, sq: &parser::SubqueryExpr, steps: Steps) -> Result<Val> {
        let offset = offset_ms(&sq.offset);
        let at = self.at_ms(&sq.at);
        let range = ms(sq.range);
        let step =
            sq.step.map(ms).filter(|s| *s > 0).unwrap_or(ms(self.opts.default_subquery_step));
        let (lo, hi) = self.ref_bounds(steps, at, offset);
        // inner steps: multiples of the step from the first one inside the earliest window
        let first = lo - range;
        let mut start = first.div_euclid(step) * step;
        if start < first {
            start += step;
        }
        if start > hi {
            return Ok(Val::Matrix(Range {
                series: RangeSeries::Loaded(Vec::new()),
                range,
                offset,
                at,
            }));
        }
        let inner = Steps { start, step, n: ((hi - start) / step) as usize + 1 };
        let series = match self.eval(&sq.expr, inner)? {
            Val::Vector(vs) => vs
                .into_iter()
                .map(|s| MSeries {
                    labels: s.labels,
                    samples: s
                        .vals
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| v.map(|v| Sample::new(inner.at(i), v)))
                        .collect(),
                })
                .collect(),
            v => {
                return Err(Error::BadData(format!(
                    "subquery is only allowed on instant vector, got {} instead",
                    v.type_name()
                )));
            }
        };
        Ok(Val::Matrix(Range { series: RangeSeries::Loaded(series), range, offset, at }))
    }
}

/// Merges series with equal label sets (after a name was dropped, say); two values at one step
/// is the error Prometheus reports for it.
pub(crate) fn merge_same_labels(vs: Vec<VSeries>) -> Result<Val> {
    // keyed by the label set's 64-bit id rather than a clone of it: this runs on every series
    // a function returns, and cloning each label set cost more than the function (measured);
    // equal ids with different labels (a hash collision) fall back to a search
    let mut index: HashMap<u64, usize> = HashMap::with_capacity(vs.len());
    let mut out: Vec<VSeries> = Vec::with_capacity(vs.len());
    for s in vs {
        if s.is_empty() {
            continue;
        }
        let id = s.labels.series_id().0;
        let same = match index.get(&id) {
            Some(&k) if out[k].labels == s.labels => Some(k),
            Some(_) => out.iter().position(|o| o.labels == s.labels),
            None => None,
        };
        match same {
            None => {
                index.entry(id).or_insert(out.len());
                out.push(s);
            }
            Some(k) => {
                let o = &mut out[k];
                for (a, b) in o.vals.iter_mut().zip(s.vals) {
                    if b.is_some() {
                        if a.is_some() {
                            return Err(Error::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                        *a = b;
                    }
                }
                o.ts = None;
            }
        }
    }
    Ok(Val::Vector(out))
}

/// The series of a selector argument's equality matchers, as `absent()` labels its output.
pub(crate) fn absent_labels(expr: &Expr) -> Labels {
    let vs = match expr {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Labels::default(),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        pairs.retain(|(n, _)| *n != m.name);
        if matches!(m.op, promql_parser::label::MatchOp::Equal) {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    Labels::from_pairs(pairs).unwrap_or_default()
}
