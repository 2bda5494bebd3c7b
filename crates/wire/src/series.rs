//! Gathering decoded samples into series by label set, for the decoders whose bodies may spread
//! one series' samples over many lines or data points (exposition text, JSON lines, OTLP).
//!
//! [`SeriesSet`] keeps series in order of first appearance and samples in the order added; it
//! does not validate label sets (each decoder does that with its own error positions) and sets
//! no limits of its own: the callers count what they add against theirs.

use std::collections::HashMap;

use ocelli_model::{Labels, Sample};

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
