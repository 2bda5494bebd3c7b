//! Rollups: per-window aggregates of a series, what downsampled storage keeps instead of raw
//! samples, and how they combine.
//!
//! A window at resolution `r` is the interval `(k*r, (k+1)*r]`, closed on the right, so that a
//! sample exactly on a multiple of `r` is the *last* sample of the window ending there. A
//! [`Window`] holds enough of its raw samples to answer, exactly up to float rounding, what
//! PromQL asks of a range `[a, b]` whose ends are multiples of `r`: the windows ending in
//! `(a, b]` hold every sample of `(a, b]`, and the window ending at `a` contributes its last
//! sample when that sample lies exactly at `a` ([`over_range`]).
//!
//! Besides `count`, `sum`, `min`, `max` and the first and last sample, a window keeps what
//! counters need across resets (as Thanos' downsampling does): the sum of the values lost at
//! resets inside it, the number of resets and of value changes. Windows of one resolution
//! merge into windows of a coarser one ([`coarsen`]) with the same result as building those
//! from the raw samples. Stale markers are not values: they count nowhere, except that a
//! window whose last raw sample is a stale marker says so (`t != last_t`), which is what an
//! instant selector needs to see the series end.

use crate::{Sample, is_stale_nan};

/// The aggregates of one window of one series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Time of the last raw sample in the window, stale markers included.
    pub t: i64,
    /// Samples that are not stale markers.
    pub count: u64,
    /// Their sum, in time order.
    pub sum: f64,
    /// Their minimum and maximum as PromQL's `min_over_time` / `max_over_time` fold them
    /// (NaN only if every value is NaN); NaN when `count` is 0.
    pub min: f64,
    pub max: f64,
    /// The first and last sample that is not a stale marker (NaN values and `t` when `count`
    /// is 0).
    pub first_t: i64,
    pub first_v: f64,
    pub last_t: i64,
    pub last_v: f64,
    /// Sum of `prev` over consecutive samples `prev, cur` with `cur < prev`: what `rate` and
    /// `increase` add back for counter resets inside the window.
    pub counter_correction: f64,
    /// Consecutive samples with `cur < prev` (`resets()`), and with a different value
    /// (`changes()`), inside the window.
    pub resets: u64,
    pub changes: u64,
}

/// The end of the window at resolution `res` that holds time `t`: `t` rounded up to a multiple
/// of `res`.
pub fn window_end(t: i64, res: i64) -> i64 {
    let r = t.rem_euclid(res);
    if r == 0 { t } else { t - r + res }
}

fn fold_min(acc: f64, v: f64) -> f64 {
    if v < acc || acc.is_nan() { v } else { acc }
}

fn fold_max(acc: f64, v: f64) -> f64 {
    if v > acc || acc.is_nan() { v } else { acc }
}

fn changed(prev: f64, cur: f64) -> bool {
    !(cur == prev || (cur.is_nan() && prev.is_nan()))
}

impl Window {
    /// A window holding only a stale marker at `t`.
    fn empty(t: i64) -> Window {
        Window {
            t,
            count: 0,
            sum: 0.0,
            min: f64::NAN,
            max: f64::NAN,
            first_t: t,
            first_v: f64::NAN,
            last_t: t,
            last_v: f64::NAN,
            counter_correction: 0.0,
            resets: 0,
            changes: 0,
        }
    }

    /// A window of the one sample `(t, v)`, not a stale marker.
    pub fn single(t: i64, v: f64) -> Window {
        Window {
            t,
            count: 1,
            sum: v,
            min: v,
            max: v,
            first_t: t,
            first_v: v,
            last_t: t,
            last_v: v,
            counter_correction: 0.0,
            resets: 0,
            changes: 0,
        }
    }

    /// Adds a raw sample later than every sample in the window: what [`Window::merge`] with
    /// [`Window::single`] gives, without building one per sample.
    fn push(&mut self, s: Sample) {
        self.t = s.t;
        let v = s.v;
        if is_stale_nan(v) {
            return;
        }
        if self.count == 0 {
            *self = Window::single(s.t, v);
            return;
        }
        let prev = self.last_v;
        if v < prev {
            self.counter_correction += prev;
            self.resets += 1;
        }
        self.changes += u64::from(changed(prev, v));
        self.count += 1;
        self.sum += v;
        self.min = fold_min(self.min, v);
        self.max = fold_max(self.max, v);
        self.last_t = s.t;
        self.last_v = v;
    }

