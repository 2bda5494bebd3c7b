//! Gorilla-style XOR float compression and the appendable [`HeadChunk`].
//!
//! This module owns: the XOR value coder (shared by the head chunk and by the sealed chunk's
//! `Gorilla` value codec), the head chunk's bucketed delta-of-delta timestamp coder, and the
//! head chunk itself with its allocation policy (grow by ~1/8, never double, so a series with
//! 720 samples wastes at most a few dozen bytes of capacity).
//!
//! It hands off sealing (re-encoding into the columnar on-disk layout) to `mod.rs`, which
//! decodes the head and calls `encode_chunk`. It deliberately does not store a sample count or
//! any index inside the byte stream: the count lives in the struct (and the WAL/block layer
//! owns persistence), which keeps the head format one contiguous bit stream.
//!
//! Hand-written: the semantics follow the Gorilla paper (Pelkonen et al., VLDB 2015) as used
//! by Prometheus, but no crate offers an appendable stream whose state fits in a few fields
//! and whose memory we control byte by byte.

use super::bstream::{BitReader, BitWriter, unzigzag, zigzag};
use super::{ChunkError, Result};

/// Sentinel for "no leading/trailing window yet".
const NO_WINDOW: u8 = 0xff;

/// Encoder state for the XOR value stream: previous bits and the current meaningful window.
#[derive(Clone, Copy, Debug)]
pub struct XorState {
    pub prev: u64,
    pub leading: u8,
    pub trailing: u8,
}

impl XorState {
    pub fn new(first: u64) -> Self {
        XorState { prev: first, leading: NO_WINDOW, trailing: 0 }
    }

    /// Append one value (not the first; that one is written raw as 64 bits).
    #[inline]
    pub fn write(&mut self, w: &mut BitWriter<'_>, v: u64) {
        let x = v ^ self.prev;
        self.prev = v;
        if x == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        // Leading zeros capped at 31 so they fit 5 bits.
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && lead >= self.leading && trail >= self.trailing {
            w.write_bit(false);
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = lead;
            self.trailing = trail;
            w.write_bit(true);
            let sig = 64 - u32::from(lead) - u32::from(trail);
            w.write_bits(u64::from(lead), 5);
            // sig is 1..=64; 64 is stored as 0 in 6 bits.
            w.write_bits(u64::from(sig & 63), 6);
            w.write_bits(x >> trail, sig);
        }
    }
}

/// Decoder state mirroring [`XorState`].
pub struct XorReader {
    prev: u64,
    leading: u32,
    sig: u32,
    have_window: bool,
}

impl XorReader {
    pub fn new(first: u64) -> Self {
        XorReader { prev: first, leading: 0, sig: 0, have_window: false }
    }

    #[inline]
    pub fn read(&mut self, r: &mut BitReader<'_>) -> Result<u64> {
        if !r.read_bit()? {
            return Ok(self.prev);
        }
        if r.read_bit()? {
            self.leading = r.read_bits(5)? as u32;
            let mut sig = r.read_bits(6)? as u32;
            if sig == 0 {
                sig = 64;
            }
            if self.leading + sig > 64 {
                return Err(ChunkError::BadField {
                    field: "xor window leading+significant bits",
                    value: u64::from(self.leading + sig),
                });
            }
            self.sig = sig;
            self.have_window = true;
        } else if !self.have_window {
            return Err(ChunkError::BadField { field: "xor reuse without window", value: 0 });
        }
        let bits = r.read_bits(self.sig)?;
        let trailing = 64 - self.leading - self.sig;
        self.prev ^= bits << trailing;
        Ok(self.prev)
    }
}

/// Encode a value column as a Gorilla XOR stream (first value raw, then XOR codes).
pub fn encode_values(vs: &[f64], out: &mut Vec<u8>) {
    let Some(first) = vs.first() else { return };
    let mut w = BitWriter::resume(out, 0);
    w.write_bits(first.to_bits(), 64);
    let mut st = XorState::new(first.to_bits());
    for v in &vs[1..] {
        st.write(&mut w, v.to_bits());
    }
}

/// Decode `n` values written by [`encode_values`].
pub fn decode_values(buf: &[u8], n: usize, vs: &mut Vec<f64>) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut r = BitReader::new(buf);
    let first = r.read_bits(64)?;
    vs.reserve(n.min(buf.len() * 8));
    vs.push(f64::from_bits(first));
    let mut x = XorReader::new(first);
    for _ in 1..n {
        vs.push(f64::from_bits(x.read(&mut r)?));
    }
    Ok(())
}

/// Head timestamp delta-of-delta buckets: (prefix bits, prefix length, payload bits).
/// `0` = dod 0; `10`+14; `110`+17; `1110`+20; `1111`+64 (like Prometheus' XOR chunk).
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

