//! remote_write out: every sample the server stores (pushed, scraped, recorded by rules, from
//! ingest aggregation) is also sent to each `[[remote_write]]` receiver (a long-term store
//! such as VictoriaMetrics, Mimir, Thanos Receive, or a Prometheus with its receiver on), as
//! Prometheus remote_write 1.0.
//!
//! The storage engine tells a [`Forwarder`] of each batch as it goes into the WAL
//! ([`ocelli_tsdb::AppendObserver`]), in WAL order. Each receiver has its own queue:
//!
//! 1. batches collect in memory until `max_samples_per_send` samples or `batch_send_deadline`;
//! 2. they are encoded (protobuf, snappy) into bodies of at most `max_samples_per_send`
//!    samples and put in the receiver's on-disk spool, `{data_dir}/remote_write/{name}/`,
//!    capped at `queue_max_bytes` (when full, the oldest bodies are dropped, logged and
//!    counted);
//! 3. one sender sends the oldest body until the receiver answers: a 2xx takes it; a 5xx, a
//!    429, a timeout or a connection error is retried with exponential backoff
//!    (`min_backoff` .. `max_backoff`) while new data keeps going to the spool; another 4xx
//!    refuses it for good (dropped, logged, counted), as Prometheus does.
//!
//! Bodies go out one at a time, oldest first, so each series reaches the receiver in time
//! order. What is in the spool survives a restart and is sent then; samples still in memory
//! (under a `batch_send_deadline`) when the process dies are not, though they are in the
//! server's own storage. The queues are set up at start; changing `[[remote_write]]` takes a
//! restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ocelli_model::{Labels, Sample};
use ocelli_spool::Buffer as Spool;
use ocelli_wire::remote_write::DecodedSeries;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use ocelli_http::client::{Url, post};

/// The folder under the data directory holding one spool per receiver.
pub const REMOTE_WRITE_DIR: &str = "remote_write";

/// One `[[remote_write]]` entry of the server config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's remote_write endpoint, e.g. `http://vm:8428/api/v1/write`.
    pub url: String,
    /// Names the queue in metrics (`remote="..."`), logs and its spool folder. Default: the
    /// entry's index, `0`, `1`, ...; letters, digits, `_`, `-` and `.` only.
    #[serde(default)]
    pub name: Option<String>,
    /// Cap of the on-disk queue, in bytes. Default 256 MiB.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: u64,
    /// Most samples in one request. Default 2000.
    #[serde(default = "default_max_samples_per_send")]
    pub max_samples_per_send: usize,
    /// Longest samples wait in memory before going to the queue, e.g. `1s` (the default).
    #[serde(default = "default_deadline")]
    pub batch_send_deadline: String,
    /// Timeout of one request. Default `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// First and longest wait between retries of a failed request. Defaults `100ms`, `10s`.
    #[serde(default = "default_min_backoff")]
    pub min_backoff: String,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: String,
    /// Extra request headers, e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_queue_max_bytes() -> u64 {
    256 << 20
}
fn default_max_samples_per_send() -> usize {
    2000
}
fn default_deadline() -> String {
    "1s".into()
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_min_backoff() -> String {
    "100ms".into()
}
fn default_max_backoff() -> String {
    "10s".into()
}

/// A checked `[[remote_write]]` entry.
#[derive(Clone, Debug)]
struct Receiver {
    name: String,
    url: Url,
    queue_max_bytes: u64,
    max_samples: usize,
    deadline: Duration,
    timeout: Duration,
    min_backoff: Duration,
    max_backoff: Duration,
    headers: Vec<(String, String)>,
}

/// Checks the entries; errors name the entry and field (`remote_write[1].url: ...`).
fn compile(entries: &[RemoteWriteConfig]) -> Result<Vec<Receiver>, String> {
    let mut out: Vec<Receiver> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = |field: &str, m: String| format!("remote_write[{i}].{field}: {m}");
        let url = Url::parse(&e.url).map_err(|m| at("url", m))?;
        let name = e.name.clone().unwrap_or_else(|| i.to_string());
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            || name.starts_with('.')
        {
            return Err(at(
                "name",
                format!("{name:?}: use letters, digits, '_', '-' and '.' (not first)"),
            ));
        }
        if out.iter().any(|r| r.name == name) {
            return Err(at("name", format!("{name:?} is used by an earlier entry")));
        }
        let dur = |field: &str, s: &str| {
            ocelli_model::time::parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| at(field, format!("{s:?} is not a positive duration like 1s")))
        };
        let (min_backoff, max_backoff) =
            (dur("min_backoff", &e.min_backoff)?, dur("max_backoff", &e.max_backoff)?);
        if max_backoff < min_backoff {
            return Err(at("max_backoff", "is shorter than min_backoff".into()));
        }
        if e.max_samples_per_send == 0 {
            return Err(at("max_samples_per_send", "must be at least 1".into()));
        }
        if e.queue_max_bytes < 1 << 20 {
            return Err(at("queue_max_bytes", "must be at least 1048576 (1 MiB)".into()));
        }
        let mut headers = Vec::new();
        for (k, v) in &e.headers {
            let bad = |c: &u8| c.is_ascii_control();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(at("headers", format!("{k:?} is not a header name")));
            }
            if v.as_bytes().iter().any(bad) {
                return Err(at("headers", format!("the value of {k:?} has control characters")));
            }
            let lower = k.to_ascii_lowercase();
            if ["content-type", "content-encoding", "content-length", "host"]
                .contains(&lower.as_str())
                || lower.starts_with("x-prometheus-remote-write")
            {
                return Err(at("headers", format!("{k:?} is set by the sender itself")));
            }
            headers.push((k.clone(), v.clone()));
        }
        out.push(Receiver {
            name,
            url,
            queue_max_bytes: e.queue_max_bytes,
            max_samples: e.max_samples_per_send,
            deadline: dur("batch_send_deadline", &e.batch_send_deadline)?,
            timeout: dur("timeout", &e.timeout)?,
            min_backoff,
            max_backoff,
            headers,
        });
    }
    Ok(out)
}

