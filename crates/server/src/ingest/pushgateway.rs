//! The Prometheus Pushgateway's push API on an append-only store: `PUT`, `POST` and `DELETE`
//! on `/metrics/job/<job>{/<label>/<value>}` (and `/metrics/job@base64/<job>...`).
//!
//! **Grouping key.** The path names the group: `job` plus any label pairs after it. A label
//! name ending in `@base64` (and `job@base64`) has its value in base64 with the URL-safe
//! alphabet, padding optional, which is how a value with `/` in it, or an empty value
//! (`/instance@base64/=`), is written. Label names must be valid and must not start with `__`;
//! a name may appear once. Each path segment is percent-decoded on its own, so an escaped `/`
//! (`%2F`) stays inside its value. An empty value means the label is absent (Prometheus has no
//! empty labels), so `{job="a", instance=""}` is the same group as `{job="a"}`.
//!
//! **Body.** The text exposition format ([`ocelli_wire::exposition`]), plain or gzip; the
//! Pushgateway's delimited-protobuf bodies are answered 415. As in the Pushgateway, a sample may
//! not carry a timestamp (400): every sample is stamped with the push time. The grouping
//! labels are added to every series; a series that has one of them with another value is a 400.
//! `push_time_seconds{<grouping key>}` is written with each push (and may not be pushed).
//!
//! **Answering until deleted.** The Pushgateway keeps the last push of each group and serves it
//! on every scrape, so a pushed group answers queries forever (the standard alert `time() -
//! push_time_seconds{job="backup"} > 86400` relies on it). Here a push is stored like one
//! scrape, and every `[ingest] pushgateway_refresh` (1 minute by default; at most the query
//! lookback) [`refresh`] writes each live group's series again at the current time with their
//! last values, `push_time_seconds` (whose value stays the push time) included: what a
//! Prometheus scraping a Pushgateway would store, so PromQL cannot tell them apart. The groups
//! to refresh are kept in [`Groups`], seeded at start from the store (the `push_time_seconds`
//! series written within the retention whose last sample is not a stale marker), so groups
//! come back after a restart, however long the server was down.
//!
//! **Replacing, without deleting.** What the Pushgateway replaces or deletes is ended with a
//! stale marker ([`ocelli_model::STALE_NAN`]) at the push time, written in the same batch as
//! the push: `PUT` ends the group's series that the push does not contain, `POST` only those of
//! the metric families named in the body (a histogram family `x` covers `x_bucket`, `x_sum`,
//! `x_count`...), and `DELETE` (answered 202) ends all of the group's series, its
//! `push_time_seconds` included.
//!
//! A group's series are found from the store, so that this holds across restarts: a series
//! belongs to the group if it has the group's labels, its latest sample is not a stale marker,
//! lies in the last 5 minutes (or since the group's last write, when that is earlier), and was
//! written at one of the group's push or refresh times (a sample of its `push_time_seconds`) —
//! so series of the same `job` from other ingest paths are
//! left alone. A series that also has the labels of a more specific group pushed at the same
//! millisecond belongs to that group. Pushes are serialised, so two pushes never both replace
//! the same series.
//!
//! Deliberately absent: `push_failure_time_seconds`, the Pushgateway's consistency checks
//! across groups (the same series pushed into two groups simply has both groups' samples), its
//! metrics API and web UI.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{MethodRouter, put};
use base64::Engine as _;
use ocelli_model::{Label, Labels, METRIC_NAME, Matcher, STALE_NAN, Sample, is_stale_nan};
use ocelli_tsdb::{Db, SeriesSamples};
use ocelli_wire::exposition::{self, MetricKind, Parsed};
use ocelli_wire::remote_write::DecodedSeries;

use super::{AppState, blocking, now_ms, read_body, request_body};
use crate::{Error, Result};

/// The series written with every push, per group, valued with the push time in seconds.
pub const PUSH_TIME: &str = "push_time_seconds";

/// How far back a group's series are looked for: Prometheus' default lookback, beyond which a
/// series is invisible to queries anyway.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// One push at a time, so that finding a group's series and writing the push are one step.
static PUSH_LOCK: Mutex<()> = Mutex::new(());

