//! The write-ahead log: numbered segment files of checksummed records, written with group
//! commit, replayed at start-up.
//!
//! Appenders [`Wal::enqueue`] a record (under the engine's append lock, so WAL order is the
//! order samples were applied to the head) and then [`Wal::commit`] it outside that lock. The
//! first committer to take the I/O lock writes every record enqueued so far in one `write`,
//! and under [`FsyncPolicy::Always`] one `fdatasync`; the others find their record already
//! written. A sample is acknowledged only after `commit` returns, i.e. once it is in the
//! kernel's page cache (survives a process crash) and, depending on the policy, on the device.
//!
//! Replay reads segment after segment; a record whose length or checksum is wrong ends that
//! segment: the segment is truncated there with a warning saying how many bytes were dropped,
//! and replay goes on with the next segment. It never fails the start-up. Record payloads are
//! in [`crate::record`]; the layout is in `docs/format/wal.md`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, IoContext, Result};
use crate::filenames::wal_segment_name;

pub(crate) const SEGMENT_MAGIC: [u8; 4] = *b"OCWL";
pub(crate) const SEGMENT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_LEN: usize = 8;
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// Upper bound of one record's payload; a larger length field is treated as corruption.
pub(crate) const MAX_RECORD_LEN: usize = 256 << 20;

/// When the WAL calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement (group committed). Survives power loss; slowest.
    Always,
    /// Every so often in the background. Acknowledged data survives a process crash at once and
    /// a power loss or kernel crash once the interval has passed.
    Interval(Duration),
    /// Only when a segment is closed. Survives a process crash; power loss may lose up to a
    /// segment.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(1000))
    }
}

/// What replay found, for the start-up log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: u64,
    /// Human-readable notes about every truncation, e.g. "wal/00000003: truncated at byte 4096
    /// (record checksum mismatch), 812 bytes dropped".
    pub truncations: Vec<String>,
    pub bytes_dropped: u64,
    /// Records with a valid checksum whose content could not be used, one line each.
    pub skipped: Vec<String>,
}

struct Pending {
    buf: Vec<u8>,
    seq: u64,
}

struct Io {
    file: File,
    segment: u64,
    size: u64,
    written_seq: u64,
    buf: Vec<u8>,
}

/// The open write-ahead log.
pub(crate) struct Wal {
    dir: PathBuf,
    policy: FsyncPolicy,
    segment_max: u64,
    pending: Mutex<Pending>,
    io: Mutex<Io>,
    written_seq: AtomicU64,
    /// Counters: records queued, `write` calls, `fdatasync` calls (group commit shows as
    /// fewer writes and syncs than records).
    pub(crate) records: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    /// Nanoseconds spent in `fdatasync`, for the server's own metrics.
    pub(crate) sync_ns: AtomicU64,
    poisoned: Mutex<Option<String>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).field("policy", &self.policy).finish()
    }
}

/// Lists segment numbers in `dir`, ascending; ignores names that are not segment numbers.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).io_ctx("read dir", dir)? {
        let e = e.io_ctx("read dir", dir)?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// Replays every segment in `dir` in order, calling `f` with each record payload, and truncates
