//! The `ocelli` command-line client: `query`, `agents`, `alarms`, `silences`, `rules`, `status`,
//! `import` and `completions`, one module per verb group. Every verb talks to a server over its
//! HTTP API ([`client`]) and renders the answer as a table, JSON or YAML ([`output`]); range
//! queries draw a terminal chart ([`chart`]).
//!
//! This module owns the flags every verb shares (`--server`, `-o`, `--timeout`), the failure
//! kinds and their exit codes, and the dispatch. It deliberately links no server logic: times
//! and durations are read and written with `ocelli_model::time`, the functions the server's
//! API uses, so that the client reads `--time` and `--range` exactly as the server reads
//! `time` and `step`.

use std::fmt;

use clap::{Args, Subcommand, ValueEnum};

pub mod agents;
pub mod alarms;
pub mod chart;
pub mod client;
pub mod import;
pub mod output;
pub mod query;
pub mod rules;
pub mod silences;
pub mod status;
pub mod token;

/// The exit codes, for `--help` and `docs/cli.md`.
pub const EXIT_CODES: &str = "\
Exit codes of the client verbs (query, agents, alarms, silences, rules, status, import,
token, audit):
  0  success
  1  the server answered with an error (4xx or 5xx); its message is printed
  2  usage error: a bad flag or argument
  3  the server is unreachable, or did not answer within --timeout
  4  a local failure: a file could not be read or is malformed, or the server's answer
     could not be understood";