/// Checks `[[remote_write]]` without starting anything (config validation at load).
pub fn validate(entries: &[RemoteWriteConfig]) -> Result<(), String> {
    compile(entries).map(|_| ())
}

/// Counters of one queue, for `/metrics`.
#[derive(Default)]
struct Stats {
    sent_samples: AtomicU64,
    sent_bytes: AtomicU64,
    sent_requests: AtomicU64,
    refused_samples: AtomicU64,
    retries: AtomicU64,
    last_success_ms: AtomicU64,
}

/// Samples waiting in memory for the next move to the spool.
#[derive(Default)]
struct Pending {
    series: Vec<DecodedSeries>,
    samples: usize,
}

struct Queue {
    rx: Receiver,
    pending: Mutex<Pending>,
    wake: Notify,
    spool: Mutex<Spool>,
    stats: Stats,
}

/// A spooled body: samples (u32 LE), then the remote_write body.
const FRAME_HEADER: usize = 4;

impl Queue {
    fn add(&self, batch: &[(Labels, &[Sample])]) {
        let full = {
            let mut p = self.pending.lock();
            for (labels, samples) in batch {
                p.samples += samples.len();
                p.series.push(DecodedSeries { labels: labels.clone(), samples: samples.to_vec() });
            }
            p.samples >= self.rx.max_samples
        };
        if full {
            self.wake.notify_one();
        }
    }

    /// Moves what is in memory to the spool, as bodies of at most `max_samples` samples.
    fn spool_pending(&self) -> Result<(), String> {
        let taken = std::mem::take(&mut *self.pending.lock());
        if taken.samples == 0 {
            return Ok(());
        }
        let mut body: Vec<DecodedSeries> = Vec::new();
        let mut n = 0usize;
        let flush = |body: &mut Vec<DecodedSeries>, n: &mut usize| -> Result<(), String> {
            if *n == 0 {
                return Ok(());
            }
            let enc = ocelli_wire::remote_write::encode(body).map_err(|e| e.to_string())?;
            let mut frame = Vec::with_capacity(FRAME_HEADER + enc.len());
            frame.extend_from_slice(&(*n as u32).to_le_bytes());
            frame.extend_from_slice(&enc);
            self.spool.lock().push(&frame).map_err(|e| e.to_string())?;
            body.clear();
            *n = 0;
            Ok(())
        };
        for mut s in taken.series {
            // a series longer than a request is split
            while !s.samples.is_empty() {
                let room = self.rx.max_samples - n;
                let rest = if s.samples.len() > room { s.samples.split_off(room) } else { vec![] };
                n += s.samples.len();
                body.push(DecodedSeries { labels: s.labels.clone(), samples: s.samples });
                s.samples = rest;
                if n >= self.rx.max_samples {
                    flush(&mut body, &mut n)?;
                }
            }
        }
        flush(&mut body, &mut n)
    }

