//! Ocelli's data model, shared by every other crate: label sets and series identity
//! ([`Labels`], [`SeriesId`]), samples and the Prometheus stale marker ([`Sample`],
//! [`STALE_NAN`], [`format_value`]), label matchers with Prometheus semantics ([`Matcher`]), and the rules for
//! valid metric and label names; [`time`] holds the clock, Prometheus durations, API times and calendar arithmetic, [`rollup`] the per-window aggregates of downsampled data, [`identity`] the rules of an
//! agent's multi-cloud identity.
//!
//! This crate does no I/O (reading the clock in [`time::now_ms`] aside) and knows no wire format or storage layout; it is the bottom of the
//! dependency graph.

mod error;
pub mod identity;
mod labels;
mod matcher;
pub mod rollup;
mod sample;
pub mod time;

pub use error::{Error, Result};
pub use labels::{
    Label, Labels, LabelsBuilder, METRIC_NAME, RawLabel, RawSeries, SeriesId, is_valid_label_name,
    is_valid_metric_name, raw_series_id,
};
pub use matcher::{MatchOp, Matcher};
pub use sample::{STALE_NAN, Sample, format_value, is_stale_nan, write_value};