    /// The window of this one's samples followed by `later`'s (all later in time).
    pub fn merge(&self, later: &Window) -> Window {
        let (a, b) = (self, later);
        if b.count == 0 {
            return Window { t: b.t, ..*a };
        }
        if a.count == 0 {
            return *b;
        }
        let reset = b.first_v < a.last_v;
        Window {
            t: b.t,
            count: a.count + b.count,
            sum: a.sum + b.sum,
            min: fold_min(a.min, b.min),
            max: fold_max(a.max, b.max),
            first_t: a.first_t,
            first_v: a.first_v,
            last_t: b.last_t,
            last_v: b.last_v,
            counter_correction: a.counter_correction
                + b.counter_correction
                + if reset { a.last_v } else { 0.0 },
            resets: a.resets + b.resets + u64::from(reset),
            changes: a.changes + b.changes + u64::from(changed(a.last_v, b.first_v)),
        }
    }

    /// This window with `sum` and `counter_correction` moved to the nearest number with as
    /// many decimals as its values have, where that moves them by no more than adding the
    /// values up in floating point can be off: a sum of values with two decimals is then the
    /// exact decimal sum (`0.1 + 0.2` becomes `0.3`), which storage keeps in far fewer bytes
    /// than the rounding noise. The decimals are those of `min`, `max`, `first_v` and
    /// `last_v`; a window with values of more decimals than those is left as it is, since its
    /// true sum lies farther from the rounded one than the bound allows.
    pub fn with_decimal_sums(&self) -> Window {
        let mut w = *self;
        if w.count < 2 {
            return w;
        }
        let mut places = 0;
        for v in [w.min, w.max, w.first_v, w.last_v] {
            match decimal_places(v) {
                Some(p) => places = places.max(p),
                None => return w,
            }
        }
        // each of the count sums of at most count terms of magnitude at most m errs by at
        // most count * ulp(sum) / 2 <= count * count * m * EPSILON / 2
        let m = w.min.abs().max(w.max.abs());
        let n = w.count as f64;
        let bound = n * n * m * f64::EPSILON;
        let scale = POW10[places as usize];
        let snap = |x: f64| {
            let c = (x * scale).round() / scale;
            if c.is_finite() && (c - x).abs() <= bound { c } else { x }
        };
        w.sum = snap(w.sum);
        w.counter_correction = snap(w.counter_correction);
        w
    }

    /// Whether the last raw sample of the window is a stale marker (or every sample is).
    pub fn ends_stale(&self) -> bool {
        self.count == 0 || self.t != self.last_t
    }
}

const POW10: [f64; 10] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The fewest decimals (at most 9) `v` is written with: `k` with `round(v * 10^k) / 10^k`
/// equal to `v`; `None` for non-finite values and those with more decimals.
fn decimal_places(v: f64) -> Option<u32> {
    if !v.is_finite() {
        return None;
    }
    (0u32..10).find(|&k| {
        let s = POW10[k as usize];
        let m = (v * s).round();
        m.abs() < 9.007_199_254_740_992e15 && m / s == v
    })
}

/// The windows at resolution `res` of raw samples sorted by time (stale markers included), one
/// per window that holds at least one sample.
pub fn from_samples(samples: &[Sample], res: i64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut cur_end = i64::MIN;
    for &s in samples {
        let e = window_end(s.t, res);
        if e != cur_end || out.is_empty() {
            cur_end = e;
            out.push(Window::empty(s.t));
            if !is_stale_nan(s.v) {
                let last = out.len() - 1;
                out[last] = Window::single(s.t, s.v);
            }
            continue;
        }
        if let Some(w) = out.last_mut() {
            w.push(s);
        }
    }
    out
}

