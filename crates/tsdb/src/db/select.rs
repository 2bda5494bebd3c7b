//! Selections: the sources' cursors merged in label order into series, and the samples of each
//! series read from its pieces (chunks of a block, a head series).
//!
//! The merge is sequential by nature, but reading is most of a large selection's cost (chunk
//! decoding: about half of `sum by (mode) (rate(cpu[5m]))` over 64k series, measured), and
//! series are independent. So a selection of at least [`PARALLEL_MIN_SERIES`] candidates is
//! read by a small pool of scoped threads: one thread merges and hands out batches of
//! at most [`BATCH`] planned series, workers read them, and the calling thread puts the batches back in
//! order and calls `f`, which is not `Send` and sees exactly the sequence a sequential read
//! gives: same series, same order, same samples, same limit errors at the same series. At
//! most [`IN_FLIGHT`] batches exist at once, so a slow consumer holds back the readers rather
//! than letting read series pile up. Smaller selections are read on the calling thread.
//!
//! No thread-pool crate: the pool lives for one selection (`std::thread::scope`), which is what
//! lets it borrow `f`'s thread's data, and ordered delivery is a few lines over `mpsc`.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock, mpsc};

use ocelli_model::{Labels, Sample};
use parking_lot::Mutex;

use super::{Limits, SourceCursor};
use crate::block::Block;
use crate::error::{Error, Result};
use crate::head::{Head, MemSeries, dedup_last};
use crate::index::ChunkRef;

/// Selections with fewer candidate series than this are read on the calling thread.
const PARALLEL_MIN_SERIES: usize = 64;
/// Series per batch handed to a reader, at most; smaller selections get batches of at least
/// [`MIN_BATCH`], about four per reader, so that the readers finish together.
const BATCH: usize = 64;
const MIN_BATCH: usize = 8;
/// Batches planned but not yet consumed, at most.
const IN_FLIGHT: usize = 16;
/// Readers at most, whatever the machine has.
const MAX_READERS: usize = 8;

/// Where some of a series' samples are.
pub(super) enum Piece {
    Block(Arc<Block>, Vec<ChunkRef>),
    Head(Arc<MemSeries>),
}

/// A series of the selection and its pieces, in source order.
struct Planned {
    labels: Labels,
    pieces: Vec<Piece>,
}

/// The sources' cursors merged in label order.
pub(super) struct Merge {
    cursors: Vec<SourceCursor>,
}

impl Merge {
    pub(super) fn new(cursors: Vec<SourceCursor>) -> Merge {
        Merge { cursors }
    }

    /// An upper bound on the series still to come.
    fn remaining(&self) -> usize {
        self.cursors.iter().map(SourceCursor::remaining).sum()
    }

    /// The next series in label order with its pieces from every source holding it.
    fn next(&mut self) -> Result<Option<Planned>> {
        // the first cursor at the smallest label set; any other at it comes later in
        // source order
        let mut first: Option<(usize, &Labels)> = None;
        for (i, c) in self.cursors.iter().enumerate() {
            if let Some(l) = c.peek()
                && first.is_none_or(|(_, m)| l < m)
            {
                first = Some((i, l));
            }
        }
        let Some((first, _)) = first else { return Ok(None) };
        let Some((labels, piece)) = self.cursors[first].take_piece()? else { return Ok(None) };
        let mut pieces = vec![piece];
        for c in &mut self.cursors[first + 1..] {
            if c.peek() != Some(&labels) {
                continue;
            }
            if let Some((_, p)) = c.take_piece()? {
                pieces.push(p);
            }
        }
        Ok(Some(Planned { labels, pieces }))
    }
}

/// A series' samples in `[mint, maxt]`: its pieces' samples in source order, sorted by time
/// with the last copy of a timestamp kept when more than one piece had any.
fn read(pieces: &[Piece], mint: i64, maxt: i64) -> Result<Vec<Sample>> {
    let mut got = Vec::new();
    let mut dirty = false;
    for p in pieces {
        let s = match p {
            Piece::Block(b, chunks) => b.read_chunks(chunks, mint, maxt)?,
            Piece::Head(s) => Head::samples(s, mint, maxt),
        };
        if s.is_empty() {
            continue;
        }
        if got.is_empty() {
            got = s;
        } else {
            dirty = true;
            got.extend(s);
        }
    }
    if dirty {
        got.sort_by_key(|s| s.t);
        dedup_last(&mut got);
    }
    Ok(got)
}

/// Counts series and samples handed to `f` against the limits.
struct Delivery<'f, R> {
    f: &'f mut dyn FnMut(Labels, usize, R) -> bool,
    limits: Limits,
    series: usize,
    samples: usize,
}

impl<R> Delivery<'_, R> {
    /// Hands over one series of `n` samples (0: none in range, skipped); `Ok(false)` when `f`
    /// wants no more.
    fn give(&mut self, labels: Labels, n: usize, mapped: Option<R>) -> Result<bool> {
        let Some(mapped) = mapped else { return Ok(true) };
        self.series += 1;
        self.samples += n;
        if self.series > self.limits.max_series {
            return Err(Error::LimitExceeded { what: "series", limit: self.limits.max_series });
        }
        if self.samples > self.limits.max_samples {
            return Err(Error::LimitExceeded { what: "samples", limit: self.limits.max_samples });
        }
        Ok((self.f)(labels, n, mapped))
    }
}