#[inline]
fn write_dod(w: &mut BitWriter<'_>, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, bits) in DOD_BUCKETS {
        let half = 1i64 << (bits - 1);
        if (-half..half).contains(&dod) {
            w.write_bits(prefix, plen);
            w.write_bits(dod as u64, bits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

#[inline]
fn read_dod(r: &mut BitReader<'_>) -> Result<i64> {
    let mut ones = 0;
    while ones < 4 && r.read_bit()? {
        ones += 1;
    }
    let bits = match ones {
        0 => return Ok(0),
        1 => 14,
        2 => 17,
        3 => 20,
        _ => 64,
    };
    let raw = r.read_bits(bits)?;
    let shift = 64 - bits;
    Ok(((raw << shift) as i64) >> shift)
}

/// Appendable in-memory chunk for the head: Gorilla-style bit stream,
/// delta-of-delta timestamps + XOR-compressed f64 values.
///
/// Layout of the stream (see `chunks-format.md`): sample 0 = zigzag varint t (as 8-bit
/// groups) + 64 raw value bits; sample 1 = zigzag varint delta + XOR value; later samples =
/// bucketed delta-of-delta + XOR value. The struct is 56 bytes on 64-bit targets.
#[derive(Clone, Debug, Default)]
pub struct HeadChunk {
    buf: Vec<u8>,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    n: u32,
    free: u8,
    leading: u8,
    trailing: u8,
}

/// Worst-case bytes one append can add: 4+64 dod bits + 2+5+6+64 value bits, rounded up.
const MAX_APPEND_BYTES: usize = 19;
/// Minimum growth step of the head buffer.
const MIN_GROW: usize = 32;

impl HeadChunk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Caller guarantees t > last timestamp (strictly increasing). Any f64 bit pattern,
    /// including NaN payloads (Prometheus stale marker 0x7ff0000000000002), must round-trip
    /// bit-exactly.
    pub fn append(&mut self, t: i64, v: f64) {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < MAX_APPEND_BYTES {
            // Grow by 1/8 (at least MIN_GROW): bounded waste, O(log) reallocations.
            let grow = (self.buf.capacity() / 8).max(MIN_GROW);
            self.buf.reserve_exact(grow);
        }
        let bits = v.to_bits();
        let mut w = BitWriter::resume(&mut self.buf, self.free);
        match self.n {
            0 => {
                w.write_uvarint(zigzag(t));
                w.write_bits(bits, 64);
                self.leading = NO_WINDOW;
                self.trailing = 0;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                if self.n == 1 {
                    w.write_uvarint(zigzag(delta));
                } else {
                    write_dod(&mut w, delta.wrapping_sub(self.last_delta));
                }
                let mut st =
                    XorState { prev: self.last_v, leading: self.leading, trailing: self.trailing };
                st.write(&mut w, bits);
                self.leading = st.leading;
                self.trailing = st.trailing;
                self.last_delta = delta;
            }
        }
        self.free = w.free_bits();
        self.last_t = t;
        self.last_v = bits;
        self.n += 1;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn first_t(&self) -> Option<i64> {
        if self.n == 0 {
            return None;
        }
        BitReader::new(&self.buf).read_uvarint().ok().map(unzigzag)
    }

    pub fn last(&self) -> Option<(i64, f64)> {
        (self.n > 0).then(|| (self.last_t, f64::from_bits(self.last_v)))
    }

    /// Decode all samples in order (append to the given vecs).
    pub fn decode_into(&self, ts: &mut Vec<i64>, vs: &mut Vec<f64>) {
        let (t0, v0) = (ts.len(), vs.len());
        if let Err(e) = decode_head(&self.buf, self.len(), ts, vs) {
            // Our own stream; an error here is a bug, never input corruption.
            debug_assert!(false, "head chunk decode failed: {e}");
            ts.truncate(t0);
            vs.truncate(v0);
        }
    }

    /// Heap bytes used (capacity), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// The encoded bit stream (padded to a byte); decode with [`decode_head`] and `len()`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Release unused capacity (e.g. when the chunk is full and awaits sealing).
    pub fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }
}

/// Decode `n` samples of a head chunk stream.
pub fn decode_head(buf: &[u8], n: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let cap = n.min(buf.len() * 8);
    ts.reserve(cap);
    vs.reserve(cap);
    let mut r = BitReader::new(buf);
    let mut t = unzigzag(r.read_uvarint()?);
    let first = r.read_bits(64)?;
    ts.push(t);
    vs.push(f64::from_bits(first));
    let mut x = XorReader::new(first);
    let mut delta = 0i64;
    for i in 1..n {
        if i == 1 {
            delta = unzigzag(r.read_uvarint()?);
        } else {
            delta = delta.wrapping_add(read_dod(&mut r)?);
        }
        t = t.wrapping_add(delta);
        ts.push(t);
        vs.push(f64::from_bits(x.read(&mut r)?));
    }
    Ok(())
}
