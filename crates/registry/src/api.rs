//! The registry's HTTP endpoints (`docs/api.md`, section Registry):
//!
//! - `POST /api/v1/agents/heartbeat`: register (201) or heartbeat (200); the answer is the
//!   configuration the server wants, `{"key","mode","interval_seconds"}`.
//! - `GET /api/v1/agents`: list, filtered by `ns`, `service_type`, `service_id`, `csp`,
//!   `health` (`healthy`|`unhealthy`) and `mode`; an unknown parameter is a 400.
//! - `GET`, `PATCH`, `DELETE /api/v1/agents/{ns}/{service_type}/{service_id}/{vm_id}/{csp}`.
//! - `GET /api/v1/agents/{key}/collect/{collector}`: the agent's `/collect/{collector}` (with
//!   the request's query string), fetched now and answered as the agent answered it; 502 when
//!   the agent cannot be reached or fails (5xx), 504 past `ondemand_timeout`.
//!
//! Bodies are capped at `[registry] max_body_bytes` (413 over it) and may be gzip-encoded;
//! malformed ones get a 400 naming the field ([`super::agent`]). A well-formed key of an agent
//! that is not registered is a 404; a malformed key in a path is a 400 naming the part.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Empty, Limited};
use serde::Serialize;
use serde_json::json;

use super::agent::{self, CSPS, Mode, SERVICE_TYPES};
use super::{AgentView, Filter, Registry};
use ocelli_http::{Error, Result, read_body, request_body};
use ocelli_model::time::{format_duration, rfc3339};

const KEY_PATH: &str = "/api/v1/agents/{ns}/{service_type}/{service_id}/{vm_id}/{csp}";

/// The registry's routes over its handle, merged into the server's router.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/api/v1/agents/heartbeat", post(heartbeat))
        .route("/api/v1/agents", get(list))
        .route(KEY_PATH, get(get_one).patch(patch).delete(delete))
        .route(&format!("{KEY_PATH}/collect/{{collector}}"), get(collect))
        .with_state(registry)
}

/// The five parts of a key in a request path.
type KeyPath = (String, String, String, String, String);

/// Checks the parts of a key given in a path and joins them.
fn key_from_path((ns, st, sid, vm, csp): &KeyPath) -> Result<String> {
    agent::check_key(ns, st, sid, vm, csp)?;
    Ok(agent::key_of(ns, st, sid, vm, csp))
}

/// An agent object as the API writes it.
#[derive(Serialize)]
struct AgentJson<'a> {
    key: String,
    #[serde(flatten)]
    identity: &'a agent::Identity,
    address: &'a str,
    version: &'a str,
    mode: Mode,
    interval_seconds: u32,
    health: &'static str,
    last_seen: String,
    registered_at: String,
}

fn time(ms: i64) -> String {
    rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
}

fn agent_json(v: &AgentView) -> AgentJson<'_> {
    let r = &v.rec;
    AgentJson {
        key: r.key(),
        identity: &r.identity,
        address: &r.address,
        version: &r.version,
        mode: r.mode,
        interval_seconds: r.interval_seconds,
        health: if v.status.healthy { "healthy" } else { "unhealthy" },
        last_seen: time(v.status.last_seen_ms),
        registered_at: time(r.registered_at_ms),
    }
}

fn success(data: impl Serialize) -> Json<serde_json::Value> {
    Json(json!({ "status": "success", "data": data }))
}

/// A request body under `[registry] max_body_bytes`, gunzipped if it says so.
async fn capped_body(reg: &Registry, headers: &HeaderMap, body: Body) -> Result<Bytes> {
    let max = reg.settings().max_body_bytes;
    request_body(headers, read_body(body, max).await?, max)
}

/// `POST /api/v1/agents/heartbeat`
async fn heartbeat(
    State(reg): State<Registry>,
    caller: Option<axum::Extension<ocelli_auth::Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    let hb = agent::parse_heartbeat(&capped_body(&reg, &headers, body).await?)?;
    if let Some(axum::Extension(p)) = &caller {
        may_speak_for(p, &hb.identity)?;
    }
    let beat = reg.heartbeat(hb).await?;
    let code = if beat.created { StatusCode::CREATED } else { StatusCode::OK };
    let data = json!({
        "key": beat.key,
        "mode": beat.mode,
        "interval_seconds": beat.interval_seconds,
    });
    Ok((code, success(data)))
}

