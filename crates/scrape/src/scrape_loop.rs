//! One target's scrape loop: fetch, parse, label, store, and mark what went stale.
//!
//! A loop is one tokio task. Its first scrape waits until the wall clock reaches the target's
//! offset within the interval (a hash of its labels), so targets spread over the interval and
//! each keeps its phase across restarts; a scrape that overruns skips the ticks it missed.
//!
//! A scrape is a GET with a timeout (connect, headers and body together), the text format in
//! `Accept`, gzip accepted, and `X-Prometheus-Scrape-Timeout-Seconds`; the connection is kept
//! for the next scrape. The body is capped before and after gunzip. What it holds is parsed by
//! `ocelli_wire::exposition`, given the target's labels (a clash renames the scraped label
//! `exported_<name>` unless `honor_labels`), run through `metric_relabel_configs`, checked
//! against `sample_limit`, and stored with the five synthetic series (`up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`) in one `Db::append` on the
//! blocking pool ([`process`] is that step, pure and tested alone).
//!
//! Staleness as Prometheus: a series of the previous successful scrape that is absent now gets
//! a stale marker at this scrape's timestamp; a failed scrape (unreachable, HTTP error, bad
//! body, sample limit) stores `up 0` and marks every series of the previous scrape stale. A
//! series exposed with its own timestamp is never marked. When the loop is stopped for good
//! (target gone, server shutting down) it marks its last series and its synthetic series stale;
//! when it is stopped to be restarted with new settings it hands its state to its successor
//! instead, so a reload leaves no gap. A target whose series go on arriving another way (an
//! agent moved from pull to push) is stopped with [`Stop::KeepSeries`]: only its synthetic
//! series are marked, so the pushed samples continue the scraped series without a gap.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ocelli_model::{Label, Labels, STALE_NAN, Sample};
use ocelli_tsdb::{Db, SeriesSamples};
use tokio::sync::oneshot;

use super::relabel::{LabelMap, relabel};
use super::target::TargetSpec;

/// What the `Accept` header asks for: the text format (our parser does not take OpenMetrics'
/// float-second timestamps, so OpenMetrics is not asked for).
const ACCEPT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

/// Why a loop is told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// For good: mark the last series stale.
    Stale,
    /// To be replaced by a loop with new settings: hand the state over, mark nothing.
    Handover,
    /// For good, but the scraped series continue from another source: mark only the synthetic
    /// series (`up`, `scrape_*`) stale.
    KeepSeries,
}

/// What a loop remembers between scrapes, and hands to its successor.
#[derive(Debug, Default)]
pub struct LoopState {
    /// Series of the last successful scrape that carry the scrape's timestamp.
    prev: HashSet<Labels>,
    /// Whether the synthetic series have been written: a target never scraped has nothing to
    /// mark stale.
    scraped: bool,
}

/// The target's health as the targets API shows it.
#[derive(Clone, Debug, Default)]
pub struct Health {
    /// None before the first scrape.
    pub last_scrape: Option<SystemTime>,
    pub last_duration: Duration,
    /// Empty when the last scrape succeeded.
    pub last_error: String,
    /// When the last successful scrape started; None if none has succeeded.
    pub last_success: Option<SystemTime>,
    /// Failed scrapes since the last successful one.
    pub consecutive_failures: u32,
    /// The `TYPE` / `HELP` / `UNIT` lines of the last scrape that had any
    /// (`/api/v1/targets/metadata`).
    pub metadata: Arc<Vec<ocelli_wire::exposition::Metadata>>,
}

/// The outcome of one scrape, before storing.
#[derive(Debug, PartialEq)]
pub struct Processed {
    pub batch: Vec<SeriesSamples>,
    pub error: Option<String>,
    /// The body's `TYPE` / `HELP` / `UNIT` lines (empty when the scrape failed).
    pub metadata: Vec<ocelli_wire::exposition::Metadata>,
}

/// Where a loop's results go: the samples to storage, the metadata to the metadata API.
#[derive(Clone, Debug)]
pub struct Sinks {
    pub db: Arc<Db>,
    pub metadata: Arc<ocelli_storage::MetadataStore>,
}

