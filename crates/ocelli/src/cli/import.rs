//! `ocelli import FILE [--format exposition|remote-write]`: backfill from a file, with a progress
//! bar by bytes on stderr (drawn only when stderr is a terminal).
//!
//! - `exposition`: Prometheus text format, posted to `/api/v1/import/prometheus` in requests of
//!   about `--chunk-bytes`, cut only at line boundaries and never right after a comment, so a
//!   `# HELP`/`# TYPE` line travels with its samples; a cut prefers the start of a new metric
//!   family and is forced at twice the size. Samples without a timestamp get the time their
//!   request arrives.
//! - `remote-write`: a dump of remote_write requests, each framed as a 4-byte big-endian length
//!   followed by that many bytes of snappy-compressed `WriteRequest` (the body exactly as sent
//!   to `/api/v1/write`); each frame is posted to `/api/v1/write`. The framing of the whole file
//!   is checked before anything is sent, so a truncated or malformed dump sends nothing.
//!
//! Each request is all-or-nothing on the server; the import as a whole is not: the first
//! refused request stops it, and the message says which lines or frame were refused and how
//! much was stored before.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, ValueEnum};
use hyper::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::client::Api;
use super::output;
use super::{Conn, Failure, Result};

/// The largest remote_write frame a dump may hold.
pub const MAX_FRAME_BYTES: u32 = 64 << 20;

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,
    /// The file to import.
    pub file: PathBuf,
    /// What the file holds.
    #[arg(long, value_enum, default_value_t = ImportFormat::Exposition)]
    pub format: ImportFormat,
    /// About this many bytes per request (exposition text).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub chunk_bytes: u64,
}

/// File formats `ocelli import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Prometheus text exposition format.
    Exposition,
    /// Length-prefixed snappy-compressed remote_write bodies.
    RemoteWrite,
}

pub async fn run(a: Args) -> Result<()> {
    let mut api = Api::new(&a.conn)?;
    let name = a.file.display().to_string();
    let local = |e: std::io::Error| Failure::Local(format!("{name}: {e}"));
    let file = File::open(&a.file).map_err(local)?;
    let size = file.metadata().map_err(local)?.len();
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let requests = match a.format {
        ImportFormat::Exposition => exposition(&mut api, file, &name, a.chunk_bytes, &bar).await,
        ImportFormat::RemoteWrite => remote_write(&mut api, &a.file, &name, &bar).await,
    };
    bar.finish_and_clear();
    let requests = requests?;
    let format = match a.format {
        ImportFormat::Exposition => "exposition",
        ImportFormat::RemoteWrite => "remote-write",
    };
    let data = json!({"file": name, "format": format, "bytes": size, "requests": requests});
    output::emit(a.conn.output, &data, |_| {
        format!("imported {name}: {size} bytes in {requests} requests ({format})\n")
    })
}

/// One piece of exposition text to post, and the lines it holds (1-based, inclusive).
#[derive(Debug, PartialEq)]
struct Chunk {
    text: String,
    first_line: usize,
    last_line: usize,
}

/// Cuts exposition text into chunks as the module doc says.
#[derive(Debug)]
struct Chunker {
    target: usize,
    cur: String,
    first_line: usize,
    line: usize,
    last_was_comment: bool,
    last_family: String,
}

impl Chunker {
    fn new(target: usize) -> Chunker {
        Chunker {
            target,
            cur: String::new(),
            first_line: 1,
            line: 0,
            last_was_comment: false,
            last_family: String::new(),
        }
    }

    /// Adds one line (with its newline); answers the chunk that ends before it, if it is cut.
    fn push(&mut self, line: &str) -> Option<Chunk> {
        let trimmed = line.trim_start();
        let comment = trimmed.starts_with('#');
        let family = if comment {
            // `# HELP name ...` / `# TYPE name ...`: a new family starts here
            String::new()
        } else {
            let end = trimmed.find(['{', ' ', '\t']).unwrap_or(trimmed.len());
            family_of(&trimmed[..end]).to_string()
        };
        let new_family = comment || family != self.last_family;
        let full = self.cur.len() >= self.target && new_family;
        let forced = self.cur.len() >= 2 * self.target;
        let mut out = None;
        if !self.cur.is_empty() && !self.last_was_comment && (full || forced) {
            out = Some(self.take());
        }
        self.line += 1;
        if self.cur.is_empty() {
            self.first_line = self.line;
        }
        self.cur.push_str(line);
        self.last_was_comment = comment;
        if !comment && !trimmed.is_empty() {
            self.last_family = family;
        }
        out
    }

    fn take(&mut self) -> Chunk {
        Chunk {
            text: std::mem::take(&mut self.cur),
            first_line: self.first_line,
            last_line: self.line,
        }
    }

    /// The rest, if any.
    fn finish(&mut self) -> Option<Chunk> {
        (!self.cur.is_empty()).then(|| self.take())
    }
}

/// A sample's metric family: its name without a histogram's or summary's suffix.
fn family_of(name: &str) -> &str {
    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

async fn exposition(
    api: &mut Api,
    file: File,
    name: &str,
    chunk_bytes: u64,
    bar: &ProgressBar,
) -> Result<usize> {
    let mut reader = BufReader::new(file);
    let mut chunker = Chunker::new(usize::try_from(chunk_bytes).unwrap_or(1 << 20));
    let mut requests = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Failure::Local(format!("{name}: line {}: {e}", chunker.line + 1)))?;
        let chunk = if n == 0 { chunker.finish() } else { chunker.push(&line) };
        if let Some(c) = chunk {
            post_lines(api, name, &c, requests).await?;
            bar.inc(c.text.len() as u64);
            requests += 1;
        }
        if n == 0 {
            return Ok(requests);
        }
    }
}

