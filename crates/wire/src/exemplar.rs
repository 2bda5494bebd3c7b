//! An exemplar as the ingest formats that carry them give it (remote_write 2.0, OTLP): the
//! series it belongs to, its own labels (a trace id, usually), a value and a time. Shared by
//! the decoders so that the server keeps every format's exemplars in one store.

use ocelli_model::Labels;

/// One exemplar of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The labels of the series the exemplar belongs to, `__name__` included.
    pub series: Labels,
    /// The exemplar's own labels (`trace_id`, `span_id`...); may be empty. Not a series: it has
    /// no `__name__`.
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}
