//! The Prometheus HTTP query API: `/api/v1/query`, `/api/v1/query_range` (both with `stats`),
//! `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`,
//! `/api/v1/status/buildinfo`, `/api/v1/metadata`, `/api/v1/format_query` and `/federate`, with
//! Prometheus' parameters, JSON shapes and error types (parse errors as
//! `invalid parameter "query": L:C: parse error: ...`), so that Grafana's Prometheus data source
//! and other Prometheus clients work unchanged.
//!
//! Parameters come from the query string and, for POST, from a form-encoded body, as in
//! Prometheus. Times are RFC 3339 or Unix seconds with decimals; durations are Prometheus
//! durations (`5m`, `1h30m`) or seconds. Query evaluation runs on the blocking pool (the
//! engine and the storage are synchronous) and answers are written straight into the JSON text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ocelli_model::format_value;
use ocelli_model::{Labels, Matcher, Sample};
use ocelli_promql::{Engine, QueryValue, Resolution};
use ocelli_tsdb::Db;

use crate::state::AppState;
use crate::{Error, Result};
use ocelli_cluster::fanout::FanoutStorage;
use ocelli_http::{blocking, read_body};
use ocelli_model::time::parse_api_duration as parse_duration;
use ocelli_model::time::{MAX_TIME_MS as MAX_TIME, MIN_TIME_MS as MIN_TIME, now_ms, parse_time};
use ocelli_storage::DbStorage;
pub use ocelli_storage::MetadataStore;

/// The Prometheus API version this server implements, reported by `buildinfo` so that clients
/// (Grafana) enable the matching features.
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

/// Called on the thread that ran a query that took long enough to have held much memory; the
/// binary sets it to return that memory to the system (the allocator is the binary's choice).
static AFTER_LARGE_QUERY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Queries that ran at least this long call the hook above.
const LARGE_QUERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Sets the hook run after large queries (once; later calls are ignored).
pub fn set_after_large_query(f: fn()) {
    let _ = AFTER_LARGE_QUERY.set(f);
}

fn after_query(started: std::time::Instant) {
    if started.elapsed() >= LARGE_QUERY
        && let Some(f) = AFTER_LARGE_QUERY.get()
    {
        f();
    }
}

/// The query role's series listing: the label sets of what the stores hold for `matchers` in
/// `[start, end]`, merged as queries merge them.
fn fanout_series(st: &AppState, matchers: &[Matcher], start: i64, end: i64) -> Result<Vec<Labels>> {
    let handle = tokio::runtime::Handle::current();
    let v = st.cluster.fanout.select(&handle, matchers, start, end).map_err(Error::BadGateway)?;
    Ok(v.into_iter().map(|(l, _)| l).collect())
}

/// Whether this server answers over other servers (the query role).
fn is_query_node(st: &AppState) -> bool {
    st.cluster.role == crate::cluster::Role::Query
}

