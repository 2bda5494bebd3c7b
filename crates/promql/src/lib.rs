//! Ocelli's PromQL engine: evaluates PromQL as Prometheus 2.42 does, over any sample source.
//!
//! Parsing is the `promql-parser` crate's; there is no PromQL evaluator crate worth building on,
//! so evaluation is ours. The engine evaluates every node of the expression over all steps of
//! the query at once: selectors fetch each series once for the whole range, instant vectors are
//! held densely (one optional value per step), and range functions slide a window over each
//! series' samples. An instant query is a range query of one step.
//!
//! Semantics follow Prometheus 2.42: the lookback delta (default 5 m) and staleness markers for
//! instant selectors, closed `[t - range, t]` windows for range selectors, `offset` and `@`
//! (including `start()` / `end()`), subqueries aligned to multiples of their step, vector
//! matching with `on` / `ignoring` / `group_left` / `group_right` / `bool`, set operators, every
//! aggregation and every function of 2.42 (native histograms excepted). [`Options`] bounds the
//! samples a query may touch and its run time. Range functions and selectors read downsampled
//! windows instead of raw samples where that gives the same answer (`rollup`, [`Resolution`]).
//!
//! For Prometheus' HTTP API the crate also words parse errors as Prometheus does
//! (`1:4: parse error: unexpected end of input`, see [`parse`]), prettifies queries for
//! `format_query` ([`format_query`]), and returns the statistics of `stats=all`
//! ([`Engine::instant_with_stats`], [`Engine::range_with_stats`], [`QueryStats`]).

mod aggregate;
mod binary;
mod error;
mod eval;
mod functions;
mod parse_error;
mod rollup;
mod stats;
mod value;

use std::time::Duration;

pub use error::{Error, Result, StorageError};
pub use rollup::Resolution;
pub use stats::{QuerySamples, QueryStats, QueryTimings};
pub use value::{QueryValue, format_value};

use ocelli_model::rollup::{Window, from_samples, window_end};
use ocelli_model::{Labels, Matcher, Sample};

/// Where the engine reads samples from. The server implements it over the storage engine.
pub trait Storage: Sync {
    /// Series matching all `matchers`, with their samples in `[mint, maxt]` (inclusive), sorted
    /// by time, at most one per timestamp. Stale markers are returned as stored.
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> std::result::Result<Vec<(Labels, Vec<Sample>)>, StorageError>;

    /// [`Storage::select`] streamed, in label order: `f` gets each series as soon as it is read
    /// and returns `false` to stop. Range functions use it so that a query over many series
    /// never holds all their samples at once. The default collects [`Storage::select`].
    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> std::result::Result<(), StorageError> {
        for (labels, samples) in self.select(matchers, mint, maxt)? {
            if !f(labels, samples) {
                break;
            }
        }
        Ok(())
    }

    /// [`Storage::select_each`] with `map` applied to each series' samples: `f` gets, in label
    /// order, each series' labels, its number of samples and `map`'s result. Storage may read
    /// series on several threads and run `map` there (the evaluator passes the per-series
    /// work of range functions and instant selectors); `f` runs on the calling thread. The
    /// default runs `map` inline.
    fn select_map_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        map: &(dyn Fn(Vec<Sample>) -> StepValues + Sync),
        f: &mut dyn FnMut(Labels, usize, StepValues) -> bool,
    ) -> std::result::Result<(), StorageError> {
        self.select_each(matchers, mint, maxt, &mut |labels, samples| {
            let n = samples.len();
            f(labels, n, map(samples))
        })
    }

    /// Resolutions (ms, ascending) of downsampled data storage holds over some of
    /// `[mint, maxt]`; [`Resolution::Auto`] reads windows only at these. Default: none.
    fn rollup_resolutions(&self, _mint: i64, _maxt: i64) -> Vec<i64> {
        Vec::new()
    }

    /// The series matching `matchers` as windows of resolution `res` (ms), for every window
    /// holding a time in `[mint, maxt]`, in label order; `f` returns `false` to stop. The
    /// default computes them from [`Storage::select_each`].
    fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        f: &mut dyn FnMut(Labels, Vec<Window>) -> bool,
    ) -> std::result::Result<(), StorageError> {
        let (lo, hi) = (window_end(mint, res) - res + 1, window_end(maxt, res));
        self.select_each(matchers, lo, hi, &mut |labels, samples| {
            let w = from_samples(&samples, res);
            w.is_empty() || f(labels, w)
        })
    }
}

/// What the evaluator makes of one series' samples in [`Storage::select_map_each`]: its value
/// at each step of the query, and for an instant selector the timestamp of each value's sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepValues {
    pub vals: Vec<Option<f64>>,
    pub ts: Option<Vec<i64>>,
}

/// Engine limits and defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_delta: Duration,
    /// Most samples a query may load or hold (Prometheus' `query.max-samples`: 50,000,000).
    pub max_samples: usize,
    /// Longest a query may run (Prometheus' `query.timeout`: 2 m).
    pub timeout: Duration,
    /// Step of subqueries that name none (Prometheus' global `evaluation_interval`: 1 m).
    pub default_subquery_step: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// Prometheus refuses range queries of more than this many steps.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// The PromQL engine: stateless apart from its options; cheap to share.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: Options,
}