const FILTERS: [&str; 6] = ["ns", "service_type", "service_id", "csp", "health", "mode"];

/// Reads the list filters from a query string.
fn filter(query: &str) -> Result<Filter> {
    let mut f = Filter::default();
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if seen.insert(k.to_string(), ()).is_some() {
            return Err(Error::BadData(format!("{k}: given more than once")));
        }
        let v = v.to_string();
        match k.as_ref() {
            "ns" | "service_id" => agent::check_part(&k, &v)?,
            "service_type" => agent::check_one_of(&k, &v, SERVICE_TYPES)?,
            "csp" => agent::check_one_of(&k, &v, CSPS)?,
            "health" => agent::check_one_of(&k, &v, &["healthy", "unhealthy"])?,
            "mode" => f.mode = Some(Mode::parse("mode", &v)?),
            _ => {
                return Err(Error::BadData(format!(
                    "{k}: unknown parameter; expected one of {}",
                    FILTERS.join(", ")
                )));
            }
        }
        match k.as_ref() {
            "ns" => f.ns = Some(v),
            "service_id" => f.service_id = Some(v),
            "service_type" => f.service_type = Some(v),
            "csp" => f.csp = Some(v),
            "health" => f.healthy = Some(v == "healthy"),
            _ => {}
        }
    }
    Ok(f)
}

/// `GET /api/v1/agents`
/// A credential heartbeats only for agents of its namespace, and an agent's own credential
/// only for that agent: a leaked one cannot register or move another.
fn may_speak_for(p: &ocelli_auth::Principal, id: &agent::Identity) -> Result<()> {
    if let Some(ns) = &p.namespace
        && *ns != id.ns
    {
        return Err(Error::Forbidden(format!(
            "a token of namespace {ns:?} may not heartbeat for namespace {:?}",
            id.ns
        )));
    }
    if let Some(key) = &p.agent
        && *key != id.key()
    {
        return Err(Error::Forbidden(format!(
            "this credential belongs to agent {key:?}, not {:?}",
            id.key()
        )));
    }
    Ok(())
}

async fn list(
    State(reg): State<Registry>,
    caller: Option<axum::Extension<ocelli_auth::Principal>>,
    RawQuery(q): RawQuery,
) -> Result<impl IntoResponse> {
    let mut f = filter(q.as_deref().unwrap_or(""))?;
    // a namespace-scoped caller lists its namespace's agents only
    if let Some(ns) = caller.as_ref().and_then(|c| c.0.namespace.clone()) {
        if f.ns.as_ref().is_some_and(|asked| *asked != ns) {
            return Ok(success(Vec::<serde_json::Value>::new()));
        }
        f.ns = Some(ns);
    }
    let agents = reg.list(&f);
    Ok(success(agents.iter().map(agent_json).collect::<Vec<_>>()))
}

/// `GET /api/v1/agents/{key}`
async fn get_one(
    State(reg): State<Registry>,
    Path(parts): Path<KeyPath>,
) -> Result<impl IntoResponse> {
    let v = reg.get(&key_from_path(&parts)?)?;
    Ok(success(agent_json(&v)))
}