/// The `resolution` parameter: `auto` (the default: rollups where they answer exactly),
/// `raw`, or a window width that divides a day (`5m`, `1h`) to read downsampled data only.
fn resolution(p: &Params) -> Result<Resolution> {
    match p.get("resolution").unwrap_or("") {
        "" | "auto" => Ok(Resolution::Auto),
        "raw" => Ok(Resolution::Raw),
        v => match parse_duration(v) {
            Some(ms) if ms > 0 && ocelli_tsdb::ROLLUP_SPAN_MS % ms == 0 => {
                Ok(Resolution::Fixed(ms))
            }
            _ => Err(Error::BadData(format!(
                "invalid parameter \"resolution\": {v:?} must be auto, raw or a duration that divides a day (e.g. 5m, 1h)"
            ))),
        },
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/metadata", get(metadata))
        .route("/federate", get(federate))
}

/// Request parameters: the query string's, then a form body's (the query API's, and the other
/// endpoints that take parameters as Prometheus does: query_exemplars, Influx's `/query`).
/// A namespace-scoped caller's namespace rides along: every selector the parameters give is
/// joined with `ns="<namespace>"` ([`Params::matchers`]), and queries read through
/// `ocelli_storage::Scoped` ([`evaluate`]).
pub(crate) struct Params(Vec<(String, String)>, Option<Matcher>);

impl Params {
    pub(crate) async fn read(
        raw: Option<String>,
        headers: &HeaderMap,
        body: Body,
        max: usize,
    ) -> Result<Params> {
        let mut v: Vec<(String, String)> =
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            let body = read_body(body, max).await?;
            v.extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Ok(Params(v, None))
    }

    /// The same parameters, confined to the caller's namespace.
    pub(crate) fn for_caller(mut self, caller: &crate::auth::Caller) -> Params {
        self.1 = caller.namespace().map(|ns| Matcher::equal("ns", ns));
        self
    }

    /// The namespace matcher of a namespace-scoped caller.
    pub(crate) fn tenant(&self) -> Option<&Matcher> {
        self.1.as_ref()
    }

    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect()
    }

    pub(crate) fn time(&self, k: &str, default: i64) -> Result<i64> {
        match self.get(k) {
            None | Some("") => Ok(default),
            Some(s) => parse_time(s).ok_or_else(|| {
                Error::BadData(format!(
                    "invalid parameter \"{k}\": cannot parse \"{s}\" to a valid timestamp"
                ))
            }),
        }
    }

    fn required_time(&self, k: &str) -> Result<i64> {
        match self.get(k) {
            None | Some("") => Err(Error::BadData(format!(
                "invalid parameter \"{k}\": cannot parse \"\" to a valid timestamp"
            ))),
            Some(_) => self.time(k, 0),
        }
    }

    fn query(&self) -> Result<String> {
        match self.get("query") {
            Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
            _ => Err(Error::BadData("invalid parameter \"query\": query must not be empty".into())),
        }
    }

    /// `match[]` selectors, each as its `or` branches.
    fn matchers(&self) -> Result<Vec<Vec<Matcher>>> {
        let mut out = Vec::new();
        for m in self.all("match[]") {
            let branches = ocelli_promql::parse_selector(m)
                .map_err(|e| Error::BadData(format!("invalid parameter \"match[]\": {e}")))?;
            for b in branches {
                if b.iter().all(|x| x.matches_empty()) {
                    return Err(Error::BadData(format!(
                        "invalid parameter \"match[]\": match[] must contain at least one non-empty matcher: {m}"
                    )));
                }
                out.push(match &self.1 {
                    Some(ns) => ocelli_storage::scope_matchers(&b, ns),
                    None => b,
                });
            }
        }
        Ok(out)
    }

    /// [`Params::matchers`]; for a namespace-scoped caller without `match[]`, its namespace.
    fn matchers_or_tenant(&self) -> Result<Vec<Vec<Matcher>>> {
        let m = self.matchers()?;
        match &self.1 {
            Some(ns) if m.is_empty() => Ok(vec![vec![ns.clone()]]),
            _ => Ok(m),
        }
    }

    fn limit(&self) -> Result<usize> {
        match self.get("limit") {
            None | Some("") => Ok(0),
            Some(s) => s.parse::<usize>().map_err(|_| {
                Error::BadData(format!(
                    "invalid parameter \"limit\": cannot parse \"{s}\" to a non-negative number"
                ))
            }),
        }
    }
}

fn json_str(out: &mut String, s: &str) {
    // serde_json's escaping of one string cannot fail
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn json_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, &x.name);
        out.push(':');
        json_str(out, &x.value);
    }
    out.push('}');
}

fn point(t: i64, v: &str) -> String {
    let mut s = String::with_capacity(24 + v.len());
    push_time(&mut s, t);
    s.push_str(",\"");
    s.push_str(v);
    s.push_str("\"]");
    s
}

