//! The InfluxDB endpoints that Telegraf, `influxdb-client` and other Influx writers use:
//!
//! - `POST /write` (1.x) and `POST /api/v2/write` (2.x): line protocol, plain or gzip, with
//!   `precision` and `db`/`bucket` (which becomes a `db` label). Answers 204.
//! - `GET`/`HEAD /ping`: 204 with the `X-Influxdb-Version` and `X-Influxdb-Build` headers, as
//!   InfluxDB answers it (clients check it before writing).
//! - `GET /health`: InfluxDB 2's health check JSON, `"status": "pass"`.
//! - `GET`/`POST /query`: the InfluxQL statements writers send when they start,
//!   `CREATE DATABASE <name>` (remembered, answered as InfluxDB does) and `SHOW DATABASES` (the
//!   databases created so, and the values of the `db` label in storage); any other statement
//!   answers a statement error saying to query with PromQL. `;` separates statements.
//!
//! **What a write does not store, it says.** Samples outside the time bounds are refused with a
//! 400 (see `ocelli_ingest::bounds`). A field keeps the type it was first written with (float,
//! integer, unsigned or boolean, all stored as floats) as in InfluxDB: a write that gives a
//! known field another type is a 400 `field type conflict`, and stores nothing. String fields
//! cannot be stored (series hold numbers): they are counted, and a line with only string fields
//! stores nothing; both are counted on `/metrics`
//! (`ocelli_ingest_influx_string_fields_dropped_total`,
//! `ocelli_ingest_influx_lines_dropped_total{reason="string_fields_only"}`) and logged at
//! warning level at most once a minute.
//!
//! Deliberately absent: InfluxQL queries (`SELECT`...), retention policies, users. Field types
//! and created databases are kept in memory: after a restart the first write of each field sets
//! its type again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ocelli_wire::influx::FieldType;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{AppState, blocking, now_ms, read_body, request_body, store};
use crate::{Error, Result};

/// The InfluxDB version the endpoints report: the last 1.x, whose API they follow.
pub const INFLUX_VERSION: &str = "1.8.10";

/// What the Influx endpoints remember between requests: each field's type and the databases
/// created with `CREATE DATABASE`.
#[derive(Debug, Default)]
pub(crate) struct InfluxState {
    field_types: Mutex<HashMap<String, FieldType>>,
    databases: Mutex<BTreeSet<String>>,
}

pub(crate) static STRING_FIELDS_DROPPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static STRING_ONLY_LINES_DROPPED: AtomicU64 = AtomicU64::new(0);
static LAST_STRING_WARNING_MS: AtomicI64 = AtomicI64::new(i64::MIN);

/// Query parameters of the Influx write endpoints (v1 `/write`, v2 `/api/v2/write`).
#[derive(Debug, serde::Deserialize)]
pub(super) struct WriteParams {
    precision: Option<String>,
    db: Option<String>,
    bucket: Option<String>,
}

/// `POST /write`, `POST /api/v2/write`.
pub(super) async fn write(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    use ocelli_wire::influx;
    let precision = match params.precision.as_deref() {
        None | Some("") => influx::Precision::Ns,
        Some(p) => influx::Precision::parse(p).map_err(|e| Error::BadData(e.to_string()))?,
    };
    let db = params.db.or(params.bucket);
    let body = read_body(body, st.limits.max_body_bytes).await?;
    let stamp = caller.stamp();
    blocking(move || {
        let max = st.limits.max_decompressed_bytes;
        let text = request_body(&headers, body, max)?;
        let limits = influx::Limits { max_body_bytes: max, ..influx::Limits::default() };
        let decoded = influx::decode_full(&text, precision, now_ms(), &limits, db.as_deref())
            .map_err(|e| Error::BadData(e.to_string()))?;
        // the types are checked and claimed under one lock, so two writes that give a new
        // field two types cannot both pass; the lock is not held while storing
        {
            let mut types = st.influx.field_types.lock();
            for (name, ty) in &decoded.field_types {
                if let Some(known) = types.get(name)
                    && known != ty
                {
                    return Err(Error::BadData(format!(
                        "field type conflict: {name:?} is {} in this write, already stored as \
                         {}; nothing was stored",
                        ty.as_str(),
                        known.as_str()
                    )));
                }
            }
            types.extend(decoded.field_types);
        }
        count_strings(decoded.string_fields, decoded.string_only_lines);
        store(&st, &stamp, decoded.series)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn count_strings(fields: usize, lines: usize) {
    if fields == 0 {
        return;
    }
    STRING_FIELDS_DROPPED.fetch_add(fields as u64, Ordering::Relaxed);
    STRING_ONLY_LINES_DROPPED.fetch_add(lines as u64, Ordering::Relaxed);
    let now = now_ms();
    let last = LAST_STRING_WARNING_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000
        && LAST_STRING_WARNING_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            string_fields = fields,
            lines_with_only_strings = lines,
            "Influx write: string fields cannot be stored and were dropped (counted in \
             ocelli_ingest_influx_string_fields_dropped_total; this warning repeats at most once \
             a minute)"
        );
    }
}

/// `GET`/`HEAD /ping`.
pub(super) async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("x-influxdb-version", INFLUX_VERSION), ("x-influxdb-build", "OSS")])
        .into_response()
}

