//! Pure encode/decode of the wire formats Ocelli speaks: one module per protocol, starting with
//! Prometheus [`remote_write`] 1.0 (snappy block + protobuf), [`remote_write_v2`] (the 2.0
//! protocol's receiving side: content negotiation, symbol tables, native histograms converted
//! to classic series, metadata and exemplars) and [`remote_read`] (its samples response type),
//! the Influx line protocol
//! ([`influx`]), the Prometheus text [`exposition`] format, VictoriaMetrics' JSON-lines
//! import format ([`json`]) and OTLP/HTTP metrics ([`otlp`]).
//!
//! Every function here takes bytes and returns values (or values and returns bytes): no I/O, no
//! async, no HTTP. Headers and status codes belong to the server (remote_write 2.0's content
//! negotiation rules are here as plain functions of header values; the server reads the
//! headers); storing what was decoded belongs to the storage engine. Each decoder is a plain
//! `fn(&[u8], &Limits) -> Result<_>`, so it can be fuzzed alone, and each one caps the memory a
//! hostile body can make it allocate. Decoders are all-or-nothing: an error means no partial
//! result.
//!
//! Architecture invariant: this crate depends only on `ocelli-model` among our crates.

mod error;
pub mod exemplar;
pub mod exposition;
pub mod influx;
pub mod json;
pub mod otlp;
pub mod remote_read;
pub mod remote_write;
pub mod remote_write_v2;
mod series;
mod text;

pub use error::{Error, Result};
pub use exemplar::Exemplar;