/// damaged segments. Returns the report and the number of the last segment (0 if none).
pub(crate) fn replay(
    dir: &Path,
    mut f: impl FnMut(&[u8]) -> std::result::Result<(), String>,
) -> Result<(ReplayReport, u64)> {
    let mut report = ReplayReport::default();
    let segs = list_segments(dir)?;
    for &n in &segs {
        let path = dir.join(wal_segment_name(n));
        let data = fs::read(&path).io_ctx("read", &path)?;
        report.segments += 1;
        let rel = format!("wal/{}", wal_segment_name(n));
        let mut truncate_at = None;
        if data.len() < SEGMENT_HEADER_LEN || data[..4] != SEGMENT_MAGIC {
            truncate_at = Some((0, "missing or bad segment header".to_string()));
        } else if data[4..8] != SEGMENT_VERSION.to_le_bytes() {
            // written by another version of Ocelli: not damage, so never truncate it
            return Err(Error::Corrupt {
                what: "WAL segment",
                path: path.clone(),
                offset: 4,
                detail: format!(
                    "unsupported segment version {:?}; this build reads version {SEGMENT_VERSION}",
                    &data[4..8]
                ),
            });
        } else {
            let mut pos = SEGMENT_HEADER_LEN;
            while pos < data.len() {
                let Some(hdr) = data.get(pos..pos + RECORD_HEADER_LEN) else {
                    truncate_at = Some((pos, "torn record header".into()));
                    break;
                };
                let len = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
                let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
                if len == 0 || len > MAX_RECORD_LEN {
                    truncate_at = Some((pos, format!("invalid record length {len}")));
                    break;
                }
                let start = pos + RECORD_HEADER_LEN;
                let Some(payload) = data.get(start..start + len) else {
                    truncate_at = Some((pos, "torn record (shorter than its length)".into()));
                    break;
                };
                if crc32fast::hash(payload) != crc {
                    truncate_at = Some((pos, "record checksum mismatch".into()));
                    break;
                }
                match f(payload) {
                    Ok(()) => report.records += 1,
                    Err(e) => {
                        // intact frame, unusable content: skip this record only
                        tracing::warn!(segment = %rel, offset = pos, error = %e, "skipping WAL record");
                        report.skipped.push(format!("{rel}: record at byte {pos} skipped: {e}"));
                    }
                }
                pos = start + len;
            }
        }
        if let Some((at, why)) = truncate_at {
            let dropped = data.len() as u64 - at as u64;
            let note = format!("{rel}: truncated at byte {at} ({why}), {dropped} bytes dropped");
            tracing::warn!(segment = %rel, offset = at, dropped, reason = %why, "truncating damaged WAL segment");
            report.truncations.push(note);
            report.bytes_dropped += dropped;
            let file = OpenOptions::new().write(true).open(&path).io_ctx("open", &path)?;
            file.set_len(at as u64).io_ctx("truncate", &path)?;
            file.sync_all().io_ctx("fsync", &path)?;
        }
    }
    Ok((report, segs.last().copied().unwrap_or(0)))
}

fn create_segment(dir: &Path, n: u64) -> Result<File> {
    let path = dir.join(wal_segment_name(n));
    let mut file =
        OpenOptions::new().create_new(true).append(true).open(&path).io_ctx("create", &path)?;
    let mut hdr = Vec::with_capacity(SEGMENT_HEADER_LEN);
    hdr.extend_from_slice(&SEGMENT_MAGIC);
    hdr.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    file.write_all(&hdr).io_ctx("write", &path)?;
    file.sync_all().io_ctx("fsync", &path)?;
    sync_dir(dir)?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).io_ctx("fsync dir", dir)
}

