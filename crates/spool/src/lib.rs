//! A spool: byte batches kept on disk in a folder until their consumer is done with them,
//! oldest first. The agent keeps the remote_write bodies the server did not take in one (its
//! push buffer), the server keeps what it forwards to remote_write receivers in another.
//!
//! One file per batch, named by a sequence number, so order survives a restart; a size cap
//! bounds the folder, and when a new batch does not fit the oldest are dropped (each drop
//! logged and counted). The format (magic, version, length, CRC-32 of the payload) is
//! `docs/format/agent-buffer.md`.
//!
//! A batch is written to a `.tmp` file and renamed into place, so a crash leaves either the
//! whole batch or a `.tmp` file, which opening removes. Files are not fsynced: a batch survives
//! a crash of the process at once and a power loss once the kernel has written it back; a file
//! torn by a power loss fails its length or checksum check and is dropped when read, not
//! handed out.
//!
//! Deliberately absent: compaction of many small files into segments (one file per batch is
//! a few thousand files at most under the usual caps), and any knowledge of what a batch
//! holds.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// A file of the spool could not be read, written or removed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct Error {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Error {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The extension of a complete batch file; the stem is the batch's sequence number, 20 digits.
pub const BATCH_EXT: &str = "batch";
/// The extension of a batch being written; such files are removed when the spool opens.
pub const TMP_EXT: &str = "tmp";

/// The file name of batch `seq`.
pub fn batch_file(seq: u64) -> String {
    format!("{seq:020}.{BATCH_EXT}")
}

/// The sequence number of a batch file name, if it is one.
pub fn batch_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(BATCH_EXT)?.strip_suffix('.')?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// The first bytes of every batch file.
pub const MAGIC: [u8; 4] = *b"OCAB";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Magic, version, three reserved bytes, payload length (u32 LE), CRC-32 of the payload (u32 LE).
pub const HEADER_LEN: usize = 16;

/// Batches on disk, oldest first.
#[derive(Debug)]
pub struct Buffer {
    dir: PathBuf,
    max_bytes: u64,
    /// (sequence number, file size), oldest first.
    entries: VecDeque<(u64, u64)>,
    bytes: u64,
    next_seq: u64,
    dropped: u64,
    /// What the spool is, for the log.
    name: &'static str,
}

