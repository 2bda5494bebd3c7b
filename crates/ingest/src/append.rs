//! Decode-and-append: remote_write bodies ([`store_remote_write`]) and already decoded series
//! ([`store_decoded`]) appended as one all-or-nothing batch through ingest aggregation, after
//! the samples outside the time [`Bounds`] have been taken out; and the hook run after every
//! write ([`set_after_write`]).

use ocelli_http::{Error, Result};
use ocelli_model::time::now_ms;
use ocelli_model::{Label, Labels, RawLabel};
use ocelli_tsdb::{Db, SeriesSamples};
use ocelli_wire::remote_write::DecodedSeries;

use crate::aggregate::Aggregator;
use crate::bounds::{Bounds, Refused};

/// Run on the blocking thread that has just appended a write request (any ingest format, and
/// the collector's AMQP deliveries); the binary sets it to hand the memory that thread freed
/// back to the system, since the allocator is the binary's choice.
static AFTER_WRITE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets the hook run after each write request (once; later calls are ignored). It runs on
/// every request, so it must be cheap or limit itself.
pub fn set_after_write(f: fn()) {
    let _ = AFTER_WRITE.set(f);
}

fn after_write() {
    if let Some(f) = AFTER_WRITE.get() {
        f();
    }
}

/// What one write stored and what it left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Samples stored.
    pub samples: usize,
    /// Samples left out for being outside the time bounds.
    pub refused: Refused,
    /// Native histogram samples the request carried (stored as classic series).
    pub histograms: usize,
    /// Exemplars the request carried.
    pub exemplars: usize,
}

impl Written {
    /// `Ok` when nothing was refused, else a `BadData` error that says what was stored and what
    /// was not: the answer Prometheus gives a remote write with out-of-bounds samples.
    pub fn into_result(self, bounds: &Bounds) -> Result<Written> {
        match self.refused.message(bounds, self.samples) {
            None => Ok(self),
            Some(msg) => Err(Error::BadData(msg)),
        }
    }
}

/// Labels the server sets on every series of a write, overwriting what the client sent: a
/// namespace-scoped credential's `ns`, and an agent credential's identity labels. This is how
/// a write of one namespace can never land in another, whatever its series claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamp(Vec<Label>);

impl Stamp {
    /// The labels to set (names are label names the caller has checked; empty values are
    /// left out).
    pub fn new<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Stamp {
        let mut v: Vec<Label> = labels
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| Label::new(n.clone(), v.clone()))
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.name == b.name);
        Stamp(v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `labels` with the stamp's labels set.
    pub fn apply(&self, labels: Labels) -> Labels {
        if self.0.is_empty() {
            return labels;
        }
        let mut v: Vec<Label> = labels
            .into_vec()
            .into_iter()
            .filter(|l| self.0.binary_search_by(|s| s.name.cmp(&l.name)).is_err())
            .collect();
        v.extend(self.0.iter().cloned());
        v.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Labels::from_sorted(v)
    }

    /// Appends to `out` raw labels (sorted by name, as decoders give them) with the stamp's
    /// set, still sorted: the zero-copy write path stamps without building owned label sets.
    pub fn apply_raw<'a>(&'a self, labels: &[RawLabel<'a>], out: &mut Vec<RawLabel<'a>>) {
        let mut stamp = self.0.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())).peekable();
        for &(name, value) in labels {
            while let Some(&s) = stamp.peek() {
                if s.0 < name {
                    out.push(s);
                    stamp.next();
                } else {
                    break;
                }
            }
            match stamp.peek() {
                // the client's value of a stamped name is replaced
                Some(&s) if s.0 == name => {
                    out.push(s);
                    stamp.next();
                }
                _ => out.push((name, value)),
            }
        }
        out.extend(stamp);
    }

    /// Every series of `series` stamped.
    pub fn apply_all(&self, series: &mut [DecodedSeries]) {
        if self.0.is_empty() {
            return;
        }
        for s in series {
            s.labels = self.apply(std::mem::take(&mut s.labels));
        }
    }
}

/// Appends decoded series as one all-or-nothing batch, through ingest aggregation, without the
/// samples outside `bounds`, with `stamp`'s labels set on each. Blocking.
pub fn store_decoded(
    db: &Db,
    aggregator: &Aggregator,
    bounds: &Bounds,
    stamp: &Stamp,
    mut series: Vec<DecodedSeries>,
) -> Result<Written> {
    stamp.apply_all(&mut series);
    let res = store_decoded_at(db, aggregator, bounds, series, now_ms());
    after_write();
    res
}

fn store_decoded_at(
    db: &Db,
    aggregator: &Aggregator,
    bounds: &Bounds,
    mut series: Vec<DecodedSeries>,
    now: i64,
) -> Result<Written> {
    let refused = bounds.filter(&mut series, now);
    let samples = series.iter().map(|s| s.samples.len()).sum();
    let batch: Vec<SeriesSamples> = series
        .into_iter()
        .map(|s| SeriesSamples { labels: s.labels, samples: s.samples })
        .collect();
    aggregator.append(db, batch, now).map(|()| Written { samples, refused, ..Written::default() })
}