/// The live groups (grouping key, sorted) and when each was last written, pushed or
/// refreshed; `None` until seeded from the store.
#[derive(Debug, Default)]
pub(crate) struct Groups(parking_lot::Mutex<Option<HashMap<Vec<Label>, i64>>>);

impl Groups {
    fn wrote(&self, group: &[Label], now: i64, op: Op) {
        if let Some(map) = self.0.lock().as_mut() {
            match op {
                Op::Delete => map.remove(group),
                Op::Put | Op::Post => map.insert(group.to_vec(), now),
            };
        }
    }
}

/// Refreshes the pushed groups every `interval` until `stop` turns true; the first pass seeds
/// [`Groups`] from the store, looking back `retention_ms`.
pub(crate) async fn refresh_loop(
    db: std::sync::Arc<Db>,
    groups: std::sync::Arc<Groups>,
    interval: Duration,
    retention_ms: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let (db, groups) = (db.clone(), groups.clone());
        let done =
            tokio::task::spawn_blocking(move || refresh(&db, &groups, now_ms(), retention_ms))
                .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "pushgateway: refreshing pushed groups failed; will retry")
            }
            Err(e) => tracing::error!(error = %e, "pushgateway: refresh task failed"),
        }
    }
}

/// Writes every live group's series again at `now` with their last values (seeding the groups
/// from the store first if needed); returns the number of series written. Groups with no live
/// series left are forgotten.
pub(crate) fn refresh(db: &Db, groups: &Groups, now: i64, retention_ms: i64) -> Result<usize> {
    let _guard = PUSH_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut seeded = groups.0.lock();
    let map = match &mut *seeded {
        Some(map) => map,
        None => seeded.insert(seed(db, now, retention_ms)?),
    };
    let mut batch = Vec::new();
    let mut gone = Vec::new();
    for (group, last) in map.iter_mut() {
        let series = group_series(db, group, (*last).min(now - LOOKBACK_MS))?;
        if series.is_empty() {
            gone.push(group.clone());
            continue;
        }
        for (labels, sample) in series {
            batch.push(SeriesSamples { labels, samples: vec![Sample::new(now, sample.v)] });
        }
        *last = now;
    }
    for g in gone {
        map.remove(&g);
    }
    if !batch.is_empty() {
        db.append(&batch)?;
    }
    Ok(batch.len())
}

/// The groups whose `push_time_seconds` has a sample within the retention and whose latest one
/// is not a stale marker, with that sample's time.
fn seed(db: &Db, now: i64, retention_ms: i64) -> Result<HashMap<Vec<Label>, i64>> {
    let m = [Matcher::equal(METRIC_NAME, PUSH_TIME)];
    let mut out = HashMap::new();
    for s in db.select(&m, now.saturating_sub(retention_ms), i64::MAX)? {
        let Some(last) = s.samples.last() else { continue };
        if is_stale_nan(last.v) {
            continue;
        }
        let group: Vec<Label> =
            s.labels.iter().filter(|l| l.name != METRIC_NAME).cloned().collect();
        out.insert(group, last.t);
    }
    Ok(out)
}

/// What a request does to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// `PUT`: the push replaces the whole group.
    Put,
    /// `POST`: the push replaces the metric families it names.
    Post,
    Delete,
}

/// The methods of one push route; `job_base64` for `/metrics/job@base64/...`.
pub(super) fn routes(job_base64: bool) -> MethodRouter<AppState> {
    let handler = move |op| {
        move |State(st): State<AppState>,
              caller: crate::auth::Caller,
              Path(rest): Path<String>,
              headers: HeaderMap,
              body: Body| async move {
            push(st, &caller, &rest, job_base64, op, headers, body).await
        }
    };
    put(handler(Op::Put)).post(handler(Op::Post)).delete(handler(Op::Delete))
}