/// A series read and mapped: its labels, sample count and `map`'s result (`None` when it has
/// no sample in range).
type Mapped<R> = (Labels, usize, Option<R>);

/// A batch as a reader returns it: each series read and mapped, the planning error the batch
/// stands for, or the panic that stopped the reader.
type ReadBatch<R> = std::thread::Result<Result<Vec<Result<Mapped<R>>>>>;

/// Reads one planned series and maps its samples.
fn read_mapped<R>(
    p: Planned,
    mint: i64,
    maxt: i64,
    map: &(dyn Fn(Vec<Sample>) -> R + Sync),
) -> Result<Mapped<R>> {
    let got = read(&p.pieces, mint, maxt)?;
    let n = got.len();
    Ok((p.labels, n, if n == 0 { None } else { Some(map(got)) }))
}

/// Readers for a selection of `candidates` series: 0 means read on the calling thread.
fn readers(candidates: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if cores < 2 || candidates < PARALLEL_MIN_SERIES {
        return 0;
    }
    cores.min(MAX_READERS)
}

/// Runs the selection: every series of `merge` with samples in `[mint, maxt]`, in label order,
/// to `f` with its sample count and what `map` made of its samples, until `f` returns `false`.
/// `map` may run on other threads, `f` runs on this one. Past the limits, the series before
/// have been handed over and the call returns [`Error::LimitExceeded`].
pub(super) fn run<R: Send>(
    mut merge: Merge,
    mint: i64,
    maxt: i64,
    limits: Limits,
    map: &(dyn Fn(Vec<Sample>) -> R + Sync),
    f: &mut dyn FnMut(Labels, usize, R) -> bool,
) -> Result<()> {
    let mut out = Delivery { f, limits, series: 0, samples: 0 };
    let candidates = merge.remaining();
    let n = readers(candidates);
    if n == 0 {
        while let Some(p) = merge.next()? {
            let (labels, n, mapped) = read_mapped(p, mint, maxt, map)?;
            if !out.give(labels, n, mapped)? {
                return Ok(());
            }
        }
        return Ok(());
    }
    // a batch as planned, or the planning error that ends the selection
    let (work_tx, work_rx) = mpsc::sync_channel::<(usize, Result<Vec<Planned>>)>(IN_FLIGHT + 1);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = mpsc::channel::<(usize, ReadBatch<R>)>();
    // one ticket per batch that may exist; the consumer returns it when done with the batch
    let (ticket_tx, ticket_rx) = mpsc::sync_channel::<()>(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        let _ = ticket_tx.send(());
    }
    let batch_len = (candidates / (4 * n)).clamp(MIN_BATCH, BATCH);
    std::thread::scope(|scope| {
        // the planner
        scope.spawn(move || {
            for seq in 0.. {
                if ticket_rx.recv().is_err() {
                    return; // the consumer stopped
                }
                let mut batch = Vec::with_capacity(batch_len);
                let end = loop {
                    match merge.next() {
                        Ok(Some(p)) => {
                            batch.push(p);
                            if batch.len() == batch_len {
                                break None;
                            }
                        }
                        Ok(None) => break Some(Ok(())),
                        Err(e) => break Some(Err(e)),
                    }
                };
                match end {
                    None => {
                        if work_tx.send((seq, Ok(batch))).is_err() {
                            return;
                        }
                    }
                    Some(Ok(())) => {
                        if !batch.is_empty() {
                            let _ = work_tx.send((seq, Ok(batch)));
                        }
                        return;
                    }
                    Some(Err(e)) => {
                        // what was planned before the error is delivered before it
                        let _ = work_tx.send((seq, Ok(batch)));
                        let _ = work_tx.send((seq + 1, Err(e)));
                        return;
                    }
                }
            }
        });
        // the readers
        for _ in 0..n {
            let done_tx = done_tx.clone();
            let work_rx = &work_rx;
            scope.spawn(move || {
                loop {
                    let job = work_rx.lock().recv();
                    let Ok((seq, batch)) = job else { return };
                    // a panic (in `map`, say) goes to the consumer, which raises it again:
                    // a batch that never came would leave everyone waiting
                    let batch = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        batch.map(|b| {
                            b.into_iter().map(|p| read_mapped(p, mint, maxt, map)).collect()
                        })
                    }));
                    if done_tx.send((seq, batch)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        // the consumer, on the calling thread: batches back in order. It owns the ticket
        // sender and the results receiver, so that returning early drops them, which stops the
        // planner (no more tickets) and then the readers (no more work, nowhere to send).
        let (ticket_tx, done_rx) = (ticket_tx, done_rx);
        let mut waiting = BTreeMap::new();
        let mut next = 0usize;
        loop {
            while let Some(batch) = waiting.remove(&next) {
                let batch: ReadBatch<R> = batch;
                let batch = batch.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for series in batch? {
                    let (labels, n, mapped) = series?;
                    if !out.give(labels, n, mapped)? {
                        return Ok(());
                    }
                }
                next += 1;
                let _ = ticket_tx.send(());
            }
            match done_rx.recv() {
                Ok((seq, batch)) => {
                    waiting.insert(seq, batch);
                }
                // every reader has finished and everything they read was consumed
                Err(_) => return Ok(()),
            }
        }
    })
}