impl Engine {
    pub fn new(opts: Options) -> Engine {
        functions::register_extra();
        Engine { opts }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Evaluates `query` at time `t` (ms), reading rollups where they answer exactly
    /// ([`Resolution::Auto`]).
    pub fn instant(&self, storage: &dyn Storage, query: &str, t: i64) -> Result<QueryValue> {
        self.instant_at(storage, query, t, Resolution::Auto)
    }

    /// [`Engine::instant`] reading the data `resolution` says.
    pub fn instant_at(
        &self,
        storage: &dyn Storage,
        query: &str,
        t: i64,
        resolution: Resolution,
    ) -> Result<QueryValue> {
        let expr = parse(query)?;
        eval::instant(&self.opts, storage, &expr, t, resolution, None)
    }

    /// [`Engine::instant_at`] with the statistics Prometheus returns for `stats=all` (see
    /// [`QueryStats`] for what is counted and how). Its result is the same as without stats.
    pub fn instant_with_stats(
        &self,
        storage: &dyn Storage,
        query: &str,
        t: i64,
        resolution: Resolution,
    ) -> Result<(QueryValue, QueryStats)> {
        let t0 = std::time::Instant::now();
        let expr = parse(query)?;
        let prepared = t0.elapsed();
        let acc = stats::Acc::new(value::Steps { start: t, step: 1, n: 1 });
        let v = eval::instant(&self.opts, storage, &expr, t, resolution, Some(&acc))?;
        let total = t0.elapsed();
        Ok((v, acc.finish(false, prepared, total - prepared, total)))
    }

    /// Evaluates `query` at `start`, `start + step`, ... up to `end` (all ms); the result is
    /// always a matrix. Reads rollups where they answer exactly ([`Resolution::Auto`]).
    pub fn range(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryValue> {
        self.range_at(storage, query, start, end, step, Resolution::Auto)
    }

    /// [`Engine::range`] reading the data `resolution` says.
    pub fn range_at(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        resolution: Resolution,
    ) -> Result<QueryValue> {
        check_range(start, end, step)?;
        let expr = parse(query)?;
        eval::range(&self.opts, storage, &expr, start, end, step, resolution, None)
    }

    /// [`Engine::range_at`] with the statistics Prometheus returns for `stats=all`, the
    /// per-step sample counts included (see [`QueryStats`]). Its result is the same as without
    /// stats.
    pub fn range_with_stats(
        &self,
        storage: &dyn Storage,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        resolution: Resolution,
    ) -> Result<(QueryValue, QueryStats)> {
        let t0 = std::time::Instant::now();
        check_range(start, end, step)?;
        let expr = parse(query)?;
        let prepared = t0.elapsed();
        let steps = value::Steps { start, step, n: eval::steps_of(start, end, step) };
        let acc = stats::Acc::new(steps);
        let v = eval::range(&self.opts, storage, &expr, start, end, step, resolution, Some(&acc))?;
        let total = t0.elapsed();
        Ok((v, acc.finish(true, prepared, total - prepared, total)))
    }
}

/// The checks Prometheus makes of a range query's times before parsing it.
fn check_range(start: i64, end: i64, step: i64) -> Result<()> {
    if end < start {
        return Err(Error::BadData("end timestamp must not be before start time".into()));
    }
    if step <= 0 {
        return Err(Error::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
    }
    Ok(())
}

/// Parses a PromQL expression (with our extra functions registered). A failure is
/// [`Error::Parse`] worded as Prometheus words it, `<line>:<col>: parse error: <message>`; see
/// `parse_error` for where the position comes from and when it is approximate.
pub fn parse(query: &str) -> Result<promql_parser::parser::Expr> {
    functions::register_extra();
    promql_parser::parser::parse(query).map_err(|e| Error::Parse(parse_error::format(query, &e)))
}

/// `query` prettified as Prometheus' `/api/v1/format_query` answers it (`promql-parser`'s
/// prettifier, which follows Prometheus'). One difference from Prometheus 2.42 is known and
/// corrected: a positive infinite number literal is written `+Inf`, not `Inf`. Parse errors as
/// [`parse`]'s.
pub fn format_query(query: &str) -> Result<String> {
    let pretty = parse(query)?.prettify();
    Ok(fix_inf(&pretty))
}

/// `Inf` standing alone (a number literal, not part of a name or string) as `+Inf`.
fn fix_inf(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == b'\\' && q != b'`' => {
                out.push_str(&s[i..(i + 2).min(s.len())]);
                i += 2;
                continue;
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if matches!(c, b'"' | b'\'' | b'`') => quote = Some(c),
            None if s[i..].starts_with("Inf") => {
                let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_' || x == b':';
                let before = if i == 0 { None } else { Some(b[i - 1]) };
                let after = b.get(i + 3).copied();
                if !before.is_some_and(|x| word(x) || x == b'-' || x == b'+' || x == b'.')
                    && !after.is_some_and(|x| word(x) || matches!(x, b'=' | b'!' | b'~'))
                {
                    out.push_str("+Inf");
                    i += 3;
                    continue;
                }
            }
            None => {}
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The matchers of every vector selector in `expr` (those inside range selectors and
/// subqueries too), one list per selector and `or` branch: what an expression reads, for
/// `/api/v1/query_exemplars`.
pub fn expr_selectors(expr: &promql_parser::parser::Expr) -> Result<Vec<Vec<Matcher>>> {
    use promql_parser::parser::Expr;
    struct Collect(Vec<Vec<Matcher>>);
    impl promql_parser::util::ExprVisitor for Collect {
        type Error = Error;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            self.0.extend(eval::selector_matchers(vs)?);
            Ok(true)
        }
    }
    let mut c = Collect(Vec::new());
    promql_parser::util::walk_expr(&mut c, expr)?;
    Ok(c.0)
}

/// Parses a series selector as the `match[]` parameters of the HTTP API take it, into one
/// matcher list per `or` branch.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>> {
    match parse(s)? {
        promql_parser::parser::Expr::VectorSelector(vs) => eval::selector_matchers(&vs),
        _ => Err(Error::BadData(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        ))),
    }
}