impl Buffer {
    /// Opens (creating it if needed) the buffer folder, removes half-written batches and finds
    /// the batches left by an earlier run. If they exceed `max_bytes` (a smaller cap than
    /// before), the oldest are dropped.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Buffer> {
        Buffer::open_named(dir, max_bytes, "push buffer")
    }

    /// [`Buffer::open`], with `what` saying in the log which spool a message is about.
    pub fn open_named(dir: &Path, max_bytes: u64, what: &'static str) -> Result<Buffer> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut entries = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(&format!(".{TMP_EXT}")) {
                let p = e.path();
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                tracing::warn!(spool = what, file = %p.display(), "removed a half-written batch");
            } else if let Some(seq) = batch_seq(&name) {
                let len = e.metadata().map_err(|err| Error::io(e.path(), err))?.len();
                entries.push((seq, len));
            }
        }
        entries.sort_unstable();
        let mut b = Buffer {
            dir: dir.to_path_buf(),
            max_bytes,
            bytes: entries.iter().map(|e| e.1).sum(),
            next_seq: entries.last().map_or(0, |e| e.0 + 1),
            entries: entries.into(),
            dropped: 0,
            name: what,
        };
        while b.bytes > b.max_bytes {
            b.drop_oldest("the buffer is over its size cap")?;
        }
        if !b.entries.is_empty() {
            tracing::info!(
                spool = what,
                batches = b.entries.len(),
                bytes = b.bytes,
                "batches from an earlier run are waiting"
            );
        }
        Ok(b)
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Batches dropped since the buffer was opened: to make room, or found damaged.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends a batch, dropping the oldest ones while it does not fit. A batch larger than the
    /// whole cap is dropped itself.
    pub fn push(&mut self, payload: &[u8]) -> Result<()> {
        let size = (HEADER_LEN + payload.len()) as u64;
        if size > self.max_bytes || payload.len() > u32::MAX as usize {
            self.dropped += 1;
            tracing::warn!(
                spool = self.name,
                bytes = size,
                max_bytes = self.max_bytes,
                "batch larger than the whole spool; dropped"
            );
            return Ok(());
        }
        while self.bytes + size > self.max_bytes {
            self.drop_oldest("the buffer is full")?;
        }
        let seq = self.next_seq;
        let path = self.dir.join(batch_file(seq));
        let tmp = path.with_extension(TMP_EXT);
        let mut data = Vec::with_capacity(size as usize);
        data.extend_from_slice(&MAGIC);
        data.extend_from_slice(&[VERSION, 0, 0, 0]);
        data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        data.extend_from_slice(payload);
        std::fs::write(&tmp, &data).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        self.entries.push_back((seq, size));
        self.bytes += size;
        self.next_seq += 1;
        Ok(())
    }

    /// The oldest batch's payload, or `None` when empty. Damaged files are dropped (logged and
    /// counted) on the way.
    pub fn front(&mut self) -> Result<Option<Vec<u8>>> {
        while let Some(&(seq, _)) = self.entries.front() {
            let path = self.dir.join(batch_file(seq));
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.forget_front();
                    continue;
                }
                Err(e) => return Err(Error::io(&path, e)),
            };
            match check(&data) {
                Ok(()) => return Ok(Some(data[HEADER_LEN..].to_vec())),
                Err(why) => self.drop_oldest(&format!("damaged batch: {why}"))?,
            }
        }
        Ok(None)
    }

    /// [`Buffer::front`] with the batch's sequence number, for [`Buffer::pop_seq`]: a
    /// consumer that pushes while it sends can tell whether the batch it sent is still the
    /// oldest (a full spool may have dropped it meanwhile).
    pub fn front_seq(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let got = self.front()?;
        Ok(got.and_then(|p| self.entries.front().map(|&(seq, _)| (seq, p))))
    }

    /// Removes the oldest batch if its sequence number is `seq`; whether it did.
    pub fn pop_seq(&mut self, seq: u64) -> Result<bool> {
        if self.entries.front().map(|e| e.0) != Some(seq) {
            return Ok(false);
        }
        self.pop_front()?;
        Ok(true)
    }

    /// Removes the oldest batch (after it was sent, or refused for good).
    pub fn pop_front(&mut self) -> Result<()> {
        if let Some(&(seq, _)) = self.entries.front() {
            let path = self.dir.join(batch_file(seq));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
            self.forget_front();
        }
        Ok(())
    }

    fn forget_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn drop_oldest(&mut self, why: &str) -> Result<()> {
        let seq = self.entries.front().map_or(0, |e| e.0);
        self.pop_front()?;
        self.dropped += 1;
        tracing::warn!(spool = self.name, batch = seq, reason = why, "dropped the oldest batch");
        Ok(())
    }
}

