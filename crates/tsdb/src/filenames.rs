//! Every file and folder name the engine writes, in one place, so that the on-disk layout can
//! be read here at a glance (documented in `docs/format/layout.md`).

/// Held with an exclusive OS file lock while a process has the data directory open.
pub const LOCK_FILE: &str = "LOCK";
/// Write-ahead log segments: `wal/00000001`, `wal/00000002`, ...
pub const WAL_DIR: &str = "wal";
/// Immutable blocks: `blocks/<id>/` with [`BLOCK_META`], [`BLOCK_INDEX`], [`BLOCK_CHUNKS`].
pub const BLOCKS_DIR: &str = "blocks";
/// Blocks that failed to open are moved here with a reason file, never deleted.
pub const QUARANTINE_DIR: &str = "quarantine";
pub const BLOCK_META: &str = "meta.json";
pub const BLOCK_INDEX: &str = "index";
pub const BLOCK_CHUNKS: &str = "chunks";
/// Suffix of a block being written; removed at start-up if found (an unfinished write).
pub const TMP_SUFFIX: &str = ".tmp";
/// Suffix of a block being deleted; removed at start-up if found.
pub const DELETING_SUFFIX: &str = ".deleting";
/// Written next to a quarantined block, saying why it was moved aside.
pub const QUARANTINE_REASON: &str = "REASON";

/// The name of WAL segment number `n`.
pub fn wal_segment_name(n: u64) -> String {
    format!("{n:08}")
}

/// The folder name of block number `seq`.
pub fn block_dir_name(seq: u64) -> String {
    format!("{seq:016x}")
}
