//! The views' HTTP endpoints (`docs/api.md`, Views) and the OpenAPI document:
//!
//! - `GET /api/v1/ns/{ns}/vm/{vm}/metric/{metric}`: one VM.
//! - `GET /api/v1/ns/{ns}/service/{service_id}/metric/{metric}`: the VMs the registry lists
//!   under that service.
//! - `GET /api/v1/csp/{csp}/metric/{metric}`: the VMs the registry lists under that cloud,
//!   optionally only of namespace `ns`.
//! - `GET /api/v1/openapi.json`: `docs/openapi.json`, embedded at build time.
//!
//! Path parts are checked as the registry checks identity parts (400 naming the part); the
//! query string is [`super::ViewQuery`]'s.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::{CSP_PARAMS, Scope, ViewQuery};
use crate::Result;
use crate::registry::agent::check_part;
use crate::state::AppState;
use ocelli_model::time::now_ms;

/// The OpenAPI 3.0 document of the server's REST API.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// Every view route, in axum's (and OpenAPI's) path template syntax.
pub const ROUTES: &[&str] = &[
    "/api/v1/ns/{ns}/vm/{vm}/metric/{metric}",
    "/api/v1/ns/{ns}/service/{service_id}/metric/{metric}",
    "/api/v1/csp/{csp}/metric/{metric}",
    "/api/v1/openapi.json",
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(ROUTES[0], get(vm))
        .route(ROUTES[1], get(service))
        .route(ROUTES[2], get(csp))
        .route(ROUTES[3], get(openapi))
}

async fn answer(
    st: &AppState,
    scope: Scope,
    q: ViewQuery,
) -> Result<axum::Json<serde_json::Value>> {
    Ok(axum::Json(super::view(st, scope, q).await?))
}

/// A namespace-scoped caller may name only its own namespace.
fn own_namespace(caller: &crate::auth::Caller, ns: &str) -> Result<()> {
    match caller.namespace() {
        Some(mine) if mine != ns => Err(crate::Error::Forbidden(format!(
            "a token of namespace {mine:?} may not read namespace {ns:?}"
        ))),
        _ => Ok(()),
    }
}

async fn vm(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    Path((ns, vm_id, metric)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse> {
    check_part("ns", &ns)?;
    own_namespace(&caller, &ns)?;
    check_part("vm", &vm_id)?;
    let q = ViewQuery::parse(&metric, raw.as_deref().unwrap_or(""), &[], now_ms())?;
    answer(&st, Scope::Vm { ns, vm_id }, q).await
}

async fn service(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    Path((ns, service_id, metric)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse> {
    check_part("ns", &ns)?;
    own_namespace(&caller, &ns)?;
    check_part("service_id", &service_id)?;
    let q = ViewQuery::parse(&metric, raw.as_deref().unwrap_or(""), &[], now_ms())?;
    answer(&st, Scope::Service { ns, service_id }, q).await
}

async fn csp(
    State(st): State<AppState>,
    caller: crate::auth::Caller,
    Path((csp, metric)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse> {
    check_part("csp", &csp)?;
    let q = ViewQuery::parse(&metric, raw.as_deref().unwrap_or(""), CSP_PARAMS, now_ms())?;
    if let Some(ns) = &q.ns {
        own_namespace(&caller, ns)?;
    }
    // a namespace-scoped caller's view covers its namespace only
    let ns = q.ns.clone().or_else(|| caller.namespace().map(String::from));
    answer(&st, Scope::Csp { csp, ns }, q).await
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
