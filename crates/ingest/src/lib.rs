//! Ingest: how a write request becomes stored samples, shared by the server's ingest endpoints
//! and the collector role's AMQP consumers.
//!
//! - [`append`]: decode-and-append. A request is decoded whole before anything is stored and
//!   appended as one all-or-nothing batch, through ingest aggregation; a malformed one stores
//!   nothing and is a `BadData` error naming what is wrong.
//! - [`bounds`]: the time range a sample must fall in (retention, future bound); samples
//!   outside it are left out of the batch and counted.
//! - [`aggregate`]: ingest aggregation (`[[aggregation]]` rules), which keeps per-interval
//!   aggregates of matching series instead of, or beside, their raw samples.
//!
//! Architecture invariant: no HTTP routing and no knowledge of where a body came from; the
//! callers read bodies (under their size limits) and answer.

pub mod aggregate;
pub mod append;
pub mod bounds;
