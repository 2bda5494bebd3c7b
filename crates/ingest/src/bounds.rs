//! The time bounds a written sample must fall in: not older than the retention (it would be
//! deleted at the next retention pass, or never be queryable) and not further in the future
//! than a configured bound (default 10 minutes, as Prometheus and VictoriaMetrics bound it: a
//! sample from a client whose clock is wrong would otherwise hide every later one behind it).
//!
//! Samples outside the bounds are taken out of the batch before it is stored; the rest is
//! stored. [`Refused`] counts them by reason, every caller reports them (the HTTP endpoints
//! answer 400 with the counts, as Prometheus answers out-of-bounds samples; the AMQP collector
//! logs them), and the process-wide counters ([`refused_total`]) are exported on `/metrics` as
//! `ocelli_ingest_samples_refused_total{reason}`. Stale markers obey the same bounds.
//!
//! Deliberately absent: any per-series order check. The storage accepts samples at any time
//! inside the bounds, in or out of order.

use std::sync::atomic::{AtomicU64, Ordering};

use ocelli_model::time::format_duration;
use ocelli_model::{RawSeries, Sample};
use ocelli_wire::remote_write::DecodedSeries;

/// The accepted time range, relative to the time of the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Samples older than `now - retention_ms` are refused.
    pub retention_ms: i64,
    /// Samples later than `now + max_future_ms` are refused.
    pub max_future_ms: i64,
}

impl Default for Bounds {
    /// Prometheus' default retention (15 days) and a 10-minute future bound.
    fn default() -> Self {
        Bounds { retention_ms: 15 * 24 * 3_600_000, max_future_ms: 10 * 60_000 }
    }
}

/// Samples a write left out, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    pub too_old: usize,
    pub too_new: usize,
}

impl Refused {
    pub fn total(&self) -> usize {
        self.too_old + self.too_new
    }

    /// What was refused and why, for an error answer; `None` when nothing was.
    pub fn message(&self, bounds: &Bounds, stored: usize) -> Option<String> {
        if self.total() == 0 {
            return None;
        }
        let mut why = Vec::new();
        if self.too_old > 0 {
            why.push(format!(
                "{} older than the retention ({})",
                self.too_old,
                format_duration(ms(bounds.retention_ms))
            ));
        }
        if self.too_new > 0 {
            why.push(format!(
                "{} more than {} in the future",
                self.too_new,
                format_duration(ms(bounds.max_future_ms))
            ));
        }
        Some(format!(
            "partial write: {} samples refused ({}); the other {stored} samples were stored",
            self.total(),
            why.join(", ")
        ))
    }

    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Ok => {}
            Verdict::TooOld => self.too_old += 1,
            Verdict::TooNew => self.too_new += 1,
        }
    }

    /// Adds these counts to the process-wide counters.
    fn publish(&self) {
        if self.too_old > 0 {
            TOO_OLD.fetch_add(self.too_old as u64, Ordering::Relaxed);
        }
        if self.too_new > 0 {
            TOO_NEW.fetch_add(self.too_new as u64, Ordering::Relaxed);
        }
    }
}

