//! Decode-and-append: remote_write bodies ([`store_remote_write`]) and already decoded series
//! ([`store_decoded`]) appended as one all-or-nothing batch through ingest aggregation, and the
//! hook run after every write ([`set_after_write`]).

use ocelli_http::{Error, Result};
use ocelli_model::time::now_ms;
use ocelli_tsdb::{Db, SeriesSamples};
use ocelli_wire::remote_write::DecodedSeries;

use crate::aggregate::Aggregator;

/// Run on the blocking thread that has just appended a write request (any ingest format, and
/// the collector's AMQP deliveries); the binary sets it to hand the memory that thread freed
/// back to the system, since the allocator is the binary's choice.
static AFTER_WRITE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets the hook run after each write request (once; later calls are ignored). It runs on
/// every request, so it must be cheap or limit itself.
pub fn set_after_write(f: fn()) {
    let _ = AFTER_WRITE.set(f);
}

fn after_write() {
    if let Some(f) = AFTER_WRITE.get() {
        f();
    }
}

/// Appends decoded series as one all-or-nothing batch, through ingest aggregation. Blocking.
pub fn store_decoded(db: &Db, aggregator: &Aggregator, series: Vec<DecodedSeries>) -> Result<()> {
    let batch: Vec<SeriesSamples> = series
        .into_iter()
        .map(|s| SeriesSamples { labels: s.labels, samples: s.samples })
        .collect();
    let res = aggregator.append(db, batch, now_ms());
    after_write();
    res
}

/// Decodes a remote_write body (snappy, protobuf) and appends it whole, through ingest
/// aggregation; a malformed body is a `BadData` error naming what is wrong, and stores nothing.
/// Shared by `POST /api/v1/write` and the collector role's AMQP consumers. Blocking. Returns
/// the number of samples in the body.
pub fn store_remote_write(
    db: &Db,
    aggregator: &Aggregator,
    limits: &ocelli_wire::remote_write::Limits,
    body: &[u8],
) -> Result<usize> {
    use ocelli_wire::remote_write as rw;
    // One decompression buffer per blocking thread: a fresh one per request would have
    // the kernel zero new pages every time (measured: 4% of ingest CPU). Buffers grown
    // past `KEEP` by a rare large request are not kept.
    const KEEP: usize = 8 << 20;
    thread_local! {
        static PROTO: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    PROTO.with_borrow_mut(|proto| {
        let bad = |e: ocelli_wire::Error| Error::BadData(e.to_string());
        let res = rw::decompress_into(body, limits, proto).map_err(bad).and_then(|()| {
            let req = rw::decode_raw(proto).map_err(bad)?;
            let series: Vec<_> = req.series().collect();
            let samples = series.iter().map(|s| s.samples.len()).sum();
            aggregator.append_raw(db, &series, now_ms()).map(|()| samples).map_err(|e| match e {
                // the same words as the decoder's, which names series the same way
                ocelli_tsdb::Error::InvalidLabels { index, source } => {
                    bad(ocelli_wire::Error::InvalidSeries { index, source })
                }
                e => e.into(),
            })
        });
        if proto.capacity() > KEEP {
            *proto = Vec::new();
        }
        after_write();
        res
    })
}