impl Wal {
    /// Starts writing into a fresh segment numbered `first_segment`.
    pub(crate) fn create(
        dir: &Path,
        first_segment: u64,
        policy: FsyncPolicy,
        segment_max: u64,
    ) -> Result<Wal> {
        let file = create_segment(dir, first_segment)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            policy,
            segment_max,
            pending: Mutex::new(Pending { buf: Vec::new(), seq: 0 }),
            io: Mutex::new(Io {
                file,
                segment: first_segment,
                size: SEGMENT_HEADER_LEN as u64,
                written_seq: 0,
                buf: Vec::new(),
            }),
            written_seq: AtomicU64::new(0),
            records: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_ns: AtomicU64::new(0),
            poisoned: Mutex::new(None),
        })
    }

    /// Refuses all further writes, e.g. after a failed background fsync.
    pub(crate) fn poison(&self, why: &str) {
        self.poisoned.lock().get_or_insert_with(|| why.to_string());
    }

    fn check_poison(&self) -> Result<()> {
        match &*self.poisoned.lock() {
            Some(e) => Err(Error::WalPoisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Frames the payload that `encode` writes and queues it; returns its sequence number for
    /// [`Wal::commit`]. Call with the engine's append lock held.
    pub(crate) fn enqueue(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<u64> {
        self.check_poison()?;
        let mut p = self.pending.lock();
        let start = p.buf.len();
        p.buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
        encode(&mut p.buf);
        let len = p.buf.len() - start - RECORD_HEADER_LEN;
        if len > MAX_RECORD_LEN {
            p.buf.truncate(start);
            return Err(Error::InvalidSeries(format!(
                "batch encodes to {len} bytes, more than the WAL record limit of {MAX_RECORD_LEN}"
            )));
        }
        let crc = crc32fast::hash(&p.buf[start + RECORD_HEADER_LEN..]);
        p.buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        p.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        p.seq += 1;
        self.records.fetch_add(1, Ordering::Relaxed);
        Ok(p.seq)
    }

    /// Returns once record `seq` (and all before it) is written, and synced under
    /// [`FsyncPolicy::Always`].
    pub(crate) fn commit(&self, seq: u64) -> Result<()> {
        if self.written_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let mut io = self.io.lock();
        if io.written_seq >= seq {
            return Ok(());
        }
        self.check_poison()?;
        let upto = {
            let mut p = self.pending.lock();
            std::mem::swap(&mut p.buf, &mut io.buf);
            p.seq
        };
        let res = self.write_locked(&mut io, upto);
        if let Err(e) = &res {
            *self.poisoned.lock() = Some(e.to_string());
        }
        res
    }

    fn write_locked(&self, io: &mut Io, upto: u64) -> Result<()> {
        let path = self.dir.join(wal_segment_name(io.segment));
        let res = (|| {
            let Io { file, buf, .. } = &mut *io;
            file.write_all(buf).io_ctx("write", &path)?;
            self.writes.fetch_add(1, Ordering::Relaxed);
            if self.policy == FsyncPolicy::Always {
                self.timed_sync(file, &path)?;
            }
            Ok(())
        })();
        // written or failed, these bytes are never handed to a later write: after a failure
        // their appenders get an error, and what follows must not be acknowledged behind a
        // possibly torn record
        io.size += io.buf.len() as u64;
        io.buf.clear();
        if io.buf.capacity() > 8 << 20 {
            io.buf.shrink_to(1 << 20);
        }
        res?;
        io.written_seq = upto;
        self.written_seq.store(upto, Ordering::Release);
        if io.size >= self.segment_max
            && let Err(e) = self.rotate_locked(io)
        {
            // the records just written stand; only later writes are refused
            tracing::error!(error = %e, "WAL segment rotation failed; refusing writes until restart");
            self.poison(&e.to_string());
        }
        Ok(())
    }

    fn rotate_locked(&self, io: &mut Io) -> Result<u64> {
        let path = self.dir.join(wal_segment_name(io.segment));
        if self.policy != FsyncPolicy::Always {
            self.timed_sync(&io.file, &path)?;
        }
        let next = io.segment + 1;
        io.file = create_segment(&self.dir, next)?;
        io.segment = next;
        io.size = SEGMENT_HEADER_LEN as u64;
        Ok(next)
    }

    /// Writes out everything queued and starts a new segment; returns its number. Segments
    /// below it hold only records enqueued before this call.
    pub(crate) fn rotate(&self) -> Result<u64> {
        let mut io = self.io.lock();
        // checked under the I/O lock: a commit that failed before we got it has poisoned the
        // WAL by now, and its records must not be written after the failure
        self.check_poison()?;
        let upto = {
            let mut p = self.pending.lock();
            std::mem::swap(&mut p.buf, &mut io.buf);
            p.seq
        };
        let res = self.write_locked(&mut io, upto).and_then(|()| self.rotate_locked(&mut io));
        if let Err(e) = &res {
            *self.poisoned.lock() = Some(e.to_string());
        }
        res
    }

    /// `fdatasync` of the current segment (the interval policy's background call).
    pub(crate) fn sync(&self) -> Result<()> {
        let (file, segment) = {
            let io = self.io.lock();
            (io.file.try_clone(), io.segment)
        };
        let path = self.dir.join(wal_segment_name(segment));
        self.timed_sync(&file.io_ctx("dup", &path)?, &path)
    }

    /// `fdatasync`, counted and timed.
    fn timed_sync(&self, file: &File, path: &Path) -> Result<()> {
        let t0 = std::time::Instant::now();
        file.sync_data().io_ctx("fsync", path)?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Writes out what is queued and syncs; for clean shutdown.
    pub(crate) fn flush(&self) -> Result<()> {
        let seq = self.pending.lock().seq;
        self.commit(seq)?;
        self.sync()
    }

    /// Deletes segments numbered below `n`.
    pub(crate) fn remove_before(&self, n: u64) -> Result<()> {
        for s in list_segments(&self.dir)? {
            if s < n {
                let p = self.dir.join(wal_segment_name(s));
                fs::remove_file(&p).io_ctx("remove", &p)?;
            }
        }
        Ok(())
    }

    /// Bytes in all segments on disk.
    pub(crate) fn disk_bytes(&self) -> u64 {
        list_segments(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| fs::metadata(self.dir.join(wal_segment_name(*s))).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path) -> (Vec<Vec<u8>>, ReplayReport) {
        let mut v = Vec::new();
        let (r, _) = replay(dir, |p| {
            v.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        (v, r)
    }

    #[test]
    fn write_replay_and_torn_tail() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::create(d.path(), 1, FsyncPolicy::Always, 1 << 20).unwrap();
        for i in 0..10u8 {
            let s = wal.enqueue(|b| b.extend_from_slice(&[i; 100])).unwrap();
            wal.commit(s).unwrap();
        }
        drop(wal);
        let (recs, rep) = records(d.path());
        assert_eq!(recs.len(), 10);
        assert!(rep.truncations.is_empty());

        // tear the last record in half
        let p = d.path().join(wal_segment_name(1));
        let len = fs::metadata(&p).unwrap().len();
        OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 50).unwrap();
        let (recs, rep) = records(d.path());
        assert_eq!(recs.len(), 9);
        assert_eq!(rep.bytes_dropped, 58);
        assert!(rep.truncations[0].contains("torn record"), "{:?}", rep.truncations);
        // the truncation is persistent and the second replay is clean
        let (recs, rep) = records(d.path());
        assert_eq!((recs.len(), rep.truncations.len()), (9, 0));
    }

    #[test]
    fn flipped_byte_ends_segment_but_not_the_next() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::create(d.path(), 1, FsyncPolicy::Never, 1 << 20).unwrap();
        for i in 0..4u8 {
            let s = wal.enqueue(|b| b.extend_from_slice(&[i; 10])).unwrap();
            wal.commit(s).unwrap();
        }
        assert_eq!(wal.rotate().unwrap(), 2);
        let s = wal.enqueue(|b| b.extend_from_slice(&[9; 10])).unwrap();
        wal.commit(s).unwrap();
        drop(wal);
        let p = d.path().join(wal_segment_name(1));
        let mut data = fs::read(&p).unwrap();
        data[SEGMENT_HEADER_LEN + 18 + 10] ^= 0xff; // inside the second record's payload
        fs::write(&p, data).unwrap();
        let (recs, rep) = records(d.path());
        assert_eq!(recs, vec![vec![0; 10], vec![9; 10]]);
        assert!(rep.truncations[0].contains("checksum mismatch"), "{:?}", rep.truncations);
    }

    #[test]
    fn segments_rotate_at_size() {
        let d = tempfile::tempdir().unwrap();
        let wal = Wal::create(d.path(), 1, FsyncPolicy::Never, 1000).unwrap();
        for _ in 0..30 {
            let s = wal.enqueue(|b| b.extend_from_slice(&[1; 100])).unwrap();
            wal.commit(s).unwrap();
        }
        assert!(list_segments(d.path()).unwrap().len() >= 3);
        drop(wal);
        assert_eq!(records(d.path()).0.len(), 30);
    }
}