async fn push(
    st: AppState,
    caller: &crate::auth::Caller,
    rest: &str,
    job_base64: bool,
    op: Op,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    let mut group = grouping_key(rest, job_base64)?;
    // a namespace-scoped pusher's labels join the grouping key, overriding the path's: its
    // groups are its own (set on every series of the group, as grouping labels are), and it
    // can neither replace nor delete another namespace's
    if let Some(p) = &caller.0 {
        group.retain(|l| !p.labels.contains_key(&l.name));
        group.extend(p.labels.iter().map(|(n, v)| Label::new(n.clone(), v.clone())));
        group.sort();
    }
    if op == Op::Delete {
        blocking(move || {
            let now = now_ms();
            apply(&st.db, &group, None, Op::Delete, now)?;
            st.push_groups.wrote(&group, now, Op::Delete);
            Ok(())
        })
        .await?;
        return Ok(StatusCode::ACCEPTED);
    }
    check_content_type(&headers)?;
    let body = read_body(body, st.limits.max_body_bytes).await?;
    blocking(move || {
        let max = st.limits.max_decompressed_bytes;
        let text = request_body(&headers, body, max)?;
        let now = now_ms();
        let limits = exposition::Limits { max_body_bytes: max, ..exposition::Limits::default() };
        let parsed =
            exposition::decode(&text, now, &limits).map_err(|e| Error::BadData(e.to_string()))?;
        if let Some(line) = parsed.first_timestamp_line {
            return Err(Error::BadData(format!(
                "line {line}: pushed metrics must not have timestamps (each sample gets the push \
                 time)"
            )));
        }
        st.metadata.record(&parsed.metadata);
        apply(&st.db, &group, Some(parsed), op, now)?;
        st.push_groups.wrote(&group, now, op);
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}

/// The grouping key from the path after `/metrics/job/`: sorted pairs, `job` first added,
/// empty values dropped.
fn grouping_key(rest: &str, job_base64: bool) -> Result<Vec<Label>> {
    let bad = |msg: String| Error::BadData(msg);
    let mut parts = rest.split('/');
    let job = parts.next().unwrap_or_default();
    let job = if job_base64 {
        decode_base64(job).map_err(|e| bad(format!("job name {job:?}: {e}")))?
    } else {
        job.to_owned()
    };
    if job.is_empty() {
        return Err(bad("job name is required".to_owned()));
    }
    let mut rest: Vec<&str> = parts.collect();
    if rest == [""] {
        rest.clear(); // `/metrics/job/<job>/`
    }
    if !rest.len().is_multiple_of(2) {
        return Err(bad(format!(
            "odd number of components in the label part of the path {:?}: expected \
             /<label>/<value> pairs",
            rest.join("/")
        )));
    }
    let mut pairs = vec![Label::new("job", job)];
    for pair in rest.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        let (name, base64) = match name.strip_suffix("@base64") {
            Some(n) => (n, true),
            None => (name, false),
        };
        if !ocelli_model::is_valid_label_name(name) || name.starts_with("__") {
            return Err(bad(format!("improper label name {name:?} in the path")));
        }
        if pairs.iter().any(|l| l.name == name) {
            return Err(bad(format!("label {name:?} appears twice in the grouping key")));
        }
        let value = if base64 {
            decode_base64(value).map_err(|e| bad(format!("label {name:?}: {e}")))?
        } else {
            value.to_owned()
        };
        pairs.push(Label::new(name, value));
    }
    pairs.retain(|l| !l.value.is_empty());
    pairs.sort();
    Ok(pairs)
}

/// The Pushgateway's base64: URL-safe alphabet, `=` padding optional.
fn decode_base64(s: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("invalid base64 {s:?} ({e})"))?;
    String::from_utf8(bytes).map_err(|_| format!("base64 {s:?} does not decode to UTF-8"))
}