/// Appends `[` and the time in seconds, as Prometheus writes a sample's time.
fn push_time(out: &mut String, t: i64) {
    if t < 0 {
        let _ = write!(out, "[{}", t as f64 / 1000.0);
        return;
    }
    let _ = write!(out, "[{}", t / 1000);
    let ms = t % 1000;
    let _ = match ms {
        0 => Ok(()),
        _ if ms % 100 == 0 => write!(out, ".{}", ms / 100),
        _ if ms % 10 == 0 => write!(out, ".{:02}", ms / 10),
        _ => write!(out, ".{ms:03}"),
    };
}

/// Appends `[t,"v"]` without building strings on the way: a matrix answer writes millions.
fn push_point(out: &mut String, t: i64, v: f64) {
    push_time(out, t);
    out.push_str(",\"");
    ocelli_model::write_value(out, v);
    out.push_str("\"]");
}

fn success(data: &str) -> Response {
    let body = format!("{{\"status\":\"success\",\"data\":{data}}}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn render(v: &QueryValue) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, "{{\"resultType\":\"{}\",\"result\":", v.type_name());
    match v {
        QueryValue::Scalar(t, x) => out.push_str(&point(*t, &format_value(*x))),
        QueryValue::String(t, s) => {
            let mut q = String::new();
            json_str(&mut q, s);
            let p = point(*t, "");
            // replace the empty quoted value with the escaped string
            out.push_str(&p[..p.len() - 3]);
            out.push_str(&q);
            out.push(']');
        }
        QueryValue::Vector(vs) => {
            out.push('[');
            for (i, (l, t, x)) in vs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, l);
                out.push_str(",\"value\":");
                push_point(&mut out, *t, *x);
                out.push('}');
            }
            out.push(']');
        }
        QueryValue::Matrix(ms) => {
            out.push('[');
            for (i, (l, samples)) in ms.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, l);
                out.push_str(",\"values\":[");
                for (j, s) in samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_point(&mut out, s.t, s.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

fn engine_for(st: &AppState, p: &Params) -> Result<Engine> {
    let mut opts = st.engine.options().clone();
    if let Some(t) = p.get("timeout").filter(|t| !t.is_empty()) {
        let ms = parse_duration(t).filter(|ms| *ms > 0).ok_or_else(|| {
            Error::BadData(format!(
                "invalid parameter \"timeout\": cannot parse \"{t}\" to a valid duration"
            ))
        })?;
        opts.timeout = opts.timeout.min(std::time::Duration::from_millis(ms as u64));
    }
    Ok(Engine::new(opts))
}

async fn query(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?.for_caller(&caller);
    let q = p.query()?;
    let t = p.time("time", now_ms())?;
    let r = resolution(&p)?;
    let stats = stats(&p);
    evaluate(&st, &p, move |engine, s| match stats {
        None => Ok((engine.instant_at(s, &q, t, r)?, None)),
        Some(all) => {
            engine.instant_with_stats(s, &q, t, r).map(|(v, x)| (v, Some(per_step(x, all))))
        }
    })
    .await
}

/// The `stats` parameter: `None` without it, `Some(true)` for `stats=all` (per-step sample
/// counts too), `Some(false)` for any other value, as in Prometheus.
fn stats(p: &Params) -> Option<bool> {
    p.get("stats").filter(|s| !s.is_empty()).map(|s| s == "all")
}

fn per_step(mut s: ocelli_promql::QueryStats, all: bool) -> ocelli_promql::QueryStats {
    if !all {
        s.samples.total_queryable_samples_per_step = None;
    }
    s
}

/// `GET|POST /api/v1/format_query`: the expression in `query`, formatted as Prometheus formats
/// it.
async fn format_query(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?;
    let q = p.query()?;
    let formatted = ocelli_promql::format_query(&q).map_err(query_error)?;
    let mut out = String::new();
    json_str(&mut out, &formatted);
    Ok(success(&out))
}

/// A query's error for the API: parse errors name the parameter, as Prometheus words them
/// (`invalid parameter "query": 1:5: parse error: ...`).
pub(crate) fn query_error(e: ocelli_promql::Error) -> Error {
    match e {
        ocelli_promql::Error::Parse(_) => {
            Error::BadData(format!("invalid parameter \"query\": {e}"))
        }
        e => Error::Query(e),
    }
}

/// Runs a query on the blocking pool with the request's engine options and answers with its
/// result; a query that ran long hands its freed memory back afterwards.
async fn evaluate(
    st: &AppState,
    p: &Params,
    run: impl FnOnce(
        &Engine,
        &dyn ocelli_promql::Storage,
    ) -> ocelli_promql::Result<(QueryValue, Option<ocelli_promql::QueryStats>)>
    + Send
    + 'static,
) -> Result<Response> {
    let engine = engine_for(st, p)?;
    let db = st.db.clone();
    let fanout = is_query_node(st).then(|| st.cluster.clone());
    let handle = tokio::runtime::Handle::current();
    let tenant = p.tenant().cloned();
    let v = blocking(move || {
        let max_samples = engine.options().max_samples;
        let t0 = std::time::Instant::now();
        let fan;
        let local;
        let storage: &dyn ocelli_promql::Storage = match &fanout {
            Some(c) => {
                fan = FanoutStorage { fanout: &c.fanout, handle, max_samples };
                &fan
            }
            None => {
                local = DbStorage { db: &db, max_samples };
                &local
            }
        };
        // a namespace-scoped caller's every selection is joined with its namespace
        let v = match tenant {
            Some(ns) => run(&engine, &ocelli_storage::Scoped { inner: storage, ns }),
            None => run(&engine, storage),
        }
        .map_err(query_error);
        after_query(t0);
        v
    })
    .await?;
    let (v, stats) = v;
    let mut data = render(&v);
    if let Some(stats) = stats {
        let json = serde_json::to_string(&stats).map_err(|e| Error::Internal(e.to_string()))?;
        data.pop(); // the closing brace
        let _ = write!(data, ",\"stats\":{json}}}");
    }
    Ok(success(&data))
}

async fn query_range(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?.for_caller(&caller);
    let q = p.query()?;
    let start = p.required_time("start")?;
    let end = p.required_time("end")?;
    let step_s = p.get("step").unwrap_or("");
    let step = parse_duration(step_s).ok_or_else(|| {
        Error::BadData(format!(
            "invalid parameter \"step\": cannot parse \"{step_s}\" to a valid duration"
        ))
    })?;
    let r = resolution(&p)?;
    let stats = stats(&p);
    evaluate(&st, &p, move |engine, s| match stats {
        None => Ok((engine.range_at(s, &q, start, end, step, r)?, None)),
        Some(all) => engine
            .range_with_stats(s, &q, start, end, step, r)
            .map(|(v, x)| (v, Some(per_step(x, all)))),
    })
    .await
}

async fn series(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?.for_caller(&caller);
    let matchers = p.matchers()?;
    if matchers.is_empty() {
        return Err(Error::BadData("no match[] parameter provided".into()));
    }
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let limit = p.limit()?;
    let set = blocking(move || {
        let mut all = std::collections::BTreeSet::new();
        for m in &matchers {
            if is_query_node(&st) {
                all.extend(fanout_series(&st, m, start, end)?);
            } else {
                all.extend(st.db.series(m, start, end, limit)?);
            }
        }
        Ok(all)
    })
    .await?;
    let mut out = String::from("[");
    for (i, l) in set.iter().take(if limit == 0 { usize::MAX } else { limit }).enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_labels(&mut out, l);
    }
    out.push(']');
    Ok(success(&out))
}

fn string_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

async fn labels(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?.for_caller(&caller);
    let matchers = p.matchers_or_tenant()?;
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let limit = p.limit()?;
    let names = union_over(
        &st,
        matchers,
        limit,
        (start, end),
        move |db, m, limit| db.label_names(m, start, end, limit),
        |l, out| out.extend(l.iter().map(|x| x.name.to_string())),
    )
    .await?;
    Ok(success(&string_list(&names)))
}

/// `f` with no matchers (one call, `limit` applied there) or the sorted union of `f` over each
/// `match[]` selector, cut to `limit` (0: no limit); on the blocking pool. On a query node,
/// `from_labels` takes the names or values from the label sets the stores hold for the
/// selectors (every series when there are none) in `range` instead.
async fn union_over(
    st: &AppState,
    matchers: Vec<Vec<Matcher>>,
    limit: usize,
    range: (i64, i64),
    f: impl Fn(&Db, &[Matcher], usize) -> ocelli_tsdb::Result<Vec<String>> + Send + 'static,
    from_labels: impl Fn(&Labels, &mut std::collections::BTreeSet<String>) + Send + 'static,
) -> Result<Vec<String>> {
    let db = st.db.clone();
    let st = st.clone();
    blocking(move || {
        if is_query_node(&st) {
            let selectors = if matchers.is_empty() {
                let any = Matcher::new(
                    ocelli_model::MatchOp::RegexMatch,
                    ocelli_model::METRIC_NAME,
                    ".+",
                )
                .map_err(|e| Error::Internal(e.to_string()))?;
                vec![vec![any]]
            } else {
                matchers
            };
            let mut all = std::collections::BTreeSet::new();
            for m in &selectors {
                for l in fanout_series(&st, m, range.0, range.1)? {
                    from_labels(&l, &mut all);
                }
            }
            return Ok(all.into_iter().take(if limit == 0 { usize::MAX } else { limit }).collect());
        }
        if matchers.is_empty() {
            return Ok(f(&db, &[], limit)?);
        }
        let mut all = std::collections::BTreeSet::new();
        for m in &matchers {
            all.extend(f(&db, m, 0)?);
        }
        Ok(all.into_iter().take(if limit == 0 { usize::MAX } else { limit }).collect())
    })
    .await
}

async fn label_values(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let p = Params::read(raw, &headers, Body::empty(), 0).await?.for_caller(&caller);
    if !ocelli_model::is_valid_label_name(&name) {
        return Err(Error::BadData(format!("invalid label name: \"{name}\"")));
    }
    let matchers = p.matchers_or_tenant()?;
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let limit = p.limit()?;
    let wanted = name.clone();
    let values = union_over(
        &st,
        matchers,
        limit,
        (start, end),
        move |db, m, limit| db.label_values(&name, m, start, end, limit),
        move |l, out| out.extend(l.get(&wanted).map(str::to_string)),
    )
    .await?;
    Ok(success(&string_list(&values)))
}

async fn buildinfo() -> Response {
    let data = serde_json::json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "application": "ocelli",
        "ocelliVersion": env!("CARGO_PKG_VERSION"),
    });
    success(&data.to_string())
}

