//! Every name the agent gives to files and folders on disk, in one place. The format of the
//! files is specified in `docs/format/agent-buffer.md`; the batch files themselves are named
//! by `ocelli_spool`.

/// The folder under `--data-dir` that holds push batches the server has not taken yet.
pub const BUFFER_DIR: &str = "buffer";

/// The file under `--data-dir` holding the agent's own credential (a token, mode 0600), made
/// by enrolment with a join token.
pub const CREDENTIAL_FILE: &str = "credential";
