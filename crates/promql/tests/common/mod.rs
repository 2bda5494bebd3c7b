//! Shared by the engine's tests: selection over series held in memory.

use std::collections::BTreeMap;

use ocelli_model::{Labels, Matcher, Sample};

/// The series of `data` matching every matcher, with their samples in `[mint, maxt]`; series
/// left with no sample there are not returned (as storage does).
pub fn select(
    data: &BTreeMap<Labels, Vec<Sample>>,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(Labels, Vec<Sample>)> {
    data.iter()
        .filter(|(l, _)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
        .map(|(l, s)| {
            (l.clone(), s.iter().copied().filter(|x| (mint..=maxt).contains(&x.t)).collect())
        })
        .filter(|(_, s): &(Labels, Vec<Sample>)| !s.is_empty())
        .collect()
}