async fn metadata(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let p = Params::read(raw, &headers, Body::empty(), 0).await?.for_caller(&caller);
    let limit = match p.get("limit") {
        None | Some("") => -1,
        Some(s) => s.parse::<i64>().map_err(|_| {
            Error::BadData(format!("invalid parameter \"limit\": cannot parse \"{s}\" to a number"))
        })?,
    };
    let metric = p.get("metric").unwrap_or("").to_string();
    // a namespace-scoped caller sees the metadata of the metrics its namespace has
    let visible: Option<std::collections::BTreeSet<String>> = match p.tenant().cloned() {
        Some(ns) => {
            let db = st.db.clone();
            let names = blocking(move || {
                Ok(db.label_values(ocelli_model::METRIC_NAME, &[ns], MIN_TIME, MAX_TIME, 0)?)
            })
            .await?;
            Some(names.into_iter().collect())
        }
        None => None,
    };
    let f = st.metadata.families();
    let mut data = serde_json::Map::new();
    for (name, (kind, help, unit)) in f.iter() {
        if !metric.is_empty() && *name != metric {
            continue;
        }
        if visible.as_ref().is_some_and(|v| !v.contains(name)) {
            continue;
        }
        if limit >= 0 && data.len() as i64 >= limit {
            break;
        }
        data.insert(
            name.clone(),
            serde_json::json!([{ "type": kind, "help": help, "unit": unit }]),
        );
    }
    Ok(success(&serde_json::Value::Object(data).to_string()))
}

