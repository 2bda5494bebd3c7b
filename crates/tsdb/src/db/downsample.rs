//! Downsampling: rollup blocks of per-window aggregates ([`Window`]s), built from raw blocks
//! (or from a finer rollup) once their data is old enough, kept per resolution for their own
//! retention, and read back as windows for queries that can be answered from them.
//!
//! A rollup block holds one *span*: the day `(E - 1 d, E]` of window ends, `E` a multiple of
//! a day (a multiple of every resolution). A span's rollup at resolution `r` is built when the
//! span ends `after` before the newest data, no head holds samples in it, and there is none
//! yet or the one there is out of date: a raw block over the span (or a finer rollup of it)
//! was written after it, which late samples or a rebuilt finer rollup cause. An out-of-date
//! rollup is never read; its span is read from the raw data (or the finer rollup) until it is
//! rebuilt, and the new rollup replaces it.
//!
//! Reading windows at resolution `r` takes, per span, the freshest choice of: a rollup at `r`,
//! a finer rollup coarsened to `r`, or the raw samples turned into windows. The result is the
//! same whichever is read (`ocelli_model::rollup` proves the window algebra), so a query never
//! depends on how far downsampling has got.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ocelli_model::rollup::{self, Window, window_end};
use ocelli_model::{Labels, Matcher, Sample};

use super::{Inner, Limits, SourceCursor, delete_block_dir, now_ms};
use crate::block::{Block, BlockWriter};
use crate::error::{Error, Result};
use crate::filenames::BLOCKS_DIR;
use crate::head::{Head, dedup_last};

/// Width of the time span one rollup block covers: one day, a multiple of every resolution.
pub const ROLLUP_SPAN_MS: i64 = 86_400_000;

/// One resolution to downsample to: windows of `resolution_ms`, built for data older than
/// `after_ms` behind the newest sample, deleted past `retention_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollup {
    pub resolution_ms: i64,
    pub after_ms: i64,
    pub retention_ms: i64,
}

impl Rollup {
    /// The defaults: 5-minute windows after 40 hours, kept 90 days; 1-hour windows after 10
    /// days, kept a year.
    pub fn defaults() -> Vec<Rollup> {
        const H: i64 = 3_600_000;
        vec![
            Rollup { resolution_ms: 5 * 60_000, after_ms: 40 * H, retention_ms: 90 * 24 * H },
            Rollup { resolution_ms: H, after_ms: 10 * 24 * H, retention_ms: 365 * 24 * H },
        ]
    }
}

/// Checks a downsampling configuration: resolutions ascending, each a multiple of the one
/// before and a divisor of the span.
pub(crate) fn validate(levels: &[Rollup]) -> Result<()> {
    let mut prev: Option<i64> = None;
    for l in levels {
        let r = l.resolution_ms;
        if r <= 0 || ROLLUP_SPAN_MS % r != 0 {
            return Err(Error::InvalidOptions(format!(
                "rollup resolution {r} ms must be positive and divide a day"
            )));
        }
        if l.after_ms < 0 || l.retention_ms <= 0 {
            return Err(Error::InvalidOptions(format!(
                "rollup resolution {r} ms: age must not be negative and retention must be positive"
            )));
        }
        if let Some(p) = prev
            && (r <= p || r % p != 0)
        {
            return Err(Error::InvalidOptions(format!(
                "rollup resolutions must ascend, each a multiple of the one before: {r} ms after {p} ms"
            )));
        }
        prev = Some(r);
    }
    Ok(())
}

/// Sizes of the rollups of one resolution, for [`crate::Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RollupStats {
    pub resolution_ms: i64,
    pub blocks: usize,
    pub windows: u64,
    pub bytes: u64,
}

/// The end of the span a rollup block covers.
fn span_of(b: &Block) -> i64 {
    window_end(b.meta.max_t, ROLLUP_SPAN_MS)
}

/// What the read of one span comes from.
enum SpanSource {
    Rollup(Arc<Block>),
    Raw,
}

/// A snapshot of what a selection or a build reads.
struct View {
    raw: Vec<Arc<Block>>,
    rollups: Vec<Arc<Block>>,
    heads: Vec<Arc<Head>>,
}