/// Refuses the Pushgateway's other body format, delimited protobuf `MetricFamily` messages.
fn check_content_type(headers: &HeaderMap) -> Result<()> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
        return Err(Error::UnsupportedMediaType(
            "protobuf push bodies are not supported: push the text format \
             (Content-Type: text/plain; version=0.0.4)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// Writes a push (or a delete) and the stale markers it implies as one batch.
fn apply(db: &Db, group: &[Label], parsed: Option<Parsed>, op: Op, now: i64) -> Result<()> {
    let mut batch: Vec<SeriesSamples> = Vec::new();
    let mut pushed: HashSet<Labels> = HashSet::new();
    let mut families: HashSet<String> = HashSet::new();
    if let Some(parsed) = parsed {
        families = family_names(&parsed);
        for s in parsed.series {
            let labels = with_group(s, group)?;
            pushed.insert(labels.labels.clone());
            batch.push(SeriesSamples { labels: labels.labels, samples: labels.samples });
        }
        let push_time = labels_with(group, PUSH_TIME);
        pushed.insert(push_time.clone());
        batch.push(SeriesSamples {
            labels: push_time,
            samples: vec![Sample::new(now, now as f64 / 1000.0)],
        });
    }
    let _guard = PUSH_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (labels, _) in group_series(db, group, now - LOOKBACK_MS)? {
        let name = labels.metric_name().unwrap_or_default();
        let ends = match op {
            Op::Put => !pushed.contains(&labels),
            Op::Post => families.contains(name) && !pushed.contains(&labels),
            Op::Delete => true,
        };
        if ends {
            batch.push(SeriesSamples { labels, samples: vec![Sample::new(now, STALE_NAN)] });
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    Ok(db.append(&batch)?)
}

/// A pushed series with the grouping labels added; one of them with another value is an error.
fn with_group(s: DecodedSeries, group: &[Label]) -> Result<DecodedSeries> {
    let name = s.labels.metric_name().unwrap_or_default().to_owned();
    if name == PUSH_TIME {
        return Err(Error::BadData(format!(
            "{PUSH_TIME} is written by the server with each push and may not be pushed"
        )));
    }
    let mut pairs: Vec<Label> = s.labels.into_vec();
    for g in group {
        match pairs.iter().find(|l| l.name == g.name) {
            Some(l) if l.value != g.value => {
                return Err(Error::BadData(format!(
                    "series {name:?} has label {}={:?}, but the grouping key has {}={:?}",
                    l.name, l.value, g.name, g.value
                )));
            }
            Some(_) => {}
            None => pairs.push(g.clone()),
        }
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(DecodedSeries { labels: Labels::from_sorted(pairs), samples: s.samples })
}

/// `group` plus `__name__`.
fn labels_with(group: &[Label], name: &str) -> Labels {
    let mut pairs = group.to_vec();
    pairs.push(Label::new(METRIC_NAME, name));
    pairs.sort_by(|a, b| a.name.cmp(&b.name));
    Labels::from_sorted(pairs)
}

/// Every metric name the families in the body cover: a sample's own name, and for a family
/// with a `TYPE`, the names of its type's series (`x_bucket`, `x_sum`, `x_count`...).
fn family_names(parsed: &Parsed) -> HashSet<String> {
    let kinds: HashMap<&str, MetricKind> =
        parsed.metadata.iter().map(|m| (m.family.as_str(), m.kind)).collect();
    let mut out = HashSet::new();
    for s in &parsed.series {
        let name = s.labels.metric_name().unwrap_or_default();
        let (family, kind) = family_of(name, &kinds);
        out.insert(family.to_owned());
        for suffix in suffixes(kind) {
            out.insert(format!("{family}{suffix}"));
        }
    }
    out
}

/// The family a sample name belongs to, and its type.
fn family_of<'a>(name: &'a str, kinds: &HashMap<&str, MetricKind>) -> (&'a str, MetricKind) {
    if let Some(&kind) = kinds.get(name) {
        return (name, kind);
    }
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_gcount", "_gsum", "_info"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(&kind) = kinds.get(base)
            && suffixes(kind).contains(&suffix)
        {
            return (base, kind);
        }
    }
    (name, MetricKind::Untyped)
}

/// The suffixes of the series a family of `kind` has, besides its own name.
fn suffixes(kind: MetricKind) -> &'static [&'static str] {
    match kind {
        MetricKind::Counter => &["_total", "_created"],
        MetricKind::Histogram => &["_bucket", "_sum", "_count", "_created"],
        MetricKind::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricKind::Summary => &["_sum", "_count", "_created"],
        MetricKind::Info => &["_info"],
        _ => &[],
    }
}

/// The group's live series, as the module doc defines them, its `push_time_seconds` included,
/// each with its latest sample; `since` is how far back its pushes and refreshes are looked for.
fn group_series(db: &Db, group: &[Label], since: i64) -> Result<Vec<(Labels, Sample)>> {
    let by_group: Vec<Matcher> = group.iter().map(|l| Matcher::equal(&l.name, &l.value)).collect();
    let mut m = by_group.clone();
    m.push(Matcher::equal(METRIC_NAME, PUSH_TIME));
    let push_times = db.select(&m, since, i64::MAX)?;
    let times = |s: &SeriesSamples| -> HashSet<i64> {
        s.samples.iter().filter(|x| !is_stale_nan(x.v)).map(|x| x.t).collect()
    };
    // every push_time_seconds found has the group's labels; the group's own has no others
    let (own, more_specific): (Vec<_>, Vec<_>) =
        push_times.iter().partition(|s| s.labels.len() == group.len() + 1);
    let Some(own) = own.first() else {
        return Ok(vec![]);
    };
    let own_times = times(own);
    let Some(&since) = own_times.iter().min() else {
        return Ok(vec![]);
    };
    let others: Vec<(&Labels, HashSet<i64>)> =
        more_specific.iter().map(|s| (&s.labels, times(s))).collect();
    let mut out = Vec::new();
    for s in db.select(&by_group, since, i64::MAX)? {
        let Some(&last) = s.samples.last() else { continue };
        if is_stale_nan(last.v) || !own_times.contains(&last.t) {
            continue;
        }
        let name = s.labels.metric_name().unwrap_or_default();
        if name == PUSH_TIME && s.labels != own.labels {
            continue; // another group's
        }
        let claimed = others.iter().any(|(g, t)| {
            t.contains(&last.t)
                && g.iter()
                    .all(|l| l.name == METRIC_NAME || s.labels.get(&l.name) == Some(&l.value))
        });
        if !claimed {
            out.push((s.labels, last));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(rest: &str, b64: bool) -> String {
        match grouping_key(rest, b64) {
            Ok(pairs) => {
                let v: Vec<String> =
                    pairs.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
                v.join(",")
            }
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn grouping_keys() {
        #[rustfmt::skip]
        let cases: &[(&str, bool, &str)] = &[
            ("backup", false, "job=backup"),
            ("backup/", false, "job=backup"),
            ("backup/instance/db1/zone/eu", false, "instance=db1,job=backup,zone=eu"),
            // base64: URL-safe alphabet, padding optional; an empty value drops the label
            ("backup/path@base64/L3Zhci90bXA", false, "job=backup,path=/var/tmp"),
            ("backup/path@base64/L3Zhci90bXA=", false, "job=backup,path=/var/tmp"),
            ("backup/instance@base64/=", false, "job=backup"),
            ("backup/instance@base64/", false, "job=backup"),
            ("YS9i", true, "job=a/b"),
            ("", false, "error: job name is required"),
            ("=", true, "error: job name is required"),
            ("backup/instance", false, "error: odd number of components in the label part of the path \"instance\": expected /<label>/<value> pairs"),
            ("backup/a/1/b", false, "error: odd number of components in the label part of the path \"a/1/b\": expected /<label>/<value> pairs"),
            ("backup/__x/1", false, "error: improper label name \"__x\" in the path"),
            ("backup/a-b/1", false, "error: improper label name \"a-b\" in the path"),
            ("backup/job/x", false, "error: label \"job\" appears twice in the grouping key"),
            ("backup/a/1/a@base64/Mg", false, "error: label \"a\" appears twice in the grouping key"),
            ("backup/a@base64/!!", false, "error: label \"a\": invalid base64 \"!!\" (Invalid symbol 33, offset 0.)"),
            ("backup/a@base64/_w", false, "error: label \"a\": base64 \"_w\" does not decode to UTF-8"),
            ("a+b", true, "error: job name \"a+b\": invalid base64 \"a+b\" (Invalid symbol 43, offset 1.)"),
        ];
        for &(rest, b64, want) in cases {
            assert_eq!(key(rest, b64), want, "{rest:?}");
        }
    }

    #[test]
    fn families() {
        let parsed = exposition::decode(
            b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n\
              # TYPE c counter\nc_total 1\nplain 1\nplain_sum 2\n# TYPE s summary\ns 1\n",
            0,
            &exposition::Limits::default(),
        )
        .unwrap();
        let mut got: Vec<String> = family_names(&parsed).into_iter().collect();
        got.sort();
        #[rustfmt::skip]
        let want = [
            "c", "c_created", "c_total",
            "h", "h_bucket", "h_count", "h_created", "h_sum",
            "plain", "plain_sum",
            "s", "s_count", "s_created", "s_sum",
        ];
        assert_eq!(got, want);
    }
}
