//! The query role's storage: every selection is a remote_read (`POST /api/v1/read`, `SAMPLES`)
//! sent to every store at once, and the answers are merged, so PromQL over all collectors gives
//! what one server holding all the data would.
//!
//! Merging, per selection:
//! 1. series with the same labels from different stores are one series: their samples are
//!    united by timestamp (a shard that moved from one collector to another left the older
//!    samples of its agents on the first and the newer on the second; a batch delivered twice
//!    around the move is on both, with the same values);
//! 2. with a replica label set (`replica_label`), it is dropped, and series equal without it
//!    are HA replicas of one another: per series the samples of one replica are used until it
//!    has a gap longer than `dedup_gap`, then those of the replica that goes on first, as
//!    Thanos Query does.
//!
//! Any store failing fails the query, with the store named: a partial answer would be a wrong
//! one that looks right.

use std::collections::BTreeMap;
use std::time::Duration;

use ocelli_model::{Labels, Matcher, Sample};
use ocelli_wire::remote_read::{self, ReadQuery};

use ocelli_http::client::{Tls, Url, post_reading_with};

/// The largest answer read from one store (after it, the query fails with a message).
const MAX_ANSWER: usize = 1 << 30;

/// The stores and how to merge them.
#[derive(Clone, Debug)]
pub struct Fanout {
    pub stores: Vec<Url>,
    /// For `https://` stores: their CA (`store_ca_file`), else Mozilla's roots.
    pub tls: Tls,
    /// The bearer token sent to the stores (`store_token_file`).
    pub token: Option<String>,
    pub replica_label: Option<String>,
    pub dedup_gap_ms: i64,
    pub timeout: Duration,
}

impl Fanout {
    /// Reads every store and merges (blocking; from the blocking pool).
    pub fn select(
        &self,
        handle: &tokio::runtime::Handle,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
        handle.block_on(self.read(matchers, mint, maxt))
    }

    async fn read(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
        let q = ReadQuery { start_ms: mint, end_ms: maxt, matchers: matchers.to_vec() };
        let body = remote_read::encode_request(std::slice::from_ref(&q))
            .map_err(|e| format!("encoding the remote_read request: {e}"))?;
        let calls = self.stores.iter().map(|store| {
            read_one(store, body.clone(), self.timeout, self.tls.clone(), self.token.as_deref())
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut all = Vec::new();
        for a in answers {
            all.push(a?);
        }
        Ok(merge(all, self.replica_label.as_deref(), self.dedup_gap_ms))
    }
}

async fn read_one(
    store: &Url,
    body: Vec<u8>,
    timeout: Duration,
    tls: Tls,
    token: Option<&str>,
) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
    let url = store.join("/api/v1/read");
    let mut headers = vec![
        ("content-encoding", "snappy".to_string()),
        ("x-prometheus-remote-read-version", "0.1.0".to_string()),
    ];
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    let (_, answer) =
        post_reading_with(&url, "application/x-protobuf", &headers, body, timeout, MAX_ANSWER, tls)
            .await
            .map_err(|f| format!("store {}: {}", store.origin(), f.message))?;
    let limits = ocelli_wire::remote_write::Limits {
        max_body_bytes: MAX_ANSWER,
        max_decompressed_bytes: 4 * MAX_ANSWER,
    };
    let mut results = remote_read::decode_response(&answer, &limits)
        .map_err(|e| format!("store {}: {e}", store.origin()))?;
    Ok(results.pop().unwrap_or_default())
}

/// Merges the stores' answers (each a list of series): see the module doc.
pub fn merge(
    answers: Vec<Vec<(Labels, Vec<Sample>)>>,
    replica_label: Option<&str>,
    gap_ms: i64,
) -> Vec<(Labels, Vec<Sample>)> {
    // 1. same labels: union by timestamp (the first store's value wins a tie)
    let mut united: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for answer in answers {
        for (labels, samples) in answer {
            match united.entry(labels) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(samples);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let merged = union(e.get(), &samples);
                    *e.get_mut() = merged;
                }
            }
        }
    }
    let Some(replica) = replica_label else { return united.into_iter().collect() };
    // 2. replicas: group by the labels without the replica label
    let mut groups: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
    for (labels, samples) in united {
        let key = if labels.get(replica).is_some() {
            Labels::from_pairs(
                labels
                    .iter()
                    .filter(|l| l.name != replica)
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            )
            .unwrap_or(labels)
        } else {
            labels
        };
        groups.entry(key).or_default().push(samples);
    }
    groups
        .into_iter()
        .map(|(labels, replicas)| {
            let samples = if replicas.len() == 1 {
                replicas.into_iter().next().unwrap_or_default()
            } else {
                dedup(&replicas, gap_ms)
            };
            (labels, samples)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// Two sorted sample lists united by timestamp; `a`'s value wins a tie.
fn union(a: &[Sample], b: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].t.cmp(&b[j].t) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Replicas of one series (each sorted by time) made into one: follow one replica while its
/// next sample comes within `gap_ms` of the last one taken; otherwise switch to the replica
/// whose next sample (after the last taken) comes first.
fn dedup(replicas: &[Vec<Sample>], gap_ms: i64) -> Vec<Sample> {
    let mut pos = vec![0usize; replicas.len()];
    let mut out: Vec<Sample> = Vec::new();
    let mut cur: Option<usize> = None;
    loop {
        let last = out.last().map(|s| s.t);
        // skip, in every replica, what is not after the last sample taken
        for (r, p) in pos.iter_mut().enumerate() {
            while *p < replicas[r].len() && last.is_some_and(|t| replicas[r][*p].t <= t) {
                *p += 1;
            }
        }
        let next_of = |r: usize| replicas[r].get(pos[r]);
        let stay = cur
            .and_then(|c| next_of(c).filter(|s| last.is_none_or(|t| s.t - t <= gap_ms)).map(|_| c));
        let pick = stay.or_else(|| {
            (0..replicas.len())
                .filter(|&r| next_of(r).is_some())
                .min_by_key(|&r| (next_of(r).map(|s| s.t), r))
        });
        let Some(r) = pick else { break };
        let Some(&s) = next_of(r) else { break };
        out.push(s);
        pos[r] += 1;
        cur = Some(r);
    }
    out
}

/// The query engine over other servers (the query role): every selection is read from all
/// stores and merged ([`Fanout::select`]); a query reads at most `max_samples` samples, and
/// past that fails with a limit error (the API's 422), as over local storage.
pub struct FanoutStorage<'a> {
    pub fanout: &'a Fanout,
    pub handle: tokio::runtime::Handle,
    pub max_samples: usize,
}

impl std::fmt::Debug for FanoutStorage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutStorage")
            .field("max_samples", &self.max_samples)
            .finish_non_exhaustive()
    }
}