impl View {
    /// Whether rollup `r` holds everything its span has now.
    fn is_fresh(&self, r: &Block) -> bool {
        let e = span_of(r);
        let s = e - ROLLUP_SPAN_MS;
        // written after the rollup, and not just a merge of blocks it was built from
        let newer = |b: &Block| {
            b.meta.seq > r.meta.built_after
                && (b.meta.sources.is_empty()
                    || b.meta.sources.iter().any(|&s| s > r.meta.built_after))
        };
        !self.raw.iter().any(|b| newer(b) && b.overlaps(s + 1, e))
            && !self
                .rollups
                .iter()
                .any(|b| b.meta.resolution < r.meta.resolution && newer(b) && span_of(b) == e)
            && !self.heads_touch(s, e)
    }

    /// Whether a head holds samples in `(s, e]`.
    fn heads_touch(&self, s: i64, e: i64) -> bool {
        self.heads.iter().any(|h| h.time_range().is_some_and(|(lo, hi)| lo <= e && s < hi))
    }

    /// The fresh rollup to read span `e` from at resolution `res`: the coarsest at or below
    /// `res` that divides it.
    fn rollup_for(&self, e: i64, res: i64) -> Option<&Arc<Block>> {
        self.rollups
            .iter()
            .filter(|b| {
                let r = b.meta.resolution;
                r <= res && res % r == 0 && span_of(b) == e && self.is_fresh(b)
            })
            .max_by_key(|b| (b.meta.resolution, b.meta.seq))
    }
}

impl Inner {
    fn view(&self) -> View {
        // the head first: a cut in between then shows data twice, never not at all
        let head = self.head.read().0.clone();
        let mut heads: Vec<Arc<Head>> = self.frozen.read().iter().map(|f| f.head.clone()).collect();
        heads.push(head);
        View { raw: self.blocks.read().clone(), rollups: self.rollups.read().clone(), heads }
    }