/// `/federate`: the newest sample (within the lookback delta) of every series matching
/// `match[]`, as exposition text with timestamps, grouped by metric name.
async fn federate(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let p = Params::read(raw, &headers, Body::empty(), 0).await?.for_caller(&caller);
    let matchers = p.matchers()?;
    let now = now_ms();
    let lookback =
        i64::try_from(st.engine.options().lookback_delta.as_millis()).unwrap_or(i64::MAX);
    let latest = blocking(move || {
        let mut out: BTreeMap<Labels, Sample> = BTreeMap::new();
        for m in &matchers {
            // a query node federates what its stores hold, merged as its queries merge it
            let selected: Vec<(Labels, Vec<Sample>)> = if is_query_node(&st) {
                let handle = tokio::runtime::Handle::current();
                st.cluster
                    .fanout
                    .select(&handle, m, now - lookback, now)
                    .map_err(Error::BadGateway)?
            } else {
                st.db
                    .select(m, now - lookback, now)?
                    .into_iter()
                    .map(|s| (s.labels, s.samples))
                    .collect()
            };
            for (labels, samples) in selected {
                if let Some(last) = samples.last()
                    && !ocelli_model::is_stale_nan(last.v)
                {
                    out.insert(labels, *last);
                }
            }
        }
        Ok(out)
    })
    .await?;
    let mut by_name: BTreeMap<String, Vec<(Labels, Sample)>> = BTreeMap::new();
    for (l, s) in latest {
        by_name.entry(l.metric_name().unwrap_or("").to_string()).or_default().push((l, s));
    }
    let mut text = String::new();
    for (name, series) in by_name {
        let _ = writeln!(text, "# TYPE {name} untyped");
        for (l, s) in series {
            text.push_str(&name);
            let rest: Vec<String> = l
                .iter()
                .filter(|x| x.name != ocelli_model::METRIC_NAME)
                .map(|x| {
                    format!(
                        "{}=\"{}\"",
                        x.name,
                        ocelli_wire::exposition::escape_label_value(&x.value)
                    )
                })
                .collect();
            if !rest.is_empty() {
                let _ = write!(text, "{{{}}}", rest.join(","));
            }
            let _ = writeln!(text, " {} {}", format_value(s.v), s.t);
        }
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
        .into_response())
}