/// Checks a batch file's header and checksum.
fn check(data: &[u8]) -> Result<(), String> {
    if data.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the {HEADER_LEN}-byte header", data.len()));
    }
    if data[..4] != MAGIC {
        return Err("bad magic".into());
    }
    if data[4] != VERSION {
        return Err(format!("format version {} (expected {VERSION})", data[4]));
    }
    let word = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let len = word(8) as usize;
    if data.len() - HEADER_LEN != len {
        return Err(format!("payload is {} bytes, header says {len}", data.len() - HEADER_LEN));
    }
    if crc32fast::hash(&data[HEADER_LEN..]) != word(12) {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pop_seq_leaves_a_batch_pushed_in_place_of_a_dropped_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 300).unwrap();
        b.push(&[1; 100]).unwrap();
        let (seq, p) = b.front_seq().unwrap().unwrap();
        assert_eq!(p, [1; 100]);
        // while batch 1 is out, two more arrive and the full spool drops it
        b.push(&[2; 100]).unwrap();
        b.push(&[3; 100]).unwrap();
        assert_eq!(b.dropped(), 1);
        assert!(!b.pop_seq(seq).unwrap(), "batch 2 is not the one sent");
        let (seq2, p) = b.front_seq().unwrap().unwrap();
        assert_eq!((seq2, p[0]), (seq + 1, 2));
        assert!(b.pop_seq(seq2).unwrap());
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn batch_names_round_trip() {
        assert_eq!(batch_file(42), "00000000000000000042.batch");
        assert_eq!(batch_seq(&batch_file(42)), Some(42));
        assert_eq!(batch_seq(&batch_file(u64::MAX)), Some(u64::MAX));
        assert_eq!(batch_seq("42.batch"), None);
        assert_eq!(batch_seq("00000000000000000042.tmp"), None);
    }

    fn drain(b: &mut Buffer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(p) = b.front().unwrap() {
            out.push(p);
            b.pop_front().unwrap();
        }
        out
    }

    #[test]
    fn batches_come_back_in_order_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5u8 {
            b.push(&[i; 100]).unwrap();
        }
        assert_eq!((b.len(), b.bytes()), (5, 5 * 116));
        drop(b);
        let mut b = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(b.len(), 5);
        // one sent, then the agent stops and starts again
        assert_eq!(b.front().unwrap().unwrap(), [0; 100]);
        b.pop_front().unwrap();
        b.push(&[9; 10]).unwrap();
        drop(b);
        let mut b = Buffer::open(dir.path(), 1 << 20).unwrap();
        let got = drain(&mut b);
        let firsts: Vec<u8> = got.iter().map(|p| p[0]).collect();
        assert_eq!(firsts, [1, 2, 3, 4, 9]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // numbering goes on after the last batch, never back to a used number
        b.push(&[1]).unwrap();
        assert!(dir.path().join(batch_file(6)).exists());
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        // room for three batches of 100 + 16 bytes
        let mut b = Buffer::open(dir.path(), 3 * 116 + 50).unwrap();
        for i in 0..5u8 {
            b.push(&[i; 100]).unwrap();
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped(), 2);
        assert!(b.bytes() <= 3 * 116 + 50);
        let firsts: Vec<u8> = drain(&mut b).iter().map(|p| p[0]).collect();
        assert_eq!(firsts, [2, 3, 4]);
        // a batch bigger than the whole cap is dropped itself, the others stay
        b.push(&[7; 10]).unwrap();
        b.push(&[8; 1000]).unwrap();
        assert_eq!((b.len(), b.dropped()), (1, 3));
        // reopening with a smaller cap drops the oldest to fit
        drop(b);
        let mut b = Buffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..4u8 {
            b.push(&[i; 100]).unwrap();
        }
        drop(b);
        let mut b = Buffer::open(dir.path(), 2 * 116).unwrap();
        assert_eq!((b.len(), b.dropped()), (2, 3));
        let firsts: Vec<u8> = drain(&mut b).iter().map(|p| p[0]).collect();
        assert_eq!(firsts, [2, 3]);
    }

    #[test]
    fn damaged_and_half_written_files_are_dropped_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Buffer::open(dir.path(), 1 << 20).unwrap();
        for i in 0..4u8 {
            b.push(&[i; 100]).unwrap();
        }
        drop(b);
        // torn tail, flipped payload byte, wrong magic
        let f = |seq| dir.path().join(batch_file(seq));
        let data = std::fs::read(f(0)).unwrap();
        std::fs::write(f(0), &data[..50]).unwrap();
        let mut data = std::fs::read(f(1)).unwrap();
        data[60] ^= 1;
        std::fs::write(f(1), &data).unwrap();
        let mut data = std::fs::read(f(2)).unwrap();
        data[0] = b'X';
        std::fs::write(f(2), &data).unwrap();
        std::fs::write(dir.path().join("00000000000000000009.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"left alone").unwrap();
        let mut b = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert!(!dir.path().join("00000000000000000009.tmp").exists());
        let got = drain(&mut b);
        assert_eq!(got, [vec![3; 100]]);
        assert_eq!(b.dropped(), 3);
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(check(&[0; 3]).unwrap_err(), "3 bytes, shorter than the 16-byte header");
    }
}