/// Merges windows sorted by time into the windows of the coarser resolution `res` (a multiple
/// of theirs).
pub fn coarsen(windows: &[Window], res: i64) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut cur_end = i64::MIN;
    for w in windows {
        let e = window_end(w.t, res);
        match out.last_mut() {
            Some(last) if e == cur_end => *last = last.merge(w),
            _ => {
                cur_end = e;
                out.push(*w);
            }
        }
    }
    out
}

/// The aggregate of the samples in `[a, b]` (`a` and `b` multiples of `res`) from the windows
/// of a series at resolution `res`, sorted by time; `None` if no sample lies there.
/// `from` is a hint: the index of the first window that may take part; it is advanced for the
/// next, later range.
pub fn over_range(
    windows: &[Window],
    res: i64,
    a: i64,
    b: i64,
    from: &mut usize,
) -> Option<Window> {
    // windows ending before `a` never take part again for later ranges
    while *from < windows.len() && window_end(windows[*from].t, res) < a {
        *from += 1;
    }
    let mut acc: Option<Window> = None;
    for w in &windows[*from..] {
        let e = window_end(w.t, res);
        if e > b {
            break;
        }
        let part = if e == a {
            // only its last sample, and only if that lies exactly at `a`
            if w.count == 0 || w.last_t != a {
                continue;
            }
            Window::single(a, w.last_v)
        } else {
            *w
        };
        acc = Some(match acc {
            None => part,
            Some(x) => x.merge(&part),
        });
    }
    acc.filter(|w| w.count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STALE_NAN;
    use proptest::prelude::*;

    fn raw_over(samples: &[Sample], a: i64, b: i64) -> Option<Window> {
        let inside: Vec<Sample> = samples
            .iter()
            .copied()
            .filter(|s| s.t >= a && s.t <= b && !is_stale_nan(s.v))
            .collect();
        let mut w: Option<Window> = None;
        for s in inside {
            let x = Window::single(s.t, s.v);
            w = Some(match w {
                None => x,
                Some(p) => p.merge(&x),
            });
        }
        w
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    fn same(x: &Window, y: &Window) -> bool {
        x.count == y.count
            && close(x.sum, y.sum)
            && close(x.min, y.min)
            && close(x.max, y.max)
            && (x.first_t, x.last_t) == (y.first_t, y.last_t)
            && close(x.first_v, y.first_v)
            && close(x.last_v, y.last_v)
            && close(x.counter_correction, y.counter_correction)
            && (x.resets, x.changes) == (y.resets, y.changes)
    }

    #[test]
    fn window_ends_are_closed_on_the_right() {
        assert_eq!(window_end(300_000, 300_000), 300_000);
        assert_eq!(window_end(300_001, 300_000), 600_000);
        assert_eq!(window_end(1, 300_000), 300_000);
        assert_eq!(window_end(0, 300_000), 0);
        assert_eq!(window_end(-1, 300_000), 0);
    }

    #[test]
    fn a_counter_reset_is_folded_in() {
        let s: Vec<Sample> =
            [(10, 5.0), (20, 8.0), (30, 2.0), (40, 4.0)].map(|(t, v)| Sample::new(t, v)).into();
        let w = from_samples(&s, 100);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].count, w[0].resets, w[0].changes), (4, 1, 3));
        assert_eq!(w[0].counter_correction, 8.0);
        assert_eq!((w[0].first_v, w[0].last_v, w[0].min, w[0].max), (5.0, 4.0, 2.0, 8.0));
    }

    #[test]
    fn a_trailing_stale_marker_ends_the_window_stale() {
        let s = vec![Sample::new(10, 1.0), Sample::new(20, STALE_NAN)];
        let w = from_samples(&s, 100);
        assert!(w[0].ends_stale());
        assert_eq!((w[0].t, w[0].last_t, w[0].count), (20, 10, 1));
        let only = from_samples(&[Sample::new(150, STALE_NAN)], 100);
        assert_eq!(only.len(), 1);
        assert!(only[0].ends_stale());
    }

    #[test]
    fn sums_of_decimals_are_snapped_to_their_decimals() {
        let s: Vec<Sample> = [(10, 0.1), (20, 0.2), (30, 0.1), (40, 0.4), (50, 0.1)]
            .map(|(t, v)| Sample::new(t, v))
            .into();
        let w = from_samples(&s, 100)[0];
        assert_ne!(w.counter_correction, 0.6, "the float sum carries rounding noise");
        let snapped = w.with_decimal_sums();
        assert_eq!(snapped.sum, 0.9);
        assert_eq!(snapped.counter_correction, 0.6);
        assert_eq!(Window { sum: w.sum, counter_correction: w.counter_correction, ..snapped }, w);
        let s: Vec<Sample> =
            [(10, 0.1), (20, 0.2), (30, 0.4)].map(|(t, v)| Sample::new(t, v)).into();
        let w = from_samples(&s, 100)[0];
        assert_ne!(w.sum, 0.7);
        assert_eq!(w.with_decimal_sums().sum, 0.7);
        // a value with more decimals than the ones kept leaves the sum alone
        let s: Vec<Sample> =
            [(10, 0.1), (20, 0.123), (30, 0.2)].map(|(t, v)| Sample::new(t, v)).into();
        let w = from_samples(&s, 100)[0];
        assert_eq!(w.with_decimal_sums().sum, w.sum);
        let big = Window { sum: f64::NAN, ..w };
        assert!(big.with_decimal_sums().sum.is_nan());
    }

    fn series() -> impl Strategy<Value = Vec<Sample>> {
        prop::collection::vec((1i64..40, -3i32..50, 0u8..12), 1..200).prop_map(|steps| {
            let mut t = -500;
            let mut c = 0.0;
            steps
                .into_iter()
                .map(|(dt, dv, kind)| {
                    t += dt * 7;
                    c = match kind {
                        0 => 0.0, // counter reset
                        1 => return Sample::new(t, STALE_NAN),
                        _ => c + f64::from(dv),
                    };
                    Sample::new(t, c)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn ranges_from_windows_equal_ranges_from_samples(
            s in series(), k in 0i64..40, len in 1i64..30,
        ) {
            let res = 50;
            let w = from_samples(&s, res);
            let a = -600 + k * res;
            let b = a + len * res;
            let mut from = 0;
            let got = over_range(&w, res, a, b, &mut from);
            let want = raw_over(&s, a, b);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(x)) => prop_assert!(same(&g, &x), "{g:?} != {x:?}"),
                (g, x) => prop_assert!(false, "{g:?} != {x:?}"),
            }
        }

        #[test]
        fn snapped_sums_stay_within_float_error_of_the_exact_sum(
            vals in prop::collection::vec((-100_000i64..100_000, 0u32..4), 1..300),
        ) {
            // values with 0..3 decimals; their exact sum in integers at 3 decimals
            let s: Vec<Sample> = vals
                .iter()
                .enumerate()
                .map(|(i, &(m, k))| {
                    let v = (m / 10i64.pow(3 - k)) as f64 / 10f64.powi(k as i32);
                    Sample::new(i as i64 + 1, v)
                })
                .collect();
            let exact: i64 = s.iter().map(|x| (x.v * 1000.0).round() as i64).sum();
            let w = from_samples(&s, 1000)[0];
            let snapped = w.with_decimal_sums();
            let exact = exact as f64 / 1000.0;
            let tol = 1e-12 * s.iter().map(|x| x.v.abs()).sum::<f64>().max(1.0);
            prop_assert!((snapped.sum - exact).abs() <= tol, "{} vs {exact}", snapped.sum);
            prop_assert!((snapped.sum - w.sum).abs() <= tol);
        }

        #[test]
        fn coarsened_windows_equal_windows_from_samples(s in series()) {
            let fine = from_samples(&s, 50);
            let direct = from_samples(&s, 300);
            let merged = coarsen(&fine, 300);
            prop_assert_eq!(direct.len(), merged.len());
            for (d, m) in direct.iter().zip(&merged) {
                prop_assert_eq!(d.t, m.t);
                prop_assert!(same(d, m), "{d:?} != {m:?}");
            }
        }
    }
}
