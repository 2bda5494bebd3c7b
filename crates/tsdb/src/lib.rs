//! Ocelli's embedded time-series storage engine.
//!
//! [`Db`] owns a data directory: a write-ahead log ([`wal`]), an in-memory head of appendable
//! compressed chunks ([`head`]), immutable time-partitioned blocks on disk ([`block`], with a
//! roaring-bitmap inverted [`index`] and columnar compressed [`chunkenc`] chunks), compaction,
//! downsampling into rollups of per-window aggregates, and retention ([`db`]). It accepts samples at any timestamp (in order, out of order, old),
//! keeps the last written value per series and timestamp, and keeps Prometheus stale markers.
//!
//! The crate is synchronous and knows nothing of HTTP, PromQL or wire formats: callers hand it
//! [`ocelli_model::Labels`] and [`ocelli_model::Sample`]s and get the same back. Everything it
//! writes is specified in `docs/format/`.

mod block;
pub mod chunkenc;
mod db;
mod encoding;
mod error;
mod filenames;
mod head;
mod index;
mod postings;
mod record;
mod wal;

pub use block::{BlockMeta, FileMeta};
pub use db::{
    AppendObserver, Db, Limits, OpenReport, Options, ROLLUP_SPAN_MS, Rollup, RollupStats,
    SeriesSamples, Stats, Window, set_after_maintenance,
};
pub use error::{Error, Result};
pub use wal::{FsyncPolicy, ReplayReport};