fn ms(v: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

static TOO_OLD: AtomicU64 = AtomicU64::new(0);
static TOO_NEW: AtomicU64 = AtomicU64::new(0);

/// Samples refused since the process started: `[("too_old", n), ("too_far_in_future", n)]`.
pub fn refused_total() -> [(&'static str, u64); 2] {
    [
        ("too_old", TOO_OLD.load(Ordering::Relaxed)),
        ("too_far_in_future", TOO_NEW.load(Ordering::Relaxed)),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    TooOld,
    TooNew,
}

impl Bounds {
    fn range(&self, now: i64) -> (i64, i64) {
        (now.saturating_sub(self.retention_ms), now.saturating_add(self.max_future_ms))
    }

    fn verdict((min, max): (i64, i64), t: i64) -> Verdict {
        if t < min {
            Verdict::TooOld
        } else if t > max {
            Verdict::TooNew
        } else {
            Verdict::Ok
        }
    }

    /// Takes the samples outside the bounds out of `series` (a series left with none is
    /// removed) and counts them.
    pub fn filter(&self, series: &mut Vec<DecodedSeries>, now: i64) -> Refused {
        let range = self.range(now);
        let mut refused = Refused::default();
        let inside = |s: &Sample| Bounds::verdict(range, s.t) == Verdict::Ok;
        if series.iter().all(|s| s.samples.iter().all(inside)) {
            return refused;
        }
        for s in series.iter_mut() {
            s.samples.retain(|x| {
                let v = Bounds::verdict(range, x.t);
                refused.count(v);
                v == Verdict::Ok
            });
        }
        series.retain(|s| !s.samples.is_empty());
        refused.publish();
        refused
    }

    /// [`Bounds::filter`] for series borrowed from a request: `None` when every sample is
    /// inside (the common case, which copies nothing); otherwise the samples to keep, one
    /// vector per series in order, and the counts.
    pub fn filter_raw(
        &self,
        series: &[RawSeries<'_>],
        now: i64,
    ) -> Option<(Vec<Vec<Sample>>, Refused)> {
        let range = self.range(now);
        let inside = |s: &Sample| Bounds::verdict(range, s.t) == Verdict::Ok;
        if series.iter().all(|s| s.samples.iter().all(inside)) {
            return None;
        }
        let mut refused = Refused::default();
        let kept = series
            .iter()
            .map(|s| {
                s.samples
                    .iter()
                    .filter(|x| {
                        let v = Bounds::verdict(range, x.t);
                        refused.count(v);
                        v == Verdict::Ok
                    })
                    .copied()
                    .collect()
            })
            .collect();
        refused.publish();
        Some((kept, refused))
    }
}

#[cfg(test)]
mod tests {
    use ocelli_model::Labels;

    use super::*;

    fn series(ts: &[i64]) -> DecodedSeries {
        DecodedSeries {
            labels: Labels::from_pairs([("__name__", "x")]).unwrap(),
            samples: ts.iter().map(|&t| Sample::new(t, 1.0)).collect(),
        }
    }

    #[test]
    fn samples_outside_the_bounds_are_taken_out_and_counted() {
        let b = Bounds { retention_ms: 1000, max_future_ms: 100 };
        let now = 10_000;
        let mut v = vec![series(&[8_999, 9_000, 10_000, 10_100, 10_101]), series(&[20_000])];
        let r = b.filter(&mut v, now);
        assert_eq!(r, Refused { too_old: 1, too_new: 2 });
        assert_eq!(v.len(), 1, "a series left with no sample is removed");
        let kept: Vec<i64> = v[0].samples.iter().map(|s| s.t).collect();
        assert_eq!(kept, [9_000, 10_000, 10_100], "the bounds themselves are inside");
        assert_eq!(
            r.message(&b, 3).unwrap(),
            "partial write: 3 samples refused (1 older than the retention (1s), 2 more than \
             100ms in the future); the other 3 samples were stored"
        );
    }

    #[test]
    fn a_batch_inside_the_bounds_is_untouched() {
        let b = Bounds::default();
        let now = 1_700_000_000_000;
        let mut v = vec![series(&[now - 60_000, now, now + 60_000])];
        let before = v.clone();
        assert_eq!(b.filter(&mut v, now), Refused::default());
        assert_eq!(v, before);
        assert_eq!(Refused::default().message(&b, 3), None);
        let raw_labels = [(&b"__name__"[..], &b"x"[..])];
        let samples = [Sample::new(now, 1.0)];
        let raw = [RawSeries { labels: &raw_labels, samples: &samples }];
        assert!(b.filter_raw(&raw, now).is_none());
    }

    #[test]
    fn raw_series_keep_their_order_and_inside_samples() {
        let b = Bounds { retention_ms: 1000, max_future_ms: 0 };
        let raw_labels = [(&b"__name__"[..], &b"x"[..])];
        let a = [Sample::new(100, 1.0), Sample::new(5_000, 2.0)];
        let c = [Sample::new(5_001, 3.0)];
        let raw = [
            RawSeries { labels: &raw_labels, samples: &a },
            RawSeries { labels: &raw_labels, samples: &c },
        ];
        let (kept, refused) = b.filter_raw(&raw, 5_000).unwrap();
        assert_eq!(refused, Refused { too_old: 1, too_new: 1 });
        assert_eq!(kept, vec![vec![Sample::new(5_000, 2.0)], vec![]]);
    }
}