impl ocelli_promql::Storage for FanoutStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ocelli_promql::StorageError> {
        let v = self.fanout.select(&self.handle, matchers, mint, maxt)?;
        let n: usize = v.iter().map(|(_, s)| s.len()).sum();
        if n > self.max_samples {
            return Err(ocelli_promql::StorageError::Limit(format!(
                "query processing would load too many samples into memory: {n} from the stores, over the limit of {}",
                self.max_samples
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn a_series_split_over_stores_is_united() {
        let a = vec![(l(&[("__name__", "up")]), s(&[(1, 1.0), (2, 1.0), (3, 1.0)]))];
        let b = vec![
            (l(&[("__name__", "up")]), s(&[(3, 1.0), (4, 0.0)])),
            (l(&[("__name__", "other")]), s(&[(1, 5.0)])),
        ];
        let m = merge(vec![a, b], None, 0);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].1, s(&[(1, 1.0), (2, 1.0), (3, 1.0), (4, 0.0)]));
        assert_eq!(m[0].1, s(&[(1, 5.0)]));
    }

    #[test]
    fn replicas_are_deduplicated_switching_only_at_gaps() {
        let ra = l(&[("__name__", "x"), ("replica", "a")]);
        let rb = l(&[("__name__", "x"), ("replica", "b")]);
        // a scrapes at 0,10,20, then has a gap until 60; b is offset by 3 s
        let a = vec![(ra, s(&[(0, 1.0), (10, 1.0), (20, 1.0), (60, 1.0), (70, 1.0)]))];
        let b = vec![(
            rb,
            s(&[(3, 2.0), (13, 2.0), (23, 2.0), (33, 2.0), (43, 2.0), (53, 2.0), (63, 2.0)]),
        )];
        let m = merge(vec![a, b], Some("replica"), 15);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, l(&[("__name__", "x")]));
        // a until its gap, then b, which is followed until its own end, then a again
        assert_eq!(
            m[0].1,
            s(&[
                (0, 1.0),
                (10, 1.0),
                (20, 1.0),
                (23, 2.0),
                (33, 2.0),
                (43, 2.0),
                (53, 2.0),
                (63, 2.0),
                (70, 1.0)
            ])
        );
        // without the replica label they stay two series
        let a = vec![(l(&[("replica", "a")]), s(&[(0, 1.0)]))];
        let b = vec![(l(&[("replica", "b")]), s(&[(0, 1.0)]))];
        assert_eq!(merge(vec![a, b], None, 15).len(), 2);
    }
}