    /// Sends spooled bodies, oldest first, until the spool is empty or `stop` is set (`Ok`), or
    /// a request must be retried (`Err` with the reason). A request cut short by `stop` stays
    /// queued and is sent again at the next start.
    async fn send_spooled(
        self: &Arc<Self>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            // a long backlog must not hold new samples in memory meanwhile
            if self.pending.lock().samples >= self.rx.max_samples {
                self.spool_now().await;
            }
            let front = self.spool.lock().front_seq().map_err(|e| e.to_string())?;
            let Some((seq, frame)) = front else { return Ok(()) };
            let Some((head, body)) = frame.split_at_checked(FRAME_HEADER) else {
                // cannot happen with our own frames; never block the queue on one
                tracing::error!(remote = %self.rx.name, "a spooled body has no header; dropped");
                self.spool.lock().pop_seq(seq).map_err(|e| e.to_string())?;
                continue;
            };
            let samples = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
            let mut headers: Vec<(&str, String)> = vec![
                ("Content-Encoding", "snappy".into()),
                ("X-Prometheus-Remote-Write-Version", "0.1.0".into()),
                ("User-Agent", concat!("ocelli/", env!("CARGO_PKG_VERSION")).into()),
            ];
            headers.extend(self.rx.headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
            let len = body.len() as u64;
            let request = post(
                &self.rx.url,
                "application/x-protobuf",
                &headers,
                body.to_vec(),
                self.rx.timeout,
            );
            let sent = tokio::select! {
                r = request => r,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            match sent {
                Ok(_) => {
                    let st = &self.stats;
                    st.sent_samples.fetch_add(samples, Ordering::Relaxed);
                    st.sent_bytes.fetch_add(len, Ordering::Relaxed);
                    st.sent_requests.fetch_add(1, Ordering::Relaxed);
                    st.last_success_ms
                        .store(ocelli_model::time::now_ms() as u64, Ordering::Relaxed);
                }
                Err(f) if f.retry => return Err(f.message),
                Err(f) => {
                    self.stats.refused_samples.fetch_add(samples, Ordering::Relaxed);
                    tracing::error!(remote = %self.rx.name, samples, error = %f.message,
                        "the receiver refused a batch for good; dropped");
                }
            }
            // unless a full spool dropped it while it was out
            self.spool.lock().pop_seq(seq).map_err(|e| e.to_string())?;
        }
    }

    /// [`Queue::spool_pending`] on the blocking pool; errors are logged (the samples are
    /// lost to this receiver, not to storage).
    async fn spool_now(self: &Arc<Self>) {
        let q = self.clone();
        let spooled = tokio::task::spawn_blocking(move || q.spool_pending()).await;
        if let Ok(Err(e)) | Err(e) = spooled.map_err(|e| e.to_string()) {
            tracing::error!(remote = %self.rx.name, error = %e, "cannot queue samples on disk");
        }
    }

    /// Spools and sends until `stop`, then spools what is left in memory (sent at the next
    /// start). Memory holds at most about a deadline's or a request's worth of samples: they
    /// go to disk on time while requests are retried or a backlog is sent.
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff: Option<Duration> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            let wait = retry_at.map_or(self.rx.deadline, |at| {
                self.rx.deadline.min(at.saturating_duration_since(now))
            });
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            self.spool_now().await;
            if retry_at.is_some_and(|at| tokio::time::Instant::now() < at) {
                continue;
            }
            match self.send_spooled(&mut stop).await {
                Ok(()) => (backoff, retry_at) = (None, None),
                Err(why) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let next =
                        backoff.map_or(self.rx.min_backoff, |b| (b * 2).min(self.rx.max_backoff));
                    tracing::warn!(remote = %self.rx.name, error = %why, retry_in = ?next,
                        "remote_write failed; retrying");
                    backoff = Some(next);
                    retry_at = Some(tokio::time::Instant::now() + next);
                }
            }
        }
        self.spool_now().await;
    }
}

