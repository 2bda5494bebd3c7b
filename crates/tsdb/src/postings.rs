//! Label matchers evaluated over an inverted index, the same way for the head and for blocks.
//!
//! An index maps each label pair to the set of series (a roaring bitmap of series numbers).
//! Matchers that cannot match an empty value narrow the set by intersection; matchers that do
//! match an empty value (`foo=""`, `foo!="x"`, `foo=~".*"`) select series lacking the label
//! too, so they subtract the series whose value fails them instead. With only such matchers
//! the selection starts from all series.

use ocelli_model::{MatchOp, Matcher};
use roaring::RoaringBitmap;

/// What the matcher algebra needs from an index.
pub(crate) trait IndexReader {
    /// Series having `name="value"`.
    fn postings(&self, name: &str, value: &str) -> RoaringBitmap;
    /// Union of the postings of every value of `name` for which `pred` holds.
    fn union_where(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> RoaringBitmap;
    /// Every series.
    fn all(&self) -> RoaringBitmap;
}

fn matching(ix: &impl IndexReader, m: &Matcher) -> RoaringBitmap {
    match (m.op, m.set_matches()) {
        (MatchOp::Equal, _) => ix.postings(&m.name, &m.value),
        (MatchOp::RegexMatch, Some(values)) => {
            values.iter().fold(RoaringBitmap::new(), |acc, v| acc | ix.postings(&m.name, v))
        }
        _ => ix.union_where(&m.name, &|v| m.matches(v)),
    }
}

/// The series selected by all `matchers` (an empty list selects every series).
pub(crate) fn select(ix: &impl IndexReader, matchers: &[Matcher]) -> RoaringBitmap {
    let mut positive: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
    // equality first: usually the most selective, and cheap
    positive.sort_by_key(|m| m.op != MatchOp::Equal);
    let mut acc: Option<RoaringBitmap> = None;
    for m in positive {
        let p = matching(ix, m);
        acc = Some(match acc {
            Some(a) => a & p,
            None => p,
        });
        if acc.as_ref().is_some_and(|a| a.is_empty()) {
            return RoaringBitmap::new();
        }
    }
    let mut acc = acc.unwrap_or_else(|| ix.all());
    for m in matchers.iter().filter(|m| m.matches_empty()) {
        acc -= ix.union_where(&m.name, &|v| !m.matches(v));
    }
    acc
}
