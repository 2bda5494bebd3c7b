//! Bit- and byte-level primitives shared by every codec in `chunkenc`.
//!
//! This module owns: an MSB-first bit writer that appends to a caller-owned `Vec<u8>` (so the
//! head chunk keeps full control of its allocation), a bounds-checked bit reader, LEB128
//! varints with zigzag for signed values, and `pack_ints`/`unpack_ints`, the small
//! "pick the cheapest of constant / frame-of-reference bit-packing / varints" integer column
//! used for timestamp delta-of-deltas and decimal value deltas.
//!
//! It hands off all semantics (what the integers mean, how many there are) to the callers in
//! `timestamps.rs` and `values.rs`. It deliberately does not allocate on its own behalf and
//! does not grow buffers with a policy of its own: growth is the owner's business.
//!
//! Hand-written because the format is ours and tiny: general bit-io crates would add a
//! dependency for ~200 lines, and we need reader errors that name the exact bit offset.

use super::{ChunkError, Result};

/// Zigzag-map a signed integer so small magnitudes get small codes.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as an unsigned LEB128 varint (1..=10 bytes).
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-mapped as a varint.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Encoded length of an unsigned varint.
#[inline]
pub fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Number of bits needed to hold `v` (0 for 0).
#[inline]
pub fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// MSB-first bit writer over a borrowed byte vector.
///
/// `free` is the number of unused low-order bits in the last byte (0..=7); it is the only
/// state besides the vector, so owners can persist it between appends in a single `u8`.
pub struct BitWriter<'a> {
    buf: &'a mut Vec<u8>,
    free: u8,
}

impl<'a> BitWriter<'a> {
    /// Start writing at the end of `buf`, whose last byte has `free` unused low bits.
    pub fn resume(buf: &'a mut Vec<u8>, free: u8) -> Self {
        debug_assert!(free < 8 && (free == 0 || !buf.is_empty()));
        BitWriter { buf, free }
    }

    /// Unused low bits in the last byte, to hand to a later [`BitWriter::resume`].
    pub fn free_bits(&self) -> u8 {
        self.free
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Write the low `n` bits of `v` (n in 0..=64), most significant first.
    #[inline]
    pub fn write_bits(&mut self, v: u64, mut n: u32) {
        debug_assert!(n <= 64);
        while n > 0 {
            if self.free == 0 {
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(u32::from(self.free));
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            self.free -= take as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= chunk << self.free;
            }
            n -= take;
        }
    }

    /// Write an unsigned varint as 8-bit groups (no alignment needed).
    pub fn write_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.write_bits((v & 0x7f) | 0x80, 8);
            v >>= 7;
        }
        self.write_bits(v, 8);
    }
}

/// Bounds-checked MSB-first bit reader.
pub struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BitReader { buf, pos: 0 }
    }

    #[inline]
    fn need(&self, n: u32) -> Result<()> {
        if self.pos + n as usize > self.buf.len() * 8 {
            return Err(ChunkError::Truncated { wanted_bits: n, at_bit: self.pos });
        }
        Ok(())
    }

    #[inline]
    pub fn read_bit(&mut self) -> Result<bool> {
        self.need(1)?;
        let byte = self.buf[self.pos / 8];
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Ok(bit)
    }

    /// Read `n` bits (0..=64) as an unsigned integer.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Result<u64> {
        if n == 0 {
            return Ok(0);
        }
        if n > 64 {
            return Err(ChunkError::BadField { field: "bit width", value: u64::from(n) });
        }
        self.need(n)?;
        let byte = self.pos / 8;
        let off = (self.pos % 8) as u32;
        let window = match self.buf.get(byte..byte + 16) {
            Some(s) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(s);
                u128::from_be_bytes(a)
            }
            None => {
                let mut a = [0u8; 16];
                let rest = &self.buf[byte..];
                a[..rest.len()].copy_from_slice(rest);
                u128::from_be_bytes(a)
            }
        };
        self.pos += n as usize;
        Ok(((window << off) >> (128 - n)) as u64)
    }

    /// Read a varint written by [`BitWriter::write_uvarint`].
    pub fn read_uvarint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.read_bits(8)?;
            v |= (b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ChunkError::VarintOverflow { at: start / 8 })
    }
}

