//! Label sets and series identity.
//!
//! A series is identified by its sorted label set, `__name__` included. [`Labels`] keeps its
//! pairs sorted by name with no duplicates and no empty values (Prometheus treats an empty
//! value as an absent label), so two equal sets are equal as vectors and hash the same.
//! [`SeriesId`] is a stable 64-bit hash of that canonical form: the same labels give the same
//! id in every process and every version, so it can be written to disk. It is a hash, so code
//! that stores series must still compare label sets on a hash match.

use std::fmt;

use crate::{Error, Result};

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label { name: name.into(), value: value.into() }
    }
}

/// A sorted label set with unique names and no empty values.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

/// A stable identifier of a label set: xxh3-64 of its canonical byte form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub u64);

impl Labels {
    /// Builds a label set from pairs in any order. Empty values are dropped; a repeated name
    /// is an error.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Labels>
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        v.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = v.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::DuplicateLabel(w[0].name.clone()));
        }
        Ok(Labels(v))
    }

    /// Builds from pairs already sorted by name, unique and non-empty (checked in debug builds).
    pub fn from_sorted(v: Vec<Label>) -> Labels {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name), "labels not sorted: {v:?}");
        debug_assert!(v.iter().all(|l| !l.value.is_empty()));
        Labels(v)
    }

    /// Checks names against Prometheus' rules and that `__name__` is present and valid.
    pub fn validate(&self) -> Result<()> {
        let mut has_name = false;
        for l in &self.0 {
            if l.name == METRIC_NAME {
                has_name = true;
                if !is_valid_metric_name(&l.value) {
                    return Err(Error::InvalidMetricName(l.value.clone()));
                }
            } else if !is_valid_label_name(&l.name) {
                return Err(Error::InvalidLabelName(l.name.clone()));
            }
        }
        if !has_name {
            return Err(Error::MissingMetricName);
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// The stable id of this label set.
    pub fn series_id(&self) -> SeriesId {
        hash_pairs(self.0.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())))
    }

    /// Builds a label set from raw pairs as a zero-copy decoder found them: sorted by name,
    /// empty values already dropped. Checks what [`Labels::validate`] checks, and that every
    /// name and value is UTF-8 and no name repeats.
    pub fn from_raw(pairs: &[RawLabel<'_>]) -> Result<Labels> {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 <= w[1].0), "raw labels not sorted");
        let mut v = Vec::with_capacity(pairs.len());
        for (i, &(name, value)) in pairs.iter().enumerate() {
            let lossy = || String::from_utf8_lossy(name).into_owned();
            if i > 0 && pairs[i - 1].0 == name {
                return Err(Error::DuplicateLabel(lossy()));
            }
            let Ok(name) = std::str::from_utf8(name) else {
                return Err(Error::InvalidLabelName(lossy()));
            };
            let Ok(value) = std::str::from_utf8(value) else {
                return Err(Error::InvalidUtf8Value(name.to_string()));
            };
            if !value.is_empty() {
                v.push(Label::new(name, value));
            }
        }
        let labels = Labels(v);
        labels.validate()?;
        Ok(labels)
    }
}

/// One label pair as a zero-copy decoder found it: name and value bytes, not yet checked.
pub type RawLabel<'a> = (&'a [u8], &'a [u8]);

/// A series as a zero-copy decoder found it: raw labels sorted by name with empty values
/// dropped, and its samples. [`Labels::from_raw`] validates the labels; [`raw_series_id`] hashes
/// them as [`Labels::series_id`] would hash the validated set, so storage can find a series it
/// already has without building a [`Labels`].
#[derive(Clone, Copy, Debug)]
pub struct RawSeries<'a> {
    pub labels: &'a [RawLabel<'a>],
    pub samples: &'a [crate::Sample],
}

/// The [`SeriesId`] that `Labels::from_raw(pairs)` would have, without validating.
pub fn raw_series_id(pairs: &[RawLabel<'_>]) -> SeriesId {
    hash_pairs(pairs.iter().copied())
}

/// xxh3-64 of `name 0xff value 0xff` for each pair. One-shot hashing of the canonical bytes is
/// several times faster than feeding the streaming hasher piece by piece, and gives the same id.
fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> SeriesId {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        for (name, value) in pairs {
            buf.extend_from_slice(name);
            buf.push(0xff);
            buf.extend_from_slice(value);
            buf.push(0xff);
        }
        SeriesId(xxhash_rust::xxh3::xxh3_64(buf))
    })
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prometheus' text form: `name{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Incremental builder for a label set, for decoders that see pairs one at a time.
#[derive(Debug, Default)]
pub struct LabelsBuilder(Vec<(String, String)>);

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.push((name.into(), value.into()));
        self
    }

    pub fn build(self) -> Result<Labels> {
        Labels::from_pairs(self.0)
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_empty_dropped() {
        let l =
            Labels::from_pairs([("b", "2"), ("__name__", "up"), ("a", "1"), ("c", "")]).unwrap();
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "a", "b"]);
        assert_eq!(l.to_string(), r#"up{a="1", b="2"}"#);
        assert!(matches!(
            Labels::from_pairs([("a", "1"), ("a", "2")]),
            Err(Error::DuplicateLabel(n)) if n == "a"
        ));
    }

    #[test]
    fn series_id_is_stable_and_order_independent() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]).unwrap();
        let b = Labels::from_pairs([("job", "x"), ("__name__", "up")]).unwrap();
        assert_eq!(a.series_id(), b.series_id());
        // pinned: changing the hash would change ids written to disk
        assert_eq!(
            a.series_id(),
            Labels::from_pairs([("__name__", "up"), ("job", "x")]).unwrap().series_id()
        );
        let c = Labels::from_pairs([("__name__", "upj"), ("ob", "x")]).unwrap();
        assert_ne!(a.series_id(), c.series_id());
    }

    #[test]
    fn from_raw_validates_and_hashes_like_labels() {
        let raw: &[RawLabel<'_>] = &[(b"__name__", b"up"), (b"job", b"x")];
        let l = Labels::from_raw(raw).unwrap();
        assert_eq!(l, Labels::from_pairs([("job", "x"), ("__name__", "up")]).unwrap());
        assert_eq!(raw_series_id(raw), l.series_id());
        let err = |raw: &[RawLabel<'_>]| Labels::from_raw(raw).unwrap_err().to_string();
        assert_eq!(
            err(&[(b"__name__", b"up"), (b"a", b"1"), (b"a", b"2")]),
            r#"duplicate label name "a""#
        );
        assert_eq!(
            err(&[(b"__name__", b"up"), (b"a\xff", b"1")]),
            "invalid label name \"a\u{fffd}\""
        );
        assert_eq!(
            err(&[(b"__name__", b"up"), (b"a", b"\xff")]),
            r#"value of label "a" is not valid UTF-8"#
        );
        assert_eq!(err(&[(b"__name__", b"1up")]), r#"invalid metric name "1up""#);
        assert_eq!(err(&[(b"job", b"x")]), "label set has no __name__ label");
    }

    #[test]
    fn names() {
        assert!(is_valid_metric_name("node_cpu:rate5m"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name(""));
        let l = Labels::from_pairs([("job", "x")]).unwrap();
        assert!(matches!(l.validate(), Err(Error::MissingMetricName)));
    }
}
