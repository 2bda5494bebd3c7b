//! The Prometheus HTTP query API: `/api/v1/query`, `/api/v1/query_range`, `/api/v1/series`,
//! `/api/v1/labels`, `/api/v1/label/{name}/values`, `/api/v1/status/buildinfo`,
//! `/api/v1/metadata` and `/federate`, with Prometheus' parameters, JSON shapes and error types,
//! so that Grafana's Prometheus data source and other Prometheus clients work unchanged.
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
use parking_lot::RwLock;

use crate::http::{AppState, blocking, now_ms, read_body};
use crate::{Error, Result};

/// The Prometheus API version this server implements, reported by `buildinfo` so that clients
/// (Grafana) enable the matching features.
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

/// Earliest and latest times the API accepts when a range is left open, as Prometheus does.
const MIN_TIME: i64 = -9_223_309_901_257_974;
const MAX_TIME: i64 = 9_223_309_901_257_974;

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

/// The engine over our storage.
pub(crate) struct DbStorage<'a> {
    pub db: &'a Db,
    pub max_samples: usize,
}

impl ocelli_promql::Storage for DbStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> std::result::Result<Vec<(Labels, Vec<Sample>)>, String> {
        let limits = ocelli_tsdb::Limits { max_series: usize::MAX, max_samples: self.max_samples };
        match self.db.select_with_limits(matchers, mint, maxt, limits) {
            Ok(v) => Ok(v.into_iter().map(|s| (s.labels, s.samples)).collect()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Labels, Vec<Sample>) -> bool,
    ) -> std::result::Result<(), String> {
        let limits = ocelli_tsdb::Limits { max_series: usize::MAX, max_samples: self.max_samples };
        self.db.select_each(matchers, mint, maxt, limits, f).map_err(|e| e.to_string())
    }

    fn select_map_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        map: &(dyn Fn(Vec<Sample>) -> ocelli_promql::StepValues + Sync),
        f: &mut dyn FnMut(Labels, usize, ocelli_promql::StepValues) -> bool,
    ) -> std::result::Result<(), String> {
        let limits = ocelli_tsdb::Limits { max_series: usize::MAX, max_samples: self.max_samples };
        self.db.select_map_each(matchers, mint, maxt, limits, map, f).map_err(|e| e.to_string())
    }

    fn rollup_resolutions(&self, mint: i64, maxt: i64) -> Vec<i64> {
        self.db.rollup_resolutions(mint, maxt)
    }

    fn select_windows_each(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        res: i64,
        f: &mut dyn FnMut(Labels, Vec<ocelli_tsdb::Window>) -> bool,
    ) -> std::result::Result<(), String> {
        let limits = ocelli_tsdb::Limits { max_series: usize::MAX, max_samples: self.max_samples };
        self.db.select_windows_each(matchers, mint, maxt, res, limits, f).map_err(|e| e.to_string())
    }
}

/// The engine over other servers (the query role): every selection is read from all stores
/// and merged ([`crate::cluster::fanout`]).
pub(crate) struct FanoutStorage<'a> {
    pub fanout: &'a crate::cluster::fanout::Fanout,
    pub handle: tokio::runtime::Handle,
    pub max_samples: usize,
}

impl ocelli_promql::Storage for FanoutStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> std::result::Result<Vec<(Labels, Vec<Sample>)>, String> {
        let v = self.fanout.select(&self.handle, matchers, mint, maxt)?;
        let n: usize = v.iter().map(|(_, s)| s.len()).sum();
        if n > self.max_samples {
            return Err(format!(
                "query processing would load too many samples into memory: {n} from the stores, over the limit of {}",
                self.max_samples
            ));
        }
        Ok(v)
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

/// Metric metadata (`TYPE`, `HELP`, `UNIT`) seen in exposition text, by metric family. Kept in
/// memory: it describes what is being ingested now, and is rebuilt as data arrives.
#[derive(Debug, Default)]
pub struct MetadataStore {
    families: RwLock<BTreeMap<String, (String, String, String)>>,
}

impl MetadataStore {
    pub fn record(&self, meta: &[ocelli_wire::exposition::Metadata]) {
        if meta.is_empty() {
            return;
        }
        let mut f = self.families.write();
        for m in meta {
            let kind = format!("{:?}", m.kind).to_lowercase();
            let kind = match kind.as_str() {
                "untyped" => "unknown".to_string(),
                "stateset" => "stateset".to_string(),
                "gaugehistogram" => "gaugehistogram".to_string(),
                _ => kind,
            };
            f.insert(
                m.family.clone(),
                (kind, m.help.clone().unwrap_or_default(), m.unit.clone().unwrap_or_default()),
            );
        }
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
        .route("/api/v1/metadata", get(metadata))
        .route("/federate", get(federate))
}

/// Request parameters: the query string's, then a form body's.
struct Params(Vec<(String, String)>);

impl Params {
    async fn read(
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
        Ok(Params(v))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect()
    }