/// The queues of every receiver; storage's append observer.
pub struct Forwarder {
    queues: Vec<Arc<Queue>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Forwarder {
    /// Opens each receiver's spool under `data_dir` and starts its sender; `None` without
    /// receivers.
    pub fn start(
        entries: &[RemoteWriteConfig],
        data_dir: &Path,
    ) -> Result<Option<Arc<Forwarder>>, String> {
        let receivers = compile(entries)?;
        if receivers.is_empty() {
            return Ok(None);
        }
        let (stop, rx_stop) = watch::channel(false);
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for rx in receivers {
            let dir = data_dir.join(REMOTE_WRITE_DIR).join(&rx.name);
            let spool = Spool::open_named(&dir, rx.queue_max_bytes, "remote_write queue")
                .map_err(|e| format!("remote_write {:?}: {e}", rx.name))?;
            tracing::info!(remote = %rx.name, url = %rx.url.origin(), queued = spool.len(),
                "remote_write queue started");
            let q = Arc::new(Queue {
                rx,
                pending: Mutex::default(),
                wake: Notify::new(),
                spool: Mutex::new(spool),
                stats: Stats::default(),
            });
            tasks.push(tokio::spawn(q.clone().run(rx_stop.clone())));
            queues.push(q);
        }
        Ok(Some(Arc::new(Forwarder { queues, stop, tasks: Mutex::new(tasks) })))
    }

    /// Stops the senders; what is still in memory goes to the spools.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The `ocelli_remote_write_*` metrics as exposition text.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        type Get = fn(&Queue) -> f64;
        let families: [(&str, &str, &str, Get); 10] = [
            ("samples_total", "counter", "Samples the receiver took (2xx).", |q| {
                q.stats.sent_samples.load(Ordering::Relaxed) as f64
            }),
            ("sent_bytes_total", "counter", "Compressed request bytes the receiver took.", |q| {
                q.stats.sent_bytes.load(Ordering::Relaxed) as f64
            }),
            ("requests_total", "counter", "Requests the receiver took.", |q| {
                q.stats.sent_requests.load(Ordering::Relaxed) as f64
            }),
            (
                "samples_refused_total",
                "counter",
                "Samples in requests the receiver refused for good (4xx other than 429), dropped.",
                |q| q.stats.refused_samples.load(Ordering::Relaxed) as f64,
            ),
            ("retries_total", "counter", "Failed requests that will be tried again.", |q| {
                q.stats.retries.load(Ordering::Relaxed) as f64
            }),
            (
                "batches_dropped_total",
                "counter",
                "Queued requests dropped because the queue was full or a file was damaged.",
                |q| q.spool.lock().dropped() as f64,
            ),
            ("queue_batches", "gauge", "Requests waiting in the on-disk queue.", |q| {
                q.spool.lock().len() as f64
            }),
            ("queue_bytes", "gauge", "Bytes of the on-disk queue.", |q| {
                q.spool.lock().bytes() as f64
            }),
            ("pending_samples", "gauge", "Samples in memory, not yet queued.", |q| {
                q.pending.lock().samples as f64
            }),
            (
                "last_success_timestamp_seconds",
                "gauge",
                "When the receiver last took a request (0: never since start).",
                |q| q.stats.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP ocelli_remote_write_{name} {help}");
            let _ = writeln!(out, "# TYPE ocelli_remote_write_{name} {kind}");
            for q in &self.queues {
                let _ = writeln!(
                    out,
                    "ocelli_remote_write_{name}{{remote=\"{}\",url=\"{}\"}} {}",
                    q.rx.name,
                    q.rx.url.origin(),
                    get(q)
                );
            }
        }
    }
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.queues.iter().map(|q| q.rx.name.as_str()).collect();
        f.debug_struct("Forwarder").field("receivers", &names).finish()
    }
}

impl ocelli_tsdb::AppendObserver for Forwarder {
    fn appended(&self, batch: &[(Labels, &[Sample])]) {
        for q in &self.queues {
            q.add(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str) -> RemoteWriteConfig {
        toml::from_str(&format!("url = {url:?}")).unwrap()
    }

    #[test]
    fn defaults_and_errors_name_the_entry_and_field() {
        let r = compile(&[entry("http://127.0.0.1:8428/api/v1/write")]).unwrap();
        assert_eq!(r[0].name, "0");
        assert_eq!((r[0].max_samples, r[0].deadline), (2000, Duration::from_secs(1)));
        let e = compile(&[entry("http://a/w"), entry("ftp://b")]).unwrap_err();
        assert!(e.starts_with("remote_write[1].url: "), "{e}");
        let bad = RemoteWriteConfig { max_backoff: "10ms".into(), ..entry("http://a/w") };
        assert_eq!(
            compile(&[bad]).unwrap_err(),
            "remote_write[0].max_backoff: is shorter than min_backoff"
        );
        let bad = RemoteWriteConfig { name: Some("../x".into()), ..entry("http://a/w") };
        assert!(compile(&[bad]).unwrap_err().starts_with("remote_write[0].name: "));
        let twice = [
            entry("http://a/w"),
            RemoteWriteConfig { name: Some("0".into()), ..entry("http://b/w") },
        ];
        assert!(compile(&twice).unwrap_err().contains("used by an earlier entry"));
        let mut h = entry("http://a/w");
        h.headers.insert("Content-Encoding".into(), "gzip".into());
        assert!(compile(&[h]).unwrap_err().contains("set by the sender itself"));
        let bad = RemoteWriteConfig { timeout: "soon".into(), ..entry("http://a/w") };
        assert!(compile(&[bad]).unwrap_err().starts_with("remote_write[0].timeout: "));
    }
}