/// What [`samples`] returns: the series, the number of samples scraped, the metadata.
type Scraped = (Vec<SeriesSamples>, usize, Vec<ocelli_wire::exposition::Metadata>);

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Runs until told to stop; returns the state for a successor (empty after a `Stop::Stale`).
pub async fn run(
    t: Arc<TargetSpec>,
    sinks: Sinks,
    health: Arc<Mutex<Health>>,
    mut stop: oneshot::Receiver<Stop>,
    mut state: LoopState,
) -> LoopState {
    let Sinks { db, metadata } = sinks;
    let mut conn = Conn::default();
    let mut next = tokio::time::Instant::now() + first_wait(&t, SystemTime::now());
    loop {
        tokio::select! {
            biased;
            s = &mut stop => return finish(&t, &db, s.unwrap_or(Stop::Stale), state).await,
            _ = tokio::time::sleep_until(next) => {}
        }
        let started = SystemTime::now();
        let t0 = Instant::now();
        let fetched = tokio::select! {
            biased;
            s = &mut stop => return finish(&t, &db, s.unwrap_or(Stop::Stale), state).await,
            r = tokio::time::timeout(t.timeout, conn.fetch(&t)) => r,
        };
        let body = match fetched {
            Ok(r) => r,
            Err(_) => Err(format!(
                "scrape timed out after {}",
                ocelli_model::time::format_duration(t.timeout)
            )),
        };
        if body.is_err() {
            conn.sender = None;
        }
        let elapsed = t0.elapsed();
        let ts = unix_ms(started);
        let (db2, t2, prev) = (db.clone(), t.clone(), std::mem::take(&mut state));
        let metadata2 = metadata.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let (p, new_state) = process(&t2, body, ts, elapsed, &prev);
            metadata2.record(&p.metadata);
            let stored = db2.append(&p.batch).map_err(|e| format!("storing the scrape: {e}"));
            (p.error.map_or(stored, Err), new_state, p.metadata)
        })
        .await;
        let mut scraped_metadata = Vec::new();
        let error = match stored {
            Ok((result, new_state, meta)) => {
                state = new_state;
                scraped_metadata = meta;
                result.err().unwrap_or_default()
            }
            Err(e) => format!("internal: {e}"),
        };
        if !error.is_empty() {
            tracing::debug!(target_url = %t.url, error = %error, "scrape failed");
        }
        let mut h = health.lock().unwrap_or_else(|e| e.into_inner());
        if error.is_empty() {
            h.last_success = Some(started);
            h.consecutive_failures = 0;
        } else {
            h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        }
        h.last_scrape = Some(started);
        h.last_duration = elapsed;
        h.last_error = error;
        if !scraped_metadata.is_empty() {
            h.metadata = Arc::new(scraped_metadata);
        }
        drop(h);
        next += t.interval;
        let now = tokio::time::Instant::now();
        while next <= now {
            next += t.interval;
        }
    }
}

/// Time from `now` to the target's next offset within its interval.
fn first_wait(t: &TargetSpec, now: SystemTime) -> Duration {
    let interval = t.interval.as_nanos().max(1);
    let offset = u128::from(t.labels.series_id().0) % interval;
    let phase = now.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0) % interval;
    let wait = (offset + interval - phase) % interval;
    Duration::from_nanos(wait as u64)
}

/// Marks the last series (on `Stop::Stale`) and the synthetic ones (on `Stop::Stale` and
/// `Stop::KeepSeries`) stale and returns the state.
async fn finish(t: &Arc<TargetSpec>, db: &Arc<Db>, how: Stop, state: LoopState) -> LoopState {
    if how == Stop::Handover || !state.scraped {
        return state;
    }
    let ts = unix_ms(SystemTime::now());
    let stale = Sample::new(ts, STALE_NAN);
    let scraped = if how == Stop::Stale { state.prev } else { HashSet::new() };
    let mut batch: Vec<SeriesSamples> =
        scraped.into_iter().map(|labels| SeriesSamples { labels, samples: vec![stale] }).collect();
    for name in SYNTHETIC {
        batch.push(SeriesSamples { labels: synthetic_labels(t, name), samples: vec![stale] });
    }
    let db = db.clone();
    let job = t.job.clone();
    let url = t.url.clone();
    match tokio::task::spawn_blocking(move || db.append(&batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(%job, %url, error = %e, "cannot store end-of-run stale markers")
        }
        Err(e) => tracing::warn!(%job, %url, error = %e, "cannot store end-of-run stale markers"),
    }
    LoopState::default()
}

const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn synthetic_labels(t: &TargetSpec, name: &str) -> Labels {
    let mut v: Vec<Label> = t.labels.iter().filter(|l| l.name != "__name__").cloned().collect();
    v.push(Label::new("__name__", name));
    v.sort();
    Labels::from_sorted(v)
}