/// `GET /health`: InfluxDB 2's `HealthCheck`.
pub(super) async fn health() -> Response {
    let body = json!({
        "name": "influxdb",
        "message": "ready for queries and writes",
        "status": "pass",
        "checks": [],
        "version": INFLUX_VERSION,
        "commit": "",
    });
    (StatusCode::OK, [("x-influxdb-version", INFLUX_VERSION)], axum::Json(body)).into_response()
}

/// `GET`/`POST /query`: `q` from the query string, or from a form body.
pub(super) async fn query(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let params = crate::query::Params::read(raw, &headers, body, st.limits.max_body_bytes).await?;
    let Some(q) = params.get("q").map(str::to_owned) else {
        return Ok(influx_error(StatusCode::BAD_REQUEST, "missing required parameter \"q\""));
    };
    let statements: Vec<String> =
        q.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if statements.is_empty() {
        return Ok(influx_error(StatusCode::BAD_REQUEST, "error parsing query: found EOF"));
    }
    let db = st.db.clone();
    let results = blocking(move || {
        let mut results = Vec::new();
        for (i, s) in statements.iter().enumerate() {
            let mut r = match statement(s) {
                Ok(Statement::CreateDatabase(name)) => {
                    st.influx.databases.lock().insert(name);
                    json!({})
                }
                Ok(Statement::ShowDatabases) => {
                    let mut names = st.influx.databases.lock().clone();
                    let stored = db
                        .label_values("db", &[], i64::MIN, i64::MAX, 0)
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    names.extend(stored);
                    let values: Vec<Value> = names.into_iter().map(|n| json!([n])).collect();
                    json!({
                        "series": [{"name": "databases", "columns": ["name"], "values": values}]
                    })
                }
                Err(e) => json!({ "error": e }),
            };
            r["statement_id"] = json!(i);
            results.push(r);
        }
        Ok(results)
    })
    .await?;
    Ok((
        StatusCode::OK,
        [("x-influxdb-version", INFLUX_VERSION)],
        axum::Json(json!({ "results": results })),
    )
        .into_response())
}

fn influx_error(code: StatusCode, msg: &str) -> Response {
    (code, [("x-influxdb-version", INFLUX_VERSION)], axum::Json(json!({ "error": msg })))
        .into_response()
}

#[derive(Debug, PartialEq, Eq)]
enum Statement {
    CreateDatabase(String),
    ShowDatabases,
}

/// The statements answered here; keywords are case-insensitive, a name is an identifier or a
/// double-quoted string, and `CREATE DATABASE`'s `WITH ...` clauses are accepted and ignored.
fn statement(s: &str) -> std::result::Result<Statement, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let kw = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    if kw(0, "SHOW") && kw(1, "DATABASES") && words.len() == 2 {
        return Ok(Statement::ShowDatabases);
    }
    if kw(0, "CREATE") && kw(1, "DATABASE") {
        let rest = s.trim_start();
        // past "CREATE", the spaces, "DATABASE" and the spaces
        let rest = rest[6..].trim_start()[8..].trim_start();
        let name = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').ok_or("error parsing query: unterminated quoted name")?;
            &quoted[..end]
        } else {
            rest.split_whitespace().next().unwrap_or("")
        };
        if name.is_empty() {
            return Err("error parsing query: found EOF, expected identifier".to_owned());
        }
        return Ok(Statement::CreateDatabase(name.to_owned()));
    }
    Err(format!(
        "statement {s:?} is not supported: this server answers CREATE DATABASE and SHOW \
         DATABASES; query the data with PromQL (/api/v1/query)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        let ok = [
            ("SHOW DATABASES", Statement::ShowDatabases),
            ("show   databases", Statement::ShowDatabases),
            ("CREATE DATABASE telegraf", Statement::CreateDatabase("telegraf".into())),
            ("create database \"my db\"", Statement::CreateDatabase("my db".into())),
            ("CREATE DATABASE x WITH DURATION 1d", Statement::CreateDatabase("x".into())),
        ];
        for (s, want) in ok {
            assert_eq!(statement(s), Ok(want), "{s}");
        }
        assert!(statement("CREATE DATABASE").unwrap_err().contains("expected identifier"));
        assert!(statement("SELECT * FROM cpu").unwrap_err().contains("PromQL"));
        assert!(statement("CREATE DATABASE \"x").unwrap_err().contains("unterminated"));
    }
}