async fn post_lines(api: &mut Api, name: &str, c: &Chunk, before: usize) -> Result<()> {
    let headers = [("content-type", "text/plain; version=0.0.4")];
    let body = c.text.as_bytes().to_vec();
    api.call(Method::POST, "/api/v1/import/prometheus", &headers, body).await.map(drop).map_err(
        |e| match e {
            Failure::Server(m) => Failure::Server(format!(
                "{name}: lines {}-{} (line numbers below count from {}): {m}; {} lines in {before} \
                 requests before them were stored",
                c.first_line,
                c.last_line,
                c.first_line,
                c.first_line - 1
            )),
            e => e,
        },
    )
}

/// The frames of a remote_write dump: `(offset of the body, length)`, checked whole.
fn frames(path: &Path, name: &str) -> Result<Vec<(u64, u32)>> {
    let local = |e: std::io::Error| Failure::Local(format!("{name}: {e}"));
    let mut f = File::open(path).map_err(local)?;
    let size = f.metadata().map_err(local)?.len();
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < size {
        let bad = |why: String| {
            Failure::Local(format!(
                "{name}: frame {} at byte {at}: {why}; nothing was sent",
                out.len() + 1
            ))
        };
        if size - at < 4 {
            return Err(bad(format!(
                "only {} bytes left, a 4-byte length was expected",
                size - at
            )));
        }
        let mut len = [0u8; 4];
        f.read_exact(&mut len).map_err(local)?;
        let len = u32::from_be_bytes(len);
        if len == 0 || len > MAX_FRAME_BYTES {
            return Err(bad(format!(
                "length {len} is not in 1..={MAX_FRAME_BYTES} (is this a remote_write dump?)"
            )));
        }
        if u64::from(len) > size - at - 4 {
            return Err(bad(format!("length {len}, but only {} bytes follow", size - at - 4)));
        }
        out.push((at + 4, len));
        at += 4 + u64::from(len);
        f.seek(SeekFrom::Start(at)).map_err(local)?;
    }
    Ok(out)
}

async fn remote_write(api: &mut Api, path: &Path, name: &str, bar: &ProgressBar) -> Result<usize> {
    let frames = frames(path, name)?;
    let local = |e: std::io::Error| Failure::Local(format!("{name}: {e}"));
    let mut f = File::open(path).map_err(local)?;
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "snappy"),
        ("x-prometheus-remote-write-version", "0.1.0"),
    ];
    for (i, &(offset, len)) in frames.iter().enumerate() {
        let mut body = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(offset)).map_err(local)?;
        f.read_exact(&mut body).map_err(local)?;
        api.call(Method::POST, "/api/v1/write", &headers, body).await.map_err(|e| match e {
            Failure::Server(m) => Failure::Server(format!(
                "{name}: frame {} at byte {}: {m}; the {i} frames before it were stored",
                i + 1,
                offset - 4
            )),
            e => e,
        })?;
        bar.inc(4 + u64::from(len));
    }
    Ok(frames.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str, target: usize) -> Vec<Chunk> {
        let mut c = Chunker::new(target);
        let mut out: Vec<Chunk> = text.split_inclusive('\n').filter_map(|l| c.push(l)).collect();
        out.extend(c.finish());
        out
    }

    #[test]
    fn cuts_keep_comments_with_their_samples_and_prefer_families() {
        let text = "# TYPE a gauge\na 1\na{x=\"1\"} 2\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\nb 3\n";
        let got = chunks(text, 10);
        let texts: Vec<&str> = got.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "# TYPE a gauge\na 1\na{x=\"1\"} 2\n",
                "# TYPE h histogram\nh_bucket{le=\"1\"} 1\n",
                "h_sum 1\nh_count 1\n",
                "b 3\n"
            ]
        );
        assert_eq!((got[1].first_line, got[1].last_line), (4, 5));
        assert_eq!(got.iter().map(|c| c.text.as_str()).collect::<String>(), text);
        // a large target: one chunk; a family is kept whole until twice the target
        assert_eq!(chunks(text, 1 << 20).len(), 1);
        let fam: String = (0..10).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
        let got = chunks(&fam, 30);

        assert_eq!(got.iter().map(|c| c.text.len()).collect::<Vec<_>>(), [66, 44]);
    }

    #[test]
    fn dump_framing_is_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        let mut bytes = Vec::new();
        for body in [&b"abc"[..], &b"de"[..]] {
            bytes.extend((body.len() as u32).to_be_bytes());
            bytes.extend(body);
        }
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(frames(&p, "d").unwrap(), [(4, 3), (11, 2)]);
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = frames(&p, "d").unwrap_err().to_string();
        assert_eq!(e, "d: frame 2 at byte 7: length 2, but only 1 bytes follow; nothing was sent");
        std::fs::write(&p, b"# TYPE x gauge\n").unwrap();
        let e = frames(&p, "d").unwrap_err().to_string();
        assert!(e.contains("is not in 1..="), "{e}");
    }
}