/// Gives a scraped series the target's labels. With `honor_labels` the scraped value wins a
/// clash; without, the scraped label is renamed `exported_<name>` (more `exported_` prefixes
/// while that name is taken too) and the target's value is set.
fn add_target_labels(t: &TargetSpec, scraped: &Labels) -> LabelMap {
    let mut m: LabelMap = scraped.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
    for l in t.labels.iter() {
        if t.honor_labels {
            m.entry(l.name.clone()).or_insert_with(|| l.value.clone());
            continue;
        }
        if let Some(old) = m.insert(l.name.clone(), l.value.clone()) {
            let mut name = format!("exported_{}", l.name);
            while m.contains_key(&name) {
                name = format!("exported_{name}");
            }
            m.insert(name, old);
        }
    }
    m
}

/// Turns one scrape's result into the batch to store (samples, stale markers and synthetic
/// series) and the state for the next scrape. `body` is the response body or the reason the
/// scrape failed; `ts` is the scrape's start in ms.
pub fn process(
    t: &TargetSpec,
    body: Result<Bytes, String>,
    ts: i64,
    duration: Duration,
    prev: &LoopState,
) -> (Processed, LoopState) {
    let outcome = body.and_then(|b| samples(t, &b, ts));
    let mut metadata = Vec::new();
    let mut new_state = LoopState { prev: HashSet::new(), scraped: true };
    let (mut batch, error, scraped, post) = match outcome {
        Ok((batch, scraped, meta)) => {
            metadata = meta;
            let post = batch.iter().map(|s| s.samples.len()).sum::<usize>();
            for s in &batch {
                if s.samples.iter().any(|x| x.t == ts) {
                    new_state.prev.insert(s.labels.clone());
                }
            }
            (batch, None, scraped, post)
        }
        Err(e) => (Vec::new(), Some(e), 0, 0),
    };
    // new among the series tracked for staleness (those without their own timestamp)
    let added = new_state.prev.difference(&prev.prev).count();
    let stale = Sample::new(ts, STALE_NAN);
    for gone in prev.prev.difference(&new_state.prev) {
        batch.push(SeriesSamples { labels: gone.clone(), samples: vec![stale] });
    }
    let up = if error.is_none() { 1.0 } else { 0.0 };
    let values = [
        up,
        duration.as_secs_f64(),
        scraped as f64,
        post as f64,
        if error.is_none() { added as f64 } else { 0.0 },
    ];
    for (name, v) in SYNTHETIC.iter().zip(values) {
        batch.push(SeriesSamples {
            labels: synthetic_labels(t, name),
            samples: vec![Sample::new(ts, v)],
        });
    }
    (Processed { batch, error, metadata }, new_state)
}

/// Parses, labels and relabels a body; returns the series, the number of samples scraped and
/// the body's metadata.
fn samples(t: &TargetSpec, body: &[u8], ts: i64) -> Result<Scraped, String> {
    let limits = ocelli_wire::exposition::Limits {
        max_body_bytes: t.body_limit,
        ..ocelli_wire::exposition::Limits::default()
    };
    let parsed = ocelli_wire::exposition::decode(body, ts, &limits)
        .map_err(|e| format!("parsing the response: {e}"))?;
    let scraped: usize = parsed.series.iter().map(|s| s.samples.len()).sum();
    let mut out: Vec<SeriesSamples> = Vec::with_capacity(parsed.series.len());
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(parsed.series.len());
    let mut post = 0usize;
    for s in parsed.series {
        let mut m = add_target_labels(t, &s.labels);
        if !relabel(&t.metric_relabel, &mut m) {
            continue;
        }
        let labels = Labels::from_sorted(
            m.into_iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| Label::new(n, v)).collect(),
        );
        labels.validate().map_err(|e| format!("series {labels} after metric relabelling: {e}"))?;
        let mut samples = s.samples;
        if !t.honor_timestamps {
            for x in &mut samples {
                x.t = ts;
            }
        }
        post += samples.len();
        if t.sample_limit > 0 && post > t.sample_limit {
            return Err(format!(
                "sample_limit exceeded: more than {} samples after metric relabelling",
                t.sample_limit
            ));
        }
        // relabelling can make two series one: keep them as one, in body order
        match index.get(&labels) {
            Some(&i) => out[i].samples.extend(samples),
            None => {
                index.insert(labels.clone(), out.len());
                out.push(SeriesSamples { labels, samples });
            }
        }
    }
    Ok((out, scraped, parsed.metadata))
}

