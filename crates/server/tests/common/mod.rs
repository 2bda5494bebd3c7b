//! Shared by the server's HTTP tests: a minimal HTTP/1.1 client over raw TCP (so the tests see
//! exactly what goes over the wire), reopening a stopped server's data to check what it stored,
//! and a loopback configuration on a free port.
#![allow(clippy::unwrap_used, dead_code)] // tests: a panic is the failure report; not every test uses every helper

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ocelli_model::Matcher;
use ocelli_server::Config;

/// A minimal HTTP/1.1 client: one request per connection; returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    request(addr, method, path, "", body)
}

/// Like `http`, with extra header lines (each ending in `\r\n`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let r = request_raw(addr, method, path, headers, body);
    (r.status, String::from_utf8_lossy(&r.body).to_string())
}

/// A response as received: status, header block and body bytes.
pub struct Response {
    pub status: u16,
    /// The header lines, lower-cased, each ending in `\r\n`.
    pub headers: String,
    pub body: Vec<u8>,
}

/// Like `request`, returning the headers and the body as bytes (for binary bodies).
pub fn request_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    // a server that rejects a body early may answer and close before the body is all sent;
    // the answer is what counts, so write and read errors are not failures here
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(!resp.is_empty(), "no response to {method} {path}");
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers =
        head.split_once("\r\n").map(|x| x.1.to_ascii_lowercase() + "\r\n").unwrap_or_default();
    let body = resp.get(split + 4..).unwrap_or_default();
    let chunked =
        headers.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Response { status, headers, body }
}

/// Reopens a stopped server's data directory and selects one metric's series.
pub fn stored(dir: &std::path::Path, name: &str) -> Vec<ocelli_tsdb::SeriesSamples> {
    let opts = ocelli_tsdb::Options { background: false, ..Default::default() };
    let (db, _) = ocelli_tsdb::Db::open(dir, opts).unwrap();
    db.select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX).unwrap()
}

/// Polls `f` every 50 ms until it gives Some, for at most `limit`.
pub fn wait<T>(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// [`config`] with a retention reaching back to the fixed timestamps some tests write (from
/// the 1970s, or 1_700_000_000_000, November 2023): writes older than the retention are refused.
#[allow(dead_code)] // not every test file writes fixed timestamps
pub fn config_old_samples(dir: &std::path::Path) -> Config {
    let mut c = config(dir);
    c.storage.retention = "36500d".into();
    c
}

/// Decodes a chunked HTTP/1.1 body (servers such as Prometheus send large answers so).
fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&s[..eol]).unwrap().trim();
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            break;
        }
        let rest = &s[eol + 2..];
        out.extend_from_slice(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// One request the recorder received.
#[derive(Clone, Debug)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub body: String,
}

/// A loopback HTTP server (a stand-in for Slack's incoming webhook and webhook receivers: the
/// same protocol) that records every request and answers 500 to the first
/// `fail_first` ones, 200 to the rest.
pub struct Recorder {
    pub addr: SocketAddr,
    records: Arc<std::sync::Mutex<Vec<Record>>>,
}

impl Recorder {
    pub fn start(fail_first: usize) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let records = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = records.clone();
        let seen = AtomicUsize::new(0);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                rec.lock().unwrap().push(Record {
                    method,
                    path,
                    body: String::from_utf8(body).unwrap(),
                });
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let answer: &[u8] = if n < fail_first {
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nboom"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                };
                let _ = s.write_all(answer);
            }
        });
        Recorder { addr, records }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (at most 10 s) and returns them all.
    pub async fn wait(&self, n: usize) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.records();
            if r.len() >= n {
                return r;
            }
            assert!(Instant::now() < deadline, "{} requests, expected {n}: {r:?}", r.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