    fn time(&self, k: &str, default: i64) -> Result<i64> {
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
                out.push(b);
            }
        }
        Ok(out)
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

/// RFC 3339 (`2006-01-02T15:04:05.999Z`, with an offset or `Z`) or Unix seconds, to ms.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        let ms = (f * 1000.0).round();
        return (ms >= MIN_TIME as f64 && ms <= MAX_TIME as f64).then_some(ms as i64);
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    let (y, mo, d, h, mi, sec) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        frac_ms = padded.parse().ok()?;
        rest = &r[digits.len()..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh: i64 = o[1..3].parse().ok()?;
            let om: i64 = o[4..6].parse().ok()?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let days = ocelli_model::time::days_from_civil(y, mo as u32, d as u32);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + frac_ms)
}

/// A Prometheus duration (`1h30m`, `500ms`, `2d`) or seconds with decimals, to ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        return (f.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let n_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if n_len == 0 {
            return None;
        }
        let n: i64 = rest[..n_len].parse().ok()?;
        rest = &rest[n_len..];
        let u_len = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = match &rest[..u_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[u_len..];
    }
    Some(total)
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?;
    let q = p.query()?;
    let t = p.time("time", now_ms())?;
    let r = resolution(&p)?;
    evaluate(&st, &p, move |engine, s| engine.instant_at(s, &q, t, r)).await
}

/// Runs a query on the blocking pool with the request's engine options and answers with its
/// result; a query that ran long hands its freed memory back afterwards.
async fn evaluate(
    st: &AppState,
    p: &Params,
    run: impl FnOnce(&Engine, &dyn ocelli_promql::Storage) -> ocelli_promql::Result<QueryValue>
    + Send
    + 'static,
) -> Result<Response> {
    let engine = engine_for(st, p)?;
    let db = st.db.clone();
    let fanout = is_query_node(st).then(|| st.cluster.clone());
    let handle = tokio::runtime::Handle::current();
    let v = blocking(move || {
        let max_samples = engine.options().max_samples;
        let t0 = std::time::Instant::now();
        let v = match &fanout {
            Some(c) => {
                let s = FanoutStorage { fanout: &c.fanout, handle, max_samples };
                run(&engine, &s)
            }
            None => run(&engine, &DbStorage { db: &db, max_samples }),
        }
        .map_err(Error::Query);
        after_query(t0);
        v
    })
    .await?;
    Ok(success(&render(&v)))
}

async fn query_range(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?;
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
    evaluate(&st, &p, move |engine, s| engine.range_at(s, &q, start, end, step, r)).await
}

async fn series(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?;
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let p = Params::read(raw, &headers, body, st.limits.max_body_bytes).await?;
    let matchers = p.matchers()?;
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
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let p = Params::read(raw, &headers, Body::empty(), 0).await?;
    if !ocelli_model::is_valid_label_name(&name) {
        return Err(Error::BadData(format!("invalid label name: \"{name}\"")));
    }
    let matchers = p.matchers()?;
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let p = Params::read(raw, &headers, Body::empty(), 0).await?;
    let limit = match p.get("limit") {
        None | Some("") => -1,
        Some(s) => s.parse::<i64>().map_err(|_| {
            Error::BadData(format!("invalid parameter \"limit\": cannot parse \"{s}\" to a number"))
        })?,
    };
    let metric = p.get("metric").unwrap_or("");
    let f = st.metadata.families.read();
    let mut data = serde_json::Map::new();
    for (name, (kind, help, unit)) in f.iter() {
        if !metric.is_empty() && name != metric {
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
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response> {
    let p = Params::read(raw, &headers, Body::empty(), 0).await?;
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
                .map(|x| format!("{}=\"{}\"", x.name, escape_label(&x.value)))
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

/// A label value escaped for exposition text.
pub(crate) fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Shared with the HTTP layer: the engine is built once from the configuration.
pub(crate) fn engine(opts: ocelli_promql::Options) -> Arc<Engine> {
    Arc::new(Engine::new(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Some(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Some(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Some(1_700_000_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_duration("15"), Some(15_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("500ms"), Some(500));
        assert_eq!(parse_duration("5x"), None);
    }

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
            (4_000, 1e21, "[4,\"1000000000000000000000\"]"),
        ] {
            let mut s = String::new();
            push_point(&mut s, t, v);
            assert_eq!(s, want);
            assert_eq!(s, point(t, &format_value(v)));
        }
    }
}