/// Byte-granular reader for headers and varint columns.
pub struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        ByteReader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn read_u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(ChunkError::Truncated { wanted_bits: 8, at_bit: self.pos * 8 })?;
        self.pos += 1;
        Ok(b)
    }

    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            let wanted = n.saturating_sub(self.buf.len() - self.pos).saturating_mul(8);
            return Err(ChunkError::Truncated {
                wanted_bits: u32::try_from(wanted).unwrap_or(u32::MAX),
                at_bit: self.buf.len() * 8,
            });
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn read_uvarint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.read_u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ChunkError::VarintOverflow { at: start })
    }

    pub fn read_varint(&mut self) -> Result<i64> {
        Ok(unzigzag(self.read_uvarint()?))
    }
}

const PACK_CONST: u8 = 0;
const PACK_FOR: u8 = 1;
const PACK_VARINT: u8 = 2;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Encode a column of signed integers, picking the smallest of three layouts (see
/// `chunks-format.md`): all-equal constant, frame-of-reference + gcd + fixed-width bit packing,
/// or one zigzag varint per value. `vals` must be non-empty. Arithmetic wraps, so any i64
/// sequence round-trips.
pub fn pack_ints(vals: &[i64], out: &mut Vec<u8>) {
    let Some(&first) = vals.first() else {
        out.push(PACK_CONST);
        put_varint(out, 0);
        return;
    };
    let (mut min, mut max) = (first, first);
    let mut varint_bytes = 0usize;
    for &v in vals {
        min = min.min(v);
        max = max.max(v);
        varint_bytes += uvarint_len(zigzag(v));
    }
    if min == max {
        out.push(PACK_CONST);
        put_varint(out, min);
        return;
    }
    let mut g = 0u64;
    for &v in vals {
        g = gcd(g, v.wrapping_sub(min) as u64);
        if g == 1 {
            break;
        }
    }
    let width = bit_width(max.wrapping_sub(min) as u64 / g);
    let for_bytes =
        uvarint_len(zigzag(min)) + uvarint_len(g) + 1 + (vals.len() * width as usize).div_ceil(8);
    if varint_bytes <= for_bytes {
        out.push(PACK_VARINT);
        out.reserve(varint_bytes);
        for &v in vals {
            put_varint(out, v);
        }
        return;
    }
    out.push(PACK_FOR);
    put_varint(out, min);
    put_uvarint(out, g);
    out.push(width as u8);
    let mut w = BitWriter::resume(out, 0);
    for &v in vals {
        w.write_bits(v.wrapping_sub(min) as u64 / g, width);
    }
}

/// Decode `n` integers written by [`pack_ints`], appending them to `out`.
pub fn unpack_ints(r: &mut ByteReader<'_>, n: usize, out: &mut Vec<i64>) -> Result<()> {
    match r.read_u8()? {
        PACK_CONST => {
            let c = r.read_varint()?;
            out.extend(std::iter::repeat_n(c, n));
        }
        PACK_FOR => {
            let min = r.read_varint()?;
            let g = r.read_uvarint()?;
            let width = r.read_u8()?;
            if g == 0 || width > 64 {
                return Err(ChunkError::BadField { field: "bit-pack gcd/width", value: g });
            }
            let width = u32::from(width);
            let bytes = (n as u128 * u128::from(width)).div_ceil(8);
            let bytes = usize::try_from(bytes)
                .map_err(|_| ChunkError::BadField { field: "bit-pack length", value: u64::MAX })?;
            let body = r.read_bytes(bytes)?;
            let mut br = BitReader::new(body);
            out.reserve(n);
            for _ in 0..n {
                let x = br.read_bits(width)?;
                out.push(min.wrapping_add(x.wrapping_mul(g) as i64));
            }
        }
        PACK_VARINT => {
            out.reserve(n.min(r.remaining().len()));
            for _ in 0..n {
                out.push(r.read_varint()?);
            }
        }
        tag => {
            return Err(ChunkError::UnknownCodec { column: "int pack", tag });
        }
    }
    Ok(())
}