/// `PATCH /api/v1/agents/{key}`
async fn patch(
    State(reg): State<Registry>,
    Path(parts): Path<KeyPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse> {
    let key = key_from_path(&parts)?;
    let p = agent::parse_patch(&capped_body(&reg, &headers, body).await?)?;
    let v = reg.patch(&key, p).await?;
    Ok(success(agent_json(&v)))
}

/// `DELETE /api/v1/agents/{key}`
async fn delete(
    State(reg): State<Registry>,
    Path(parts): Path<KeyPath>,
) -> Result<impl IntoResponse> {
    let v = reg.delete(&key_from_path(&parts)?).await?;
    Ok(success(agent_json(&v)))
}

/// `GET /api/v1/agents/{key}/collect/{collector}`
async fn collect(
    State(reg): State<Registry>,
    Path((ns, st, sid, vm, csp, collector)): Path<(String, String, String, String, String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let key = key_from_path(&(ns, st, sid, vm, csp))?;
    agent::check_part("collector", &collector)?;
    let address = reg.address_of(&key)?;
    let path = match q.as_deref() {
        Some(q) if !q.is_empty() => format!("/collect/{collector}?{q}"),
        _ => format!("/collect/{collector}"),
    };
    let s = reg.settings();
    let (limit, max) = (s.ondemand_timeout, s.ondemand_max_bytes);
    let tls = reg.agent_tls().cloned();
    let answer = tokio::time::timeout(limit, fetch(&address, &path, max, tls.as_ref())).await;
    let who = format!("agent {key} at {address}");
    let (status, content_type, body) = match answer {
        Err(_) => {
            return Err(Error::GatewayTimeout(format!(
                "{who} did not answer GET {path} within {}",
                format_duration(limit)
            )));
        }
        Ok(Err(Fetch::Unreachable(e))) => {
            return Err(Error::BadGateway(format!("{who} is unreachable: {e}")));
        }
        Ok(Err(Fetch::Bad(e))) => return Err(Error::BadGateway(format!("{who}: {e}"))),
        Ok(Ok(a)) => a,
    };
    if status.is_server_error() {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string();
        return Err(Error::BadGateway(format!("{who} answered GET {path} with {status}: {text}")));
    }
    let mut resp = (status, body).into_response();
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(resp)
}

/// Why an on-demand call failed.
enum Fetch {
    /// No connection could be made.
    Unreachable(String),
    /// The connection was made but the exchange failed.
    Bad(String),
}

/// GETs `path` from the agent at `address`: its status, content type and body (at most `max`
/// bytes).
async fn fetch(
    address: &str,
    path: &str,
    max: usize,
    tls: Option<&ocelli_scrape::config::ClientTls>,
) -> std::result::Result<(StatusCode, Option<header::HeaderValue>, Bytes), Fetch> {
    let mut sender =
        ocelli_scrape::scrape_loop::connect(address, tls).await.map_err(Fetch::Unreachable)?;
    let req = hyper::Request::get(path)
        .header(header::HOST, address)
        .header(header::USER_AGENT, concat!("Ocelli/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| Fetch::Bad(format!("cannot build the request GET {path}: {e}")))?;
    let resp =
        sender.send_request(req).await.map_err(|e| Fetch::Bad(format!("GET {path}: {e}")))?;
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, max).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            Fetch::Bad(format!("the answer to GET {path} is over the limit of {max} bytes"))
        } else {
            Fetch::Bad(format!("reading the answer to GET {path}: {e}"))
        }
    })?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    Ok((parts.status, content_type, body.to_bytes()))
}

/// Appends `ocelli_registry_agents{mode,health}` to the server's `/metrics` text.
pub fn write_metrics(reg: &Registry, out: &mut String) {
    use std::fmt::Write as _;
    out.push_str("# HELP ocelli_registry_agents Registered agents by the mode the server wants and health.\n# TYPE ocelli_registry_agents gauge\n");
    for ((mode, healthy), n) in reg.counts() {
        let health = if healthy { "healthy" } else { "unhealthy" };
        let _ = writeln!(
            out,
            "ocelli_registry_agents{{mode=\"{}\",health=\"{health}\"}} {n}",
            mode.as_str()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_and_named() {
        let f = filter("ns=default&health=unhealthy&mode=pull&csp=aws").unwrap();
        assert_eq!(f.ns.as_deref(), Some("default"));
        assert_eq!(f.healthy, Some(false));
        assert_eq!(f.mode, Some(Mode::Pull));
        let e = |q: &str| filter(q).unwrap_err().to_string();
        assert_eq!(
            e("health=sick"),
            "health: \"sick\" is not allowed; expected one of healthy, unhealthy"
        );
        assert_eq!(
            e("service=x"),
            "service: unknown parameter; expected one of ns, service_type, service_id, csp, health, mode"
        );
        assert_eq!(e("ns=a&ns=b"), "ns: given more than once");
        assert_eq!(
            e("service_type=mcis"),
            "service_type: \"mcis\" is not allowed; expected one of vm, k8s"
        );
    }
}
