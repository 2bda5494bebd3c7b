//! Every name the agent gives to files and folders on disk, in one place. The format of the
//! files is specified in `docs/format/agent-buffer.md`.

/// The folder under `--data-dir` that holds push batches the server has not taken yet.
pub const BUFFER_DIR: &str = "buffer";
/// The extension of a complete batch file; the stem is the batch's sequence number, 20 digits.
pub const BATCH_EXT: &str = "batch";
/// The extension of a batch being written; such files are removed when the buffer opens.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_names_round_trip() {
        assert_eq!(batch_file(42), "00000000000000000042.batch");
        assert_eq!(batch_seq(&batch_file(42)), Some(42));
        assert_eq!(batch_seq(&batch_file(u64::MAX)), Some(u64::MAX));
        assert_eq!(batch_seq("42.batch"), None);
        assert_eq!(batch_seq("00000000000000000042.tmp"), None);
    }
}
