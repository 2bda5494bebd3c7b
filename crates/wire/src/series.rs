//! Gathering decoded samples into series by label set, for the decoders whose bodies may spread
//! one series' samples over many lines or data points (exposition text, JSON lines, OTLP).
//!
//! [`SeriesSet`] keeps series in order of first appearance and samples in the order added; it
//! does not validate label sets (each decoder does that with its own error positions) and sets
//! no limits of its own: the callers count what they add against theirs, with [`labels_cost`]
//! and, for the formats whose output can outgrow their input, [`Limits`].

use std::collections::HashMap;
use std::mem::size_of;

use ocelli_model::{Label, Labels, Sample};

use crate::remote_write::DecodedSeries;

/// Series in order of first appearance, each with its samples in the order added.
#[derive(Debug, Default)]
pub(crate) struct SeriesSet {
    series: Vec<DecodedSeries>,
    index: HashMap<Labels, usize>,
}

impl SeriesSet {
    /// Adds samples to the series with these labels, creating it if it is new. Returns whether
    /// it was new.
    pub(crate) fn extend(
        &mut self,
        labels: Labels,
        samples: impl IntoIterator<Item = Sample>,
    ) -> bool {
        match self.index.get(&labels) {
            Some(&i) => {
                self.series[i].samples.extend(samples);
                false
            }
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push(DecodedSeries { labels, samples: samples.into_iter().collect() });
                true
            }
        }
    }

    /// Adds one sample; see [`SeriesSet::extend`].
    pub(crate) fn push(&mut self, labels: Labels, sample: Sample) -> bool {
        self.extend(labels, [sample])
    }

    pub(crate) fn into_vec(self) -> Vec<DecodedSeries> {
        self.series
    }
}

/// About the memory a label set takes: its strings and their headers. Decoders whose output can
/// outgrow their input (one tag set repeated for many fields or buckets) count it against a cap.
pub(crate) fn labels_cost(labels: &[Label]) -> usize {
    labels.iter().map(|l| l.name.len() + l.value.len() + size_of::<Label>()).sum()
}

/// A bucket bound or quantile as a label value: the shortest decimal form that reads back as
/// the same number (`0.005`, `1`, `1024`; never an exponent), `+Inf`, `-Inf` or `NaN`. Shared by
/// the decoders that turn histograms into classic `le` series (OTLP, remote_write 2.0).
pub(crate) fn float_label(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Display never uses an exponent and gives the shortest digits that round-trip
        format!("{v}")
    }
}

/// Size caps for a body whose decoded series can take far more memory than the body itself (the
/// line protocol repeats a tag set for every field, OTLP an attribute set for every bucket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest (already decompressed) body accepted, in bytes.
    pub max_body_bytes: usize,
    /// About the most memory the decoded series may take, in bytes: label strings and their
    /// headers once per new series (or tag set), plus each sample.
    pub max_decoded_bytes: usize,
}

impl Default for Limits {
    /// 64 MiB of body, 1 GiB decoded.
    fn default() -> Self {
        Limits { max_body_bytes: 64 << 20, max_decoded_bytes: 1 << 30 }
    }
}

/// Strategies and comparisons shared by the decoders' property tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod testing {
    use ocelli_model::{Labels, METRIC_NAME, Sample};
    use proptest::prelude::*;

    use crate::remote_write::DecodedSeries;

    /// Series named by `name` with up to three labels named by `label`, and one to five
    /// samples.
    pub(crate) fn arb_series(
        name: &'static str,
        label: &'static str,
        t: impl Strategy<Value = i64>,
        value: impl Strategy<Value = f64>,
    ) -> impl Strategy<Value = DecodedSeries> {
        let labels = prop::collection::btree_map(label, ".{1,8}", 0..4);
        let samples = prop::collection::vec((t, value), 1..6);
        (name, labels, samples).prop_map(|(name, mut labels, samples)| {
            labels.insert(METRIC_NAME.to_owned(), name);
            DecodedSeries {
                labels: Labels::from_pairs(labels).unwrap(),
                samples: samples.into_iter().map(|(t, v)| Sample::new(t, v)).collect(),
            }
        })
    }

    /// Whether two lists of series are the same, values compared by bits (so -0.0 and the
    /// stale marker count), except that with `any_nan` every NaN equals every other.
    pub(crate) fn same(got: &[DecodedSeries], want: &[DecodedSeries], any_nan: bool) -> bool {
        got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.labels == w.labels
                    && g.samples.len() == w.samples.len()
                    && g.samples.iter().zip(&w.samples).all(|(a, b)| {
                        a.bit_eq(b) || (any_nan && a.t == b.t && a.v.is_nan() && b.v.is_nan())
                    })
            })
    }
}
