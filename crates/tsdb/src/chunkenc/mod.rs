//! TEMPORARY development placeholder, replaced by the real codecs before landing.
#![allow(dead_code)]

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChunkError(String);
pub type Result<T, E = ChunkError> = std::result::Result<T, E>;

#[derive(Debug, Default, Clone)]
pub struct HeadChunk { ts: Vec<i64>, vs: Vec<f64> }
impl HeadChunk {
    pub fn new() -> Self { Self::default() }
    pub fn append(&mut self, t: i64, v: f64) { self.ts.push(t); self.vs.push(v) }
    pub fn len(&self) -> usize { self.ts.len() }
    pub fn is_empty(&self) -> bool { self.ts.is_empty() }
    pub fn first_t(&self) -> Option<i64> { self.ts.first().copied() }
    pub fn last(&self) -> Option<(i64, f64)> { self.ts.last().map(|t| (*t, *self.vs.last().unwrap_or(&0.0))) }
    pub fn decode_into(&self, ts: &mut Vec<i64>, vs: &mut Vec<f64>) { ts.extend(&self.ts); vs.extend(&self.vs) }
    pub fn heap_bytes(&self) -> usize { self.ts.capacity() * 16 }
}
pub fn encode_chunk(ts: &[i64], vs: &[f64], out: &mut Vec<u8>) {
    out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    for t in ts { out.extend_from_slice(&t.to_le_bytes()) }
    for v in vs { out.extend_from_slice(&v.to_bits().to_le_bytes()) }
}
pub fn decode_chunk(buf: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<()> {
    let n = u32::from_le_bytes(buf.get(..4).ok_or(ChunkError("short".into()))?.try_into().map_err(|_| ChunkError("x".into()))?) as usize;
    if buf.len() != 4 + n * 16 { return Err(ChunkError("bad len".into())) }
    for i in 0..n { ts.push(i64::from_le_bytes(buf[4 + i * 8..12 + i * 8].try_into().map_err(|_| ChunkError("x".into()))?)) }
    for i in 0..n { let o = 4 + n * 8 + i * 8; vs.push(f64::from_bits(u64::from_le_bytes(buf[o..o + 8].try_into().map_err(|_| ChunkError("x".into()))?))) }
    Ok(())
}