/// Decodes a remote_write 1.0 body (snappy, protobuf) and appends it whole, through ingest
/// aggregation, without the samples outside `bounds`; a malformed body is a `BadData` error
/// naming what is wrong, and stores nothing. Native histograms are stored as classic series in
/// the same batch. Shared by `POST /api/v1/write` and the collector role's AMQP consumers.
/// Blocking. The request's metadata and exemplars go to `extras` once it is stored.
pub fn store_remote_write(
    db: &Db,
    aggregator: &Aggregator,
    limits: &ocelli_wire::remote_write::Limits,
    bounds: &Bounds,
    stamp: &Stamp,
    body: &[u8],
    extras: &mut dyn FnMut(&[ocelli_wire::exposition::Metadata], &[ocelli_wire::Exemplar]),
) -> Result<Written> {
    use ocelli_wire::remote_write as rw;
    // One decompression buffer per blocking thread: a fresh one per request would have
    // the kernel zero new pages every time (measured: 4% of ingest CPU). Buffers grown
    // past `KEEP` by a rare large request are not kept.
    const KEEP: usize = 8 << 20;
    thread_local! {
        static PROTO: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PROTO.with_borrow_mut(|proto| {
        let bad = |e: ocelli_wire::Error| Error::BadData(e.to_string());
        let res = rw::decompress_into(body, limits, proto).map_err(bad).and_then(|()| {
            let req = rw::decode_raw_with_limits(proto, limits).map_err(bad)?;
            let now = now_ms();
            let mut written = Written {
                histograms: req.histograms(),
                exemplars: req.exemplars().len(),
                ..Written::default()
            };
            if !req.histogram_series().is_empty() {
                // the rare request with native histograms takes the owned path, so that its
                // float and histogram series are still one batch
                let mut series = Vec::with_capacity(req.series().len());
                for (index, s) in req.series().enumerate() {
                    if s.samples.is_empty() {
                        continue;
                    }
                    let labels = ocelli_model::Labels::from_raw(s.labels).map_err(|source| {
                        bad(ocelli_wire::Error::InvalidSeries { index, source })
                    })?;
                    series.push(DecodedSeries { labels, samples: s.samples.to_vec() });
                }
                series.extend(req.histogram_series().iter().cloned());
                stamp.apply_all(&mut series);
                let w = store_decoded_at(db, aggregator, bounds, series, now)?;
                extras(req.metadata(), req.exemplars());
                return Ok(Written { samples: w.samples, refused: w.refused, ..written });
            }
            let mut series: Vec<_> = req.series().collect();
            let kept;
            if let Some((k, refused)) = bounds.filter_raw(&series, now) {
                kept = k;
                written.refused = refused;
                for (s, samples) in series.iter_mut().zip(&kept) {
                    s.samples = samples;
                }
                series.retain(|s| !s.samples.is_empty());
            }
            written.samples = series.iter().map(|s| s.samples.len()).sum();
            // a stamped write: each series' raw labels with the stamp's set, in one buffer
            let mut stamped: Vec<RawLabel<'_>> = Vec::new();
            let mut ends = Vec::new();
            if !stamp.is_empty() {
                let pairs: usize = series.iter().map(|s| s.labels.len()).sum();
                stamped.reserve(pairs + series.len() * stamp.0.len());
                ends.reserve(series.len());
                for s in &series {
                    stamp.apply_raw(s.labels, &mut stamped);
                    ends.push(stamped.len());
                }
                let mut start = 0;
                for (s, &end) in series.iter_mut().zip(&ends) {
                    s.labels = &stamped[start..end];
                    start = end;
                }
            }
            aggregator.append_raw(db, &series, now).map_err(|e| match e {
                // the same words as the decoder's, which names series the same way
                ocelli_tsdb::Error::InvalidLabels { index, source } => {
                    bad(ocelli_wire::Error::InvalidSeries { index, source })
                }
                e => e.into(),
            })?;
            extras(req.metadata(), req.exemplars());
            Ok(written)
        });
        if proto.capacity() > KEEP {
            *proto = Vec::new();
        }
        after_write();
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_stamp_overwrites_what_the_client_claims() {
        let mine: BTreeMap<String, String> =
            [("ns".to_string(), "a".to_string()), ("vm_id".into(), "v1".into())].into();
        let stamp = Stamp::new(&mine);
        let claimed = Labels::from_pairs([("__name__", "up"), ("ns", "b"), ("job", "x")]).unwrap();
        let got = stamp.apply(claimed);
        assert_eq!(
            got,
            Labels::from_pairs([("__name__", "up"), ("ns", "a"), ("job", "x"), ("vm_id", "v1")])
                .unwrap()
        );
        let plain = Labels::from_pairs([("__name__", "up")]).unwrap();
        assert_eq!(Stamp::default().apply(plain.clone()), plain);
    }

    #[test]
    fn the_raw_stamp_gives_the_owned_stamps_labels() {
        let mine: BTreeMap<String, String> =
            [("ns".to_string(), "a".to_string()), ("vm_id".into(), "v1".into())].into();
        let stamp = Stamp::new(&mine);
        let cases: [&[(&str, &str)]; 5] = [
            &[("__name__", "up"), ("job", "x"), ("ns", "b")],
            &[("__name__", "up")],
            &[("__name__", "m"), ("a", "1"), ("ns", "c"), ("vm_id", "other"), ("zone", "z")],
            &[("__name__", "m"), ("zzz", "1")],
            &[("__name__", "m"), ("vm_id", "v0")],
        ];
        let mut out = Vec::new();
        for pairs in cases {
            let raw: Vec<RawLabel<'_>> =
                pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
            out.clear();
            stamp.apply_raw(&raw, &mut out);
            let owned = Labels::from_pairs(pairs.iter().copied()).unwrap();
            assert_eq!(Labels::from_raw(&out).unwrap(), stamp.apply(owned), "{pairs:?}");
        }
    }
}