/// Opens an HTTP/1.1 connection to `address` (`host:port`), over TLS with `tls` (the
/// certificate must name the host); also used by the registry's on-demand calls.
pub async fn connect(
    address: &str,
    tls: Option<&crate::config::ClientTls>,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let stream = ocelli_tls::connect_stream(stream, tls.map(|c| (c.clone(), host)))
        .await
        .map_err(|e| format!("TLS with {address}: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {address}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A kept-alive HTTP/1.1 connection to the target.
#[derive(Default)]
struct Conn {
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Conn {
    /// GETs the target's metrics; the body, gunzipped, capped at the target's limit.
    async fn fetch(&mut self, t: &TargetSpec) -> Result<Bytes, String> {
        let reusable = match self.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => connect(&t.address, t.tls.as_ref()).await?,
        };
        let req = hyper::Request::get(&t.path_and_query)
            .header(hyper::header::HOST, &t.address)
            .header(hyper::header::ACCEPT, ACCEPT)
            .header(hyper::header::ACCEPT_ENCODING, "gzip")
            .header(hyper::header::USER_AGENT, concat!("Ocelli/", env!("CARGO_PKG_VERSION")))
            .header("X-Prometheus-Scrape-Timeout-Seconds", t.timeout.as_secs_f64().to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building the request for {}: {e}", t.url))?;
        let resp = sender.send_request(req).await.map_err(|e| format!("GET {}: {e}", t.url))?;
        let (parts, body) = resp.into_parts();
        if parts.status != hyper::StatusCode::OK {
            return Err(format!("server returned HTTP status {}", parts.status));
        }
        let body = Limited::new(body, t.body_limit).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                format!("response body is over the limit of {} bytes", t.body_limit)
            } else {
                format!("reading the response body: {e}")
            }
        })?;
        self.sender = Some(sender);
        ocelli_http::request_body(&parts.headers, body.to_bytes(), t.body_limit)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(honor_labels: bool, honor_timestamps: bool, sample_limit: usize) -> TargetSpec {
        TargetSpec {
            job: "j".into(),
            labels: Labels::from_pairs([("instance", "h:1"), ("job", "j")]).unwrap(),
            address: "h:1".into(),
            path_and_query: "/metrics".into(),
            url: "http://h:1/metrics".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            honor_labels,
            honor_timestamps,
            sample_limit,
            body_limit: 1 << 20,
            metric_relabel: Arc::new(Vec::new()),
            metric_relabel_configs: Vec::new(),
            tls: None,
        }
    }

    fn find<'a>(p: &'a Processed, name: &str) -> Vec<&'a SeriesSamples> {
        p.batch.iter().filter(|s| s.labels.metric_name() == Some(name)).collect()
    }

    fn value(p: &Processed, name: &str) -> f64 {
        find(p, name)[0].samples[0].v
    }

    #[test]
    fn labels_synthetic_series_and_staleness() {
        let t = spec(false, true, 0);
        let body = "a{job=\"inner\"} 1\nb 2\nc 3 1000\n";
        let (p, st) = process(
            &t,
            Ok(Bytes::from(body)),
            5000,
            Duration::from_millis(20),
            &LoopState::default(),
        );
        assert_eq!(p.error, None);
        let a = &find(&p, "a")[0].labels;
        assert_eq!(a.get("job"), Some("j"));
        assert_eq!(a.get("exported_job"), Some("inner"));
        assert_eq!(a.get("instance"), Some("h:1"));
        // an exposed timestamp is kept, and such a series is not tracked for staleness
        assert_eq!(find(&p, "c")[0].samples, vec![Sample::new(1000, 3.0)]);
        assert_eq!(st.prev.len(), 2);
        assert_eq!(value(&p, "up"), 1.0);
        assert_eq!(value(&p, "scrape_duration_seconds"), 0.02);
        assert_eq!(value(&p, "scrape_samples_scraped"), 3.0);
        assert_eq!(value(&p, "scrape_samples_post_metric_relabeling"), 3.0);
        assert_eq!(value(&p, "scrape_series_added"), 2.0);
        assert_eq!(find(&p, "up")[0].labels.to_string(), "up{instance=\"h:1\", job=\"j\"}");

        // b is gone: marked stale at this scrape's time; a is not new
        let (p, st2) =
            process(&t, Ok(Bytes::from("a{job=\"inner\"} 1\n")), 6000, Duration::ZERO, &st);
        let b = find(&p, "b");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].samples.len(), 1);
        assert!(ocelli_model::is_stale_nan(b[0].samples[0].v));
        assert_eq!(b[0].samples[0].t, 6000);
        assert!(find(&p, "c").is_empty());
        assert_eq!(value(&p, "scrape_series_added"), 0.0);

        // a failed scrape: up 0, everything of the last scrape stale
        let (p, st3) = process(&t, Err("cannot connect".into()), 7000, Duration::ZERO, &st2);
        assert_eq!(p.error.as_deref(), Some("cannot connect"));
        assert_eq!(value(&p, "up"), 0.0);
        assert!(ocelli_model::is_stale_nan(find(&p, "a")[0].samples[0].v));
        assert!(st3.prev.is_empty());
    }

    #[test]
    fn honor_labels_and_timestamps() {
        let t = spec(true, false, 0);
        let (p, _) = process(
            &t,
            Ok(Bytes::from("a{job=\"inner\"} 1 1000\n")),
            5000,
            Duration::ZERO,
            &LoopState::default(),
        );
        let a = find(&p, "a")[0];
        assert_eq!(a.labels.get("job"), Some("inner"));
        assert_eq!(a.labels.get("exported_job"), None);
        assert_eq!(a.samples, vec![Sample::new(5000, 1.0)]);
    }

    #[test]
    fn exported_prefix_repeats_while_taken() {
        let t = spec(false, true, 0);
        let (p, _) = process(
            &t,
            Ok(Bytes::from("a{instance=\"x\",exported_instance=\"y\"} 1\n")),
            1,
            Duration::ZERO,
            &LoopState::default(),
        );
        let a = &find(&p, "a")[0].labels;
        assert_eq!(a.get("instance"), Some("h:1"));
        assert_eq!(a.get("exported_instance"), Some("y"));
        assert_eq!(a.get("exported_exported_instance"), Some("x"));
    }

    #[test]
    fn sample_limit_and_bad_body_fail_the_whole_scrape() {
        let t = spec(false, true, 2);
        let prev = LoopState {
            prev: HashSet::from([Labels::from_pairs([("__name__", "old")]).unwrap()]),
            scraped: true,
        };
        let (p, st) = process(&t, Ok(Bytes::from("a 1\nb 2\nc 3\n")), 10, Duration::ZERO, &prev);
        assert_eq!(
            p.error.as_deref(),
            Some("sample_limit exceeded: more than 2 samples after metric relabelling")
        );
        assert!(find(&p, "a").is_empty());
        assert!(ocelli_model::is_stale_nan(find(&p, "old")[0].samples[0].v));
        assert_eq!(value(&p, "up"), 0.0);
        assert!(st.prev.is_empty());
        let (p, _) =
            process(&t, Ok(Bytes::from("a{ 1\n")), 10, Duration::ZERO, &LoopState::default());
        assert!(p.error.unwrap().starts_with("parsing the response: line 1, column"));
    }

    #[test]
    fn metric_relabelling_drops_and_merges() {
        let mut t = spec(false, true, 0);
        let rules: Vec<crate::relabel::RelabelConfig> = toml::from_str::<toml::Table>(
            "[[r]]\nsource_labels = [\"__name__\"]\nregex = \"drop_.*\"\naction = \"drop\"\n[[r]]\nregex = \"cpu\"\naction = \"labeldrop\"\n",
        )
        .unwrap()["r"]
            .clone()
            .try_into()
            .unwrap();
        t.metric_relabel = Arc::new(crate::relabel::compile_all("m", &rules).unwrap());
        let (p, _) = process(
            &t,
            Ok(Bytes::from("drop_me 1\nx{cpu=\"0\"} 1\nx{cpu=\"1\"} 2\n")),
            10,
            Duration::ZERO,
            &LoopState::default(),
        );
        assert!(find(&p, "drop_me").is_empty());
        let x = find(&p, "x");
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].samples.len(), 2);
        assert_eq!(value(&p, "scrape_samples_scraped"), 3.0);
        assert_eq!(value(&p, "scrape_samples_post_metric_relabeling"), 2.0);
    }

    #[test]
    fn offsets_spread_and_stay_within_the_interval() {
        let t = spec(false, true, 0);
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let w = first_wait(&t, now);
        assert!(w < t.interval);
        // the phase is fixed: waiting w and then asking again gives a whole interval (or 0)
        let again = first_wait(&t, now + w);
        assert!(again.is_zero() || again == t.interval, "{again:?}");
    }
}