/// How a client verb failed; each kind has its own exit code.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with an error status: its message.
    Server(String),
    /// A flag or argument that cannot be used.
    Usage(String),
    /// The server could not be reached, or did not answer in time.
    Unreachable { url: String, reason: String },
    /// A file that cannot be read or is malformed, or an answer that cannot be understood.
    Local(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Server(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } => 3,
            Failure::Local(_) => 4,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::Server(m) | Failure::Usage(m) | Failure::Local(m) => m.clone(),
            Failure::Unreachable { url, reason } => {
                format!("cannot reach the Ocelli server at {url}: {reason}")
            }
        };
        // one line, whatever the server or the OS said
        f.write_str(&text.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Output formats of `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header (a chart for range queries).
    Table,
    /// The server's `data`, pretty-printed, for `jq`.
    Json,
    /// The same data as YAML.
    Yaml,
}

/// The flags every client verb takes.
#[derive(Args, Clone, Debug)]
pub struct Conn {
    /// The server's base URL (http:// or https://).
    #[arg(long, env = "OCELLI_SERVER", default_value = "http://127.0.0.1:9747", global = true)]
    pub server: String,
    /// The API token (for a server with [auth] enabled).
    #[arg(long, env = "OCELLI_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// https: trust the CA in this PEM file (default: Mozilla's roots).
    #[arg(long, env = "OCELLI_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// https: trust the CA with this SHA-256 fingerprint (sha256:<hex>, as `ocelli server`
    /// prints it with [tls] auto).
    #[arg(long, env = "OCELLI_CA_PIN", global = true, conflicts_with = "ca_file")]
    pub ca_pin: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Longest wait for one answer of the server (a Prometheus duration or seconds).
    #[arg(long, default_value = "150s", global = true)]
    pub timeout: String,
}

/// The client verbs, flattened into the binary's top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate a PromQL expression at one time (a table) or over a range (a chart).
    #[command(after_help = EXIT_CODES)]
    Query(query::Args),
    /// Registered agents: list, show, change mode and interval, remove.
    #[command(after_help = EXIT_CODES)]
    Agents {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        verb: agents::Verb,
    },
    /// Threshold alarms: list, show, create, delete, and their history.
    #[command(after_help = EXIT_CODES)]
    Alarms {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        verb: alarms::Verb,
    },
    /// Silences of the notifier: list, create, expire.
    #[command(after_help = EXIT_CODES)]
    Silences {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        verb: silences::Verb,
    },
    /// Rule groups and their rules, with health and state.
    #[command(after_help = EXIT_CODES)]
    Rules(rules::Args),
    /// The server's health: readiness, ingest rate, active series, agents by health.
    #[command(after_help = EXIT_CODES)]
    Status(status::Args),
    /// API tokens: create (also offline, in a stopped server's --data-dir), list, revoke.
    #[command(after_help = EXIT_CODES)]
    Token {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        verb: token::Verb,
    },
    /// The audit log: who changed tokens, agents, alarms, silences and the config, and when.
    #[command(after_help = EXIT_CODES)]
    Audit {
        #[command(flatten)]
        conn: Conn,
        /// From this time on (RFC 3339 or Unix seconds).
        #[arg(long)]
        since: Option<String>,
        /// At most this many entries (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Import a file of exposition text or remote_write bodies, with a progress bar.
    #[command(after_help = EXIT_CODES)]
    Import(import::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Runs one client verb and answers the process exit code; failures are printed on stderr as
/// one line `error: ...`. `cli` builds the binary's whole command, for completions.
pub fn run(cmd: Command, cli: impl FnOnce() -> clap::Command) -> i32 {
    if let Command::Completions { shell } = cmd {
        let mut c = cli();
        let name = c.get_name().to_string();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut c, name, &mut buf);
        output::print(&String::from_utf8_lossy(&buf));
        return 0;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 4;
        }
    };
    match rt.block_on(dispatch(cmd)) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("error: {f}");
            f.exit_code()
        }
    }
}

async fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Query(a) => query::run(a).await,
        Command::Agents { conn, verb } => agents::run(&conn, verb).await,
        Command::Alarms { conn, verb } => alarms::run(&conn, verb).await,
        Command::Silences { conn, verb } => silences::run(&conn, verb).await,
        Command::Rules(a) => rules::run(a).await,
        Command::Status(a) => status::run(a).await,
        Command::Import(a) => import::run(a).await,
        Command::Token { conn, verb } => token::run(&conn, verb).await,
        Command::Audit { conn, since, limit } => token::audit(&conn, since, limit).await,
        Command::Completions { .. } => Ok(()),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration flag (`2h`, `1h30m`, `90`), in ms; a usage error names the flag.
pub fn duration_flag(flag: &str, s: &str) -> Result<i64> {
    match ocelli_model::time::parse_api_duration(s) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(Failure::Usage(format!(
            "{flag}: {s:?} is not a positive duration (expected e.g. 30s, 5m, 1h30m, or seconds)"
        ))),
    }
}

/// A time flag (RFC 3339 or Unix seconds), in ms; a usage error names the flag.
pub fn time_flag(flag: &str, s: &str) -> Result<i64> {
    ocelli_model::time::parse_time(s).ok_or_else(|| {
        Failure::Usage(format!(
            "{flag}: {s:?} is not a time (expected RFC 3339, e.g. 2026-11-22T10:00:00Z, or Unix seconds)"
        ))
    })
}

/// RFC 3339 in UTC of a time in ms.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or_default());
    ocelli_model::time::rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_one_line_with_their_codes() {
        let f = Failure::Unreachable { url: "http://x:1".into(), reason: "refused\n(os)".into() };
        assert_eq!(f.to_string(), "cannot reach the Ocelli server at http://x:1: refused (os)");
        assert_eq!(f.exit_code(), 3);
        assert_eq!(Failure::Server("a".into()).exit_code(), 1);
        assert_eq!(Failure::Usage("a".into()).exit_code(), 2);
        assert_eq!(Failure::Local("a".into()).exit_code(), 4);
    }

    #[test]
    fn flags_of_time_and_duration() {
        assert_eq!(duration_flag("--range", "1h30m").unwrap(), 5_400_000);
        assert!(duration_flag("--range", "0s").unwrap_err().to_string().contains("--range"));
        assert_eq!(time_flag("--time", "1700000000").unwrap(), 1_700_000_000_000);
        assert!(time_flag("--time", "soon").is_err());
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
    }
}
