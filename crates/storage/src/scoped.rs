//! Reads confined to one namespace: [`Scoped`], any PromQL [`Storage`] with the namespace's
//! matcher joined to every selection, and [`scope_matchers`] for the API's selections that do
//! not go through PromQL.

use ocelli_model::{Labels, Matcher, Sample};
use ocelli_promql::{Storage, StorageError};

/// Any [`Storage`] seen by a namespace-scoped reader: every selection gets the matcher
/// `ns="<namespace>"` joined to its own, so whatever the query (`or`, `absent`,
/// `label_replace`, subqueries, a regex on `ns`), it reads no series of another namespace.
/// This is where the tenancy boundary is held for PromQL, as prom-label-proxy holds it by
/// rewriting selectors, but below the parser, where no expression can get around it.
pub struct Scoped<'a> {
    pub inner: &'a dyn Storage,
    pub ns: Matcher,
}

impl std::fmt::Debug for Scoped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped").field("ns", &self.ns).finish_non_exhaustive()
    }
}

impl<'a> Scoped<'a> {
    /// Reads of `inner` limited to namespace `ns`.
    pub fn new(inner: &'a dyn Storage, ns: &str) -> Scoped<'a> {
        Scoped { inner, ns: Matcher::equal("ns", ns) }
    }

    fn with_ns(&self, matchers: &[Matcher]) -> Vec<Matcher> {
        scope_matchers(matchers, &self.ns)
    }
}

/// `matchers` and `ns` (the namespace's equality matcher), for the API's selections that do
/// not go through PromQL (series, labels, federation, remote_read).
pub fn scope_matchers(matchers: &[Matcher], ns: &Matcher) -> Vec<Matcher> {
    let mut v = Vec::with_capacity(matchers.len() + 1);
    v.extend_from_slice(matchers);
    v.push(ns.clone());
    v
}

impl Storage for Scoped<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, StorageError> {
        self.inner.select(&self.with_ns(matchers), mint, maxt)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> Result<(), StorageError> {
        self.inner.select_each(&self.with_ns(matchers), mint, maxt, f)
    }

    fn select_map_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        map: &(dyn Fn(Vec<Sample>) -> ocelli_promql::StepValues + Sync),
        f: &mut dyn FnMut(Labels, usize, ocelli_promql::StepValues) -> bool,
    ) -> Result<(), StorageError> {
        self.inner.select_map_each(&self.with_ns(matchers), mint, maxt, map, f)
    }

    fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        self.inner.rollup_resolutions(mint, maxt)
    }

    fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        f: &mut dyn FnMut(Labels, Vec<ocelli_tsdb::Window>) -> bool,
    ) -> Result<(), StorageError> {
        self.inner.select_windows_each(&self.with_ns(matchers), mint, maxt, res, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Storage that records the matchers it is asked for.
    struct Spy(parking_lot::Mutex<Vec<Vec<Matcher>>>);

    impl Storage for Spy {
        fn select(
            &self,
            matchers: &[Matcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<(Labels, Vec<Sample>)>, StorageError> {
            self.0.lock().push(matchers.to_vec());
            Ok(Vec::new())
        }
    }

    #[test]
    fn every_selection_gets_the_namespace() {
        let spy = Spy(parking_lot::Mutex::default());
        let s = Scoped::new(&spy, "a");
        let asked = [Matcher::equal("ns", "b")];
        s.select(&asked, 0, 1).unwrap();
        s.select_each(&[], 0, 1, &mut |_, _| true).unwrap();
        s.select_windows_each(&asked, 0, 1000, 100, &mut |_, _| true).unwrap();
        let seen = spy.0.lock();
        assert_eq!(seen.len(), 3);
        for m in seen.iter() {
            assert!(m.contains(&Matcher::equal("ns", "a")), "{m:?}");
        }
        // the client's own ns matcher stays: `ns="b"` and `ns="a"` together select nothing
        assert!(seen[0].contains(&Matcher::equal("ns", "b")));
    }
}