    /// Resolutions (ascending) with an up-to-date rollup over some of `[mint, maxt]`.
    pub(super) fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        let v = self.view();
        let mut out: Vec<i64> = v
            .rollups
            .iter()
            .filter(|b| {
                let e = span_of(b);
                e - ROLLUP_SPAN_MS < maxt && mint <= e && v.is_fresh(b)
            })
            .map(|b| b.meta.resolution)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The windows at resolution `res` (which must divide a day) of the series matching
    /// `matchers`, for the windows holding any time in `[mint, maxt]`, streamed in label
    /// order as [`Inner::select_each`] streams samples.
    pub(super) fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        limits: Limits,
        f: &mut dyn FnMut(Labels, Vec<Window>) -> bool,
    ) -> Result<()> {
        if mint > maxt {
            return Err(Error::InvalidTimeRange { mint, maxt });
        }
        if res <= 0 || ROLLUP_SPAN_MS % res != 0 {
            return Err(Error::InvalidOptions(format!(
                "resolution {res} ms does not divide a day"
            )));
        }
        let v = self.view();
        self.select_windows_in(&v, matchers, mint, maxt, res, limits, f)
    }

    #[allow(clippy::too_many_arguments)]
    fn select_windows_in(
        &self,
        v: &View,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        limits: Limits,
        f: &mut dyn FnMut(Labels, Vec<Window>) -> bool,
    ) -> Result<()> {
        let (e_lo, e_hi) = (window_end(mint, res), window_end(maxt, res));
        // samples in (e_lo - res, e_hi]; per span, a rollup or the raw samples
        let lo = e_lo - res + 1;
        let mut plan: BTreeMap<i64, SpanSource> = BTreeMap::new();
        let mut e = window_end(lo, ROLLUP_SPAN_MS);
        while e - ROLLUP_SPAN_MS < e_hi {
            let src = match v.rollup_for(e, res) {
                Some(b) => SpanSource::Rollup(b.clone()),
                None => SpanSource::Raw,
            };
            plan.insert(e, src);
            e += ROLLUP_SPAN_MS;
        }
        // raw sample intervals, inclusive, merged where spans adjoin
        let mut raw: Vec<(i64, i64)> = Vec::new();
        for (&e, src) in &plan {
            if matches!(src, SpanSource::Raw) {
                let (a, b) = ((e - ROLLUP_SPAN_MS + 1).max(lo), e.min(e_hi));
                match raw.last_mut() {
                    Some(last) if last.1 + 1 == a => last.1 = b,
                    _ => raw.push((a, b)),
                }
            }
        }
        let mut cursors: Vec<(SourceCursor, Option<Arc<Block>>)> = Vec::new();
        for b in &v.raw {
            if raw.iter().any(|&(a, z)| b.overlaps(a, z)) {
                cursors.push((SourceCursor::block(b.clone(), matchers)?, None));
            }
        }
        if !raw.is_empty() {
            for h in &v.heads {
                cursors.push((SourceCursor::head(h, matchers), None));
            }
        }
        for src in plan.values() {
            if let SpanSource::Rollup(b) = src {
                cursors.push((SourceCursor::block(b.clone(), matchers)?, Some(b.clone())));
            }
        }
        cursors.retain(|(c, _)| c.peek().is_some());
        let (mut series, mut windows) = (0usize, 0usize);
        loop {
            let Some(min) = cursors.iter().filter_map(|(c, _)| c.peek()).min().cloned() else {
                return Ok(());
            };
            let mut samples: Vec<Sample> = Vec::new();
            let mut parts = 0;
            let mut out: Vec<Window> = Vec::new();
            for (c, rollup) in cursors.iter_mut() {
                if c.peek() != Some(&min) {
                    continue;
                }
                match rollup {
                    None => {
                        let got = c.take_in(&raw)?;
                        if !got.is_empty() {
                            parts += 1;
                            samples.extend(got);
                        }
                    }
                    Some(b) => {
                        let r = b.meta.resolution;
                        let ws = c.take_windows(window_end(e_lo - res + 1, r), e_hi)?;
                        if r == res {
                            out.extend(ws);
                        } else {
                            out.extend(rollup::coarsen(&ws, res));
                        }
                    }
                }
            }
            if parts > 1 {
                samples.sort_by_key(|s| s.t);
                dedup_last(&mut samples);
            }
            out.extend(rollup::from_samples(&samples, res));
            out.sort_by_key(|w| w.t);
            out.retain(|w| (e_lo..=e_hi).contains(&window_end(w.t, res)));
            if out.is_empty() {
                continue;
            }
            series += 1;
            windows += out.len();
            if series > limits.max_series {
                return Err(Error::LimitExceeded { what: "series", limit: limits.max_series });
            }
            if windows > limits.max_samples {
                return Err(Error::LimitExceeded { what: "samples", limit: limits.max_samples });
            }
            if !f(min, out) {
                return Ok(());
            }
        }
    }

    /// Builds every rollup that is due; returns how many were written. Call with the
    /// maintenance lock held.
    pub(super) fn downsample(&self) -> Result<usize> {
        let levels = self.opts.rollups.clone();
        let mut built = 0;
        for l in levels {
            loop {
                let v = self.view();
                let newest = self.stats().max_t.unwrap_or(i64::MIN).min(now_ms());
                if newest == i64::MIN {
                    return Ok(built);
                }
                let due_end = newest.saturating_sub(l.after_ms);
                let oldest = newest.saturating_sub(l.retention_ms);
                let mut spans: Vec<i64> = Vec::new();
                for b in &v.raw {
                    let mut e = window_end(b.meta.min_t, ROLLUP_SPAN_MS);
                    while e - ROLLUP_SPAN_MS < b.meta.max_t {
                        spans.push(e);
                        e += ROLLUP_SPAN_MS;
                    }
                }
                spans.extend(
                    v.rollups
                        .iter()
                        .filter(|b| b.meta.resolution < l.resolution_ms)
                        .map(|b| span_of(b)),
                );
                spans.sort_unstable();
                spans.dedup();
                let todo = spans.into_iter().find(|&e| {
                    e <= due_end
                        && e >= oldest
                        && !v.heads_touch(e - ROLLUP_SPAN_MS, e)
                        && !v.rollups.iter().any(|b| {
                            b.meta.resolution == l.resolution_ms && span_of(b) == e && v.is_fresh(b)
                        })
                });
                let Some(e) = todo else { break };
                self.build_rollup(&v, l.resolution_ms, e)?;
                built += 1;
            }
        }
        Ok(built)
    }

    /// Writes the rollup of span `e` at `res` and replaces any older one of it.
    fn build_rollup(&self, v: &View, res: i64, e: i64) -> Result<()> {
        let t0 = Instant::now();
        let built_after = self.next_seq.load(Ordering::SeqCst) - 1;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut w = BlockWriter::create(&self.dir.join(BLOCKS_DIR), seq)?;
        let mut failed: Option<Error> = None;
        let unlimited = Limits { max_series: usize::MAX, max_samples: usize::MAX };
        self.select_windows_in(
            v,
            &[],
            e - ROLLUP_SPAN_MS + 1,
            e,
            res,
            unlimited,
            &mut |labels, windows| match w.add_windows(&labels, &windows) {
                Ok(()) => true,
                Err(err) => {
                    failed = Some(err);
                    false
                }
            },
        )?;
        if let Some(err) = failed {
            return Err(err);
        }
        let new = w.finish_rollup(res, built_after)?.map(Arc::new);
        let old: Vec<Arc<Block>> = {
            let mut rl = self.rollups.write();
            let (old, keep): (Vec<_>, Vec<_>) =
                rl.drain(..).partition(|b| b.meta.resolution == res && span_of(b) == e);
            *rl = keep;
            if let Some(n) = &new {
                rl.push(n.clone());
            }
            rl.sort_by_key(|b| b.meta.seq);
            old
        };
        for b in &old {
            delete_block_dir(&b.dir)?;
        }
        tracing::info!(
            resolution_ms = res,
            span_end = e,
            seq,
            windows = new.as_ref().map_or(0, |b| b.meta.num_samples),
            replaced = old.len(),
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "rollup written"
        );
        Ok(())
    }

    /// Deletes rollups past their resolution's retention. Call with the maintenance lock held.
    pub(super) fn rollup_retention(&self, newest: i64) -> Result<usize> {
        let levels = &self.opts.rollups;
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        self.rollups.write().retain(|b| {
            let keep_ms = levels
                .iter()
                .find(|l| l.resolution_ms == b.meta.resolution)
                .map_or(i64::MAX, |l| l.retention_ms);
            let old = span_of(b) < newest.saturating_sub(keep_ms);
            if old {
                doomed.push(b.clone());
            }
            !old
        });
        for b in &doomed {
            tracing::info!(block = %b.dir.display(), resolution_ms = b.meta.resolution, "retention deletes rollup");
            delete_block_dir(&b.dir)?;
        }
        Ok(doomed.len())
    }

    pub(super) fn rollup_stats(&self) -> Vec<RollupStats> {
        let mut by: BTreeMap<i64, RollupStats> = BTreeMap::new();
        for b in self.rollups.read().iter() {
            let s = by.entry(b.meta.resolution).or_insert(RollupStats {
                resolution_ms: b.meta.resolution,
                ..RollupStats::default()
            });
            s.blocks += 1;
            s.windows += b.meta.num_samples;
            s.bytes += b.disk_bytes();
        }
        by.into_values().collect()
    }
}

type Blocks = Vec<Arc<Block>>;

/// Splits opened blocks into raw blocks and rollups, deleting rollups another one of the same
/// span and resolution replaced (a rebuild that stopped before deleting the old one).
pub(super) fn split_rollups(
    blocks: Vec<Arc<Block>>,
    cleaned: &mut Vec<String>,
) -> Result<(Blocks, Blocks)> {
    let (rollups, raw): (Vec<_>, Vec<_>) = blocks.into_iter().partition(|b| b.meta.resolution > 0);
    let mut newest: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for b in &rollups {
        let k = (b.meta.resolution, span_of(b));
        let s = newest.entry(k).or_insert(0);
        *s = (*s).max(b.meta.seq);
    }
    let mut keep = Vec::new();
    for b in rollups {
        if newest.get(&(b.meta.resolution, span_of(&b))) == Some(&b.meta.seq) {
            keep.push(b);
        } else {
            cleaned.push(format!("removed {} (rollup replaced)", b.dir.display()));
            delete_block_dir(&b.dir)?;
        }
    }
    Ok((raw, keep))
}
