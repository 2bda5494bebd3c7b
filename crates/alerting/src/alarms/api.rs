//! The alarms' HTTP endpoints (`docs/api.md`, section Alarms):
//!
//! - `GET /api/v1/alarms`: every alarm; `POST /api/v1/alarms`: a new one (201; 409 if the id
//!   exists).
//! - `GET`, `PUT` (create 201 or replace 200), `DELETE /api/v1/alarms/{id}`.
//! - `GET /api/v1/alarms/{id}/history`: the alarm history of one alarm, with the filters of
//!   `GET /api/v1/history` ([`crate::history::api`]), which is served here too.
//!
//! Bodies are JSON ([`super::spec::Alarm`]), at most [`MAX_BODY`] bytes; a malformed or
//! invalid one is a 400 naming the field.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::store::Stored;
use super::{Alarms, Put, spec};
use crate::history::{self, History};
use ocelli_http::{Error, Result, blocking, read_body};
use ocelli_model::time::now_ms;

/// Largest alarm definition accepted.
pub const MAX_BODY: usize = 64 << 10;

/// What the alarm routes serve from: the alarms and the alarm history.
#[derive(Clone, Debug)]
struct ApiState {
    alarms: Alarms,
    history: History,
}

impl FromRef<ApiState> for Alarms {
    fn from_ref(st: &ApiState) -> Self {
        st.alarms.clone()
    }
}

impl FromRef<ApiState> for History {
    fn from_ref(st: &ApiState) -> Self {
        st.history.clone()
    }
}

/// The alarms' routes and `GET /api/v1/history`.
pub fn router(alarms: Alarms, history: History) -> Router {
    Router::new()
        .route("/api/v1/alarms", get(list).post(create))
        .route("/api/v1/alarms/{id}", get(get_one).put(put).delete(delete))
        .route("/api/v1/alarms/{id}/history", get(alarm_history))
        .route("/api/v1/history", get(all_history))
        .with_state(ApiState { alarms, history })
}

fn view(s: &Stored) -> serde_json::Value {
    let mut v = serde_json::to_value(&s.alarm).unwrap_or_else(|_| json!({}));
    v["created_at_ms"] = json!(s.created_at_ms);
    v["updated_at_ms"] = json!(s.updated_at_ms);
    v["expr_warning"] = json!(null);
    v["expr_critical"] = json!(null);
    if let Ok(g) = s.alarm.group() {
        for r in g.rules {
            if let crate::RuleSpec::Alert { expr, labels, .. } = r {
                let sev = labels.get(spec::SEVERITY_LABEL).cloned().unwrap_or_default();
                v[format!("expr_{sev}")] = json!(expr);
            }
        }
    }
    v
}

fn success(data: serde_json::Value) -> Json<serde_json::Value> {
    Json(json!({ "status": "success", "data": data }))
}

async fn body_alarm(body: Body) -> Result<spec::Alarm> {
    let bytes = read_body(body, MAX_BODY).await?;
    spec::parse(&bytes).map_err(Error::BadData)
}

/// `GET /api/v1/alarms`
async fn list(State(a): State<Alarms>) -> Result<impl IntoResponse> {
    let all = blocking(move || Ok(a.list())).await?;
    Ok(success(all.iter().map(view).collect()))
}

/// `POST /api/v1/alarms`
async fn create(State(a): State<Alarms>, body: Body) -> Result<impl IntoResponse> {
    let alarm = body_alarm(body).await?;
    let s = blocking(move || a.create(alarm, now_ms())).await?;
    Ok((StatusCode::CREATED, success(view(&s))))
}

/// `GET /api/v1/alarms/{id}`
async fn get_one(State(a): State<Alarms>, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let s = blocking(move || a.get(&id)).await?;
    Ok(success(view(&s)))
}

/// `PUT /api/v1/alarms/{id}`: the body's `id` may be left out; if given it must be the path's.
async fn put(
    State(a): State<Alarms>,
    Path(id): Path<String>,
    body: Body,
) -> Result<impl IntoResponse> {
    spec::check_id(&id).map_err(Error::BadData)?;
    let bytes = read_body(body, MAX_BODY).await?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::BadData(format!("alarm: {e}")))?;
    match v.get("id") {
        None => v["id"] = json!(id),
        Some(given) if *given == json!(id) => {}
        Some(given) => {
            return Err(Error::BadData(format!("id: {given} differs from the path's {id:?}")));
        }
    }
    let alarm: spec::Alarm =
        serde_json::from_value(v).map_err(|e| Error::BadData(format!("alarm: {e}")))?;
    let (s, how) = blocking(move || a.put(alarm, now_ms())).await?;
    let status = if how == Put::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, success(view(&s))))
}

/// `DELETE /api/v1/alarms/{id}`
async fn delete(State(a): State<Alarms>, Path(id): Path<String>) -> Result<impl IntoResponse> {
    let s = blocking(move || a.delete(&id)).await?;
    Ok(success(view(&s)))
}

/// `GET /api/v1/alarms/{id}/history`: a 404 for an alarm that does not exist (any more: the
/// history of a deleted alarm stays readable through `/api/v1/history?alarm_id=`).
async fn alarm_history(
    State(a): State<Alarms>,
    State(h): State<History>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse> {
    let mut f = history::api::parse_filter(q.as_deref().unwrap_or(""))?;
    if f.labels.iter().any(|(l, _)| l == spec::ALARM_ID_LABEL) {
        return Err(Error::BadData("alarm_id: given by the path".into()));
    }
    let check = id.clone();
    blocking(move || a.get(&check)).await?;
    f.labels.push((spec::ALARM_ID_LABEL.into(), id));
    history::api::answer(h, f).await
}

/// `GET /api/v1/history`
async fn all_history(State(h): State<History>, RawQuery(q): RawQuery) -> Result<impl IntoResponse> {
    let f = history::api::parse_filter(q.as_deref().unwrap_or(""))?;
    history::api::answer(h, f).await
}