/// Shared with the HTTP layer: the engine is built once from the configuration.
pub(crate) fn engine(opts: ocelli_promql::Options) -> Arc<Engine> {
    Arc::new(Engine::new(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_written_as_prometheus_does() {
        assert_eq!(point(1_700_000_000_000, "1"), "[1700000000,\"1\"]");
        assert_eq!(point(1_700_000_000_500, "1"), "[1700000000.5,\"1\"]");
        assert_eq!(point(1_700_000_000_010, "1"), "[1700000000.01,\"1\"]");
        assert_eq!(point(1_700_000_000_001, "1"), "[1700000000.001,\"1\"]");
        assert_eq!(point(1_700_000_000_120, "1"), "[1700000000.12,\"1\"]");
        assert_eq!(point(-1_500, "1"), "[-1.5,\"1\"]");
        for (t, v, want) in [
            (1_000, 0.1, "[1,\"0.1\"]"),
            (2_050, f64::NAN, "[2.05,\"NaN\"]"),
            (3_000, f64::NEG_INFINITY, "[3,\"-Inf\"]"),
            (4_000, 1e21, "[4,\"1e+21\"]"),
        ] {
            let mut s = String::new();
            push_point(&mut s, t, v);
            assert_eq!(s, want);
            assert_eq!(s, point(t, &format_value(v)));
        }
    }
}
